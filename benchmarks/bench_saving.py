"""Labels saved against annotating in random order: the engine's round (al_core.loop.run_round, the
default strategy, the frozen head the auto default trains below its fine-tuning threshold) replayed
on real sets with gold labels, written into BENCHMARKS.md (section labels-saved).

  python -m benchmarks.bench_saving [--sets sst2,agnews,trec,goemotions-ekman,agnews-cut]
      [--orderings random,default] [--steps 1,10] [--seeds 10] [--start 20] [--stop 200]

Per set: `--pool` training texts and `--test` held-out texts, embedded once by MiniLM-L6. Per seed,
ordering and step (labels between two retrains: 1 = one annotator, 10 = a team): the first `--start`
labels (drawn at random, or the cold-start order), then rounds of `step` labels taken from the front
of the ordering, the head refit after each round. Orderings:
  random   uniform order (the baseline)
  default  the product's order: the default strategy's ranking served in the team-diverse order
           (AcquisitionConfig.team_size) after cold-start first labels (AcquisitionConfig.cold_start_labels)
  plain    the strategy's ranking alone, random first labels (the order before this benchmark)
Recorded per label count: held-out macro F1, accuracy, the rarest class's recall. Reported: the
labels each ordering needs to reach random's macro F1 at 100 and at 200 labels (the saving, %),
the area under the macro F1 curve, rarest recall at 100 / 200, sd over seeds.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
from collections import Counter
from pathlib import Path

import numpy as np

from al_core.acquisition import AcquisitionConfig
from al_core.config import TrainingConfig
from al_core.data import Example
from al_core.kinds import kind_of
from al_core.loop import run_round
from al_core.models import MemoryEmbeddingCache, build_model
from al_core.ordering import cold_start_order, serving_order
from al_core.strategies import get_strategy
from al_core.ups import InMemoryScoreCache, PoolSubsampler, SubsamplingConfig
from benchmarks.report import machine_line, write_section
from simulate.datasets import shared_dataset


def load_set(name: str, pool_size: int, test_size: int) -> tuple[list[Example], list[Example], list[str]]:
    """Pool and held-out texts; `agnews-cut`: AG News with its last class cut to 5% of the pool."""
    base = "agnews" if name.startswith("agnews") else name
    rng = random.Random(0)
    if base == "agnews":  # one 7,600-row file: split it
        rows = shared_dataset("agnews", "test").labeled()
        rng.shuffle(rows)
        train, test = rows[test_size:], rows[:test_size]
    else:
        train, test = shared_dataset(base, "train").labeled(), shared_dataset(base, "test").labeled()
        test = rng.sample(test, min(test_size, len(test)))
    labels = sorted({e.label for e in train})
    if name == "agnews-cut":
        rare = labels[-1]
        common = [e for e in train if e.label != rare]
        keep = round(0.05 * pool_size)
        common = rng.sample(common, pool_size - keep)
        train = common + rng.sample([e for e in train if e.label == rare], keep)
        rng.shuffle(train)
        return train, test, labels
    return rng.sample(train, min(pool_size, len(train))), test, labels


def replay(name, pool, test, labels, ordering, step, seed, args, cache) -> list[dict]:
    """One campaign: macro F1, accuracy and rarest recall after each round."""
    kind = kind_of("classification")
    acquisition = acquisition_config(args)
    rarest = min(Counter(e.label for e in test).items(), key=lambda item: item[1])[0]
    model = build_model("classification", args.model, labels, TrainingConfig(seed=seed), "frozen", cache)
    rng = random.Random(seed)
    if ordering == "default" and acquisition.cold_start_labels:
        candidates = rng.sample(pool, len(pool))
        first = [candidates[i] for i in cold_start_order(np.stack(model.vectors(candidates)), acquisition.cold_start_labels, seed)]
        first += rng.sample([e for e in pool if e not in first], args.start - len(first))
    else:
        first = rng.sample(pool, args.start)
    labeled = list(first)
    chosen = {e.id for e in labeled}
    strategy = get_strategy("random" if ordering == "random" else args.strategy, seed=seed)
    subsampler = PoolSubsampler(SubsamplingConfig(), seed=seed)
    gold = [e.label for e in test]
    rows, iteration = [], 0
    while True:
        remaining = [e for e in pool if e.id not in chosen]
        result = run_round(
            model, labeled, remaining, strategy, subsampler, InMemoryScoreCache(), iteration, f"v{iteration}",
            count=min(len(remaining), args.window), acquisition=acquisition, seed=seed,
        )
        report = kind.report(gold, model.predict(test), labels)
        rows.append({
            "set": name, "ordering": ordering, "step": step, "seed": seed, "labels": len(labeled),
            "macro_f1": report["value"], "accuracy": report["figures"]["accuracy"],
            "rare_recall": report["per_label"][rarest]["recall"], "rarest": rarest,
            "rare_labels": sum(e.label == rarest for e in labeled),
        })
        if len(labeled) >= args.stop:
            return rows
        by_id = {e.id: e for e in remaining}
        ranked = [by_id[i] for i in result.selected_ids]
        if ordering == "default":
            ranked = serving_order(ranked, model.vectors, acquisition.team_size, seed)
        take = ranked[: min(step, args.stop - len(labeled))]
        labeled += take
        chosen |= {e.id for e in take}
        iteration += 1


def acquisition_config(args) -> AcquisitionConfig:
    """The engine's defaults, or the --team / --cold-start given."""
    given = {"team_size": args.team, "cold_start_labels": None if args.cold_start is None else args.cold_start * args.start}
    return AcquisitionConfig(**{k: v for k, v in given.items() if v is not None})


def labels_to_reach(curve: dict[int, float], target: float) -> float | None:
    """The label count at which the mean macro F1 curve first reaches `target`, linear between the
    counts measured (None: never within the curve)."""
    counts = sorted(curve)
    for before, after in zip([None, *counts], counts):
        if curve[after] >= target - 1e-9:
            if before is None or curve[after] == curve[before]:
                return float(after)
            return before + (after - before) * (target - curve[before]) / (curve[after] - curve[before])
    return None


def summarise(rows: list[dict]) -> list[dict]:
    out = []
    for name, step in sorted({(r["set"], r["step"]) for r in rows}):
        group = [r for r in rows if r["set"] == name and r["step"] == step]
        curves = {}
        for ordering in sorted({r["ordering"] for r in group}):
            by_n: dict[int, list[float]] = {}
            for r in group:
                if r["ordering"] == ordering:
                    by_n.setdefault(r["labels"], []).append(r["macro_f1"])
            curves[ordering] = {n: statistics.mean(v) for n, v in by_n.items()}
        random_curve = curves.get("random", {})
        for ordering, curve in curves.items():
            mine = [r for r in group if r["ordering"] == ordering]
            seeds = sorted({r["seed"] for r in mine})
            areas = [statistics.mean(r["macro_f1"] for r in mine if r["seed"] == s) for s in seeds]
            line = {"set": name, "step": step, "ordering": ordering, "seeds": len(seeds), "rarest": mine[0]["rarest"],
                    "area": statistics.mean(areas), "area_sd": statistics.stdev(areas) if len(areas) > 1 else 0.0}
            for at in (100, 200):
                if at not in random_curve:
                    continue
                need = labels_to_reach(curve, random_curve[at])
                line[f"saved_{at}"] = None if need is None else 1 - need / at
                at_rows = [r for r in mine if r["labels"] == at]
                line[f"f1_{at}"] = statistics.mean(r["macro_f1"] for r in at_rows)
                line[f"f1_{at}_sd"] = statistics.stdev([r["macro_f1"] for r in at_rows]) if len(at_rows) > 1 else 0.0
                line[f"rare_{at}"] = statistics.mean(r["rare_recall"] for r in at_rows)
                line[f"rare_labels_{at}"] = statistics.mean(r["rare_labels"] for r in at_rows)
            # the largest shortfall against random at any label count (negative: below random)
            line["worst_gap"] = min((curve[n] - random_curve[n] for n in curve if n in random_curve), default=0.0)
            out.append(line)
    return out


def table(summary: list[dict]) -> str:
    def pct(v):
        return "never" if v is None else f"{100 * v:+.0f}%"

    lines = [
        "| set (rarest class) | labels per retrain | ordering | seeds | saved at 100 | saved at 200 | macro F1 100 | "
        "macro F1 200 | area (sd) | worst gap to random | rarest recall 100 | rarest recall 200 (its labels) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summary:
        lines.append(
            f"| {s['set']} ({s['rarest']}) | {s['step']} | {s['ordering']} | {s['seeds']} | {pct(s.get('saved_100'))} | "
            f"{pct(s.get('saved_200'))} | {s.get('f1_100', 0):.3f} ± {s.get('f1_100_sd', 0):.3f} | "
            f"{s.get('f1_200', 0):.3f} ± {s.get('f1_200_sd', 0):.3f} | {s['area']:.3f} ({s['area_sd']:.3f}) | "
            f"{s['worst_gap']:+.3f} | {s.get('rare_100', 0):.2f} | {s.get('rare_200', 0):.2f} "
            f"({s.get('rare_labels_200', 0):.1f}) |"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="sst2,agnews,trec,goemotions-ekman,agnews-cut")
    parser.add_argument("--orderings", default="random,default")
    parser.add_argument("--steps", default="1,10")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--start", type=int, default=20)
    parser.add_argument("--stop", type=int, default=200)
    parser.add_argument("--pool", type=int, default=3000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--window", type=int, default=200, help="the ranked tasks the serving order is made of")
    parser.add_argument("--strategy", default=kind_of("classification").default_strategy,
                        help="the strategy of the default and plain orderings (the backend's default if not given)")
    parser.add_argument("--team", type=int, help="team_size of the default ordering (the engine's default if not given)")
    parser.add_argument("--cold-start", type=lambda v: v.lower() in ("1", "true", "yes", "on"),
                        help="cold_start of the default ordering: on / off (the engine's default if not given)")
    parser.add_argument("--model", default=str(Path.home() / ".cache" / "al-models" / "minilm-l6"))
    parser.add_argument("--rows", help="also write every measured row to this JSON file")
    parser.add_argument("--from-rows", help="summarise the rows of an earlier --rows file instead of measuring")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    rows = json.loads(Path(args.from_rows).read_text()) if args.from_rows else []
    for name in [] if args.from_rows else args.sets.split(","):
        pool, test, labels = load_set(name, args.pool, args.test)
        cache = MemoryEmbeddingCache()
        for step in (int(s) for s in args.steps.split(",")):
            for ordering in args.orderings.split(","):
                for seed in range(args.seeds):
                    rows += replay(name, pool, test, labels, ordering, step, seed, args, cache)
            print(table(summarise([r for r in rows if r["set"] == name])), flush=True)
    if args.rows:
        Path(args.rows).write_text(json.dumps(rows))
    defaults = acquisition_config(args)
    body = (
        "## Labels saved against random order\n\n" + machine_line() + "\n"
        f"`python -m benchmarks.bench_saving --sets {args.sets} --orderings {args.orderings} --steps {args.steps} "
        f"--seeds {args.seeds}`: MiniLM-L6 frozen head (the auto default below its fine-tuning threshold), "
        f"strategy {args.strategy}, team_size {defaults.team_size}, cold_start_labels {defaults.cold_start_labels}; pool {args.pool}, "
        f"{args.test} held-out texts, {args.start} -> {args.stop} labels. 'saved at N': the labels the ordering "
        f"needs (mean curve over seeds) to reach random order's mean macro F1 at N, as a share of N saved.\n\n"
        + table(summarise(rows)) + "\n"
    )
    print(body)
    if not args.no_write:
        write_section("labels-saved", body)


if __name__ == "__main__":
    main()
