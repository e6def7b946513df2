"""DPIR's data step: PSNR and CPU time against how its prox is solved.

The prox of reflect-padded blur and bicubic down-sampling has no closed form. Rows, on the held-out
train_natural crops (never the test sets), mean PSNR and the process CPU seconds:

* ``superres``, and ``deblur`` with ``--plain-blur``: deepinv's conjugate gradients warm-started at the
  denoiser's output, ``--iterations`` of them (``api.DPIR_CG_ITERATIONS``);
* ``deblur``: otmap's :class:`~otmap_cli.restoration.reflect_blur.ReflectBlur`, an FFT solve on the reflect-extended
  image and no CG steps.

    python benchmarks/dpir_cg.py --images 6 --crop 192 --plain-blur
"""

from __future__ import annotations

import argparse
import time

from otmap_cli.restoration import api, physics
from otmap_cli.restoration.options import resolve

from restore import degrade_for
from tune_restore import add_held_out_arguments, held_out_setup


def plain_blur(task, image_size, noise_sigma, blur_sigma, kernel, scale, mask, device):
    """deepinv's reflect-padded Blur, whose prox is CG alone (the model before ReflectBlur)."""
    import deepinv as dinv

    deg = resolve(task, noise_sigma, blur_sigma, kernel)
    return dinv.physics.Blur(filter=physics.blur_filter(deg.blur_sigma, deg.kernel, device), padding="reflect",
                             noise_model=dinv.physics.GaussianNoise(sigma=deg.noise_sigma), device=device)


def mean_psnr(task, clean, prior):
    scores = []
    for index, ref in enumerate(clean):
        otmap_task, y, _, scale = degrade_for(task, ref, seed=index)
        out = api.restore_rgb(y, otmap_task, scale=scale if scale > 1 else None, solver="dpir", prior=prior,
                              noise_sigma=resolve(otmap_task).noise_sigma)
        scores.append(api.quality(out, ref[:out.shape[0], :out.shape[1]])["psnr"])
    return sum(scores) / len(scores)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_held_out_arguments(parser, images=6, threads=1)
    parser.add_argument("--iterations", default="1,2,3,5,10")
    parser.add_argument("--tasks", default="deblur,superres")
    parser.add_argument("--plain-blur", action="store_true", help="also deepinv's Blur with CG alone")
    args = parser.parse_args()
    prior, _, clean = held_out_setup(args)
    iterations = [int(n) for n in args.iterations.split(",")]
    cases = [(task, "FFT (ReflectBlur)" if task == "deblur" else "CG", [0] if task == "deblur" else iterations)
             for task in args.tasks.split(",")]
    if args.plain_blur and "deblur" in args.tasks:
        cases.append(("deblur", "CG", iterations))
    fast_blur = api.make_physics
    print("| task | prox | CG iterations | PSNR (dB) | CPU s |\n|---|---|---|---|---|")
    for task, prox, counts in cases:
        api.make_physics = plain_blur if (task, prox) == ("deblur", "CG") else fast_blur
        for count in counts:
            api.DPIR_CG_ITERATIONS, start = count, time.process_time()
            psnr = mean_psnr(task, clean, prior)
            print(f"| {task} | {prox} | {count} | {psnr:.3f} | {time.process_time() - start:.1f} |", flush=True)


if __name__ == "__main__":
    main()
