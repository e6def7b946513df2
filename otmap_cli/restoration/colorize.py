"""Exemplar colourisation by optimal transport: the chroma of a reference photo, put where its texture matches.

``otmap colorize GREY --reference COLOUR``. Each pixel gets a feature vector (CIELAB L*, and the mean and
standard deviation of L* in a small window: brightness and texture); the grey image's pixels are
matched to the reference's by an optimal transport plan between a few thousand pixels drawn from each
(exact earth mover's distance, POT's ``ot.emd``, squared Euclidean cost), so that every reference
colour is used in the proportion it has: a matching by nearest neighbours alone would paint the
whole image with the few colours nearest in brightness. The matched samples carry the reference's
(a*, b*); every other pixel takes that of its nearest sample in feature space, and the chroma is
then smoothed by a guided filter with the grey L* as guide (edge-aware: colour stops at edges of
the grey image). The output keeps the input's L* exactly where it is in gamut.

The features follow Welsh, Ashikhmin, Mueller, "Transferring color to greyscale images", SIGGRAPH
2002 (luminance remapping, Sec. 2, and the mean and std of a neighbourhood); the transport plan
replaces their best-match search.
"""

from __future__ import annotations

import numpy as np

from otmap_cli.errors import InputError
from otmap_cli.io import Image

WINDOW = 7  # side of the texture window (pixels)
TEXTURE_WEIGHT = 2.0  # weight of the local std against L* (a texture's std is a few L* units; a step is tens)
SAMPLES = 2000  # pixels drawn from each image for the transport plan (EMD is cubic-ish in this)
EPSILON = 1e-3  # guided-filter regularisation on a guide in [0, 1] (He et al. 2010, Eq. 5)
BATCH = 8192  # pixels per nearest-sample search


def box_mean(plane: np.ndarray, radius: int) -> np.ndarray:
    """Mean over the (2r+1)^2 window around each pixel (edge-replicated), by cumulative sums: O(1) per pixel."""
    padded = np.pad(plane.astype(np.float64), radius + 1, mode="edge")
    sums = padded.cumsum(0).cumsum(1)
    side = 2 * radius + 1
    h, w = plane.shape
    window = (sums[side:side + h, side:side + w] - sums[:h, side:side + w]
              - sums[side:side + h, :w] + sums[:h, :w])
    return window / side ** 2


def guided_filter(guide: np.ndarray, source: np.ndarray, radius: int, epsilon: float = EPSILON) -> np.ndarray:
    """He, Sun, Tang, "Guided image filtering", ECCV 2010, Algorithm 1 (grey guide): q = mean(a) I + mean(b)
    with a = cov(I, p) / (var(I) + eps), b = mean(p) - a mean(I) per window: ``source`` follows the
    edges of ``guide``, and is smoothed where the guide is flat."""
    mean_i, mean_p = box_mean(guide, radius), box_mean(source, radius)
    var_i = box_mean(guide * guide, radius) - mean_i ** 2
    cov = box_mean(guide * source, radius) - mean_i * mean_p
    a = cov / (var_i + epsilon)
    b = mean_p - a * mean_i
    return (box_mean(a, radius) * guide + box_mean(b, radius)).astype(np.float32)


def _features(lightness: np.ndarray) -> np.ndarray:
    """(h w, 3) per-pixel features in L* units: L*, local mean, TEXTURE_WEIGHT x local std."""
    radius = WINDOW // 2
    mean = box_mean(lightness, radius)
    std = np.sqrt(np.maximum(box_mean(lightness ** 2, radius) - mean ** 2, 0))
    return np.stack([lightness, mean, TEXTURE_WEIGHT * std], axis=-1).reshape(-1, 3)


def _nearest(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of the nearest centre of every point (squared Euclidean), in batches to bound memory."""
    norms = (centres ** 2).sum(1)
    out = np.empty(len(points), dtype=np.int64)
    for start in range(0, len(points), BATCH):
        chunk = points[start:start + BATCH]
        out[start:start + BATCH] = np.argmin(norms[None] - 2 * chunk @ centres.T, axis=1)
    return out


def check_options(samples: int, smoothing: int | None) -> None:
    """One-line InputErrors for bad :func:`colorize` options, before any image is read."""
    if isinstance(samples, bool) or not 16 <= samples <= 20_000:
        raise InputError(f"samples must be a whole number from 16 to 20000, got {samples}")
    if smoothing is not None and not 1 <= smoothing <= 1000:
        raise InputError(f"smoothing radius must be from 1 to 1000 pixels, got {smoothing}")


def colorize(grey: Image, reference: Image, *, samples: int = SAMPLES, smoothing: int | None = None,
             seed: int = 0) -> Image:
    """Colour ``grey`` with the colours of ``reference`` (see the module docstring); alpha and metadata of ``grey``.

    ``grey`` may be in colour: only its L* is used (and kept). ``smoothing`` is the guided filter's
    radius in pixels (default: 1/64 of the shorter side, at least 2).

        >>> colour = colorize(read_image("old.png"), read_image("summer.jpg"))  # doctest: +SKIP
    """
    import ot
    from skimage.color import lab2rgb, rgb2lab

    check_options(samples, smoothing)
    h, w = grey.rgb.shape[:2]
    radius = max(2, min(h, w) // 64) if smoothing is None else int(smoothing)
    lightness = rgb2lab(grey.rgb)[..., 0]
    ref_lab = rgb2lab(reference.rgb)
    if float(np.hypot(ref_lab[..., 1], ref_lab[..., 2]).max()) < 1.0:
        raise InputError(f"the reference {reference.name!r} has no colour (it is grey): choose a colour photo")
    # luminance remapping (Welsh et al. Sec. 2): the reference's L* moved to the grey image's mean and spread
    ref_l = ref_lab[..., 0]
    ref_l = (ref_l - ref_l.mean()) * (lightness.std() / max(ref_l.std(), 1e-6)) + lightness.mean()
    grey_features, ref_features = _features(lightness), _features(ref_l)
    ref_chroma = ref_lab[..., 1:].reshape(-1, 2)

    rng = np.random.default_rng(seed)
    pick_g = rng.choice(len(grey_features), min(samples, len(grey_features)), replace=False)
    pick_r = rng.choice(len(ref_features), min(samples, len(ref_features)), replace=False)
    cost = ot.dist(grey_features[pick_g], ref_features[pick_r])  # squared Euclidean
    plan = ot.emd(np.full(len(pick_g), 1 / len(pick_g)), np.full(len(pick_r), 1 / len(pick_r)), cost)
    # barycentric projection: each grey sample's chroma is the plan-weighted mean of its partners'
    sample_chroma = plan @ ref_chroma[pick_r] / plan.sum(axis=1, keepdims=True)

    chroma = sample_chroma[_nearest(grey_features, grey_features[pick_g])].reshape(h, w, 2)
    guide = lightness / 100
    chroma = np.stack([guided_filter(guide, chroma[..., c], radius) for c in range(2)], axis=-1)
    rgb = lab2rgb(np.concatenate([lightness[..., None], chroma], axis=-1))
    return grey.with_rgb(np.clip(rgb, 0, 1))
