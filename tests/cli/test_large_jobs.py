"""Folders, shards, reruns and worker processes as a cluster or a video job uses them (docs/large_jobs.md)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, SAMPLES, invoke
from otmap_cli.io import read_image

SLURM_SCRIPT = ROOT / "docs" / "examples" / "apply_array.sbatch"


@pytest.fixture
def gamma_cube(tmp_path) -> Path:
    """A non-trivial table (a per-channel gamma), so outputs differ from inputs."""
    from otmap_cli.transport.lut import lut_grid, write_cube

    path = tmp_path / "gamma.cube"
    grid = lut_grid(9).reshape(9, 9, 9, 3)
    write_cube(path, grid ** np.array([0.5, 1.0, 2.0], dtype=np.float32))
    return path


@pytest.fixture
def frames(tmp_path) -> Path:
    """frames/ with 3 images at the top, 2 in a subfolder, plus what must be ignored: a hidden file,
    a hidden folder, a text file and an unfinished write's part file."""
    from PIL import Image

    rng = np.random.default_rng(0)
    root = tmp_path / "frames"
    for name in ("0001.png", "0002.png", "0003.jpg", "day/0004.png", "day/0005.tif", ".hidden.png",
                 ".cache/0006.png", "day/.0007.png.123.abc.part"):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(path, format="PNG"
                                                                               if name.endswith(".part") else None)
    (root / "notes.txt").write_text("not an image")
    return root


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_folder_outputs_mirror_the_input_tree_and_the_input_is_untouched(tmp_path, gamma_cube, frames):
    before = snapshot(frames)
    out = tmp_path / "graded"
    top = invoke("--quiet", "apply", str(gamma_cube), str(frames), "--out-dir", str(out), "--json")
    assert top.exit_code == 0, top.output
    assert sorted(snapshot(out)) == ["0001.png", "0002.png", "0003.jpg"]  # top level only by default
    deep = invoke("--quiet", "apply", str(gamma_cube), str(frames), "--out-dir", str(out), "-r", "--force", "--json")
    assert deep.exit_code == 0, deep.output
    assert sorted(snapshot(out)) == ["0001.png", "0002.png", "0003.jpg", "day/0004.png", "day/0005.tif"]
    inputs = [r["input"] for r in json.loads(deep.stdout)["results"]]
    assert inputs == [str(frames / n) for n in ("0001.png", "0002.png", "0003.jpg", "day/0004.png", "day/0005.tif")]
    assert snapshot(frames) == before
    mapped, source = read_image(out / "day" / "0004.png").rgb, read_image(frames / "day" / "0004.png").rgb
    assert np.abs(mapped[..., 0] - np.sqrt(source[..., 0])).max() < 0.1  # the gamma table (9^3: coarse near 0)
    assert np.abs(mapped[..., 0] - source[..., 0]).max() > 0.2
    renamed = invoke("--quiet", "apply", str(gamma_cube), str(frames), "--out-dir", str(tmp_path / "png"), "-r",
                     "--name", "{stem}_graded.png")
    assert renamed.exit_code == 0 and (tmp_path / "png" / "day" / "0005_graded.png").is_file()


def test_folder_inputs_need_an_out_dir_and_outputs_never_replace_inputs(tmp_path, gamma_cube, frames):
    before = snapshot(frames)
    no_dir = invoke("apply", str(gamma_cube), str(frames))
    assert no_dir.exit_code == 2 and "is a folder; give --out-dir" in no_dir.stderr
    one_file = invoke("apply", str(gamma_cube), str(frames), "-o", str(tmp_path / "x.png"), "--out-dir",
                      str(tmp_path / "o"))
    assert one_file.exit_code == 2 and "-o/--output takes one input file" in one_file.stderr
    onto_itself = invoke("apply", str(gamma_cube), str(frames), "--out-dir", str(frames), "--force")
    assert onto_itself.exit_code == 2 and "would overwrite an input" in onto_itself.stderr
    (tmp_path / "empty").mkdir()
    empty = invoke("apply", str(gamma_cube), str(tmp_path / "empty"), "--out-dir", str(tmp_path / "o"))
    assert empty.exit_code == 2 and "no images" in empty.stderr and ".png" in empty.stderr
    assert snapshot(frames) == before and not (tmp_path / "o").exists()


def test_an_out_dir_inside_the_input_tree_is_not_walked(tmp_path, gamma_cube, frames):
    out = frames / "graded"
    for _ in range(2):  # the rerun must not take the first run's outputs as inputs
        run = invoke("--quiet", "apply", str(gamma_cube), str(frames), "--out-dir", str(out), "-r",
                     "--skip-existing", "--json")
        assert run.exit_code == 0, run.output
        assert len(json.loads(run.stdout)["results"]) == 5
    assert not (out / "graded").exists()


def test_two_workers_write_the_same_bytes_as_one(tmp_path, frames):
    fitted = tmp_path / "map.safetensors"
    fit = invoke("--quiet", "recolor", str(frames / "0001.png"), str(SAMPLES / "sunset.jpg"), "-o",
                 str(tmp_path / "fit.png"), "--steps", "5", "--save-map", str(fitted))
    assert fit.exit_code == 0, fit.output
    runs = {}
    for workers in ("1", "2"):
        out = tmp_path / f"j{workers}"
        run = invoke("--quiet", "apply", str(fitted), str(frames), "--out-dir", str(out), "-r", "-j", workers,
                     "--json")
        assert run.exit_code == 0, run.output
        runs[workers] = snapshot(out)
        assert [r["output"] for r in json.loads(run.stdout)["results"]] == [
            str(out / n) for n in ("0001.png", "0002.png", "0003.jpg", "day/0004.png", "day/0005.tif")]
    assert len(runs["1"]) == 5 and runs["1"] == runs["2"]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_skip_existing_keeps_complete_outputs_and_redoes_cut_short_ones(tmp_path, gamma_cube, frames, workers):
    out = tmp_path / "out"
    assert invoke("--quiet", "apply", str(gamma_cube), str(frames), "--out-dir", str(out)).exit_code == 0
    complete, cut = out / "0001.png", out / "0002.png"
    cut.write_bytes(cut.read_bytes()[:len(cut.read_bytes()) // 2])  # as left by a writer killed mid-file
    (out / "0003.jpg").unlink()
    stamp = complete.stat().st_mtime_ns
    rerun = invoke("--quiet", "apply", str(gamma_cube), str(frames), "--out-dir", str(out), "--skip-existing",
                   "-j", workers, "--json")
    assert rerun.exit_code == 0, rerun.output
    summary = json.loads(rerun.stdout)
    assert summary["skipped_inputs"] == [str(frames / "0001.png")] and summary["skipped"] == 1
    assert [r.get("skipped", False) for r in summary["results"]] == [True, False, False]
    assert complete.stat().st_mtime_ns == stamp
    assert read_image(cut).size == (16, 12) and (out / "0003.jpg").is_file()
    both = invoke("apply", str(gamma_cube), str(frames), "--out-dir", str(out), "--skip-existing", "--force")
    assert both.exit_code == 2 and "give one" in both.stderr


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_corrupt_file_among_several_is_reported_and_the_others_are_done(tmp_path, gamma_cube, frames, workers):
    (frames / "0002.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    out = tmp_path / "out"
    going = invoke("apply", str(gamma_cube), str(frames), "--out-dir", str(out), "-r", "--keep-going",
                   "-j", workers, "--json")
    assert going.exit_code == 2, going.output  # bad input
    assert "1 of 5 inputs failed" in going.stderr
    summary = json.loads(going.stdout)
    assert summary["failed"] == 1 and summary["failed_inputs"] == [str(frames / "0002.png")]
    assert "0002.png" in going.stderr and "not a readable image" in going.stderr
    assert sorted(snapshot(out)) == ["0001.png", "0003.jpg", "day/0004.png", "day/0005.tif"]
    stopped = invoke("--quiet", "apply", str(gamma_cube), str(frames), "--out-dir", str(tmp_path / "stop"),
                     "-j", workers, "--json")
    assert stopped.exit_code == 2 and json.loads(stopped.stdout)["failed_inputs"] == [str(frames / "0002.png")]
    assert not (tmp_path / "stop" / "0003.jpg").exists() or workers == "2"  # a worker may have finished it


def test_shard_auto_splits_a_folder_over_a_slurm_array(tmp_path, gamma_cube, frames, monkeypatch):
    seen = []
    for task in (1, 2, 3):  # sbatch --array=1-3
        monkeypatch.setenv("SLURM_ARRAY_TASK_ID", str(task))
        monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "1")
        monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "3")
        run = invoke("--quiet", "apply", str(gamma_cube), str(frames), "--out-dir", str(tmp_path / "out"), "-r",
                     "--shard", "auto", "--json")
        assert run.exit_code == 0, run.output
        seen.append([r["input"] for r in json.loads(run.stdout)["results"]])
    assert seen[0] == [str(frames / "0001.png"), str(frames / "day" / "0004.png")]
    assert sorted(sum(seen, [])) == sorted(str(p) for p in (frames / "0001.png", frames / "0002.png",
                                                            frames / "0003.jpg", frames / "day" / "0004.png",
                                                            frames / "day" / "0005.tif"))
    for name in ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_COUNT"):
        monkeypatch.delenv(name)
    outside = invoke("apply", str(gamma_cube), str(frames), "--out-dir", str(tmp_path / "x"), "--shard", "auto")
    assert outside.exit_code == 2 and "not a task of a Slurm job array" in outside.stderr


def test_the_documented_slurm_script_does_its_share(tmp_path, gamma_cube, frames):
    """docs/examples/apply_array.sbatch run as Slurm runs the second task of ``--array=0-1`` (variables set by
    hand; one task, as each costs a process start: the split itself is tested above)."""
    script = SLURM_SCRIPT.read_text()
    assert "--shard auto" in script and "--skip-existing" in script and re.search(r"^#SBATCH --array=", script, re.M)
    shim = tmp_path / "bin" / "otmap"
    shim.parent.mkdir()
    shim.write_text(f"#!/bin/sh\nexec {sys.executable} -m otmap_cli \"$@\"\n")
    shim.chmod(0o755)
    out = tmp_path / "graded"
    env = {**os.environ, "PATH": f"{shim.parent}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(ROOT),
           "OMP_NUM_THREADS": "1", "SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_MIN": "0",
           "SLURM_ARRAY_TASK_MAX": "1", "SLURM_CPUS_PER_TASK": "2",
           "MAP": str(gamma_cube), "FRAMES": str(frames), "OUT": str(out)}
    proc = subprocess.run(["bash", str(SLURM_SCRIPT)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert sorted(snapshot(out)) == ["0002.png", "day/0004.png"]  # every 2nd of the 5 frames, from the 2nd


def test_one_look_fitted_on_a_sample_of_a_folder_then_applied_everywhere(tmp_path, frames):
    """The recipe of docs/large_jobs.md: recolor --shared-map on every 2nd frame, then apply the saved map."""
    look = tmp_path / "look.safetensors"
    fit = invoke("--quiet", "recolor", str(frames), str(SAMPLES / "sunset.jpg"), "-r", "--shared-map", "--shard",
                 "1/2", "--out-dir", str(tmp_path / "preview"), "--save-map", str(look), "--steps", "5", "--json")
    assert fit.exit_code == 0, fit.output
    assert sorted(snapshot(tmp_path / "preview")) == ["0001.png", "0003.jpg", "day/0005.tif"]
    applied = invoke("--quiet", "apply", str(look), str(frames), "-r", "--out-dir", str(tmp_path / "graded"))
    assert applied.exit_code == 0, applied.output
    preview, graded = read_image(tmp_path / "preview" / "0001.png"), read_image(tmp_path / "graded" / "0001.png")
    np.testing.assert_allclose(graded.rgb, preview.rgb, atol=1 / 255 + 1e-6)  # the same map on the same frame
