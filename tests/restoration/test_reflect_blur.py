"""The fast prox of the reflect-padded blur: the prox it claims to be, on any image size."""

import pytest
import torch

dinv = pytest.importorskip("deepinv")

from otmap_cli.restoration.physics import blur_filter  # noqa: E402
from otmap_cli.restoration.reflect_blur import ReflectBlur, fft_size  # noqa: E402


def objective(physics, x, y, z, gamma):
    return (0.5 * ((physics.A(x) - y) ** 2).sum() + 0.5 / gamma * ((x - z) ** 2).sum()).item()


def problem(h, w, kernel):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, h, w, generator=gen)
    plain = dinv.physics.Blur(filter=kernel, padding="reflect")
    y = plain.A(x) + 0.01 * torch.randn(x.shape, generator=gen)
    return plain, y, x + 0.05 * torch.randn(x.shape, generator=gen)


@pytest.mark.parametrize("size, within", [((60, 70), 0.01), ((9, 13), 0.05)])  # (9, 13): mostly border
@pytest.mark.parametrize("gamma", [5.0, 5000.0])
def test_prox_comes_close_to_the_converged_solution(size, within, gamma):
    """Near the objective of the converged CG answer; at the ill-conditioned gamma, far closer than the ten
    CG steps from z that deepinv's solver (and otmap before ReflectBlur) takes."""
    kernel = blur_filter(1.0, None)
    plain, y, z = problem(*size, kernel)
    best = objective(plain, plain.prox_l2(z, y, gamma, max_iter=5000, tol=1e-12), y, z, gamma)
    fast = objective(plain, ReflectBlur(kernel).prox_l2(z, y, gamma), y, z, gamma)
    assert best <= fast <= best * (1 + within)
    if gamma > 1000:
        cg10 = objective(plain, plain.prox_l2(z, y, gamma, max_iter=10, tol=1e-12), y, z, gamma)
        assert cg10 > best * 1.5


def test_prox_is_exact_away_from_the_borders():
    """An asymmetric PSF: the FFT solve is the prox there, and only the borders differ."""
    kernel = torch.rand(1, 1, 5, 5, generator=torch.Generator().manual_seed(1))
    kernel /= kernel.sum()
    plain, y, z = problem(80, 80, kernel)
    exact = plain.prox_l2(z, y, 5.0, max_iter=5000, tol=1e-12)
    fast = ReflectBlur(kernel).prox_l2(z, y, 5.0)
    assert (fast - exact)[..., 20:-20, 20:-20].abs().max() < 1e-4
    assert (fast - exact)[..., 8:-8, 8:-8].abs().max() < 1e-3


def test_fft_sizes_have_small_prime_factors():
    assert [fft_size(n) for n in (1, 7, 1064, 1081)] == [1, 8, 1080, 1125]
