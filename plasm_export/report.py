"""The run's report: counts per class and source, the teacher's score, what was dropped, timings."""

from __future__ import annotations

import json
from collections import Counter

from al_core.kinds import kind_of
from plasm_export.pipeline import ExportResult, Row, check_summary

SOURCES = ("gold", "pseudo_kept", "pseudo_dropped")


def _source(row: Row) -> str:
    return "gold" if row.source == "gold" else ("pseudo_kept" if row.kept else "pseudo_dropped")


def build_report(result: ExportResult) -> dict:
    kind = result.task_kind
    tasks = Counter(_source(r) for r in result.rows)
    per_class: dict[str, dict[str, int]] = {
        label: dict.fromkeys(SOURCES, 0) for label in result.project.config.labels
    }
    for row in result.rows:
        for label in kind.label_mentions(row.example):
            per_class.setdefault(label, dict.fromkeys(SOURCES, 0))[_source(row)] += 1
    n_pseudo = tasks["pseudo_kept"] + tasks["pseudo_dropped"]
    settings = result.settings
    return {
        "source": result.project.origin,
        "kind": kind.name,
        "unit": kind.unit,
        "labels": result.project.config.labels,
        "teacher": {
            "model": settings.teacher,
            "version": result.teacher_version,
            "metric": result.teacher_metric,
            "heldout_score": result.teacher_score,
            "n_train": sum(1 for r in result.rows if r.source == "gold" and not r.heldout),
            "n_heldout": sum(1 for r in result.rows if r.heldout),
            "n_refit": result.n_refit,
            "resumed": result.resumed,
            # the kind's headline (macro F1; span F1 for tagging), its other measures and the
            # per-class precision, recall, F1 and support on the held-out tasks
            "quality": result.teacher_quality,
        },
        "filter": settings.filter,
        "drop_fraction": result.drop_fraction,
        "drop_fraction_rule": "given" if settings.drop_fraction is not None else "1 - teacher held-out score",
        "tasks": {source: tasks[source] for source in SOURCES} | {"total": len(result.rows)},
        "fraction_dropped": (  # by the filter (a lost successor check drops the rest: pseudo_labels_used)
            sum(1 for r in result.rows if r.source == "pseudo" and not r.passed_filter) / n_pseudo if n_pseudo else 0.0
        ),
        "per_class": per_class,
        "training": {k: v for k, v in vars(settings.training).items()},
        "timings_s": {k: round(v, 3) for k, v in result.timings.items()},
        "successor_check": result.successor,
        "pseudo_labels_used": result.uses_pseudo_labels,
        "pseudo_passed_filter": sum(1 for r in result.rows if r.source == "pseudo" and r.passed_filter),
        "verdict": check_summary(result.successor, tasks["pseudo_kept"]),
    }


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _quality_lines(quality: dict | None, noun: str) -> list[str]:
    """The headline, the other figures and the per-label table of a held-out report."""
    if not quality:
        return []
    others = ", ".join(f"{name} {value:.4f}" for name, value in quality["figures"].items() if name != quality["metric"])
    worst = f"; worst {noun}: {quality['worst']}" if quality.get("worst") else ""
    lines = [
        f"{quality['metric']} **{quality['value']:.4f}**" + (f" ({others})" if others else "") + worst + ".",
        "",
        f"| {noun} | precision | recall | F1 | support |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, row in quality["per_label"].items():
        lines.append(
            f"| {label} | {row['precision']:.4f} | {row['recall']:.4f} | {row['f1']:.4f} | {row['support']} |"
        )
    return lines


def report_markdown(report: dict) -> str:
    teacher = report["teacher"]
    noun = kind_of(report["kind"]).label_noun
    lines = [
        "# PLASM export report",
        "",
        f"Source: {report['source']} ({report['kind']}).",
        f"Teacher: `{teacher['model']}` (version `{teacher['version']}`), trained on {teacher['n_train']} gold tasks; "
        f"held-out {teacher['metric']} **{teacher['heldout_score']:.4f}** on {teacher['n_heldout']} tasks; "
        f"then refit on all {teacher['n_refit']} gold tasks to pseudo-label"
        + (" (teacher reloaded from an earlier run)." if teacher["resumed"] else "."),
        f"Filter: `{report['filter']}`; drop fraction {report['drop_fraction']:.4f} ({report['drop_fraction_rule']}); "
        f"{report['tasks']['pseudo_dropped']} of {report['tasks']['pseudo_kept'] + report['tasks']['pseudo_dropped']} "
        f"pseudo-labels dropped ({report['fraction_dropped']:.1%}).",
        "",
        "## Tasks per source",
        "",
        "| gold | pseudo kept | pseudo dropped | total |",
        "|---:|---:|---:|---:|",
        "| {gold} | {pseudo_kept} | {pseudo_dropped} | {total} |".format(**report["tasks"]),
        "",
        f"## Per {kind_of(report['kind']).label_noun}",
        "",
        "| class | gold | pseudo kept | pseudo dropped |",
        "|---|---:|---:|---:|",
    ]
    for label, counts in report["per_class"].items():
        lines.append(f"| {label} | {counts['gold']} | {counts['pseudo_kept']} | {counts['pseudo_dropped']} |")
    if teacher.get("quality"):
        lines += ["", "## Teacher on the held-out tasks", "", *_quality_lines(teacher["quality"], noun)]
    check = report.get("successor_check")
    lines += ["", "## Successor check", "", report["verdict"] + "."]
    if check and check["with_pseudo"]:
        lines += [
            "",
            f"`{check['model']}` ({check['mode']}) trained twice, scored on the same {check['n_heldout']} held-out gold tasks "
            f"({check['metric']}):",
            "",
            "| training set | tasks | score | fit s |",
            "|---|---:|---:|---:|",
            f"| gold only | {check['gold_only']['n_train']} | {check['gold_only']['score']:.4f} | "
            f"{check['gold_only']['fit_s']:.1f} |",
            f"| gold + kept pseudo-labels | {check['with_pseudo']['n_train']} | {check['with_pseudo']['score']:.4f} | "
            f"{check['with_pseudo']['fit_s']:.1f} |",
            "",
            "Written: **"
            + ("gold + pseudo-labels" if check["better"] == "with_pseudo" else "gold only")
            + f"** (pseudo-labels are used when they win by more than {check['margin']:g}).",
        ]
        for name, title in (("gold_only", "gold only"), ("with_pseudo", "gold + kept pseudo-labels")):
            if check[name].get("quality"):
                lines += ["", f"### Successor trained on {title}", "", *_quality_lines(check[name]["quality"], noun)]
    lines += ["", "## Timings (s)", "", "| step | seconds |", "|---|---:|"]
    lines += [f"| {step} | {_fmt(seconds)} |" for step, seconds in report["timings_s"].items()]
    return "\n".join(lines) + "\n"


def report_files(result: ExportResult) -> dict[str, str]:
    report = build_report(result)
    return {
        "report.json": json.dumps(report, indent=1, default=str) + "\n",
        "report.md": report_markdown(report),
    }
