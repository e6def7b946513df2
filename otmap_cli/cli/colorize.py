"""``otmap colorize``: exemplar colourisation of grey photos by optimal transport (restoration/colorize.py)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import List, Optional

import typer

from otmap_cli.cli.common import Batch, grouped, plan_outputs, progress, require_files, run_batch, say, select_inputs, wrote
from otmap_cli.restoration.colorize import SAMPLES, check_options


@grouped
def colorize(
    inputs: List[Path] = typer.Argument(..., metavar="GREY...", help="Grey image(s) to colour (a colour image "
                                        "is reduced to its lightness L*); '-' reads stdin."),
    reference: Path = typer.Option(..., "--reference", "-r", help="Colour photo whose colours to use: choose one "
                                   "of a similar scene (its textures are matched to the grey image's)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Output file ('-' = PNG on stdout). "
                                          "Default: <input>_colorized.png."),
    name: Optional[str] = typer.Option(None, "--name", help="Output name template ({stem} = the input's "
                             "name without its extension; default {stem}_colorized.png)."),
    samples: int = typer.Option(SAMPLES, "--samples", help="Pixels drawn from each image for the transport plan "
                                "(16 to 20000; time grows fast with it)."),
    smoothing: Optional[int] = typer.Option(None, "--smoothing", metavar="PIXELS", help="Radius of the "
                                            "edge-aware chroma filter (default: 1/64 of the shorter side)."),
    seed: int = typer.Option(0, "--seed", help="Random seed of the pixel sampling."),
    *, batch: Batch,
):
    """Colour grey photos with the colours of a reference photo: pixels are matched by optimal transport on
    lightness and local texture, and the matched chroma is smoothed along the grey image's edges; the
    lightness L* is kept. Example: otmap colorize old.png --reference summer.jpg -o old_colour.png"""
    check_options(samples, smoothing)
    require_files([reference] + ([] if batch.keep_going else inputs))
    all_inputs = [*inputs, reference]
    inputs, roots = select_inputs(inputs, batch)
    plan = plan_outputs(inputs, output, name, "{stem}_colorized.png", [*all_inputs, *roots], batch, roots)
    from otmap_cli.io import is_grey, read_image, write_image
    from otmap_cli.restoration.colorize import colorize as colorize_image

    style = read_image(reference, batch.max_pixels)

    def work(source: Path) -> dict:
        start = time.time()
        image = read_image(source, batch.max_pixels)
        if not is_grey(image.rgb):
            say(f"note: {source} is in colour; colouring its lightness L* (its own colours are dropped)")
        with progress(f"colouring {image.name}"):
            coloured = colorize_image(image, style, samples=samples, smoothing=smoothing, seed=seed)
        write_image(coloured, plan.outputs[source], overwrite=plan.overwrite(source))
        wrote(plan.outputs[source])
        return {"output": str(plan.outputs[source]), "reference": str(reference),
                "seconds": round(time.time() - start, 3)}

    run_batch(inputs, work, batch, plan)
