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
