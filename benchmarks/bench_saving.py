"""Labels saved against annotating in random order: the engine's round (al_core.loop.run_round, the
kind's default strategy, the frozen head the auto default trains below its fine-tuning threshold)
replayed on real sets with gold labels, written into BENCHMARKS.md (section labels-saved; with
--mode auto or finetune labels-saved-<mode>; with --warnings unlearned-warning).

  python -m benchmarks.bench_saving [--sets sst2,agnews,trec,goemotions-ekman,agnews-cut,conll2003,wnut17]
      [--orderings random,default] [--steps 1,10] [--seeds 10] [--start 20] [--stop 200]

Per set: `--pool` training tasks and `--test` held-out tasks, embedded once by MiniLM-L6. Per seed,
ordering and step (labels between two retrains: 1 = one annotator, 10 = a team): `--start` first
labels, then rounds of `step` labels taken from the front of the served order, the head refit after
each round. Orderings:
  random   uniform order (the baseline)
  default  what the backend serves and the simulator replays: the cold-start order for the first
           AcquisitionConfig.cold_start_labels labels, then the strategy's ranking in the team's
           serving order (team_size), the audit tasks in their places
  plain    the strategy's ranking as it is after random first labels, the audit tasks in their places
Recorded per label count: the held-out headline (macro F1; span F1 for NER), accuracy, the rarest
label's recall. Reported: the labels each ordering needs to reach random's headline at 100 and at
200 labels (the saving, %), the area under the curve, rarest recall at 100 / 200, sd over seeds.
Random's campaigns of every step make one baseline (its labeled sets do not depend on the step);
with steps 1 and 10 both measured, how much of one annotator's saving a team keeps.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

from al_core.acquisition import (
    AcquisitionConfig,
    audited_query,
    fit_with_estimate,
    is_audit_task,
    predicted_counts,
    without_audit,
)
from al_core.config import TrainingConfig
from al_core.data import Example
from al_core.kinds import KINDS, kind_of
from al_core.loop import adopt_encoder, finetune_encoder, keep_encoder, round_model, run_round
from al_core.models import MemoryEmbeddingCache, build_model, encoder_vectors
from al_core.ordering import QUERY_WINDOW, cold_start_tasks, serving_order
from al_core.strategies import get_strategy
from al_core.ups import InMemoryScoreCache, PoolSubsampler, SubsamplingConfig
from benchmarks.report import machine_line, write_section
from simulate.datasets import shared_dataset


@dataclass
class Campaign:
    """A set's pool and held-out tasks, its kind, model labels and the held-out rarest label."""

    name: str
    kind: str
    labels: list[str]
    pool: list[Example]
    test: list[Example]
    rarest: str


def load_set(name: str, pool_size: int, test_size: int) -> Campaign:
    """Pool and held-out texts; `agnews-cut`: AG News with its last class cut to 5% of the pool."""
    base = "agnews" if name.startswith("agnews") else name
    rng = random.Random(0)
    if base == "agnews":  # one 7,600-row file: split it
        source = shared_dataset("agnews", "test")
        rows = source.labeled()
        rng.shuffle(rows)
        train, test = rows[test_size:], rows[:test_size]
    else:
        source = shared_dataset(base, "train")
        test = shared_dataset(base, "test").labeled()
        train, test = source.labeled(), rng.sample(test, min(test_size, len(test)))
    kind = kind_of(source.kind)
    labels = list(source.labels)
    if name == "agnews-cut":
        rare = sorted(labels)[-1]
        keep = round(0.05 * pool_size)
        pool = rng.sample([e for e in train if e.label != rare], pool_size - keep)
        pool += rng.sample([e for e in train if e.label == rare], keep)
        rng.shuffle(pool)
    else:
        pool = rng.sample(train, min(pool_size, len(train)))
    gold = [kind.gold(e) for e in test]
    support = kind.report(gold, gold, kind.config_labels(labels))["per_label"]
    rarest = min((label for label in support if support[label]["support"]), key=lambda label: support[label]["support"])
    return Campaign(name, source.kind, labels, pool, test, rarest)


def replay(data: Campaign, ordering: str, step: int, seed: int, args, cache) -> list[dict]:
    """One campaign: the headline (macro F1; span F1 for NER), accuracy and the rarest label's recall
    after each round. The round is the engine's (run_round); the order served from its ranking is
    the simulator's and the backend's: cold start, the team's serving order, the audit places."""
    kind = kind_of(data.kind)
    acquisition = acquisition_config(args)
    default = ordering == "default"
    cold = acquisition.cold_start_labels if default else 0
    team = acquisition.team_size if default else 1
    training = TrainingConfig(seed=seed)
    frozen = build_model(data.kind, args.model, data.labels, training, "frozen", cache)
    vectors_of = encoder_vectors(data.kind, args.model, data.labels, training, cache)  # the orders' vectors
    by_id = {e.id: e for e in data.pool}
    share = acquisition.audit_share if ordering != "random" else 0.0  # random order serves no audit place
    first = cold_start_tasks(without_audit(data.pool, seed, share), set(), cold, vectors_of, seed)[: args.start]
    rest = [e.id for e in random.Random(seed).sample(data.pool, len(data.pool)) if e.id not in set(first)]
    labeled = [by_id[i] for i in first + rest[: args.start - len(first)]]
    strategy = get_strategy("random" if ordering == "random" else args.strategy or kind.default_strategy, seed=seed)
    subsampler = PoolSubsampler(SubsamplingConfig(), seed=seed)
    scores = InMemoryScoreCache()  # the campaign's score cache, which UPS reads from round to round
    gold = [kind.gold(e) for e in data.test]
    types = kind.config_labels(data.labels)
    rows, iteration, encoder = [], 0, None
    scratch = tempfile.TemporaryDirectory()  # the fine-tuned encoders refresh rounds read
    while True:
        chosen = {e.id for e in labeled}
        remaining = [e for e in data.pool if e.id not in chosen]
        # the backend's choice (al_core.loop.round_model): a fine-tuned round starts from the
        # pretrained weights, as the backend's does by default; a refresh round reads the last one
        picked = round_model(
            acquisition, data.kind, data.labels, len(labeled),
            lambda mode: frozen if mode == "frozen" else build_model(data.kind, args.model, data.labels, training, mode),
            encoder, lambda n=iteration: str(Path(scratch.name) / f"it{n}"), training, cache,
        )
        model, mode = picked.model, picked.mode
        scores.delete_many(list(chosen))
        # the round's fit: a fine-tuned one as the backend fits it (held-out share and audit tasks out
        # of its training); a frozen head's estimate only where the warnings are measured
        check = args.warnings and len(labeled) % 20 == 0
        if check or mode != "frozen":
            quality = fit_with_estimate(model, labeled, acquisition, seed)
        else:
            model.fit(labeled)
        result = run_round(
            model, labeled, remaining, strategy, subsampler, scores, iteration, f"v{iteration}",
            count=len(remaining), fit=False, acquisition=acquisition, seed=seed, hand_over=picked.hand_over,
            top_up=max(step, QUERY_WINDOW),
        )
        encoder = keep_encoder(picked, model, encoder)
        if picked.finetune_due:  # the backend's background lane: the next round reads what it adopts
            verdict = finetune_encoder(
                lambda mode: frozen if mode == "frozen" else build_model(data.kind, args.model, data.labels, training, mode),
                data.kind, data.labels, labeled, remaining, scores, subsampler, iteration + 1, acquisition,
                str(Path(scratch.name) / f"ft{iteration}"), encoder, training, cache, seed=seed, strategy=strategy,
            )
            encoder = adopt_encoder(verdict, encoder)
        report = kind.report(gold, model.predict(data.test), types)
        if check:
            rows_warned = warned_labels(kind, labeled, result.probs, data.labels, quality)
        rows.append({
            "set": data.name, "ordering": ordering, "step": step, "seed": seed, "labels": len(labeled),
            "headline": report["value"], "metric": report["metric"],
            "accuracy": report["figures"].get("accuracy", report["value"]),
            "rare_recall": report["per_label"][data.rarest]["recall"], "rarest": data.rarest,
            "rare_labels": sum(kind.label_mentions(e).count(data.rarest) for e in labeled),
            "strategy": strategy.name, "words": sum(len(e.words or ()) for e in labeled),
        })
        if check:  # per label: [its labels, held-out recall, warned, estimated recall, predicted share of the pool]
            rows[-1]["warnings"] = {
                t: [rows_warned[t][0], report["per_label"][t]["recall"], *rows_warned[t][1:]]
                for t in types if t in report["per_label"]
            }
        if len(labeled) >= args.stop:
            scratch.cleanup()
            return rows
        ranking = without_audit(result.selected_ids, seed, share)  # audit tasks come at their places only
        window = max(step, QUERY_WINDOW)
        ordered = [e.id for e in serving_order([by_id[i] for i in ranking[:window]], vectors_of, team, seed)]
        ordered += ranking[window:]
        if len(labeled) < cold:
            covered = cold_start_tasks(without_audit(data.pool, seed, share, keep=chosen), chosen, cold, vectors_of, seed)
            ordered = covered + [i for i in ordered if i not in set(covered)]
        take = min(step, args.stop - len(labeled))
        if ordering != "random":  # the audit tasks take their places, as the backend serves them
            labeled_audit = sum(is_audit_task(e.id, seed, share) for e in labeled)
            ordered = audited_query(ordered[:take], [e.id for e in remaining], len(labeled), labeled_audit, seed, share)
        labeled += [by_id[i] for i in ordered[:take]]
        iteration += 1


def warned_labels(kind, labeled: list[Example], probs: dict, model_labels: list[str], quality) -> dict[str, tuple]:
    """Per label, (its labels, whether the backend's unlearned-class warning names it this round,
    the estimated recall, the share of the scored pool predicted as it): the rule's own verdict,
    fed as a retrain feeds it (label counts, what the round predicts over the unlabeled pool, the
    estimate), beside the evidence it reads."""
    from ml_backend.campaign.project_warnings import unlearned_warnings

    types = kind.config_labels(model_labels)
    counts = dict.fromkeys(types, 0)
    for example in labeled:
        for label in kind.label_mentions(example):
            counts[label] = counts.get(label, 0) + 1
    predicted = predicted_counts(kind, list(probs.values()), model_labels)
    estimate = quality.as_dict()
    warnings = unlearned_warnings(counts, predicted, len(probs), estimate, kind.name, len(labeled))
    per_label = estimate.get("per_label") or {}
    return {
        label: (
            counts[label],
            any(w.get("label") == label for w in warnings),
            (per_label.get(label) or {}).get("recall"),
            predicted.get(label, 0) / max(len(probs), 1),
        )
        for label in types
    }


def warning_table(rows: list[dict]) -> str:
    """How often the warning names a label whose held-out recall is below LOW_RECALL with at least
    LOW_RECALL_MIN_LABELS labels (it should, every time), and how often it names a learned one."""
    from ml_backend.campaign.project_warnings import LOW_RECALL, LOW_RECALL_MIN_LABELS

    lines = [
        f"| set | ordering | checks (label x round) | unlearned (recall < {LOW_RECALL}, >= {LOW_RECALL_MIN_LABELS} labels) "
        "| of those warned | warned, held-out recall >= 0.1 | of all warned |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, ordering in sorted({(r["set"], r["ordering"]) for r in rows if "warnings" in r}):
        cells = [c for r in rows if (r["set"], r["ordering"]) == (name, ordering) for c in r.get("warnings", {}).values()]
        unlearned = [c for c in cells if c[1] < LOW_RECALL and c[0] >= LOW_RECALL_MIN_LABELS]
        warned = [c for c in cells if c[2]]
        false = [c for c in warned if c[1] >= LOW_RECALL]
        lines.append(
            f"| {name} | {ordering} | {len(cells)} | {len(unlearned)} | {sum(c[2] for c in unlearned)} | "
            f"{len(false)} | {len(warned)} |"
        )
    return "\n".join(lines)


MODE_NOTES = {
    "frozen": "the head on frozen vectors: the auto default below its fine-tuning threshold",
    "auto": "the backend's default: the frozen head below its threshold, then a fine-tune from the pretrained "
    "weights every {every} labels and refresh rounds between",
    "finetune": "a fine-tune from the pretrained weights every round",
}


def acquisition_config(args) -> AcquisitionConfig:
    """The engine's defaults, or the --team / --cold-start given."""
    given = {
        "team_size": args.team,
        "cold_start_labels": None if args.cold_start is None else args.cold_start * args.start,
        "mode": args.mode,
        "finetune_every": args.finetune_every,
    }
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


def ordering_name(row: dict) -> str:
    """The ordering with the strategy that ranked it ('default (mnlp-task)'; random alone)."""
    if row["ordering"] == "random" or "strategy" not in row:
        return row["ordering"]
    return f"{row['ordering']} ({row['strategy']})"


def mean_curves(rows: list[dict]) -> tuple[dict[int, float], dict[int, float]]:
    """The mean headline and the mean words labeled per label count over `rows`."""
    by_n: dict[int, list[float]] = {}
    words_by_n: dict[int, list[int]] = {}
    for r in rows:
        by_n.setdefault(r["labels"], []).append(r["headline"])
        words_by_n.setdefault(r["labels"], []).append(r.get("words", 0))
    return {n: statistics.mean(v) for n, v in by_n.items()}, {n: statistics.mean(v) for n, v in words_by_n.items()}


def random_baseline(rows: list[dict], name: str) -> tuple[dict[int, float], dict[int, float]]:
    """Random order's mean curves for a set. Its labeled sets do not depend on how often the head is
    refit: its campaigns of every cadence are one baseline, so both cadences are measured against the
    same curve, of more seeds (its row of each cadence against it shows the noise of the figures)."""
    return mean_curves([r for r in rows if r["set"] == name and r["ordering"] == "random"])


def summarise(rows: list[dict]) -> list[dict]:
    out = []
    for name, step in sorted({(r["set"], r["step"]) for r in rows}):
        group = [r for r in rows if r["set"] == name and r["step"] == step]
        by_ordering: dict[str, list[dict]] = {}
        for r in sorted(group, key=ordering_name):
            by_ordering.setdefault(ordering_name(r), []).append(r)
        curves, word_curves = {}, {}
        for ordering, mine in by_ordering.items():
            curves[ordering], word_curves[ordering] = mean_curves(mine)
        random_curve, random_words_curve = random_baseline(rows, name)
        for ordering, curve in curves.items():
            mine = by_ordering[ordering]
            # the same curve against the words labeled (NER: what an annotator reads)
            by_words = {word_curves[ordering][n]: f1 for n, f1 in curve.items()}
            seeds = sorted({r["seed"] for r in mine})
            areas = [statistics.mean(r["headline"] for r in mine if r["seed"] == s) for s in seeds]
            line = {"set": name, "step": step, "ordering": ordering, "seeds": len(seeds), "rarest": mine[0]["rarest"],
                    "metric": mine[0]["metric"],
                    "area": statistics.mean(areas), "area_sd": statistics.stdev(areas) if len(areas) > 1 else 0.0}
            for at in (100, 200):
                if at not in random_curve:
                    continue
                need = labels_to_reach(curve, random_curve[at])
                line[f"saved_{at}"] = None if need is None else 1 - need / at
                random_words = random_words_curve.get(at, 0)
                if random_words:
                    need_words = labels_to_reach(by_words, random_curve[at])
                    line[f"saved_words_{at}"] = None if need_words is None else 1 - need_words / random_words
                    line[f"words_{at}"] = word_curves[ordering][at]
                at_rows = [r for r in mine if r["labels"] == at]
                line[f"f1_{at}"] = statistics.mean(r["headline"] for r in at_rows)
                line[f"f1_{at}_sd"] = statistics.stdev([r["headline"] for r in at_rows]) if len(at_rows) > 1 else 0.0
                line[f"accuracy_{at}"] = statistics.mean(r["accuracy"] for r in at_rows)
                line[f"rare_{at}"] = statistics.mean(r["rare_recall"] for r in at_rows)
                line[f"rare_labels_{at}"] = statistics.mean(r["rare_labels"] for r in at_rows)
            # the largest shortfall against random at any label count (negative: below random)
            line["worst_gap"] = min((curve[n] - random_curve[n] for n in curve if n in random_curve), default=0.0)
            out.append(line)
    return out


def team_kept(rows: list[dict], summary: list[dict], ordering: str = "default") -> str:
    """Per set measured at both cadences, how much of one annotator's saving (a retrain every label)
    a team (every 10) keeps: the savings at 100 and 200 labels and the mean gain over random order's
    curve at the counts both cadences measure, each cadence's, and the team's as a share of it."""
    lines = [
        "| set | saved at 100 / 200, one annotator | saved at 100 / 200, a team | kept at 100 / 200 "
        "| mean gain over random, one annotator / a team (kept) |",
        "|---|---|---|---|---|",
    ]
    for name in sorted({s["set"] for s in summary}):
        mine = {s["step"]: s for s in summary if s["set"] == name and s["ordering"].split(" ")[0] == ordering}
        if 1 not in mine or 10 not in mine:
            continue
        baseline = random_baseline(rows, name)[0]
        gains = {}
        for step in (1, 10):
            curve = mean_curves([r for r in rows if r["set"] == name and r["step"] == step
                                 and r["ordering"] == ordering])[0]
            common = [n for n in curve if n % 10 == 0 and n in baseline]
            gains[step] = statistics.mean(curve[n] - baseline[n] for n in common)

        def kept(one, team) -> str:
            return "-" if one is None or team is None or one <= 0 else f"{100 * team / one:.0f}%"

        one, team = mine[1], mine[10]
        lines.append(
            f"| {name} | {pct(one.get('saved_100'))} / {pct(one.get('saved_200'))} | {pct(team.get('saved_100'))} / "
            f"{pct(team.get('saved_200'))} | {kept(one.get('saved_100'), team.get('saved_100'))} / "
            f"{kept(one.get('saved_200'), team.get('saved_200'))} | {gains[1]:+.3f} / {gains[10]:+.3f} "
            f"({kept(gains[1], gains[10])}) |"
        )
    return "\n".join(lines) if len(lines) > 2 else ""


def pct(v) -> str:
    return "never" if v is None else "-" if v == "-" else f"{100 * v:+.0f}%"


def words_cell(line: dict) -> str:
    """Tagging: the saving counted in words labeled instead of sentences (what an annotator reads)."""
    if "words_200" not in line:
        return "-"
    return f"{pct(line.get('saved_words_100', '-'))} / {pct(line['saved_words_200'])} ({line['words_200']:.0f})"


def table(summary: list[dict]) -> str:
    lines = [
        "| set (rarest label) | labels per retrain | ordering | seeds | saved at 100 | saved at 200 | headline at 100 | "
        "headline at 200 | accuracy at 100 / 200 | area (sd) | worst gap to random | rarest recall 100 | rarest recall 200 (its labels) | "
        "NER: saved in words at 100 / 200 (words at 200) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summary:
        lines.append(
            f"| {s['set']} ({s['rarest']}; {s['metric']}) | {s['step']} | {s['ordering']} | {s['seeds']} | {pct(s.get('saved_100', '-'))} | "
            f"{pct(s.get('saved_200', '-'))} | {s.get('f1_100', 0):.3f} ± {s.get('f1_100_sd', 0):.3f} | "
            f"{s.get('f1_200', 0):.3f} ± {s.get('f1_200_sd', 0):.3f} | {s.get('accuracy_100', 0):.3f} / "
            f"{s.get('accuracy_200', 0):.3f} | {s['area']:.3f} ({s['area_sd']:.3f}) | "
            f"{s['worst_gap']:+.3f} | {s.get('rare_100', 0):.2f} | {s.get('rare_200', 0):.2f} "
            f"({s.get('rare_labels_200', 0):.1f}) | {words_cell(s)} |"
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
    parser.add_argument("--strategy", help="the strategy of the default and plain orderings (the kind's default if not given)")
    parser.add_argument("--team", type=int, help="team_size of the default ordering (the engine's default if not given)")
    parser.add_argument("--cold-start", type=lambda v: v.lower() in ("1", "true", "yes", "on"),
                        help="cold_start of the default ordering: on / off (the engine's default if not given)")
    parser.add_argument("--model", default=str(Path.home() / ".cache" / "al-models" / "minilm-l6"))
    parser.add_argument("--rows", help="also write every measured row to this JSON file")
    parser.add_argument("--mode", choices=["frozen", "auto", "finetune"], default="frozen",
                        help="the acquisition mode (auto: the backend's default, fine-tuning from 40 labels)")
    parser.add_argument("--finetune-every", type=int,
                        help="auto: labels between two fine-tunes, refresh rounds between (the engine's default if not given)")
    parser.add_argument("--warnings", action="store_true",
                        help="every 20 labels, also the quality estimate and the backend's unlearned-class warning")
    parser.add_argument("--from-rows", help="summarise the rows of an earlier --rows file instead of measuring")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--section", help="the BENCHMARKS.md section to write (default: the run's kind's own), to keep "
                        "an earlier run of the same kind beside this one")
    args = parser.parse_args(argv)
    rows, sources = [], []
    for path in args.from_rows.split(",") if args.from_rows else []:
        saved = json.loads(Path(path).read_text())
        rows += saved["rows"]
        sources.append(saved["machine"])
    for name in [] if args.from_rows else args.sets.split(","):
        data = load_set(name, args.pool, args.test)
        cache = MemoryEmbeddingCache()
        for step in (int(s) for s in args.steps.split(",")):
            for ordering in args.orderings.split(","):
                for seed in range(args.seeds):
                    rows += replay(data, ordering, step, seed, args, cache)
                    if args.rows:  # after each campaign, so that a long run's finished ones are kept
                        Path(args.rows).write_text(json.dumps({"machine": machine_line(), "rows": rows}))
            print(table(summarise([r for r in rows if r["set"] == name])), flush=True)
    section, body = report(rows, sources, args)
    print(body)
    if not args.no_write:
        write_section(section, body)


def kind_defaults() -> str:
    return f"the kind default ({KINDS['classification'].default_strategy}; {KINDS['tagging'].default_strategy} for NER)"


def only_ner(rows: list[dict]) -> bool:
    return bool(rows) and all(r["metric"] == "span_f1" for r in rows)


def section_name(args, rows: list[dict]) -> str:
    """Each kind of run has its own BENCHMARKS.md section: the frozen head's saving, the saving in
    another acquisition mode, NER's saving run alone, and the warning run; `--section` names another."""
    if args.section:
        return args.section
    if args.warnings:
        return "unlearned-warning"
    name = "labels-saved" if args.mode == "frozen" else f"labels-saved-{args.mode}"
    return name + ("-ner" if only_ner(rows) else "")


def report(rows: list[dict], sources: list[str], args) -> tuple[str, str]:
    """(section name, markdown) of the rows measured."""
    defaults = acquisition_config(args)
    measured = "".join(f"Rows measured by: {line}\n" for line in sources) if sources else ""
    setting = (
        f"{Path(args.model).name}, acquisition mode {args.mode} ({MODE_NOTES[args.mode].format(every=defaults.finetune_every)}), strategy "
        f"{args.strategy or kind_defaults()}, team_size {defaults.team_size}, "
        f"cold_start_labels {defaults.cold_start_labels}; pool {args.pool}, {args.test} held-out tasks (fewer where "
        f"the test split is smaller), {args.start} -> {args.stop} labels."
    )
    if args.warnings:
        body = (
            "## The unlearned-class warning against held-out recall\n\n" + machine_line() + measured + "\n"
            + setting + " Every 20 labels, the round's quality estimate and pool predictions through the backend's "
            "rule (ml_backend.campaign.project_warnings), each label's held-out recall beside whether the warning "
            "named it:\n\n" + warning_table(rows) + "\n"
        )
        return section_name(args, rows), body
    summary = summarise(rows)
    title = "## Labels saved against random order" + ("" if args.mode == "frozen" else f" ({args.mode} mode)")
    title += ": NER" if only_ner(rows) else ""
    title += ", one annotator and a team" if len({r["step"] for r in rows}) > 1 else ""
    body = (
        title + "\n\n" + machine_line() + measured + "\n" + setting + " 'saved at N': the labels the ordering needs "
        "(mean curve over seeds, linear between the counts measured) to reach random order's mean headline at N, as "
        "a share of N saved; 'worst gap': the lowest difference to random's mean curve at any count.\n\n"
        + table(summary) + "\n"
    )
    kept = team_kept(rows, summary)
    if kept:
        body += "\nA team (a retrain every 10 labels) against one annotator (every label), the default order:\n\n" + kept + "\n"
    return section_name(args, rows), body


if __name__ == "__main__":
    main()
