"""``otmap restore`` and ``otmap degrade``: PnP-Flow restoration and the forward models it inverts."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import typer

from otmap_cli.choices import SOLVERS, TASKS, choice_enum
from otmap_cli.choices import IMAGE_SUFFIXES
from otmap_cli.cli.common import (DEVICE, FORCE, MAX_PIXELS, STDIO, Batch, check_output, grouped, plan_outputs,
                                  progress, require_files, result, run_batch, say, select_inputs, wrote)
from otmap_cli.errors import InputError

Task = choice_enum("Task", TASKS)
Solver = choice_enum("Solver", SOLVERS)


@dataclass
class ForwardModel:
    """The options that name a degradation y = H x + n: what degrade simulates and restore inverts."""

    task: Task = typer.Option(..., "--task", help="denoise | deblur | superres | inpaint | colorize (a grey "
                              "photo in, colours out, with its luma kept).")
    noise_sigma: Optional[str] = typer.Option(None, "--noise-sigma", metavar="SIGMA", help="Noise std in [0,1] "
                                              "pixel units (a fraction such as 25/255 is accepted; default: "
                                              "estimated from each image, and printed).")
    blur_sigma: Optional[str] = typer.Option(None, "--blur-sigma", metavar="PIXELS", help="Gaussian blur std in "
                                             "pixels, at most 100 (deblur).")
    kernel: Optional[Path] = typer.Option(None, "--kernel", help="Blur kernel (PSF) as PNG or NPY (deblur).")
    scale: Optional[int] = typer.Option(None, "--scale", help="Super-resolution factor 2, 3 or 4.")

    def load_kernel(self):
        """The PSF array of --kernel, or None."""
        if self.kernel is None:
            return None
        from otmap_cli.restoration.physics import load_kernel

        return load_kernel(self.kernel)


@dataclass
class Iteration:
    """PnP-Flow's iteration (None = the task's default)."""

    steps: Optional[int] = typer.Option(None, "--steps", help="PnP-Flow iterations N (default per task; at most "
                                        "10000).")
    averages: Optional[int] = typer.Option(None, "--averages", help="Noise draws K averaged per iteration (at "
                                           "most 100).")
    alpha: Optional[float] = typer.Option(None, "--alpha", help="Step-size exponent: gamma_n = (1-t_n)^alpha.")


@grouped
def restore(
    inputs: List[Path] = typer.Argument(..., metavar="INPUT...", help="Degraded image(s) or folders (with "
                                        "--out-dir); '-' reads stdin (and writes stdout unless -o or --out-dir)."),
    *, model: ForwardModel,
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Output file ('-' = PNG on stdout). "
                                          "Default: <input>_restored.png."),
    name: Optional[str] = typer.Option(None, "--name", help="Output name template ({stem} = the input's name "
                                       "without its extension). Default: {stem}_restored.png; for images "
                                       "found in a folder, their own names."),
    mask: Optional[Path] = typer.Option(None, "--mask", help="Inpainting mask, same size: black = missing."),
    solver: Solver = typer.Option(Solver.auto, "--solver", help="How the flow prior is used: pnp-flow (the "
                                  "paper's iteration), dpir (DPIR's half-quadratic splitting with the prior as "
                                  "denoiser), or mmse "
                                  "(denoise only: the prior as the MMSE denoiser, averaged over flips and "
                                  "rotations). auto = the one measured best per task: mmse for denoise, dpir for "
                                  "deblur, superres and inpaint, pnp-flow for colorize."),
    reference: Optional[Path] = typer.Option(None, "--reference", help="Clean image: print PSNR/SSIM (stdout)."),
    uncertainty: Optional[Path] = typer.Option(None, "--uncertainty", metavar="STD.png", help="Also write a heat "
                                               "map of the per-pixel standard deviation across --uncertainty-runs "
                                               "PnP-Flow runs (seeds SEED, SEED+1, ...; black = 0, yellow = the "
                                               "maximum, both in the --json summary); the output is then their "
                                               "mean. PnP-Flow only (dpir and mmse are deterministic). With "
                                               "several inputs, put {stem} in the name."),
    uncertainty_runs: int = typer.Option(4, "--uncertainty-runs", metavar="K", help="Runs for --uncertainty "
                                         "(2 to 100; time grows K-fold)."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Flow prior (.safetensors); default: shipped."),
    seed: int = typer.Option(0, "--seed"),
    device=DEVICE,
    iteration: Iteration,
    batch: Batch,
):
    """Restore images with PnP-Flow (Martin et al., ICLR 2025) and our shipped flow-matching prior.
    For superres, INPUT is the low-resolution image and the output is --scale times larger."""
    from otmap_cli.restoration.options import RestoreOptions

    task = model.task.value
    options = RestoreOptions(task, model.noise_sigma, model.blur_sigma, None, model.scale, iteration.steps,
                             iteration.averages, iteration.alpha, solver.value,
                             uncertainty_runs if uncertainty is not None else None)
    degradation, _, solver_used = options.validate(has_mask=mask is not None)
    require_files([mask, model.kernel, reference, weights] + ([] if batch.keep_going else inputs))
    given = list(inputs)
    inputs, roots = select_inputs(inputs, batch)
    extra_inputs = [p for p in (mask, model.kernel, reference, weights) if p is not None]
    spread = _uncertainty_paths(uncertainty, inputs)
    plan = plan_outputs(inputs, output, name, "{stem}_restored.png", [*given, *roots, *extra_inputs],
                        batch, roots, extras=tuple((path, IMAGE_SUFFIXES) for path in spread.values()))
    from otmap_cli.device import resolve_device
    from otmap_cli.io import is_grey, read_image, write_image
    from otmap_cli.restoration import api
    from otmap_cli.restoration.prior import default_prior, load_prior

    dev = resolve_device(device.value)
    psf = model.load_kernel()
    with progress("restore", "loading model"):
        prior = load_prior(weights, dev) if weights is not None else default_prior(dev)
    clean = read_image(reference, batch.max_pixels) if reference is not None else None

    def work(source: Path) -> dict:
        start = time.time()
        image = read_image(source, batch.max_pixels)
        pixel_mask = api.read_mask(mask, image.size) if mask is not None else None
        sigma, sigma_source = degradation.noise_sigma, "given"
        if model.noise_sigma is None:
            with progress(f"restore {image.name}", "estimating the noise level"):
                sigma, sigma_source = api.noise_level(image.rgb, task, pixel_mask)
            say(f"noise sigma {sigma:.4f} ({255 * sigma:.1f}/255, {sigma_source})")
        if task == "colorize" and not is_grey(image.rgb):
            say(f"note: {source} is in colour; colourising its luma (0.299 R + 0.587 G + 0.114 B)")
        record = {}
        settings = dict(noise_sigma=sigma, blur_sigma=model.blur_sigma, kernel=psf, scale=model.scale,
                        mask=pixel_mask, steps=iteration.steps, averages=iteration.averages, alpha=iteration.alpha,
                        seed=seed, device=dev, prior=prior, solver=solver_used)
        with progress(f"restore {image.name} ({task})", "starting") as update:
            if source in spread:
                restored, std = api.restore_with_uncertainty(image, task, runs=uncertainty_runs, progress=update,
                                                             **settings)
            else:
                restored = api.restore_image(image, task, progress=update, **settings)
        write_image(restored, plan.outputs[source], overwrite=plan.overwrite(source))
        if source in spread:
            write_image(api.heat_map(std), spread[source], bit_depth=8, overwrite=batch.force)
            record = {"uncertainty": str(spread[source]), "uncertainty_runs": uncertainty_runs,
                      "std_mean": float(std.mean()), "std_max": float(std.max()),
                      "std_scale": "heat map: black = 0, pale yellow = std_max ([0, 1] pixel units)"}
            say(f"per-pixel std over {uncertainty_runs} runs: mean {std.mean():.4f}, max {std.max():.4f} "
                f"(= yellow in {spread[source]})")
        record = {"output": str(plan.outputs[source]), "solver": solver_used, "noise_sigma": sigma,
                  "noise_sigma_source": sigma_source, **record, "seconds": round(time.time() - start, 3)}
        if clean is not None:
            record.update(api.quality(restored, clean))
            if not batch.as_json:
                result(f"PSNR {record['psnr']:.2f} dB  SSIM {record['ssim']:.4f}", image_on_stdout=plan.to_stdout)
        wrote(plan.outputs[source])
        if source in spread:
            wrote(spread[source])
        return record

    run_batch(inputs, work, batch, plan)


def _uncertainty_paths(template: Optional[Path], inputs: List[Path]) -> dict:
    """input -> its --uncertainty file ({stem} filled in; required with several inputs)."""
    if template is None:
        return {}
    if str(template) == STDIO:
        raise InputError("--uncertainty needs a file name (stdout carries at most one image)")
    if len(inputs) > 1 and "{stem}" not in str(template):
        raise InputError(f"--uncertainty {template}: with several inputs put {{stem}} in the name, e.g. "
                         "{stem}_std.png, so that each input gets its own file")
    return {source: Path(str(template).replace("{stem}", "stdin" if str(source) == STDIO else source.stem))
            for source in inputs}


@grouped
def degrade(
    clean: Path = typer.Argument(..., metavar="CLEAN", help="Clean image to degrade."),
    *, model: ForwardModel,
    output: Path = typer.Option(..., "-o", "--output", help="Degraded image to write ('-' = stdout)."),
    mask_ratio: Optional[float] = typer.Option(None, "--mask-ratio", help="Fraction of pixels removed (inpaint)."),
    box: Optional[str] = typer.Option(None, "--box", help="X,Y,W,H rectangle removed (inpaint)."),
    mask_out: Optional[Path] = typer.Option(None, "--mask-out", help="Write the inpainting mask (black = "
                                            "missing)."),
    seed: int = typer.Option(0, "--seed"),
    force: bool = FORCE,
    max_pixels: int = MAX_PIXELS,
):
    """Simulate exactly the forward model that 'otmap restore' inverts (deepinv physics), to make test inputs."""
    from otmap_cli.restoration.options import resolve

    task = model.task.value
    degradation = resolve(task, model.noise_sigma, model.blur_sigma, None, model.scale)
    box_values = None
    if box is not None:
        try:
            box_values = tuple(int(v) for v in box.split(","))
            assert len(box_values) == 4
        except (ValueError, AssertionError):
            raise InputError(f"--box must be X,Y,W,H integers, got {box!r}") from None
    require_files([clean, model.kernel])
    check_output(output, [clean], force)
    if mask_out is not None:
        if str(mask_out) != "-" and str(output) != "-" and mask_out.resolve() == output.resolve():
            raise InputError(f"{mask_out}: the degraded image and the mask would both be written there")
        check_output(mask_out, [clean], force)
    from otmap_cli.io import is_grey, read_image, write_image
    from otmap_cli.restoration import api

    image = read_image(clean, max_pixels)
    degraded, pixel_mask = api.degrade_image(image, task, noise_sigma=degradation.noise_sigma,
                                             blur_sigma=model.blur_sigma, kernel=model.load_kernel(),
                                             scale=model.scale, mask_ratio=mask_ratio, box=box_values, seed=seed)
    write_image(degraded, output, overwrite=force)
    if mask_out is not None and pixel_mask is not None:
        write_image(api.mask_to_image(pixel_mask), mask_out, bit_depth=8, overwrite=force)
    wrote(output)
