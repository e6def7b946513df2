"""The shared run controls of every trainer (``otmap_cli/training.py``)."""

import torch

from otmap_cli import training
from otmap_cli.training import RunControls


def test_bfloat16_autocast_only_where_the_cpu_runs_it_natively(monkeypatch, tmp_path):
    # an AVX2-only CPU emulates bfloat16: a flow-prior step there took ~105 s, against ~4 s in float32
    controls = RunControls(run_dir=tmp_path, device="cpu")
    for native, dtype in ((False, torch.float32), (True, torch.bfloat16)):
        monkeypatch.setattr(training, "cpu_has_native_bfloat16", lambda native=native: native)
        with controls.autocast():
            assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == dtype
    with RunControls(run_dir=tmp_path, device="cpu", bf16=False).autocast():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
