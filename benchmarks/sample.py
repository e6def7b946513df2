"""The evaluation table of issue 4 for MNIST generators, calibrated with real, noisy-real and Gaussian rows.

    PYTHONPATH=. python benchmarks/sample.py --data ../shared/data/mnist \\
        --generator brenier=models/brenier_mnist.safetensors \\
        --generator icnn=runs/icnn/generator.safetensors --generator dcgan=runs/dcgan/generator.safetensors \\
        --generator cmgn=runs/cmgn/generator.safetensors --convexity 1000 --grids bench_out/

Every row scores ``--n`` images (2000) in the features of our classifier
(``models/mnist_classifier.safetensors``) against the MNIST test set: FLD against test images
0-4999, precision/recall (k = 3) against test images 0-(n-1), confidence, class entropy, and the
memorisation check against all 60 000 training images. ``--decompose`` takes a decoder-potential map apart
(which part draws the digit). ``--transport`` adds, for generators whose noise
lives in image space, the W2 sense of "optimal" (issue 13): the mean squared displacement
|G(x) - x|^2 / 784 of the images a user gets (clipped to [-1, 1]) from their own noise draws, and its ratio
to the least mean displacement of any pairing of the same draws with the same images (the exact discrete
OT cost, POT ``ot.emd2``): 1.00 means the generator pairs noise and images as an optimal transport map
does; a larger number, that another pairing would move the noise less. Calibration rows: ``real`` (test images
5000-(5000+n-1), which no reference row contains), ``noisy real`` (the same + N(0, 0.1^2) in [0, 1]
units), ``PCA-Gaussian`` (the closed-form Brenier map, fitted to the training set) and its rank-64
version (the starting point of a generator on OTM-style lifted noise). Sampling time is the wall
time of 1000 samples at ``--threads``; time it while no training runs, or say that one did.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import numpy as np
import torch

from otmap_cli.generate import metrics
from otmap_cli.generate.convexity import check_convexity
from otmap_cli.generate.sampling import noise_draws, sample
from otmap_cli.generate.classifier import classify, load_classifier
from otmap_cli.generate.mnist import image_grid, load_mnist, save_png, to_unit
from otmap_cli.generate.models import IMAGE_NOISE, GaussianGenerator, count_parameters, load_generator
from otmap_cli.weights import models_dir

REFERENCE_FLD = 5000
NOISE_SIGMA = 0.1
LIFTED_RANK = 64


def score(images: torch.Tensor, classifier, reference: np.ndarray, reference_pr: np.ndarray,
          train: torch.Tensor, test_baseline: torch.Tensor) -> dict:
    feats, probs = classify(classifier, images)
    precision, recall = metrics.precision_recall(reference_pr, feats, k=3)
    memo = metrics.memorisation(images, train, test_baseline)
    return {"fld": metrics.frechet_distance(feats, reference), "precision": precision, "recall": recall,
            "confidence": metrics.confidence(probs), "entropy": metrics.class_entropy(probs.argmax(1)),
            "nn_ratio": memo["ratio"], "copied": memo["copied"]}


def transport(generator, images: torch.Tensor, seed: int) -> dict:
    """Mean |G(x) - x|^2 / 784 of the scored images against their noise, and its ratio to the OT cost."""
    import ot

    noise = noise_draws(generator, len(images), seed).flatten(1).double()
    mapped = to_unit(images).flatten(1).double()
    displacement = (mapped - noise).pow(2).sum(1).mean().item() / noise.shape[1]
    cost = torch.cdist(noise, mapped).pow(2).numpy() / noise.shape[1]
    uniform = np.full(len(images), 1 / len(images))
    return {"displacement": displacement, "optimality": displacement / ot.emd2(uniform, uniform, cost)}


def decompose(generator, seed: int, n: int = 256) -> dict | None:
    """rms per pixel of each part of a decoder-potential map G = alpha x + V^T V x + b + gated image + code
    term (``DecoderPotential``), the mean of b, and the share of output pixels outside [-1, 1] (clipped):
    which part draws the digit. None for other generators."""
    potential = getattr(generator, "potential", None)
    if not hasattr(potential, "decode"):
        return None
    x = noise_draws(generator, n, seed).requires_grad_(True)
    (grad_psi,) = torch.autograd.grad(potential(x).sum(), x)
    with torch.no_grad():
        flat, grad_psi = x.flatten(1), grad_psi.flatten(1)
        gated = potential.gain * torch.sigmoid(potential.noise_scale * flat + potential.decode(
            potential.code_of(x)).flatten(1))
        affine = generator.alpha * flat + generator._affine_output((generator._affine_input(flat) @ generator.V.T)
                                                                    @ generator.V)
        output = affine + generator.bias + grad_psi

    def rms(t: torch.Tensor) -> float:
        return t.pow(2).mean().sqrt().item()

    return {"affine_rms": rms(affine), "gated_rms": rms(gated), "code_term_rms": rms(grad_psi - gated),
            "bias_mean": generator.bias.mean().item(), "clipped": (output.abs() > 1).float().mean().item()}


def timed_samples(generator, n: int, seed: int) -> tuple[torch.Tensor, float]:
    """n samples for scoring, and the wall time of 1000 others (after a warm-up call)."""
    sample(generator, 8, seed=seed)
    start = time.perf_counter()
    sample(generator, 1000, seed=seed + 1)
    return sample(generator, n, seed=seed), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder of the four MNIST idx files")
    parser.add_argument("--classifier", type=Path, default=models_dir() / "mnist_classifier.safetensors")
    parser.add_argument("--generator", action="append", default=[], metavar="NAME=PATH")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--convexity", type=int, default=0, metavar="POINTS",
                        help="also estimate the smallest Hessian eigenvalue at POINTS noise draws (slow)")
    parser.add_argument("--transport", action="store_true",
                        help="also the mean displacement |G(x) - x|^2 / 784 and its ratio to the OT cost")
    parser.add_argument("--decompose", action="store_true",
                        help="also the rms of each part of a decoder-potential map and its clipped share")
    parser.add_argument("--grids", type=Path, help="write an 8 x 8 grid per row into this folder")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    train, _ = load_mnist(args.data, "train")
    test, _ = load_mnist(args.data, "test")
    classifier = load_classifier(args.classifier)
    reference = classify(classifier, test[:REFERENCE_FLD])[0]
    reference_pr = reference[:args.n]
    held_out = test[REFERENCE_FLD:REFERENCE_FLD + args.n]
    noise = torch.randn(held_out.shape, generator=torch.Generator().manual_seed(args.seed)) * NOISE_SIGMA * 255
    rows: list[tuple[str, torch.Tensor, dict]] = [
        ("real (test images)", held_out, {}),
        (f"noisy real (sigma {NOISE_SIGMA})", (held_out.float() + noise).clamp(0, 255).round().to(torch.uint8), {})]
    units = to_unit(train)
    generators = [("PCA-Gaussian map", GaussianGenerator.fit(units)),
                  (f"PCA-Gaussian, rank {LIFTED_RANK} (lifted noise)", GaussianGenerator.fit(units, LIFTED_RANK))]
    generators += [(spec.split("=", 1)[0], load_generator(spec.split("=", 1)[1])) for spec in args.generator]
    for name, generator in generators:
        images, seconds = timed_samples(generator, args.n, args.seed)
        extra = {"params": count_parameters(generator), "seconds_1000": seconds}
        if args.convexity and tuple(generator.noise_shape) == IMAGE_NOISE:
            report = check_convexity(generator, n_points=args.convexity)
            extra.update(min_eigenvalue=report.min_eigenvalue, negative_points=report.negative_points,
                         violated_pairs=report.violated_pairs)
        if args.transport and tuple(generator.noise_shape) == IMAGE_NOISE:
            extra.update(transport(generator, images, args.seed))
        if args.decompose and (parts := decompose(generator, args.seed)) is not None:
            extra.update(parts)
        rows.append((name, images, extra))

    table = []
    for name, images, extra in rows:
        record = {"model": name, **score(images, classifier, reference, reference_pr, train, held_out), **extra}
        table.append(record)
        if args.grids:
            slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
            save_png(image_grid(images[:64].numpy(), 8), args.grids / f"{slug}.png")
    header = ("| model | params | FLD | precision | recall | confidence | class entropy | NN-dist ratio | copied "
              "| 1000 samples (s) |" + (" min eig Hess phi | negative points | violated pairs |" if args.convexity else "")
              + (" displacement | x optimal |" if args.transport else ""))
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for r in table:
        cells = [r["model"], f"{r['params'] / 1e6:.2f} M" if "params" in r else "-", f"{r['fld']:.2f}",
                 f"{r['precision']:.3f}", f"{r['recall']:.3f}", f"{r['confidence']:.3f}", f"{r['entropy']:.3f}",
                 f"{r['nn_ratio']:.2f}", f"{r['copied']:.3f}",
                 f"{r['seconds_1000']:.2f}" if "seconds_1000" in r else "-"]
        if args.convexity:
            cells += [f"{r['min_eigenvalue']:.4f}" if "min_eigenvalue" in r else "-",
                      str(r.get("negative_points", "-")), str(r.get("violated_pairs", "-"))]
        if args.transport:
            cells += [f"{r['displacement']:.3f}" if "displacement" in r else "-",
                      f"{r['optimality']:.4f}" if "optimality" in r else "-"]
        print("| " + " | ".join(cells) + " |")
    if args.decompose:
        print("\n| model | affine part (rms) | gated image (rms) | code term (rms) | mean b | output clipped |")
        print("|---|---|---|---|---|---|")
        for r in (r for r in table if "gated_rms" in r):
            print(f"| {r['model']} | {r['affine_rms']:.2f} | {r['gated_rms']:.2f} | {r['code_term_rms']:.2f} "
                  f"| {r['bias_mean']:.2f} | {100 * r['clipped']:.0f} % |")
    if args.json:
        args.json.write_text(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
