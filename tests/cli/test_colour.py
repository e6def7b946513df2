"""otmap recolor / apply / toy as users run them: real subprocesses on the shipped samples."""

from __future__ import annotations

import numpy as np

from conftest import SAMPLES, invoke, run_cli
from otmap_cli.io import read_image
from otmap_cli.transport.lut import read_cube


def test_cli_recolor_end_to_end(tmp_path):
    out, cube, saved, fig = (tmp_path / n for n in ("out.png", "look.cube", "map.safetensors", "plot.png"))
    proc = run_cli("--quiet", "recolor", str(SAMPLES / "day.jpg"), str(SAMPLES / "sunset.jpg"), "-o", str(out),
                   "--steps", "30", "--lut", str(cube), "--lut-size", "17",
                   "--save-map", str(saved), "--plot", str(fig), "--json")
    assert proc.returncode == 0, proc.stderr.decode()
    assert read_image(out).rgb.shape == read_image(SAMPLES / "day.jpg").rgb.shape
    assert read_cube(cube).shape == (17, 17, 17, 3)
    assert fig.stat().st_size > 10_000
    import json

    assert json.loads(proc.stdout)["results"][0]["output"] == str(out)
    # re-apply the saved map and the LUT to another image
    again = run_cli("--quiet", "apply", str(saved), str(SAMPLES / "day.jpg"), "-o", str(tmp_path / "again.png"))
    assert again.returncode == 0, again.stderr.decode()
    np.testing.assert_allclose(read_image(tmp_path / "again.png").rgb, read_image(out).rgb, atol=1 / 255 + 1e-6)
    via_cube = run_cli("--quiet", "apply", str(cube), str(SAMPLES / "day.jpg"), "-o", str(tmp_path / "cube.png"))
    assert via_cube.returncode == 0, via_cube.stderr.decode()
    assert np.abs(read_image(tmp_path / "cube.png").rgb - read_image(out).rgb).mean() < 0.01

def test_cli_keeps_alpha_and_refuses_to_overwrite(tmp_path, gradient_image):
    src = gradient_image("rgba.png", mode="RGBA")
    before = src.read_bytes()
    out = tmp_path / "rgba_out.png"
    proc = invoke("--quiet", "recolor", str(src), str(SAMPLES / "sunset.jpg"), "-o", str(out), "--steps", "5")
    assert proc.exit_code == 0, proc.stderr
    np.testing.assert_array_equal(read_image(out).alpha, read_image(src).alpha)
    # an existing output needs --force; the input itself is never a valid output
    again = invoke("recolor", str(src), str(SAMPLES / "sunset.jpg"), "-o", str(out))
    assert again.exit_code == 2 and "--force" in again.stderr and "Traceback" not in again.stderr
    onto_input = invoke("recolor", str(src), str(SAMPLES / "sunset.jpg"), "-o", str(src), "--force")
    assert onto_input.exit_code == 2 and "overwrite an input" in onto_input.stderr
    assert src.read_bytes() == before

def test_cli_default_output_name_next_to_source(tmp_path, gradient_image):
    src = gradient_image("photo.png")
    proc = invoke("--quiet", "recolor", str(src), str(SAMPLES / "sunset.jpg"), "--steps", "5")
    assert proc.exit_code == 0, proc.stderr
    assert (tmp_path / "photo_recolored.png").exists()

def test_cli_toy_writes_a_figure(tmp_path):
    fig = tmp_path / "toy.png"
    proc = invoke("toy", "gaussian", "-o", str(fig), "--steps", "50")
    assert proc.exit_code == 0, proc.stderr
    assert fig.stat().st_size > 10_000
    assert "RMSE vs closed-form Brenier map" in proc.stderr


def test_cli_warm_steps_without_the_gradient_warm_start_is_refused(tmp_path, gradient_image):
    src = gradient_image("photo.png")
    out = tmp_path / "out.png"
    refused = invoke("recolor", str(src), str(SAMPLES / "sunset.jpg"), "-o", str(out), "--warm-steps", "50")
    assert refused.exit_code == 2 and "--warm-start gradient" in refused.stderr and not out.exists()
    mmgn = invoke("recolor", str(src), str(SAMPLES / "sunset.jpg"), "-o", str(out), "--model", "mmgn",
                  "--warm-start", "ridge")
    assert mmgn.exit_code == 2 and "C-MGN" in mmgn.stderr
    done = invoke("--quiet", "recolor", str(src), str(SAMPLES / "sunset.jpg"), "-o", str(out), "--warm-start",
                  "gradient", "--warm-steps", "5", "--steps", "5")
    assert done.exit_code == 0, done.stderr
