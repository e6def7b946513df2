"""2-D transport experiments for learning the method (after the 2025 MVA course projects on MGNs).

Three cases: Gaussian -> Gaussian (where the Brenier map is known in closed form, so the learned
map can be checked against it), a 2-component -> 3-component Gaussian mixture (the map must split
mass), and Gaussian -> banana (a curved target no affine map can reach).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from otmap_cli.choices import TOYS
from otmap_cli.io import atomic_output
from otmap_cli.progress import Progress
from otmap_cli.transport.fit import FitSettings, fit_monotone_map
from otmap_cli.transport.gaussian import gaussian_brenier
from otmap_cli.transport.sliced import sliced_w2

_N = 20_000


def _mixture(rng: np.random.Generator, means: np.ndarray, scale: float, n: int) -> np.ndarray:
    labels = rng.integers(len(means), size=n)
    return means[labels] + scale * rng.standard_normal((n, 2))


def toy_samples(case: str, seed: int = 0, n: int = _N) -> tuple[np.ndarray, np.ndarray]:
    """Source and target point clouds, each (n, 2)."""
    rng = np.random.default_rng(seed)
    if case == "gaussian":
        source = rng.standard_normal((n, 2))
        target = np.array([2.0, 1.0]) + rng.standard_normal((n, 2)) @ np.array([[1.4, 0.0], [0.6, 0.5]])
    elif case == "gmm":
        source = _mixture(rng, np.array([[-2.0, 0.0], [2.0, 0.0]]), 0.5, n)
        target = _mixture(rng, np.array([[0.0, 2.5], [-2.2, -1.3], [2.2, -1.3]]), 0.4, n)
    elif case == "banana":
        source = rng.standard_normal((n, 2))
        u = rng.standard_normal(n)
        target = np.stack([1.5 * u, 0.8 * (u**2 - 1) + 0.3 * rng.standard_normal(n)], axis=1)
    else:
        raise ValueError(f"unknown toy case {case!r}; choose one of {', '.join(TOYS)}")
    return source.astype(np.float32), target.astype(np.float32)


def run_toy(case: str, settings: FitSettings, figure: Path | str, progress: Progress | None = None,
            overwrite: bool = True) -> dict:
    """Fit the map, draw source / target / pushed samples and displacements, return the figures of merit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    source, target = toy_samples(case, settings.seed)
    result = fit_monotone_map(source, target, settings, progress=progress)
    pushed = result.net(source)
    report = {"sliced W2 (pushed, target)": sliced_w2(pushed, target),
              "sliced W2 (source, target)": sliced_w2(source, target), "fit seconds": result.seconds}
    if case == "gaussian":
        matrix, offset = gaussian_brenier(source, target)
        exact = source @ matrix + offset
        report["RMSE vs closed-form Brenier map"] = float(np.sqrt(((pushed - exact) ** 2).sum(1).mean()))
    fig, axes = plt.subplots(1, 3, figsize=(15, 5), sharex=True, sharey=True)
    show = slice(0, 3000)
    axes[0].scatter(*source[show].T, s=2, c="tab:blue", label="source")
    axes[0].scatter(*target[show].T, s=2, c="tab:orange", label="target")
    axes[1].scatter(*target[show].T, s=2, c="tab:orange", label="target")
    axes[1].scatter(*pushed[show].T, s=2, c="tab:green", label="T(source)")
    arrows = slice(0, 300)
    axes[2].quiver(*source[arrows].T, *(pushed[arrows] - source[arrows]).T, angles="xy", scale_units="xy", scale=1,
                   width=0.002, color="tab:gray")
    axes[2].scatter(*source[arrows].T, s=4, c="tab:blue")
    axes[2].scatter(*pushed[arrows].T, s=4, c="tab:green")
    titles = ("source and target", "learned push-forward", "displacements x -> T(x) (never cross: monotone)")
    for ax, title in zip(axes, titles):
        ax.set_title(title)
        ax.set_aspect("equal")
    axes[0].legend(loc="upper left", markerscale=4)
    axes[1].legend(loc="upper left", markerscale=4)
    fig.suptitle(f"{case}: {settings.model.upper()} with {settings.loss} loss, {settings.refine_steps} steps")
    fig.tight_layout()
    with atomic_output(Path(figure), overwrite=overwrite) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)
    return report
