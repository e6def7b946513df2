"""Re-colouring a region: mask files, the feathered edge, and mapping only the pixels it covers.

A mask's region is where it is above 50 % (white): the map is fitted on those colours only, and
they are re-coloured fully. Around the region the weight falls from 1 to 0 over ``feather`` pixels
of Euclidean distance (exact distance transform, scipy ``distance_transform_edt``) along a
smoothstep 3t^2 - 2t^3, whose slope is zero at both ends, so neither the region's outline nor the
feather's outer edge shows as a line (a linear ramp leaves Mach bands there). A Gaussian blur of
the mask was not chosen: its tail never reaches zero, and a photographer expects the rest of the
picture untouched. Pixels of weight 0 are copied, not recomputed, so they stay byte-identical
(also in 16 bits): (1 - w) x + w T(x) is computed only where w > 0.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np

from otmap_cli.errors import InputError
from otmap_cli.io import DEFAULT_MAX_PIXELS, Image, read_image

DEFAULT_FEATHER = 8.0  # pixels: hides the edge on a photo without visibly bleeding past the region
MAX_FEATHER = 10_000.0
_REC709 = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)


def read_mask(source: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A mask file as an (H, W) float32 array in [0, 1], white = re-colour.

    Any image otmap reads: its alpha channel if it has one that is not fully opaque (a layer
    painted on transparency), else its luminance (Rec. 709 weights of the stored values, so a
    grey PNG's grey level; colour masks work too).
    """
    image = read_image(source, max_pixels)
    if image.alpha is not None and (image.alpha < 1).any():
        return np.ascontiguousarray(image.alpha, dtype=np.float32)
    return image.rgb @ _REC709


def mask_region(mask: np.ndarray, image: Image, what: str = "the mask", image_label: str | None = None) -> np.ndarray:
    """The region (mask > 0.5) of a mask for ``image``, a bool (H, W) array; InputError if the mask's size
    differs from the image's or it selects no pixel."""
    mask = np.asarray(mask)
    height, width = image.rgb.shape[:2]
    if mask.ndim != 2 or mask.shape != (height, width):
        size = f"{mask.shape[1]}x{mask.shape[0]}" if mask.ndim == 2 else f"of shape {mask.shape}"
        raise InputError(f"{what} is {size} pixels but {image_label or 'the image ' + image.name} is "
                         f"{width}x{height}; draw the mask at the image's size (it is not resized)")
    region = mask > 0.5
    if not region.any():
        raise InputError(f"{what} selects no pixel: none is above 50 % grey (white = re-colour, black = keep)")
    return region


def check_feather(feather: float) -> float:
    if not (math.isfinite(feather) and 0 <= feather <= MAX_FEATHER):
        raise InputError(f"feather must be from 0 to {MAX_FEATHER:g} pixels, got {feather}")
    return feather


def feather_weights(region: np.ndarray, feather: float = DEFAULT_FEATHER) -> np.ndarray:
    """Blend weights (H, W) float32: 1 on ``region``, smoothstep(1 - d / feather) at distance d < feather
    pixels from it, exactly 0 from ``feather`` pixels on."""
    check_feather(feather)
    weights = region.astype(np.float32)
    if feather <= 1:  # every pixel outside is at least 1 pixel away: a hard edge
        return weights
    from scipy.ndimage import distance_transform_edt

    reach = math.ceil(feather)  # pixels farther than this from the region's bounding box get 0 anyway
    rows, cols = np.flatnonzero(region.any(1)), np.flatnonzero(region.any(0))
    top, left = max(rows[0] - reach, 0), max(cols[0] - reach, 0)
    bottom, right = rows[-1] + reach + 1, cols[-1] + reach + 1
    ramp = np.clip(1 - distance_transform_edt(~region[top:bottom, left:right]) / feather, 0, 1).astype(np.float32)
    weights[top:bottom, left:right] = ramp * ramp * (3 - 2 * ramp)
    return weights


def region_weights(mask: np.ndarray, image: Image, feather: float = DEFAULT_FEATHER, what: str = "the mask",
                   image_label: str | None = None) -> np.ndarray:
    """:func:`mask_region` then :func:`feather_weights`: how much of the map each pixel of ``image`` gets."""
    return feather_weights(mask_region(mask, image, what, image_label), feather)


def map_region(mapper: Callable[[np.ndarray], np.ndarray], rgb: np.ndarray, weights: np.ndarray,
               out: np.ndarray | None = None) -> np.ndarray:
    """(1 - w) x + w mapper(x) at the pixels of ``rgb`` (H, W, 3) where w > 0; the others are copied.

    ``mapper`` gets a (1, n, 3) array of the covered pixels (it may map it in place); ``out`` may be
    ``rgb`` itself.
    """
    out = rgb.copy() if out is None else out
    flat_out = out.reshape(-1, 3)
    covered = np.flatnonzero(weights.reshape(-1) > 0)
    colours = rgb.reshape(-1, 3)[covered]
    w = weights.reshape(-1)[covered, None]
    mapped = mapper(colours[None].copy())[0]
    flat_out[covered] = np.where(w >= 1, mapped, colours + w * (mapped - colours))  # inside: as unmasked
    return out
