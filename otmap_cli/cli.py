"""The ``otmap`` command line: argument parsing, progress and printing only; the work is in the library.

Exit codes: 0 success, 1 failure while working, 2 bad usage or bad input, 130 interrupted.
Heavy libraries (torch, deepinv) are imported inside the commands, so ``otmap --help`` and input
errors answer at once.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Callable, Iterator, List, Optional

import typer

from otmap_cli.errors import InputError, OtmapError

app = typer.Typer(
    help="Optimal transport and flows from the command line: colour transfer with monotone gradient networks "
         "(recolor, apply, toy), image restoration with PnP-Flow (restore, degrade), digits from a Brenier "
         "generator (sample), and training of the shipped models (train).",
    no_args_is_help=True, add_completion=True, pretty_exceptions_enable=False, rich_markup_mode=None)
train_app = typer.Typer(help="Train the models otmap ships (resumable; run in the background).", no_args_is_help=True)
app.add_typer(train_app, name="train")

_STATE = {"debug": False, "quiet": False}


class Model(str, Enum):
    cmgn = "cmgn"
    mmgn = "mmgn"


class Loss(str, Enum):
    sliced = "sliced"
    sinkhorn = "sinkhorn"
    mmd = "mmd"
    wgan = "wgan"
    gaussian = "gaussian"


# Options shared by several commands: one definition, one wording.
_DEVICE = typer.Option("auto", "--device", help="auto (CUDA if available), cpu or cuda.")
_FORCE = typer.Option(False, "--force", help="Replace existing outputs.")
_KEEP_GOING = typer.Option(False, "--keep-going", help="Go on past a bad input; fail at the end.")
_SHARD = typer.Option(None, "--shard", help="I/N: process only every N-th input from the I-th.")
_MAX_PIXELS = typer.Option(100_000_000, "--max-pixels", help="Refuse images larger than this.")
_JSON = typer.Option(False, "--json", help="Print machine-readable results on stdout.")


class Task(str, Enum):
    denoise = "denoise"
    deblur = "deblur"
    superres = "superres"
    inpaint = "inpaint"


class Toy(str, Enum):
    gaussian = "gaussian"
    gmm = "gmm"
    banana = "banana"


# ----------------------------------------------------------------------------------------- plumbing

def _console():
    from rich.console import Console

    return Console(stderr=True, quiet=_STATE["quiet"])


def _say(message: str) -> None:
    if not _STATE["quiet"]:
        print(message, file=sys.stderr)


@contextmanager
def _progress(label: str) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar on stderr; yields ``update(done, total)``."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=_console(), transient=True) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _check_output(out: Path, inputs: list[Path], force: bool) -> Path:
    if str(out) == "-":
        return out
    resolved = out.resolve()
    for source in inputs:
        if str(source) != "-" and source.exists() and resolved == source.resolve():
            raise InputError(f"{out}: output would overwrite an input; choose another name")
    if out.exists() and not force:
        raise InputError(f"{out}: already exists (use --force to replace it)")
    if out.exists() and out.is_dir():
        raise InputError(f"{out}: is a folder; give a file name")
    return out


def _output_for(source: Path, output: Optional[Path], out_dir: Optional[Path], template: str,
                many: bool) -> Path:
    """Where the result for ``source`` goes: -o, else --out-dir/template, else next to the source."""
    if output is not None:
        if many:
            raise InputError("-o/--output takes one input; use --out-dir for several")
        return output
    stem = "stdin" if str(source) == "-" else source.stem
    try:
        name = template.format(stem=stem)
    except (KeyError, IndexError, ValueError):
        raise InputError(f"bad --name template {template!r}; use {{stem}}, e.g. '{{stem}}_out.png'") from None
    folder = out_dir if out_dir is not None else (Path.cwd() if str(source) == "-" else source.parent)
    return folder / name


def _select_shard(inputs: list[Path], shard: Optional[str]) -> list[Path]:
    if not shard:
        return inputs
    try:
        index, count = (int(v) for v in shard.split("/"))
    except ValueError:
        raise InputError(f"--shard must look like I/N (e.g. 2/8), got {shard!r}") from None
    if count < 1 or not 1 <= index <= count:
        raise InputError(f"--shard {shard}: need 1 <= I <= N")
    return inputs[index - 1::count]


def _require_files(paths: list[Path]) -> None:
    """Fail fast on missing inputs, before the slow imports."""
    for path in paths:
        if path is not None and str(path) != "-" and not path.exists():
            raise InputError(f"{path}: no such file")


def _require_folder(path: Path) -> None:
    """Training data must be a folder; say so before the slow imports."""
    if not path.is_dir():
        raise InputError(f"{path}: not a folder (--data expects the training data folder)")


def _emit_json(payload: dict) -> None:
    print(json.dumps(payload, indent=None, default=str))


def _run_batch(inputs: list[Path], work: Callable[[Path], dict], keep_going: bool, as_json: bool) -> None:
    """Run ``work`` on each input; with --keep-going, go past failures and exit non-zero at the end."""
    results, exit_codes = [], []
    for source in inputs:
        try:
            results.append({"input": str(source), "ok": True, **work(source)})
        except OtmapError as exc:
            if not keep_going or len(inputs) == 1:
                raise
            exit_codes.append(exc.exit_code)
            results.append({"input": str(source), "ok": False, "error": str(exc)})
            _say(f"otmap: error: {exc} (continuing)")
    if as_json:
        _emit_json({"results": results, "failed": len(exit_codes)})
    if exit_codes:
        _say(f"otmap: {len(exit_codes)} of {len(inputs)} inputs failed")
        raise typer.Exit(1 if 1 in exit_codes else 2)


def _validate_unit(value: float, name: str) -> float:
    if not 0.0 <= value <= 1.0:
        raise InputError(f"{name} must be within 0..1, got {value}")
    return value


def _validate_positive(value: int, name: str, minimum: int = 1) -> int:
    if value < minimum:
        raise InputError(f"{name} must be >= {minimum}, got {value}")
    return value


@app.callback()
def _global(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
            quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or messages on stderr.")):
    _STATE["debug"] = debug or bool(os.environ.get("OTMAP_DEBUG"))
    _STATE["quiet"] = quiet


# ----------------------------------------------------------------------------------------- recolor

@app.command()
def recolor(
    inputs: List[Path] = typer.Argument(..., metavar="SOURCE... STYLE",
                                        help="Image(s) to re-colour, then the style image whose colours to take."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Output file ('-' = PNG on stdout). "
                                          "Default: <source>_recolored.png next to the source."),
    out_dir: Optional[Path] = typer.Option(None, "--out-dir", help="Folder for the outputs of several sources."),
    name: str = typer.Option("{stem}_recolored.png", "--name", help="Output name template for --out-dir."),
    model: Model = typer.Option(Model.cmgn, "--model", help="Monotone gradient network: cascaded or modular."),
    loss: Loss = typer.Option(Loss.sliced, "--loss", help="Distribution loss (see README: chosen by benchmark)."),
    steps: int = typer.Option(200, "--steps", help="Distribution-loss steps after the OT warm start."),
    warm_steps: int = typer.Option(600, "--warm-steps", help="Regression steps onto an exact discrete OT plan "
                                   "(0 = skip)."),
    batch_pixels: int = typer.Option(2048, "--batch-pixels", help="Pixels per optimisation step."),
    strength: float = typer.Option(1.0, "--strength", help="0..1: partial transfer along the Wasserstein "
                                   "geodesic, (1-s) x + s T(x)."),
    exact: bool = typer.Option(False, "--exact", help="Evaluate the network at every pixel instead of a 65^3 "
                               "table for images above 0.27 MP."),
    shared_map: bool = typer.Option(False, "--shared-map", help="Fit one map on all sources pooled (consistent "
                                    "colours across video frames)."),
    save_map: Optional[Path] = typer.Option(None, "--save-map", help="Save the fitted map (.safetensors) for "
                                            "'otmap apply'."),
    lut: Optional[Path] = typer.Option(None, "--lut", help="Export the map as a 3D LUT (.cube) for ffmpeg, "
                                       "Resolve, Photoshop."),
    lut_size: int = typer.Option(33, "--lut-size", help="LUT grid size: 17, 33, 65 or 129."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Save a figure: images and colour distributions "
                                        "before/after."),
    seed: int = typer.Option(0, "--seed", help="Random seed (pixel sampling, initialisation)."),
    device: str = _DEVICE,
    force: bool = _FORCE,
    keep_going: bool = _KEEP_GOING,
    shard: Optional[str] = _SHARD,
    max_pixels: int = _MAX_PIXELS,
    as_json: bool = _JSON,
):
    """Re-colour SOURCE with the palette of STYLE by the optimal transport (Brenier) map, fitted as a
    monotone gradient network. Example: otmap recolor day.jpg sunset.jpg -o day_at_sunset.png"""
    if len(inputs) < 2:
        raise InputError("recolor needs at least one SOURCE and a STYLE image")
    *sources, style_path = inputs
    if not keep_going:
        _require_files(inputs)
    _require_files([style_path])
    sources = _select_shard(sources, shard)
    _validate_unit(strength, "--strength")
    _validate_positive(steps, "--steps", 0)
    _validate_positive(batch_pixels, "--batch-pixels", 16)
    if lut is not None and lut_size not in (17, 33, 65, 129):
        raise InputError("--lut-size must be 17, 33, 65 or 129")
    from otmap_cli.device import resolve_device
    from otmap_cli.io import read_image, write_image
    from otmap_cli.transport.fit import FitSettings
    from otmap_cli.transport.recolor import fit_colour_map

    settings = FitSettings(model=model.value, loss=loss.value, steps=steps, warm_steps=warm_steps,
                           batch=batch_pixels, seed=seed, device=resolve_device(device))
    many = len(sources) > 1
    planned = {src: _check_output(_output_for(src, output, out_dir, name, many), inputs, force) for src in sources}
    for extra in (save_map, lut, plot):
        if extra is not None:
            _check_output(extra, inputs, force)
    style = read_image(style_path, max_pixels)

    def fit(images):
        with _progress("fitting colour map") as update:
            try:
                colour_map, result = fit_colour_map(images, style, settings, progress=update)
            except ValueError as exc:
                raise InputError(str(exc)) from None
        if result.fell_back:
            _say("otmap: warning: the network fit did not beat the closed-form Gaussian map; using that map")
        return colour_map

    def export(colour_map, images):
        if save_map is not None:
            colour_map.save(save_map)
        if lut is not None:
            from otmap_cli.transport.lut import write_cube

            write_cube(lut, colour_map.lut(lut_size, strength), title=f"otmap {images[0].name} -> {style.name}")
        if plot is not None:
            from otmap_cli.transport.plot import plot_transfer

            plot_transfer(images[0], style, images[0].with_rgb(colour_map.apply(images[0].rgb, strength, exact)),
                          plot)

    shared = None
    if shared_map:
        images = [read_image(s, max_pixels) for s in sources]
        shared = fit(images)
        export(shared, images)

    def work(source: Path) -> dict:
        start = time.time()
        image = read_image(source, max_pixels)
        colour_map = shared or fit([image])
        if shared is None:
            export(colour_map, [image])
        result = image.with_rgb(colour_map.apply(image.rgb, strength, exact, out=image.rgb))  # in place: bounded memory
        write_image(result, planned[source])
        _say(f"wrote {planned[source]}")
        return {"output": str(planned[source]), "seconds": round(time.time() - start, 3),
                "fell_back": colour_map.info.get("fell_back"), "metrics": colour_map.info.get("metrics")}

    _run_batch(sources, work, keep_going, as_json)


@app.command()
def apply(
    map_file: Path = typer.Argument(..., metavar="MAP", help="A map saved by 'recolor --save-map' (.safetensors) "
                                    "or a 3D LUT (.cube)."),
    inputs: List[Path] = typer.Argument(..., metavar="INPUT...", help="Images to map."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Output file (one input only; '-' = "
                                          "stdout)."),
    out_dir: Optional[Path] = typer.Option(None, "--out-dir", help="Folder for the outputs."),
    name: str = typer.Option("{stem}_mapped.png", "--name", help="Output name template."),
    strength: float = typer.Option(1.0, "--strength", help="0..1 partial transfer (saved maps only)."),
    exact: bool = typer.Option(False, "--exact", help="Evaluate the network at every pixel."),
    force: bool = _FORCE,
    keep_going: bool = _KEEP_GOING,
    shard: Optional[str] = _SHARD,
    max_pixels: int = _MAX_PIXELS,
    as_json: bool = _JSON,
):
    """Apply a fitted colour map (or a .cube LUT) to many images or video frames, identically."""
    _validate_unit(strength, "--strength")
    _require_files([map_file] + ([] if keep_going else inputs))
    inputs = _select_shard(inputs, shard)
    from otmap_cli.io import read_image, write_image

    if map_file.suffix.lower() == ".cube":
        from otmap_cli.transport.lut import apply_lut, read_cube

        if strength != 1.0:
            raise InputError("--strength applies to saved maps, not to .cube files")
        table = read_cube(map_file)
        mapper = lambda rgb: apply_lut(table, rgb, out=rgb)  # noqa: E731
    else:
        from otmap_cli.transport.colormap import ColourMap

        colour_map = ColourMap.load(map_file)
        mapper = lambda rgb: colour_map.apply(rgb, strength, exact, out=rgb)  # noqa: E731
    many = len(inputs) > 1
    planned = {src: _check_output(_output_for(src, output, out_dir, name, many), [map_file, *inputs], force)
               for src in inputs}

    def work(source: Path) -> dict:
        start = time.time()
        image = read_image(source, max_pixels)
        write_image(image.with_rgb(mapper(image.rgb)), planned[source])
        _say(f"wrote {planned[source]}")
        return {"output": str(planned[source]), "seconds": round(time.time() - start, 3)}

    _run_batch(inputs, work, keep_going, as_json)


@app.command()
def toy(
    case: Toy = typer.Argument(Toy.gaussian, help="gaussian: Gaussian->Gaussian (closed form known); gmm: 2 -> 3 "
                               "component mixture; banana: Gaussian -> banana."),
    output: Path = typer.Option(Path("toy.png"), "-o", "--output", help="Figure to write."),
    model: Model = typer.Option(Model.cmgn, "--model"),
    loss: Loss = typer.Option(Loss.sliced, "--loss"),
    steps: int = typer.Option(1000, "--steps"),
    seed: int = typer.Option(0, "--seed"),
    force: bool = typer.Option(False, "--force", help="Replace an existing figure."),
):
    """2-D experiments for learning the method: fit a monotone gradient network between two point
    clouds and plot the learned transport."""
    _validate_positive(steps, "--steps", 0)
    _check_output(output, [], force)
    from otmap_cli.transport.fit import FitSettings
    from otmap_cli.transport.toy import run_toy

    settings = FitSettings(model=model.value, loss=loss.value, steps=steps, seed=seed, batch=1024)
    with _progress(f"fitting {case.value}") as update:
        report = run_toy(case.value, settings, output, progress=update)
    for key, value in report.items():
        _say(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")
    _say(f"wrote {output}")


# ----------------------------------------------------------------------------------------- restore

def _restore_options(task, noise_sigma, blur_sigma, scale, steps, averages, alpha):
    if noise_sigma is not None and noise_sigma < 0:
        raise InputError(f"--noise-sigma must be >= 0, got {noise_sigma}")
    if blur_sigma is not None and blur_sigma <= 0:
        raise InputError(f"--blur-sigma must be > 0, got {blur_sigma}")
    if scale is not None and scale not in (2, 3, 4):
        raise InputError(f"--scale must be 2, 3 or 4, got {scale}")
    if steps is not None:
        _validate_positive(steps, "--steps")
    if averages is not None:
        _validate_positive(averages, "--averages")
    if alpha is not None and alpha < 0:
        raise InputError(f"--alpha must be >= 0, got {alpha}")


@app.command()
def restore(
    inputs: List[Path] = typer.Argument(..., metavar="INPUT...", help="Degraded image(s); '-' reads stdin."),
    task: Task = typer.Option(..., "--task", help="denoise | deblur | superres | inpaint."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Output file ('-' = PNG on stdout). "
                                          "Default: <input>_restored.png."),
    out_dir: Optional[Path] = typer.Option(None, "--out-dir", help="Folder for the outputs of several inputs."),
    name: str = typer.Option("{stem}_restored.png", "--name", help="Output name template."),
    noise_sigma: Optional[float] = typer.Option(None, "--noise-sigma", help="Noise std in [0,1] pixel units "
                                                "(default per task)."),
    blur_sigma: Optional[float] = typer.Option(None, "--blur-sigma", help="Gaussian blur std in pixels (deblur)."),
    kernel: Optional[Path] = typer.Option(None, "--kernel", help="Blur kernel (PSF) as PNG or NPY (deblur)."),
    scale: Optional[int] = typer.Option(None, "--scale", help="Super-resolution factor 2, 3 or 4."),
    mask: Optional[Path] = typer.Option(None, "--mask", help="Inpainting mask, same size: black = missing."),
    solver: str = typer.Option("auto", "--solver", help="How the flow prior is used: pnp-flow (the paper's "
                               "iteration), dpir (deepinv's DPIR with the prior as denoiser), or mmse (denoise "
                               "only: the prior as the MMSE denoiser, averaged over flips and rotations). auto = "
                               "the one measured best per task: mmse for denoise, dpir for deblur and superres, "
                               "pnp-flow for inpaint."),
    steps: Optional[int] = typer.Option(None, "--steps", help="PnP-Flow iterations N (default per task)."),
    averages: Optional[int] = typer.Option(None, "--averages", help="Noise draws K averaged per iteration."),
    alpha: Optional[float] = typer.Option(None, "--alpha", help="Step-size exponent: gamma_n = (1-t_n)^alpha."),
    reference: Optional[Path] = typer.Option(None, "--reference", help="Clean image: print PSNR/SSIM."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Flow prior (.safetensors); default: shipped."),
    seed: int = typer.Option(0, "--seed"),
    device: str = _DEVICE,
    force: bool = _FORCE,
    keep_going: bool = _KEEP_GOING,
    shard: Optional[str] = _SHARD,
    max_pixels: int = _MAX_PIXELS,
    as_json: bool = _JSON,
):
    """Restore images with PnP-Flow (Martin et al., ICLR 2025) and our shipped flow-matching prior.
    For superres, INPUT is the low-resolution image and the output is --scale times larger."""
    _restore_options(task, noise_sigma, blur_sigma, scale, steps, averages, alpha)
    if solver not in ("auto", "pnp-flow", "dpir", "mmse") or (solver == "mmse" and task is not Task.denoise):
        raise InputError(f"--solver {solver}: choose auto, pnp-flow, dpir, or mmse with --task denoise")
    if task is Task.inpaint and mask is None:
        raise InputError("--task inpaint needs --mask MASK.png (same size as the input, black = missing)")
    _require_files([mask, kernel, reference, weights] + ([] if keep_going else inputs))
    inputs = _select_shard(inputs, shard)
    many = len(inputs) > 1
    extra_inputs = [p for p in (mask, kernel, reference, weights) if p is not None]
    planned = {src: _check_output(_output_for(src, output, out_dir, name, many), [*inputs, *extra_inputs], force)
               for src in inputs}
    from otmap_cli.device import resolve_device
    from otmap_cli.io import read_image, write_image
    from otmap_cli.restore import api

    dev = resolve_device(device)
    psf = None
    if kernel is not None:
        from otmap_cli.restore.physics import load_kernel

        psf = load_kernel(kernel)
    if weights is not None:
        from otmap_cli.restore.train import load_prior

        prior = load_prior(weights, dev)
    else:
        prior = api.default_prior(dev)
    clean = read_image(reference, max_pixels) if reference is not None else None

    def work(source: Path) -> dict:
        start = time.time()
        image = read_image(source, max_pixels)
        pixel_mask = api.read_mask(mask, image.size) if mask is not None else None
        with _progress(f"restoring {image.name} ({task.value})") as update:
            result = api.restore_image(image, task.value, noise_sigma=noise_sigma, blur_sigma=blur_sigma, kernel=psf,
                                       scale=scale, mask=pixel_mask, steps=steps, averages=averages, alpha=alpha,
                                       seed=seed, device=dev, prior=prior, progress=update, solver=solver)
        write_image(result, planned[source])
        record = {"output": str(planned[source]), "seconds": round(time.time() - start, 3)}
        if clean is not None:
            record.update(api.quality(result, clean))
            _say(f"PSNR {record['psnr']:.2f} dB  SSIM {record['ssim']:.4f}")
        _say(f"wrote {planned[source]}")
        return record

    _run_batch(inputs, work, keep_going, as_json)


@app.command()
def degrade(
    clean: Path = typer.Argument(..., metavar="CLEAN", help="Clean image to degrade."),
    task: Task = typer.Option(..., "--task", help="denoise | deblur | superres | inpaint."),
    output: Path = typer.Option(..., "-o", "--output", help="Degraded image to write ('-' = stdout)."),
    noise_sigma: Optional[float] = typer.Option(None, "--noise-sigma", help="Noise std in [0,1] units."),
    blur_sigma: Optional[float] = typer.Option(None, "--blur-sigma", help="Gaussian blur std (deblur)."),
    kernel: Optional[Path] = typer.Option(None, "--kernel", help="Blur kernel PNG/NPY (deblur)."),
    scale: Optional[int] = typer.Option(None, "--scale", help="Down-sampling factor 2, 3 or 4 (superres)."),
    mask_ratio: Optional[float] = typer.Option(None, "--mask-ratio", help="Fraction of pixels removed (inpaint)."),
    box: Optional[str] = typer.Option(None, "--box", help="X,Y,W,H rectangle removed (inpaint)."),
    mask_out: Optional[Path] = typer.Option(None, "--mask-out", help="Write the inpainting mask (black = "
                                            "missing)."),
    seed: int = typer.Option(0, "--seed"),
    force: bool = _FORCE,
    max_pixels: int = _MAX_PIXELS,
):
    """Simulate exactly the forward model that 'otmap restore' inverts (deepinv physics), to make test inputs."""
    _restore_options(task, noise_sigma, blur_sigma, scale, None, None, None)
    if mask_ratio is not None:
        _validate_unit(mask_ratio, "--mask-ratio")
    box_values = None
    if box is not None:
        try:
            box_values = tuple(int(v) for v in box.split(","))
            assert len(box_values) == 4
        except (ValueError, AssertionError):
            raise InputError(f"--box must be X,Y,W,H integers, got {box!r}") from None
    _require_files([clean, kernel])
    _check_output(output, [clean], force)
    if mask_out is not None:
        _check_output(mask_out, [clean], force)
    from otmap_cli.io import read_image, write_image
    from otmap_cli.restore import api

    psf = None
    if kernel is not None:
        from otmap_cli.restore.physics import load_kernel

        psf = load_kernel(kernel)
    image = read_image(clean, max_pixels)
    degraded, pixel_mask = api.degrade_image(image, task.value, noise_sigma=noise_sigma, blur_sigma=blur_sigma,
                                             kernel=psf, scale=scale, mask_ratio=mask_ratio, box=box_values,
                                             seed=seed)
    write_image(degraded, output)
    if mask_out is not None and pixel_mask is not None:
        write_image(api.mask_to_image(pixel_mask), mask_out, bit_depth=8)
    _say(f"wrote {output}")


# ----------------------------------------------------------------------------------------- sample

@app.command()
def sample(
    n: int = typer.Option(64, "-n", "--count", help="How many digits to draw."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="One PNG grid of all samples (default "
                                          "digits.png unless --out-dir)."),
    out_dir: Optional[Path] = typer.Option(None, "--out-dir", help="Write individual 28x28 PNGs "
                                           "sample_00000.png ... here."),
    interpolate: int = typer.Option(0, "--interpolate", help="Instead of samples: a walk of this many images "
                                    "between two noise draws."),
    check_convexity: bool = typer.Option(False, "--check-convexity", help="Certify the potential: smallest "
                                         "Hessian eigenvalue (Lanczos) and monotonicity over random pairs."),
    points: int = typer.Option(1000, "--points", help="Points for --check-convexity."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Generator (.safetensors); default: shipped."),
    seed: int = typer.Option(0, "--seed", help="Noise seed: same seed, same digits."),
    device: str = _DEVICE,
    force: bool = _FORCE,
    as_json: bool = _JSON,
):
    """Draw MNIST digits from the shipped Brenier generator G = grad(phi), phi a learned convex
    convolutional potential (Drygala et al. 2025)."""
    _validate_positive(n, "-n")
    if interpolate and interpolate < 2:
        raise InputError("--interpolate needs at least 2 images")
    _validate_positive(points, "--points")
    _require_files([weights])
    if not check_convexity and out_dir is None and output is None:
        output = Path("walk.png" if interpolate else "digits.png")
    if output is not None:
        _check_output(output, [], force)
    from otmap_cli.device import resolve_device
    from otmap_cli.generate import brenier
    from otmap_cli.generate.mnist import image_grid, save_png
    from otmap_cli.generate.models import load_generator
    from otmap_cli.weights import shipped_model

    dev = resolve_device(device)
    generator = load_generator(weights or shipped_model("brenier_mnist.safetensors"), dev)
    record: dict = {}
    if check_convexity:
        with _progress("checking convexity"):
            report = brenier.check_convexity(generator, n_points=points, seed=seed, device=dev)
        record["convexity"] = {k: v for k, v in vars(report).items()}
        record["convexity"]["convex"] = report.convex
        if not as_json:
            print(f"smallest Hessian eigenvalue over {report.n_points} points: {report.min_eigenvalue:.5f} "
                  f"(1st percentile {report.eigenvalue_p01:.5f}, median {report.eigenvalue_median:.5f}, "
                  f"{report.negative_points} negative)")
            print(f"monotonicity <G(x)-G(y), x-y>/|x-y|^2 over {report.n_pairs} pairs: far min "
                  f"{report.min_far_pair:.5f}, near min {report.min_near_pair:.5f}, {report.violated_pairs} violated")
            print("convex: yes" if report.convex else "convex: NO")
        if output is None and out_dir is None:
            if as_json:
                _emit_json(record)
            if not report.convex:
                raise typer.Exit(1)
            return
    start = time.time()
    images = (brenier.interpolate(generator, interpolate, seed, dev) if interpolate
              else brenier.sample(generator, n, seed, dev)).numpy()
    record["seconds"] = round(time.time() - start, 3)
    if output is not None:
        save_png(image_grid(images, columns=len(images) if interpolate else None), output)
        record["output"] = str(output)
        _say(f"wrote {output}")
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = [out_dir / f"sample_{i:05d}.png" for i in range(len(images))]
        existing = [p for p in paths if p.exists()]
        if existing and not force:
            raise InputError(f"{existing[0]}: already exists (use --force to replace)")
        for path, image in zip(paths, images):
            save_png(image, path)
        record["out_dir"] = str(out_dir)
        _say(f"wrote {len(paths)} images to {out_dir}")
    if as_json:
        _emit_json(record)


# ----------------------------------------------------------------------------------------- train / info

@train_app.command("flow")
def train_flow_command(
    data: Path = typer.Option(..., "--data", help="Folder of clean training images (e.g. CBSD432)."),
    out: Path = typer.Option(Path("models/flow_natural.safetensors"), "--out", help="Where to export EMA weights "
                             "(fp16 safetensors), at every checkpoint."),
    run_dir: Path = typer.Option(Path("runs/flow"), "--run-dir", help="Checkpoints and log.jsonl."),
    minutes: float = typer.Option(60.0, "--minutes", help="Wall-clock budget of this run."),
    max_steps: int = typer.Option(0, "--max-steps", help="Stop after this many steps (0 = no limit)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from <run-dir>/checkpoint.safetensors."),
    init: Optional[Path] = typer.Option(None, "--init", help="Warm start from shipped weights."),
    lr: float = typer.Option(5e-4, "--lr", help="Peak learning rate (warm-up, then cosine to 10 %)."),
    schedule_steps: int = typer.Option(60_000, "--schedule-steps", help="Steps over which the cosine decays "
                                       "(match it to the steps your budget allows)."),
    channels: str = typer.Option("64,128,256", "--channels", help="U-Net widths per level."),
    checkpoint_minutes: float = typer.Option(10.0, "--checkpoint-minutes"),
    device: str = _DEVICE,
    seed: int = typer.Option(0, "--seed"),
):
    """Train the flow-matching prior used by 'otmap restore' (resumable; checkpoints every ~10 min)."""
    _require_folder(data)
    from otmap_cli.device import resolve_device
    from otmap_cli.restore.train import FlowTrainConfig, train_flow

    try:
        widths = tuple(int(c) for c in channels.split(","))
    except ValueError:
        raise InputError(f"--channels must be comma-separated integers, got {channels!r}") from None
    cfg = FlowTrainConfig(data=data, run_dir=run_dir, out=out, minutes=minutes, max_steps=max_steps, resume=resume,
                          init=init, lr=lr, schedule_steps=schedule_steps, channels=widths,
                          checkpoint_minutes=checkpoint_minutes,
                          device=resolve_device(device), seed=seed)
    train_flow(cfg, log=_say)


@train_app.command("brenier")
def train_brenier_command(
    data: Path = typer.Option(..., "--data", help="Folder with the four MNIST idx(.gz) files."),
    out: Path = typer.Option(Path("models/brenier_mnist.safetensors"), "--out", help="Where to export EMA "
                             "weights (fp16 safetensors), at every checkpoint."),
    run_dir: Path = typer.Option(Path("runs/brenier"), "--run-dir", help="Checkpoints, sample grids, log.jsonl."),
    model: str = typer.Option("brenier", "--model", help="brenier (the product) or a baseline: icnn, dcgan, cmgn."),
    minutes: float = typer.Option(60.0, "--minutes", help="Wall-clock budget of this run."),
    max_steps: int = typer.Option(0, "--max-steps", help="Stop after this many steps (0 = no limit)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from <run-dir>/checkpoint.safetensors."),
    init: Optional[Path] = typer.Option(None, "--init", help="Warm start the generator from shipped weights."),
    potential: Optional[str] = typer.Option(None, "--potential", help="The potential of brenier or icnn: 'decoder' "
                                            "(brenier's default: a DCGAN-like decoder of the leading principal "
                                            "components inside the potential) or 'conv' (a plain conv net: icnn's "
                                            "default, and the first shipped brenier model)."),
    code: Optional[int] = typer.Option(None, "--code", help="Principal components the decoder potential reads "
                                       "(default 16); phi can bend down in at most this many directions per point."),
    penalty_weight: Optional[float] = typer.Option(None, "--penalty-weight", help="Weight gamma of the convexity "
                                                   "penalty (brenier; default 10). Raise it, with --resume, if "
                                                   "'min_eigenvalue' in the log turns negative."),
    search_steps: Optional[int] = typer.Option(None, "--search-steps", help="Lanczos steps that aim the penalty "
                                               "at the lowest curvature of phi at each near pair (default 12)."),
    near_pairs: Optional[int] = typer.Option(None, "--near-pairs", help="Points per step where the penalty probes "
                                             "curvature (default 16)."),
    near_step: Optional[float] = typer.Option(None, "--near-step", help="Length of the finite difference that "
                                              "measures it (default 0.3)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Adam learning rate of the generator and the "
                                       "discriminator (default 2e-4); a resumed run may lower it for a final, "
                                       "quieter phase."),
    device: str = _DEVICE,
    seed: int = typer.Option(0, "--seed"),
):
    """Train the Brenier generator used by 'otmap sample' (resumable; checkpoints every ~10 min)."""
    _require_folder(data)
    if model not in ("brenier", "icnn", "dcgan", "cmgn"):
        raise InputError(f"unknown --model {model!r}; choose brenier, icnn, dcgan or cmgn")
    if potential not in (None, "decoder", "conv"):
        raise InputError(f"unknown --potential {potential!r}; choose decoder or conv")
    if model not in ("brenier", "icnn") and (potential or code):
        raise InputError("--potential and --code apply to --model brenier or icnn only")
    from otmap_cli.device import resolve_device
    from otmap_cli.generate.brenier import BrenierTrainConfig, train_brenier

    def given(**values) -> dict:
        return {k: v for k, v in values.items() if v is not None}

    cfg = BrenierTrainConfig(data=data, run_dir=run_dir, out=out, model=model, minutes=minutes, max_steps=max_steps,
                             resume=resume, init=init, penalty_weight=penalty_weight, device=resolve_device(device),
                             seed=seed, model_options=given(potential=potential, code=code),
                             **given(search_steps=search_steps, near_pairs=near_pairs, near_step=near_step, lr=lr,
                                     lr_discriminator=lr))
    train_brenier(cfg, log=_say)


@train_app.command("classifier")
def train_classifier_command(
    data: Path = typer.Option(..., "--data", help="Folder with the four MNIST idx(.gz) files."),
    out: Path = typer.Option(Path("models/mnist_classifier.safetensors"), "--out"),
    epochs: float = typer.Option(3.0, "--epochs"),
    device: str = _DEVICE,
    seed: int = typer.Option(0, "--seed"),
):
    """Train the small MNIST classifier whose features score generators (FLD, precision/recall)."""
    _require_folder(data)
    from otmap_cli.device import resolve_device
    from otmap_cli.generate.classifier import train_classifier

    train_classifier(data, out, epochs=epochs, seed=seed, device=resolve_device(device), log=_say)


@app.command()
def info(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")):
    """Versions, compute device, and the shipped models with their checksums."""
    import platform

    import torch

    from otmap_cli import __version__
    from otmap_cli.weights import models_dir, sha256

    models = {p.name: {"bytes": p.stat().st_size, "sha256": sha256(p)}
              for p in sorted(models_dir().glob("*.safetensors"))}
    payload = {"otmap": __version__, "python": platform.python_version(), "torch": torch.__version__,
               "cuda": torch.cuda.is_available(), "device": "cuda" if torch.cuda.is_available() else "cpu",
               "threads": torch.get_num_threads(), "models_dir": str(models_dir()), "models": models}
    if as_json:
        _emit_json(payload)
        return
    for key, value in payload.items():
        if key != "models":
            print(f"{key}: {value}")
    for model_name, meta in models.items():
        print(f"model {model_name}: {meta['bytes']:,} bytes sha256 {meta['sha256']}")


# ----------------------------------------------------------------------------------------- entry point

def main() -> None:
    """Console entry point: one-line errors with documented exit codes, tracebacks only with --debug."""
    try:
        code = app(standalone_mode=False)  # typer.Exit inside a command comes back as a return value here
        if isinstance(code, int) and code:
            sys.exit(code)
    except OtmapError as exc:
        if _STATE["debug"]:
            traceback.print_exc()
        print(f"otmap: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        print("otmap: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):  # the parser's usage errors
            exc.show(file=sys.stderr)
            sys.exit(2)
        if _STATE["debug"]:  # a bug or an environment failure: one line, details with --debug
            traceback.print_exc()
        print(f"otmap: error: {type(exc).__name__}: {exc} (run with --debug for details)", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
