"""ZCA whitening against a hand computation, its round trip, and that every real batch goes through it."""

from __future__ import annotations

import pytest
import torch

from ddlight.data import ZCA, Normalizer
from ddlight.data.zca import tensor_sha256
from tests.helpers.builders import TinyDigits


def test_zca_matches_kornia_formula_by_hand():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(50, 2, 2, 1, generator=gen) * torch.tensor([3.0, 1.0]).view(1, 2, 1, 1)
    zca = ZCA.fit(x, reg=0.1)
    flat = x.flatten(1).double()
    mu = flat.mean(0)
    cov = (flat - mu).T @ (flat - mu) / (len(flat) - 1)  # kornia's unbiased covariance
    u, s, _ = torch.linalg.svd(cov)  # kornia uses the SVD of the covariance
    w = u @ torch.diag(1 / torch.sqrt(s + 0.1)) @ u.T
    want = ((flat - mu) @ w).float().view_as(x)
    assert torch.allclose(zca(x), want, atol=1e-5)
    # Whitened covariance is U diag(s / (s + eps)) U^T: close to identity where s >> eps.
    z = zca(x).flatten(1).double()
    assert torch.allclose(z.T @ z / 49, u @ torch.diag(s / (s + 0.1)) @ u.T, atol=1e-4)
    assert torch.allclose(zca.inverse(zca(x)), x, atol=1e-4)  # round trip


def test_zca_fit_from_uint8_in_chunks_equals_float_fit(monkeypatch):
    import ddlight.data.zca as zmod

    u8 = torch.randint(0, 256, (30, 1, 3, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    norm = Normalizer(torch.tensor([0.5]), torch.tensor([0.25]))
    whole = ZCA.fit(norm(u8), reg=0.05)
    monkeypatch.setattr(zmod, "FIT_CHUNK", 7)
    chunked = ZCA.fit(u8, reg=0.05, transform=norm)
    assert torch.allclose(whole.matrix, chunked.matrix, atol=1e-4)
    with pytest.raises(ValueError, match="must be > 0"):
        ZCA.fit(u8, reg=0.0, transform=norm)


def test_few_images_path_equals_the_covariance_path():
    x = torch.randn(6, 1, 3, 3, generator=torch.Generator().manual_seed(2))  # N = 6 <= D = 9
    few = ZCA.fit(x, reg=0.1)
    flat = x.flatten(1).double()
    cov = (flat - flat.mean(0)).T @ (flat - flat.mean(0)) / 5
    s, u = torch.linalg.eigh(cov)
    assert torch.allclose(few.matrix.double(), (u * (s.clamp_min(0) + 0.1).rsqrt()) @ u.T, atol=1e-5)
    assert torch.allclose(few.inverse(few(x)), x, atol=1e-4)


def test_data_module_whitens_every_real_batch_and_initial_images():
    dm = TinyDigits(n_train=40, n_test=8)
    dm.zca, dm.zca_reg = True, 0.1
    dm.setup()
    zca = dm.zca_transform
    assert zca is not None and zca.matrix.shape == (144, 144)
    plain = Normalizer(dm.mean_t, dm.std_t)
    x, y = next(iter(dm.test_dataloader()))
    assert torch.allclose(x, zca(plain(dm.test_images[: len(x)])), atol=1e-5)
    ep, _ = dm.episodes(2).episode(0)
    assert abs(float(ep.flatten(1).mean())) < 1.0 and ep.shape == (8, 1, 12, 12)
    assert torch.allclose(dm.normalize(dm.train_images[:3]), zca(plain(dm.train_images[:3])), atol=1e-5)
    ident = dm.identity()
    assert ident["zca"] == {"reg": 0.1, "fit_sha256": tensor_sha256(dm.train_images)}
    assert ident["test_sha256"] == tensor_sha256(dm.test_images, dm.test_labels)
    # Display un-whitens then un-normalises: back to the uint8 image / 255.
    back = dm.normalizer.display(dm.normalize(dm.train_images[:2]))
    assert torch.allclose(back, dm.train_images[:2].float() / 255, atol=1e-3)
