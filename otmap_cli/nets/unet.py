"""A small, fully-convolutional, time-conditioned U-Net for CPU training.

Design choices (see ``models/flow_natural.md`` for the measurements behind them):

* pixel-unshuffle x2 at the input and pixel-shuffle x2 at the output, so every convolution runs at
  half resolution or less (nearly twice the steps per minute on CPU for the same depth);
* residual blocks with GroupNorm and FiLM time conditioning (scale/shift from a sinusoidal
  embedding of the noise level), no attention, no BatchNorm;
* reflect padding to a multiple of the total down-sampling factor and a crop back, so any H x W
  image works.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from otmap_cli.weights import Number, NumberList


def sinusoidal_embedding(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Transformer-style Fourier features of a scalar per sample (shape [B] -> [B, dim])."""
    half = dim // 2
    freqs = torch.exp(-math.log(1000.0) * torch.arange(half, device=x.device, dtype=torch.float32) / half)
    angles = x.float()[:, None] * freqs[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class ResBlock(nn.Module):
    """GroupNorm -> SiLU -> conv, FiLM from the time embedding, GroupNorm -> SiLU -> conv, skip."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(min(8, c_in), c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.film = nn.Linear(emb_dim, 2 * c_out)
        self.norm2 = nn.GroupNorm(min(8, c_out), c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(F.silu(h))
        return self.skip(x) + h


class TimeUNet(nn.Module):
    """U-Net F(x, c_noise) -> residual image; ``channels`` gives the width at each level."""

    CONFIG_FIELDS = {"in_channels": Number(int, 1, 64), "channels": NumberList(Number(int, 1, 4096), 1, 8),
                     "blocks": Number(int, 1, 16), "emb_dim": Number(int, 2, 8192)}

    def __init__(self, in_channels: int = 3, channels: tuple[int, ...] = (48, 96, 192), blocks: int = 2,
                 emb_dim: int = 128):
        super().__init__()
        self.config = {"in_channels": in_channels, "channels": list(channels), "blocks": blocks,
                       "emb_dim": emb_dim}
        self.emb_dim = emb_dim
        self.factor = 2 * 2 ** (len(channels) - 1)
        self.time_mlp = nn.Sequential(nn.Linear(emb_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.stem = nn.Conv2d(4 * in_channels, channels[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        c_prev = channels[0]
        for level, c in enumerate(channels):
            self.down.append(nn.ModuleList([ResBlock(c_prev if i == 0 else c, c, emb_dim) for i in range(blocks)]))
            c_prev = c
            if level < len(channels) - 1:
                self.downsample.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
        self.mid = ResBlock(channels[-1], channels[-1], emb_dim)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for level in reversed(range(len(channels))):
            c = channels[level]
            self.up.append(nn.ModuleList([ResBlock((c_prev + c) if i == 0 else c, c, emb_dim) for i in range(blocks)]))
            c_prev = c
            if level > 0:
                self.upsample.append(nn.Conv2d(c, channels[level - 1], 3, padding=1))
                c_prev = channels[level - 1]
        self.head_norm = nn.GroupNorm(8, channels[0])
        self.head = nn.Conv2d(channels[0], 4 * in_channels, 3, padding=1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        h_in, w_in = x.shape[-2:]
        pad_h, pad_w = (-h_in) % self.factor, (-w_in) % self.factor
        if pad_h or pad_w:
            mode = "reflect" if min(h_in, w_in) > max(pad_h, pad_w) else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        emb = self.time_mlp(sinusoidal_embedding(c_noise, self.emb_dim))
        h = self.stem(F.pixel_unshuffle(x, 2))
        skips = []
        for level, blocks in enumerate(self.down):
            for block in blocks:
                h = block(h, emb)
            skips.append(h)
            if level < len(self.downsample):
                h = self.downsample[level](h)
        h = self.mid(h, emb)
        for i, blocks in enumerate(self.up):
            h = torch.cat([h, skips.pop()], dim=1)
            for block in blocks:
                h = block(h, emb)
            if i < len(self.upsample):
                h = self.upsample[i](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        out = F.pixel_shuffle(self.head(F.silu(self.head_norm(h))), 2)
        return out[..., :h_in, :w_in]
