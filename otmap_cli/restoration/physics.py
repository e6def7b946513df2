"""Forward models y = H x + n of the four restoration tasks, built on deepinv 0.5 physics.

``restore`` inverts exactly what :func:`degrade` simulates, so both go through :func:`make_physics`:

* ``denoise``: H = I.
* ``deblur``: H = convolution with a Gaussian (``blur_sigma``) or user PSF (``kernel``), *reflect*
  padding: photographs are not periodic, and circular padding (the paper's FFT blur) would wrap
  the opposite edge into the border. Its data prox is solved by FFT on the reflect-extended image
  (:class:`~otmap_cli.restoration.reflect_blur.ReflectBlur`), not by deepinv's conjugate gradients.
* ``superres``: H = bicubic anti-alias filter, then decimation by ``scale`` (reflect padding). We model
  bicubic rather than the paper's plain decimation because real small images are made by
  anti-aliased resizing, and Set5-style benchmarks use bicubic down-scaling. For superres
  ``image_size`` is the *high-resolution* size (scale x the input of ``restore``).
* ``inpaint``: H = per-pixel mask, 1 = kept pixel (a mask PNG is white where kept, black where missing).
* ``colorize``: H = Rec. 601 luma, Y = 0.299 R + 0.587 G + 0.114 B (deepinv's ``Decolorize``): y has one
  channel, and every colour image with that luma explains it; the prior picks the colours.

n is Gaussian white noise of std ``noise_sigma``, always in [0, 1] image units; the options are
validated by :mod:`~otmap_cli.restoration.options`. ``deepinv`` is
imported inside the functions: importing it costs seconds and only restore/degrade need it.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from otmap_cli.errors import InputError
from otmap_cli.io import is_grey, read_image
from otmap_cli.restoration.options import TASK_DEFAULTS, finite_number, normalise_kernel, resolve

SR_FILTER = "bicubic"
# Rec. 601 luma weights, given to deepinv's Decolorize: its built-in "rec601" ones sum to 1.00002, and
# keep_luma needs a sum of exactly 1 (grey stays grey; adding d to R, G, B adds d to the luma)
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def luma(rgb: np.ndarray) -> np.ndarray:
    """The (h, w) Rec. 601 luma of an (h, w, 3) image: what ``colorize`` observes and keeps.

    A grey pixel's luma is its grey value exactly: the weighted sum would be off by a rounding (6e-8),
    and a colour photo and its grey version must give ``colorize`` the same observation."""
    rgb = np.asarray(rgb, dtype=np.float32)
    weighted = rgb @ np.asarray(LUMA_WEIGHTS, dtype=np.float32)
    grey = (rgb[..., 0] == rgb[..., 1]) & (rgb[..., 1] == rgb[..., 2])
    return np.where(grey, rgb[..., 0], weighted)


def load_kernel(path: str | Path) -> np.ndarray:
    """Read a PSF from a PNG (or any image; brightness = weight) or a ``.npy`` array, normalised to sum 1."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        if not path.is_file():
            raise InputError(f"{path}: no such file")
        try:
            psf = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: not a readable .npy kernel ({str(exc).splitlines()[0][:100]})") from None
    else:
        psf = read_image(path).rgb
    return normalise_kernel(psf, str(path))


def blur_filter(blur_sigma: float | None, kernel: np.ndarray | None, device: str = "cpu") -> torch.Tensor:
    """The PSF as a (1, 1, k, k) tensor: the given kernel, or an isotropic Gaussian of radius ceil(3 sigma)."""
    if kernel is not None:
        return torch.from_numpy(np.ascontiguousarray(kernel))[None, None].to(device)
    from deepinv.physics.functional.blur import gaussian_blur

    size = 2 * max(1, math.ceil(3 * blur_sigma)) + 1
    # a tuple sigma: a scalar one silently gives a 1-D kernel in deepinv 0.5
    return gaussian_blur(psf_size=(size, size), sigma=(blur_sigma, blur_sigma), device=device)


def mask_tensor(mask: np.ndarray, image_size: tuple[int, int], device: str = "cpu") -> torch.Tensor:
    """A (1, 1, h, w) binary tensor from an (h, w) mask (values > 0.5 are kept pixels)."""
    mask = np.asarray(mask)
    if mask.shape != tuple(image_size):
        found = f"{mask.shape[1]}x{mask.shape[0]}" if mask.ndim == 2 else f"of shape {mask.shape}"
        raise InputError(f"mask is {found} but the image is {image_size[1]}x{image_size[0]}; "
                         "they must have the same size")
    return torch.from_numpy((mask > 0.5).astype(np.float32))[None, None].to(device)


def make_physics(task: str, image_size: tuple[int, int], noise_sigma: float | None = None,
                 blur_sigma: float | None = None, kernel: np.ndarray | None = None, scale: int | None = None,
                 mask: np.ndarray | None = None, device: str = "cpu", rng: torch.Generator | None = None):
    """The deepinv physics of ``task`` for an unknown image of ``image_size`` = (h, w) (high-res for superres).

    ``rng`` seeds the Gaussian noise that ``physics(x)`` adds (``physics.A`` is noise free).
    """
    import deepinv as dinv

    deg = resolve(task, noise_sigma, blur_sigma, kernel, scale)
    h, w = image_size
    noise = dinv.physics.GaussianNoise(sigma=deg.noise_sigma, rng=rng)
    if task == "denoise":
        return dinv.physics.Denoising(noise_model=noise, device=device)
    if task == "deblur":
        psf = blur_filter(deg.blur_sigma, deg.kernel, device)
        if max(psf.shape[-2:]) // 2 >= min(h, w):
            raise InputError(f"a {w}x{h} image is too small for a {psf.shape[-1]}x{psf.shape[-2]} blur kernel")
        from otmap_cli.restoration.reflect_blur import ReflectBlur

        return ReflectBlur(psf, noise_model=noise, device=device)
    if task == "superres":
        if h % deg.scale or w % deg.scale or min(h, w) < 3 * deg.scale:
            raise InputError(f"super-resolution x{deg.scale} needs a high-resolution size that is a multiple of "
                             f"{deg.scale} and at least {3 * deg.scale} px, got {w}x{h}")
        from otmap_cli.restoration.reflect_blur import ReflectDownsampling

        return ReflectDownsampling((3, h, w), SR_FILTER, deg.scale, noise_model=noise, device=device)
    if task == "colorize":
        return dinv.physics.Decolorize(channels=3, srf=list(LUMA_WEIGHTS), noise_model=noise, device=device)
    return dinv.physics.Inpainting(img_size=(3, h, w), mask=mask_tensor(mask, (h, w), device),
                                   noise_model=noise, device=device)


def make_mask(height: int, width: int, mask_ratio: float | None = None,
              box: tuple[int, int, int, int] | None = None, seed: int = 0) -> np.ndarray:
    """Inpainting mask (1 = kept): ``mask_ratio`` of pixels missing at random and/or a missing ``box`` (x, y, w, h)."""
    if mask_ratio is None and box is None:
        mask_ratio = TASK_DEFAULTS["inpaint"]["mask_ratio"]
    mask = np.ones((height, width), dtype=np.float32)
    if mask_ratio is not None:
        ratio = finite_number(mask_ratio, "mask ratio")
        if not 0 <= ratio < 1:
            raise InputError(f"mask ratio (fraction of missing pixels) must be in [0, 1), got {ratio}")
        gen = torch.Generator().manual_seed(seed)
        mask[torch.rand(height, width, generator=gen).numpy() < ratio] = 0
    if box is not None:
        x, y, bw, bh = (int(v) for v in box)
        if bw <= 0 or bh <= 0 or x < 0 or y < 0 or x + bw > width or y + bh > height:
            raise InputError(f"box {x},{y},{bw},{bh} (x,y,w,h) is not inside the {width}x{height} image")
        mask[y:y + bh, x:x + bw] = 0
    return mask


NOISE_PATCH = 8
NOISE_PATCHES = 30_000  # 150 samples per dimension of the 192 x 192 covariance; bounds time on large images


def estimate_noise_sigma(rgb: np.ndarray, mask: np.ndarray | None = None) -> float | None:
    """Std of white Gaussian noise in an (h, w, 3) image in [0, 1], or None when too few clean patches.

    Chen, Zhu, Heng, "An Efficient Statistical Method for Image Noise Level Estimation", ICCV 2015:
    the covariance of all 8 x 8 colour patches has the noise variance as the eigenvalue of every
    direction the image content leaves empty; the largest k for which the mean of the k smallest
    eigenvalues equals their median picks those directions out (Sec. 3, Algorithm 1).
    scikit-image's wavelet-MAD ``estimate_sigma`` mistakes fine texture for noise on clean photos
    (benchmarks/noise_estimate.py has both). ``mask`` (1 = kept) restricts to fully kept patches.
    Grey images (equal channels) use one channel: the copies would add exactly-zero eigenvalues.
    """
    from numpy.lib.stride_tricks import sliding_window_view

    pixels = np.asarray(rgb, dtype=np.float32)
    if is_grey(pixels):
        pixels = pixels[..., :1]
    h, w, c = pixels.shape
    if min(h, w) < NOISE_PATCH:
        return None
    stride = max(1, math.ceil(math.sqrt((h - NOISE_PATCH + 1) * (w - NOISE_PATCH + 1) / NOISE_PATCHES)))
    patches = sliding_window_view(pixels, (NOISE_PATCH, NOISE_PATCH, c))[::stride, ::stride, 0]
    patches = patches.reshape(-1, NOISE_PATCH * NOISE_PATCH * c)
    if mask is not None:
        kept = sliding_window_view(np.asarray(mask) > 0.5, (NOISE_PATCH, NOISE_PATCH))[::stride, ::stride]
        patches = patches[kept.reshape(-1, NOISE_PATCH ** 2).all(axis=1)]
    if len(patches) < 4 * patches.shape[1]:  # a covariance needs several times more samples than dimensions
        return None
    centred = patches.astype(np.float64) - patches.mean(axis=0)
    eigenvalues = np.sort(np.linalg.eigvalsh(centred.T @ centred / len(centred)))
    for k in range(len(eigenvalues), 0, -1):
        smallest = eigenvalues[:k]
        tau = smallest.mean()
        if np.sum(smallest > tau) >= np.sum(smallest < tau):  # mean = median: only noise directions left
            return float(np.sqrt(max(tau, 0.0)))
    return 0.0


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) array -> (1, 3, H, W) float32 tensor."""
    return torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(2, 0, 1)[None]


def to_array(x: torch.Tensor) -> np.ndarray:
    """(1, C, H, W) tensor -> (H, W, C) float32 array."""
    return np.ascontiguousarray(x[0].permute(1, 2, 0).detach().cpu().numpy(), dtype=np.float32)


def degrade(clean_rgb: np.ndarray, task: str, noise_sigma: float | None = None, blur_sigma: float | None = None,
            kernel: np.ndarray | None = None, scale: int | None = None, mask_ratio: float | None = None,
            box: tuple[int, int, int, int] | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
    """Simulate y = H x + n on an (H, W, 3) image in [0, 1]; return y and the inpainting mask (1 = kept) or None.

    For superres the image is first cropped to a multiple of ``scale`` (so that restoring gives
    back exactly that size). y is not clipped to [0, 1]: writing it to a file clips it.
    Missing pixels of inpainting are 0 (black) and carry no noise. The luma of colorize is
    returned as three equal channels (a grey image).
    """
    deg = resolve(task, noise_sigma, blur_sigma, kernel, scale)
    h, w = clean_rgb.shape[:2]
    h, w = h - h % deg.scale, w - w % deg.scale
    mask = make_mask(h, w, mask_ratio, box, seed) if task == "inpaint" else None
    gen = torch.Generator().manual_seed(seed)
    physics = make_physics(task, (h, w), deg.noise_sigma, deg.blur_sigma, deg.kernel, deg.scale, mask, rng=gen)
    with torch.no_grad():
        y = to_array(physics(to_tensor(clean_rgb[:h, :w])))
    return (np.repeat(y, 3, axis=2) if y.shape[2] == 1 else y), mask
