"""Reflect-padded blur and down-sampling with fast data proxes: FFT solves on the reflect-extended image.

DPIR's half-quadratic splitting needs the prox x = (A^T A + I / gamma)^-1 (A^T y + z / gamma) of the blur A
at every iteration. With reflect padding it has no closed form, and deepinv solves it by conjugate
gradients, which converge slowly on deblurring (the late iterations are ill-conditioned). The same system
for a *circular* blur C is diagonal in the Fourier basis. So y and z are reflect-padded by
:data:`MARGIN` pixels (and on to a size with small prime factors, where the FFT is fast; a short side is
mirrored whole), the circular system is solved there, and the crop back to the image differs from the
prox only near the borders. CG steps started from it would correct that, but each costs as much as six
FFT solves and gains nothing measurable (docs/decisions.md).

Down-sampling (blur, then every s-th pixel) is done the same way: its circular version has a closed-form
prox too (Zhao et al., "Fast single image super-resolution using a new analytical solution for l2-l2
problems", IEEE TIP 2016, Eq. 30; deepinv's ``Downsampling.prox_l2`` with circular padding), here solved on
the high-resolution image padded by :data:`MARGIN` pixels and the low-resolution one by MARGIN / s.

Imported only by :func:`~otmap_cli.restoration.physics.make_physics` (deepinv is heavy).
"""

from __future__ import annotations

import deepinv as dinv
import torch
import torch.nn.functional as F
from deepinv.optim.linear import least_squares
from deepinv.physics.functional import filter_fft

MARGIN = 32  # pixels of reflect padding between the image and the periodic seam (docs/decisions.md)
# CG steps of the reflect-padded down-sampling system after its FFT solve: they correct the borders, where
# the circular solution is furthest off at DPIR's late, large gammas (docs/decisions.md)
DOWNSAMPLING_CG_STEPS = 1


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


def _low_res_padding(n: int, factor: int) -> tuple[int, int]:
    """Reflect padding of a low-resolution axis of n pixels, in low-resolution pixels: MARGIN / factor on
    the left and on to a length whose high-resolution size (x factor) is FFT-friendly."""
    before = min(MARGIN // factor, n - 1)
    total = n + 2 * before
    while fft_size(total * factor) != total * factor:
        total += 1
    return before, min(total - n - before, n - 1)


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


class ReflectDownsampling(dinv.physics.Downsampling):
    """deepinv's reflect-padded :class:`~deepinv.physics.Downsampling` (the same A), with the fast prox above."""

    def __init__(self, img_size, filter: str, factor: int, **kwargs):
        super().__init__(img_size=img_size, filter=filter, factor=factor, padding="reflect", **kwargs)
        self._filter_name, self._kwargs = filter, {k: v for k, v in kwargs.items() if k == "device"}
        self._circular: dict = {}

    def _periodic(self, low_size: tuple[int, int]):
        """Padding (left, right, top, bottom) of the low-resolution image and the circular operator on its grid."""
        if self._circular.get("size") != low_size:
            (top, bottom), (left, right) = (_low_res_padding(n, self.factor) for n in low_size)
            grid = ((low_size[0] + top + bottom) * self.factor, (low_size[1] + left + right) * self.factor)
            operator = dinv.physics.Downsampling(img_size=(3, *grid), filter=self._filter_name, factor=self.factor,
                                                 padding="circular", **self._kwargs)
            self._circular = {"size": low_size, "pad": (left, right, top, bottom), "operator": operator}
        return self._circular["pad"], self._circular["operator"]

    def prox_l2(self, z: torch.Tensor, y: torch.Tensor, gamma, **kwargs) -> torch.Tensor:
        h, w = y.shape[-2:]
        (left, right, top, bottom), operator = self._periodic((h, w))
        s = self.factor
        z_pad = F.pad(z, (left * s, right * s, top * s, bottom * s), mode="reflect")
        y_pad = F.pad(y, (left, right, top, bottom), mode="reflect")
        gamma = torch.as_tensor(gamma, dtype=z.dtype, device=z.device)
        gamma = gamma.view(-1, 1, 1, 1) if gamma.ndim == 1 else gamma
        x = operator.prox_l2(z_pad, y_pad, gamma)[..., top * s:top * s + z.shape[-2], left * s:left * s + z.shape[-1]]
        if not DOWNSAMPLING_CG_STEPS:
            return x
        return least_squares(self.A, self.A_adjoint, y, gamma=gamma, init=x, z=z, max_iter=DOWNSAMPLING_CG_STEPS,
                             ATA=self.A_adjoint_A, parallel_dim=[0])
