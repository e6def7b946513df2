"""Held-out FLD against CPU minutes for MNIST generator runs: the equal-budget comparison of issue 13.

    python benchmarks/generator_budget.py --run dcgan=runs/eq_dcgan --run brenier=runs/bB \\
        --run "convex decoder=runs/eq_icnn" --plot benchmarks/results/generator_budget.png

Each run's ``log.jsonl`` (written by ``otmap train brenier`` at every checkpoint) holds the FLD of 2 000
EMA samples against the 2 000 held-out training images and the wall minutes of the run; with one
training thread that is its CPU time. The table prints the FLD of every run at the checkpoint
nearest each ``--every`` minutes; the plot draws them all. Test-set scores of the final weights come
from ``benchmarks/sample.py``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def read_curve(run_dir: Path) -> list[tuple[float, float]]:
    """(elapsed minutes, held-out FLD) at each logged checkpoint that scored one."""
    records = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines() if line.strip()]
    return [(r["elapsed_min"], r["fld"]) for r in records if "fld" in r]


def nearest(curve: list[tuple[float, float]], minutes: float, within: float = 2.5) -> str:
    """The FLD of the checkpoint nearest ``minutes``, if one lies ``within`` minutes of it."""
    gap, fld = min((abs(m - minutes), fld) for m, fld in curve)
    return f"{fld:.1f}" if gap <= within else "-"


def plot(curves: dict[str, list[tuple[float, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, curve in curves.items():
        ax.plot(*zip(*curve), marker="o", ms=3, label=name)
    ax.set_yscale("log")
    ax.set_xlabel("CPU minutes (one training thread)")
    ax.set_ylabel("FLD, 2 000 samples vs held-out MNIST")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", required=True, metavar="NAME=RUN_DIR")
    parser.add_argument("--every", type=float, default=10.0, help="table rows every this many minutes")
    parser.add_argument("--plot", type=Path, help="write the curves to this PNG")
    args = parser.parse_args()
    curves = {spec.split("=", 1)[0]: read_curve(Path(spec.split("=", 1)[1])) for spec in args.run}
    longest = max(m for curve in curves.values() for m, _ in curve)
    print("| CPU minutes | " + " | ".join(curves) + " |")
    print("|---|" + "---|" * len(curves))
    minutes = args.every
    while minutes <= longest + 2.5:  # the last row may end just short of a round minute
        print(f"| {minutes:g} | " + " | ".join(nearest(c, minutes) for c in curves.values()) + " |")
        minutes += args.every
    if args.plot:
        plot(curves, args.plot)


if __name__ == "__main__":
    main()
