"""Colourisation (restore --task colorize, exemplar colorize) and restore's uncertainty, as a library.

The exemplar test has a known answer: two textures with distinct colours, the same textures in grey
(another random draw, swapped sides), so only the texture feature can tell them apart.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import natural_crop, shipped_prior, tiny_prior
from otmap_cli.errors import InputError
from otmap_cli.io import Image
from otmap_cli.restoration import api, physics
from otmap_cli.restoration.colorize import box_mean, colorize, guided_filter

torch.set_num_threads(1)


def grey_of(rgb: np.ndarray) -> np.ndarray:
    return np.repeat(physics.luma(rgb)[..., None], 3, axis=2)


def chroma_spread(rgb: np.ndarray) -> float:
    return float(np.std(rgb - rgb.mean(axis=2, keepdims=True)))


# --- restore --task colorize -------------------------------------------------------------------

def test_keep_luma_sets_the_luma_exactly_and_keeps_in_gamut_hues():
    rng = np.random.default_rng(0)
    rgb = rng.random((20, 30, 3)).astype(np.float32)
    target = rng.random((20, 30)).astype(np.float32)
    out = api.keep_luma(rgb, target)
    assert np.abs(physics.luma(out) - target).max() < 1e-5
    assert out.min() >= 0 and out.max() <= 1
    # where the shift stays in [0, 1] the channel differences (the hue and saturation) are untouched
    shifted = rgb + (target - physics.luma(rgb))[..., None]
    inside = ((shifted >= 0) & (shifted <= 1)).all(axis=2)
    assert inside.mean() > 0.2
    assert np.allclose((out - out.mean(2, keepdims=True))[inside], (rgb - rgb.mean(2, keepdims=True))[inside],
                       atol=1e-5)


def test_the_luma_of_a_grey_image_is_its_grey_value_exactly():
    clean = natural_crop(24)
    grey = grey_of(clean)
    assert np.array_equal(physics.luma(grey), grey[..., 0])  # the weighted sum alone is off by 6e-8
    assert np.abs(physics.luma(clean) - clean @ np.array(physics.LUMA_WEIGHTS)).max() < 1e-6


def test_degrade_colorize_gives_the_luma_as_a_grey_image():
    clean = natural_crop(24)
    grey, mask = physics.degrade(clean, "colorize", noise_sigma=0)
    assert mask is None and grey.shape == clean.shape
    assert np.allclose(grey, grey_of(clean), atol=1e-6)


def test_colorize_with_the_shipped_prior_adds_colour_and_keeps_the_luma():
    prior = shipped_prior()
    clean = natural_crop(32)
    grey = grey_of(clean)
    out = api.restore_rgb(grey, "colorize", steps=12, prior=prior)
    assert out.shape == clean.shape and out.dtype == np.float32
    assert np.abs(physics.luma(out) - grey[..., 0]).max() < 1e-4  # the luma bound
    assert chroma_spread(out) > 0.01  # colour, not grey (grey in grey out does not apply here)
    # a colour input is colourised from its luma: the same answer as for its grey version
    assert np.allclose(api.restore_rgb(clean, "colorize", steps=12, prior=prior), out, atol=2e-3)  # within half an 8-bit level


def test_colorize_tiles_turn_one_channel_into_three():
    """Above the tile size the blend must allocate three output channels for a one-channel y."""
    from otmap_cli.restoration import tiles

    y = torch.rand(1, 1, 40, 56)
    out = tiles.tiled(y, 1, 4, lambda box, i, n: y[..., box[0]:box[1], box[2]:box[3]].repeat(1, 3, 1, 1),
                      tile_pixels=100, tile=24)
    assert out.shape == (1, 3, 40, 56) and torch.allclose(out, y.repeat(1, 3, 1, 1), atol=1e-6)


# --- exemplar colorize --------------------------------------------------------------------------

def two_textures(seed: int, swap: bool) -> tuple[np.ndarray, np.ndarray]:
    """A flat orange half (L* 55) beside a blue half of noise texture (L* 55 +- 12): (rgb, texture mask)."""
    from skimage.color import lab2rgb

    rng = np.random.default_rng(seed)
    lightness = np.full((40, 56), 55.0)
    texture = np.zeros((40, 56), bool)
    texture[:, 28:] = True
    texture = ~texture if swap else texture
    lightness[texture] += 12 * rng.standard_normal(texture.sum())
    a, b = np.where(texture, 0.0, 40.0), np.where(texture, -40.0, 20.0)
    return np.clip(lab2rgb(np.stack([lightness, a, b], axis=-1)), 0, 1).astype(np.float32), texture


def test_exemplar_colorize_recovers_the_chroma_of_matching_textures():
    from skimage.color import rgb2lab

    reference, _ = two_textures(1, swap=False)
    truth, texture = two_textures(2, swap=True)
    grey = Image(rgb=grey_of(truth))
    out = colorize(grey, Image(rgb=reference), samples=400)
    lab, truth_lab = rgb2lab(out.rgb), rgb2lab(truth)
    inner = box_mean(texture.astype(float), 3)  # away from the seam, where the window straddles both
    for region in (inner == 1, inner == 0):
        error = np.abs(lab[region][:, 1:].mean(0) - truth_lab[region][:, 1:].mean(0))
        assert error.max() < 6, error  # a*, b* within 6 units of 40 to 80 units of separation
    assert np.abs(lab[..., 0] - rgb2lab(grey.rgb)[..., 0]).mean() < 0.5  # L* kept


def test_exemplar_colorize_refuses_a_grey_reference_and_bad_options():
    grey = Image(rgb=np.full((8, 8, 3), 0.5, np.float32))
    with pytest.raises(InputError, match="has no colour"):
        colorize(grey, grey)
    with pytest.raises(InputError, match="samples"):
        colorize(grey, grey, samples=3)
    with pytest.raises(InputError, match="smoothing"):
        colorize(grey, grey, smoothing=0)


def test_box_mean_and_guided_filter():
    rng = np.random.default_rng(0)
    plane = rng.random((9, 11))
    assert box_mean(plane, 1)[4, 5] == pytest.approx(plane[3:6, 4:7].mean())
    assert box_mean(plane, 2)[0, 0] == pytest.approx(np.pad(plane, 2, mode="edge")[:5, :5].mean())
    # a step edge in the guide keeps a step in the filtered source; noise on the flat parts is smoothed
    guide = np.zeros((30, 30))
    guide[:, 15:] = 1
    source = guide * 40 + rng.standard_normal((30, 30))
    out = guided_filter(guide, source, radius=4)
    assert out[:, 17:].mean() - out[:, :13].mean() == pytest.approx(40, abs=1)
    assert out[:, :13].std() < 0.5 * source[:, :13].std()


# --- uncertainty --------------------------------------------------------------------------------

def test_uncertainty_is_the_spread_of_pnpflow_runs():
    image = Image(rgb=natural_crop(16))
    mean, std = api.restore_with_uncertainty(image, "denoise", runs=3, steps=3, noise_sigma=0.1,
                                             prior=tiny_prior())
    assert std.shape == (16, 16) and std.dtype == np.float32 and float(std.min()) >= 0 and float(std.mean()) > 0
    runs = [api.restore_image(image, "denoise", steps=3, noise_sigma=0.1, prior=tiny_prior(), seed=k,
                              solver="pnp-flow").rgb for k in range(3)]
    assert np.allclose(mean.rgb, np.mean(runs, axis=0), atol=1e-6)
    assert np.allclose(std, np.sqrt(np.var(runs, axis=0, ddof=1).mean(axis=2)), atol=1e-6)


@pytest.mark.parametrize("solver", ["dpir", "mmse"])
def test_uncertainty_refuses_deterministic_solvers(solver):
    with pytest.raises(InputError, match=f"the {solver} solver is deterministic"):
        api.restore_with_uncertainty(Image(rgb=natural_crop(8)), "denoise", runs=2, solver=solver,
                                     prior=tiny_prior())


def test_uncertainty_needs_two_runs():
    with pytest.raises(InputError, match="at least 2"):
        api.restore_with_uncertainty(Image(rgb=natural_crop(8)), "denoise", runs=1, prior=tiny_prior())


def test_heat_map_runs_from_black_to_pale_yellow():
    values = np.linspace(0, 2, 50).reshape(5, 10)
    rgb = api.heat_map(values).rgb
    assert rgb.shape == (5, 10, 3)
    assert np.allclose(rgb[0, 0], np.array([0, 0, 4]) / 255) and np.allclose(rgb[-1, -1], np.array([252, 255, 164]) / 255)
    assert np.all(np.diff(rgb.sum(axis=2).ravel()) > 0)  # brighter with the value
