"""Drawing digits from a generator: seeded samples and slerp walks, the same on every device."""

from __future__ import annotations

from typing import Iterator

import torch
from torch import nn

from otmap_cli.errors import InputError
from otmap_cli.generate.mnist import to_uint8
from otmap_cli.generate.models import load_generator, slerp, source_noise
from otmap_cli.weights import shipped_model

GENERATOR_FILE = "brenier_mnist.safetensors"  # the shipped generator, in models/


def default_generator(device: str = "cpu") -> nn.Module:
    """The shipped Brenier generator ``models/brenier_mnist.safetensors``."""
    return load_generator(shipped_model(GENERATOR_FILE), device)


def noise_draws(generator: nn.Module, n: int, seed: int) -> torch.Tensor:
    """The noise behind ``sample(generator, n, seed)``, drawn on the CPU: the same samples on every device."""
    standard = torch.randn((n, *generator.noise_shape), generator=torch.Generator().manual_seed(seed))
    return source_noise(generator, standard)


def sample_batches(generator: nn.Module | None, n: int, seed: int = 0, device: str = "cpu",
                   batch: int = 500) -> Iterator[torch.Tensor]:
    """:func:`sample` in batches of ``batch`` images (uint8), for any ``n`` in bounded memory.

    The noise comes from one seeded stream, so the images are those of ``sample(generator, n, seed)``.
    """
    generator = default_generator(device) if generator is None else generator
    stream = torch.Generator().manual_seed(seed)
    for start in range(0, n, batch):
        z = torch.randn((min(batch, n - start), *generator.noise_shape), generator=stream)
        yield _generate(generator, source_noise(generator, z), device, batch)


def _generate(generator: nn.Module, z: torch.Tensor, device: str, batch: int) -> torch.Tensor:
    generator = generator.to(device).eval()
    with torch.no_grad():
        return torch.cat([to_uint8(generator(chunk.to(device))).cpu() for chunk in z.split(batch)])


def sample(generator: nn.Module | None, n: int = 64, seed: int = 0, device: str = "cpu",
           batch: int = 500) -> torch.Tensor:
    """n images as uint8 n x 28 x 28, reproducible for a given seed; ``generator`` None = the shipped one.

        >>> digits = sample(None, 16, seed=3)  # doctest: +SKIP
    """
    generator = default_generator(device) if generator is None else generator
    return _generate(generator, noise_draws(generator, n, seed), device, batch)


def interpolate(generator: nn.Module | None, steps: int, seed: int = 0, device: str = "cpu") -> torch.Tensor:
    """A walk of ``steps`` images (uint8) between two noise draws, along the great circle (slerp)."""
    if steps < 2:
        raise InputError("an interpolation needs at least 2 steps")
    generator = default_generator(device) if generator is None else generator
    ends = torch.randn((2, *generator.noise_shape), generator=torch.Generator().manual_seed(seed))
    path = slerp(ends[0], ends[1], torch.linspace(0, 1, steps))  # on the standard normal's sphere
    return _generate(generator, source_noise(generator, path), device, steps)


