"""Whether a dataset may be flipped is declared by its data module and found by the name sets record."""

import pytest

from ddlight import data
from ddlight.data import DATAMODULES, RealDataModule, flip_invariant
from ddlight.ops.augment import strategy_for


def test_every_exported_real_data_module_with_a_fixed_name_is_registered() -> None:
    named = {
        cls.name
        for cls in vars(data).values()
        if isinstance(cls, type)
        and issubclass(cls, RealDataModule)
        and isinstance(cls.__dict__.get("name"), str)
    }
    assert named == set(DATAMODULES)


@pytest.mark.parametrize(
    ("dataset", "flips"),
    [("mnist", False), ("MNIST", False), ("fashionmnist", True), ("svhn", True), ("cifar10", True)],
)
def test_digits_are_not_flipped_and_everything_else_is(dataset: str, flips: bool) -> None:
    assert flip_invariant(dataset) is flips
    assert DATAMODULES[dataset.lower()].flip_invariant is flips


def test_a_dataset_without_a_module_of_its_own_is_treated_as_natural_images() -> None:
    # "kmnist" has no module here: the fact comes from a class, never from the text of a name
    assert flip_invariant("kmnist") and flip_invariant("my_imagefolder")
    assert "flip" in strategy_for("auto", flip_invariant("kmnist"))
