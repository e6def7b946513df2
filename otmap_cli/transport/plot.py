"""The ``--plot`` figure: source, style and result, with their colour distributions."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from otmap_cli.io import Image, atomic_output

_SCATTER_PIXELS = 4000


def _chromaticity(rgb: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random subsample of pixels in the CIELAB (a*, b*) plane, with their own colours for markers."""
    from skimage.color import rgb2lab

    flat = rgb.reshape(-1, 3)
    pick = flat[rng.choice(len(flat), size=min(_SCATTER_PIXELS, len(flat)), replace=False)]
    lab = rgb2lab(pick[None])[0]
    return lab[:, 1:], np.clip(pick, 0, 1)


def plot_transfer(source: Image, style: Image, result: Image, path: Path | str, overwrite: bool = True) -> None:
    """Top row: the three images; bottom row: each one's pixels in the CIELAB a*b* plane (result ~ style)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    fig, axes = plt.subplots(2, 3, figsize=(13, 8.5))
    for ax, image, title in zip(axes[0], (source, style, result), ("source", "style", "result")):
        ax.imshow(np.clip(image.rgb, 0, 1))
        ax.set_title(title)
        ax.axis("off")
    for ax, image, title in zip(axes[1], (source, style, result), ("source", "style", "result")):
        ab, colours = _chromaticity(image.rgb, rng)
        ax.scatter(ab[:, 0], ab[:, 1], c=colours, s=3)
        ax.set(title=f"{title} colours (CIELAB a*, b*)", xlabel="a*", ylabel="b*", xlim=(-60, 60), ylim=(-60, 80))
    fig.tight_layout()
    with atomic_output(Path(path), overwrite=overwrite) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
