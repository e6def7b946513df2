"""The convexity penalty of Brenier-GAN training (Drygala et al. 2025, in the spirit of their P^(kappa)).

    P = mean over pairs of relu(kappa - <G(x) - G(x'), x - x'> / |x - x'|^2) / kappa,

on far pairs (each draw with its neighbour: monotonicity of G) and near pairs x' = x + h u whose
u aims, by a few Lanczos steps, at the lowest curvature of phi at x (random directions in 784
dimensions average the spectrum and almost never see a negative eigenvalue).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from otmap_cli.generate.convexity import code_directions, hvp, lanczos_smallest, rayleigh
from otmap_cli.generate.models import IMAGE_NOISE


class ConvexityPenalty:
    """The hinge P above; holds the near-pair directions (n x 784 unit rows) between steps."""

    def __init__(self, n: int, step: float, kappa: float, search_steps: int, gen: torch.Generator):
        self.step, self.kappa, self.search_steps = step, kappa, search_steps
        self.directions = F.normalize(torch.randn(n, IMAGE_NOISE[1] * IMAGE_NOISE[2], generator=gen), dim=1)

    def search(self, generator: nn.Module, points: torch.Tensor, gen: torch.Generator) -> None:
        """Point each direction at the lowest curvature of phi at its point (a few Lanczos steps).

        Lanczos restarts from the previous directions plus a random kick: the low-curvature
        directions of a conv potential move little from one batch to the next, and the kick keeps
        the search from settling in one of them. A decoder potential can only bend down through
        its code, so its kick is drawn in span(E).
        """
        kick = code_directions(generator, len(self.directions), gen)
        if kick is None:
            kick = torch.randn(self.directions.shape, generator=gen)
        kick = F.normalize(kick, dim=1)
        start = (self.directions + 0.5 * kick).view(points.shape)
        _, vectors = lanczos_smallest(lambda v: hvp(generator, points, v.to(points.device)), start,
                                      self.search_steps)
        self.directions = F.normalize(vectors.flatten(1), dim=1)

    def inputs(self, z: torch.Tensor, near: bool = True) -> torch.Tensor:
        """The batch with its near partners appended (``near``): G is evaluated once on both."""
        if not near:
            return z
        n = len(self.directions)
        partners = z[:n] + self.step * self.directions.to(z.device).view(n, *z.shape[1:])
        return torch.cat([z, partners])

    def __call__(self, z: torch.Tensor, g_all: torch.Tensor, near_weight: float = 1.0) -> tuple[torch.Tensor, dict]:
        """P over the far pairs and, when ``g_all`` holds them, the near pairs weighted by ``near_weight``.

        A lazy schedule (near pairs every k-th step only, ``near_weight`` = k; "lazy regularisation",
        Karras et al. 2020, StyleGAN2, Sec. 3.1) keeps the expectation of P while the Lanczos search,
        most of a step's cost, runs k times less often.
        """
        b, n = len(z), len(self.directions)
        x, g = z.flatten(1), g_all[:b].flatten(1)
        q_far = rayleigh(x - x.roll(1, 0), g - g.roll(1, 0))
        hinge_far = F.relu(self.kappa - q_far).sum()
        stats = {"q_far_min": q_far.min().item()}
        if len(g_all) == b:
            return hinge_far / ((b + n) * self.kappa), stats
        q_near = ((g_all[b:].flatten(1) - g[:n]) * self.directions.to(z.device)).sum(1) / self.step
        hinge_near = F.relu(self.kappa - q_near).sum()
        stats.update(q_near_min=q_near.min().item(),
                     violated=(torch.cat([q_far, q_near]) < self.kappa).float().mean().item())
        return (hinge_far + near_weight * hinge_near) / ((b + n) * self.kappa), stats


