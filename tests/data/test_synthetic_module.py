"""Pairing a synthetic set with its real data: every recorded identity field must agree."""

from __future__ import annotations

import pytest
import torch

from ddlight.data import SyntheticDataModule, SyntheticSet, SyntheticSetError
from tests.helpers.builders import TinyDigits


class OtherDigits(TinyDigits):
    """TinyDigits' shape, statistics and name, other test images: what a disguised dataset looks like."""

    name = "tinydigits"

    def load_split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = super().load_split(split)
        return (images if split == "train" else 255 - images), labels


def set_for(dm: TinyDigits, **over) -> SyntheticSet:
    dm.setup()
    ident = dm.identity()
    fields = dict(
        images=torch.zeros(4, 1, 12, 12),
        labels=torch.arange(4),
        mean=dm.mean,
        std=dm.std,
        num_classes=4,
        method="real",
        dataset=ident["dataset"],
        ipc=1,
        class_names=ident["class_names"],
        zca=ident["zca"],
        test_sha256=ident["test_sha256"],
    )
    fields.update(over)
    return SyntheticSet(**fields)


def pair(tmp_path, syn: SyntheticSet, real: TinyDigits) -> SyntheticDataModule:
    syn.save(tmp_path / "s.pt")
    dm = SyntheticDataModule(str(tmp_path / "s.pt"), real)
    dm.setup()
    return dm


def test_identity_round_trips_and_pairs(tmp_path):
    real = TinyDigits(n_train=16, n_test=8)
    syn = set_for(real)
    assert syn.dataset == "tinydigits" and syn.class_names == ["a", "b", "c", "d"]
    loaded = pair(tmp_path, syn, real).synthetic
    assert loaded.test_sha256 == real.identity()["test_sha256"] and loaded.zca == {}


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"dataset": "mnist"}, "dataset"),
        ({"class_names": ["a", "b", "c", "x"]}, "class_names"),
        ({"test_sha256": "0" * 64}, "test_sha256"),
        ({"zca": {"reg": 0.1, "fit_sha256": "abc"}}, "zca"),
    ],
)
def test_any_identity_mismatch_is_refused_naming_the_field(tmp_path, over, field):
    real = TinyDigits(n_train=16, n_test=8)
    with pytest.raises(
        SyntheticSetError, match=rf"field '{field}' is .* but the real data module TinyDigits"
    ):
        pair(tmp_path, set_for(real, **over), real)


def test_disguised_data_with_same_name_and_stats_is_refused_by_the_digest(tmp_path):
    syn = set_for(OtherDigits(n_train=16, n_test=8))
    with pytest.raises(SyntheticSetError, match="field 'test_sha256'.*content differs"):
        pair(tmp_path, syn, TinyDigits(n_train=16, n_test=8))


def test_files_without_identity_fields_still_pair(tmp_path):
    real = TinyDigits(n_train=16, n_test=8)
    syn = set_for(real, class_names=[], test_sha256="")
    payload = syn.to_payload()
    for key in ("class_names", "zca", "test_sha256"):
        del payload[key]
    torch.save(payload, tmp_path / "old.pt")
    dm = SyntheticDataModule(str(tmp_path / "old.pt"), real)
    dm.setup()
    assert dm.synthetic.class_names == [] and dm.synthetic.zca == {}


def test_malformed_identity_fields_are_refused(tmp_path):
    real = TinyDigits(n_train=16, n_test=8)
    with pytest.raises(SyntheticSetError, match=r"field 'class_names': expected num_classes = 4 names"):
        set_for(real, class_names=["a"]).save(tmp_path / "x.pt")
    with pytest.raises(SyntheticSetError, match=r"field 'zca': expected \{\} or a dict with a float 'reg'"):
        set_for(real, zca={"eps": 1}).save(tmp_path / "x.pt")


def test_hard_label_protocol_trains_on_the_argmax_of_soft_labels(tmp_path):
    real = TinyDigits(n_train=16, n_test=8)
    logits = torch.tensor([[0.0, 3.0, 1.0, 0.0], [2.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 5.0], [1, 1, 4, 0.0]])
    set_for(real, labels=logits, method="pad").save(tmp_path / "soft.pt")
    saved = SyntheticDataModule(str(tmp_path / "soft.pt"), real)
    hard = SyntheticDataModule(str(tmp_path / "soft.pt"), real, labels="hard")
    assert torch.equal(saved.synthetic.labels, logits)
    assert torch.equal(hard.synthetic.labels, torch.tensor([1, 0, 3, 2])) and not hard.synthetic.is_soft
    set_for(real).save(tmp_path / "hard.pt")  # a hard-label set is the same under both
    again = SyntheticDataModule(str(tmp_path / "hard.pt"), real, labels="hard")
    assert torch.equal(again.synthetic.labels, torch.arange(4))
    with pytest.raises(ValueError, match=r"SyntheticDataModule.labels must be one of \('saved', 'hard'\)"):
        SyntheticDataModule(str(tmp_path / "soft.pt"), real, labels="argmax")
