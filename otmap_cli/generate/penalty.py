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

    def inputs(self, z: torch.Tensor) -> torch.Tensor:
        """The batch with its near partners appended: G is evaluated once on both."""
        n = len(self.directions)
        near = z[:n] + self.step * self.directions.to(z.device).view(n, *z.shape[1:])
        return torch.cat([z, near])

    def __call__(self, z: torch.Tensor, g_all: torch.Tensor) -> tuple[torch.Tensor, dict]:
        b, n = len(z), len(self.directions)
        x, g = z.flatten(1), g_all[:b].flatten(1)
        q_far = rayleigh(x - x.roll(1, 0), g - g.roll(1, 0))
        q_near = ((g_all[b:].flatten(1) - g[:n]) * self.directions.to(z.device)).sum(1) / self.step
        q = torch.cat([q_far, q_near])
        penalty = F.relu(self.kappa - q).mean() / self.kappa
        stats = {"q_far_min": q_far.min().item(), "q_near_min": q_near.min().item(),
                 "violated": (q < self.kappa).float().mean().item()}
        return penalty, stats


