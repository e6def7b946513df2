"""How ``transport.lut.map_colours`` finds the distinct 8-bit colours of an image and each pixel's slot.

Three ways, timed side by side in one process on one thread (best of 3), on a photo resized to each
size: ``np.unique(..., return_inverse=True)`` (a sort), a ``np.bincount`` over all 2^24 colours, and
a boolean presence table with an uninitialised slot table (what ``map_colours`` uses from 2^18 pixels
on). All three must give the same colours and slots; the script checks it.

    python benchmarks/distinct_colours.py
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from PIL import Image

from otmap_cli.transport.lut import _eight_bit_codes

PHOTO = Path(__file__).resolve().parents[1] / "samples" / "day.jpg"
SIZES = {"0.25 MP": (500, 500), "0.5 MP": (816, 612), "1 MP": (1155, 866), "2 MP (1080p)": (1920, 1080),
         "12 MP": (4000, 3000)}


def by_sorting(codes):
    return np.unique(codes, return_inverse=True)


def by_counting(codes):
    present = np.flatnonzero(np.bincount(codes, minlength=1 << 24)).astype(np.int32)
    slot = np.zeros(1 << 24, dtype=np.int32)
    slot[present] = np.arange(len(present), dtype=np.int32)
    return present, slot[codes]


def by_presence(codes):
    seen = np.zeros(1 << 24, dtype=bool)
    seen[codes] = True
    present = np.flatnonzero(seen).astype(np.int32)
    slot = np.empty(1 << 24, dtype=np.int32)
    slot[present] = np.arange(len(present), dtype=np.int32)
    return present, slot[codes]


def best_of(function, codes, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function(codes)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    photo = Image.open(PHOTO).convert("RGB")
    print("| image | pixels | distinct colours | np.unique s | bincount s | presence table s |")
    print("|---|---|---|---|---|---|")
    for name, size in SIZES.items():
        rgb = np.asarray(photo.resize(size, Image.BICUBIC), dtype=np.float32) / 255
        codes = _eight_bit_codes(rgb.reshape(-1, 3), 1 << 20)
        reference = by_sorting(codes)
        for method in (by_counting, by_presence):
            present, slots = method(codes)
            assert np.array_equal(present, reference[0]) and np.array_equal(slots, reference[1].ravel()), method
        print(f"| {name} | {len(codes):,} | {len(reference[0]):,} | {best_of(by_sorting, codes):.3f} | "
              f"{best_of(by_counting, codes):.3f} | {best_of(by_presence, codes):.3f} |", flush=True)


if __name__ == "__main__":
    main()
