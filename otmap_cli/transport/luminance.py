"""``--preserve-luminance``: the map's colour (CIELAB a*, b*) at the source's lightness (L*).

The output pixel is Lab^-1(L*(x), a*(T(x)), b*(T(x))): a function of the input colour alone, so a
3D LUT holds it and ``--lut``/``--save-map`` reproduce it. Since T pushes the source's colours
onto the style's, the (a*, b*) of T(x) are distributed as the style's (a*, b*); only the pairing
with lightness changes. That pairing can leave the sRGB gamut (a saturated yellow taken to the
lightness of a shadow), so such a pixel's chroma is reduced at constant L* and hue angle until it
fits ("straight chroma clipping" towards the grey of the same lightness; Morovic, Color Gamut
Mapping, Wiley 2008), found by bisection. Why L* and not a luma projection:
docs/decisions.md "Colour only".

sRGB <-> CIELAB as in scikit-image (IEC 61966-2-1 sRGB, D65, 2 degree observer; CIE 15:2004
L*a*b*); the inverse is written out here because ``skimage.color.lab2rgb`` clips, and the gamut
test needs the linear RGB before any clipping.
"""

from __future__ import annotations

import numpy as np

_DELTA = 6 / 29
_WHITE = np.array([0.95047, 1.0, 1.08883])  # D65, 2 degrees (skimage's xyz_ref_white)
_BISECTIONS = 20  # chroma scale to 1e-6: far below one 16-bit level
_TOLERANCE = 1e-7


def _lab_to_linear_rgb(lab: np.ndarray) -> np.ndarray:
    """Linear sRGB of (n, 3) L*a*b* values, not clipped (outside [0, 1] = outside the gamut)."""
    from skimage.color.colorconv import rgb_from_xyz

    fy = (lab[:, 0] + 16) / 116
    f = np.stack([fy + lab[:, 1] / 500, fy, fy - lab[:, 2] / 200], axis=1)
    xyz = np.where(f > _DELTA, f ** 3, 3 * _DELTA**2 * (f - 4 / 29)) * _WHITE
    return xyz @ rgb_from_xyz.T


def _encode_srgb(linear: np.ndarray) -> np.ndarray:
    linear = np.clip(linear, 0, 1)
    return np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)


def _in_gamut(lab: np.ndarray) -> np.ndarray:
    linear = _lab_to_linear_rgb(lab)
    return ((linear >= -_TOLERANCE) & (linear <= 1 + _TOLERANCE)).all(1)


def keep_luminance(source: np.ndarray, mapped: np.ndarray) -> np.ndarray:
    """(n, 3) sRGB colours with the L* of ``source`` and the a*, b* of ``mapped`` (chroma reduced
    at constant L* and hue where that colour is outside the sRGB gamut); float32."""
    from skimage.color import rgb2lab

    lightness = rgb2lab(np.clip(source, 0, 1).astype(np.float64))[:, 0]
    chroma = rgb2lab(np.clip(mapped, 0, 1).astype(np.float64))[:, 1:]
    lab = np.concatenate([lightness[:, None], chroma], axis=1)
    outside = np.flatnonzero(~_in_gamut(lab))
    if len(outside):  # bisection on the chroma scale s: s = 0 (grey at that L*) is always inside
        low, high = np.zeros(len(outside)), np.ones(len(outside))
        for _ in range(_BISECTIONS):
            middle = 0.5 * (low + high)
            fits = _in_gamut(np.concatenate([lightness[outside, None], chroma[outside] * middle[:, None]], axis=1))
            low, high = np.where(fits, middle, low), np.where(fits, high, middle)
        lab[outside, 1:] *= low[:, None]
    return _encode_srgb(_lab_to_linear_rgb(lab)).astype(np.float32)
