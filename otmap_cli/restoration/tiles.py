"""Bounded memory on large images: the whole PnP-Flow solve runs per overlapping tile, then tiles are blended.

PnP-Flow's data term is global, but every operator we use is local: a pixel of y depends only on
the pixels of x within the kernel radius (deblur), the bicubic support of 2 low-resolution pixels
(superres), or itself (denoise, inpaint). So a tile of y with tile-local physics (reflect padding at
its edges, the mask cropped) is solved exactly except in a border band, whose width ``margin`` the
caller sets to that reach plus :data:`NET_MARGIN` for the network's context. Tiles overlap by
2 * margin + blend: each tile's weight is 0 on its inner ``margin`` band, then rises as sin^2 over
``blend`` pixels, so that neighbouring weights sum to one (sin^2 + cos^2) and no pixel is taken
from a tile's unreliable border. Edges on the image border are exact (the full problem is reflect
padded too) and get full weight.

Tiling starts above :data:`TILE_PIXELS` output pixels (512 x 512, where the solver's peak memory is
a few hundred MB on CPU); tiles are about :data:`TILE` output pixels wide, evened out so that the
last one is not a sliver. Peak memory is then one tile's solve plus the output accumulators.
Each tile is solved independently, so a large inpainting hole that spans tiles is filled
separately in each and cross-faded.
"""

from __future__ import annotations

import math
from itertools import product
from typing import Callable

import torch

TILE_PIXELS = 512 * 512
TILE = 512
NET_MARGIN = 16
BLEND = 16

Box = tuple[int, int, int, int]  # rows r0:r1, columns c0:c1 of y


def spans(length: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """Evenly spaced [start, stop) intervals of at most ``tile`` covering ``length``, overlapping by >= ``overlap``."""
    if length <= tile:
        return [(0, length)]
    count = math.ceil((length - overlap) / (tile - overlap))
    size = math.ceil((length - overlap) / count) + overlap
    starts = [i * (length - size) // (count - 1) for i in range(count)]
    return [(start, start + size) for start in starts]


def ramp(start: int, stop: int, length: int, margin: int, blend: int, scale: int) -> torch.Tensor:
    """1-D weight of the output pixels of [start, stop): 0 on the inner ``margin`` band, sin^2 rise over ``blend``."""
    pos = torch.arange(scale * (stop - start), dtype=torch.float32) + 0.5
    weight = torch.ones_like(pos)
    for inner, dist in ((start > 0, pos), (stop < length, scale * (stop - start) - pos)):
        if inner:
            rise = ((dist - scale * margin) / (scale * blend)).clamp(0, 1)
            weight *= torch.sin(math.pi / 2 * rise) ** 2
    return weight


def tiled(y: torch.Tensor, scale: int, margin: int, solve: Callable[[Box, int, int], torch.Tensor], *,
          tile_pixels: int = TILE_PIXELS, tile: int = TILE, blend: int = BLEND) -> torch.Tensor:
    """Blend ``solve(box, index, count)``, the ``scale`` x larger restoration of ``y[..., box]``, over tiles of y."""
    h, w = y.shape[-2:]
    if scale * scale * h * w <= tile_pixels:
        return solve((0, h, 0, w), 0, 1)
    overlap = 2 * margin + blend
    side = max(tile // scale, 2 * overlap)
    boxes = [(r0, r1, c0, c1) for (r0, r1), (c0, c1) in product(spans(h, side, overlap), spans(w, side, overlap))]
    out = None  # allocated from the first tile: colorize turns one channel into three
    total = torch.zeros(1, 1, scale * h, scale * w)
    for index, (r0, r1, c0, c1) in enumerate(boxes):
        part = solve((r0, r1, c0, c1), index, len(boxes)).cpu()
        if out is None:
            out = torch.zeros(y.shape[0], part.shape[1], scale * h, scale * w)
        weight = ramp(r0, r1, h, margin, blend, scale)[:, None] * ramp(c0, c1, w, margin, blend, scale)[None, :]
        rows, cols = slice(scale * r0, scale * r1), slice(scale * c0, scale * c1)
        out[..., rows, cols] += part * weight
        total[..., rows, cols] += weight
    return out / total
