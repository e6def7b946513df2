"""Re-colouring a region (``--mask``, ``--style-mask``, ``--feather``): the fit is the Brenier map between
the two regions' colours, the feather ramps as documented, and everything outside it is untouched."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import SAMPLES, invoke
from otmap_cli.errors import InputError
from otmap_cli.io import Image, read_image, write_image
from otmap_cli.transport.colormap import apply_map
from otmap_cli.transport.fit import FitSettings
from otmap_cli.transport.recolor import recolor
from otmap_cli.transport.regions import feather_weights, map_region, read_mask, region_weights

FAST = FitSettings(steps=60, batch=1024)

# two Gaussian colour clouds per image: (mean, Cholesky factor of the covariance)
CLOUDS = {
    "source_in": (np.array([0.35, 0.5, 0.6]), np.array([[0.07, 0, 0], [0.03, 0.06, 0], [0.01, 0.02, 0.05]])),
    "source_out": (np.array([0.8, 0.2, 0.2]), np.eye(3) * 0.04),
    "style_in": (np.array([0.6, 0.45, 0.3]), np.array([[0.05, 0, 0], [-0.02, 0.08, 0], [0.02, 0.01, 0.06]])),
    "style_out": (np.array([0.1, 0.2, 0.9]), np.eye(3) * 0.03),
}


def _cloud(name: str, shape: tuple[int, int], rng) -> np.ndarray:
    mean, factor = CLOUDS[name]
    return (mean + rng.standard_normal((*shape, 3)) @ factor.T).astype(np.float32)


def _closed_form(x: np.ndarray) -> np.ndarray:
    """The Brenier map N(m1, S1) -> N(m2, S2) between the two masked clouds (Peyre & Cuturi, Remark 2.31)."""
    (m1, c1), (m2, c2) = CLOUDS["source_in"], CLOUDS["style_in"]
    s1, s2 = c1 @ c1.T, c2 @ c2.T

    def power(m, p):
        e, v = np.linalg.eigh(m)
        return v @ np.diag(e**p) @ v.T

    a = power(s1, -0.5) @ power(power(s1, 0.5) @ s2 @ power(s1, 0.5), 0.5) @ power(s1, -0.5)
    return (x - m1) @ a + m2


@pytest.fixture(scope="module")
def two_region_pair():
    """Source: the left 60 columns one cloud, the rest another; style: the top 50 rows one cloud, the rest
    another. The masks pick the first cloud of each."""
    rng = np.random.default_rng(0)
    src = np.concatenate([_cloud("source_in", (80, 60), rng), _cloud("source_out", (80, 60), rng)], axis=1)
    sty = np.concatenate([_cloud("style_in", (50, 100), rng), _cloud("style_out", (50, 100), rng)], axis=0)
    mask, style_mask = np.zeros((80, 120), np.float32), np.zeros((100, 100), np.float32)
    mask[:, :60], style_mask[:50] = 1, 1
    return Image(rgb=np.clip(src, 0, 1)), Image(rgb=np.clip(sty, 0, 1)), mask, style_mask


def _rmse_to_closed_form(src: Image, out: Image) -> float:
    x, y = src.rgb[:, :60].reshape(-1, 3), out.rgb[:, :60].reshape(-1, 3)
    expected = _closed_form(x)
    inside = ((expected > 0.01) & (expected < 0.99)).all(1) & ((x > 0.005) & (x < 0.995)).all(1)
    return float(np.sqrt(((y[inside] - expected[inside]) ** 2).mean()))


def test_masked_fit_is_the_brenier_map_between_the_masked_clouds(two_region_pair):
    src, sty, mask, style_mask = two_region_pair
    out, colour_map, _ = recolor(src, sty, FAST, mask=mask, style_mask=style_mask, feather=0)
    assert colour_map.info["masked"] and colour_map.info["style_masked"]
    assert _rmse_to_closed_form(src, out) < 0.01
    np.testing.assert_array_equal(out.rgb[:, 60:], src.rgb[:, 60:])  # feather 0: the rest untouched
    np.testing.assert_array_equal(apply_map(colour_map, src, mask=mask, feather=0).rgb, out.rgb)


def test_without_the_masks_the_map_is_not_that_map(two_region_pair):
    """The control that makes the test above able to fail: the whole-image fit mixes in the other clouds."""
    src, sty, _, _ = two_region_pair
    out, _, _ = recolor(src, sty, FAST)
    assert _rmse_to_closed_form(src, out) > 0.1


def test_feather_ramp_is_a_smoothstep_of_the_distance_and_zero_beyond():
    region = np.zeros((41, 41), bool)
    region[20, :] = True  # a horizontal line: distance = row offset
    weights = feather_weights(region, 8)
    column = weights[:, 5]
    assert column[20] == 1 and (column[28:] == 0).all() and (column[:13] == 0).all()
    t = 1 - np.arange(1, 8) / 8
    np.testing.assert_allclose(column[21:28], t * t * (3 - 2 * t), atol=1e-6)
    assert np.array_equal(feather_weights(region, 0), region.astype(np.float32))


def test_map_region_copies_uncovered_pixels_and_blends_the_rest():
    rgb = np.random.default_rng(1).random((6, 5, 3)).astype(np.float32)
    weights = np.zeros((6, 5), np.float32)
    weights[2, 1], weights[3, 3] = 1.0, 0.25
    out = map_region(lambda x: 1 - x, rgb, weights)
    np.testing.assert_array_equal(out[weights == 0], rgb[weights == 0])
    np.testing.assert_array_equal(out[2, 1], 1 - rgb[2, 1])
    np.testing.assert_allclose(out[3, 3], 0.75 * rgb[3, 3] + 0.25 * (1 - rgb[3, 3]), atol=1e-7)


def test_masks_of_the_wrong_size_or_empty_are_refused():
    image = Image(rgb=np.zeros((30, 40, 3), np.float32), name="photo")
    with pytest.raises(InputError, match=r"is 10x20 pixels but the image photo is 40x30"):
        region_weights(np.ones((20, 10)), image)
    with pytest.raises(InputError, match="selects no pixel"):
        region_weights(np.full((30, 40), 0.5), image)  # 50 % grey is not white


def test_mask_files_use_alpha_if_transparent_else_luminance(tmp_path):
    from PIL import Image as PILImage

    grey = np.tile(np.linspace(0, 255, 16).astype(np.uint8), (4, 1))
    PILImage.fromarray(grey, "L").save(tmp_path / "grey.png")
    np.testing.assert_allclose(read_mask(tmp_path / "grey.png"), grey / 255, atol=1e-6)
    rgba = np.zeros((4, 16, 4), np.uint8)
    rgba[..., 3] = grey  # black paint, opacity = the mask
    PILImage.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    np.testing.assert_allclose(read_mask(tmp_path / "alpha.png"), grey / 255, atol=1e-6)


# ----------------------------------------------------------------------------- the command line

def _rectangle_mask(path, size, box):
    from PIL import Image as PILImage

    width, height = size
    mask = np.zeros((height, width), np.uint8)
    top, bottom, left, right = box
    mask[top:bottom, left:right] = 255
    PILImage.fromarray(mask).save(path)


@pytest.mark.parametrize("bit_depth", [8, 16])
def test_cli_mask_leaves_everything_outside_the_feather_byte_identical(tmp_path, bit_depth):
    day = read_image(SAMPLES / "day.jpg")
    rgb = day.rgb[::2, ::2] if bit_depth == 8 else np.clip(day.rgb[::2, ::2] + 1 / 3000, 0, 1)  # 200 x 150
    alpha = np.linspace(0.2, 1, rgb.shape[1], dtype=np.float32)[None].repeat(rgb.shape[0], 0)
    src = tmp_path / "src.png"
    write_image(Image(rgb=rgb, alpha=alpha, bit_depth=bit_depth), src)
    _rectangle_mask(tmp_path / "m.png", (200, 150), (40, 90, 60, 140))
    out = tmp_path / "out.png"
    proc = invoke("-q", "recolor", str(src), str(SAMPLES / "sunset.jpg"), "--mask", str(tmp_path / "m.png"),
                  "--feather", "6", "-o", str(out), "--steps", "20")
    assert proc.exit_code == 0, proc.stderr
    before, after = read_image(src), read_image(out)
    assert after.bit_depth == bit_depth
    far = np.ones((150, 200), bool)
    far[40 - 6:90 + 6, 60 - 6:140 + 6] = False  # every pixel left is >= 6 pixels from the rectangle
    np.testing.assert_array_equal(after.rgb[far], before.rgb[far])  # equal floats = equal 8/16-bit codes
    np.testing.assert_array_equal(after.alpha, before.alpha)
    changed = np.abs(after.rgb - before.rgb).max(-1) > 2 / 255
    assert changed[40:90, 60:140].mean() > 0.8
    assert changed[40:90, 140:146].any() and not changed[40:90, 146:].any()  # the feather fades out


def test_cli_apply_with_the_mask_reproduces_recolor(tmp_path):
    _rectangle_mask(tmp_path / "m.png", (400, 300), (150, 300, 0, 400))
    out, saved, again = tmp_path / "out.png", tmp_path / "map.safetensors", tmp_path / "again.png"
    proc = invoke("-q", "recolor", str(SAMPLES / "day.jpg"), str(SAMPLES / "sunset.jpg"), "--mask",
                  str(tmp_path / "m.png"), "-o", str(out), "--save-map", str(saved), "--steps", "20")
    assert proc.exit_code == 0, proc.stderr
    proc = invoke("-q", "apply", str(saved), str(SAMPLES / "day.jpg"), "--mask", str(tmp_path / "m.png"), "-o",
                  str(again))
    assert proc.exit_code == 0, proc.stderr
    np.testing.assert_array_equal(read_image(again).rgb, read_image(out).rgb)


def test_cli_mask_errors_are_clear(tmp_path):
    _rectangle_mask(tmp_path / "small.png", (10, 10), (0, 5, 0, 5))
    _rectangle_mask(tmp_path / "black.png", (400, 300), (0, 0, 0, 0))
    base = ["recolor", str(SAMPLES / "day.jpg"), str(SAMPLES / "sunset.jpg"), "-o", str(tmp_path / "o.png")]
    wrong = invoke(*base, "--mask", str(tmp_path / "small.png"))
    assert wrong.exit_code == 2 and "10x10" in wrong.stderr and "400x300" in wrong.stderr, wrong.stderr
    empty = invoke(*base, "--mask", str(tmp_path / "black.png"))
    assert empty.exit_code == 2 and "selects no pixel" in empty.stderr
    style = invoke(*base, "--style-mask", str(tmp_path / "small.png"))
    assert style.exit_code == 2 and "--style-mask" in style.stderr and "400x267" in style.stderr
    lone = invoke(*base, "--feather", "3")
    assert lone.exit_code == 2 and "--mask" in lone.stderr
    negative = invoke(*base, "--mask", str(tmp_path / "small.png"), "--feather", "-1")
    assert negative.exit_code == 2 and "feather" in negative.stderr
    missing = invoke(*base, "--mask", str(tmp_path / "nope.png"))
    assert missing.exit_code == 2 and "nope.png" in missing.stderr
    assert "Traceback" not in wrong.stderr + empty.stderr + style.stderr
    assert not (tmp_path / "o.png").exists()
