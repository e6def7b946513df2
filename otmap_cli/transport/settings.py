"""The settings of a colour-map fit, validated without torch (so the CLI checks them before loading it)."""

from __future__ import annotations

from dataclasses import dataclass

from otmap_cli.choices import FIT_INITS, LOSSES, MONOTONE_MODELS

# Upper bounds that keep a typo from running for days (the defaults are 200 and 600 steps).
MAX_STEPS = 100_000
MAX_BATCH = 1 << 20


@dataclass
class FitSettings:
    """How a monotone map is fitted (``fit.py`` describes the three stages)."""

    model: str = "cmgn"
    loss: str = "sliced"
    steps: int = 200
    batch: int = 2048
    lr: float = 1e-2
    init: str = "gaussian"
    warm_pixels: int = 3000
    warm_steps: int = 600
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
        if not (0 <= self.steps <= MAX_STEPS and 0 <= self.warm_steps <= MAX_STEPS and self.warm_pixels >= 0):
            raise ValueError(f"steps and warm steps must be from 0 to {MAX_STEPS:,}, warm pixels >= 0")
        if not 16 <= self.batch <= MAX_BATCH:
            raise ValueError(f"batch pixels must be from 16 to {MAX_BATCH:,}")
