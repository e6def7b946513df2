"""otmap restore / degrade as users run them (subprocesses)."""

from __future__ import annotations

import json

import numpy as np

from conftest import SAMPLES, invoke, natural_crop, run_cli, shipped_prior, tiny_prior
from otmap_cli.io import read_image
from otmap_cli.restoration import api


def test_cli_inpaint_mask_of_another_size_is_refused(tmp_path):
    from PIL import Image as PILImage

    from otmap_cli.restoration.prior import export_prior

    weights = tmp_path / "tiny.safetensors"
    export_prior(tiny_prior(), weights, {})
    PILImage.new("L", (10, 10), 255).save(tmp_path / "mask.png")
    proc = invoke("restore", str(SAMPLES / "day.jpg"), "--task", "inpaint", "--mask", str(tmp_path / "mask.png"),
                   "--weights", str(weights), "-o", str(tmp_path / "out.png"))
    err = proc.stderr
    assert proc.exit_code == 2 and "mask is 10x10" in err and "Traceback" not in err, err
    assert not (tmp_path / "out.png").exists()

def test_cli_degrade_then_restore_gains_psnr(tmp_path):
    """The README's round trip on a shipped sample: degrade, restore with --reference, PSNR goes up."""
    from PIL import Image as PILImage

    shipped_prior()
    clean = tmp_path / "clean.png"
    PILImage.fromarray((natural_crop(64) * 255).round().astype(np.uint8)).save(clean)
    noisy, restored = tmp_path / "noisy.png", tmp_path / "restored.png"
    assert run_cli("degrade", str(clean), "--task", "denoise", "-o", str(noisy)).returncode == 0
    proc = run_cli("--quiet", "restore", str(noisy), "--task", "denoise", "--steps", "20", "--reference", str(clean),
                   "-o", str(restored), "--json")
    assert proc.returncode == 0, proc.stderr.decode()
    record = json.loads(proc.stdout.decode())["results"][0]
    before = api.quality(read_image(noisy), read_image(clean))["psnr"]
    assert record["psnr"] > before + 3, (record, before)
    assert read_image(restored).size == read_image(clean).size
