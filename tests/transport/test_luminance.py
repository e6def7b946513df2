"""``--preserve-luminance``: the source's L* kept, the map's chroma taken (reduced only out of gamut), and
the flag's interplay with --strength, --mask, --lut and --save-map."""

from __future__ import annotations

import numpy as np
import ot
import pytest
from skimage.color import lab2rgb, rgb2lab

from conftest import SAMPLES, invoke
from otmap_cli.io import Image, read_image
from otmap_cli.transport.fit import FitSettings
from otmap_cli.transport.luminance import keep_luminance
from otmap_cli.transport.lut import apply_lut, read_cube
from otmap_cli.transport.recolor import recolor

FAST = FitSettings(steps=40, batch=1024)


def lightness(rgb: np.ndarray) -> np.ndarray:
    return rgb2lab(np.clip(rgb, 0, 1).astype(np.float64))[..., 0]


def chroma_w2(a: np.ndarray, b: np.ndarray, n: int = 1000) -> float:
    rng = np.random.default_rng(0)
    pa, pb = (rgb2lab(x.reshape(-1, 3).astype(np.float64))[:, 1:] for x in (a, b))
    pa, pb = pa[rng.choice(len(pa), n, replace=False)], pb[rng.choice(len(pb), n, replace=False)]
    return float(np.sqrt(ot.emd2([], [], ot.dist(pa, pb))))


@pytest.fixture(scope="module")
def small_pair():
    day, sunset = read_image(SAMPLES / "day.jpg"), read_image(SAMPLES / "sunset.jpg")
    return Image(rgb=day.rgb[::3, ::3].copy()), Image(rgb=sunset.rgb[::3, ::3].copy())  # ~13 000 pixels


def test_keep_luminance_keeps_lightness_and_hue_and_stays_in_gamut():
    rng = np.random.default_rng(0)
    source, mapped = rng.random((20_000, 3)), rng.random((20_000, 3))
    out = keep_luminance(source, mapped)
    assert out.min() >= 0 and out.max() <= 1
    assert np.abs(lightness(out) - lightness(source)).max() < 1e-3
    lab_out, lab_mapped = rgb2lab(out.astype(np.float64)), rgb2lab(mapped)
    chroma_out, chroma_mapped = np.hypot(*lab_out[:, 1:].T), np.hypot(*lab_mapped[:, 1:].T)
    coloured = chroma_out > 1
    hue_out, hue_mapped = (np.arctan2(x[:, 2], x[:, 1]) for x in (lab_out, lab_mapped))
    hue = np.angle(np.exp(1j * (hue_out - hue_mapped)))
    assert np.abs(hue[coloured]).max() < 1e-3
    assert (chroma_out <= chroma_mapped + 1e-3).all()  # chroma is only ever reduced ...
    with pytest.warns(UserWarning):  # skimage clips the out-of-gamut combinations
        combined = lab2rgb(np.concatenate([lab_out[:, :1], lab_mapped[:, 1:]], 1))
    in_gamut = np.abs(combined - out).max(1) < 1e-3
    assert in_gamut.mean() > 0.3  # ... and kept where the combination exists (skimage: no clip needed)
    np.testing.assert_allclose(keep_luminance(source, source), source, atol=1e-5)


def test_recolor_preserve_luminance_bounds_the_lightness_error(small_pair):
    src, sty = small_pair
    out, colour_map, _ = recolor(src, sty, FAST, preserve_luminance=True)
    plain = colour_map.apply(src.rgb, preserve_luminance=False)
    error = np.abs(lightness(out.rgb) - lightness(src.rgb))
    written = np.abs(lightness(np.round(out.rgb * 255) / 255) - lightness(src.rgb))  # as an 8-bit file holds it
    assert error.max() < 0.01 and written.mean() <= 0.5
    assert np.abs(lightness(plain) - lightness(src.rgb)).mean() > 5  # without the flag the tones move
    before, after, unflagged = (chroma_w2(x, sty.rgb) for x in (src.rgb, out.rgb, plain))
    assert after < 0.75 * before and after < 1.1 * unflagged, (before, after, unflagged)  # the colour is the map's


def test_preserve_luminance_with_strength_and_mask(small_pair):
    src, sty = small_pair
    _, colour_map, _ = recolor(src, sty, FAST, preserve_luminance=True)
    zero = colour_map.apply(src.rgb, strength=0.0)
    np.testing.assert_allclose(zero, src.rgb, atol=2e-5)  # strength 0: the source itself
    half = colour_map.apply(src.rgb, strength=0.5)
    geodesic = colour_map.apply(src.rgb, 0.5, preserve_luminance=False)
    expected = keep_luminance(src.rgb.reshape(-1, 3), geodesic.reshape(-1, 3))
    np.testing.assert_allclose(half.reshape(-1, 3), expected, atol=1e-5)  # geodesic first, then L* kept
    mask = np.zeros(src.rgb.shape[:2], np.float32)
    mask[40:, :] = 1
    out, _, _ = recolor(src, sty, colour_map=colour_map, mask=mask, feather=4)  # None: as the map was saved
    np.testing.assert_array_equal(out.rgb[:36], src.rgb[:36])
    assert np.abs(lightness(out.rgb[40:]) - lightness(src.rgb[40:])).max() < 0.01
    assert np.abs(out.rgb[40:] - src.rgb[40:]).mean() > 0.02


def test_cli_lut_and_saved_map_reproduce_preserve_luminance(tmp_path):
    """The output is a function of the input colour, so the exported .cube and the saved map carry the
    flag: `otmap apply` of either gives the flag's picture and keeps L*."""
    out, cube, saved = tmp_path / "out.png", tmp_path / "look.cube", tmp_path / "map.safetensors"
    proc = invoke("-q", "recolor", str(SAMPLES / "day.jpg"), str(SAMPLES / "sunset.jpg"), "--preserve-luminance",
                  "-o", str(out), "--lut", str(cube), "--lut-size", "33", "--save-map", str(saved),
                  "--steps", "20")
    assert proc.exit_code == 0, proc.stderr
    source, result = read_image(SAMPLES / "day.jpg").rgb, read_image(out).rgb
    assert np.abs(lightness(result) - lightness(source)).mean() <= 0.5
    again = invoke("-q", "apply", str(saved), str(SAMPLES / "day.jpg"), "-o", str(tmp_path / "again.png"))
    assert again.exit_code == 0, again.stderr
    np.testing.assert_array_equal(read_image(tmp_path / "again.png").rgb, result)
    via_cube = apply_lut(read_cube(cube), source)
    assert np.abs(via_cube - result).mean() < 2e-3
    assert np.abs(lightness(via_cube) - lightness(source)).mean() < 0.5
