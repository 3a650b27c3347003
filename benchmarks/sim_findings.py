"""The paper's findings, checked on the ready simulation configs' results.

Usage: python -m benchmarks.sim_findings RESULTS_DIR [--report docs/simulations]

Reads the results of simulate/configs/*.yaml runs (al-simulate run), compares the pairs below
seed by seed (the same seeds give both runs the same seed set and test split) and writes the
"simulations" section of BENCHMARKS.md; with --report it also writes the full al-simulate report
(curves, timing tables) there.

Scores are the successor's headline score at the last iteration both runs reached (macro F1 for
AG News and TREC, strict span F1 for CoNLL-2003) and the mean over all iterations (the area under the
learning curve divided by its length). With d the per-seed differences and se their standard
error (std / sqrt(seeds)): a difference "holds" when mean(d) > se and at least two thirds of the
seeds agree, is "unclear" when |mean(d)| <= se, and goes "the other way" below -se; "no quality
cost" (UPS) and "gap closed" (PLASM) hold when mean(d) <= se or at most 0.01 (one point).
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path
from statistics import mean, stdev

from benchmarks.report import machine_line, write_section
from simulate.report import load_records, write_report

# (finding id, finding, dataset, (config, successor) of the run that should score lower or equal,
#  (config, successor) of the reference, kind). kind: "lower" = the first is expected below the
# second (ASM; random below AL); "closes" = PLASM brings the first up to the second; "same" = no
# quality cost expected (UPS, subsampling is the control).
COMPARISONS = [
    ("F1", "ASM: MiniLM-L6 on MiniLM-L3's queries vs on its own", "AG News",
     ("agnews-asm", "minilm-l6"), ("agnews-matched-l6", "matched"), "lower"),
    ("F2", "PLASM closes ASM: MiniLM-L6 + pseudo-labels vs matched MiniLM-L6", "AG News",
     ("agnews-asm", "minilm-l6+plasm"), ("agnews-matched-l6", "matched"), "closes"),
    ("F2", "PLASM lifts the mismatched successor: MiniLM-L6 on gold vs + pseudo-labels", "AG News",
     ("agnews-asm", "minilm-l6"), ("agnews-asm", "minilm-l6+plasm"), "lower"),
    ("F2", "PLASM never below gold alone: MiniLM-L6 + pseudo-labels vs on gold", "AG News",
     ("agnews-asm", "minilm-l6+plasm"), ("agnews-asm", "minilm-l6"), "same"),
    ("F2", "PLASM for a classical successor: TF-IDF + pseudo-labels vs TF-IDF", "AG News",
     ("agnews-asm", "tfidf-lr"), ("agnews-asm", "tfidf-lr+plasm"), "lower"),
    ("F3", "UPS costs no quality: MiniLM-L3 with UPS vs full scoring", "AG News",
     ("agnews-ups", "matched"), ("agnews-asm", "matched"), "same"),
    ("F4", "UPS beats random subsampling of its size", "AG News",
     ("agnews-subsample", "matched"), ("agnews-ups", "matched"), "lower"),
    ("F4", "Random subsampling of UPS's size vs full scoring (control)", "AG News",
     ("agnews-subsample", "matched"), ("agnews-asm", "matched"), "same"),
    ("F5", "ASM is worse with MD: TF-IDF on MiniLM-L3's MD queries vs on its LC queries", "AG News",
     ("agnews-md", "tfidf-lr"), ("agnews-asm", "tfidf-lr"), "lower"),
    ("F7", "T = 0 (the most uncertain share only) vs T = 0.01", "AG News",
     ("agnews-ups-t0", "matched"), ("agnews-ups", "matched"), "lower"),
    ("AL", "AL beats random: MiniLM-L3, random vs least confidence", "AG News",
     ("agnews-random", "matched"), ("agnews-asm", "matched"), "lower"),
    ("AL", "AL beats random: TF-IDF on random vs on MiniLM-L3's queries", "AG News",
     ("agnews-random", "tfidf-lr"), ("agnews-asm", "tfidf-lr"), "lower"),
    ("F3", "UPS costs no quality: MiniLM-L3 with UPS vs full scoring", "TREC",
     ("trec-ups", "matched"), ("trec-full", "matched"), "same"),
    ("F4", "UPS beats random subsampling of its size", "TREC",
     ("trec-subsample", "matched"), ("trec-ups", "matched"), "lower"),
    ("F2", "PLASM for a classical successor: TF-IDF + pseudo-labels vs TF-IDF", "TREC",
     ("trec-full", "tfidf-lr"), ("trec-full", "tfidf-lr+plasm"), "lower"),
    ("F2", "PLASM never below gold alone: TF-IDF + pseudo-labels vs on gold", "TREC",
     ("trec-full", "tfidf-lr+plasm"), ("trec-full", "tfidf-lr"), "same"),
    ("F1", "ASM: GloVe BiLSTM on MiniLM-L3's queries vs on its own", "CoNLL-2003",
     ("conll-asm", "glove-bilstm"), ("conll-matched-bilstm", "matched"), "lower"),
    ("F2", "PLASM closes ASM: BiLSTM + pseudo-labels vs matched BiLSTM", "CoNLL-2003",
     ("conll-asm", "glove-bilstm+plasm"), ("conll-matched-bilstm", "matched"), "closes"),
    ("F2", "PLASM lifts the mismatched successor: BiLSTM on gold vs + pseudo-labels", "CoNLL-2003",
     ("conll-asm", "glove-bilstm"), ("conll-asm", "glove-bilstm+plasm"), "lower"),
    ("F2", "PLASM never below gold alone: BiLSTM + pseudo-labels vs on gold", "CoNLL-2003",
     ("conll-asm", "glove-bilstm+plasm"), ("conll-asm", "glove-bilstm"), "same"),
    ("F3", "UPS costs no quality: MiniLM-L3 with UPS vs full scoring", "CoNLL-2003",
     ("conll-ups", "matched"), ("conll-asm", "matched"), "same"),
    ("AL", "AL beats random: MiniLM-L3, random vs MNLP", "CoNLL-2003",
     ("conll-random", "matched"), ("conll-asm", "matched"), "lower"),
    ("AL", "AL beats random: BiLSTM on random vs on MiniLM-L3's queries", "CoNLL-2003",
     ("conll-random", "glove-bilstm"), ("conll-asm", "glove-bilstm"), "lower"),
]

# What the paper reports for each finding (../shared/paper: "Towards Computationally Feasible Deep
# Active Learning"), for the findings table in docs/simulations/README.md.
PAPER = {
    "F1": "ASM: a successor of another family trained on a distilled model's queries scores below the matched "
          "pair (ELECTRA on DistilBERT's queries, Fig. 1a; sharpest on CoNLL-2003)",
    "F2": "PLASM (DistilBERT acquires, BERT pseudo-labels, TracIn filters) brings ELECTRA up to or above "
          "ELECTRA acquiring for itself (Fig. 2)",
    "F3": "UPS (gamma 0.1, T 0.01) shows no quality drop against scoring the whole pool (Fig. 3, 13)",
    "F4": "random subsampling of the pool loses quality against UPS (Fig. 15)",
    "F5": "with MD as the strategy, ASM is more severe: ELECTRA on DistilBERT's MD queries below its LC "
          "queries (Fig. 7)",
    "F6": "the previous iteration's most uncertain 30% hold 0.915 / 0.947 / 0.995 of the full pass's query at "
          "iterations 1 / 2 / 6 (Table 2, AG News)",
    "F7": "T = 0 (only the most uncertain share) loses a little on some iterations against T = 0.01 (Fig. 16)",
    "AL": "(the premise of all of them) uncertainty sampling beats random order",
}
# runs that score the whole pool every iteration: the overlap the paper's Table 2 measures
PREMISE_CONFIGS = ("agnews-asm", "trec-full", "conll-asm")
PREMISE_HOLDS = 0.9  # the paper's lowest figure is 0.915
FINDINGS_MD = Path("docs/simulations/README.md")
NEGLIGIBLE = 0.01  # "no quality cost" and "gap closed" allow one point of the score or one standard error


def _scores(records: list[dict]) -> dict[tuple[str, str], dict[int, dict[int, float]]]:
    """(config, successor) -> seed -> iteration -> score."""
    out: dict[tuple[str, str], dict[int, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for r in records:
        out[(r["config"], r["successor"])][r["seed"]][r["iteration"]] = r["successor_score"]
    return out


def _labels(records: list[dict]) -> dict[tuple[str, int], float]:
    """(config, iteration) -> labeled tasks (mean over seeds: word budgets vary)."""
    sizes: dict[tuple[str, int], list[int]] = defaultdict(list)
    for r in records:
        sizes[(r["config"], r["iteration"])].append(r["labeled_size"])
    return {key: mean(values) for key, values in sizes.items()}


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
        return "holds (no quality cost)" if m <= max(se, NEGLIGIBLE) else f"does not hold (lower by {m:.3f})"
    if kind == "closes":
        return "holds (gap closed)" if m <= max(se, NEGLIGIBLE) else f"does not hold ({m:.3f} still missing)"
    agree = sum(d > 0 for d in diffs)
    if m > se and agree * 3 >= 2 * len(diffs):
        return f"holds ({agree}/{len(diffs)} seeds)"
    if m < -se:
        return f"the other way ({len(diffs) - agree}/{len(diffs)} seeds)"
    return "unclear (within one standard error)"


def _compared(scores, first, reference):
    """Seeds both runs have, and the last iteration both reached per seed (a run still going is
    compared where it is); None when one of the runs is missing."""
    a, b = scores.get(first), scores.get(reference)
    if not a or not b:
        return None
    seeds = sorted(s for s in set(a) & set(b) if set(a[s]) & set(b[s]))
    if not seeds:
        return None
    return a, b, seeds, {s: max(set(a[s]) & set(b[s])) for s in seeds}


def holds_from(kind: str, a, b, seeds: list[int], labels: dict, config: str) -> str:
    """The label count from which the verdict holds at every later iteration both runs reached
    (iteration 0 left out: its labels are the same seed set in both runs)."""
    common = sorted(set.intersection(*(set(a[s]) & set(b[s]) for s in seeds)) - {0})
    if len(common) < 2:
        return "one point (no curve)"
    held = [verdict(kind, [b[s][t] - a[s][t] for s in seeds]).startswith("holds") for t in common]
    if not held[-1]:
        later = [t for t, h in zip(common, held, strict=True) if h]
        return f"not at the last count; held at {len(later)} of {len(common)} counts" if later else "at no count"
    first = len(held)
    while first > 0 and held[first - 1]:
        first -= 1
    return f"from {labels[(config, common[first])]:.0f} labels on"


def findings_table(records: list[dict]) -> str:
    scores = _scores(records)
    lines = [
        "| dataset | comparison | first: last iteration | reference: last iteration | difference (reference - first) "
        "| mean over the curve: first / reference | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for _, finding, dataset, first, reference, kind in COMPARISONS:
        compared = _compared(scores, first, reference)
        if compared is None:
            lines.append(f"| {dataset} | {finding} | not run | | | | |")
            continue
        a, b, seeds, last = compared
        final_a = [a[s][last[s]] for s in seeds]
        final_b = [b[s][last[s]] for s in seeds]
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


def _run_line(records: list[dict], config: str, successor: str, iteration: int) -> str:
    """Data, models, labels (at `iteration`) and seeds of one run, for the findings table's "here" column."""
    rs = [r for r in records if r["config"] == config and r["successor"] == successor]
    first = rs[0]
    labels = mean(r["labeled_size"] for r in rs if r["iteration"] == iteration)
    n = len({r["seed"] for r in rs})
    seeds = f"{n} seed" + ("s" if n > 1 else "")
    return (
        f"`{config}` {successor}: {first['acquisition']} {first['strategy']}, {first['scoring']} scoring, "
        f"pool {first['pool_size'] + first['labeled_size']:,}, {labels:.0f} labels, {seeds}"
    )


def premise_rows(records: list[dict]) -> list[str]:
    """F6: the previous ranking's top 30% against the query, per iteration, in each full-scoring run."""
    lines = []
    for n, config in enumerate(PREMISE_CONFIGS):
        paper = PAPER["F6"] if n == 0 else ""
        rows = [r for r in records if r["config"] == config and r["successor"] == "matched" and r.get("overlap")]
        if not rows:
            lines.append(f"| F6 | {paper} | `{config}` not run on this code | | |")
            continue
        by_iteration: dict[int, list[float]] = defaultdict(list)
        sizes: dict[int, list[int]] = defaultdict(list)
        for r in rows:
            by_iteration[r["iteration"]].append(r["overlap"]["30"])
            sizes[r["iteration"]].append(r["labeled_size"])
        counts = sorted(by_iteration)
        figures = ", ".join(f"{mean(by_iteration[t]):.2f} at {mean(sizes[t]):.0f} labels" for t in counts)
        held = [mean(by_iteration[t]) >= PREMISE_HOLDS for t in counts]
        first = len(held)
        while first > 0 and held[first - 1]:
            first -= 1
        if first == 0:
            verdict_text, since = "holds", f"from {mean(sizes[counts[0]]):.0f} labels (the first count measured)"
        elif first < len(held):
            verdict_text, since = "partly", f"from {mean(sizes[counts[first]]):.0f} labels on"
        else:
            verdict_text, since = "does not hold", f"below {PREMISE_HOLDS} at the last count measured"
        seeds = len({r["seed"] for r in rows})
        lines.append(
            f"| F6 | {paper} | `{config}` (full scoring, {seeds} seeds): the previous top 30% held {figures} of the "
            f"query | {verdict_text} | {since} |"
        )
    return lines


def docs_table(records: list[dict]) -> str:
    """finding | the paper | here | holds? | from what label count: one row per comparison run."""
    scores, labels = _scores(records), _labels(records)
    lines = [
        "| finding | the paper | here | holds? | from what label count |",
        "|---|---|---|---|---|",
    ]
    for fid in ("F1", "F2", "F3", "F4", "F5", "F6", "F7", "AL"):
        if fid == "F6":
            lines.extend(premise_rows(records))
            continue
        for n, (_, finding, dataset, first, reference, kind) in enumerate(c for c in COMPARISONS if c[0] == fid):
            paper = PAPER[fid] if n == 0 else ""  # said once per finding
            compared = _compared(scores, first, reference)
            if compared is None:
                lines.append(f"| {fid} | {paper} | {dataset}: {finding}: not run on this code | | |")
                continue
            a, b, seeds, last = compared
            diffs = [b[s][last[s]] - a[s][last[s]] for s in seeds]
            at = min(last.values())
            here = (
                f"{dataset}: {finding}: {_fmt([a[s][last[s]] for s in seeds])} vs "
                f"{_fmt([b[s][last[s]] for s in seeds])} ({_run_line(records, *first, at)}; "
                f"{_run_line(records, *reference, at)})"
            )
            lines.append(
                f"| {fid} | {paper} | {here} | {verdict(kind, diffs)} | "
                f"{holds_from(kind, a, b, seeds, labels, first[0])} |"
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
    parser.add_argument(
        "--findings", default=str(FINDINGS_MD), help=f"the findings table's file (default: {FINDINGS_MD})"
    )
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
    method = (__doc__.split("\n\n")[3]).replace("\n", " ")
    command = f"`python -m benchmarks.sim_findings {args.results}" + (f" --report {args.report}`" if args.report else "`")
    write_section(
        "findings",
        "## The paper's findings on the code that ships\n\n"
        + machine_line()
        + f"\nReproduce: `al-simulate run simulate/configs/<config>.yaml` for each config named below, then {command}.\n\n"
        + method + " \"From what label count\": the fewest labels from which the "
        "verdict holds at every later count both runs reached (iteration 0, the same seed set in both runs, left out).\n\n"
        + docs_table(records) + "\n",
        Path(args.findings),
    )
    write_section(
        "simulations",
        "## Simulations: the paper's findings at this machine's scale\n\n"
        + machine_line()
        + f"\nConfigs: {', '.join(f'`{c}`' for c in configs)} (simulate/configs/, 3 seeds each; two runs at a time, "
        "one torch thread each). " + report_line + method + " The findings table (finding, the paper's figure, "
        f"here, from what label count): [{args.findings}]({args.findings}).\n\n"
        + findings_table(records)
        + "\n\nPool scoring over a whole run (mean over seeds). Seconds are not comparable across runs: two "
        "runs shared the 2 cores, and some overlapped with test suites; compare the tasks scored. UPS's speed "
        "is measured side by side in the UPS sections.\n\n"
        + ups_cost_table(records)
        + "\n",
    )


if __name__ == "__main__":
    main()
