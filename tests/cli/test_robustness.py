"""Shell and batch use: pipes, batches with a bad file, shards, foreign weight files, fuzzed inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import SAMPLES, invoke, run_cli
from otmap_cli.errors import InputError
from otmap_cli.io import read_image
from otmap_cli.transport.colormap import ColourMap

FAST = ("--steps", "5")


def test_stdin_to_stdout_pipe():
    proc = run_cli("--quiet", "recolor", "-", str(SAMPLES / "sunset.jpg"), "-o", "-", *FAST,
                   stdin=(SAMPLES / "day.jpg").read_bytes())
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout[:8] == b"\x89PNG\r\n\x1a\n"
    assert proc.stderr == b""  # quiet: nothing but the image


def test_batch_keeps_going_past_a_bad_file_and_fails_at_the_end(tmp_path, gradient_image):
    good_a, good_b = gradient_image("a.png"), gradient_image("b.png")
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    out = tmp_path / "out"
    proc = invoke("recolor", str(good_a), str(bad), str(good_b), str(SAMPLES / "sunset.jpg"), "--out-dir", str(out),
                   "--keep-going", "--json", *FAST)
    assert proc.exit_code == 2, proc.stderr
    report = json.loads(proc.stdout)
    assert [r["ok"] for r in report["results"]] == [True, False, True] and report["failed"] == 1
    assert sorted(p.name for p in out.iterdir()) == ["a_recolored.png", "b_recolored.png"]
    assert "1 of 3 inputs failed" in proc.stderr and "Traceback" not in proc.stderr


def test_shards_split_a_batch_without_overlap(tmp_path, gradient_image):
    sources = [str(gradient_image(f"s{i}.png")) for i in range(5)]
    seen = []
    for shard in ("1/2", "2/2"):
        out = tmp_path / shard.replace("/", "_")
        proc = invoke("--quiet", "recolor", *sources, str(SAMPLES / "sunset.jpg"), "--out-dir", str(out),
                       "--shard", shard, *FAST)
        assert proc.exit_code == 0, proc.stderr
        seen += [p.name for p in out.iterdir()]
    assert sorted(seen) == sorted(f"s{i}_recolored.png" for i in range(5))


def test_foreign_and_pickled_weights_are_refused(tmp_path):
    import torch
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(3)}, str(tmp_path / "other.safetensors"))
    (tmp_path / "evil.pt").write_bytes(b"\x80\x04pickle")
    for name in ("other.safetensors", "evil.pt"):
        with pytest.raises(InputError):
            ColourMap.load(tmp_path / name)
        proc = invoke("apply", str(tmp_path / name), str(SAMPLES / "day.jpg"), "-o", str(tmp_path / "x.png"))
        assert proc.exit_code == 2 and "Traceback" not in proc.stderr
    assert not (tmp_path / "x.png").exists()


@settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=2048), keep=st.integers(0, 3000))
def test_fuzzed_image_bytes_fail_cleanly(tmp_path, data, keep):
    """Random bytes and mutated real files: either an image or an InputError, never a crash or hang."""
    real = (SAMPLES / "day.jpg").read_bytes()
    for blob in (data, real[:keep] + data, data + real[keep:keep + 64]):
        path = tmp_path / "fuzz.png"
        path.write_bytes(blob)
        try:
            image = read_image(path, max_pixels=4_000_000)
        except InputError:
            continue
        assert image.rgb.ndim == 3 and np.isfinite(image.rgb).all()


@settings(max_examples=60, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=1024))
def test_fuzzed_map_files_fail_cleanly(tmp_path, data):
    path = tmp_path / "fuzz.safetensors"
    path.write_bytes(data)
    with pytest.raises(InputError):
        ColourMap.load(path)


@pytest.mark.parametrize("argv", [["--help"], ["restore", "x.png", "--task", "denoise", "--noise-sigma", "25"],
                                  ["recolor", str(SAMPLES / "day.jpg"), str(SAMPLES / "sunset.jpg"), "-o", "x.tga"],
                                  ["sample", "-n", "10000000", "--out-dir", "many"]])
def test_help_and_bad_input_answer_without_heavy_imports(argv):
    """--help and input errors must not wait for torch/deepinv to import."""
    import subprocess
    import sys

    code = (f"import sys; sys.argv = ['otmap', *{argv!r}]\n"
            "from otmap_cli import cli\n"
            "try:\n    cli.main()\nexcept SystemExit:\n    pass\n"
            "print('HEAVY' if {'torch', 'deepinv'} & set(sys.modules) else 'LIGHT')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert proc.stdout.strip().endswith(b"LIGHT"), (proc.stdout[-200:], proc.stderr[-300:])


def test_info_lists_shipped_models_with_checksums():
    proc = invoke("info", "--json")
    assert proc.exit_code == 0, proc.stderr
    payload = json.loads(proc.stdout)
    assert "mnist_classifier.safetensors" in payload["models"]
    assert len(payload["models"]["mnist_classifier.safetensors"]["sha256"]) == 64
