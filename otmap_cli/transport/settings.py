"""The settings of a colour-map fit, validated without torch (so the CLI checks them before loading it)."""

from __future__ import annotations

from dataclasses import dataclass, field

from otmap_cli.choices import FIT_INITS, LOSSES, MONOTONE_MODELS, WARM_STARTS

# Distribution-loss steps after each warm start: after the ridge fit they gained nothing measurable
# (benchmarks/results/recolor_v25_ridge_sweep.log), after the gradient warm start they did.
REFINE_STEPS = {"ridge": 0, "gradient": 150}
GRADIENT_WARM_STEPS = 600
# Upper bounds that keep a typo from running for days (the defaults are at most 150 and 600 steps).
MAX_STEPS = 100_000
MAX_BATCH = 1 << 20


@dataclass
class FitSettings:
    """How a monotone map is fitted (``fit.py`` describes the three stages)."""

    model: str = "cmgn"
    model_options: dict = field(default_factory=dict)  # constructor arguments, e.g. width, sharpness
    loss: str = "sliced"
    steps: int | None = None  # distribution-loss steps; None: REFINE_STEPS of the warm start
    batch: int = 1024
    lr: float = 1e-2
    init: str = "gaussian"
    summary_bins: int = 16  # the warm start's colour histogram has summary_bins^3 cells
    warm_start: str = "auto"  # "ridge": one NNLS solve (ridge.py); "gradient": warm_steps Adam steps
    warm_steps: int | None = None  # Adam steps of the gradient warm start; None: GRADIENT_WARM_STEPS
    ridge_directions: int = 50
    ridge_knots: int = 16
    ridge_sharpness: float = 32.0
    edge_weight: float = 2.0  # weight of the pull back from past the gamut edge (fit.edge_pull; docs/decisions.md)
    seed: int = 0
    device: str = "cpu"
    output_range: tuple[float, float] | None = None

    @property
    def warm_method(self) -> str:
        """The warm start that runs: "auto" is the ridge fit for a C-MGN (the only network it builds)."""
        if self.warm_start == "auto":
            return "ridge" if self.model == "cmgn" else "gradient"
        return self.warm_start

    @property
    def gradient_warm_steps(self) -> int:
        """Adam steps of the warm start that run: none after the ridge solve."""
        if self.warm_method != "gradient":
            return 0
        return GRADIENT_WARM_STEPS if self.warm_steps is None else self.warm_steps

    @property
    def refine_steps(self) -> int:
        return REFINE_STEPS[self.warm_method] if self.steps is None else self.steps

    def validate(self) -> None:
        if self.model not in MONOTONE_MODELS:
            raise ValueError(f"unknown model {self.model!r}; choose one of {', '.join(MONOTONE_MODELS)}")
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; choose one of {', '.join(LOSSES)}")
        if self.init not in FIT_INITS:
            raise ValueError(f"init must be one of {', '.join(FIT_INITS)}")
        if self.warm_start not in WARM_STARTS:
            raise ValueError(f"warm start must be one of {', '.join(WARM_STARTS)}")
        if self.warm_method == "ridge" and self.model != "cmgn":
            raise ValueError("the ridge warm start fits a C-MGN; use --warm-start gradient with other models")
        if self.warm_steps is not None and self.warm_method != "gradient":
            raise ValueError("warm steps count the steps of --warm-start gradient; the ridge warm start is one "
                             "solve (add --warm-start gradient to use them)")
        if not (1 <= self.ridge_directions <= 4096 and 1 <= self.ridge_knots <= 256 and self.ridge_sharpness > 0):
            raise ValueError("ridge directions must be 1-4096, knots 1-256 and the sharpness > 0")
        if not (0 <= self.refine_steps <= MAX_STEPS and 0 <= self.gradient_warm_steps <= MAX_STEPS):
            raise ValueError(f"steps and warm steps must be from 0 to {MAX_STEPS:,}")
        if not 2 <= self.summary_bins <= 32 or self.edge_weight < 0:  # 32^3: exact OT on <= ~10^4 cells
            raise ValueError("summary bins must be from 2 to 32 and the edge weight >= 0")
        if not 16 <= self.batch <= MAX_BATCH:
            raise ValueError(f"batch pixels must be from 16 to {MAX_BATCH:,}")
