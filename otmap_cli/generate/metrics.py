"""Sample-quality metrics for MNIST generators, in the features of our own classifier.

* FLD: the Frechet distance |m1 - m2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)) (Dowson & Landau 1982) between
  Gaussian fits of penultimate features -- FID (Heusel et al. 2017) with a domain classifier in
  place of Inception, so its scale is ours: calibrate with real, noisy-real and Gaussian-map rows.
* precision / recall with k-NN balls (Kynkaanniemi et al. 2019, k = 3): the share of fakes inside
  the union of real balls, and of reals inside the union of fake balls.
* mean classifier confidence and the entropy of the predicted-class histogram (ln 10 = 2.303 when
  all digits are equally frequent; mode collapse lowers it).
* memorisation: pixel distance from each sample to its nearest training image, compared with the
  same distance for test images (which the generator cannot have copied).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import torch
from scipy.spatial.distance import cdist


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussian fits of two feature sets (rows are samples).

    tr (S1 S2)^(1/2) is computed as the sum of square roots of the eigenvalues of the symmetric
    PSD matrix S1^(1/2) S2 S1^(1/2) (same spectrum), which stays real and exact where features
    are degenerate (dead ReLU units make S singular and trouble a general sqrtm).
    """
    m1, m2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    evals, evecs = scipy.linalg.eigh(s1)
    root1 = (evecs * np.sqrt(evals.clip(0))) @ evecs.T
    cross = scipy.linalg.eigvalsh(root1 @ s2 @ root1)
    return float(((m1 - m2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(cross.clip(0)).sum())


def _kth_neighbour_radius(x: np.ndarray, k: int) -> np.ndarray:
    d = cdist(x, x)
    return np.partition(d, k, axis=1)[:, k]  # index 0 is the point itself


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019); use equally many reals and fakes."""
    real_radius, fake_radius = _kth_neighbour_radius(real, k), _kth_neighbour_radius(fake, k)
    d = cdist(fake, real)
    precision = float((d <= real_radius[None, :]).any(1).mean())
    recall = float((d <= fake_radius[:, None]).any(0).mean())
    return precision, recall


def confidence(probabilities: np.ndarray) -> float:
    return float(probabilities.max(1).mean())


def class_entropy(labels: np.ndarray, classes: int = 10) -> float:
    """Entropy (nats) of the class histogram: ln(classes) for a uniform one."""
    counts = np.bincount(labels, minlength=classes).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(0.0 - (p * np.log(p)).sum())  # 0.0 - x: no "-0.0" for a single class


def nearest_distances(images: torch.Tensor, bank: torch.Tensor, chunk: int = 500) -> np.ndarray:
    """Pixel L2 distance ([0, 1] units) from each uint8 image to its nearest image in ``bank``."""
    flat_bank = bank.reshape(len(bank), -1).float() / 255
    out = []
    for part in images.reshape(len(images), -1).split(chunk):
        out.append(torch.cdist(part.float() / 255, flat_bank).min(1).values)
    return torch.cat(out).numpy().astype(np.float64)


def memorisation(samples: torch.Tensor, train: torch.Tensor, test: torch.Tensor) -> dict[str, float]:
    """Nearest-training-image distances of samples against those of test images.

    ``ratio`` (median over samples / median over test images) well below 1, or a ``copied``
    share (samples closer than the 1st percentile of test images) well above 0.01, means copying.
    """
    own = nearest_distances(samples, train)
    baseline = nearest_distances(test, train)
    return {"nn_median": float(np.median(own)), "nn_median_test": float(np.median(baseline)),
            "ratio": float(np.median(own) / np.median(baseline)),
            "copied": float((own < np.quantile(baseline, 0.01)).mean())}
