"""A frozen head's fit (the logistic regression of every frozen and refresh round) against its
labeled rows, with numpy's BLAS on one thread (as al_core.models.heads fits it) and on every core,
on an idle machine and beside a fine-tune (a thread of torch matrix products on every core, as the
background lane's fine-tune holds them while the refresh rounds run).

  python -m benchmarks.bench_head_fit [--set agnews] [--sizes 100,300,500,1000,2000] [--repeats 5]
                                      [--model PATH]

Rows: the pretrained encoder's mean-pooled vectors of the set's texts and their gold labels (the
project's own frozen model computes them). Per size: the median time of `--repeats` fits each
way, their ratio, and the largest difference between the two fits' coefficients. The figures go
into BENCHMARKS.md, section head-fit.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np

from al_core.config import TrainingConfig
from al_core.models import build_model
from al_core.models.heads import HEAD_C, fit_logistic_regression
from benchmarks.bench_backend import MODELS, timed_calls
from benchmarks.bench_saving import load_set
from benchmarks.report import machine_line, write_section


@contextmanager
def fine_tune_load():
    """Torch matrix products on every core in a thread until the block ends (a fine-tune's load)."""
    import torch

    stop = threading.Event()

    def spin() -> None:
        a = torch.randn(512, 512)
        while not stop.is_set():
            a = torch.tanh(a @ a.T / 512)

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", default="agnews")
    parser.add_argument("--sizes", default="100,300,500,1000,2000")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model", default=str(MODELS / "minilm-l6"))
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    data = load_set(args.set, max(sizes), 10)
    examples = data.pool[: max(sizes)]
    started = time.time()
    model = build_model(data.kind, args.model, data.labels, TrainingConfig(), "frozen")
    vectors = np.stack(model.vectors(examples))
    index = {label: i for i, label in enumerate(data.labels)}
    targets = np.array([index[e.label] for e in examples])
    embed_s = time.time() - started
    cores = os.cpu_count() or 1

    def fit(n: int, threads: int):
        return fit_logistic_regression(vectors[:n], targets[:n], HEAD_C, 0, None, blas_threads=threads)

    def median_ms(n: int, threads: int) -> float:
        return statistics.median(timed_calls(lambda: fit(n, threads), args.repeats))

    rows = [
        "| rows | idle: one thread | idle: every core | ratio | beside a fine-tune: one thread | every core | ratio "
        "| largest coefficient difference |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n in sizes:
        cells = []
        for busy in (False, True):
            with fine_tune_load() if busy else nullcontext():
                one, every = median_ms(n, 1), median_ms(n, cores)
            cells += [f"{one:.0f} ms", f"{every:.0f} ms", f"{every / one:.1f}"]
        difference = float(np.abs(fit(n, 1).coef_ - fit(n, cores).coef_).max())
        rows.append(f"| {n} | " + " | ".join(cells) + f" | {difference:.1e} |")
    text = "\n".join([
        "## head-fit",
        "",
        machine_line(),
        f"{Path(args.model).name}, {args.set}: the pretrained encoder's mean-pooled vectors of {max(sizes)} texts "
        f"({vectors.shape[1]} numbers each, computed in {embed_s:.0f} s) and their gold labels; a logistic "
        f"regression (C {HEAD_C}, {len(data.labels)} classes) on the first rows, numpy's BLAS on one thread (as "
        f"the heads fit) and on all {cores} cores; median of {args.repeats} fits; beside a fine-tune: a thread of "
        "torch matrix products on every core meanwhile.",
        "",
        *rows,
    ])
    if not args.no_write:
        write_section("head-fit", text)
    print(text, flush=True)


if __name__ == "__main__":
    main()
