"""The warm start of a colour fit in one linear solve: softplus ridges fitted by non-negative least squares.

A C-MGN with one layer is T(x) = b + eps x + sum_k g_k softplus(w_k.x + c_k) w_k (``NumpyCMGN``);
with the directions w_k and kinks c_k fixed, T is linear in the gains g_k, and any g_k >= 0 keeps
T the gradient of a convex function (each term is the gradient of a convex ridge). So instead of
hundreds of gradient steps from random units, a dictionary of ridges, quasi-uniform directions on
the sphere with kinks at quantiles of the data along each, is fitted to the exact OT plan's
barycentric targets (``fit.HistogramPlan``) by NNLS (Lawson & Hanson 1974; scipy's ``nnls``). The
solution is sparse (a few dozen units of hundreds), and only those units are kept, so the map is
also cheap to apply. The ridge form is the first layer of Chaudhari et al. 2023, Eq. 6.
"""

from __future__ import annotations

import numpy as np

from otmap_cli.nets.monotone_numpy import STRICT_EPS, NumpyCMGN, inverse_softplus, softplus_and_sigmoid

OFF_GAIN = -30.0  # gain_raw of a unit that is kept only so the network has one: softplus(-30) ~ 1e-13


def sphere_directions(count: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` unit vectors: a Fibonacci lattice on the 2-sphere for colours, random ones otherwise."""
    if dim != 3:
        directions = rng.standard_normal((count, dim))
        return directions / np.linalg.norm(directions, axis=1, keepdims=True)
    k = np.arange(count) + 0.5
    polar, azimuth = np.arccos(1 - 2 * k / count), np.pi * (1 + 5 ** 0.5) * k
    return np.stack([np.cos(azimuth) * np.sin(polar), np.sin(azimuth) * np.sin(polar), np.cos(polar)], axis=1)


def weighted_quantiles(values: np.ndarray, weights: np.ndarray, levels: np.ndarray) -> np.ndarray:
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    return np.interp(levels * cumulative[-1], cumulative, values[order])


def fit_ridges(points: np.ndarray, targets: np.ndarray, weights: np.ndarray, directions: int, knots: int,
               sharpness: float, rng: np.random.Generator) -> NumpyCMGN:
    """The one-layer C-MGN closest to ``targets`` at ``points`` (weighted least squares, gains >= 0).

    Each of ``directions`` unit vectors e carries ``knots`` units softplus(s (e.x - t)) / s * e, t at
    the weighted quantiles j / (knots + 1) of e.x; the bias is free. Returns the network of the units
    with a non-zero gain.
    """
    from scipy.optimize import nnls

    n, dim = points.shape
    points64, weights64 = points.astype(np.float64), weights.astype(np.float64)
    unit = sphere_directions(directions, dim, rng)
    levels = np.arange(1, knots + 1) / (knots + 1)
    projections = points64 @ unit.T  # (n, directions)
    kinks = np.stack([weighted_quantiles(projections[:, k], weights64, levels) for k in range(directions)])
    shape = softplus_and_sigmoid(sharpness * (projections[:, :, None] - kinks[None]))[0] / sharpness
    # column (k, j), row (i, axis): the unit's output along each axis at each point
    columns = (shape[:, None, :, :] * unit.T[None, :, :, None]).reshape(n * dim, directions * knots)
    offsets = np.kron(np.ones((n, 1)), np.eye(dim))
    design = np.hstack([columns, offsets, -offsets]) * np.repeat(np.sqrt(weights64), dim)[:, None]
    wanted = ((targets - STRICT_EPS * points64) * np.sqrt(weights64)[:, None]).reshape(-1)
    solution, _ = nnls(design, wanted, maxiter=50 * design.shape[1])
    gains = solution[: directions * knots]
    bias = solution[directions * knots: -dim] - solution[-dim:]
    used = np.flatnonzero(gains > 0)
    if not len(used):
        used = np.array([0])
    net = NumpyCMGN(dim=dim, width=len(used), layers=1, sharpness=sharpness)
    direction_of, knot_of = np.divmod(used, knots)
    p = net.params
    p["V"][:] = 0.0
    p["W"][:] = sharpness * unit[direction_of]
    p["layer_bias"][0] = -sharpness * kinks[direction_of, knot_of]
    p["gain_raw"][:] = [inverse_softplus(g / sharpness**2) if g > 0 else OFF_GAIN for g in gains[used]]
    p["bias"][:] = bias
    return net
