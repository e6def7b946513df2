"""DPIR's data step: PSNR and CPU time against how its prox is solved.

The prox of reflect-padded blur and bicubic down-sampling has no closed form. Rows, on the held-out
train_natural crops (never the test sets), mean PSNR and the process CPU seconds:

* with ``--plain``: deepinv's reflect-padded operators, whose prox is conjugate gradients warm-started at the
  denoiser's output, ``--iterations`` of them (otmap took 3 for super-resolution before session 10);
* ``deblur``: otmap's :class:`~otmap_cli.restoration.reflect_blur.ReflectBlur`, an FFT solve on the reflect-extended
  image and no CG steps;
* ``superres``: otmap's :class:`~otmap_cli.restoration.reflect_blur.ReflectDownsampling`, the closed-form
  circular solve on the reflect-extended images, then ``--steps`` CG steps
  (``reflect_blur.DOWNSAMPLING_CG_STEPS``).

    python benchmarks/dpir_cg.py --images 6 --crop 192 --plain
"""

from __future__ import annotations

import argparse
import time

from otmap_cli.restoration import api, physics, reflect_blur
from otmap_cli.restoration.options import resolve

from restore import degrade_for
from tune_restore import add_held_out_arguments, held_out_setup


def plain(task, image_size, noise_sigma, blur_sigma, kernel, scale, mask, device):
    """deepinv's reflect-padded Blur or Downsampling, whose prox is CG alone (before ReflectBlur/ReflectDownsampling)."""
    import deepinv as dinv

    deg = resolve(task, noise_sigma, blur_sigma, kernel, scale)
    noise = dinv.physics.GaussianNoise(sigma=deg.noise_sigma)
    if task == "superres":
        operator = dinv.physics.Downsampling(img_size=(3, *image_size), filter=physics.SR_FILTER, factor=deg.scale,
                                             padding="reflect", noise_model=noise, device=device)
    else:
        operator = dinv.physics.Blur(filter=physics.blur_filter(deg.blur_sigma, deg.kernel, device),
                                     padding="reflect", noise_model=noise, device=device)
    operator.set_ls_solver("CG", max_iter=PLAIN_CG_ITERATIONS[0])
    return operator


PLAIN_CG_ITERATIONS = [3]  # set per row by main()


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
    parser.add_argument("--steps", default="0,1,2", help="CG steps after ReflectDownsampling's FFT solve")
    parser.add_argument("--plain", action="store_true", help="also deepinv's operators with CG alone")
    args = parser.parse_args()
    prior, _, clean = held_out_setup(args)
    iterations = [int(n) for n in args.iterations.split(",")]
    steps = [int(n) for n in args.steps.split(",")]
    fast_label = {"deblur": "FFT (ReflectBlur)", "superres": "FFT (ReflectDownsampling), then CG"}
    cases = [(task, fast_label[task], [0] if task == "deblur" else steps) for task in args.tasks.split(",")]
    if args.plain:
        cases += [(task, "CG", iterations) for task in args.tasks.split(",")]
    fast = api.make_physics
    print("| task | prox | CG iterations | PSNR (dB) | CPU s |\n|---|---|---|---|---|")
    for task, prox, counts in cases:
        api.make_physics = plain if prox == "CG" else fast
        for count in counts:
            PLAIN_CG_ITERATIONS[0] = reflect_blur.DOWNSAMPLING_CG_STEPS = count
            start = time.process_time()
            psnr = mean_psnr(task, clean, prior)
            print(f"| {task} | {prox} | {count} | {psnr:.3f} | {time.process_time() - start:.1f} |", flush=True)


if __name__ == "__main__":
    main()
