"""Restoration library: forward models, the PnP-Flow solver, tiling and the Image-level API.

The solver is always exercised with an analytic prior (Gaussian data, exact E[x1 | x_t]) whose
PnP-Flow error has a closed form, and with a tiny random network for shapes; the quality tests
with the shipped prior skip while ``models/flow_natural.safetensors`` does not exist.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from conftest import natural_crop, shipped_prior, tiny_prior
from otmap_cli.errors import InputError
from otmap_cli.io import Image
from otmap_cli.restoration import api, physics, pnpflow, tiles
from otmap_cli.restoration.options import PNPFLOW_DEFAULTS, Settings, settings_for

torch.set_num_threads(1)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return -10 * math.log10(float(np.mean((a - b) ** 2)))


# --- forward models -------------------------------------------------------------------------

OPERATORS = [("denoise", {}), ("deblur", {"blur_sigma": 1.5}), ("deblur", {"kernel": np.ones((4, 6))}),
             ("superres", {"scale": 2}), ("superres", {"scale": 3}), ("superres", {"scale": 4}),
             ("inpaint", {"mask": (np.random.default_rng(0).random((36, 48)) > 0.4).astype(np.float32)}),
             ("colorize", {})]


@pytest.mark.parametrize("task,options", OPERATORS)
def test_physics_adjointness(task, options):
    """<A x, y> = <x, A^T y> for every operator, reflect padding and bicubic filter included."""
    op = physics.make_physics(task, (36, 48), 0.05, **options).double()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 3, 36, 48, generator=gen, dtype=torch.float64)
    ax = op.A(x)
    y = torch.randn(ax.shape, generator=gen, dtype=torch.float64)
    lhs, rhs = float((ax * y).sum()), float((x * op.A_adjoint(y)).sum())
    assert lhs == pytest.approx(rhs, rel=1e-9)
    assert float(op.A(torch.ones_like(x)).max()) == pytest.approx(1.0, abs=1e-6)  # H(1) = 1 where observed


def test_step_normalisation_constants():
    """The squared norms the solver divides its step by (see pnpflow's docstring)."""
    x = torch.zeros(1, 3, 64, 64)
    blur = pnpflow.squared_norm(physics.make_physics("deblur", (64, 64), 0, blur_sigma=1.0), x)
    sr2 = pnpflow.squared_norm(physics.make_physics("superres", (64, 64), 0, scale=2), x)
    assert 1.0 <= blur < 1.05
    assert 0.25 < sr2 < 0.29


def test_gaussian_kernel_is_2d_and_normalised():
    psf = physics.blur_filter(2.0, None)
    assert psf.shape == (1, 1, 13, 13)
    assert float(psf.sum()) == pytest.approx(1.0, abs=1e-5)
    assert float(psf[0, 0, 6, 0]) == pytest.approx(float(psf[0, 0, 0, 6]))  # isotropic, not 1-D


def test_load_kernel_png_and_npy(tmp_path):
    from PIL import Image as PILImage

    psf = np.zeros((5, 5))
    psf[2, 1:4] = 1.0
    np.save(tmp_path / "k.npy", psf)
    PILImage.fromarray((psf * 255).astype(np.uint8)).save(tmp_path / "k.png")
    for name in ("k.npy", "k.png"):
        kernel = physics.load_kernel(tmp_path / name)
        assert kernel.shape == (5, 5) and kernel.sum() == pytest.approx(1.0)
        assert kernel[2, 2] == pytest.approx(1 / 3)
    np.save(tmp_path / "zero.npy", np.zeros((3, 3)))
    with pytest.raises(InputError, match="positive sum"):
        physics.load_kernel(tmp_path / "zero.npy")
    (tmp_path / "bad.npy").write_text("not numpy")
    with pytest.raises(InputError, match="not a readable"):
        physics.load_kernel(tmp_path / "bad.npy")


def test_degrade_superres_crops_to_a_multiple_and_shrinks():
    clean = natural_crop(48)[:47, :46]
    low, mask = physics.degrade(clean, "superres", scale=3, noise_sigma=0)
    assert low.shape == (15, 15, 3) and mask is None


def test_degrade_inpaint_mask_semantics():
    """mask 1 = kept, 0 = missing; missing pixels are black and carry no noise; seeds reproduce."""
    clean = natural_crop(48)
    y, mask = physics.degrade(clean, "inpaint", noise_sigma=0.05, box=(10, 5, 20, 8), seed=3)
    assert mask.shape == (48, 48) and mask.dtype == np.float32
    assert (mask[5:13, 10:30] == 0).all() and (y[5:13, 10:30] == 0).all()
    kept = mask > 0
    assert np.std((y - clean)[kept]) == pytest.approx(0.05, rel=0.1)
    y_random, mask_random = physics.degrade(clean, "inpaint", mask_ratio=0.7, seed=3)
    assert 1 - mask_random.mean() == pytest.approx(0.7, abs=0.05)
    again, _ = physics.degrade(clean, "inpaint", mask_ratio=0.7, seed=3)
    np.testing.assert_array_equal(y_random, again)


def test_mask_image_round_trip(tmp_path):
    from otmap_cli.io import write_image

    mask = np.ones((10, 12), dtype=np.float32)
    mask[2:5, 3:9] = 0
    write_image(api.mask_to_image(mask), tmp_path / "m.png")
    np.testing.assert_array_equal(api.read_mask(tmp_path / "m.png", (12, 10)), mask)
    with pytest.raises(InputError, match="mask is 12x10 but the image is 10x10"):
        api.read_mask(tmp_path / "m.png", (10, 10))


# --- argument validation ----------------------------------------------------------------------

BAD_ARGUMENTS = [
    ({"task": "sharpen"}, "unknown task"),
    ({"task": "denoise", "noise_sigma": -0.1}, "noise sigma"),
    ({"task": "denoise", "noise_sigma": float("nan")}, "noise sigma"),
    ({"task": "deblur", "blur_sigma": 0}, "blur sigma"),
    ({"task": "deblur", "blur_sigma": 1.0, "kernel": np.ones((3, 3))}, "not both"),
    ({"task": "superres", "scale": 0}, "scale"),
    ({"task": "superres", "scale": 5}, "scale"),
    ({"task": "inpaint"}, "needs a mask"),
    ({"task": "inpaint", "mask": np.ones((5, 5))}, "mask is 5x5 but the image is 16x12"),
    ({"task": "denoise", "steps": 0}, "steps"),
    ({"task": "denoise", "steps": 2.5}, "steps"),
    ({"task": "denoise", "averages": 0}, "averages"),
    ({"task": "denoise", "alpha": -1}, "alpha"),
    ({"task": "denoise", "alpha": "x"}, "alpha"),
    ({"task": "denoise", "solver": "magic"}, "unknown solver"),
    ({"task": "deblur", "solver": "mmse"}, "only denoises"),
]


@pytest.mark.parametrize("kwargs,message", BAD_ARGUMENTS)
def test_restore_refuses_bad_arguments(kwargs, message):
    kwargs = dict(kwargs)
    task = kwargs.pop("task")
    with pytest.raises(InputError, match=message) as info:
        api.restore_rgb(np.zeros((12, 16, 3), np.float32), task, prior=tiny_prior(), **kwargs)
    assert "\n" not in str(info.value)


def test_degrade_refuses_a_box_outside_the_image():
    with pytest.raises(InputError, match="not inside"):
        physics.degrade(np.zeros((10, 10, 3), np.float32), "inpaint", box=(5, 5, 10, 2))


# --- the solver with an analytic prior --------------------------------------------------------

MEAN, STD = 0.0, 0.3  # Gaussian data in [-1, 1] units: x1 ~ N(MEAN, STD^2 I)


def gaussian_prior(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Exact E[x1 | x_t = x] for x_t = t x1 + (1 - t) eps: MEAN + t s^2 / (t^2 s^2 + (1-t)^2) (x - t MEAN)."""
    t = t.view(-1, 1, 1, 1)
    return MEAN + t * STD**2 / (t**2 * STD**2 + (1 - t) ** 2) * (x - t * MEAN)


def predicted_mse(noise: float, settings: Settings, observed: bool = True,
                  start: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> float:
    """Expected per-pixel squared error of PnP-Flow with :func:`gaussian_prior` (H = I or H = 0), in [0, 1] units.

    Everything is linear: x_n = a x1 + b n' + e with independent e of variance v, y = x1 + n', n' ~ N(0, noise^2)
    (deviations from MEAN); ``start`` = (a, b, v) of the first guess, used when settings.start_time > 0.
    m gradient steps of size gamma on 1/2 ||x - y||^2 move x by the fraction 1 - (1 - gamma)^m towards y.
    The carried noise asks the prior at t' (:func:`pnpflow.carried_time`) for the re-noised z scaled by t' / t.
    """
    s2 = STD**2
    a, b, v = start if settings.start_time > 0 else (0.0, 0.0, 0.0)
    for n, t in enumerate(pnpflow.times(settings)):
        gamma = 1 - (1 - (1 - n / settings.steps) ** settings.alpha) ** settings.data_steps if observed else 0.0
        seen = pnpflow.carried_time(t, settings.carried_noise * noise)
        c = seen * s2 / (seen * seen * s2 + (1 - seen) ** 2) * (seen / t if t > 0 else 1.0)  # D_t'((t'/t) .) is linear
        a, b = c * t * ((1 - gamma) * a + gamma), c * t * ((1 - gamma) * b + gamma)
        v = (c * t * (1 - gamma)) ** 2 * v + (c * (1 - t)) ** 2 / settings.averages
    if settings.final_step:  # z = y where observed (x elsewhere), then D_t(t z), t = 1 / (1 + noise), no re-noising
        t = 1 / (1 + noise)
        ct = t * t * s2 / (t * t * s2 + (1 - t) ** 2)
        a, b, v = (ct, ct, 0.0) if observed else (ct * a, ct * b, ct * ct * v)
    return ((a - 1) ** 2 * s2 + b * b * noise * noise + v) / 4


def gaussian_image(size: int, seed: int) -> np.ndarray:
    gen = torch.Generator().manual_seed(seed)
    return (0.5 + 0.5 * (MEAN + STD * torch.randn(size, size, 3, generator=gen))).numpy()


def test_pnpflow_denoising_with_exact_gaussian_prior():
    """The solver reproduces the closed-form error of PnP-Flow, and improves on the noisy input."""
    clean = gaussian_image(64, 0)
    sigma, alpha, steps = 0.2, 0.8, 100
    noisy, _ = physics.degrade(clean, "denoise", noise_sigma=sigma, seed=1)
    out = api.restore_rgb(noisy, "denoise", noise_sigma=sigma, alpha=alpha, steps=steps, prior=gaussian_prior,
                          solver="pnp-flow")
    mse = float(np.mean((out - clean) ** 2))
    assert mse == pytest.approx(predicted_mse(2 * sigma, settings_for("denoise", steps, alpha)), rel=0.05)
    mmse = STD**2 * (2 * sigma) ** 2 / (STD**2 + (2 * sigma) ** 2) / 4
    assert psnr(out, clean) > psnr(noisy, clean) + 2.0  # 2.5 dB predicted
    assert mse > 0.95 * mmse  # cannot beat the posterior mean


def test_mmse_solver_is_the_posterior_mean():
    """With the exact prior, one denoising step reaches the closed-form MMSE (and beats PnP-Flow)."""
    clean = gaussian_image(64, 0)
    sigma = 0.2
    noisy, _ = physics.degrade(clean, "denoise", noise_sigma=sigma, seed=1)
    out = api.restore_rgb(noisy, "denoise", noise_sigma=sigma, prior=gaussian_prior, solver="mmse")
    mmse = STD**2 * (2 * sigma) ** 2 / (STD**2 + (2 * sigma) ** 2) / 4
    assert float(np.mean((out - clean) ** 2)) == pytest.approx(mmse, rel=0.05)
    assert float(np.mean((out - clean) ** 2)) < predicted_mse(2 * sigma, settings_for("denoise", 100, 0.8))


@pytest.mark.parametrize("variant", [{"time_power": 2.0}, {"data_steps": 3}, {"final_step": True},
                                     {"carried_noise": 0.5}, {"carried_noise": 2.0, "data_steps": 2},
                                     {"time_power": 1.5, "data_steps": 2, "final_step": True, "averages": 2}])
def test_pnpflow_variants_match_their_closed_form(monkeypatch, variant):
    """The time schedule, extra data steps, K draws, the final step and the carried noise do what the closed form says."""
    clean = gaussian_image(64, 0)
    sigma = 0.1
    settings = Settings(steps=40, alpha=0.5, averages=1)
    settings = replace(settings, **variant)
    monkeypatch.setitem(PNPFLOW_DEFAULTS, "denoise", settings)
    noisy, _ = physics.degrade(clean, "denoise", noise_sigma=sigma, seed=1)
    out = api.restore_rgb(noisy, "denoise", noise_sigma=sigma, prior=gaussian_prior, solver="pnp-flow")
    assert float(np.mean((out - clean) ** 2)) == pytest.approx(predicted_mse(2 * sigma, settings), rel=0.05)


def test_carried_noise_moves_the_prior_to_an_earlier_time():
    """z carrying noise s puts t z + (1 - t) eps at the path time t' with (1 - t')/t' = hypot((1 - t)/t, s)."""
    assert pnpflow.carried_time(0.7, 0.0) == 0.7 and pnpflow.carried_time(0.0, 0.3) == 0.0
    for t in (0.2, 0.9, 0.99):
        seen = pnpflow.carried_time(t, 0.05)
        assert seen < t
        assert (1 - seen) / seen == pytest.approx(math.hypot((1 - t) / t, 0.05))
    # late in the schedule the carried noise dominates: near t = 1 the prior is asked at ~1 / (1 + s)
    assert pnpflow.carried_time(0.999, 0.05) == pytest.approx(1 / 1.05, abs=2e-3)


def test_pnpflow_inpainting_keeps_white_pixels_and_fills_black_ones():
    """The default inpainting iteration (a start at t_0 from the holes' fill) matches its closed form."""
    clean = gaussian_image(64, 2)
    y, mask = physics.degrade(clean, "inpaint", noise_sigma=0.0, mask_ratio=0.5, seed=4)
    out = api.restore_rgb(y, "inpaint", mask=mask, noise_sigma=0.0, alpha=0.01, prior=gaussian_prior,
                          solver="pnp-flow")
    settings = settings_for("inpaint", alpha=0.01)
    assert settings.start_time > 0
    kept, missing = mask > 0, mask == 0
    # the fill of a hole averages other (independent) pixels: error of variance `spread` around MEAN
    fill = 2 * physics.to_array(api.first_guess(physics.to_tensor(y), physics.mask_tensor(mask, mask.shape))) - 1
    spread = float(((fill - MEAN)[missing] ** 2).mean())
    err = (out - clean) ** 2
    assert float(err[kept].mean()) == pytest.approx(predicted_mse(0.0, settings, start=(1.0, 1.0, 0.0)),
                                                    rel=0.1, abs=1e-6)
    assert float(err[missing].mean()) == pytest.approx(
        predicted_mse(0.0, settings, observed=False, start=(0.0, 0.0, spread)), rel=0.1)
    assert abs(float(out[missing].mean()) - 0.5) < 0.01  # filled with the prior mean on average


def test_pnpflow_start_time_needs_a_first_guess():
    y = torch.full((1, 3, 8, 8), 0.5)
    with pytest.raises(ValueError, match="first guess"):
        pnpflow.solve(y, physics.make_physics("denoise", (8, 8), 0.1), gaussian_prior,
                      Settings(steps=3, alpha=1.0, averages=1, start_time=0.5), generator=torch.Generator())


def test_pnpflow_starts_from_the_first_guess():
    """With t_0 > 0 the holes keep the start's value on average under a prior that only rescales, D(x_t) = x_t / t
    (the re-noising adds zero-mean noise and no data step reaches a hole); the kept pixels take the data."""
    mask = (torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    y = torch.full((1, 3, 32, 32), 0.2) * mask
    start = torch.where(mask > 0, y, torch.full_like(y, 0.8))
    op = physics.make_physics("inpaint", (32, 32), 0.0, mask=mask[0, 0].numpy())
    settings = Settings(steps=10, alpha=1.0, averages=1, start_time=0.5)
    out = pnpflow.solve(y, op, lambda x, t: x / t.view(-1, 1, 1, 1), settings,
                        generator=torch.Generator().manual_seed(1), start=start)
    holes, kept = (mask < 0.5).expand_as(out), (mask > 0.5).expand_as(out)
    assert float(out[holes].mean()) == pytest.approx(0.8, abs=0.1)
    assert float(out[kept].mean()) == pytest.approx(0.2, abs=0.1)


def test_pnpflow_views_cycle_through_the_flips_and_quarter_turns():
    """Iteration n asks the prior in view n mod 8: a non-square image reaches it turned on the odd quarter turns;
    a prior that acts per pixel (equivariant to every view) gives exactly the output without views."""
    noisy = torch.rand(1, 3, 8, 12, generator=torch.Generator().manual_seed(0))
    op = physics.make_physics("denoise", (8, 12), 0.1)
    shapes = []

    def recording(x, t):
        shapes.append(tuple(x.shape[-2:]))
        return gaussian_prior(x, t)

    settings = Settings(steps=16, alpha=0.5, averages=1, views=8)
    with_views = pnpflow.solve(noisy, op, recording, settings, generator=torch.Generator().manual_seed(1))
    assert shapes == 2 * ([(8, 12)] * 4 + [(12, 8)] * 4)
    without = pnpflow.solve(noisy, op, gaussian_prior, replace(settings, views=1),
                            generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(with_views, without)


def test_progress_and_seed():
    clean = gaussian_image(16, 3)
    calls = []
    first = api.restore_rgb(clean, "denoise", steps=7, prior=gaussian_prior, seed=5, solver="pnp-flow",
                            progress=lambda n, total, phase: calls.append((n, total, phase)))
    assert calls == [(n, 7, f"step {n}/7") for n in range(0, 8)]  # named at once, total known
    np.testing.assert_array_equal(first, api.restore_rgb(clean, "denoise", steps=7, prior=gaussian_prior, seed=5,
                                                         solver="pnp-flow"))
    assert not np.array_equal(first, api.restore_rgb(clean, "denoise", steps=7, prior=gaussian_prior, seed=6))


# --- shapes with a real (tiny, untrained) network on odd sizes --------------------------------

@pytest.mark.parametrize("task,options", [("denoise", {}), ("deblur", {"blur_sigma": 1.0}),
                                          ("superres", {"scale": 2}), ("superres", {"scale": 3}),
                                          ("inpaint", {"mask_ratio": 0.5})])
def test_degrade_restore_round_trip_shapes(task, options):
    rgb = natural_crop(48)[:37, :47]
    image = Image(rgb=rgb, alpha=np.linspace(0, 1, 37 * 47, dtype=np.float32).reshape(37, 47), bit_depth=16)
    degraded, mask = api.degrade_image(image, task, seed=0, **options)
    restore_options = {k: v for k, v in options.items() if k != "mask_ratio"}
    out = api.restore_image(degraded, task, mask=mask, steps=2, prior=tiny_prior(), **restore_options)
    scale = options.get("scale", 1)
    assert degraded.rgb.shape == (37 // scale, 47 // scale, 3)
    assert out.rgb.shape == (scale * (37 // scale), scale * (47 // scale), 3)
    assert out.alpha.shape == out.rgb.shape[:2] and out.bit_depth == 16
    assert np.isfinite(out.rgb).all() and out.rgb.min() >= 0 and out.rgb.max() <= 1


def test_grey_in_grey_out():
    grey = np.repeat(natural_crop(24).mean(axis=2, keepdims=True), 3, axis=2)
    out = api.restore_rgb(grey, "denoise", steps=2, prior=tiny_prior())
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 0], out[..., 2])


# --- tiles -------------------------------------------------------------------------------------

@pytest.mark.parametrize("scale", [1, 3])
def test_tiles_blend_to_the_untiled_result(scale):
    """With a local 'solver' (nearest up-sampling), blending the tiles gives exactly the global answer."""
    y = torch.rand(1, 3, 70, 95)
    boxes = []

    def solve(box, index, count):
        boxes.append(box)
        r0, r1, c0, c1 = box
        return y[..., r0:r1, c0:c1].repeat_interleave(scale, -2).repeat_interleave(scale, -1)

    out = tiles.tiled(y, scale, margin=3, solve=solve, tile_pixels=1000, tile=40 * scale, blend=4)
    assert len(boxes) > 4
    expected = y.repeat_interleave(scale, -2).repeat_interleave(scale, -1)
    torch.testing.assert_close(out, expected)


def test_restore_by_tiles(monkeypatch):
    """Above the threshold restore runs per tile with tile-local physics; progress spans all tiles."""
    real = tiles.tiled
    monkeypatch.setattr(tiles, "tiled", lambda *a, **k: real(*a, **{**k, "tile_pixels": 40 * 40, "tile": 48}))
    monkeypatch.setattr(tiles, "NET_MARGIN", 2)
    calls = []
    clean = natural_crop(96)[:90, :70]
    y, _ = physics.degrade(clean, "deblur", blur_sigma=1.0, noise_sigma=0.01)
    out = api.restore_rgb(y, "deblur", blur_sigma=1.0, steps=2, prior=tiny_prior(), solver="pnp-flow",
                          progress=lambda n, total, phase: calls.append((n, total, phase)))
    assert out.shape == clean.shape
    count = calls[-1][1] // 2
    assert count > 1 and calls[-1] == (2 * count, 2 * count, f"tile {count}/{count} · step 2/2")


# --- metrics and the shipped prior ---------------------------------------------------------------

def test_quality_metrics():
    clean = natural_crop(32)
    noisy = clean + 0.05 * np.random.default_rng(0).standard_normal(clean.shape).astype(np.float32)
    scores = api.quality(Image(rgb=noisy), clean)
    assert scores["psnr"] == pytest.approx(psnr(np.clip(noisy, 0, 1), clean), abs=1e-3)
    assert 0 < scores["ssim"] < 1
    with pytest.raises(InputError, match="reference"):
        api.quality(noisy[:10], clean)


DEBLUR, SUPERRES = {"blur_sigma": 1.0, "noise_sigma": 0.025}, {"scale": 2, "noise_sigma": 0.025}


@pytest.mark.parametrize("task,options,solver", [("denoise", {"noise_sigma": 25 / 255}, "auto"),
                                                 ("deblur", DEBLUR, "auto"), ("deblur", DEBLUR, "pnp-flow"),
                                                 ("superres", SUPERRES, "auto"), ("superres", SUPERRES, "pnp-flow"),
                                                 ("inpaint", {"mask_ratio": 0.7, "noise_sigma": 0.005}, "auto")])
def test_restoration_improves_on_the_degraded_input(task, options, solver):
    """With the shipped prior, each solver's default settings beat the degraded input in PSNR
    (bicubic-upscaled for superres); auto runs mmse / dpir / dpir / dpir."""
    from PIL import Image as PILImage

    prior = shipped_prior()
    clean = natural_crop(48)
    y, mask = physics.degrade(clean, task, seed=0, **options)
    restore_options = {k: v for k, v in options.items() if k != "mask_ratio"}
    out = api.restore_rgb(y, task, mask=mask, prior=prior, solver=solver, **restore_options)
    if task == "superres":
        y = np.stack([np.asarray(PILImage.fromarray(y[..., c], mode="F").resize((48, 48), PILImage.Resampling.BICUBIC))
                      for c in range(3)], axis=2)
    assert api.quality(out, clean)["psnr"] > api.quality(y, clean)["psnr"]


def test_pnpflow_denoising_with_the_shipped_prior_improves_and_mmse_does_better():
    prior = shipped_prior()
    clean = natural_crop(48)
    y, _ = physics.degrade(clean, "denoise", noise_sigma=25 / 255, seed=0)
    pnp = api.quality(api.restore_rgb(y, "denoise", prior=prior, solver="pnp-flow"), clean)["psnr"]
    mmse = api.quality(api.restore_rgb(y, "denoise", prior=prior, solver="mmse"), clean)["psnr"]
    assert api.quality(y, clean)["psnr"] < pnp < mmse


def test_flow_training_runs_resumes_and_exports(tmp_path):
    from PIL import Image as PILImage

    from otmap_cli.restoration.prior import load_prior
    from otmap_cli.restoration.train import FlowTrainConfig, train_flow

    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        PILImage.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(data / f"{i}.png")
    settings = dict(data=data, run_dir=tmp_path / "run", out=tmp_path / "prior.safetensors", channels=(8, 16),
                    blocks=1, pixels_per_batch=2 * 32 * 32, patch_sizes=(32,), validation_images=1, warmup_steps=2,
                    checkpoint_minutes=100, threads=1)
    lines: list[str] = []
    train_flow(FlowTrainConfig(max_steps=3, **settings), log=lines.append)
    prior = load_prior(tmp_path / "prior.safetensors")
    assert prior.config["channels"] == [8, 16]
    train_flow(FlowTrainConfig(max_steps=5, resume=True, **settings), log=lines.append)
    assert any("resumed" in line and "step 3" in line for line in lines)
    log = [line for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [json.loads(line)["step"] for line in log] == [3, 5]
    x = torch.zeros(1, 3, 20, 28)
    assert prior(x, torch.full((1,), 0.5)).shape == x.shape  # odd sizes go through
