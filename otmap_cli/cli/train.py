"""``otmap train flow|brenier|classifier``: training the shipped models (resumable; run in the background)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import typer

from otmap_cli.choices import AFFINE_INPUTS, GENERATOR_MODELS, POTENTIALS, choice_enum
from otmap_cli.cli.common import DEVICE, Device, check_output, grouped, require_folder, say
from otmap_cli.errors import InputError

GeneratorModel = choice_enum("GeneratorModel", GENERATOR_MODELS)
Potential = choice_enum("Potential", POTENTIALS)
AffineInput = choice_enum("AffineInput", AFFINE_INPUTS)
MNIST_DATA = typer.Option(..., "--data", help="Folder with the four MNIST idx(.gz) files.")


@dataclass
class Run:
    """The run controls of every resumable trainer (:class:`~otmap_cli.training.RunControls`)."""

    minutes: float = typer.Option(60.0, "--minutes", help="Wall-clock budget of this run.")
    max_steps: int = typer.Option(0, "--max-steps", help="Stop after this many steps (0 = no limit).")
    resume: bool = typer.Option(False, "--resume", help="Continue from <run-dir>/checkpoint.safetensors.")
    init: Optional[Path] = typer.Option(None, "--init", help="Warm start from shipped weights.")
    device: Device = DEVICE
    seed: int = typer.Option(0, "--seed")
    force: bool = typer.Option(False, "--force", help="Replace an existing --out file (--resume continues a run, "
                               "and replaces its own export without it).")

    def check_out(self, out: Path) -> None:
        """A new run must not replace weights that exist (e.g. a shipped model) unless asked to."""
        check_output(out, [self.init] if self.init else [], self.force or self.resume, (".safetensors",))

    def controls(self) -> dict:
        from otmap_cli.device import resolve_device

        return {"minutes": self.minutes, "max_steps": self.max_steps, "resume": self.resume, "init": self.init,
                "device": resolve_device(self.device.value), "seed": self.seed}


@dataclass
class BrenierTuning:
    """What ``train brenier`` may change of :class:`~otmap_cli.generate.brenier.BrenierTrainConfig`
    (None keeps its default)."""

    potential: Optional[Potential] = typer.Option(None, "--potential", help="The potential of brenier or icnn: "
                                                  "'decoder' (brenier's default: a DCGAN-like decoder of the "
                                                  "leading principal components inside the potential) or 'conv' (a "
                                                  "plain conv net: icnn's default, and the first shipped brenier "
                                                  "model).")
    code: Optional[int] = typer.Option(None, "--code", help="Principal components the decoder potential reads "
                                       "(default 16); phi can bend down in at most this many directions per point.")
    noise_scale: Optional[float] = typer.Option(None, "--noise-scale", min=1e-3, max=1e3, help="How much a "
                                                "pixel's own noise moves its gate in the decoder potential "
                                                "(default 1); smaller draws crisper stroke edges. --init or --resume "
                                                "may change it (the weights keep their meaning).")
    affine: Optional[AffineInput] = typer.Option(None, "--affine", help="What the quadratic part 1/2|Vx|^2 of "
                                                 "phi reads: 'full' (all 784 noise pixels; default) or 'code' "
                                                 "(the decoder's principal components only, so that no pixel "
                                                 "noise passes straight into the image).")
    pca_source: bool = typer.Option(False, "--pca-source", help="Draw the decoder potential's noise as wide "
                                    "as the data along its principal components (N(0, I) elsewhere), which "
                                    "shrinks the smooth span(E) term of the map (default off; results: "
                                    "models/brenier_mnist.md, session 13).")
    penalty_weight: Optional[float] = typer.Option(None, "--penalty-weight", help="Weight gamma of the convexity "
                                                   "penalty (brenier; default 10). Raise it, with --resume, if "
                                                   "'min_eigenvalue' in the log turns negative.")
    search_steps: Optional[int] = typer.Option(None, "--search-steps", help="Lanczos steps that aim the penalty "
                                               "at the lowest curvature of phi at each near pair (default 12).")
    near_pairs: Optional[int] = typer.Option(None, "--near-pairs", help="Points per step where the penalty probes "
                                             "curvature (default 16).")
    penalty_every: Optional[int] = typer.Option(None, "--penalty-every", min=1, help="Probe the near pairs on "
                                                "every k-th step only, weighted k (default 1): the Lanczos "
                                                "search is most of a step's cost.")
    near_step: Optional[float] = typer.Option(None, "--near-step", help="Length of the finite difference that "
                                              "measures it (default 0.3).")
    lr: Optional[float] = typer.Option(None, "--lr", help="Adam learning rate of the generator and the "
                                       "discriminator (default 2e-4); a resumed run may lower it for a final, "
                                       "quieter phase.")

    discriminator_warmup: Optional[int] = typer.Option(None, "--discriminator-warmup", min=0, help="Steps that "
                                                       "train the discriminator alone at the start of a run "
                                                       "(default 0); give a few thousand with --init, whose "
                                                       "file carries no discriminator.")

    def config(self, model: str) -> dict:
        """The BrenierTrainConfig fields that were given, ``model_options`` included."""
        if model not in ("brenier", "icnn") and (self.potential or self.code or self.noise_scale or self.affine
                                                 or self.pca_source):
            raise InputError("--potential, --code, --noise-scale, --affine and --pca-source apply to --model "
                             "brenier or icnn only")
        model_options = {"potential": self.potential.value if self.potential else None, "code": self.code,
                         "noise_scale": self.noise_scale, "affine": self.affine.value if self.affine else None,
                         "pca_source": True if self.pca_source else None}
        values = {"search_steps": self.search_steps, "near_pairs": self.near_pairs, "near_step": self.near_step,
                  "penalty_every": self.penalty_every,
                  "lr": self.lr, "lr_discriminator": self.lr, "discriminator_warmup": self.discriminator_warmup}
        return {"penalty_weight": self.penalty_weight,
                "model_options": {k: v for k, v in model_options.items() if v is not None},
                **{k: v for k, v in values.items() if v is not None}}


@grouped
def flow(
    data: Path = typer.Option(..., "--data", help="Folder of clean training images (e.g. CBSD432)."),
    out: Path = typer.Option(Path("models/flow_natural.safetensors"), "--out", help="Where to export EMA weights "
                             "(fp16 safetensors), at every checkpoint."),
    run_dir: Path = typer.Option(Path("runs/flow"), "--run-dir", help="Checkpoints and log.jsonl."),
    lr: float = typer.Option(5e-4, "--lr", help="Peak learning rate (warm-up, then cosine to 10 %)."),
    schedule_steps: int = typer.Option(60_000, "--schedule-steps", help="Steps over which the cosine decays "
                                       "(match it to the steps your budget allows)."),
    channels: str = typer.Option("64,128,256", "--channels", help="U-Net widths per level."),
    batch_pixels: Optional[int] = typer.Option(None, "--batch-pixels", min=128 * 128, help="Pixels per batch, "
                                               "filled with patches of 64, 96 or 128 px (default 131 072, 32 "
                                               "patches of 64 px; a GPU takes several times that at little cost "
                                               "per step)."),
    checkpoint_minutes: float = typer.Option(10.0, "--checkpoint-minutes"),
    *, run: Run,
):
    """Train the flow-matching prior used by 'otmap restore' (resumable; checkpoints every ~10 min).

    Under 'torchrun --nproc_per_node N -m otmap_cli train flow ...' it trains on N processes
    (DistributedDataParallel; docs/large_jobs.md)."""
    require_folder(data)
    run.check_out(out)
    try:
        widths = tuple(int(c) for c in channels.split(","))
    except ValueError:
        raise InputError(f"--channels must be comma-separated integers, got {channels!r}") from None
    from otmap_cli.restoration.train import FlowTrainConfig, train_flow

    cfg = FlowTrainConfig(data=data, run_dir=run_dir, out=out, lr=lr, schedule_steps=schedule_steps, channels=widths,
                          checkpoint_minutes=checkpoint_minutes, **run.controls(),
                          **({"pixels_per_batch": batch_pixels} if batch_pixels else {}))
    train_flow(cfg, log=say)


@grouped
def brenier(
    data: Path = MNIST_DATA,
    out: Path = typer.Option(Path("models/brenier_mnist.safetensors"), "--out", help="Where to export EMA "
                             "weights (fp16 safetensors), at every checkpoint."),
    run_dir: Path = typer.Option(Path("runs/brenier"), "--run-dir", help="Checkpoints, sample grids, log.jsonl."),
    model: GeneratorModel = typer.Option(GeneratorModel.brenier, "--model", help="brenier (the product) or a "
                                         "baseline: icnn, dcgan, cmgn."),
    checkpoint_minutes: float = typer.Option(10.0, "--checkpoint-minutes"),
    *, run: Run, tuning: BrenierTuning,
):
    """Train the Brenier generator used by 'otmap sample' (resumable; checkpoints every ~10 min).

    Under 'torchrun --nproc_per_node N -m otmap_cli train brenier ...' it trains on N processes
    (DistributedDataParallel; docs/large_jobs.md)."""
    require_folder(data)
    overrides = tuning.config(model.value)
    run.check_out(out)
    from otmap_cli.generate.brenier import BrenierTrainConfig, train_brenier

    cfg = BrenierTrainConfig(data=data, run_dir=run_dir, out=out, model=model.value,
                             checkpoint_minutes=checkpoint_minutes, **run.controls(), **overrides)
    train_brenier(cfg, log=say)


@grouped
def classifier(
    data: Path = MNIST_DATA,
    out: Path = typer.Option(Path("models/mnist_classifier.safetensors"), "--out", help="Where to export the "
                             "weights (fp16 safetensors), at every checkpoint."),
    run_dir: Path = typer.Option(Path("runs/classifier"), "--run-dir", help="Checkpoints and log.jsonl."),
    epochs: float = typer.Option(3.0, "--epochs", help="Passes over the 60 000 training images (the one-cycle "
                                 "schedule spans them)."),
    *, run: Run,
):
    """Train the small MNIST classifier whose features score generators (FLD, precision/recall);
    resumable like the other trainers."""
    require_folder(data)
    run.check_out(out)
    if not epochs > 0:
        raise InputError(f"--epochs must be > 0, got {epochs}")
    from otmap_cli.generate.classifier import ClassifierTrainConfig, train_classifier

    train_classifier(ClassifierTrainConfig(data=data, run_dir=run_dir, out=out, epochs=epochs, **run.controls()),
                     log=say)
