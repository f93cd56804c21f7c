import pytest
import torch

from ddlight.data.subsets import random_subset, validation_split


def _labels():
    return torch.arange(200) % 4  # 50 per class


def test_validation_split_is_stratified_seeded_and_disjoint_from_the_pool():
    labels = _labels()
    val, pool = validation_split(labels, 4, 0.1, seed=3)
    assert torch.bincount(labels[val], minlength=4).tolist() == [5, 5, 5, 5]
    assert set(val.tolist()).isdisjoint(pool.tolist()) and len(val) + len(pool) == 200
    again, _ = validation_split(labels, 4, 0.1, seed=3)
    other, _ = validation_split(labels, 4, 0.1, seed=4)
    assert torch.equal(val, again) and not torch.equal(val, other)


def test_random_subset_is_class_balanced_seeded_grouped_and_never_from_validation():
    labels = _labels()
    val, pool = validation_split(labels, 4, 0.1, seed=0)
    idx = random_subset(labels, pool, 4, ipc=3, seed=7)
    assert labels[idx].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]  # laid out as synthetic sets are
    assert set(idx.tolist()) <= set(pool.tolist()) and set(idx.tolist()).isdisjoint(val.tolist())
    assert len(set(idx.tolist())) == 12  # without replacement
    assert torch.equal(idx, random_subset(labels, pool, 4, 3, seed=7))
    assert not torch.equal(idx, random_subset(labels, pool, 4, 3, seed=8))


def test_a_class_too_small_for_the_subset_is_named():
    labels = _labels()
    pool = torch.nonzero(labels != 2).flatten()
    with pytest.raises(ValueError, match=r"class\(es\) \[2\] have \[0\]"):
        random_subset(labels, pool, 4, ipc=1, seed=0)
