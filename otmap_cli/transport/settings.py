"""The settings of a colour-map fit, validated without torch (so the CLI checks them before loading it)."""

from __future__ import annotations

from dataclasses import dataclass, field

from otmap_cli.choices import FIT_INITS, LOSSES, MONOTONE_MODELS

# Upper bounds that keep a typo from running for days (the defaults are 150 and 600 steps).
MAX_STEPS = 100_000
MAX_BATCH = 1 << 20


@dataclass
class FitSettings:
    """How a monotone map is fitted (``fit.py`` describes the three stages)."""

    model: str = "cmgn"
    model_options: dict = field(default_factory=dict)  # constructor arguments, e.g. width, sharpness
    loss: str = "sliced"
    steps: int = 150
    batch: int = 1024
    lr: float = 1e-2
    init: str = "gaussian"
    summary_bins: int = 16  # the warm start's colour histogram has summary_bins^3 cells
    warm_steps: int = 600
    edge_weight: float = 2.0  # weight of the pull back from past the gamut edge (fit.edge_pull; docs/decisions.md)
    seed: int = 0
    device: str = "cpu"
    output_range: tuple[float, float] | None = None

    def validate(self) -> None:
        if self.model not in MONOTONE_MODELS:
            raise ValueError(f"unknown model {self.model!r}; choose one of {', '.join(MONOTONE_MODELS)}")
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; choose one of {', '.join(LOSSES)}")
        if self.init not in FIT_INITS:
            raise ValueError(f"init must be one of {', '.join(FIT_INITS)}")
        if not (0 <= self.steps <= MAX_STEPS and 0 <= self.warm_steps <= MAX_STEPS):
            raise ValueError(f"steps and warm steps must be from 0 to {MAX_STEPS:,}")
        if not 2 <= self.summary_bins <= 32 or self.edge_weight < 0:  # 32^3: exact OT on <= ~10^4 cells
            raise ValueError("summary bins must be from 2 to 32 and the edge weight >= 0")
        if not 16 <= self.batch <= MAX_BATCH:
            raise ValueError(f"batch pixels must be from 16 to {MAX_BATCH:,}")
