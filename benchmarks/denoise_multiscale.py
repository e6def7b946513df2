"""Does a multi-scale denoising add to the product's one-scale mmse denoiser? (issue 12: Set5 margin over BM3D)

The prior sees a limited neighbourhood; a half-resolution copy of y (2x2 means: white noise of half the std)
lets it see twice as far. Two ways to put the coarse answer back, both on the full held-out train_natural
photos (the prior's validation images, never the test sets), sigma 25/255 by default, seeded noise:

* ``burger-harmeling``: x + up(D_coarse) - up(down(x)), the multi-scale meta-procedure of Burger and
  Harmeling, "Improving denoising algorithms via a multi-scale meta-procedure", DAGM 2011;
* ``lowpass g``: x + G_g * (up(D_coarse) - x), the coarse answer's frequencies below a Gaussian of g px.

x is ``restore_rgb(..., solver="mmse")``, the product's answer; up is bicubic. Prints PSNR per image and the mean.

    python benchmarks/denoise_multiscale.py --threads 1
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter

from otmap_cli.io import list_images, read_image
from otmap_cli.restoration.api import restore_rgb
from otmap_cli.restoration.prior import default_prior

from restore import SHARED, psnr


def half(x: np.ndarray) -> np.ndarray:
    """2x2 means of an (h, w, 3) array (an odd last row or column dropped)."""
    h, w = x.shape[0] // 2 * 2, x.shape[1] // 2 * 2
    return x[:h, :w].reshape(h // 2, 2, w // 2, 2, 3).mean(axis=(1, 3))


def double(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Bicubic x2 up-sampling of an (h, w, 3) array to ``shape`` (edge rows repeated where odd)."""
    up = F.interpolate(torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None], scale_factor=2,
                       mode="bicubic", align_corners=False)[0].permute(1, 2, 0).numpy()
    return np.pad(up, ((0, shape[0] - up.shape[0]), (0, shape[1] - up.shape[1]), (0, 0)), mode="edge")


def denoise(y: np.ndarray, sigma: float, prior) -> np.ndarray:
    """The product's denoising (mmse solver) of an (h, w, 3) array at noise std ``sigma``."""
    return restore_rgb(y.astype(np.float32), "denoise", noise_sigma=sigma, prior=prior, solver="mmse")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sigma", type=float, default=25 / 255)
    parser.add_argument("--lowpass", default="1,2,3", help="Gaussian widths g (px) of the low-pass blends")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    prior = default_prior()
    widths = [float(g) for g in args.lowpass.split(",")]
    scores: dict[str, list[float]] = {}
    for index, path in enumerate(list_images(SHARED / "train_natural")[-6:]):
        clean = read_image(path).rgb.astype(np.float64)
        noisy = clean + args.sigma * np.random.default_rng(index).standard_normal(clean.shape)
        x = denoise(noisy, args.sigma, prior)
        coarse = double(denoise(half(noisy), args.sigma / 2, prior), x.shape)
        results = {"one scale (product)": x, "burger-harmeling": x + coarse - double(half(x), x.shape)}
        for g in widths:
            results[f"lowpass {g:g}"] = x + gaussian_filter(coarse - x, (g, g, 0), mode="reflect")
        for name, out in results.items():
            scores.setdefault(name, []).append(psnr(np.clip(out, 0, 1), clean))
        print(f"{path.name}: " + ", ".join(f"{k} {v[-1]:.2f}" for k, v in scores.items()), flush=True)
    print(f"\n{len(scores['one scale (product)'])} held-out photos, sigma {args.sigma * 255:.0f}/255, mean PSNR (dB)\n")
    print("| method | dB | vs one scale |\n|---|---|---|")
    base = float(np.mean(scores["one scale (product)"]))
    for name, values in scores.items():
        print(f"| {name} | {np.mean(values):.3f} | {np.mean(values) - base:+.3f} |")


if __name__ == "__main__":
    main()
