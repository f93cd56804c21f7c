"""ZCA whitening as the trajectory-matching papers apply it on CIFAR, and the one normalisation of real
images that every stage goes through.

MTT, DATM and PAD whiten CIFAR with kornia's ``ZCAWhitening(eps=0.1, compute_inv=True)`` fitted on the
normalised training images; the synthetic images then live in the whitened space, and the evaluator
must whiten the real test images the same way or it measures nothing. This is kornia's computation,
written out so that it needs no extra dependency: with ``X`` the (N, D) flattened normalised images,
``mu`` their mean and ``C = (X - mu)^T (X - mu) / (N - 1)`` (unbiased, as kornia's default),
``C = U diag(s) U^T`` and

    W = U diag(1 / sqrt(s + eps)) U^T,    whiten(x) = (x - mu) W,    unwhiten(z) = z W^-1 + mu

with ``W^-1 = U diag(sqrt(s + eps)) U^T``. ``eps`` is added to the eigenvalues (kornia's ``eps``), so
small-variance directions are amplified at most by ``1 / sqrt(eps)``.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch

from ddlight.utils.classwise import denormalize, normalize_uint8

# Images per chunk while fitting: the (D, D) accumulation is what costs; chunks keep the float copy of a
# uint8 training set (4x its size) from ever existing in memory at once.
FIT_CHUNK = 4096


def tensor_sha256(*tensors: torch.Tensor) -> str:
    """SHA-256 of the tensors' dtype, shape and bytes: the identity of a split's exact content."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().to("cpu").contiguous()
        h.update(str((t.dtype, tuple(t.shape))).encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class ZCA:
    """A fitted ZCA whitening of (N, C, H, W) float images; ``fit`` computes it, calling applies it."""

    def __init__(self, mean: torch.Tensor, matrix: torch.Tensor, inverse: torch.Tensor, reg: float) -> None:
        self.mean, self.matrix, self.inverse_matrix, self.reg = mean, matrix, inverse, float(reg)

    @classmethod
    def fit(cls, images: torch.Tensor, reg: float = 0.1, transform: Any = None) -> ZCA:
        """Fit on ``images`` (float, or uint8 with ``transform`` mapping a uint8 chunk to float)."""
        if reg <= 0:
            raise ValueError(f"ZCA regularisation (zca_reg) must be > 0, got {reg}")
        n = images.shape[0]
        if n < 2:
            raise ValueError(f"ZCA needs at least 2 training images to estimate a covariance, got {n}")
        prep = transform if transform is not None else (lambda x: x.float())
        d = images[0].numel()
        total = torch.zeros(d, dtype=torch.float64)
        for chunk in images.split(FIT_CHUNK):
            total += prep(chunk).flatten(1).double().sum(0)
        mean = (total / n).float()
        if n <= d:
            return cls._fit_few(images, prep, mean, reg)
        cov = torch.zeros(d, d, dtype=torch.float32)
        for chunk in images.split(FIT_CHUNK):
            x = prep(chunk).flatten(1).float() - mean
            cov.addmm_(x.T, x)
        cov /= n - 1
        # float32, as kornia: with eps = 0.1 added, its rounding is far below what whitening amplifies.
        evals, evecs = torch.linalg.eigh(cov)
        evals = evals.clamp_min(0) + reg
        return cls(mean, (evecs * evals.rsqrt()) @ evecs.T, (evecs * evals.sqrt()) @ evecs.T, reg)

    @classmethod
    def _fit_few(cls, images: torch.Tensor, prep: Any, mean: torch.Tensor, reg: float) -> ZCA:
        """The same W from the SVD of the (N, D) centred data when N <= D (a small ImageFolder, a test
        fixture): the covariance has at most N nonzero eigenvalues, whose eigenvectors are the SVD's right
        singular vectors, and every other direction gets 1 / sqrt(eps). O(N^2 D) instead of O(D^3)."""
        x = (prep(images).flatten(1).double() - mean.double()).contiguous()
        _, sv, vh = torch.linalg.svd(x, full_matrices=False)
        evals = sv.square() / (x.shape[0] - 1) + reg
        eye = torch.eye(x.shape[1], dtype=torch.float64)
        matrix = eye / reg**0.5 + (vh.T * (evals.rsqrt() - reg**-0.5)) @ vh
        inverse = eye * reg**0.5 + (vh.T * (evals.sqrt() - reg**0.5)) @ vh
        return cls(mean, matrix.float(), inverse.float(), reg)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1) - self.mean.to(x.device)
        return (flat @ self.matrix.to(x.device)).view_as(x)

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        flat = z.flatten(1) @ self.inverse_matrix.to(z.device) + self.mean.to(z.device)
        return flat.view_as(z)


class Normalizer:
    """uint8 images -> what networks see: mean/std per channel, then ZCA when the data module fits one.

    Every stage takes real images through one of these (``RealDataModule.normalize``), so a whitened
    run cannot feed un-whitened real images anywhere (test set included).
    """

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, zca: ZCA | None = None) -> None:
        self.mean, self.std, self.zca = mean, std, zca

    def __call__(self, images_u8: torch.Tensor) -> torch.Tensor:
        x = normalize_uint8(images_u8, self.mean, self.std)
        return self.zca(x) if self.zca is not None else x

    def display(self, x: torch.Tensor) -> torch.Tensor:
        """Network-space images -> [0, 1] for grids (un-whitened first when whitened)."""
        if self.zca is not None:
            x = self.zca.inverse(x.float())
        return denormalize(x, self.mean, self.std)
