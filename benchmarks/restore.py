"""Benchmark of image restoration (issue: otmap restore).

For each task of issue 3 (denoise sigma 25/255; deblur Gaussian sigma_b 1, noise 0.025; super-res
x2, noise 0.025; random inpainting 70 % missing, noise 0.005; a centred box hole of a quarter of
the side, noise 0.005) the clean test images are degraded by the exact forward model of ``otmap
degrade`` (seed = image index), restored by every method, and scored by PSNR / SSIM (deepinv
metrics, on [0, 1] images clipped) with seconds per image:

* ``pnp-flow``: PnP-Flow with the tuned defaults and the shipped prior (``otmap restore``'s choice
  for inpainting);
* ``flow mmse`` (denoise only): the prior as the MMSE denoiser, D_t(t y), t = 1/(1+sigma), averaged
  over ``api.ENSEMBLE`` flips and quarter turns (what ``otmap restore --task denoise`` runs by default);
* ``dpir``: deepinv.optim.DPIR (HQS, Zhang et al. TPAMI 2021) with *our* prior as its denoiser:
  the same network, another algorithm (``otmap restore``'s choice for deblur and super-resolution);
* ``bm3d`` (denoise; pip ``bm3d``) and ``tv`` (deepinv TVPrior, 100 proximal-gradient steps from
  H^T y, lambda fixed a priori and not tuned, so a weak baseline) for the other tasks;
* ``classical``: the answer of scikit-image / PIL (denoise: wavelet BayesShrink; deblur: Wiener
  with the true PSF; super-res: bicubic; inpainting: biharmonic);
* ``input``: the degraded image itself (super-res: nearest-neighbour enlargement).

Test images: CBSD68 (the first --cbsd images of the sorted folder) and Set5, centre-cropped to at
most --crop pixels a side (CPU time; the crop is said in the table). Prints markdown tables,
writes ``restore.json`` and a picture grid ``restore_grid.png`` into --out.

    python benchmarks/restore.py --out benchmarks/results            # the README's run
    python benchmarks/restore.py --cbsd 2 --set5 0 --crop 96 --steps 10 --tasks denoise   # smoke run
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from otmap_cli.io import read_image
from otmap_cli.restoration import api
from otmap_cli.restoration import options as restore_options
from otmap_cli.restoration.physics import (blur_filter, degrade, make_physics, mask_tensor, resolve, to_array,
                                           to_tensor)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
TASKS = {  # name -> (otmap task, degrade options)
    "denoise": ("denoise", {}),
    "deblur": ("deblur", {}),
    "superres": ("superres", {"scale": 2}),
    "inpaint-random": ("inpaint", {"mask_ratio": 0.7}),
    "inpaint-box": ("inpaint", {"box": "centre"}),
}
TV_LAMBDA = {"deblur": 0.01, "superres": 0.01, "inpaint": 0.005}  # on [0, 1] images; a priori, not tuned
PUBLISHED = "CBSD68 sigma=25, full images: CBM3D 30.71, FFDNet 31.21, DRUNet 31.69 dB (DPIR, TPAMI 2021, Table III)"


def psnr(x: np.ndarray, ref: np.ndarray) -> float:
    """PSNR (dB) of ``x`` clipped to [0, 1] against ``ref``, in numpy: cheap enough to call every iteration."""
    return float(10 * np.log10(1 / np.mean((np.clip(x, 0, 1) - ref) ** 2)))


def centre_crop(rgb: np.ndarray, size: int, multiple: int = 4) -> np.ndarray:
    h, w = rgb.shape[:2]
    ch, cw = min(h, size), min(w, size)
    ch, cw = ch - ch % multiple, cw - cw % multiple
    top, left = (h - ch) // 2, (w - cw) // 2
    return np.ascontiguousarray(rgb[top:top + ch, left:left + cw])


def test_images(n_cbsd: int, n_set5: int, crop: int) -> list[tuple[str, np.ndarray]]:
    chosen = sorted((SHARED / "cbsd68").glob("*.png"))[:n_cbsd] + sorted((SHARED / "set5").glob("*.png"))[:n_set5]
    return [(f"{p.parent.name}/{p.stem}", centre_crop(read_image(p).rgb, crop)) for p in chosen]


def degrade_for(task: str, clean: np.ndarray, seed: int):
    otmap_task, options = TASKS[task]
    options = dict(options)
    if options.get("box") == "centre":
        h, w = clean.shape[:2]
        side = min(h, w) // 4
        options["box"] = ((w - side) // 2, (h - side) // 2, side, side)
    y, mask = degrade(clean, otmap_task, seed=seed, **options)
    return otmap_task, y, mask, options.get("scale", 1)


# ------------------------------------------------------------------------------------------ methods

def pnp_flow(prior, solver: str = "pnp-flow"):
    def run(task, y, mask, scale):  # the true noise level, as BM3D gets it
        return api.restore_rgb(y, task, mask=mask, scale=scale if task == "superres" else None, prior=prior,
                               solver=solver, noise_sigma=resolve(task).noise_sigma)
    return run


def mmse(prior):
    def run(task, y, mask, scale):
        return api.restore_rgb(y, task, prior=prior, solver="mmse", noise_sigma=resolve(task).noise_sigma)
    return run


def first_guess(y: np.ndarray, mask: np.ndarray | None):
    """PnP-Flow's start for ``y`` as ``otmap restore`` takes it (the holes' fill for inpainting, else None)."""
    return api.first_guess(to_tensor(y), None if mask is None else mask_tensor(mask, y.shape[:2]))


def _physics(task, y, mask, scale):
    h, w = y.shape[0] * scale, y.shape[1] * scale
    deg = resolve(task, scale=scale if task == "superres" else None)
    return make_physics(task, (h, w), deg.noise_sigma, deg.blur_sigma, deg.kernel, deg.scale, mask), deg


def dpir(prior):
    def run(task, y, mask, scale):
        return api.restore_rgb(y, task, mask=mask, scale=scale if task == "superres" else None, prior=prior,
                               solver="dpir", noise_sigma=resolve(task).noise_sigma)
    return run


def bm3d_denoise(task, y, mask, scale):
    import bm3d

    return np.clip(bm3d.bm3d_rgb(y, resolve(task).noise_sigma), 0, 1)


def tv(task, y, mask, scale):
    """min_x 1/2 |Hx - y|^2 + lambda TV(x) by proximal gradient (deepinv's TV prox), from H^T y."""
    import deepinv as dinv

    physics, deg = _physics(task, y, mask, scale)
    prior, fidelity = dinv.optim.TVPrior(n_it_max=30), dinv.optim.L2()
    y_t = to_tensor(y)
    step = 1.0 / physics.compute_norm(torch.randn_like(physics.A_adjoint(y_t)), verbose=False).item()
    x = physics.A_adjoint(y_t)
    with torch.no_grad():
        for _ in range(100):
            x = prior.prox(x - step * fidelity.grad(x, y_t, physics), gamma=step * TV_LAMBDA[task])
    return to_array(x).clip(0, 1)


def classical(task, y, mask, scale):
    from skimage import restoration, transform

    if task == "denoise":
        return np.clip(restoration.denoise_wavelet(y, method="BayesShrink", mode="soft", channel_axis=-1,
                                                   rescale_sigma=True, sigma=resolve(task).noise_sigma), 0, 1)
    if task == "deblur":
        deg = resolve(task)
        psf = blur_filter(deg.blur_sigma, deg.kernel)[0, 0].numpy()
        balance = (deg.noise_sigma / max(float(y.std()), 1e-6)) ** 2 * 10  # a noise-to-signal guess, not tuned
        return np.clip(np.stack([restoration.wiener(y[..., c], psf, balance) for c in range(3)], -1), 0, 1)
    if task == "superres":
        return np.clip(transform.rescale(y, scale, order=3, channel_axis=-1), 0, 1)
    return np.clip(restoration.inpaint_biharmonic(y, mask == 0, channel_axis=-1), 0, 1)


def degraded_input(task, y, mask, scale):
    return np.clip(np.repeat(np.repeat(y, scale, 0), scale, 1), 0, 1)


def methods(prior, task: str) -> dict[str, Callable]:
    chosen = {"pnp-flow": pnp_flow(prior)}
    if task == "denoise":
        chosen[f"flow mmse (x{api.ENSEMBLE})"] = mmse(prior)
    chosen["dpir (our prior)"] = dpir(prior)
    if task == "denoise":
        chosen["bm3d"] = bm3d_denoise
    else:
        chosen["tv"] = tv
    chosen["classical"] = classical
    chosen["input"] = degraded_input
    return chosen


# ------------------------------------------------------------------------------------------ main

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cbsd", type=int, default=8, help="how many CBSD68 images (first of the sorted folder)")
    parser.add_argument("--set5", type=int, default=5, help="how many Set5 images")
    parser.add_argument("--crop", type=int, default=256, help="centre crop, pixels a side")
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated, from: " + ", ".join(TASKS))
    parser.add_argument("--steps", type=int, default=None, help="override PnP-Flow's N (default: per task)")
    parser.add_argument("--weights", type=Path, default=None, help="a prior other than the shipped one")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--methods", default="",
                        help="comma-separated substrings: only these methods (e.g. 'dpir,classical')")
    parser.add_argument("--timing", action="store_true", help="only time the product's defaults on one 256 x 256 "
                        "crop per task (run it on an otherwise idle machine)")
    parser.add_argument("--out", type=Path, default=Path("bench_out/restore"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from otmap_cli.restoration.prior import default_prior, load_prior

    prior = load_prior(args.weights, "cpu") if args.weights else default_prior("cpu")
    if args.steps:
        restore_options.PNPFLOW_DEFAULTS.update({k: replace(s, steps=args.steps)
                                                 for k, s in restore_options.PNPFLOW_DEFAULTS.items()})
    args.out.mkdir(parents=True, exist_ok=True)
    if args.timing:
        time_defaults(prior, args.out / "restore_timing.json", args.threads)
        return
    images = test_images(args.cbsd, args.set5, args.crop)
    wanted = [part for part in args.methods.split(",") if part]
    results: dict[str, dict[str, list[dict]]] = {}
    examples: dict[str, dict[str, np.ndarray]] = {}
    for task in args.tasks.split(","):
        results[task] = {}
        for index, (name, clean) in enumerate(images):
            otmap_task, y, mask, scale = degrade_for(task, clean, seed=index)
            reference = clean[:y.shape[0] * scale, :y.shape[1] * scale]
            for method, run in methods(prior, otmap_task).items():
                if wanted and not any(part in method for part in wanted):
                    continue
                start = time.time()
                out = run(otmap_task, y, mask, scale)
                seconds = time.time() - start
                row = {"image": name, "seconds": round(seconds, 2), **api.quality(out, reference)}
                results[task].setdefault(method, []).append(row)
                print(f"{task:15s} {name:22s} {method:18s} {row['psnr']:6.2f} dB {row['ssim']:.4f} {seconds:6.1f} s",
                      flush=True)
                if index == 0:
                    examples.setdefault(task, {"clean": reference})[method] = out
        (args.out / "restore.json").write_text(json.dumps({"crop": args.crop, "images": [n for n, _ in images],
                                                           "results": results}, indent=1))
    print_tables(results, images, args.crop, args.threads)
    save_grid(examples, args.out / "restore_grid.png")


def time_defaults(prior, path: Path, threads: int) -> None:
    """Wall time of ``otmap restore``'s defaults (the product path) on a 256 x 256 crop, per task."""
    (name, clean), = test_images(1, 0, 256)
    rows = {}
    for task in TASKS:
        otmap_task, y, mask, scale = degrade_for(task, clean, seed=0)  # superres: 128 x 128 in, 256 x 256 out
        start = time.time()
        pnp_flow(prior, "auto")(otmap_task, y, mask, scale)  # what `otmap restore --task T` runs
        rows[task] = round(time.time() - start, 1)
        print(f"{task:15s} {rows[task]:6.1f} s for a {clean.shape[1]}x{clean.shape[0]} output", flush=True)
    path.write_text(json.dumps({"image": name, "threads": threads, "seconds": rows}, indent=1))


def print_tables(results, images, crop, threads) -> None:
    n_cbsd = sum(name.startswith("cbsd68/") for name, _ in images)
    n_set5 = len(images) - n_cbsd
    print(f"\nMean PSNR (dB) / SSIM / seconds per image; {n_cbsd} CBSD68 + {n_set5} Set5 images, "
          f"centre crops of at most {crop} px; {threads} CPU thread(s).\n")
    for task, by_method in results.items():
        print(f"### {task}\n")
        print("| method | CBSD68 PSNR | CBSD68 SSIM | Set5 PSNR | Set5 SSIM | s/image |")
        print("|---|---|---|---|---|---|")
        for method, rows in by_method.items():
            cells = []
            for prefix in ("cbsd68/", "set5/"):
                subset = [r for r in rows if r["image"].startswith(prefix)]
                cells += ([f"{np.mean([r['psnr'] for r in subset]):.2f}", f"{np.mean([r['ssim'] for r in subset]):.4f}"]
                          if subset else ["–", "–"])
            print(f"| {method} | " + " | ".join(cells) + f" | {np.mean([r['seconds'] for r in rows]):.1f} |")
        print()
    print(PUBLISHED)


def save_grid(examples: dict[str, dict[str, np.ndarray]], path: Path) -> None:
    """One row per task (first test image): clean, then each method, at the clean image's size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = max(len(row) for row in examples.values())
    fig, axes = plt.subplots(len(examples), columns, figsize=(2.2 * columns, 2.4 * len(examples)), squeeze=False)
    for r, (task, row) in enumerate(examples.items()):
        for c in range(columns):
            ax = axes[r][c]
            ax.axis("off")
            if c < len(row):
                label, image = list(row.items())[c]
                ax.imshow(np.clip(image, 0, 1))
                ax.set_title(f"{task}\n{label}" if c == 0 else label, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
