"""Blind noise level (restore without --noise-sigma) and what a plain denoise imports."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, natural_crop, run_cli, shipped_prior

from otmap_cli.restoration import api, physics
from otmap_cli.restoration.options import TASK_DEFAULTS


def noisy(clean: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    """Gaussian noise, clipped and quantised to 8 bits as in a PNG a user would give."""
    y = clean + np.random.default_rng(seed).normal(0, sigma, clean.shape)
    return (np.round(np.clip(y, 0, 1) * 255) / 255).astype(np.float32)


@pytest.mark.parametrize("sigma", [5 / 255, 15 / 255, 25 / 255])
def test_noise_estimate_on_synthetic_noise(sigma):
    estimate = physics.estimate_noise_sigma(noisy(natural_crop(128), sigma))
    assert estimate == pytest.approx(sigma, abs=1.5 / 255)


def test_noise_estimate_of_a_clean_image_is_small():
    assert physics.estimate_noise_sigma(noisy(natural_crop(128), 0.0)) < 1.5 / 255


def test_noise_estimate_of_a_grey_image():
    grey = np.repeat(natural_crop(128).mean(axis=2, keepdims=True), 3, axis=2)
    y = np.repeat(noisy(grey[..., :1], 10 / 255), 3, axis=2)
    assert physics.estimate_noise_sigma(y) == pytest.approx(10 / 255, abs=1.5 / 255)


def test_inpainting_estimates_from_kept_patches_only():
    clean = natural_crop(128)
    box = physics.make_mask(128, 128, box=(40, 40, 48, 48))
    y = noisy(clean, 15 / 255) * box[..., None]  # the hole is black: no noise there
    assert api.noise_level(y, "inpaint", box) == (pytest.approx(15 / 255, abs=1.5 / 255), "estimated")
    random_holes = physics.make_mask(128, 128, mask_ratio=0.7)
    assert api.noise_level(y * random_holes[..., None], "inpaint", random_holes) == (
        TASK_DEFAULTS["inpaint"]["noise_sigma"], "default")


def test_too_small_for_an_estimate_falls_back_to_the_default():
    assert physics.estimate_noise_sigma(natural_crop(6)) is None
    assert api.noise_level(natural_crop(6), "denoise") == (TASK_DEFAULTS["denoise"]["noise_sigma"], "default")


def test_cli_denoise_of_a_clean_photo_leaves_it_unchanged_and_imports_no_deepinv(tmp_path):
    """A clean photo through a plain ``otmap restore --task denoise`` (no sigma given): >= 40 dB against
    the input, the estimate reported in --json, and deepinv never imported (it is not needed)."""
    from PIL import Image as PILImage

    from otmap_cli.io import read_image

    shipped_prior()
    clean = tmp_path / "clean.png"
    PILImage.fromarray((natural_crop(96) * 255).round().astype(np.uint8)).save(clean)
    out = tmp_path / "out.png"
    script = ("import sys; from otmap_cli.cli import main\ncode = 0\n"
              "try:\n    main()\nexcept SystemExit as exit:\n    code = exit.code\n"
              "print(json.dumps({'deepinv': 'deepinv' in sys.modules, 'code': code}), file=sys.stderr)")
    args = ["restore", str(clean), "--task", "denoise", "-o", str(out), "--json"]
    proc = subprocess.run([sys.executable, "-c", "import json\n" + script, *args], capture_output=True, cwd=ROOT,
                          timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr.decode()
    status = json.loads(proc.stderr.decode().strip().splitlines()[-1])
    assert status == {"deepinv": False, "code": 0}
    record = json.loads(proc.stdout.decode())["results"][0]
    assert record["noise_sigma_source"] == "estimated" and record["noise_sigma"] < 2 / 255
    assert "noise sigma" in proc.stderr.decode()
    mse = float(np.mean((read_image(out).rgb - read_image(clean).rgb) ** 2))
    assert -10 * math.log10(max(mse, 1e-12)) >= 40


def test_cli_given_sigma_is_reported_as_given(tmp_path):
    from PIL import Image as PILImage

    shipped_prior()
    clean = tmp_path / "clean.png"
    PILImage.fromarray((natural_crop(32) * 255).round().astype(np.uint8)).save(clean)
    proc = run_cli("--quiet", "restore", str(clean), "--task", "denoise", "--noise-sigma", "0.02",
                   "-o", str(tmp_path / "out.png"), "--json")
    assert proc.returncode == 0, proc.stderr.decode()
    record = json.loads(proc.stdout.decode())["results"][0]
    assert (record["noise_sigma"], record["noise_sigma_source"]) == (0.02, "given")
