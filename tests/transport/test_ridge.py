"""The ridge warm start (transport/ridge.py): a monotone gradient fitted in one NNLS solve."""

from __future__ import annotations

import numpy as np
import pytest

from otmap_cli.nets.monotone_numpy import STRICT_EPS
from otmap_cli.transport.fit import FitSettings, fit_monotone_map
from otmap_cli.transport.ridge import fit_ridges, sphere_directions


def _convex_gradient(x: np.ndarray) -> np.ndarray:
    """The gradient of phi(x) = x.A x / 2 + b.x + 0.1 sum x^3: an affine part and a curved one (Hessian PSD on x >= 0)."""
    a = np.array([[0.8, 0.2, 0.0], [0.2, 0.6, 0.1], [0.0, 0.1, 0.9]])
    return x @ a + np.array([0.05, -0.1, 0.1]) + 0.3 * x**2


def _points(n=3000, seed=0):
    return np.random.default_rng(seed).random((n, 3)).astype(np.float32)


def test_ridges_recover_a_known_convex_gradient():
    x = _points()
    weights = np.full(len(x), 1 / len(x), np.float32)
    net = fit_ridges(x, _convex_gradient(x), weights, 50, 16, 32.0, np.random.default_rng(0))
    fresh = _points(2000, seed=1)
    rmse = np.sqrt(((net(fresh) - _convex_gradient(fresh)) ** 2).mean())
    affine, *_ = np.linalg.lstsq(np.hstack([x, np.ones((len(x), 1))]), _convex_gradient(x), rcond=None)
    affine_rmse = np.sqrt(((np.hstack([fresh, np.ones((len(fresh), 1))]) @ affine - _convex_gradient(fresh)) ** 2).mean())
    assert rmse < 0.01 and rmse < 0.2 * affine_rmse, (rmse, affine_rmse)
    assert net.width < 50 * 16  # NNLS leaves most units at zero, and only the others are kept


def test_ridge_map_has_a_symmetric_psd_jacobian_and_is_monotone():
    x = _points(1500)
    rng = np.random.default_rng(2)
    targets = rng.random((len(x), 3)).astype(np.float32)  # no monotone map fits noise: the gains still stay >= 0
    net = fit_ridges(x, targets, np.full(len(x), 1 / len(x)), 26, 8, 32.0, rng)
    h = 1e-3
    for point in _points(20, seed=3).astype(np.float64):
        jacobian = np.stack([(net((point + h * e)[None]) - net((point - h * e)[None]))[0] / (2 * h)
                             for e in np.eye(3)])
        assert np.abs(jacobian - jacobian.T).max() < 1e-2
        assert np.linalg.eigvalsh(0.5 * (jacobian + jacobian.T)).min() > -1e-3
    a, b = _points(2000, seed=4), _points(2000, seed=5)
    assert (((net(a) - net(b)) * (a - b)).sum(1) >= STRICT_EPS * ((a - b) ** 2).sum(1) - 1e-5).all()


def test_fibonacci_directions_cover_the_sphere():
    unit = sphere_directions(50, 3, np.random.default_rng(0))
    assert np.allclose(np.linalg.norm(unit, axis=1), 1)
    probes = sphere_directions(1000, 5, np.random.default_rng(1))[:, :3]
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)
    assert (probes @ unit.T).max(1).min() > 0.8  # every direction within ~37 degrees of a ridge


def test_ridge_warm_start_needs_a_cmgn_and_takes_no_warm_steps():
    with pytest.raises(ValueError, match="C-MGN"):
        FitSettings(model="mmgn", warm_start="ridge").validate()
    with pytest.raises(ValueError, match="warm-start gradient"):  # they would silently do nothing
        FitSettings(warm_steps=100).validate()
    assert FitSettings(model="mmgn").gradient_warm_steps == 600 and FitSettings().gradient_warm_steps == 0


def test_ridge_fit_lands_on_the_closed_form_gaussian_map():
    """Two Gaussians: the Brenier map is affine and known; the ridge fit (no Adam step) must be close."""
    rng = np.random.default_rng(0)
    x = (np.array([0.4, 0.5, 0.55]) + 0.08 * rng.standard_normal((40_000, 3))).astype(np.float32)
    y = (np.array([0.55, 0.45, 0.4]) + 0.12 * rng.standard_normal((40_000, 3))).astype(np.float32)
    result = fit_monotone_map(x, y, FitSettings(steps=0))
    net = result.rejected if result.fell_back else result.net
    probe = x[:5000]
    expected = (probe - [0.4, 0.5, 0.55]) * 1.5 + [0.55, 0.45, 0.4]
    inside = (np.abs(probe - [0.4, 0.5, 0.55]) < 0.16).all(1)  # two standard deviations: the histogram is sparse beyond
    assert np.sqrt(((net(probe[inside]) - expected[inside]) ** 2).mean()) < 0.02
