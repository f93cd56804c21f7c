"""DATM: soft labels from correctly classified images, the growing window, the threshold, no FIEM."""

import torch

from ddlight.methods import DATM
from tests.helpers.builders import tiny_net
from tests.helpers.trajectory import exposed, fit, make_method


def test_signature_and_datms_defaults(tmp_path):
    params = exposed(DATM)
    assert "depth_ratio" not in params and "soft_labels" not in params
    # NUS-HPC-AI-Lab/DATM utils/cfg.py
    want = {
        "syn_steps": 80,
        "expert_epochs": 2,
        "min_start_epoch": 0,
        "current_max_start_epoch": 20,
        "max_start_epoch": 25,
        "max_start_epoch_growth_steps": 3000,
        "lr_img": 1000.0,
        "lr_label": 2.0,
        "lr_lr": 1e-5,
        "momentum_label": 0.9,
        "loss_threshold": 1.0,
        "label_expert_epoch": -1,
    }
    assert {k: params[k] for k in want} == want
    model = DATM(tiny_net(), buffer_dir=str(tmp_path))
    # Upper_Bound = current + int((max - current) * it / expansion_end_epoch), capped at max
    assert [model.max_start_bound(s) for s in (0, 599, 600, 1500, 3000, 9000)] == [20, 20, 21, 22, 25, 25]
    assert model.depth_ratio == 0.0 and bool(model.fiem.all())


def test_soft_labels_start_at_the_class_and_are_learned(buffer_dir, tmp_path):
    model = make_method(DATM, buffer_dir, lr_label=5.0)
    fit(model, 0, tmp_path)
    logits, images = model.label_logits.detach().clone(), model.images.detach().clone()
    assert logits.shape == (8, 4) and torch.equal(logits.argmax(1), model.labels)
    fit(model, 3, tmp_path)
    names = [g["name"] for g in model.optimizers().optimizer.param_groups]
    assert names == ["images", "labels", "syn_lr"]
    assert not torch.equal(model.label_logits.detach(), logits) and not torch.equal(model.images, images)


def test_resume_reaches_the_same_set(buffer_dir, tmp_path):
    aug = {"dsa_strategy": "color_crop_cutout_scale_rotate"}
    straight = make_method(DATM, buffer_dir, **aug)
    fit(straight, 3, tmp_path)
    first = make_method(DATM, buffer_dir, **aug)
    fit(first, 2, tmp_path).save_checkpoint(tmp_path / "two.ckpt")
    resumed = make_method(DATM, buffer_dir, **aug)
    fit(resumed, 3, tmp_path, ckpt_path=tmp_path / "two.ckpt")
    assert resumed.global_step == 3
    for name in ("images", "label_logits", "syn_lr"):
        torch.testing.assert_close(getattr(resumed, name), getattr(straight, name), rtol=1e-5, atol=1e-6)


def test_init_from_is_the_start_as_given_with_its_soft_or_the_experts_labels(buffer_dir, tmp_path):
    """A shared start (the parity harness hands both implementations one set) is taken, not redrawn."""
    from ddlight.data.synthetic import SyntheticSet

    first = make_method(DATM, buffer_dir, export_dir=str(tmp_path / "a"), seed=3)
    fit(first, 0, tmp_path)
    given = SyntheticSet.load(tmp_path / "a" / "synthetic.pt")
    # rolled: the last image's logits on the first, so the argmaxes are no longer class-major (a start
    # holding a misclassified image), which a soft start may be
    given.labels = given.labels.roll(1, 0)
    assert not torch.equal(given.hard_labels, first.labels)
    given.save(tmp_path / "soft.pt")
    again = make_method(DATM, buffer_dir, init_from=str(tmp_path / "soft.pt"), seed=4)
    fit(again, 0, tmp_path)
    assert torch.equal(again.images.detach(), given.images)
    assert torch.equal(again.label_logits.detach(), given.labels)
    # hard labels: the experts' logits of those very images, as the drawn start computes them
    given.labels = first.labels.clone()
    given.save(tmp_path / "hard.pt")
    hard = make_method(DATM, buffer_dir, init_from=str(tmp_path / "hard.pt"), seed=4)
    fit(hard, 0, tmp_path)
    assert torch.equal(hard.images.detach(), given.images)
    torch.testing.assert_close(hard.label_logits.detach(), first.label_logits.detach())
