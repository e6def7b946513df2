"""Every closed list of choices otmap offers, declared once and free of heavy imports.

The library validates against these tuples and the CLI builds its option types (and so its help
and shell completion) from them, so a new loss, task or solver is added here and nowhere else.
"""

from __future__ import annotations

from enum import Enum

# colour transfer (otmap recolor / apply / toy)
MONOTONE_MODELS = ("cmgn", "mmgn")  # nets/monotone.py: cascaded and modular monotone gradient networks
LOSSES = ("sliced", "sinkhorn", "mmd", "wgan", "gaussian")  # transport/losses.py
FIT_INITS = ("gaussian", "identity")
# auto: ridge for a C-MGN (transport/ridge.py, one NNLS solve), else gradient (fit.py, Adam steps)
WARM_STARTS = ("auto", "ridge", "gradient")
TOYS = ("gaussian", "gmm", "banana")  # transport/toy.py
LUT_SIZES = (17, 33, 65, 129)  # .cube grid sizes: 33 is the common default, 65 what apply uses inside

# restoration (otmap restore / degrade)
TASKS = ("denoise", "deblur", "superres", "inpaint", "colorize")
SCALES = (2, 3, 4)
SOLVERS = ("auto", "pnp-flow", "dpir", "mmse")
# What "auto" runs per task: the solver measured best on held-out training crops (docs/decisions.md).
AUTO_SOLVER = {"denoise": "mmse", "deblur": "dpir", "superres": "dpir", "inpaint": "dpir",
               "colorize": "pnp-flow"}
# Solvers whose answer does not depend on the seed: no spread to show for restore --uncertainty.
DETERMINISTIC_SOLVERS = ("dpir", "mmse")

# MNIST generators (otmap sample / train brenier)
GENERATOR_MODELS = ("brenier", "icnn", "dcgan", "cmgn")
POTENTIALS = ("decoder", "conv")
AFFINE_INPUTS = ("full", "code")  # what the quadratic part 1/2 |V x|^2 of a potential generator reads

# compute
DEVICES = ("auto", "cpu", "cuda")

# image files: suffix (any letter case) -> Pillow format; io.write_image, the CLI's output checks and
# their messages all read this one table
IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF",
                 ".webp": "WEBP", ".bmp": "BMP"}
IMAGE_SUFFIXES = tuple(IMAGE_FORMATS)
SIXTEEN_BIT_FORMATS = ("PNG", "TIFF")  # the others hold 8 bits per channel
ALPHA_FORMATS = ("PNG", "TIFF", "WEBP")


def choice_enum(name: str, values: tuple[str, ...]) -> type[Enum]:
    """A ``str`` Enum of ``values`` (member names with '-' spelled '_'), the type Typer turns into a choice."""
    return Enum(name, {value.replace("-", "_"): value for value in values}, type=str)


def one_of(value: str, values: tuple, what: str) -> str:
    """``value`` if it is one of ``values``, else a one-line InputError listing them."""
    from otmap_cli.errors import InputError

    if value not in values:
        raise InputError(f"unknown {what} {value!r}; choose one of {', '.join(map(str, values))}")
    return value
