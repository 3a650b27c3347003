"""UPS's premise at the live cadence: does the subset chosen from the cached scores hold the tasks a
full pass would serve? Measured through the simulator (the backend's round and its auto default,
the fine-tune in the background lane), written into BENCHMARKS.md (section ups-premise).

  python -m benchmarks.bench_premise [--sets sst2,agnews] [--seeds 2] [--start 20] [--stop 100]
      [--step 1] [--pool 2000] [--test 500]

A first run scores the whole pool on every round (scoring mode full) so that each round's ranking is a
full pass's; beside it the simulator keeps the subset UPS would have chosen (gamma, T as the
backend's defaults) when the encoder being read was fine-tuned, from the scores cached then (the
frozen head's at the first fine-tune, the last refresh head's after), and records on each round the
share of the full pass's k most uncertain tasks inside it (`ups_premise`; k = 1 is the task the
annotator gets next). Chance is the subset's share of the pool. Reported per label range and by the
labels made since the fine-tune that chose the subset, split by the model whose scores chose it.
Two more runs on the same seeds: the fine-tune embedding the UPS subset on the iteration schedule
(the earlier default) and the default (the whole pool until a pass finds the premise held): the
served model's macro F1 of the three, and the seconds of the fine-tune's pass, say what the premise
costs and what following it buys.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from collections import Counter
from pathlib import Path

from al_core.ups import PREMISE_RULE_TOP, PREMISE_TOP
from benchmarks.bench_refresh import SPLITS
from benchmarks.report import machine_line, write_section
from simulate.config import parse_config
from simulate.runner import Simulation, load_data

AGE_BUCKETS = ((1, 5), (6, 10), (11, 20))


# the fine-tune's pass in each run: "full" scores the whole pool on every round (the measurement);
# "ups-subset" embeds the UPS subset on the iteration schedule (min_premise 0, the earlier default);
# "default" follows the premise (min_premise 0.8: the whole pool until a pass found it held)
VARIANTS = {
    "full": ("", {"mode": "full"}),
    "ups-subset": ("-ups", {"mode": "ups", "min_premise": 0.0}),
    "default": ("-default", {"mode": "ups"}),
}


def simulation_config(name: str, variant: str, args, folder: Path) -> dict:
    suffix, scoring = VARIANTS[variant]
    return {
        "name": f"premise-{name}{suffix}",
        "output_dir": str(folder / f"{name}{suffix}"),
        "dataset": {"name": name, "pool_size": args.pool, "test_limit": args.test, "split_seed": 0, **SPLITS.get(name, {})},
        "acquisition": {"name": "minilm-l6", "model": args.model},
        "successors": [{"name": "tfidf-lr", "kind": "tfidf_lr"}],
        "strategy": "auto",
        "scoring": scoring,
        "seed_set": {"count": args.start},
        "batch": {"count": args.step},
        "iterations": (args.stop - args.start) // args.step,
        "seeds": list(range(args.seeds)),
    }


def run_set(name: str, variant: str, args, folder: Path) -> list[dict]:
    out = Simulation(parse_config(simulation_config(name, variant, args, folder)), progress=False).run()
    return read_rows(out)


def read_rows(out: Path, stop: int | None = None) -> list[dict]:
    """A run's records of the acquisition model (one successor's); with `stop`, of the seeds that reached it."""
    path = out / "results.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    rows = [r for r in rows if r["successor"] == "tfidf-lr"]
    if stop is not None:
        done = {r["seed"] for r in rows if r["labeled_size"] >= stop}
        rows = [r for r in rows if r["seed"] in done]
    return rows


def measured_rounds(rows: list[dict]) -> list[dict]:
    """The rounds with a premise, each with the labels made since its subset was chosen and the
    mode of the model whose cached scores chose it."""
    out = []
    for seed in sorted({r["seed"] for r in rows}):
        chosen_at = chosen_by = None
        for r in sorted((r for r in rows if r["seed"] == seed), key=lambda r: r["iteration"]):
            if r.get("ups_premise") and chosen_at is not None and r["acquisition_mode"] == "refresh":
                out.append({**r, "age": r["labeled_size"] - chosen_at, "chosen_by": chosen_by})
            if r.get("finetune_accepted"):  # the next rounds read the encoder this fine-tune took up
                chosen_at, chosen_by = r["labeled_size"], r["acquisition_mode"]
    return out


def premise_row(rounds: list[dict]) -> str:
    if not rounds:
        return "| 0 |" + " - |" * (len(PREMISE_TOP) + 1)
    cells = [f"{statistics.fmean(r['ups_premise'][str(k)] for r in rounds):.2f}" for k in PREMISE_TOP]
    chance = statistics.fmean(r["ups_subset_share"] for r in rounds)
    return f"| {len(rounds)} | " + " | ".join(cells) + f" | {chance:.2f} |"


def served_rows(runs: dict[str, list[dict]], rarest: str, every: int = 20) -> list[str]:
    """Per label count (every `every`): the served model's macro F1 / accuracy / recall of the `rarest`
    held-out class in each run (mean over the seeds every run finished), then each run's seconds of the
    fine-tune's pass beside its fit (medians: the runs shared the cores)."""

    def at(rows: list[dict], n: int) -> str:
        picked = [r for r in rows if r["labeled_size"] == n]
        if not picked:
            return "-"
        figures = [[r["acquisition_score"] for r in picked], [r["acquisition_accuracy"] for r in picked]]
        figures.append([r["acquisition_recall"][rarest] for r in picked])
        return " / ".join(f"{statistics.fmean(f):.3f}" for f in figures)

    def passes(rows: list[dict]) -> str:
        tunes = [r for r in rows if r.get("finetune_timings")]
        if not tunes:
            return "-"
        seconds = statistics.median(r["finetune_timings"]["inference_s"] for r in tunes)
        fits = statistics.median(r["finetune_timings"]["fit_s"] for r in tunes)
        return f"{seconds:.1f} s beside a {fits:.0f} s fit (median of {len(tunes)})"

    common = set.intersection(*({r["seed"] for r in rows} for rows in runs.values()))  # compared on the same seeds
    runs = {v: [r for r in rows if r["seed"] in common] for v, rows in runs.items()}
    counts = sorted({r["labeled_size"] for rows in runs.values() for r in rows if r["labeled_size"] % every == 0})
    out = ["| " + " | ".join([str(n)] + [at(rows, n) for rows in runs.values()]) + " |" for n in counts]
    out.append("| fine-tune's pass | " + " | ".join(passes(rows) for rows in runs.values()) + " |")
    return out


def default_passes(rows: list[dict]) -> str:
    """The default run's fine-tunes: the premise each whole-pool pass measured (share of the top 10)."""
    tunes = [r for r in rows if r.get("finetune_timings")]
    measured = [f"{r['labeled_size']}: {r['finetune_premise'][str(PREMISE_RULE_TOP)]:.2f}" for r in tunes if r.get("finetune_premise")]
    subset = sum(1 for r in tunes if not r.get("finetune_premise"))
    return (
        f"{len(tunes)} fine-tunes, {subset} of them over the UPS subset; the premise their whole-pool passes "
        f"measured at the fine-tune (labels: share of the new head's top {PREMISE_RULE_TOP}): " + (", ".join(measured) or "none")
    )


def rarest_label(name: str, args, folder: Path) -> str:
    """The least frequent class of a set's held-out texts."""
    data = load_data(parse_config(simulation_config(name, "full", args, folder)))
    return Counter(e.label for e in data.test).most_common()[-1][0]


def section(runs: dict[str, dict[str, list[dict]]], rarest: dict[str, str], args) -> str:
    tops = " | ".join(f"top {k}" for k in PREMISE_TOP)
    head = f"| rounds | {tops} | chance |"
    rule = "|---" * (len(PREMISE_TOP) + 3) + "|"
    lines = [
        "## UPS's premise at the live cadence",
        "",
        machine_line(),
        f"{Path(args.model).name}, the backend's defaults (auto, the fine-tune beside the retrains every 20 labels from "
        f"40, refresh rounds between; UPS gamma 0.1, T 0.01), {args.seeds} seeds, pool {args.pool}, {args.test} held-out "
        f"texts, {args.start} first labels then a retrain every {args.step} label(s). The run `full` scored the whole "
        "pool on every round to measure: per refresh round, the share of the full pass's k most uncertain tasks that "
        "the UPS subset (chosen from the scores cached when its encoder was fine-tuned) held; chance: the subset's "
        "share of the pool. Mean over rounds."
        + (" Summarised (--report-only) from the runs that `python -m benchmarks.bench_premise --out DIR` made in "
           "that folder; a run missing from a table did not finish." if args.report_only else "")
        + " Seconds: the runs may share the cores; read a pass against its own run's fit.",
        "",
    ]
    for name, variants in runs.items():
        rounds = measured_rounds(variants.get("full", []))
        lines += [f"**{name}**, by the labels since the subset was chosen and the model whose scores chose it", ""]
        lines += [f"| labels since | chosen by {head}", "|---" + rule]
        for chooser in ("frozen", "refresh"):
            for low, high in AGE_BUCKETS:
                picked = [r for r in rounds if r["chosen_by"] == chooser and low <= r["age"] <= high]
                lines.append(f"| {low}-{high} | {chooser} {premise_row(picked)}")
        lines += ["", f"**{name}**, by label range (all refresh rounds)", "", f"| labels {head}", rule]
        counts = sorted({r["labeled_size"] for r in rounds})
        for low in range(min(counts, default=0) // 20 * 20, max(counts, default=-1) + 1, 20):
            picked = [r for r in rounds if low <= r["labeled_size"] < low + 20]
            if picked:
                lines.append(f"| {low}-{low + 19} {premise_row(picked)}")
        lines += [
            "",
            f"**{name}**, the served model's macro F1 / accuracy / recall of the rarest held-out class "
            f"({rarest[name]}) on the held-out texts (mean over seeds) with the fine-tune's "
            "vectors of the whole pool on every round (`full`), of the UPS subset on the iteration schedule "
            "(`ups-subset`, the earlier default) and as the premise rule says (`default`, AL_UPS_MIN_PREMISE 0.8)",
            "",
            f"Seeds every run finished: {sorted(set.intersection(*({r['seed'] for r in rows} for rows in variants.values())))}.",
            "",
            "| labels | " + " | ".join(variants) + " |",
            "|---" * (len(variants) + 1) + "|",
            *served_rows(variants, rarest[name]),
            "",
        ]
        if "default" in variants:
            lines += [f"`default`: {default_passes(variants['default'])}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", default="sst2,agnews")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="which runs (the section needs full)")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--start", type=int, default=20)
    parser.add_argument("--stop", type=int, default=100)
    parser.add_argument("--step", type=int, default=1, help="labels between two retrains (1: one annotator)")
    parser.add_argument("--pool", type=int, default=2000)
    parser.add_argument("--test", type=int, default=500)
    parser.add_argument("--model", default=str(Path.home() / ".cache" / "al-models" / "minilm-l6"))
    parser.add_argument("--out", help="keep the simulations here, and resume them (default: a temporary folder)")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument(
        "--report-only", action="store_true",
        help="run nothing: the section from the seeds the runs under --out finished (a column per run found)",
    )
    args = parser.parse_args(argv)
    variants = args.variants.split(",")
    runs: dict[str, dict[str, list[dict]]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(args.out or scratch)
        for variant in variants:
            for name in args.sets.split(","):
                if args.report_only:
                    rows = read_rows(folder / f"{name}{VARIANTS[variant][0]}", args.stop)
                    if rows:
                        runs.setdefault(name, {})[variant] = rows
                    continue
                runs.setdefault(name, {})[variant] = run_set(name, variant, args, folder)
                print(name, variant, "done", flush=True)
    if not all("full" in by_variant for by_variant in runs.values()):  # the premise is measured there
        return
    rarest = {name: rarest_label(name, args, folder) for name in runs}
    markdown = section(runs, rarest, args)
    print(markdown)
    if not args.no_write:
        write_section("ups-premise", markdown)


if __name__ == "__main__":
    main()
