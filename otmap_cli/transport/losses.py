"""Distribution-matching losses between pushed samples T(x) and target samples y.

Since T is a monotone gradient, driving T#mu to nu is all that is needed: the result is the Brenier
map, with no transport-cost term (Chaudhari et al. 2023, Sec. 5). The losses differ in what they
see of the distributions and in cost; the benchmark (benchmarks/recolor.py) measures which fits best.

* ``sliced``   sliced Wasserstein-2 (Rabin et al. 2011; ``sliced.py``, also in NumPy);
* ``sinkhorn`` debiased Sinkhorn divergence S_eps (Feydy et al., AISTATS 2019, Eq. 4);
* ``mmd``      MMD with the energy-distance kernel -|x - y| (Sejdinovic et al. 2013), scale-free;
* ``wgan``     WGAN-GP critic (Gulrajani et al. 2017), the 2025 MVA course project's favourite;
* ``gaussian`` KL between the Gaussians fitted to both samples: aligns mean and covariance only, a
  documented baseline (it cannot beat the closed-form Gaussian map).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from otmap_cli.choices import LOSSES
from otmap_cli.transport.sliced import SlicedWasserstein



class DistributionLoss:
    """A loss ``loss(pushed, target)``; ``update(pushed, target)`` trains any adversary first."""

    def update(self, pushed: torch.Tensor, target: torch.Tensor) -> None:
        """Adversarial losses train their critic here; the others have nothing to do."""

    def __call__(self, pushed: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class SinkhornDivergence(DistributionLoss):
    """S_eps(a, b) = OT_eps(a, b) - OT_eps(a, a)/2 - OT_eps(b, b)/2 in the log domain.

    The dual potentials are found without autograd (fixed number of symmetric iterations with
    eps-annealing, Feydy et al. 2019, Sec. 3.2); the loss is then the dual objective evaluated with
    one differentiable soft-min step, whose gradient is the envelope-theorem gradient. POT's
    ``empirical_sinkhorn_divergence`` backpropagates through its iterations and was ~100x slower here.
    """

    def __init__(self, blur: float = 0.02, iterations: int = 30):
        self.eps = blur**2
        self.iterations = iterations

    def _potential(self, x: torch.Tensor, y: torch.Tensor, g: torch.Tensor, eps: float) -> torch.Tensor:
        cost = torch.cdist(x, y).pow(2) / 2
        return -eps * torch.logsumexp((g[None, :] - cost) / eps, dim=1) + eps * math.log(y.shape[0])

    def _ot(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            f = torch.zeros(len(x), dtype=x.dtype, device=x.device)
            g = torch.zeros(len(y), dtype=x.dtype, device=x.device)
            for i in range(self.iterations):
                eps = max(self.eps, 0.5 ** i)
                f_new = self._potential(x, y, g, eps)
                g = 0.5 * (g + self._potential(y, x, f, eps))
                f = 0.5 * (f + f_new)
        f = self._potential(x, y, g, self.eps)
        g = self._potential(y, x, f.detach(), self.eps)
        return f.mean() + g.mean()

    def __call__(self, pushed, target):
        return self._ot(pushed, target) - 0.5 * self._ot(pushed, pushed)


class EnergyMMD(DistributionLoss):
    def __call__(self, pushed, target):
        def mean_dist(a, b):
            return (torch.cdist(a, b).pow(2) + 1e-10).sqrt().mean()

        return 2 * mean_dist(pushed, target) - mean_dist(pushed, pushed) - mean_dist(target, target)


class GaussianKL(DistributionLoss):
    """KL(N(m_p, S_p) || N(m_t, S_t)), closed form."""

    def __call__(self, pushed, target):
        def stats(z):
            mean = z.mean(0)
            centred = z - mean
            return mean, centred.T @ centred / (len(z) - 1) + 1e-6 * torch.eye(z.shape[1], device=z.device)

        m_p, s_p = stats(pushed)
        m_t, s_t = stats(target.detach())
        inv_t = torch.linalg.inv(s_t)
        diff = m_t - m_p
        return 0.5 * (torch.trace(inv_t @ s_p) + diff @ inv_t @ diff - pushed.shape[1]
                      + torch.logdet(s_t) - torch.logdet(s_p))


class WassersteinGP(DistributionLoss):
    """Critic f maximises E f(y) - E f(T x) - lambda E(|grad f| - 1)^2; the map minimises -E f(T x)."""

    def __init__(self, dim: int, width: int = 64, critic_steps: int = 3, gp_weight: float = 10.0,
                 lr: float = 5e-3, seed: int = 0):
        torch.manual_seed(seed)
        self.critic = nn.Sequential(nn.Linear(dim, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU(),
                                    nn.Linear(width, 1))
        self.optimizer = torch.optim.Adam(self.critic.parameters(), lr=lr, betas=(0.5, 0.9))
        self.critic_steps, self.gp_weight = critic_steps, gp_weight

    def update(self, pushed, target):
        self.critic.to(pushed.device)
        pushed = pushed.detach()
        for _ in range(self.critic_steps):
            mix = torch.rand(len(pushed), 1, device=pushed.device)
            between = (mix * pushed + (1 - mix) * target[: len(pushed)]).requires_grad_(True)
            grad = torch.autograd.grad(self.critic(between).sum(), between, create_graph=True)[0]
            penalty = (grad.norm(dim=1) - 1).pow(2).mean()
            loss = self.critic(pushed).mean() - self.critic(target).mean() + self.gp_weight * penalty
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()

    def __call__(self, pushed, target):
        return self.critic(target).mean().detach() - self.critic(pushed).mean()


def make_loss(name: str, dim: int, seed: int = 0) -> DistributionLoss:
    if name == "sliced":
        return SlicedWasserstein(seed=seed)
    if name == "sinkhorn":
        return SinkhornDivergence()
    if name == "mmd":
        return EnergyMMD()
    if name == "wgan":
        return WassersteinGP(dim, seed=seed)
    if name == "gaussian":
        return GaussianKL()
    raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
