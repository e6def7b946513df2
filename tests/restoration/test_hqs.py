"""The splitting solver for inpainting (otmap_cli/restoration/hqs.py): its start, its iteration, its gain."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import restoration

from otmap_cli.restoration import api, hqs, physics

from conftest import natural_crop, shipped_prior
from test_restore import MEAN, STD, gaussian_image, gaussian_prior


def test_fill_holes_reaches_every_hole_and_keeps_the_known_pixels():
    """A constant image is filled with its constant, even inside a box far wider than the first Gaussian;
    kept pixels are returned bit for bit."""
    mask = physics.make_mask(60, 70, mask_ratio=0.6, box=(10, 5, 50, 45), seed=1)
    rng = np.random.default_rng(0)
    y = torch.full((1, 3, 60, 70), 0.3)
    known = torch.from_numpy(rng.random((1, 3, 60, 70)).astype(np.float32))
    m = torch.from_numpy(mask)[None, None]
    filled = hqs.fill_holes(y, m)
    np.testing.assert_allclose(filled.numpy(), 0.3, rtol=1e-5)
    mixed = hqs.fill_holes(known, m)
    assert torch.equal(mixed[m.expand_as(known) > 0], known[m.expand_as(known) > 0])
    assert float(mixed.min()) >= float(known.min()) and float(mixed.max()) <= float(known.max())  # averages


def test_schedule_runs_from_the_start_to_the_noise_level():
    assert hqs.schedule(0.0)[[0, -1]].tolist() == pytest.approx([hqs.SIGMA_START, hqs.SIGMA_END])
    assert hqs.schedule(0.05)[-1] == pytest.approx(0.05)
    assert np.all(np.diff(hqs.schedule(0.0)) < 0)
    assert hqs.schedule(0.5).tolist() == pytest.approx([0.5] * hqs.ITERATIONS)  # never below the noise


def test_iteration_matches_its_closed_form_with_an_exact_gaussian_prior():
    """With the pixel-wise Gaussian prior every iteration is linear per pixel: a missing pixel is its fill
    shrunk by prod_k c_k, c_k = s^2 / (s^2 + sigma_k'^2) (the MMSE denoiser of N(0, s^2) in [-1, 1] units);
    a kept noise-free pixel stays at its value."""
    assert MEAN == 0.0
    clean = gaussian_image(40, 1)
    mask = physics.make_mask(40, 40, mask_ratio=0.5, seed=2)
    y = torch.from_numpy(clean * mask[..., None]).permute(2, 0, 1)[None]
    m = torch.from_numpy(mask)[None, None]
    out = hqs.inpaint(y, m, gaussian_prior, noise_sigma=0.0)
    fill = hqs.fill_holes(2 * y - 1, m)
    shrink = np.prod([STD**2 / (STD**2 + (2 * s) ** 2) for s in hqs.schedule(0.0)])
    missing = m.expand_as(y) < 0.5
    np.testing.assert_allclose((2 * out - 1)[missing].numpy(), (shrink * fill)[missing].numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(out[~missing].numpy(), y[~missing].numpy(), atol=2e-3)


def test_random_holes_beat_biharmonic_with_the_shipped_prior_and_report_progress():
    """The product's choice for random holes (auto = dpir) with the shipped prior: better than
    scikit-image's biharmonic inpainting, one progress tick per prior pass."""
    clean = natural_crop(48)
    y, mask = physics.degrade(clean, "inpaint", noise_sigma=0.005, mask_ratio=0.7, seed=0)
    calls = []
    out = api.restore_rgb(y, "inpaint", mask=mask, noise_sigma=0.005, prior=shipped_prior(),
                          progress=lambda n, total, phase: calls.append((n, total)))
    biharmonic = restoration.inpaint_biharmonic(y, mask == 0, channel_axis=-1)
    assert api.quality(out, clean)["psnr"] > api.quality(biharmonic, clean)["psnr"] + 0.3
    assert calls == [(n, hqs.ITERATIONS) for n in range(hqs.ITERATIONS + 1)]


def test_only_holes_wider_than_the_prior_sees_get_half_resolution_starts():
    """A 64-px box in 256 px (32 px from the border to its centre) gets two half-resolution starts (32 -> 16
    -> 8 px); random holes and images too small to halve get none."""
    box = torch.from_numpy(physics.make_mask(256, 256, box=(96, 96, 64, 64)))[None, None]
    assert hqs.widest_hole(box) == pytest.approx(32, abs=0.5) and hqs.levels(box) == 2
    random = torch.from_numpy(physics.make_mask(256, 256, mask_ratio=0.7, seed=0))[None, None]
    assert hqs.widest_hole(random) < hqs.COARSE_HOLE and hqs.levels(random) == 0
    small = torch.from_numpy(physics.make_mask(60, 60, box=(10, 10, 40, 40)))[None, None]
    assert hqs.widest_hole(small) > hqs.COARSE_HOLE and hqs.levels(small) == 0
    assert hqs.levels(torch.ones(1, 1, 256, 256)) == 0


def test_half_resolution_keeps_a_coarse_pixel_with_half_its_pixels_kept_and_averages_them():
    y = torch.arange(1, 26, dtype=torch.float32).view(1, 1, 5, 5)  # odd sides: the last row and column pool alone
    mask = torch.ones(1, 1, 5, 5)
    mask[..., 0, 0] = mask[..., 0, 1] = mask[..., 1, 0] = 0  # one of four kept: the coarse pixel is a hole
    mask[..., 2, 2] = 0  # three of four kept: kept, their mean
    mask[..., 4, 4] = 0  # the corner pools alone: a hole
    coarse, coarse_mask = hqs.half_resolution(y, mask)
    assert coarse_mask[0, 0].tolist() == [[0, 1, 1], [1, 1, 1], [1, 1, 0]]
    assert coarse[0, 0, 1, 1] == pytest.approx((14 + 18 + 19) / 3)  # pixels (2, 3), (3, 2), (3, 3)
    assert coarse[0, 0, 2, 0] == pytest.approx((21 + 22) / 2) and coarse[0, 0, 0, 0] == 0


def test_a_wide_box_is_started_at_half_resolution_with_progress_over_every_level():
    """With the shipped prior a 40-px box in a 64-px crop gets one half-resolution start: the progress
    counts both resolutions' passes, the kept pixels stay, and the box is closer to the photo
    than the normalised-convolution fill it would otherwise start from."""
    clean = natural_crop(64)
    mask = physics.make_mask(64, 64, box=(12, 12, 40, 40))
    y = clean * mask[..., None]
    calls = []
    out = api.restore_rgb(y, "inpaint", mask=mask, noise_sigma=0.0, prior=shipped_prior(),
                          progress=lambda n, total, phase: calls.append((n, total)))
    passes = hqs.ITERATIONS + hqs.COARSE_FINE_ITERATIONS  # 32 x 32 first, then 64 x 64 from its result
    assert hqs.passes(torch.from_numpy(mask)[None, None]) == passes
    assert calls == [(n, passes) for n in range(passes + 1)]
    np.testing.assert_allclose(out[mask > 0.5], clean[mask > 0.5], atol=2e-3)
    fill = hqs.fill_holes(torch.from_numpy(y).permute(2, 0, 1)[None], torch.from_numpy(mask)[None, None])
    fill = fill[0].permute(1, 2, 0).numpy()
    hole = mask < 0.5
    assert np.mean((out - clean)[hole] ** 2) < 0.8 * np.mean((fill - clean)[hole] ** 2)
