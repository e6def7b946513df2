"""otmap colorize, restore --task colorize and restore --uncertainty as users run them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import invoke, natural_crop, tiny_prior
from otmap_cli.io import read_image
from otmap_cli.restoration.physics import luma


def save(rgb: np.ndarray, path):
    from PIL import Image as PILImage

    PILImage.fromarray((np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)).save(path)
    return path


@pytest.fixture
def weights(tmp_path):
    from otmap_cli.restoration.prior import export_prior

    path = tmp_path / "tiny.safetensors"
    export_prior(tiny_prior(), path, {})
    return path


def test_restore_colorize_of_a_colour_photo_notes_it_and_keeps_its_luma(tmp_path, weights):
    source = save(natural_crop(16), tmp_path / "colour.png")
    out = tmp_path / "out.png"
    proc = invoke("restore", str(source), "--task", "colorize", "--steps", "2", "--weights", str(weights),
                  "-o", str(out))
    assert proc.exit_code == 0, proc.stderr
    assert "is in colour; colourising its luma" in proc.stderr
    rgb, original = read_image(out).rgb, read_image(source).rgb
    assert rgb.shape == (16, 16, 3)
    assert np.abs(luma(rgb) - luma(original)).max() < 1.5 / 255  # exact before 8-bit rounding


def test_restore_uncertainty_writes_a_heat_map_and_its_scale(tmp_path, weights):
    source = save(natural_crop(16), tmp_path / "noisy.png")
    out, std = tmp_path / "out.png", tmp_path / "std.png"
    proc = invoke("restore", str(source), "--task", "denoise", "--noise-sigma", "0.1", "--steps", "2",
                  "--weights", str(weights), "-o", str(out), "--uncertainty", str(std), "--uncertainty-runs", "2",
                  "--json")
    assert proc.exit_code == 0, proc.stderr
    record = json.loads(proc.stdout)["results"][0]
    assert record["solver"] == "pnp-flow"  # auto means PnP-Flow here (denoise's auto, mmse, is deterministic)
    assert record["uncertainty_runs"] == 2 and 0 < record["std_mean"] <= record["std_max"]
    assert read_image(std).size == (16, 16) and read_image(out).size == (16, 16)


@pytest.mark.parametrize("solver", ["dpir", "mmse"])
def test_restore_uncertainty_refuses_deterministic_solvers(tmp_path, solver):
    source = save(natural_crop(16), tmp_path / "noisy.png")
    proc = invoke("restore", str(source), "--task", "denoise", "--solver", solver, "--uncertainty",
                  str(tmp_path / "std.png"), "-o", str(tmp_path / "out.png"))
    assert proc.exit_code == 2 and f"the {solver} solver is deterministic" in proc.stderr, proc.stderr
    assert not (tmp_path / "out.png").exists() and not (tmp_path / "std.png").exists()


def test_restore_uncertainty_with_several_inputs_needs_stem(tmp_path):
    a, b = (save(natural_crop(16), tmp_path / f"{n}.png") for n in "ab")
    proc = invoke("restore", str(a), str(b), "--task", "denoise", "--uncertainty", str(tmp_path / "std.png"),
                  "--out-dir", str(tmp_path / "out"))
    assert proc.exit_code == 2 and "{stem}" in proc.stderr, proc.stderr


def test_restore_uncertainty_will_not_overwrite_an_input(tmp_path):
    source = save(natural_crop(16), tmp_path / "noisy.png")
    proc = invoke("restore", str(source), "--task", "denoise", "--uncertainty", str(source),
                  "-o", str(tmp_path / "out.png"))
    assert proc.exit_code == 2 and "overwrite an input" in proc.stderr, proc.stderr


def test_colorize_command_and_its_errors(tmp_path):
    reference = save(natural_crop(32), tmp_path / "ref.png")
    grey = save(np.repeat(luma(natural_crop(24))[..., None], 3, axis=2), tmp_path / "grey.png")
    proc = invoke("colorize", str(grey), "--reference", str(reference), "--samples", "200", "--json")
    assert proc.exit_code == 0, proc.stderr
    out = tmp_path / "grey_colorized.png"
    assert json.loads(proc.stdout)["results"][0]["output"] == str(out)
    rgb = read_image(out).rgb
    assert rgb.shape == (24, 24, 3) and float(np.std(rgb - rgb.mean(2, keepdims=True))) > 0.005
    # again: the output exists
    proc = invoke("colorize", str(grey), "--reference", str(reference), "--samples", "200")
    assert proc.exit_code == 2 and "already exists" in proc.stderr
    # a grey reference, bad options, a missing reference
    proc = invoke("colorize", str(reference), "--reference", str(grey), "-o", str(tmp_path / "x.png"))
    assert proc.exit_code == 2 and "has no colour" in proc.stderr and "is in colour" in proc.stderr, proc.stderr
    assert not (tmp_path / "x.png").exists()
    proc = invoke("colorize", str(grey), "--reference", str(reference), "--samples", "5")
    assert proc.exit_code == 2 and "samples must be" in proc.stderr
    proc = invoke("colorize", str(grey), "--reference", str(tmp_path / "missing.jpg"))
    assert proc.exit_code == 2 and "missing.jpg" in proc.stderr
