"""Reflect-padded blur with a fast data prox: an FFT solve on the reflect-extended image.

DPIR's half-quadratic splitting needs the prox x = (A^T A + I / gamma)^-1 (A^T y + z / gamma) of the blur A
at every iteration. With reflect padding it has no closed form, and deepinv solves it by conjugate
gradients, which converge slowly on deblurring (the late iterations are ill-conditioned). The same system
for a *circular* blur C is diagonal in the Fourier basis. So y and z are reflect-padded by
:data:`MARGIN` pixels (and on to a size with small prime factors, where the FFT is fast; a short side is
mirrored whole), the circular system is solved there, and the crop back to the image differs from the
prox only near the borders. CG steps started from it would correct that, but each costs as much as six
FFT solves and gains nothing measurable (docs/decisions.md).

Imported only by :func:`~otmap_cli.restoration.physics.make_physics` (deepinv is heavy).
"""

from __future__ import annotations

import deepinv as dinv
import torch
import torch.nn.functional as F
from deepinv.physics.functional import filter_fft

MARGIN = 32  # pixels of reflect padding between the image and the periodic seam (docs/decisions.md)


def fft_size(n: int) -> int:
    """The smallest m >= n whose prime factors are 2, 3 and 5."""
    m = n
    while True:
        k = m
        for p in (2, 3, 5):
            while k % p == 0:
                k //= p
        if k == 1:
            return m
        m += 1


def _padding(n: int) -> tuple[int, int]:
    """Reflect padding of one axis of n pixels: :data:`MARGIN` on both sides and on to an FFT-friendly size;
    a short axis is mirrored once instead (its period under reflect padding is exactly 2n - 2)."""
    if n < 2 * MARGIN + 2:
        return 0, max(n - 2, 0)
    return MARGIN, fft_size(n + 2 * MARGIN) - n - MARGIN


class ReflectBlur(dinv.physics.Blur):
    """deepinv's reflect-padded :class:`~deepinv.physics.Blur` (the same A), with the fast prox above."""

    def __init__(self, filter: torch.Tensor, **kwargs):
        super().__init__(filter=filter, padding="reflect", **kwargs)
        self._cache: dict = {}

    def _grid(self, size: tuple[int, int]) -> tuple[tuple[int, int, int, int], torch.Tensor]:
        """Padding (left, right, top, bottom) of an image of ``size`` and the filter's rfft2 on that grid."""
        if self._cache.get("size") != size:
            (top, bottom), (left, right) = (_padding(n) for n in size)
            grid = size[0] + top + bottom, size[1] + left + right
            self._cache = {"size": size, "pad": (left, right, top, bottom),
                           "transfer": filter_fft(self.filter, img_size=grid, dims=(-2, -1))}
        return self._cache["pad"], self._cache["transfer"]

    def periodic_solve(self, z: torch.Tensor, y: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        """(C^T C + I / gamma)^-1 (C^T y + z / gamma) on the extended grid, cropped to the image."""
        h, w = z.shape[-2:]
        pad, k = self._grid((h, w))
        if self._cache.get("y") is not y:  # DPIR passes the same y at every iteration
            self._cache["y"], self._cache["Cty"] = y, k.conj() * torch.fft.rfft2(F.pad(y, pad, mode="reflect"))
        numerator = self._cache["Cty"] + torch.fft.rfft2(F.pad(z, pad, mode="reflect")) / gamma
        grid = (h + pad[2] + pad[3], w + pad[0] + pad[1])
        u = torch.fft.irfft2(numerator / (k.abs() ** 2 + 1 / gamma), s=grid)
        return u[..., pad[2]:pad[2] + h, pad[0]:pad[0] + w]

    def prox_l2(self, z: torch.Tensor, y: torch.Tensor, gamma, **kwargs) -> torch.Tensor:
        gamma = torch.as_tensor(gamma, dtype=z.dtype, device=z.device)
        return self.periodic_solve(z, y, gamma.view(-1, 1, 1, 1) if gamma.ndim == 1 else gamma)
