"""The paper's findings, checked on the ready simulation configs' results.

Usage: python -m benchmarks.sim_findings RESULTS_DIR [--report docs/simulations]

Reads the results of simulate/configs/*.yaml runs (al-simulate run), compares the pairs below
seed by seed (the same seeds give both runs the same seed set and test split) and writes the
"simulations" section of BENCHMARKS.md; with --report it also writes the full al-simulate report
(curves, timing tables) there.

Scores are the successor's test score at the last iteration both runs reached (accuracy for AG
News, strict span F1 for CoNLL-2003) and the mean over all iterations (the area under the
learning curve divided by its length). With d the per-seed differences and se their standard
error (std / sqrt(seeds)): a difference "holds" when mean(d) > se and at least two thirds of the
seeds agree, is "unclear" when |mean(d)| <= se, and goes "the other way" below -se; "no quality
cost" (UPS) and "gap closed" (PLASM) hold when mean(d) <= se.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path
from statistics import mean, stdev

from benchmarks.report import machine_line, write_section
from simulate.report import load_records, write_report

# (finding, dataset, (config, successor) of the run that should score lower or equal,
#  (config, successor) of the reference, kind). kind: "lower" = the first is expected below the
# second (ASM; random below AL); "closes" = PLASM brings the first up to the second; "same" = no
# quality cost expected (UPS, subsampling is the control).
COMPARISONS = [
    ("ASM: MiniLM-L6 on MiniLM-L3's queries vs on its own", "AG News",
     ("agnews-asm", "minilm-l6"), ("agnews-matched-l6", "matched"), "lower"),
    ("PLASM closes ASM: MiniLM-L6 + pseudo-labels vs matched MiniLM-L6", "AG News",
     ("agnews-asm", "minilm-l6+plasm"), ("agnews-matched-l6", "matched"), "closes"),
    ("PLASM for a classical successor: TF-IDF + pseudo-labels vs TF-IDF", "AG News",
     ("agnews-asm", "tfidf-lr"), ("agnews-asm", "tfidf-lr+plasm"), "lower"),
    ("UPS costs no quality: MiniLM-L3 with UPS vs full scoring", "AG News",
     ("agnews-ups", "matched"), ("agnews-asm", "matched"), "same"),
    ("Random subsampling of UPS's size vs full scoring (control)", "AG News",
     ("agnews-subsample", "matched"), ("agnews-asm", "matched"), "same"),
    ("AL beats random: MiniLM-L3, random vs least confidence", "AG News",
     ("agnews-random", "matched"), ("agnews-asm", "matched"), "lower"),
    ("AL beats random: TF-IDF on random vs on MiniLM-L3's queries", "AG News",
     ("agnews-random", "tfidf-lr"), ("agnews-asm", "tfidf-lr"), "lower"),
    ("ASM: GloVe BiLSTM on MiniLM-L3's queries vs on its own", "CoNLL-2003",
     ("conll-asm", "glove-bilstm"), ("conll-matched-bilstm", "matched"), "lower"),
    ("PLASM closes ASM: BiLSTM + pseudo-labels vs matched BiLSTM", "CoNLL-2003",
     ("conll-asm", "glove-bilstm+plasm"), ("conll-matched-bilstm", "matched"), "closes"),
    ("UPS costs no quality: MiniLM-L3 with UPS vs full scoring", "CoNLL-2003",
     ("conll-ups", "matched"), ("conll-asm", "matched"), "same"),
    ("AL beats random: MiniLM-L3, random vs MNLP", "CoNLL-2003",
     ("conll-random", "matched"), ("conll-asm", "matched"), "lower"),
    ("AL beats random: BiLSTM on random vs on MiniLM-L3's queries", "CoNLL-2003",
     ("conll-random", "glove-bilstm"), ("conll-asm", "glove-bilstm"), "lower"),
]


def _scores(records: list[dict]) -> dict[tuple[str, str], dict[int, dict[int, float]]]:
    """(config, successor) -> seed -> iteration -> score."""
    out: dict[tuple[str, str], dict[int, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for r in records:
        out[(r["config"], r["successor"])][r["seed"]][r["iteration"]] = r["successor_score"]
    return out


def _at(curve: dict[int, float], iteration: int) -> float:
    return curve[iteration]


def _fmt(values: list[float], digits: int = 3) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{mean(values):.{digits}f} ± {stdev(values):.{digits}f}"


def verdict(kind: str, diffs: list[float]) -> str:
    """diffs: reference minus the first, per seed (positive: the first scores lower)."""
    if len(diffs) < 2:
        return "too few seeds"
    m, se = mean(diffs), stdev(diffs) / len(diffs) ** 0.5
    if kind == "same":
        return "holds (no quality cost)" if m <= se else f"does not hold (lower by {m:.3f})"
    if kind == "closes":
        return "holds (gap closed)" if m <= se else f"does not hold ({m:.3f} still missing)"
    agree = sum(d > 0 for d in diffs)
    if m > se and agree * 3 >= 2 * len(diffs):
        return f"holds ({agree}/{len(diffs)} seeds)"
    if m < -se:
        return f"the other way ({len(diffs) - agree}/{len(diffs)} seeds)"
    return "unclear (within one standard error)"


def findings_table(records: list[dict]) -> str:
    scores = _scores(records)
    lines = [
        "| dataset | comparison | first: last iteration | reference: last iteration | difference (reference - first) "
        "| mean over the curve: first / reference | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for finding, dataset, first, reference, kind in COMPARISONS:
        a, b = scores.get(first), scores.get(reference)
        if not a or not b:
            lines.append(f"| {dataset} | {finding} | not run | | | | |")
            continue
        seeds = sorted(set(a) & set(b))
        last = {s: min(max(a[s]), max(b[s])) for s in seeds}  # a run still going is compared where it is
        final_a = [_at(a[s], last[s]) for s in seeds]
        final_b = [_at(b[s], last[s]) for s in seeds]
        diffs = [y - x for x, y in zip(final_a, final_b, strict=True)]
        # PLASM runs once, at the last iteration: no curve to average
        curves = all(len(a[s]) > 1 and len(b[s]) > 1 for s in seeds)
        auc = (
            f"{mean(mean(a[s].values()) for s in seeds):.3f} / {mean(mean(b[s].values()) for s in seeds):.3f}"
            if curves
            else "-"
        )
        lines.append(
            f"| {dataset} | {finding} (`{first[0]}` {first[1]} vs `{reference[0]}` {reference[1]}) | "
            f"{_fmt(final_a)} | {_fmt(final_b)} | {_fmt(diffs)} | {auc} | "
            f"{verdict(kind, diffs)} |"
        )
    return "\n".join(lines)


def ups_cost_table(records: list[dict]) -> str:
    """Pool inference of UPS against full scoring, summed over the run (one row per record set)."""
    per_run: dict[str, dict[int, dict[int, dict]]] = defaultdict(lambda: defaultdict(dict))
    for r in records:
        per_run[r["config"]][r["seed"]][r["iteration"]] = r
    lines = [
        "| config | scoring | tasks scored per run | pool inference per run (s) | acquisition training per run (s) |",
        "|---|---|---|---|---|",
    ]
    for config in sorted(per_run):
        seeds = per_run[config]
        scored = [sum(r.get("n_scored", 0) for r in its.values()) for its in seeds.values()]
        inference = [sum(r.get("inference_s", 0.0) for r in its.values()) for its in seeds.values()]
        fit = [sum(r.get("acq_fit_s", 0.0) for r in its.values()) for its in seeds.values()]
        first = next(iter(next(iter(seeds.values())).values()))
        if first["strategy"] == "random":  # random queries score nothing
            lines.append(f"| {config} | none (random queries) | 0 | - | {_fmt(fit, 1)} |")
            continue
        lines.append(f"| {config} | {first['scoring']} | {mean(scored):,.0f} | {_fmt(inference, 1)} | {_fmt(fit, 1)} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", help="folder holding one results folder per config")
    parser.add_argument("--report", help="also write the al-simulate report (curves, tables) here")
    args = parser.parse_args(argv)
    records = load_records([args.results])
    report_line = ""
    if args.report:
        # one report per dataset (the configs' name prefix), so curves share a metric
        groups: dict[str, list[Path]] = defaultdict(list)
        for folder in sorted(p for p in Path(args.results).iterdir() if p.is_dir()):
            groups[folder.name.split("-")[0]].append(folder)
        summaries = [write_report(folders, Path(args.report) / dataset) for dataset, folders in groups.items()]
        links = ", ".join(f"[{s}]({s})" for s in summaries)
        report_line = f"Curves, per-iteration timing tables and the PLASM tables: {links}.\n\n"
    configs = sorted({r["config"] for r in records})
    write_section(
        "simulations",
        "## Simulations: the paper's findings at this machine's scale\n\n"
        + machine_line()
        + f"\nConfigs: {', '.join(f'`{c}`' for c in configs)} (simulate/configs/, 3 seeds each; two runs at a time, "
        "one torch thread each). " + report_line + (__doc__.split("\n\n")[3]).replace("\n", " ") + "\n\n"
        + findings_table(records)
        + "\n\nPool scoring over a whole run (mean over seeds). Seconds are not comparable across runs: two "
        "runs shared the 2 cores, and some overlapped with test suites; compare the tasks scored. UPS's speed "
        "is measured side by side in the UPS sections.\n\n"
        + ups_cost_table(records)
        + "\n",
    )


if __name__ == "__main__":
    main()
