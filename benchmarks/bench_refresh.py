"""Refresh rounds between fine-tunes against fine-tuning every round and the frozen head: the served
model's quality and the seconds to a fresh ordering, per label count, through the simulator (the
backend's round, its auto default), written into BENCHMARKS.md (section refresh-rounds).

  python -m benchmarks.bench_refresh [--sets sst2,agnews] [--seeds 2] [--stop 100] [--step 10]
      [--pool 1000] [--test 500] [--every 20] [--variants refresh,frozen]

Variants, each on the same seeds, seed set and data:
  finetune-every-round  auto with finetune_every 0 (a fine-tune on each retrain from the threshold)
  refresh               auto with finetune_every --every (the default): a fine-tune every so many
                        labels, a head over the last fine-tuned encoder in between
  frozen                the frozen head on the pretrained encoder every round
Per label count: the acquisition model's held-out macro F1 and accuracy (mean over seeds) and the
seconds of its round (fit, scoring, ordering: what an annotator waits for before the ordering
reflects their label, on this machine). The goal (issue: a live loop that stays live): refresh at
every count at least the better of the other two minus 0.01, in seconds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from benchmarks.report import machine_line, write_section
from simulate.config import parse_config
from simulate.runner import Simulation

VARIANTS = {
    "finetune-every-round": {"mode": "auto", "finetune_every": 0},
    "refresh": {"mode": "auto"},  # finetune_every: --every
    "frozen": {"mode": "frozen"},
}


# sets stored with one labeled split: the held-out texts are drawn from it
SPLITS = {"agnews": {"pool_split": "test", "test_split": None, "test_size": 1600}}


def simulation_config(name: str, variant: str, args, folder: Path) -> dict:
    modes = dict(VARIANTS[variant])
    if variant == "refresh":
        modes["finetune_every"] = args.every
    return {
        "name": f"refresh-{name}-{variant}",
        "output_dir": str(folder / f"{name}-{variant}"),
        "dataset": {"name": name, "pool_size": args.pool, "test_limit": args.test, "split_seed": 0, **SPLITS.get(name, {})},
        "acquisition": {"name": "minilm-l6", "model": args.model},
        "successors": [{"name": "tfidf-lr", "kind": "tfidf_lr"}],
        "strategy": "auto",
        "seed_set": {"count": args.start},
        "batch": {"count": args.step},
        "iterations": (args.stop - args.start) // args.step,
        "seeds": list(range(args.seeds)),
        "acquisition_mode": modes,
    }


def run_variant(name: str, variant: str, args, folder: Path) -> list[dict]:
    config = parse_config(simulation_config(name, variant, args, folder))
    out = Simulation(config, progress=False).run()
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    return [r for r in rows if r["successor"] == "tfidf-lr"]


def summarise(rows: list[dict]) -> dict[int, dict]:
    """Per label count: mean macro F1, accuracy, round seconds and the modes seen."""
    by_count: dict[int, list[dict]] = {}
    for r in rows:
        by_count.setdefault(r["labeled_size"], []).append(r)
    return {
        n: {
            "f1": statistics.fmean(r["acquisition_score"] for r in rs),
            "accuracy": statistics.fmean(r["acquisition_accuracy"] for r in rs),
            "seconds": statistics.fmean(r["acq_fit_s"] + r["inference_s"] + r["select_s"] for r in rs),
            "modes": sorted({r["acquisition_mode"] for r in rs}),
            # background fine-tunes run after this count's round: how many the verdict took up
            "taken_up": [r["finetune_accepted"] for r in rs if r.get("finetune_accepted") is not None],
            # and what taking each up would change on the test set (the head over the new encoder
            # against the head served, both fit on this count's labels); None: not recorded
            "gains": [
                (r["finetune_accepted"], _gain(r)) for r in rs if r.get("finetune_accepted") is not None
            ],
        }
        for n, rs in sorted(by_count.items())
    }


def _gain(row: dict) -> float | None:
    verdict = row.get("finetune_verdict")
    return None if not verdict else verdict["candidate_score"] - row["acquisition_score"]


def verdict_lines(refresh: dict[int, dict]) -> list[str]:
    """The verdicts set against the test set: how often a fine-tune's head beat the served one there,
    how often the verdict agreed, and the mean test-set change of the fine-tunes taken up / rejected."""
    judged = [(accepted, gain) for row in refresh.values() for accepted, gain in row.get("gains", []) if gain is not None]
    if not judged:
        return []
    better = [(a, g) for a, g in judged if g > 0]
    agreed = sum(1 for a, g in judged if a == (g > 0))
    taken = [g for a, g in judged if a]
    rejected = [g for a, g in judged if not a]

    def mean(values: list[float]) -> str:
        return f"{statistics.fmean(values):+.3f}" if values else "none"

    return [
        "",
        f"The verdicts against the test set (a head over the new encoder against the head served, both fit on the "
        f"same labels): the new one scored higher in {len(better)} of {len(judged)} fine-tunes; the verdict agreed "
        f"with the test set in {agreed} of {len(judged)} (took up {sum(1 for a, _ in better if a)} of the "
        f"{len(better)} better, rejected {sum(1 for a, g in judged if not a and g <= 0)} of the "
        f"{len(judged) - len(better)} not better). Mean test-set change (macro F1) of those taken up {mean(taken)} "
        f"({len(taken)}), of those rejected {mean(rejected)} ({len(rejected)}; positive: what rejecting them gave away).",
    ]


def section(results: dict[str, dict[str, dict[int, dict]]], args) -> str:
    lines = [
        "## Refresh rounds between fine-tunes",
        "",
        machine_line(),
        f"MiniLM-L6, the kind's default strategy, {args.seeds} seeds, pool {args.pool}, {args.test} held-out texts, "
        f"{args.start} first labels then rounds of {args.step}; refresh: a fine-tune every {args.every} labels. "
        "Macro F1 / accuracy of the served (acquisition) model on the held-out texts, mean over seeds; "
        "s: seconds of the round (fit, scoring, ordering), the wait for a fresh ordering on this machine.",
        "",
    ]
    for name, variants in results.items():
        lines += [
            f"**{name}**",
            "",
            "| labels | every round: F1 / acc / s | refresh: F1 / acc / s (mode) | frozen: F1 / acc / s | refresh vs best |",
            "|---|---|---|---|---|",
        ]
        every, refresh, frozen = (variants[v] for v in VARIANTS)
        for n in refresh:
            a, b, c = every[n], refresh[n], frozen[n]
            gap = b["f1"] - max(a["f1"], c["f1"])
            lines.append(
                f"| {n} | {a['f1']:.3f} / {a['accuracy']:.3f} / {a['seconds']:.1f} "
                f"| {b['f1']:.3f} / {b['accuracy']:.3f} / {b['seconds']:.1f} ({', '.join(b['modes'])}) "
                f"| {c['f1']:.3f} / {c['accuracy']:.3f} / {c['seconds']:.1f} | {gap:+.3f} |"
            )
        verdicts = [(n, row["taken_up"]) for n, row in refresh.items() if row.get("taken_up")]
        if verdicts:
            taken = sum(sum(v) for _, v in verdicts)
            lines += [
                "",
                f"Background fine-tunes of the refresh variant taken up by the verdict: {taken} of "
                f"{sum(len(v) for _, v in verdicts)} (labels: taken up / run, over the seeds: "
                + ", ".join(f"{n}: {sum(v)}/{len(v)}" for n, v in verdicts)
                + ").",
            ]
        lines += verdict_lines(refresh)
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", default="sst2,agnews")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--start", type=int, default=20)
    parser.add_argument("--stop", type=int, default=100)
    parser.add_argument("--step", type=int, default=10)
    parser.add_argument("--pool", type=int, default=1000)
    parser.add_argument("--test", type=int, default=500)
    parser.add_argument("--every", type=int, default=20, help="finetune_every of the refresh variant")
    parser.add_argument("--model", default=str(Path.home() / ".cache" / "al-models" / "minilm-l6"))
    parser.add_argument("--out", help="keep the simulations here (default: a temporary folder)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="a subset prints its summaries only")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    variants = args.variants.split(",")
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}: choose among {', '.join(VARIANTS)}")
    results: dict[str, dict[str, dict[int, dict]]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(args.out or scratch)
        for name in args.sets.split(","):
            results[name] = {}
            for variant in variants:
                results[name][variant] = summarise(run_variant(name, variant, args, folder))
                print(name, variant, json.dumps(results[name][variant]), flush=True)
            if "refresh" in variants:
                print("\n".join(verdict_lines(results[name]["refresh"])).strip(), flush=True)
    if set(variants) != set(VARIANTS):
        print("a subset of the variants: the section (every variant side by side) is not written")
        return
    markdown = section(results, args)
    print(markdown)
    if not args.no_write:
        write_section("refresh-rounds", markdown)


if __name__ == "__main__":
    main()
