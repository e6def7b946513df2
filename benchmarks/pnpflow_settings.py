"""One PnP-Flow setting at a time, on the held-out crops, beside DPIR with the same prior or biharmonic (issue 12).

Each ``--vary FIELD=V1,V2,...`` changes one field of the task's ``options.PNPFLOW_DEFAULTS`` entry (the others
stay at their defaults, or at the ``--base FIELD=V`` values) and reports the mean PSNR over the held-out
train_natural crops (the prior's validation set; never the test sets), degraded as in benchmarks/restore.py with seed = image index, with
the seed-0 re-noising that ``otmap restore`` uses. The grids of session 17's carried noise (first measured
with an ad-hoc copy of the solver, ``benchmarks/results/pnpflow_carried_noise_session17.log``):

    python benchmarks/pnpflow_settings.py --task deblur --vary carried_noise=0,0.3,0.4,0.5,0.6,0.7,1
    python benchmarks/pnpflow_settings.py --task superres --vary carried_noise=0,0.25,0.5,0.75

Session 18's inpainting grid (first run with an ad-hoc driver of the same solver,
``benchmarks/results/pnpflow_inpaint_start_views_session18.log``), e.g. the former default and views 8 alone,
then the start times around the new default:

    python benchmarks/pnpflow_settings.py --task inpaint-random --vary views=8 \
        --base views=1 --base averages=1 --base steps=100 --base start_time=0
    python benchmarks/pnpflow_settings.py --task inpaint-box --vary start_time=0.6,0.8

Session 19 started the same path from the splitting solver's answer instead of the holes' fill (no gain:
``benchmarks/results/pnpflow_start_from_splitting_session19.log``):

    python benchmarks/pnpflow_settings.py --task inpaint-box --start splitting --vary start_time=0.7,0.8,0.9
"""

from __future__ import annotations

import argparse
from dataclasses import fields, replace

import numpy as np
import torch

from otmap_cli.restoration import hqs, pnpflow
from otmap_cli.restoration.options import Settings, settings_for
from otmap_cli.restoration.physics import mask_tensor, to_array, to_tensor

from pnpflow_iterations import TASKS, baseline
from restore import _physics, degrade_for, first_guess, psnr
from tune_restore import add_held_out_arguments, held_out_setup


def variants(task: str, varied: list[str], base: list[str] = ()) -> dict[str, Settings]:
    """``{label: settings}``: the task's default changed by every ``FIELD=V`` of ``base``, then each value of
    each ``FIELD=V1,V2`` of ``varied`` on its own."""
    default = settings_for(task)
    kinds = {f.name: type(getattr(default, f.name)) for f in fields(Settings)}

    def parse(item: str) -> tuple[str, list[tuple[str, object]]]:
        """``FIELD=V1,V2`` as (FIELD, [(text, value), ...])."""
        name, _, values = item.partition("=")
        if name not in kinds:
            raise SystemExit(f"unknown setting {name!r}; one of {', '.join(kinds)}")
        kind = kinds[name]
        return name, [(v, kind(float(v)) if kind is not bool else v.lower() in ("1", "true"))
                      for v in values.split(",")]

    for item in base:
        name, [(_, value), *_] = parse(item)
        default = replace(default, **{name: value})
    out = {"default": default}
    for item in varied:
        name, values = parse(item)
        for text, value in values:
            out[f"{name}={text}"] = replace(default, **{name: value})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_held_out_arguments(parser, images=6, threads=1)
    parser.add_argument("--task", default="deblur", choices=TASKS)
    parser.add_argument("--vary", action="append", default=[], help="FIELD=V1,V2,... (repeatable)")
    parser.add_argument("--base", action="append", default=[],
                        help="FIELD=V: change the default before varying (repeatable)")
    parser.add_argument("--start", choices=("fill", "splitting"), default="fill",
                        help="inpainting's first guess for t_0 > 0: the holes' fill (the product's) or the "
                             "splitting solver's answer")
    args = parser.parse_args()
    prior, held_out, clean = held_out_setup(args)
    otmap_task = degrade_for(args.task, clean[0], seed=0)[0]
    runs = variants(otmap_task, args.vary, args.base)
    scores: dict[str, list[float]] = {}
    reference_scores: list[float] = []
    for index, ref in enumerate(clean):
        otmap_task, y, mask, scale = degrade_for(args.task, ref, seed=index)
        ref = ref[:scale * y.shape[0], :scale * y.shape[1]]
        physics, deg = _physics(otmap_task, y, mask, scale)
        label, reference = baseline(args.task, y, mask, physics, deg.noise_sigma, prior, scale)
        reference_scores.append(psnr(reference, ref))
        start = first_guess(y, mask)
        if args.start == "splitting" and mask is not None:
            start = hqs.inpaint(to_tensor(y), mask_tensor(mask, y.shape[:2]), prior, deg.noise_sigma).clamp(0, 1)
        for name, settings in runs.items():
            out = pnpflow.solve(to_tensor(y), physics, prior, settings, generator=torch.Generator().manual_seed(0),
                                noise_sigma=deg.noise_sigma, start=start)
            scores.setdefault(name, []).append(psnr(to_array(out), ref))
        print(f"{held_out[index].name}: {label} {reference_scores[-1]:.2f}, "
              + ", ".join(f"{k} {v[-1]:.2f}" for k, v in scores.items()), flush=True)
    best = float(np.mean(reference_scores))
    print(f"\n{args.task}, {len(clean)} held-out crops of {args.crop} px, mean PSNR (dB), {args.threads} thread(s)\n")
    print(f"| PnP-Flow setting | dB | vs default | vs {label} |\n|---|---|---|---|")
    for name, values in scores.items():
        mean = float(np.mean(values))
        print(f"| {name} | {mean:.3f} | {mean - np.mean(scores['default']):+.3f} | {mean - best:+.3f} |")
    print(f"| {label} | {best:.3f} | | |")


if __name__ == "__main__":
    main()
