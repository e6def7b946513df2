"""The plumbing every command shares, in-process (Typer's CliRunner): flags, streams, output planning, bounds."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest

from conftest import SAMPLES, invoke, tiny_prior
from otmap_cli.io import read_image


@pytest.fixture
def identity_cube(tmp_path) -> Path:
    from otmap_cli.transport.lut import lut_grid, write_cube

    path = tmp_path / "identity.cube"
    write_cube(path, lut_grid(5).reshape(5, 5, 5, 3))
    return path


@pytest.fixture
def two_same_names(tmp_path, gradient_image) -> list[Path]:
    """a/x.png and b/x.png: one stem in two folders."""
    paths = []
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        path = gradient_image(f"{folder}/x.png")
        paths.append(path)
    return paths


def test_version_and_global_flags_after_the_command(tmp_path, identity_cube, gradient_image):
    assert invoke("--version").stdout.strip().startswith("otmap ")
    out = tmp_path / "out.png"
    quiet = invoke("apply", str(identity_cube), str(gradient_image()), "-o", str(out), "--quiet", "--debug")
    assert quiet.exit_code == 0, quiet.output
    assert out.exists() and quiet.stderr == ""
    loud = invoke("apply", str(identity_cube), str(gradient_image()), "-o", str(tmp_path / "loud.png"))
    assert loud.exit_code == 0 and "wrote" in loud.stderr


@pytest.mark.parametrize("words, expected", [("restore x.png --solver ", {"auto", "pnp-flow", "dpir", "mmse"}),
                                             ("sample --device ", {"auto", "cpu", "cuda"}),
                                             ("restore x.png --task ", {"denoise", "deblur", "superres", "inpaint"})])
def test_shell_completion_offers_the_choices(words, expected):
    env = {"_OTMAP_COMPLETE": "complete_bash", "COMP_WORDS": "otmap " + words, "COMP_CWORD": str(len(words.split()) + 1)}
    from typer.testing import CliRunner

    from otmap_cli.cli import app

    result = CliRunner().invoke(app, [], env=env, prog_name="otmap")
    assert expected <= set(result.stdout.split()), result.output


def test_stdin_in_stdout_out_and_silence_about_it(identity_cube, gradient_image):
    data = gradient_image().read_bytes()
    piped = invoke("apply", str(identity_cube), "-", stdin=data)
    assert piped.exit_code == 0, piped.output
    assert piped.stdout_bytes[:8] == b"\x89PNG\r\n\x1a\n"
    assert "wrote" not in piped.stderr
    explicit = invoke("apply", str(identity_cube), "-", "-o", "-", stdin=data)
    assert explicit.stdout_bytes == piped.stdout_bytes and "wrote" not in explicit.stderr


def test_json_and_an_image_cannot_share_stdout(identity_cube, gradient_image):
    refused = invoke("apply", str(identity_cube), str(gradient_image()), "-o", "-", "--json")
    assert refused.exit_code == 2 and refused.stdout_bytes == b""


@pytest.mark.parametrize("layout", ["out-dir", "next-to-source", "fixed-name"])
def test_two_outputs_on_one_path_are_refused_before_any_work(tmp_path, identity_cube, gradient_image, layout,
                                                             two_same_names):
    out = tmp_path / "out"
    if layout == "out-dir":
        args = [*map(str, two_same_names), "--out-dir", str(out)]
    elif layout == "next-to-source":
        args = [str(gradient_image("a/y.png")), str(gradient_image("a/y.jpg"))]
    else:
        args = [*map(str, two_same_names), "--out-dir", str(out), "--name", "fixed.png"]
    result = invoke("apply", str(identity_cube), *args, "--json")
    assert result.exit_code == 2, result.output
    assert "both" in result.stderr
    assert not out.exists() and not (tmp_path / "a" / "y_mapped.png").exists()


def test_save_map_onto_the_output_is_refused_before_the_fit(tmp_path):
    same = tmp_path / "same.png"
    result = invoke("recolor", str(SAMPLES / "day.jpg"), str(SAMPLES / "sunset.jpg"), "--save-map", str(same),
                    "-o", str(same))
    assert result.exit_code == 2 and "both" in result.stderr and not same.exists()


def test_bad_output_places_fail_before_the_fit(tmp_path):
    day, sunset = str(SAMPLES / "day.jpg"), str(SAMPLES / "sunset.jpg")
    unknown = invoke("recolor", day, sunset, "-o", str(tmp_path / "tt.unknown"))
    assert unknown.exit_code == 2 and "unknown output format" in unknown.stderr
    a_file = tmp_path / "file"
    a_file.write_text("x")
    into_file = invoke("recolor", day, sunset, "--out-dir", str(a_file))
    assert into_file.exit_code == 2 and "is a file" in into_file.stderr
    under_file = invoke("recolor", day, sunset, "-o", str(a_file / "out.png"))
    assert under_file.exit_code == 2 and "is a file" in under_file.stderr


def test_unwritable_folder_fails_before_the_fit(tmp_path, monkeypatch):
    from otmap_cli.cli import common

    readable_only = lambda path, mode: not mode & os.W_OK  # noqa: E731 (as for a user without write rights)
    monkeypatch.setattr(common.os, "access", readable_only)
    result = invoke("recolor", str(SAMPLES / "day.jpg"), str(SAMPLES / "sunset.jpg"), "-o", str(tmp_path / "o.png"))
    assert result.exit_code == 2 and "permission denied" in result.stderr


def test_keep_going_skips_existing_outputs_and_reports_them(tmp_path, identity_cube, gradient_image):
    first, second = gradient_image("first.png"), gradient_image("second.png")
    out = tmp_path / "out"
    out.mkdir()
    (out / "first_mapped.png").write_bytes(b"keep me")
    stopped = invoke("apply", str(identity_cube), str(first), str(second), "--out-dir", str(out))
    assert stopped.exit_code == 2 and not (out / "second_mapped.png").exists()
    going = invoke("apply", str(identity_cube), str(first), str(second), "--out-dir", str(out), "--keep-going",
                   "--json")
    assert going.exit_code == 0, going.output
    summary = json.loads(going.stdout)
    assert summary["skipped"] == 1 and summary["results"][0]["skipped"] and summary["results"][1]["ok"]
    assert (out / "first_mapped.png").read_bytes() == b"keep me" and (out / "second_mapped.png").exists()


@pytest.mark.parametrize("template", ["{stem:>300}.png", "{stem.__class__.__init__.__globals__}.png",
                                      "{stem.__class__}.png", "{stem!r}.png", "{other}.png", "../../{stem}.png",
                                      "/tmp/{stem}.png", "sub/{stem}.png", "{stem"])
def test_name_templates_allow_only_the_documented_fields_inside_out_dir(tmp_path, identity_cube, gradient_image,
                                                                         template):
    result = invoke("apply", str(identity_cube), str(gradient_image()), "--out-dir", str(tmp_path / "o"),
                    "--name", template)
    assert result.exit_code == 2 and "--name" in result.stderr, result.output
    assert not (tmp_path / "o").exists()


def test_json_summary_on_stdout_when_a_batch_stops(tmp_path, identity_cube, gradient_image):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    result = invoke("apply", str(identity_cube), str(gradient_image()), str(bad), "--out-dir", str(tmp_path / "o"),
                    "--json")
    assert result.exit_code == 2
    summary = json.loads(result.stdout)
    assert summary["failed"] == 1 and summary["results"][0]["ok"] and not summary["results"][1]["ok"]


def test_noise_sigma_accepts_fractions_and_explains_its_units():
    from otmap_cli.restoration.options import resolve

    assert resolve("denoise", "25/255").noise_sigma == pytest.approx(25 / 255)
    result = invoke("restore", str(SAMPLES / "day.jpg"), "--task", "denoise", "--noise-sigma", "25")
    assert result.exit_code == 2 and "[0, 1]" in result.stderr and "25/255" in result.stderr


@pytest.mark.parametrize("args, message", [(["--steps", "100000000"], "steps"), (["--averages", "1000000"], "averages"),
                                           (["--task", "deblur", "--blur-sigma", "1e6"], "blur sigma")])
def test_restore_bounds_fail_at_once(args, message):
    if "--task" not in args:
        args = ["--task", "denoise", *args]
    result = invoke("restore", str(SAMPLES / "day.jpg"), *args)
    assert result.exit_code == 2 and message in result.stderr, result.output


def test_results_asked_for_go_to_stdout_even_with_quiet(tmp_path, gradient_image):
    from otmap_cli.restoration.prior import export_prior

    weights = tmp_path / "tiny.safetensors"
    export_prior(tiny_prior(), weights, {})
    image = gradient_image(size=(16, 16))
    result = invoke("-q", "restore", str(image), "--task", "denoise", "--solver", "pnp-flow", "--steps", "2",
                    "--weights", str(weights), "--reference", str(image), "-o", str(tmp_path / "r.png"))
    assert result.exit_code == 0, result.output
    assert "PSNR" in result.stdout and result.stderr == ""


def test_sample_to_stdout_and_bounds(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    png = invoke("sample", "-n", "4", "-o", "-")
    assert png.exit_code == 0, png.output
    from PIL import Image as PILImage

    assert PILImage.open(io.BytesIO(png.stdout_bytes)).size[0] > 28 and not (tmp_path / "-").exists()
    too_many = invoke("sample", "-n", "10000000", "--out-dir", str(tmp_path / "many"))
    assert too_many.exit_code == 2 and "at most" in too_many.stderr
    big_grid = invoke("sample", "-n", "1000000")
    assert big_grid.exit_code == 2 and "grid" in big_grid.stderr


def test_sample_batches_give_the_same_digits_as_one_draw():
    from otmap_cli.generate.models import DCGANGenerator
    from otmap_cli.generate.sampling import sample, sample_batches

    generator = DCGANGenerator(latent=8, channels=(8, 4)).eval()
    whole = sample(generator, 37, seed=5)
    parts = np.concatenate([b.numpy() for b in sample_batches(generator, 37, seed=5, batch=16)])
    np.testing.assert_array_equal(whole.numpy(), parts)


def test_tiny_recolor_inputs_are_bad_input(tmp_path, gradient_image):
    tiny = gradient_image("tiny.png", size=(2, 2))
    result = invoke("recolor", str(tiny), str(SAMPLES / "sunset.jpg"), "-o", str(tmp_path / "o.png"))
    assert result.exit_code == 2 and "pixels" in result.stderr, result.output
    assert read_image(tiny).size == (2, 2)


def test_debug_after_the_command_shows_the_traceback(tmp_path):
    plain = invoke("apply", str(tmp_path / "missing.cube"), str(tmp_path / "x.png"))
    assert plain.exit_code == 2 and "Traceback" not in plain.stderr and "no such file" in plain.stderr
    debug = invoke("apply", str(tmp_path / "missing.cube"), str(tmp_path / "x.png"), "--debug")
    assert debug.exit_code == 2 and "Traceback" in debug.stderr


def _kept(path: Path) -> None:
    """``path`` still holds b"keep", and no part file was left beside it."""
    assert path.read_bytes() == b"keep"
    assert not list(path.parent.glob(".*.part"))


@pytest.mark.parametrize("flag, name", [("-o", "out.png"), ("--lut", "look.cube"), ("--plot", "plot.png"),
                                        ("--save-map", "map.safetensors")])
def test_recolor_outputs_are_never_replaced_without_force(tmp_path, gradient_image, flag, name):
    existing = tmp_path / name
    existing.write_bytes(b"keep")
    source, style = gradient_image("s.png"), gradient_image("t.png", mode="RGB")
    args = ["recolor", str(source), str(style), flag, str(existing)] + ([] if flag == "-o" else
                                                                       ["-o", str(tmp_path / "r.png")])
    done = invoke(*args)
    assert done.exit_code == 2 and "already exists" in done.stderr and "--force" in done.stderr
    _kept(existing)
    assert not (tmp_path / "r.png").exists()


@pytest.mark.parametrize("args, name", [(["toy", "gaussian", "-o"], "toy.png"), (["sample", "-n", "4", "-o"], "g.png"),
                                        (["sample", "-n", "4", "--out-dir"], "sample_00000.png"),
                                        (["degrade", "{clean}", "--task", "denoise", "-o"], "noisy.png"),
                                        (["degrade", "{clean}", "--task", "inpaint", "-o", "{free}", "--mask-out"],
                                         "mask.png")])
def test_other_outputs_are_never_replaced_without_force(tmp_path, gradient_image, args, name):
    existing = tmp_path / name
    existing.write_bytes(b"keep")
    clean = gradient_image("clean.png")
    target = str(tmp_path) if args[-1] == "--out-dir" else str(existing)
    done = invoke(*[a.format(clean=clean, free=tmp_path / "free.png") for a in args], target)
    assert done.exit_code == 2 and "already exists" in done.stderr, done.stderr
    _kept(existing)
    assert not (tmp_path / "free.png").exists()


def test_a_file_that_appears_during_the_work_is_not_replaced(tmp_path, monkeypatch):
    """The check before the work is not the only guard: the final write creates, never replaces,
    so an output that another program made meanwhile survives (here: the LUT, made during the fit)."""
    from otmap_cli.transport import recolor as recolor_module

    lut = tmp_path / "look.cube"
    fit = recolor_module.fit_colour_map

    def fit_then_someone_writes(*args, **kwargs):
        lut.write_bytes(b"keep")
        return fit(*args, **kwargs)

    monkeypatch.setattr(recolor_module, "fit_colour_map", fit_then_someone_writes)
    done = invoke("recolor", str(SAMPLES / "day.jpg"), str(SAMPLES / "sunset.jpg"), "-o", str(tmp_path / "o.png"),
                  "--steps", "0", "--lut", str(lut), "--lut-size", "17")
    assert done.exit_code == 2 and "already exists" in done.stderr
    _kept(lut)


def test_several_sources_cannot_share_one_exported_map(tmp_path, gradient_image):
    a, b, style = gradient_image("a.png"), gradient_image("b.png"), gradient_image("c.png")
    done = invoke("recolor", str(a), str(b), str(style), "--lut", str(tmp_path / "x.cube"))
    assert done.exit_code == 2 and "--shared-map" in done.stderr


@pytest.mark.parametrize("terminal", [False, True])
def test_progress_phases_are_drawn_on_a_terminal_only(tmp_path, monkeypatch, terminal):
    """recolor names its phases at once; in a pipe (CliRunner's stderr) nothing of the bar appears."""
    if terminal:
        monkeypatch.setenv("FORCE_COLOR", "1")  # rich then treats stderr as a terminal
        monkeypatch.setenv("TTY_COMPATIBLE", "1")
    else:
        monkeypatch.delenv("FORCE_COLOR", raising=False)
        monkeypatch.delenv("TTY_COMPATIBLE", raising=False)
    done = invoke("recolor", str(SAMPLES / "day.jpg"), str(SAMPLES / "sunset.jpg"), "-o", str(tmp_path / "o.png"),
                  "--steps", "20")
    assert done.exit_code == 0, done.stderr
    drawn = [phase for phase in ("recolor · loading", "fitting map · step", "writing") if phase in done.stderr]
    if terminal:  # a bar's last frame is always drawn; the frames between come at 10 per second
        assert "recolor · loading" in done.stderr and "recolor day.jpg · writing" in done.stderr
    else:
        assert drawn == [] and "\x1b[" not in done.stderr and done.stderr.strip() == f"wrote {tmp_path / 'o.png'}"
