"""otmap train as users run it (subprocesses)."""

from __future__ import annotations

from conftest import run_cli
from otmap_cli.generate.models import load_generator


def test_train_command_builds_the_potential_it_is_asked_for(mnist_dir, tmp_path):
    out = tmp_path / "g.safetensors"
    done = run_cli("train", "brenier", "--data", str(mnist_dir), "--run-dir", str(tmp_path / "run"), "--out",
                   str(out), "--max-steps", "2", "--code", "4", "--search-steps", "3", "--lr", "1e-4")
    assert done.returncode == 0, done.stderr
    config = load_generator(out).config
    assert config["potential"] == "decoder" and config["code"] == 4 and config["model"] == "brenier"
    refused = run_cli("train", "brenier", "--data", str(mnist_dir), "--model", "dcgan", "--potential", "conv")
    assert refused.returncode != 0 and b"brenier or icnn only" in refused.stderr
