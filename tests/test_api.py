"""The public API: one screen of names, importable lazily, each the function its command calls."""

from __future__ import annotations

import subprocess
import sys

import otmap_cli
from conftest import ROOT


def test_importing_the_package_loads_no_heavy_library():
    code = "import sys, otmap_cli; print(any(m in sys.modules for m in ('torch', 'deepinv', 'ot')))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.stdout.strip() == "False", done.stderr


def test_every_public_name_resolves_to_what_its_module_defines():
    from otmap_cli.restoration import api
    from otmap_cli.transport import recolor

    for name in otmap_cli.__all__:
        assert getattr(otmap_cli, name) is not None, name
    assert otmap_cli.restore is api.restore_image and otmap_cli.degrade is api.degrade_image
    assert otmap_cli.recolor is recolor.recolor and otmap_cli.fit_colour_map is recolor.fit_colour_map


def test_choices_match_the_registries_they_name():
    from otmap_cli import choices
    from otmap_cli.nets.monotone import MODELS
    from otmap_cli.restoration.options import PNPFLOW_DEFAULTS, TASK_DEFAULTS
    from otmap_cli.transport.losses import make_loss

    assert tuple(MODELS) == choices.MONOTONE_MODELS
    assert tuple(TASK_DEFAULTS) == tuple(PNPFLOW_DEFAULTS) == choices.TASKS == tuple(choices.AUTO_SOLVER)
    assert set(choices.AUTO_SOLVER.values()) < set(choices.SOLVERS)
    for loss in choices.LOSSES:
        assert make_loss(loss, 3) is not None


def test_shared_map_recolors_frames_alike():
    import numpy as np

    from otmap_cli import FitSettings, Image, fit_colour_map, recolor

    rng = np.random.default_rng(0)
    frames = [Image(rgb=rng.random((20, 20, 3), dtype=np.float32)) for _ in range(2)]
    style = Image(rgb=rng.random((20, 20, 3), dtype=np.float32) ** 3)
    shared, _ = fit_colour_map(frames, style, FitSettings(steps=5))
    outputs = [recolor(frame, style, colour_map=shared) for frame in frames]
    assert all(out[1] is shared and out[2] is None for out in outputs)
    np.testing.assert_array_equal(outputs[0][0].rgb, shared.apply(frames[0].rgb))
