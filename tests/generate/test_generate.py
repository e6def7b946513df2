"""The `sample` library: MNIST reader, generators, training loop, convexity check and metrics.

Everything runs on tiny synthetic digits written as idx files, so nothing here needs
``../shared``; the tests of the shipped generator skip while ``models/brenier_mnist.safetensors``
does not exist.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from conftest import synthetic_digits
from otmap_cli.errors import InputError
from otmap_cli.generate import metrics
from otmap_cli.generate.brenier import BrenierTrainConfig, BrenierTrainer, train_brenier
from otmap_cli.generate.classifier import MnistClassifier, classify
from otmap_cli.generate.convexity import check_convexity, hvp, lanczos_smallest
from otmap_cli.generate.mnist import image_grid, load_mnist, read_idx
from otmap_cli.generate.models import (DCGANGenerator, GaussianGenerator, PotentialGenerator, export_generator,
                                       load_generator, pca, restrict_affine_to_code)
from otmap_cli.generate.sampling import interpolate, noise_draws, sample
from otmap_cli.nets.convex import ConvPotential

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "models" / "brenier_mnist.safetensors"
TINY = {"channels": (4, 8), "hidden": 16}
torch.set_num_threads(1)


def tiny_generator(convex: bool = False, seed: int = 0, potential: str = "conv",
                   affine: str = "full") -> PotentialGenerator:
    torch.manual_seed(seed)
    if potential == "decoder":
        generator = PotentialGenerator(channels=(4, 8), potential="decoder", code=5, convex=convex,
                                       affine=affine).eval()
        generator.potential.set_encoder(torch.linalg.qr(torch.randn(784, 5))[0].T)  # orthonormal rows
        return generator
    return PotentialGenerator(**TINY, convex=convex).eval()


# --- data -----------------------------------------------------------------------------------

def test_idx_round_trip_and_refusals(mnist_dir, tmp_path):
    images, labels = load_mnist(mnist_dir, "train")
    expected, expected_labels = synthetic_digits(600, 0)
    assert images.dtype == torch.uint8 and images.shape == (600, 28, 28)
    assert np.array_equal(images.numpy(), expected) and np.array_equal(labels.numpy(), expected_labels)
    bad = tmp_path / "bad-idx"
    bad.write_bytes(bytes([0, 0, 8, 1]) + (10).to_bytes(4, "big") + b"\x00" * 3)
    with pytest.raises(InputError, match="truncated"):
        read_idx(bad)
    with pytest.raises(InputError, match="missing"):
        load_mnist(tmp_path, "test")


def test_grid_layout():
    tiles = np.stack([np.full((28, 28), k, dtype=np.uint8) for k in range(1, 7)])
    grid = image_grid(tiles, columns=3, gap=2)
    assert grid.shape == (2 * 30 + 2, 3 * 30 + 2)
    assert grid[2, 2] == 1 and grid[32, 62] == 6 and grid[0, 0] == 0


# --- generators -----------------------------------------------------------------------------

@pytest.mark.parametrize("make", [tiny_generator, lambda: DCGANGenerator(latent=8, channels=(8, 4)).eval()])
def test_seeded_sampling_is_reproducible(make):
    generator = make()
    a, b, c = sample(generator, 6, seed=3), sample(generator, 6, seed=3), sample(generator, 6, seed=4)
    assert a.shape == (6, 28, 28) and a.dtype == torch.uint8
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_interpolation_ends_are_the_two_draws():
    generator = tiny_generator()
    walk = interpolate(generator, 5, seed=7)
    ends = sample(generator, 2, seed=7)
    assert walk.shape == (5, 28, 28)
    assert (walk[0].int() - ends[0].int()).abs().max() <= 1 and (walk[-1].int() - ends[1].int()).abs().max() <= 1


def test_gaussian_map_matches_moments():
    torch.manual_seed(0)
    data = torch.randn(4000, 1, 28, 28) * torch.linspace(0.05, 0.5, 784).view(1, 1, 28, 28) + 0.1
    generator = GaussianGenerator.fit(data)
    out = generator(torch.randn(4000, 1, 28, 28)).flatten(1)
    assert torch.allclose(out.mean(0), data.flatten(1).mean(0), atol=0.03)
    assert torch.allclose(out.std(0), data.flatten(1).std(0), rtol=0.1)


@pytest.mark.parametrize("convex, potential, affine",
                         [(False, "conv", "full"), (True, "conv", "full"), (False, "decoder", "full"),
                          (False, "decoder", "code")])
def test_generator_is_the_gradient_of_phi(convex, potential, affine):
    """G(x).v against central differences of phi in float64."""
    generator = tiny_generator(convex, potential=potential, affine=affine).double()
    with torch.no_grad():  # a non-trivial affine part too
        generator.V.copy_(torch.randn(generator.V.shape, dtype=torch.float64) / 60)
        generator.bias.normal_()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, 1, 28, 28, generator=gen, dtype=torch.float64)
    v = torch.randn(3, 1, 28, 28, generator=gen, dtype=torch.float64)
    h = 1e-5
    with torch.no_grad():
        directional = (generator(x) * v).flatten(1).sum(1)
        fd = (generator.phi(x + h * v) - generator.phi(x - h * v)) / (2 * h)
    assert torch.allclose(directional, fd, rtol=1e-6, atol=1e-8)


def test_initial_map_is_the_gaussian_map():
    """With grad psi ~ 0 at initialisation the potential generator starts where the baseline is."""
    torch.manual_seed(0)
    data = torch.rand(3000, 1, 28, 28) * 2 - 1
    generator = tiny_generator()
    generator.init_gaussian(*pca(data))
    baseline = GaussianGenerator.fit(data)
    z = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        gap = (generator(z) - baseline(z)).abs().max()
    assert gap < 0.02


# --- convexity ------------------------------------------------------------------------------

class LinearMap(nn.Module):
    """G(x) = M x: the gradient of 1/2 x^T M x, for planting a known Hessian."""

    noise_shape = (1, 28, 28)
    config = {"model": "test"}

    def __init__(self, matrix: torch.Tensor):
        super().__init__()
        self.register_buffer("matrix", matrix)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return (z.flatten(1) @ self.matrix).view_as(z)


def test_lanczos_finds_the_smallest_eigenvalue():
    evals = torch.linspace(-0.3, 5.0, 784)
    q, _ = torch.linalg.qr(torch.randn(784, 784, generator=torch.Generator().manual_seed(0)))
    matrix = (q * evals) @ q.T
    start = torch.randn(4, 784, generator=torch.Generator().manual_seed(1))
    est, vectors = lanczos_smallest(lambda v: v @ matrix, start, 40)
    assert est.shape == (4,) and vectors.shape == (4, 784)
    assert (est >= -0.3 - 1e-4).all() and (est < -0.25).all()
    rayleigh = ((vectors @ matrix) * vectors).sum(1) / vectors.pow(2).sum(1)
    assert torch.allclose(rayleigh, est, atol=1e-4)  # the Ritz vector goes with the Ritz value


@pytest.mark.parametrize("potential", ["conv", "decoder"])
def test_convexity_check_passes_on_an_input_convex_potential(potential):
    generator = tiny_generator(convex=True, potential=potential)
    with torch.no_grad():  # strongly curved, and no quadratic part to hide behind
        for p in generator.potential.parameters():
            p.mul_(3)
        generator.V.zero_()
    report = check_convexity(generator, n_points=16, lanczos_steps=12, n_pairs=64, batch=16)
    assert report.convex and report.min_eigenvalue >= generator.alpha - 1e-4 and report.violated_pairs == 0


def test_convexity_check_catches_one_negative_direction():
    """phi = 1/2 |x|^2 - 3/4 (u.x)^2: random pairs in 784 dimensions almost never see u; Lanczos must."""
    u = torch.randn(784, generator=torch.Generator().manual_seed(2))
    u = u / u.norm()
    generator = LinearMap(torch.eye(784) - 1.5 * torch.outer(u, u))
    report = check_convexity(generator, n_points=8, lanczos_steps=30, n_pairs=64, batch=8)
    assert not report.convex
    assert report.min_eigenvalue == pytest.approx(-0.5, abs=0.02) and report.negative_points == 8


def test_convexity_check_catches_a_concave_potential():
    report = check_convexity(LinearMap(-0.1 * torch.eye(784)), n_points=4, lanczos_steps=4, n_pairs=16, batch=4)
    assert not report.convex and report.violated_pairs == 32 and report.min_far_pair == pytest.approx(-0.1, abs=1e-5)


def test_convexity_check_reports_points_as_it_goes():
    """Named at once with its total, then every Hessian-vector product moves the count (points of the
    batches done); the same report as without a callback."""
    calls = []
    generator = tiny_generator(potential="decoder")
    report = check_convexity(generator, n_points=6, lanczos_steps=3, n_pairs=8, batch=4,
                             progress=lambda *c: calls.append(c))
    points = [c for c in calls if c[2].startswith("point")]
    assert points[0] == (0, 6, "point 0/6") and points[-1] == (6, 6, "point 6/6")
    assert len(points) == 1 + 2 * 2 * 3  # two batches, two Lanczos runs (decoder: one in the code), 3 steps
    assert all(a[0] <= b[0] for a, b in zip(points, points[1:])) and all(c[1] == 6 for c in points)
    assert all(c[2] == f"point {c[0]}/6" for c in points)
    assert [c for c in calls[len(points):]] == [(k, 3, "monotonicity pairs") for k in range(4)]
    assert report.min_eigenvalue == check_convexity(generator, n_points=6, lanczos_steps=3, n_pairs=8,
                                                    batch=4).min_eigenvalue


@pytest.mark.parametrize("noise_scale", [1.0, 0.25])
def test_decoder_potential_gradient_is_the_gated_image_plus_a_code_term(noise_scale):
    """grad psi = gain sigmoid(a x + D(y)) + gain / a E^T J_D(y)^T sigmoid(a x + D(y)), y = E x."""
    torch.manual_seed(0)
    potential = PotentialGenerator(channels=(4, 8), potential="decoder", code=5, noise_scale=noise_scale).potential
    potential.set_encoder(torch.linalg.qr(torch.randn(784, 5))[0].T)
    potential = potential.double()
    x = torch.randn(3, 1, 28, 28, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(potential(x).sum(), x)
    encoder = potential.encoder
    y = (x.flatten(1) @ encoder.T).detach().requires_grad_(True)
    decoded = potential.decode(y).flatten(1)
    gate = torch.sigmoid(noise_scale * x.detach().flatten(1) + decoded)
    (code_part,) = torch.autograd.grad((decoded * gate.detach()).sum(), y)
    expected = potential.gain * gate + potential.gain / noise_scale * code_part @ encoder
    assert torch.allclose(grad.flatten(1), expected, atol=1e-10)
    assert potential.config.get("noise_scale", 1.0) == noise_scale


DATA_STD = torch.cat([torch.tensor([3.0, 2.5, 2.0, 1.6, 1.3]), torch.full((779,), 0.2)])


def pca_source_generator() -> PotentialGenerator:
    """A decoder-potential generator started from the PCA of anisotropic data, so std differs from 1."""
    torch.manual_seed(0)
    data = torch.randn(3000, 1, 28, 28) * DATA_STD.view(1, 1, 28, 28)
    generator = PotentialGenerator(channels=(4, 8), potential="decoder", code=5, pca_source=True)
    generator.init_gaussian(*pca(data))
    return generator.eval()


def test_pca_source_is_as_wide_as_the_data_along_the_code_and_standard_elsewhere():
    generator = pca_source_generator()
    encoder, std = generator.potential.encoder, generator.potential.code_std
    assert torch.allclose(std, DATA_STD[:5], rtol=0.05)  # the data's leading standard deviations
    x = noise_draws(generator, 20000, seed=0).flatten(1)
    assert torch.allclose((x @ encoder.T).std(0), std, rtol=0.03)
    off_code = x - (x @ encoder.T) @ encoder
    assert abs(off_code.pow(2).sum(1).mean().item() / (784 - 5) - 1) < 0.02
    assert torch.allclose(generator.potential.code_of(x).std(0), torch.ones(5), rtol=0.03)  # the decoder's input
    assert tiny_generator(potential="decoder").config.get("pca_source") is None  # off by default
    with pytest.raises(InputError, match="decoder potential only"):
        PotentialGenerator(**TINY, pca_source=True)


def test_pca_source_map_is_the_gradient_of_phi_and_survives_a_file(tmp_path):
    """With the wide source the potential reads y = E x / std; G is still grad phi at the source noise,
    its span(E) term is divided by std, and the file keeps std."""
    generator = pca_source_generator()
    x = noise_draws(generator, 3, seed=1).double().requires_grad_(True)
    generator, potential = generator.double(), generator.potential
    (grad,) = torch.autograd.grad(generator.phi(x).sum(), x)
    assert torch.allclose(generator(x), grad, atol=1e-9)
    y = potential.code_of(x).detach().requires_grad_(True)
    decoded = potential.decode(y).flatten(1)
    gate = torch.sigmoid(x.detach().flatten(1) + decoded)
    (code_part,) = torch.autograd.grad((decoded * gate.detach()).sum(), y)
    expected = potential.gain * gate + potential.gain * (code_part / potential.code_std) @ potential.encoder
    (grad_psi,) = torch.autograd.grad(potential(x).sum(), x)
    assert torch.allclose(grad_psi.flatten(1), expected, atol=1e-10)
    path = tmp_path / "wide.safetensors"
    export_generator(generator.float(), path, {})
    loaded = load_generator(path)
    assert loaded.config["pca_source"] is True
    assert torch.allclose(loaded.potential.code_std, potential.code_std.float(), rtol=1e-3)
    assert torch.equal(sample(loaded, 4, seed=2), sample(loaded, 4, seed=2))


def test_decoder_potential_bends_down_only_in_the_span_of_its_code():
    """Off span(E) the Hessian is gain (I + J E)^T diag(s'') (I + J E) + alpha I + V^T V >= alpha I."""
    generator = tiny_generator(potential="decoder").double()
    with torch.no_grad():  # saturated pixel gates (s'' ~ 0, s' ~ 1) leave the decoder's own curvature
        for p in generator.potential.parameters():
            p.mul_(3)
        generator.potential.up2.bias.fill_(8.0)
        generator.V.zero_()
    encoder = generator.potential.encoder
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 1, 28, 28, generator=gen, dtype=torch.float64)
    inside = (torch.randn(64, 5, generator=gen, dtype=torch.float64) @ encoder).view_as(x)
    outside = torch.randn(64, 784, generator=gen, dtype=torch.float64)
    outside = (outside - outside @ encoder.T @ encoder).view_as(x)

    def curvature(v):
        return (hvp(generator, x, v) * v).flatten(1).sum(1) / v.flatten(1).pow(2).sum(1)

    floor = generator.alpha  # alpha I + V^T V with V = 0
    lowest_inside = curvature(inside).min().item()
    assert lowest_inside < 0  # the test has teeth: phi is not convex
    assert curvature(outside).min() >= floor - 1e-9
    report = check_convexity(generator.float(), n_points=64, lanczos_steps=12, n_pairs=16, batch=64)
    assert not report.convex and report.min_eigenvalue <= lowest_inside + 1e-3


def test_dcgan_has_no_potential():
    with pytest.raises(InputError, match="not the gradient"):
        check_convexity(DCGANGenerator(latent=8, channels=(8, 4)), n_points=2)


def test_recu_potential_is_convex_in_convex_mode():
    torch.manual_seed(0)
    potential = ConvPotential((4, 8), 16, "recu", convex=True)
    x, y = torch.randn(2, 32, 1, 28, 28)
    with torch.no_grad():  # midpoint convexity on random pairs
        assert (potential((x + y) / 2) <= (potential(x) + potential(y)) / 2 + 1e-9).all()


# --- files ----------------------------------------------------------------------------------

def test_generator_file_round_trip(tmp_path):
    generator = tiny_generator()
    path = tmp_path / "g.safetensors"
    export_generator(generator, path, {"steps": 0})
    loaded = load_generator(path)
    assert loaded.config == generator.config and loaded.meta["steps"] == 0
    z = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        assert (loaded(z) - generator(z)).abs().max() < 5e-3  # fp16 storage
    (tmp_path / "g.pt").write_bytes(b"not a pickle either")
    with pytest.raises(InputError, match="pickle"):
        load_generator(tmp_path / "g.pt")


def test_code_affine_part_adds_no_pixel_noise(tmp_path):
    """With affine="code", V^T V x lies in span(E): noise orthogonal to the code moves G by alpha only."""
    generator = tiny_generator(potential="decoder", affine="code")
    assert generator.V.shape == (5, 5) and generator.config["affine"] == "code"
    with torch.no_grad():
        generator.V.normal_()
        encoder = generator.potential.encoder
        x = torch.randn(2, 1, 28, 28)
        orthogonal = torch.randn(2, 784)
        orthogonal = (orthogonal - (orthogonal @ encoder.T) @ encoder).view_as(x)
        moved = generator(x + orthogonal) - generator(x)

    def grad_psi(z: torch.Tensor) -> torch.Tensor:
        z = z.clone().requires_grad_(True)
        return torch.autograd.grad(generator.potential(z).sum(), z)[0]

    psi_moved = grad_psi(x + orthogonal) - grad_psi(x)
    assert torch.allclose(moved, generator.alpha * orthogonal + psi_moved, atol=1e-5)
    export_generator(generator, tmp_path / "g.safetensors", {})
    assert load_generator(tmp_path / "g.safetensors").config == generator.config
    with pytest.raises(InputError, match="decoder potential"):
        PotentialGenerator(**TINY, affine="code")


def test_restricting_the_affine_part_keeps_phi_in_the_code_and_drops_the_rest():
    generator = tiny_generator(potential="decoder").double()
    with torch.no_grad():
        generator.V.copy_(torch.randn(784, 784, dtype=torch.float64) / 30)
        generator.bias.normal_()
    restricted = restrict_affine_to_code(generator)
    assert restricted.config == {**generator.config, "affine": "code"} and restricted.V.shape == (5, 5)
    encoder = generator.potential.encoder
    projector = encoder.T @ encoder
    expected = tiny_generator(potential="decoder").double()
    with torch.no_grad():
        expected.load_state_dict(generator.state_dict())
        evals, evecs = torch.linalg.eigh(projector @ generator.V.T @ generator.V @ projector)
        expected.V.copy_((evecs * evals.clamp_min(0).sqrt()) @ evecs.T)
        x = torch.randn(3, 1, 28, 28, dtype=torch.float64)
        assert torch.allclose(restricted(x), expected(x), atol=1e-8)
    with pytest.raises(InputError, match="decoder-potential"):
        restrict_affine_to_code(tiny_generator())


def test_lazy_penalty_searches_every_kth_step_and_keeps_the_weight(mnist_dir, tmp_path, monkeypatch):
    cfg = BrenierTrainConfig(data=mnist_dir, run_dir=tmp_path / "run", batch=8, near_pairs=4, max_steps=4,
                             model_options=dict(TINY), checkpoint_minutes=100, classifier=None, bf16=False,
                             penalty_every=2)
    trainer = BrenierTrainer(cfg, log=lambda line: None)
    searches = []
    search = trainer.penalty.search
    monkeypatch.setattr(trainer.penalty, "search", lambda *a: (searches.append(trainer.step), search(*a)))
    stats = [trainer.train_step() for _ in range(4)]
    assert searches == [0, 2]
    assert ["q_near_min" in s for s in stats] == [True, False, True, False]
    penalty = trainer.penalty
    z = torch.randn(8, 1, 28, 28)
    g_all = trainer.generator(penalty.inputs(z)).detach()
    full, _ = penalty(z, g_all)
    far_only, _ = penalty(z, g_all[:8])
    twice, _ = penalty(z, g_all, near_weight=2.0)
    assert torch.allclose(far_only + (twice - far_only) / 2, full)  # near pairs weighted k on their steps


def test_training_runs_resumes_and_exports(mnist_dir, tmp_path):
    cfg = BrenierTrainConfig(data=mnist_dir, run_dir=tmp_path / "run", out=tmp_path / "g.safetensors", batch=8,
                             near_pairs=4, model_options=dict(TINY), max_steps=2, checkpoint_minutes=100,
                             classifier=None, bf16=False)
    lines: list[str] = []
    train_brenier(cfg, log=lines.append)
    cfg.resume, cfg.max_steps = True, 3
    train_brenier(cfg, log=lines.append)
    assert any("resumed" in line and "step 2" in line for line in lines)
    log = (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    assert len(log) == 2 and '"step": 3' in log[-1] and "min_eigenvalue" in log[-1] and "penalty" in log[-1]
    assert (tmp_path / "run" / "samples_000003.png").is_file()
    assert load_generator(cfg.out).meta["steps"] == 3
    warm = BrenierTrainConfig(data=mnist_dir, run_dir=tmp_path / "warm", init=cfg.out, batch=8, near_pairs=4,
                              max_steps=1, checkpoint_minutes=100, bf16=False)
    assert train_brenier(warm, log=lines.append).config == load_generator(cfg.out).config
    with pytest.raises(InputError, match="not dcgan"):
        train_brenier(BrenierTrainConfig(data=mnist_dir, run_dir=tmp_path / "x", init=cfg.out, model="dcgan"))


def test_discriminator_warmup_leaves_the_generator_untouched(mnist_dir, tmp_path):
    export_generator(tiny_generator(potential="decoder"), tmp_path / "d.safetensors", {})
    cfg = BrenierTrainConfig(data=mnist_dir, run_dir=tmp_path / "warm", init=tmp_path / "d.safetensors", batch=8,
                             near_pairs=4, max_steps=3, checkpoint_minutes=100, bf16=False, classifier=None,
                             discriminator_warmup=2, ema_decay=0.5)
    start = load_generator(cfg.init).state_dict()
    trainer = BrenierTrainer(cfg, log=lambda line: None)
    d_start = {k: v.clone() for k, v in trainer.discriminator.state_dict().items()}
    stats = [trainer.train_step() for _ in range(2)]
    assert all(set(s) == {"loss_d"} for s in stats)
    assert all(torch.equal(v, start[k]) for k, v in trainer.generator.state_dict().items())
    assert any(not torch.equal(v, d_start[k]) for k, v in trainer.discriminator.state_dict().items())
    assert "loss_g" in trainer.train_step()  # after the warm-up, the generator trains
    assert any(not torch.equal(v, start[k]) for k, v in trainer.generator.state_dict().items())


def test_warm_start_or_resume_may_sharpen_the_decoder_potential(mnist_dir, tmp_path):
    decoder = tiny_generator(potential="decoder")
    export_generator(decoder, tmp_path / "d.safetensors", {})
    cfg = BrenierTrainConfig(data=mnist_dir, run_dir=tmp_path / "warm", init=tmp_path / "d.safetensors", batch=8,
                             near_pairs=4, max_steps=1, checkpoint_minutes=100, bf16=False, classifier=None,
                             model_options={"noise_scale": 0.5})
    lines: list[str] = []
    assert train_brenier(cfg, log=lines.append).config["noise_scale"] == 0.5
    assert any("noise scale 1 -> 0.5" in line for line in lines)
    options = {k: v for k, v in decoder.config.items() if k != "model"}
    cfg.init, cfg.resume, cfg.max_steps, cfg.model_options = None, True, 2, {**options, "noise_scale": 0.3}
    resumed = train_brenier(cfg, log=lines.append)  # the game (discriminator, optimisers) goes on at a = 0.3
    assert resumed.config["noise_scale"] == 0.3 and any("noise scale 0.5 -> 0.3" in line for line in lines)
    assert any("resumed" in line and "step 1" in line for line in lines)
    cfg.model_options = {**options, "noise_scale": 0.3, "code": 3}
    with pytest.raises(InputError, match="checkpoint of another model"):
        train_brenier(cfg)
    export_generator(tiny_generator(), tmp_path / "c.safetensors", {})
    cfg.init, cfg.resume, cfg.run_dir, cfg.model_options = tmp_path / "c.safetensors", False, tmp_path / "conv", {
        "noise_scale": 0.5}
    with pytest.raises(InputError, match="decoder potential only"):
        train_brenier(cfg)


# --- metrics --------------------------------------------------------------------------------

def test_metrics_sanity():
    images, _ = synthetic_digits(800, 3)
    reals = torch.from_numpy(images)
    noise = torch.randint(0, 256, (400, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    feats, _ = classify(MnistClassifier(), torch.cat([reals, noise]))
    half_a, half_b, fake = feats[:400], feats[400:800], feats[800:]
    assert metrics.frechet_distance(half_a, half_b) < 0.1 * metrics.frechet_distance(half_a, fake)
    precision, recall = metrics.precision_recall(half_a, half_b)
    assert precision > 0.7 and recall > 0.7
    assert metrics.precision_recall(half_a, fake) == (0.0, 0.0)
    assert metrics.class_entropy(np.arange(1000) % 10) == pytest.approx(math.log(10))
    assert metrics.class_entropy(np.zeros(50, dtype=int)) == 0
    copies = metrics.memorisation(reals[:50], reals[:400], reals[400:450])
    assert copies["ratio"] == 0 and copies["copied"] == 1


# --- the shipped generator ------------------------------------------------------------------

shipped = pytest.mark.skipif(not SHIPPED.is_file(), reason="models/brenier_mnist.safetensors not trained yet")


@shipped
def test_shipped_generator_samples_and_is_monotone():
    generator = load_generator(SHIPPED)
    images = sample(generator, 16, seed=0)
    assert images.shape == (16, 28, 28) and torch.equal(images, sample(generator, 16, seed=0))
    assert images.float().std() > 20  # not a constant image
    report = check_convexity(generator, n_points=8, lanczos_steps=10, n_pairs=200)
    assert report.violated_pairs == 0 and report.min_eigenvalue >= 0


@shipped
def test_shipped_generator_is_the_gradient_of_its_potential():
    generator = load_generator(SHIPPED).double()
    gen = torch.Generator().manual_seed(0)
    x, v = (torch.randn(2, 1, 28, 28, generator=gen, dtype=torch.float64) for _ in range(2))
    h = 1e-5
    with torch.no_grad():
        fd = (generator.phi(x + h * v) - generator.phi(x - h * v)) / (2 * h)
        assert torch.allclose((generator(x) * v).flatten(1).sum(1), fd, rtol=1e-5, atol=1e-6)


def test_classifier_trainer_resumes_bit_identically_and_exports(mnist_dir, tmp_path):
    """On the Trainer base: a run stopped at step 3 and resumed ends with the very weights, schedule
    and log of an uninterrupted 6-step run (one-cycle schedule over the epochs)."""
    from otmap_cli.generate.classifier import ClassifierTrainConfig, load_classifier, train_classifier

    def config(name: str, **extra) -> ClassifierTrainConfig:
        return ClassifierTrainConfig(data=mnist_dir, run_dir=tmp_path / name, out=tmp_path / f"{name}.safetensors",
                                     epochs=6 * 8 / 600, batch=8, bf16=False, checkpoint_minutes=100, **extra)

    lines: list[str] = []
    whole, report = train_classifier(config("whole"), log=lines.append)
    assert report["steps"] == 6 and 0 <= report["test_accuracy"] <= 1
    train_classifier(config("split", max_steps=3), log=lines.append)
    resumed, resumed_report = train_classifier(config("split", resume=True), log=lines.append)
    assert any("resumed" in line and "step 3" in line for line in lines)
    assert resumed_report["steps"] == 6 and resumed_report["test_accuracy"] == report["test_accuracy"]
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    log = [json.loads(line) for line in (tmp_path / "split" / "log.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in log] == [3, 6] and "test_accuracy" in log[-1]
    assert load_classifier(tmp_path / "split.safetensors").config == whole.config
    with pytest.raises(InputError, match="same --epochs"):
        train_classifier(ClassifierTrainConfig(data=mnist_dir, run_dir=tmp_path / "split", epochs=1.0, batch=8,
                                               resume=True, bf16=False))
