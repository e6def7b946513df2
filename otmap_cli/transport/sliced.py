"""Sliced Wasserstein-2 between two point clouds (Rabin et al. 2011), in NumPy; torch only for autograd fits.

SW2^2 = mean over random directions of the 1-D W2^2 between sorted projections. For two equal-size
uniform samples the optimal 1-D coupling pairs the k-th smallest with the k-th smallest, so each
projected pushed point is regressed onto the target value of its rank. The ranks come from NumPy
(torch.sort was ~30x slower than np.sort here), and POT's general weighted
``sliced_wasserstein_distance`` (quantile functions) was ~40x slower still.
"""

from __future__ import annotations

import numpy as np


def _matched(proj: np.ndarray, target_proj: np.ndarray) -> np.ndarray:
    """Each projected pushed value replaced by the target value of the same rank."""
    order = np.argsort(proj, axis=1)
    matched = np.empty(order.shape, dtype=proj.dtype)
    np.put_along_axis(matched, order, np.sort(target_proj, axis=1), axis=1)
    return matched


class SlicedWasserstein:
    """SW2^2 with fresh random directions at every call (a stochastic loss for the fit)."""

    def __init__(self, projections: int = 64, seed: int = 0):
        self.projections = projections
        self.rng = np.random.default_rng(seed)

    def update(self, pushed, target) -> None:
        """No adversary to train (the ``losses.DistributionLoss`` protocol)."""

    def directions(self, dim: int) -> np.ndarray:
        directions = self.rng.standard_normal((dim, self.projections))
        return directions / np.linalg.norm(directions, axis=0, keepdims=True)

    def value(self, pushed: np.ndarray, target: np.ndarray) -> float:
        n = min(len(pushed), len(target))
        directions = self.directions(pushed.shape[1]).astype(pushed.dtype)
        proj = directions.T @ pushed[:n].T
        return float(np.mean((proj - _matched(proj, directions.T @ target[:n].T)) ** 2))

    def gradient(self, pushed: np.ndarray, target: np.ndarray) -> np.ndarray:
        """d SW2^2 / d pushed, for the hand-written C-MGN fit (``monotone_numpy.cmgn_forward_backward``)."""
        n = min(len(pushed), len(target))
        directions = self.directions(pushed.shape[1]).astype(pushed.dtype)
        proj = directions.T @ pushed[:n].T
        residual = proj - _matched(proj, directions.T @ target[:n].T)
        grad = np.zeros_like(pushed)
        grad[:n] = (2 / residual.size) * (residual.T @ directions.T)
        return grad

    def __call__(self, pushed, target):
        """The loss on torch tensors, differentiable in ``pushed`` (the autograd fits)."""
        import torch

        n = min(len(pushed), len(target))
        directions = torch.from_numpy(self.directions(pushed.shape[1])).to(pushed)
        proj = directions.T @ pushed[:n].T
        target_proj = (directions.T @ target[:n].T).detach()
        if proj.is_cuda:
            order = torch.argsort(proj.detach(), dim=1)
            matched = torch.empty_like(target_proj).scatter_(1, order, torch.sort(target_proj, dim=1).values)
        else:
            matched = torch.from_numpy(_matched(proj.detach().numpy(), target_proj.numpy())).to(proj.dtype)
        return (proj - matched).pow(2).mean()


def sliced_w2(a: np.ndarray, b: np.ndarray, projections: int = 256, seed: int = 0) -> float:
    """Sliced W2 (not squared) on equal-size samples, for quick held-out checks."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.sqrt(SlicedWasserstein(projections, seed).value(a, b)))
