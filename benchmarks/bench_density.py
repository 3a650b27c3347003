"""What the density weighting of the classification default (dlc) adds to a retrain's scoring.

`information_density` compares every scored task with 500 landmarks drawn from them: its cost
grows with the rows scored, not their square. Measured on random 384-dimensional vectors (the
width of the MiniLM encoders) at several pool sizes, the median of `--repeats` runs, beside
least confidence alone on the same rows. Writes the "density" section of BENCHMARKS.md.

    python -m benchmarks.bench_density [--sizes 10000,50000,100000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from al_core.strategies import draw_landmarks, information_density, least_confidence
from benchmarks.report import machine_line, write_section


def seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,50000,100000")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    for n in [int(s) for s in args.sizes.split(",")]:
        vectors = rng.normal(size=(n, 384)).astype(np.float32)
        probs = rng.dirichlet([1.0, 1.0], n)
        density = seconds(lambda v=vectors: information_density(v, draw_landmarks(v)), args.repeats)
        lc = seconds(lambda p=probs: least_confidence(p), args.repeats)
        rows.append((n, density, lc))
        print(f"{n} rows: density {density:.3f} s, least confidence {lc:.4f} s", flush=True)
    lines = [
        "## Density weighting (dlc): its cost per retrain",
        "",
        machine_line(),
        "",
        "| tasks scored | density (500 landmarks, 384 dims) s | least confidence s | density s per 10,000 tasks |",
        "|---|---|---|---|",
    ]
    for n, density, lc in rows:
        lines.append(f"| {n:,} | {density:.3f} | {lc:.4f} | {density / n * 10_000:.3f} |")
    report = "\n".join(lines) + "\n"
    print(report)
    if not args.no_write:
        write_section("density", report)


if __name__ == "__main__":
    main()
