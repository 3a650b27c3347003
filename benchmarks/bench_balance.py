"""The frozen head (or fine-tuning, --mode finetune) with and without class-balanced weights
(AL_BALANCE_CLASSES), on balanced and imbalanced real sets, written into BENCHMARKS.md (section
class-balance, or class-balance-finetune).

  python -m benchmarks.bench_balance [--sets sst2,trec,goemotions-ekman] [--sizes 50,100,200] [--seeds 5]
      [--mode frozen|finetune] [--model FOLDER]

Per set: a pool of `--pool` training texts and `--test` test texts (../shared/data), embedded once by
MiniLM-L6 (a shared embedding cache); per seed and size, a uniform random labeled set drawn from the
pool (so its class mix is the data's), and the frozen head (a logistic regression on the mean-pooled
vectors, the live default below 40 labels) fit on it twice: plain and balanced. Recorded: macro F1,
accuracy and the recall of the test set's rarest class, mean and sd over seeds.
"""

from __future__ import annotations

import argparse
import random
import statistics
from collections import Counter
from pathlib import Path

from al_core.config import TrainingConfig
from al_core.kinds import kind_of
from al_core.models import MemoryEmbeddingCache, build_model
from benchmarks.report import machine_line, write_section
from simulate.datasets import shared_dataset


def measure(name: str, args) -> list[dict]:
    train, test = shared_dataset(name, "train"), shared_dataset(name, "test")
    rng = random.Random(0)
    pool = rng.sample(train.labeled(), min(args.pool, len(train.labeled())))
    held = rng.sample(test.labeled(), min(args.test, len(test.labeled())))
    labels = sorted({e.label for e in train.labeled()})
    rarest = min(Counter(e.label for e in held).items(), key=lambda item: item[1])[0]
    kind, cache, rows = kind_of("classification"), MemoryEmbeddingCache(), []
    gold = [e.label for e in held]
    for size in args.sizes:
        for seed in range(args.seeds):
            labeled = random.Random(seed).sample(pool, size)
            for balanced in (False, True):
                config = TrainingConfig(seed=seed, balance_classes=balanced)
                model = build_model("classification", args.model, labels, config, args.mode, cache).fit(labeled)
                report = kind.report(gold, model.predict(held), labels)
                rows.append({
                    "set": name, "size": size, "seed": seed, "balanced": balanced,
                    "macro_f1": report["value"], "accuracy": report["figures"]["accuracy"],
                    "rare_recall": report["per_label"][rarest]["recall"], "rarest": rarest,
                    "rare_labels": sum(e.label == rarest for e in labeled),
                })
    return rows


def table(rows: list[dict]) -> str:
    def stat(values):
        return f"{statistics.mean(values):.3f} ± {statistics.stdev(values) if len(values) > 1 else 0:.3f}"

    lines = [
        "| set (rarest class in test) | labels | rarest-class labels (mean) | macro F1 plain | macro F1 balanced "
        "| accuracy plain | accuracy balanced | rarest recall plain | rarest recall balanced |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    keys = sorted({(r["set"], r["size"]) for r in rows}, key=lambda k: (k[0], k[1]))
    for name, size in keys:
        plain = [r for r in rows if (r["set"], r["size"], r["balanced"]) == (name, size, False)]
        balanced = [r for r in rows if (r["set"], r["size"], r["balanced"]) == (name, size, True)]
        lines.append(
            f"| {name} ({plain[0]['rarest']}) | {size} | {statistics.mean(r['rare_labels'] for r in plain):.1f} | "
            + " | ".join(stat([r[k] for r in group]) for k in ("macro_f1", "accuracy", "rare_recall")
                         for group in (plain, balanced))
            + " |"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="sst2,trec,goemotions-ekman")
    parser.add_argument("--sizes", default="50,100,200")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--pool", type=int, default=3000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--model", default=str(Path.home() / ".cache" / "al-models" / "minilm-l6"))
    parser.add_argument("--mode", choices=["frozen", "finetune"], default="frozen")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    args.sizes = [int(s) for s in args.sizes.split(",")]
    rows = [row for name in args.sets.split(",") for row in measure(name, args)]
    model = Path(args.model).name
    what = {
        "frozen": f"{model} frozen head (logistic regression on mean-pooled vectors)",
        "finetune": f"{model} fine-tuned (the backend's schedule; balanced: class-weighted loss and linear probe)",
    }[args.mode]
    body = (
        f"## Class balance: {'the frozen head' if args.mode == 'frozen' else 'fine-tuning'} plain and with "
        "class-balanced weights\n\n" + machine_line() + "\n"
        f"`python -m benchmarks.bench_balance --sets {args.sets} --sizes {','.join(map(str, args.sizes))} "
        f"--seeds {args.seeds} --mode {args.mode} --model {model}`: {what}, uniform random labeled sets from a "
        f"pool of {args.pool} training texts, {args.test} test texts, {args.seeds} seeds (mean ± sd).\n\n"
        + table(rows) + "\n"
    )
    print(body)
    if not args.no_write:
        write_section("class-balance" if args.mode == "frozen" else "class-balance-finetune", body)


if __name__ == "__main__":
    main()
