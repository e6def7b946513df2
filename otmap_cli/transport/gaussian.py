"""The closed-form Brenier map between two Gaussians (the "MKL" colour transfer of Pitie & Kokaram 2007).

For N(m1, S1) -> N(m2, S2) the optimal map for the squared Euclidean cost is affine
(Dowson & Landau 1982; Peyre & Cuturi, Computational OT, Remark 2.31):

    T(x) = m2 + A (x - m1),   A = S1^{-1/2} (S1^{1/2} S2 S1^{1/2})^{1/2} S1^{-1/2},

A symmetric positive definite. It matches only means and covariances, which is why it is the
baseline every learned map must beat, and the initialisation of every fit here.
"""

from __future__ import annotations

import numpy as np

_RIDGE = 1e-6


def _sym_power(matrix: np.ndarray, power: float) -> np.ndarray:
    evals, evecs = np.linalg.eigh(0.5 * (matrix + matrix.T))
    return evecs @ np.diag(np.clip(evals, _RIDGE, None) ** power) @ evecs.T


def moments(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of an (n, d) sample, in float64, with a tiny ridge (flat images)."""
    x = np.asarray(samples, dtype=np.float64)
    mean = x.mean(0)
    centred = x - mean
    cov = centred.T @ centred / max(len(x) - 1, 1)
    return mean, cov + _RIDGE * np.eye(x.shape[1])


def gaussian_brenier(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(A, b) with T(x) = x @ A + b the Gaussian Brenier map fitted to two (n, d) samples (A symmetric);
    float32 arrays (CPU torch tensors are accepted as input)."""
    m1, s1 = moments(source)
    m2, s2 = moments(target)
    root = _sym_power(s1, 0.5)
    inv_root = _sym_power(s1, -0.5)
    matrix = inv_root @ _sym_power(root @ s2 @ root, 0.5) @ inv_root
    matrix = 0.5 * (matrix + matrix.T)
    offset = m2 - m1 @ matrix
    return matrix.astype(np.float32), offset.astype(np.float32)
