"""Pitié's iterative distribution transfer (IDT), the N-dimensional pdf transfer baseline.

F. Pitié, A. Kokaram, R. Dahyot, "N-Dimensional Probability Density Function Transfer and its
Application to Colour Transfer", ICCV 2005; "Automated colour grading using colour distribution
transfer", CVIU 2007 (Sec. 3): repeat {draw a random rotation R; match, along each rotated axis, the
1-D distribution of the source to that of the style; rotate back}. The 1-D matching is the sort-based
monotone rearrangement (sort once, ``np.interp`` into the style's quantiles), on the full pixel sets.
"""

from __future__ import annotations

import numpy as np


def random_rotation(rng: np.random.Generator, dim: int = 3) -> np.ndarray:
    """A Haar-random orthogonal matrix (QR of a Gaussian matrix, signs fixed by R's diagonal)."""
    q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
    return q * np.sign(np.diag(r))


def match_1d(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Each value replaced by the reference quantile of its rank (the 1-D optimal transport map)."""
    order = np.argsort(values, kind="stable")
    levels = (np.arange(len(values)) + 0.5) / len(values)
    ref_sorted = np.sort(reference)
    ref_levels = (np.arange(len(reference)) + 0.5) / len(reference)
    matched = np.empty_like(values)
    matched[order] = np.interp(levels, ref_levels, ref_sorted)
    return matched


def idt_transfer(source: np.ndarray, style: np.ndarray, iterations: int = 20, seed: int = 0) -> np.ndarray:
    """Re-colour an (H, W, 3) image in [0, 1] with the colours of ``style`` (any shape (..., 3)); clipped."""
    rng = np.random.default_rng(seed)
    x = source.reshape(-1, 3).astype(np.float64)
    y = style.reshape(-1, 3).astype(np.float64)
    for _ in range(iterations):
        rotation = random_rotation(rng)
        px, py = x @ rotation, y @ rotation
        moved = np.stack([match_1d(px[:, k], py[:, k]) for k in range(3)], axis=1)
        x = x + (moved - px) @ rotation.T
    return np.clip(x, 0, 1).reshape(source.shape).astype(np.float32)
