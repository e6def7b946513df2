"""otmap train as users run it (subprocesses)."""

from __future__ import annotations

from conftest import invoke
from otmap_cli.generate.models import load_generator


def test_train_command_builds_the_potential_it_is_asked_for(mnist_dir, tmp_path):
    out = tmp_path / "g.safetensors"
    done = invoke("train", "brenier", "--data", str(mnist_dir), "--run-dir", str(tmp_path / "run"), "--out",
                   str(out), "--max-steps", "2", "--code", "4", "--search-steps", "3", "--lr", "1e-4",
                  "--noise-scale", "0.5", "--affine", "code", "--penalty-every", "2")
    assert done.exit_code == 0, done.stderr
    config = load_generator(out).config
    assert config["potential"] == "decoder" and config["code"] == 4 and config["model"] == "brenier"
    assert config["noise_scale"] == 0.5 and config["affine"] == "code"
    refused = invoke("train", "brenier", "--data", str(mnist_dir), "--model", "dcgan", "--potential", "conv")
    assert refused.exit_code != 0 and "brenier or icnn only" in refused.stderr
    lazy = invoke("train", "brenier", "--data", str(mnist_dir), "--penalty-every", "0")
    assert lazy.exit_code == 2 and "--penalty-every" in lazy.stderr


def test_train_flow_command_starts_resumes_and_exports(tmp_path):
    """The options of the background training (--init, --resume, --lr, --schedule-steps, --batch-pixels) as the
    CLI parses them."""
    import numpy as np
    from PIL import Image as PILImage

    from otmap_cli.restoration.prior import load_prior

    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(7):  # the last 6 are held out for validation
        PILImage.fromarray((rng.random((128, 130, 3)) * 255).astype(np.uint8)).save(data / f"{i}.png")
    out, run = tmp_path / "prior.safetensors", tmp_path / "run"
    common = ["train", "flow", "--data", str(data), "--run-dir", str(run), "--channels", "8,16", "--lr", "2e-4",
              "--schedule-steps", "10"]
    first = invoke(*common, "--out", str(out), "--max-steps", "2", "--batch-pixels", str(2 * 128 * 128))
    assert first.exit_code == 0, first.output
    assert "32,768 pixels a batch" in first.stderr
    again = invoke(*common, "--out", str(tmp_path / "again.safetensors"), "--init", str(out), "--resume",
                   "--max-steps", "3")
    assert again.exit_code == 0, again.output
    assert "resumed from" in again.stderr and "at step 2" in again.stderr
    assert load_prior(out).config["channels"] == [8, 16]
    small = invoke(*common, "--out", str(tmp_path / "small.safetensors"), "--batch-pixels", "100")
    assert small.exit_code == 2 and "--batch-pixels" in small.stderr


def test_train_classifier_command_refuses_to_replace_weights_and_resumes(mnist_dir, tmp_path):
    from otmap_cli.generate.classifier import load_classifier

    out, run = tmp_path / "c.safetensors", tmp_path / "run"
    common = ["train", "classifier", "--data", str(mnist_dir), "--run-dir", str(run), "--out", str(out),
              "--epochs", str(4 * 128 / 600)]
    first = invoke(*common, "--max-steps", "2")
    assert first.exit_code == 0, first.stderr
    before = out.read_bytes()
    again = invoke(*common)
    assert again.exit_code == 2 and "already exists" in again.stderr and "--force" in again.stderr
    assert out.read_bytes() == before
    resumed = invoke(*common, "--resume")
    assert resumed.exit_code == 0 and "resumed from" in resumed.stderr and "at step 2" in resumed.stderr
    assert load_classifier(out) is not None and out.read_bytes() != before
    assert [line.count('"step"') for line in (run / "log.jsonl").read_text().splitlines()] == [1, 1]
