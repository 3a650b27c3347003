"""UPS against full scoring, and a cheap AL run against a standard one, measured side by side.

1. Pool scoring on the IMDb training pool (25,000 reviews by default): an acquisition model
   trained on a 1% seed scores the whole pool once (a full-scoring iteration) and then a UPS
   iteration (gamma 0.1, T 0.01) re-scores only its subset, both through al_core.loop.run_round.
   Whole-run pool-scoring time is projected from these two measured iterations for the paper's
   schedule (15 iterations, full scoring at 0, 1, 4, 8).
2. Whole AL run at a reduced scale (stated in the output): a teacher-size acquisition model
   with full scoring against a distilled one with UPS, through the simulator's runner; the AL
   time is acquisition training + pool inference + selection over all iterations.

Writes the "ups" (scoring) and "ups-run" (whole run) sections of BENCHMARKS.md. Needs the real models (fetch-models.sh) and
../shared/data. Run: .venv/bin/python -m benchmarks.bench_ups [--pool-size N] ...
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.report import machine_line, write_section

MODELS = Path.home() / ".cache" / "al-models"


def scoring_benchmark(args) -> dict:
    from al_core.data import Example
    from al_core.loop import run_round
    from al_core.models import build_model
    from al_core.strategies import get_strategy
    from al_core.training import TrainingConfig
    from al_core.ups import InMemoryScoreCache, PoolSubsampler, SubsamplingConfig
    from simulate.datasets import shared_dataset

    data = shared_dataset("imdb", "train")
    examples = data.examples[: args.pool_size]
    gold = {e.id: e for e in examples}
    pool = [Example(id=e.id, text=e.text) for e in examples]
    rng = np.random.default_rng(0)
    seed_ids = {pool[i].id for i in rng.choice(len(pool), max(2, len(pool) // 100), replace=False)}
    labeled = [gold[i] for i in sorted(seed_ids)]
    pool = [e for e in pool if e.id not in seed_ids]
    config = TrainingConfig(
        learning_rate=5e-5,
        epochs=args.epochs,
        min_steps=args.min_steps,
        max_length=args.max_length,
        seed=0,
        eval_batch_size=64,
    )
    model = build_model("classification", str(MODELS / args.model), data.labels, config)
    start = time.perf_counter()
    model.fit(labeled)
    fit_s = time.perf_counter() - start
    print(f"acquisition model trained on {len(labeled)} reviews in {fit_s:.0f} s", flush=True)
    cache = InMemoryScoreCache()
    strategy = get_strategy("lc")
    ups = SubsamplingConfig("ups", gamma=0.1, temperature=0.01, full_first=2, full_every=4)
    batch = max(1, len(pool) // 100)
    full = run_round(
        model,
        labeled,
        pool,
        strategy,
        PoolSubsampler(ups, seed=0),
        cache,
        iteration=0,
        model_version="full",
        count=batch,
        fit=False,
    )
    print(f"full scoring: {full.n_scored} tasks in {full.timings['inference_s']:.0f} s", flush=True)
    rest = [e for e in pool if e.id not in set(full.selected_ids)]
    # iteration 6 is a UPS iteration under the paper's schedule; the model is the same, so the
    # two timings differ only in how much of the pool is scored
    sub = run_round(
        model,
        labeled,
        rest,
        strategy,
        PoolSubsampler(ups, seed=0),
        cache,
        iteration=6,
        model_version="ups",
        count=batch,
        fit=False,
    )
    full_s, ups_s = full.timings["inference_s"], sub.timings["inference_s"]
    schedule = [ups.is_full_iteration(t) for t in range(15)]
    run_full = 15 * full_s
    run_ups = sum(full_s if is_full else ups_s for is_full in schedule)
    return dict(
        pool=len(pool),
        seed=len(labeled),
        fit_s=fit_s,
        full_s=full_s,
        full_n=full.n_scored,
        ups_s=ups_s,
        ups_n=sub.n_scored,
        run_full=run_full,
        run_ups=run_ups,
        n_full=sum(schedule),
    )


def whole_run_benchmark(args) -> dict:
    from simulate.config import parse_config
    from simulate.report import totals_by_seed
    from simulate.runner import Simulation

    def config(name, model, scoring):
        return parse_config(
            {
                "name": name,
                "dataset": {
                    "name": "imdb5k",
                    "pool_split": "train",
                    "test_split": "test",
                    "pool_size": args.run_pool,
                    "test_limit": 200,
                },
                "acquisition": {"name": model, "model": str(MODELS / model)},
                "successors": [{"name": "matched", "kind": "acquisition"}],
                "strategy": "lc",
                "scoring": scoring,
                "seed_set": {"fraction": 0.01},
                "batch": {"fraction": 0.01},
                "iterations": args.run_iterations,
                "seeds": [0],
                "training": {
                    "learning_rate": 5e-5,
                    "epochs": args.epochs,
                    "min_steps": args.min_steps,
                    "max_length": args.run_max_length,
                },
            }
        )

    ups = {"mode": "ups", "gamma": 0.1, "temperature": 0.01, "full_first": 2, "full_every": 4}
    out = {}
    with tempfile.TemporaryDirectory() as folder:
        for key, cfg in [
            ("standard", config("standard", args.teacher, {"mode": "full"})),
            ("method", config("method", args.model_small, ups)),
        ]:
            records = [
                json.loads(line)
                for line in (Simulation(cfg, Path(folder) / key).run() / "results.jsonl")
                .read_text()
                .splitlines()
            ]
            totals = totals_by_seed(records, cfg.name)[0]
            score = [r["acquisition_score"] for r in records if r["iteration"] == args.run_iterations][0]
            out[key] = {**totals, "score": score, "model": cfg.acquisition.name}
    return out


def scoring_section(args, s: dict) -> str:
    return "\n".join(
        [
            "## UPS: pool scoring, full against UPS",
            "",
            machine_line(),
            f"IMDb training pool ({s['pool']:,} reviews), {args.model}, max_length {args.max_length}. The same "
            f"acquisition model (trained on a 1% seed of {s['seed']} reviews, {args.epochs} epochs / at least "
            f"{args.min_steps} steps, in {s['fit_s']:.0f} s) scores the pool "
            "on a full-scoring iteration and then on a UPS iteration (gamma 0.1, T 0.01), one after the other in "
            "one process, both through `al_core.loop.run_round`.",
            "",
            "| | tasks scored | pool-scoring time (s) |",
            "|---|---|---|",
            f"| full scoring | {s['full_n']:,} | {s['full_s']:.1f} |",
            f"| UPS iteration | {s['ups_n']:,} ({s['ups_n'] / s['full_n']:.1%}) | {s['ups_s']:.1f} |",
            f"| **speed-up** | | **{s['full_s'] / s['ups_s']:.1f}x** (goal >= 9x; paper 10.2x) |",
            "",
            "Whole run, projected from the two measured iterations for the paper's schedule (15 iterations, "
            f"{s['n_full']} of them full): full scoring {s['run_full']:.0f} s, UPS {s['run_ups']:.0f} s "
            f"(**{s['run_full'] / s['run_ups']:.1f}x** faster; paper 2.8x).",
        ]
    )


def run_section(args, r: dict) -> str:
    std, new = r["standard"], r["method"]
    return "\n".join(
        [
            "## UPS: whole AL run, distilled acquisition + UPS against teacher-size acquisition + full scoring",
            "",
            machine_line(),
            f"Reduced scale: imdb5k pool of {args.run_pool:,} reviews, {args.run_iterations} query iterations "
            f"(UPS scores the whole pool at iterations 0, 1, 4), 1% seed and batches, max_length {args.run_max_length}, "
            f"fine-tuning {args.epochs} epochs / at least {args.min_steps} steps, "
            "one seed, run one after the other through the simulator. AL time = acquisition training + pool "
            "inference + selection over the run.",
            "",
            "| run | acquisition | scoring | acq. training (s) | pool inference (s) | tasks scored | AL time (s) | "
            "final acq. accuracy |",
            "|---|---|---|---|---|---|---|---|",
            f"| standard | {std['model']} | full | {std['acq_fit_s']:.0f} | {std['inference_s']:.0f} | "
            f"{std['n_scored']:,} | {std['al_s']:.0f} | {std['score']:.3f} |",
            f"| distilled + UPS | {new['model']} | UPS | {new['acq_fit_s']:.0f} | {new['inference_s']:.0f} | "
            f"{new['n_scored']:,} | {new['al_s']:.0f} | {new['score']:.3f} |",
            "",
            f"The cheap run takes **{new['al_s'] / std['al_s']:.0%}** of the standard run's time "
            f"({new['al_s'] / std['al_s'] - 1:+.0%}; goal <= 25% of it; paper -63% on a GPU, ELECTRA against "
            "DistilBERT + UPS).",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--part",
        choices=["scoring", "run", "both"],
        default="both",
        help="scoring: full vs UPS pool scoring (section 'ups'); run: whole AL runs ('ups-run')",
    )
    parser.add_argument("--pool-size", type=int, default=25_000, help="IMDb pool for the scoring benchmark")
    parser.add_argument("--model", default="minilm-l6", help="acquisition model of the scoring benchmark")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--teacher", default="minilm-l6", help="acquisition model of the standard run")
    parser.add_argument(
        "--model-small", default="minilm-l3", help="distilled acquisition model of the cheap run"
    )
    parser.add_argument("--run-pool", type=int, default=5000, help="pool of the whole-run comparison")
    parser.add_argument("--run-iterations", type=int, default=6)
    parser.add_argument(
        "--run-max-length", type=int, default=128, help="max_length of the whole-run comparison"
    )
    parser.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs of every acquisition model")
    parser.add_argument("--min-steps", type=int, default=30, help="fine-tuning minimum steps")
    args = parser.parse_args()

    if args.part in ("scoring", "both"):
        text = scoring_section(args, scoring_benchmark(args))
        write_section("ups", text)
        print(text, flush=True)
    if args.part in ("run", "both"):
        text = run_section(args, whole_run_benchmark(args))
        write_section("ups-run", text)
        print(text, flush=True)


if __name__ == "__main__":
    main()
