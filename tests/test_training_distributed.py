"""Training under torchrun: 2 CPU processes (gloo) of the flow and Brenier trainers; resumes from and to 1.

One ``python -m torch.distributed.run --nproc_per_node 2`` launch runs this file as its worker
(the ``__main__`` part below): it checks that DDP's averaged gradients equal the mean of the
ranks' own gradients (the Brenier loss has a double backward: G = grad phi, plus the convexity
penalty), then trains each model a few steps and writes every rank's weights and losses. The
tests read those files. Tiny models and synthetic data: nothing needs ``../shared``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
FLOW_STEPS, BRENIER_STEPS = 3, 2
TINY_BRENIER = dict(batch=8, near_pairs=4, model_options={"channels": (4, 8)}, classifier=None, bf16=False,
                    checkpoint_minutes=100)


def flow_settings(data: Path, run_dir: Path) -> dict:
    return dict(data=data, run_dir=run_dir, out=run_dir / "prior.safetensors", channels=(8, 16), blocks=1,
                pixels_per_batch=2 * 32 * 32, patch_sizes=(32,), validation_images=1, warmup_steps=2,
                checkpoint_minutes=100, threads=1, bf16=False)


# --- the worker (one per rank, started by torchrun) ---------------------------------------------

def _gradients(optimizers) -> list[torch.Tensor]:
    return [p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)
            for opt in optimizers for group in opt.param_groups for p in group["params"]]


def _ddp_against_local_gradients(trainer, optimizers, modules: list[str], undistributed: dict) -> dict:
    """One train step through DDP, then the same step (same data, same weights) without it.

    Optimiser steps and gradient clipping are disabled, so the weights do not move and the raw
    gradients stay in ``.grad``. DDP must give every rank the mean of the ranks' own gradients.
    ``undistributed`` maps the trainer's DDP attributes to the callables they wrap.
    """
    import copy

    import torch.distributed as dist

    for opt in optimizers:
        opt.step = lambda: None
    clip, torch.nn.utils.clip_grad_norm_ = torch.nn.utils.clip_grad_norm_, lambda params, max_norm: torch.ones(())
    states = {name: copy.deepcopy(getattr(trainer, name).state_dict()) for name in modules}
    gen_state, directions = trainer.gen.get_state(), getattr(getattr(trainer, "penalty", None), "directions", None)
    stats = trainer.train_step()
    averaged = _gradients(optimizers)
    for name, state in states.items():
        getattr(trainer, name).load_state_dict(state)
    trainer.gen.set_state(gen_state)
    if directions is not None:
        trainer.penalty.directions = directions
    for attribute, plain in undistributed.items():
        setattr(trainer, attribute, plain)
    trainer.train_step()
    torch.nn.utils.clip_grad_norm_ = clip
    own = _gradients(optimizers)
    error = spread = 0.0
    for mean_by_ddp, g in zip(averaged, own):
        mean = g.clone()
        dist.all_reduce(mean)
        mean /= dist.get_world_size()
        spread = max(spread, float((mean - g).abs().max()))  # how far this rank's own gradient is from the mean
        error = max(error, float((mean_by_ddp - mean).abs().max() / mean.abs().max().clamp_min(1e-12)))
    return {"relative_error": error, "spread": spread, **stats}


def _worker(out: Path, flow_data: Path, mnist: Path) -> None:
    import torch.distributed as dist
    from safetensors.torch import save_file

    from otmap_cli.generate.brenier import BrenierTrainConfig, BrenierTrainer
    from otmap_cli.restoration.train import FlowTrainConfig, FlowTrainer

    torch.set_num_threads(1)
    rank = int(os.environ["RANK"])
    report = {}
    brenier = BrenierTrainer(BrenierTrainConfig(data=mnist, run_dir=out / "brenier_grad", kappa=1.0,  # hinge active
                                                **TINY_BRENIER))
    report["brenier_gradients"] = _ddp_against_local_gradients(
        brenier, [brenier.opt_d, brenier.opt_g], ["generator", "discriminator"],
        {"generator_ddp": brenier.generator, "discriminator_ddp": brenier.discriminator})
    flow = FlowTrainer(FlowTrainConfig(**flow_settings(flow_data, out / "flow_grad")))
    report["flow_gradients"] = _ddp_against_local_gradients(flow, [flow.optimizer], ["prior"],
                                                            {"loss_terms": flow.prior.raw_and_target})

    def run(trainer, prefix: str, module) -> None:
        losses = []
        step = trainer.train_step
        trainer.train_step = lambda: losses.append(step()) or losses[-1]
        trainer.fit()
        report[f"{prefix}_losses"] = losses
        save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(out / f"{prefix}_rank{rank}.safetensors"))

    flow = FlowTrainer(FlowTrainConfig(max_steps=FLOW_STEPS, **flow_settings(flow_data, out / "flow")))
    run(flow, "flow", flow.prior)
    flow = FlowTrainer(FlowTrainConfig(max_steps=FLOW_STEPS + 2, resume=True,
                                       **flow_settings(flow_data, out / "flow_1to2")))  # a 1-process checkpoint
    run(flow, "flow_1to2", flow.prior)
    brenier = BrenierTrainer(BrenierTrainConfig(data=mnist, run_dir=out / "brenier", max_steps=BRENIER_STEPS,
                                                **TINY_BRENIER))
    run(brenier, "brenier", brenier.generator)

    flow = FlowTrainer(FlowTrainConfig(max_steps=3, **{**flow_settings(flow_data, out / "flow_rollback"),
                                                       "checkpoint_minutes": 0}))  # a checkpoint every step
    checkpoint = flow.checkpoint

    def diverge_once(final: bool) -> None:  # the checkpoint at step 2 sees a drop of ~1000 dB and rolls back
        checkpoint(final)
        if flow.step == 1 and flow.lr_scale == 1.0:
            flow.best = 1000.0

    flow.checkpoint = diverge_once
    run(flow, "flow_rollback", flow.prior)
    report["flow_rollback_lr_scale"] = flow.lr_scale
    (out / f"report_rank{rank}.json").write_text(json.dumps(report))
    dist.destroy_process_group()


# --- the tests ----------------------------------------------------------------------------------

def _distributed_available() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_gloo_available()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory, mnist_dir):
    """Run the worker on 2 CPU processes once; the folder it wrote."""
    if not _distributed_available():
        pytest.skip("torch.distributed with gloo is not available in this torch build")
    from PIL import Image as PILImage

    out = tmp_path_factory.mktemp("ddp")
    data = out / "flow_data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        PILImage.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(data / f"{i}.png")
    from otmap_cli.restoration.train import FlowTrainConfig, train_flow

    train_flow(FlowTrainConfig(max_steps=FLOW_STEPS, **flow_settings(data, out / "flow_1to2")), log=lambda line: None)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           __file__, str(out), str(data), str(mnist_dir)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out, data


def _report(out: Path, rank: int) -> dict:
    return json.loads((out / f"report_rank{rank}.json").read_text())


@pytest.mark.parametrize("model", ["flow", "brenier"])
def test_ddp_gradients_are_the_mean_of_the_ranks_gradients(two_ranks, model):
    out, _ = two_ranks
    for rank in (0, 1):
        check = _report(out, rank)[f"{model}_gradients"]
        assert check["spread"] > 0  # the ranks drew different data ...
        assert check["relative_error"] < 1e-4  # ... and DDP averaged their gradients
    if model == "brenier":
        assert check["penalty"] > 0  # the convexity penalty's double backward took part


@pytest.mark.parametrize("model", ["flow", "brenier"])
def test_two_ranks_train_on_different_data_and_stay_identical(two_ranks, model):
    from safetensors.torch import load_file

    out, _ = two_ranks
    losses = [_report(out, rank)[f"{model}_losses"] for rank in (0, 1)]
    steps = FLOW_STEPS if model == "flow" else BRENIER_STEPS
    assert all(len(per_rank) == steps for per_rank in losses)
    values = [[v for stats in per_rank for v in stats.values()] for per_rank in losses]
    assert all(np.isfinite(v).all() for v in values)
    assert values[0] != values[1]  # sharded data: each rank saw its own batches
    weights = [load_file(str(out / f"{model}_rank{rank}.safetensors")) for rank in (0, 1)]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_only_rank_zero_writes_and_one_process_resumes_the_two_rank_flow_run(two_ranks):
    from safetensors.torch import load_file

    from otmap_cli.restoration.train import FlowTrainConfig, train_flow
    from otmap_cli.weights import load_tensors

    out, data = two_ranks
    run_dir = out / "flow"
    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert [record["step"] for record in log] == [FLOW_STEPS]  # one line: rank 0's
    tensors, meta = load_tensors(run_dir / "checkpoint.safetensors", "flow-checkpoint")
    rank0 = load_file(str(out / "flow_rank0.safetensors"))
    assert meta["step"] == FLOW_STEPS and all(torch.equal(tensors[f"model.{k}"], v) for k, v in rank0.items())
    lines: list[str] = []
    train_flow(FlowTrainConfig(max_steps=FLOW_STEPS + 2, resume=True, **flow_settings(data, run_dir)),
               log=lines.append)
    assert any("resumed" in line and f"step {FLOW_STEPS}" in line for line in lines)
    assert [json.loads(line)["step"] for line in (run_dir / "log.jsonl").read_text().splitlines()] == [
        FLOW_STEPS, FLOW_STEPS + 2]


def test_two_ranks_resume_a_one_process_flow_run(two_ranks):
    from safetensors.torch import load_file

    from otmap_cli.weights import load_tensors

    out, _ = two_ranks
    run_dir = out / "flow_1to2"
    assert [json.loads(line)["step"] for line in (run_dir / "log.jsonl").read_text().splitlines()] == [
        FLOW_STEPS, FLOW_STEPS + 2]
    assert [len(_report(out, rank)["flow_1to2_losses"]) for rank in (0, 1)] == [2, 2]
    weights = [load_file(str(out / f"flow_1to2_rank{rank}.safetensors")) for rank in (0, 1)]
    tensors, meta = load_tensors(run_dir / "checkpoint.safetensors", "flow-checkpoint")
    assert meta["step"] == FLOW_STEPS + 2
    assert all(torch.equal(weights[0][k], v) and torch.equal(tensors[f"model.{k}"], v) for k, v in weights[1].items())


def test_a_roll_back_on_divergence_happens_on_every_rank(two_ranks):
    from safetensors.torch import load_file

    out, _ = two_ranks
    log = [json.loads(line) for line in (out / "flow_rollback" / "log.jsonl").read_text().splitlines()]
    assert [(record["step"], record.get("rolled_back_to")) for record in log] == [  # (3: periodic, then final)
        (1, None), (2, 1), (2, None), (3, None), (3, None)]
    reports = [_report(out, rank) for rank in (0, 1)]
    assert [r["flow_rollback_lr_scale"] for r in reports] == [0.5, 0.5]
    losses = [[stats["loss"] for stats in r["flow_rollback_losses"]] for r in reports]
    assert losses[0][2] == losses[0][1]  # rank 0 replays step 2 from the restored weights and data stream
    weights = [load_file(str(out / f"flow_rollback_rank{rank}.safetensors")) for rank in (0, 1)]
    assert all(torch.equal(weights[0][k], v) for k, v in weights[1].items())


def test_one_process_resumes_the_two_rank_brenier_run(two_ranks, mnist_dir):
    from otmap_cli.generate.brenier import BrenierTrainConfig, train_brenier

    out, _ = two_ranks
    lines: list[str] = []
    train_brenier(BrenierTrainConfig(data=mnist_dir, run_dir=out / "brenier", max_steps=BRENIER_STEPS + 1,
                                     resume=True, **TINY_BRENIER), log=lines.append)
    assert any("resumed" in line and f"step {BRENIER_STEPS}" in line for line in lines)
    log = [json.loads(line) for line in (out / "brenier" / "log.jsonl").read_text().splitlines()]
    assert [record["step"] for record in log] == [BRENIER_STEPS, BRENIER_STEPS + 1]
    assert np.isfinite(log[-1]["loss_g"]) and "penalty" in log[-1]


def test_one_process_under_torchrun_runs_without_a_process_group(monkeypatch):
    import torch.distributed as dist

    from otmap_cli.training import join_process_group

    for name, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1"}.items():  # torchrun --nproc_per_node 1
        monkeypatch.setenv(name, value)
    assert join_process_group("cpu") == (0, 1, "cpu", False)
    assert not (dist.is_available() and dist.is_initialized())


if __name__ == "__main__":  # a rank of the torchrun launch above
    _worker(*(Path(arg) for arg in sys.argv[1:4]))
