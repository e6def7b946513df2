"""Certifying that a generator is the gradient of a convex potential: Lanczos on Hessian-vector products.

For G = grad phi the Jacobian of G is Hess phi, so Hess phi(x) v is one vector-Jacobian product
of G, and a few Lanczos iterations give the smallest eigenvalue at x without forming the
784 x 784 matrix. Pairs add an exact test of monotonicity, <G(x) - G(y), x - y> >= 0.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from otmap_cli.errors import InputError
from otmap_cli.generate.models import IMAGE_NOISE, source_noise
from otmap_cli.progress import Progress, or_silent


def rayleigh(dx: torch.Tensor, dg: torch.Tensor) -> torch.Tensor:
    """<dg, dx> / |dx|^2 per row: the mean curvature of phi along the segment."""
    return (dx * dg).sum(1) / dx.pow(2).sum(1).clamp_min(1e-12)


def code_directions(generator: nn.Module, n: int, gen: torch.Generator) -> torch.Tensor | None:
    """n random directions (n x 784, CPU) in span(E) for a decoder potential, where its negative
    curvature enters; None for potentials without a code."""
    encoder = getattr(getattr(generator, "potential", None), "encoder", None)
    if encoder is None:
        return None
    return torch.randn((n, len(encoder)), generator=gen) @ encoder.float().cpu()



@dataclass
class ConvexityReport:
    """What ``otmap sample --check-convexity`` prints.

    ``min_eigenvalue`` is the smallest, over the points, of a Lanczos estimate of the smallest
    eigenvalue of Hess phi(x). Each estimate is a Ritz value, hence an *upper* bound of the true
    smallest eigenvalue at that point (it converges from above): a negative value proves
    non-convexity, a positive one is evidence, not proof. The pair checks are exact statements
    about the pairs tried (up to float32 rounding).
    """

    n_points: int
    lanczos_steps: int
    min_eigenvalue: float
    eigenvalue_p01: float
    eigenvalue_median: float
    negative_points: int
    n_pairs: int
    min_far_pair: float
    min_near_pair: float
    violated_pairs: int
    seconds: float

    @property
    def convex(self) -> bool:
        return self.min_eigenvalue >= 0 and self.violated_pairs == 0


def hvp(generator: nn.Module, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Hess phi(x) v as the vector-Jacobian product of G = grad phi (its Jacobian is symmetric)."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        (hv,) = torch.autograd.grad((generator(x) * v).sum(), x)
    return hv.detach()


def lanczos_smallest(hvp: Callable[[torch.Tensor], torch.Tensor], start: torch.Tensor,
                     steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Smallest Ritz value and its Ritz vector after ``steps`` Lanczos iterations, batched over rows.

    ``start`` (n x ...) holds one start vector per point and ``hvp`` maps such a batch to the
    Hessian-vector products at the n points. Full reorthogonalisation (twice, after Kahan) keeps
    the basis orthogonal in float32, so no spurious copies of converged Ritz values appear.
    """
    n, shape = len(start), start.shape
    q = F.normalize(start.flatten(1).float().cpu(), dim=1)
    restarts = torch.Generator().manual_seed(0)
    basis, alphas, betas = [], [], []

    def orthogonalise(w: torch.Tensor) -> torch.Tensor:
        stacked = torch.stack(basis)  # k x n x d
        for _ in range(2):
            w = w - torch.einsum("kn,knd->nd", torch.einsum("knd,nd->kn", stacked, w), stacked)
        return w

    for _ in range(steps):
        basis.append(q)
        hq = hvp(q.view(shape)).flatten(1).float().cpu()
        alphas.append((hq * q).sum(1))
        w = orthogonalise(hq)
        beta = w.norm(dim=1)
        # an invariant subspace is exhausted (few distinct eigenvalues): go on from a fresh direction
        stalled = beta <= 1e-5 * hq.norm(dim=1).clamp_min(1e-30)
        if stalled.any():
            fresh = orthogonalise(torch.randn(w.shape, generator=restarts))
            w = torch.where(stalled[:, None], fresh, w)
            beta = torch.where(stalled, torch.zeros_like(beta), beta)
        betas.append(beta)
        q = F.normalize(w, dim=1)
    k = len(alphas)
    idx = torch.arange(k)
    tri = torch.zeros(n, k, k, dtype=torch.float64)
    tri[:, idx, idx] = torch.stack(alphas, 1).double()
    off = torch.stack(betas[:-1], 1).double() if k > 1 else torch.zeros(n, 0, dtype=torch.float64)
    tri[:, idx[:-1], idx[1:]] = off
    tri[:, idx[1:], idx[:-1]] = off
    evals, evecs = torch.linalg.eigh(tri)
    vectors = torch.einsum("nk,knd->nd", evecs[:, :, 0].float(), torch.stack(basis))
    return evals[:, 0].float(), vectors.view(shape)


def check_convexity(generator: nn.Module, n_points: int = 1000, lanczos_steps: int = 20, n_pairs: int = 1000,
                    near_distance: float = 0.5, seed: int = 0, device: str = "cpu",
                    batch: int = 250, progress: Progress | None = None) -> ConvexityReport:
    """Smallest Hessian eigenvalue of phi at ``n_points`` noise draws (from the generator's own
    source, ``models.source_noise``), and monotonicity over pairs.

    Far pairs are independent draws; near pairs are x, x + d with |d| = ``near_distance`` (the
    noise itself has norm ~ 28). Only maps of the noise space onto itself have a potential: a
    DCGAN generator is refused. For a decoder potential, whose negative curvature enters through
    its code, each point gets a second Lanczos run started in span(E) and keeps the lower
    estimate. ``progress`` sees "point k/n_points" after every Hessian-vector product (k counts the
    points whose Lanczos runs are done, in fractions of a batch), then "monotonicity pairs" (k/3: the
    three batched forward passes).
    """
    if tuple(generator.noise_shape) != IMAGE_NOISE:
        raise InputError(f"{generator.config['model']}: noise and images differ in dimension, "
                         "so the generator is not the gradient of a potential")
    start = time.time()
    generator = generator.to(device).eval()
    gen = torch.Generator().manual_seed(seed)
    points = source_noise(generator, torch.randn((n_points, *IMAGE_NOISE), generator=gen))
    report = or_silent(progress)
    report(0, n_points, f"point 0/{n_points}")
    estimates, done = [], 0
    for chunk in points.split(batch):
        x = chunk.to(device)
        starts = [torch.randn(chunk.shape, generator=gen)]
        in_code = code_directions(generator, len(chunk), gen)
        if in_code is not None:
            starts.append(in_code.view(chunk.shape))
        products = itertools.count(1)
        work = len(starts) * lanczos_steps

        def counted_hvp(v: torch.Tensor, x: torch.Tensor = x) -> torch.Tensor:
            product = hvp(generator, x, v.to(device))
            points_done = done + len(chunk) * next(products) // work
            report(points_done, n_points, f"point {points_done}/{n_points}")
            return product

        runs = [lanczos_smallest(counted_hvp, start, lanczos_steps)[0] for start in starts]
        estimates.append(torch.stack(runs).min(0).values)
        done += len(chunk)
    report(0, 3, "monotonicity pairs")
    eigen = torch.cat(estimates)
    x, far = (source_noise(generator, torch.randn((n_pairs, *IMAGE_NOISE), generator=gen)) for _ in range(2))
    step = torch.randn((n_pairs, *IMAGE_NOISE), generator=gen)
    near = x + near_distance * step / step.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    with torch.no_grad():
        outputs = []
        for index, t in enumerate((x, far, near)):
            outputs.append(torch.cat([generator(c.to(device)).cpu() for c in t.split(batch)]))
            report(index + 1, 3, "monotonicity pairs")
    q_far = rayleigh((x - far).flatten(1), (outputs[0] - outputs[1]).flatten(1))
    q_near = rayleigh((x - near).flatten(1), (outputs[0] - outputs[2]).flatten(1))
    return ConvexityReport(
        n_points=n_points, lanczos_steps=lanczos_steps, min_eigenvalue=float(eigen.min()),
        eigenvalue_p01=float(eigen.quantile(0.01)), eigenvalue_median=float(eigen.median()),
        negative_points=int((eigen < 0).sum()), n_pairs=n_pairs, min_far_pair=float(q_far.min()),
        min_near_pair=float(q_near.min()), violated_pairs=int((q_far < 0).sum() + (q_near < 0).sum()),
        seconds=round(time.time() - start, 2))
