"""Learning curves of the live acquisition model: old defaults, the new schedule, the frozen head, auto.

For each dataset, label count and seed, a random labeled set is drawn from the training
pool and the acquisition model is trained as the live backend trains it (through
al_core.acquisition.fit_with_estimate, so fine-tuning holds out its estimate share as the
backend does), then measured on held-out gold:
- old: the live defaults before the step floor (3 epochs, lr 2e-5, no minimum steps);
- finetune: the engine's TrainingConfig defaults (at least 100 steps, lr by kind);
- frozen: the logistic regression on the frozen encoder's vectors (embedded once, cached);
- auto: what AL_ACQUISITION_MODE=auto picks at that count (frozen or finetune), read off the
  two rows it chooses between (the same code path, not a separate run).
With --al, active learning against random ordering with the auto default: from a random
seed set, each round trains, scores the pool and queries the next batch (al_core.loop.run_round,
the backend's round); the area under the learning curve is compared.

Writes the "learning" section of BENCHMARKS.md. Needs the real models (fetch-models.sh) and
../shared/data. Raw points go to a JSONL file (--results), so a run can be resumed.
Run: .venv/bin/python -m benchmarks.bench_learning [--datasets sst2,agnews,conll2003] [--seeds 0,1,2] ...
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from al_core.kinds import kind_of
from benchmarks.report import machine_line, write_section
from simulate.report import METRIC_NAMES

MODELS = Path.home() / ".cache" / "al-models"
# pool split, held-out split (None: split off the pool)
SPLITS = {"sst2": ("train", "test"), "agnews": ("test", None), "conll2003": ("train", "dev"), "trec": ("train", "test")}
VARIANTS = ("old", "finetune", "frozen")


def load(name: str, test_size: int):
    from simulate.datasets import shared_dataset

    pool_split, test_split = SPLITS[name]
    data = shared_dataset(name, pool_split)
    examples = list(data.examples)
    rng = np.random.default_rng(12345)
    if test_split is None:
        order = rng.permutation(len(examples))
        test = [examples[i] for i in order[:test_size]]
        pool = [examples[i] for i in order[test_size:]]
    else:
        test_all = shared_dataset(name, test_split).examples
        test = [test_all[i] for i in rng.permutation(len(test_all))[:test_size]]
        pool = examples
    return data.kind, data.labels, pool, test


def training_for(variant: str):
    from al_core.config import TrainingConfig

    if variant == "old":
        return TrainingConfig(epochs=3, learning_rate=2e-5, min_steps=0)
    return TrainingConfig()


def one_point(kind, labels, labeled, test, variant, model_path, cache, seed):
    from al_core.acquisition import AcquisitionConfig, fit_with_estimate, score_predictions
    from al_core.models import build_model

    config = training_for(variant).replace(seed=seed)
    mode = "frozen" if variant == "frozen" else "finetune"
    model = build_model(kind, model_path, labels, config, mode, cache if mode == "frozen" else None)
    start = time.perf_counter()
    if variant == "old":
        model.fit(labeled)
        estimate = None
    else:
        estimate = fit_with_estimate(model, labeled, AcquisitionConfig(mode=mode)).value
    fit_s = time.perf_counter() - start
    report = score_predictions(model.task_kind, test, model.predict([e.without_labels() for e in test]))
    return {"value": report["value"], "figures": report["figures"], "fit_s": fit_s, "estimate": estimate}


def draw(pool, count: int, seed: int):
    order = np.random.default_rng([seed, count]).permutation(len(pool))
    return [pool[i] for i in order[:count]]


def curves(args, done: dict, out) -> None:
    for model in args.models:
        curves_of(args, model, done, out)


def curves_of(args, model_name: str, done: dict, out) -> None:
    from al_core.models import MemoryEmbeddingCache

    for name in args.datasets:
        kind, labels, pool, test = load(name, args.test_size)
        cache = MemoryEmbeddingCache()  # vectors of a dataset are computed once for every point
        model_path = str(MODELS / model_name)
        start = time.perf_counter()
        from al_core.models import build_model

        warm = build_model(kind, model_path, labels, training_for("frozen"), "frozen", cache)
        warm.vectors(test)
        embed_s = time.perf_counter() - start
        print(f"{name}: {len(test)} held-out tasks embedded in {embed_s:.1f} s", flush=True)
        for count in args.counts:
            for seed in args.seeds:
                labeled = draw(pool, count, seed)
                for variant in args.variants:
                    key = (model_name, name, count, seed, variant)
                    if key in done:
                        continue
                    point = one_point(kind, labels, labeled, test, variant, model_path, cache, seed)
                    row = dict(zip(("model", "dataset", "count", "seed", "variant"), key, strict=True), **point)
                    row["test_size"] = len(test)
                    done[key] = row
                    out.write(json.dumps(row) + "\n")
                    out.flush()
                    print(f"  {name} n={count} seed={seed} {variant}: {point['value']:.3f} "
                          f"(fit {point['fit_s']:.1f} s)", flush=True)


def al_run(args, name: str, ordering: str, seed: int) -> list[tuple[int, float, float]]:
    """(labels, held-out quality (the kind's headline), seconds of the round, accuracy or None)
    along one campaign with the auto default."""
    from al_core.acquisition import AcquisitionConfig, resolve_mode, score_predictions
    from al_core.loop import run_round
    from al_core.models import MemoryEmbeddingCache, build_model
    from al_core.strategies import get_strategy
    from al_core.ups import InMemoryScoreCache, PoolSubsampler, SubsamplingConfig

    kind, labels, pool_all, test = load(name, args.test_size)
    gold = draw(pool_all, args.al_pool, 999)
    by_id = {e.id: e for e in gold}
    pool = [e.without_labels() for e in gold]
    labeled_ids = [e.id for e in draw(gold, args.al_counts[0], seed)]
    embeddings, scores = args.embedding_cache.setdefault(name, MemoryEmbeddingCache()), InMemoryScoreCache()
    default = kind_of(kind).default_strategy
    strategy_name = (args.al_strategy or default) if ordering == "al" else ordering
    acquisition = AcquisitionConfig(finetune_lane="inline")  # each round trains the mode it serves
    points = []
    for iteration, count in enumerate(args.al_counts):
        labeled = [by_id[i] for i in labeled_ids]
        rest = [e for e in pool if e.id not in set(labeled_ids)]
        mode = resolve_mode(acquisition, kind, len(labeled))
        model = build_model(kind, str(MODELS / args.models[0]), labels, training_for(mode).replace(seed=seed), mode,
                            embeddings)
        step = args.al_counts[iteration + 1] - count if iteration + 1 < len(args.al_counts) else 1
        start = time.perf_counter()
        result = run_round(model, labeled, rest, get_strategy(strategy_name, seed=seed),
                           PoolSubsampler(SubsamplingConfig(), seed=seed), scores, iteration,
                           f"v{iteration}", count=step, acquisition=acquisition)
        round_s = time.perf_counter() - start
        report = score_predictions(model.task_kind, test, model.predict([e.without_labels() for e in test]))
        quality = report["value"]
        points.append((len(labeled), quality, round_s, report["figures"].get("accuracy")))
        print(f"  AL {name} {ordering} seed={seed} n={len(labeled)} ({mode}): {quality:.3f}, "
              f"round {round_s:.1f} s", flush=True)
        labeled_ids += result.selected_ids
    return points


def mean_sd(values):
    return (float(np.mean(values)), float(np.std(values))) if values else (float("nan"), 0.0)


def curve_tables(args, done: dict) -> str:
    return "\n".join(curve_tables_of(args, model, done) for model in args.models)


def curve_tables_of(args, model: str, done: dict) -> str:
    from al_core.acquisition import AcquisitionConfig, resolve_mode

    lines = []
    for name in args.datasets:
        if not any(k[:2] == (model, name) for k in done):
            continue
        kind = "tagging" if name in ("conll2003", "wnut17") else "classification"
        metric = METRIC_NAMES[kind_of(kind).metric]
        sizes = sorted({r.get("test_size", args.test_size) for k, r in done.items() if k[:2] == (model, name)})
        lines += [
            f"**{name}**, {model}, {metric} on {'/'.join(map(str, sizes))} held-out tasks, mean ± sd over the "
            "seeds of the row (the same labeled sets for every variant); fit seconds in brackets.",
            "",
            "| labels | seeds | old defaults | new schedule (finetune) | frozen head | auto (mode) | auto − best |",
            "|---|---|---|---|---|---|---|",
        ]
        for count in sorted({k[2] for k in done if k[:2] == (model, name)}):
            seeds = sorted({k[3] for k in done if k[:3] == (model, name, count)})
            cells, means = [], {}
            for variant in VARIANTS:
                rows = [r for k, r in done.items() if k[:3] == (model, name, count) and k[4] == variant]
                if not rows:
                    cells.append("–")
                    continue
                m, sd = mean_sd([r["value"] for r in rows])
                means[variant] = m
                # accuracy beside the headline, where the points carry it (not those of older runs)
                accuracy = [r["figures"]["accuracy"] for r in rows if "accuracy" in r.get("figures", {})]
                beside = f"acc. {np.mean(accuracy):.3f}, " if accuracy and len(accuracy) == len(rows) else ""
                cells.append(f"{m:.3f} ± {sd:.3f} ({beside}{np.mean([r['fit_s'] for r in rows]):.1f} s)")
            mode = resolve_mode(AcquisitionConfig(finetune_lane="inline"), kind, count)  # the mode served at count
            auto = means.get(mode)
            best = max(means.values()) if means else None
            gap = f"{auto - best:+.3f}" if auto is not None and best is not None else "–"
            auto_cell = f"{auto:.3f} ({mode})" if auto is not None else f"– ({mode})"
            lines.append(f"| {count} | {','.join(map(str, seeds))} | " + " | ".join(cells) + f" | {auto_cell} | {gap} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="sst2,agnews,conll2003", type=lambda s: s.split(","))
    parser.add_argument("--models", default="minilm-l6", type=lambda s: s.split(","),
                        help="encoders (folders under ~/.cache/al-models); --al uses the first")
    parser.add_argument("--counts", default="20,40,100,200,500", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--seeds", default="0,1,2", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--variants", default=",".join(VARIANTS), type=lambda s: s.split(","))
    parser.add_argument("--test-size", type=int, default=1000)
    parser.add_argument("--results", default="results/learning.jsonl")
    parser.add_argument("--al", default="", type=lambda s: [x for x in s.split(",") if x],
                        help="datasets for active learning against random ordering (auto default)")
    parser.add_argument("--al-counts", default="20,40,100,200", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--al-pool", type=int, default=2000)
    parser.add_argument("--al-strategy", default=None, help="the AL ordering's strategy (default: the backend's)")
    parser.add_argument("--al-orderings", default="al,random", type=lambda s: s.split(","),
                        help="al (--al-strategy, or the default), random, or any strategy's name, comma-separated")
    parser.add_argument("--no-curves", action="store_true")
    parser.add_argument("--report-only", action="store_true",
                        help="compute nothing: the tables of the points already in --results")
    parser.add_argument("--no-write", action="store_true", help="print, leave BENCHMARKS.md alone")
    parser.add_argument("--section", default="learning", help="the BENCHMARKS.md section written")
    parser.add_argument("--title", default=None, help="the section's heading (default: learning curves ...)")
    args = parser.parse_args(argv)
    args.embedding_cache = {}
    results = Path(args.results)
    results.parent.mkdir(parents=True, exist_ok=True)
    done = {}
    if results.exists():
        for line in results.read_text().splitlines():
            row = json.loads(line)
            if "variant" in row:
                done[(row["model"], row["dataset"], row["count"], row["seed"], row["variant"])] = row
    with results.open("a") as out:
        if not (args.no_curves or args.report_only):
            curves(args, done, out)
    text = [machine_line()]
    if not args.no_curves:
        text += [
            f"Curve points: runs of this script into {args.results} (one point per dataset, model, label count, seed "
            "and variant; a run skips the points already there), read back by this command. Fit seconds were measured "
            "while other work could share the cores: compare them within a row only. "
            "Quality is measured on held-out gold; fine-tuning holds 10% of the labels out for its estimate, as "
            "the backend does; `old defaults` train on all labels.",
            "",
            curve_tables(args, done),
        ]
    # a curve of many small steps shows the labels at multiples of 10 (its area uses every point)
    shown = [i for i, c in enumerate(args.al_counts) if len(args.al_counts) <= 12 or c % 10 == 0 or i == len(args.al_counts) - 1]
    steps = sorted({b - a for a, b in zip(args.al_counts, args.al_counts[1:])})
    labels_text = (str(args.al_counts) if len(args.al_counts) <= 12 else
                   f"{args.al_counts[0]} to {args.al_counts[-1]} in steps of {'/'.join(map(str, steps))}")
    for name in args.al:
        runs = {o: [al_run(args, name, o, s) for s in args.seeds] for o in args.al_orderings}
        text += [
            f"**Active learning against random ordering**, {name}, {args.models[0]}, auto default, "
            f"strategy {args.al_strategy or kind_of(load(name, 1)[0]).default_strategy + ' (the default)'}, pool "
            f"{args.al_pool}, labels {labels_text}, seeds {args.seeds}: held-out quality, the kind's headline (macro F1 for classification, with accuracy on the row below), mean over seeds.",
            "",
            "| labels | " + " | ".join(str(args.al_counts[i]) for i in shown)
            + " | area (mean) | ± sd of seeds | area − random, same seed (mean, seeds above) | round s (mean) |",
            "|---|" + "---|" * (len(shown) + 4),
        ]
        quality = {o: np.array([[p[1] for p in points] for points in per_seed]) for o, per_seed in runs.items()}
        areas = {o: np.trapezoid(q, args.al_counts, axis=1) / (args.al_counts[-1] - args.al_counts[0])
                 for o, q in quality.items()}
        for ordering, per_seed in runs.items():
            curve = quality[ordering].mean(axis=0)
            round_s = float(np.mean([[p[2] for p in points] for points in per_seed]))
            paired = ""
            if "random" in areas and ordering != "random":
                gain = areas[ordering] - areas["random"]
                paired = f"{gain.mean():+.3f}, {int((gain > 0).sum())} of {len(gain)}"
            text.append(f"| {ordering} | " + " | ".join(f"{curve[i]:.3f}" for i in shown)
                        + f" | {areas[ordering].mean():.3f} | {areas[ordering].std():.3f} | {paired} | {round_s:.1f} |")
            if all(p[3] is not None for points in per_seed for p in points):  # accuracy beside macro F1
                accuracy = np.array([[p[3] for p in points] for points in per_seed]).mean(axis=0)
                text.append(f"| {ordering}, accuracy | " + " | ".join(f"{accuracy[i]:.3f}" for i in shown)
                            + " | | | | |")
        text.append("")
    report = "\n".join(text)
    print(report)
    if not args.no_write:
        title = args.title or "Learning curves of the live acquisition model"
        if args.no_curves:
            title = (f"Active learning against random ordering: {', '.join(args.al)}, {args.al_counts[0]} to "
                     f"{args.al_counts[-1]} labels in steps of {'/'.join(map(str, steps))}, {len(args.seeds)} seeds")
        write_section(args.section, f"## {title}\n\n" + report)


if __name__ == "__main__":
    main()
