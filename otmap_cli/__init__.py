"""otmap: optimal transport and flows, as a library and from the command line.

Everything a command does is one call here (imported lazily, so ``import otmap_cli`` stays cheap)::

    from otmap_cli import read_image, write_image, recolor, fit_colour_map, read_mask, restore, sample

    image, colour_map, _ = recolor(read_image("day.jpg"), read_image("sunset.jpg"))   # otmap recolor
    write_image(image, "day_at_sunset.png"); colour_map.save("sunset.safetensors")
    shared, _ = fit_colour_map(frames, style)                                         # --shared-map
    sea, _, _ = recolor(day, sunset, mask=read_mask("sea.png"), preserve_luminance=True)  # --mask, ...
    clean = restore(read_image("noisy.png"), "denoise", noise_sigma=25 / 255)          # otmap restore
    pairs = plan_folder("frames", "graded", recursive=True)    # [(input, output)]: otmap ... frames/ --out-dir graded/
    noisy, mask = degrade(read_image("clean.png"), "inpaint", mask_ratio=0.5)          # otmap degrade
    colour = colorize(read_image("old.png"), read_image("summer.jpg"))                 # otmap colorize
    digits = sample(None, 16, seed=3)        # otmap sample: uint8 16 x 28 x 28 from the shipped generator

The packages: ``transport`` (colour maps), ``restore`` (PnP-Flow), ``generate`` (MNIST
generators), ``nets`` (networks), ``cli`` (the ``otmap`` command); see docs/architecture.md.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_API = {
    # images
    "Image": "otmap_cli.io", "read_image": "otmap_cli.io", "write_image": "otmap_cli.io",
    "is_complete_image": "otmap_cli.io",
    # many images: folders, shards, worker processes
    "find_images": "otmap_cli.batch", "plan_folder": "otmap_cli.batch", "slurm_shard": "otmap_cli.batch",
    "run_each": "otmap_cli.batch",
    # colour transfer
    "recolor": "otmap_cli.transport.recolor", "fit_colour_map": "otmap_cli.transport.recolor",
    "ColourMap": "otmap_cli.transport.colormap", "apply_map": "otmap_cli.transport.colormap",
    "FitSettings": "otmap_cli.transport.settings", "fit_monotone_map": "otmap_cli.transport.fit",
    "read_mask": "otmap_cli.transport.regions",
    "run_toy": "otmap_cli.transport.toy",
    # restoration
    "restore": "otmap_cli.restoration.api", "degrade": "otmap_cli.restoration.api", "quality": "otmap_cli.restoration.api",
    "RestoreOptions": "otmap_cli.restoration.options", "load_prior": "otmap_cli.restoration.prior",
    "restore_with_uncertainty": "otmap_cli.restoration.api", "heat_map": "otmap_cli.restoration.api",
    "colorize": "otmap_cli.restoration.colorize",
    # MNIST generator
    "sample": "otmap_cli.generate.sampling", "interpolate": "otmap_cli.generate.sampling",
    "check_convexity": "otmap_cli.generate.convexity", "load_generator": "otmap_cli.generate.models",
    # training
    "train_flow": "otmap_cli.restoration.train", "train_brenier": "otmap_cli.generate.brenier",
    "train_classifier": "otmap_cli.generate.classifier", "FlowTrainConfig": "otmap_cli.restoration.train",
    "BrenierTrainConfig": "otmap_cli.generate.brenier", "ClassifierTrainConfig": "otmap_cli.generate.classifier",
    # errors
    "OtmapError": "otmap_cli.errors", "InputError": "otmap_cli.errors",
}
_RENAMED = {"restore": "restore_image", "degrade": "degrade_image"}  # module-level names where they differ

__all__ = sorted(_API) + ["__version__"]


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'otmap_cli' has no attribute {name!r}")
    value = getattr(importlib.import_module(_API[name]), _RENAMED.get(name, name))
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
