"""PSNR against iteration for PnP-Flow, the paper's iteration and ours, beside DPIR and biharmonic (issue 12).

On centre crops of the 6 held-out train_natural images (the validation set of the prior; never the
test sets), each benchmark task (benchmarks/restore.py degradations, seed = image index) is solved by

* ``paper``: Algorithm 1 of Martin et al. (ICLR 2025) as published: t_n = n/N, one gradient step,
  no final step, no carried noise (``options.Settings`` with only N, alpha and K);
* ``ours``: ``options.PNPFLOW_DEFAULTS`` (what ``otmap restore --solver pnp-flow`` runs);

both with the task's alpha, N and K of ``options.PNPFLOW_DEFAULTS``, and the mean PSNR of the estimate after
every iteration is recorded (the last point of ``ours`` includes its final step). DPIR with the same
prior (deblur, super-res) and biharmonic inpainting are drawn as horizontal lines. Writes
``pnpflow_iterations.png`` and ``.json`` into --out, and ``box_inpainting.png``: the box hole of the first
two crops filled by biharmonic and both PnP-Flows (does it continue structure into the hole?).

    python benchmarks/pnpflow_iterations.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from otmap_cli.restoration import api, pnpflow
from otmap_cli.restoration.options import Settings, settings_for
from otmap_cli.restoration.physics import to_array, to_tensor

from restore import _physics, degrade_for, first_guess, psnr
from tune_restore import add_held_out_arguments, held_out_setup

TASKS = ("deblur", "superres", "inpaint-random", "inpaint-box")


def baseline(task: str, y: np.ndarray, mask, physics, sigma: float, prior, scale: int) -> tuple[str, np.ndarray]:
    if task.startswith("inpaint"):
        from skimage.restoration import inpaint_biharmonic

        return "biharmonic", inpaint_biharmonic(y, 1 - mask, channel_axis=-1)
    with torch.inference_mode():
        return "dpir", to_array(api._dpir(to_tensor(y), physics, prior, sigma, "cpu", scale))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_held_out_arguments(parser, images=6, threads=1)
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--out", type=Path, default=Path("bench_out/restore"))
    args = parser.parse_args()
    prior, held_out, clean = held_out_setup(args)
    report = {"images": [p.name for p in held_out], "crop": args.crop, "tasks": {}}
    args.out.mkdir(parents=True, exist_ok=True)
    for task in args.tasks.split(","):
        otmap_task = degrade_for(task, clean[0], seed=0)[0]
        ours = settings_for(otmap_task)
        # the paper's iteration with the same number of prior passes as ours (N K = 100)
        variants = {"paper": Settings(ours.steps * ours.averages, ours.alpha, 1), "ours": ours}
        curves = {name: np.zeros(s.steps + s.final_step) for name, s in variants.items()}
        lines = []
        pictures = []
        for index, ref in enumerate(clean):
            otmap_task, y, mask, scale = degrade_for(task, ref, seed=index)
            ref = ref[:scale * y.shape[0], :scale * y.shape[1]]
            physics, deg = _physics(otmap_task, y, mask, scale)
            for name, settings in variants.items():
                trace = []
                out = pnpflow.solve(to_tensor(y), physics, prior, settings, generator=torch.Generator().manual_seed(0),
                                    noise_sigma=deg.noise_sigma, start=first_guess(y, mask),
                                    observe=lambda n, x: trace.append(psnr(to_array(x), ref)))
                if settings.final_step:
                    trace.append(psnr(to_array(out), ref))
                curves[name] += np.array(trace) / len(clean)
                if task == "inpaint-box" and index < 2:
                    pictures.append(to_array(out))
            label, reference = baseline(task, y, mask, physics, deg.noise_sigma, prior, scale)
            lines.append(psnr(reference, ref))
            if task == "inpaint-box" and index < 2:
                pictures[-2:-2] = [y, reference]
                pictures.append(ref)
        report["tasks"][task] = {"curves": {k: v.round(3).tolist() for k, v in curves.items()},
                                 label: round(float(np.mean(lines)), 3),
                                 "settings": {k: vars(v) for k, v in variants.items()}}
        if pictures:
            save_grid(pictures, 5, args.out / "box_inpainting.png")
        print(f"{task:15s} paper {curves['paper'][-1]:.2f}  ours {curves['ours'][-1]:.2f}  "
              f"{label} {np.mean(lines):.2f} dB", flush=True)
    (args.out / "pnpflow_iterations.json").write_text(json.dumps(report, indent=1))
    plot(report, args.out / "pnpflow_iterations.png")


def save_grid(pictures: list[np.ndarray], columns: int, path: Path) -> None:
    """Rows of (input, biharmonic, PnP-Flow paper, PnP-Flow ours, clean)."""
    from PIL import Image

    rows = [np.concatenate(pictures[i:i + columns], axis=1) for i in range(0, len(pictures), columns)]
    Image.fromarray((np.clip(np.concatenate(rows, axis=0), 0, 1) * 255).round().astype(np.uint8)).save(path)


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = report["tasks"]
    fig, axes = plt.subplots(1, len(tasks), figsize=(4 * len(tasks), 3.4), squeeze=False)
    for ax, (task, entry) in zip(axes[0], tasks.items()):
        for name, curve in entry["curves"].items():
            ax.plot(range(1, len(curve) + 1), curve, label=f"PnP-Flow {name}")
        for label in ("dpir", "biharmonic"):
            if label in entry:
                ax.axhline(entry[label], color="k", ls="--", lw=1, label=label)
        finals = [c[-1] for c in entry["curves"].values()] + [entry.get("dpir", entry.get("biharmonic"))]
        ax.set_ylim(min(finals) - 4, max(finals) + 1)
        ax.set_title(task)
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"mean PSNR (dB), {len(report['images'])} held-out crops {report['crop']}²")
    axes[0][0].legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


if __name__ == "__main__":
    main()
