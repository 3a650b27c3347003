"""Tables and plots from one or more results folders.

- learning curves: mean and standard deviation over seeds of each successor's score against
  the number of labeled tasks, one figure per successor (PLASM variants share their
  successor's figure), plus one for the acquisition models; PNG and SVG;
- timing tables like the paper's: acquisition training, pool inference (and how many tasks
  were scored) and successor training per iteration, and totals over the run;
- the overlap table: how much of each query the previous ranking's top k% held;
- the scores table (the headline, macro F1 or span F1, beside accuracy or micro F1) and each
  class's recall at the last iteration;
- a Markdown summary (summary.md) that links it all.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from simulate.runner import RESULTS

# how a record's metric is named on a plot axis
METRIC_NAMES = {
    "macro_f1": "macro F1",
    "accuracy": "accuracy",
    "micro_f1": "micro F1",
    "span_f1": "span F1 (strict)",
}
# the measures a record may carry beside its headline (successor_<name>), shown next to it
OTHER_MEASURES = ("accuracy", "micro_f1")


def find_results(paths: list[str | Path]) -> list[Path]:
    """results.jsonl files in the given folders (or below them), or the files themselves."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            found.append(path)
        elif (path / RESULTS).is_file():
            found.append(path / RESULTS)
        elif path.is_dir():
            found.extend(sorted(path.glob(f"*/{RESULTS}")))
    return found


def load_records(paths: list[str | Path]) -> list[dict]:
    records = []
    for path in find_results(paths):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a line cut by a kill; the run rewrites it on resume
    return records


def _mean_std(values) -> tuple[float, float]:
    values = np.asarray([v for v in values if v is not None], dtype=float)
    if not len(values):
        return float("nan"), float("nan")
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def _fmt(mean: float, std: float | None = None, digits: int = 3) -> str:
    if np.isnan(mean):
        return "-"
    return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _acquisition_rows(records: list[dict]) -> dict[str, dict[int, dict[int, dict]]]:
    """config -> seed -> iteration -> one record (the acquisition fields repeat per successor)."""
    rows: dict[str, dict[int, dict[int, dict]]] = defaultdict(lambda: defaultdict(dict))
    for r in records:
        rows[r["config"]][r["seed"]].setdefault(r["iteration"], r)
    return rows


def curves(records: list[dict]) -> dict[tuple[str, str], list[dict]]:
    """(config, successor) -> per iteration: labeled size and score, mean and std over seeds."""
    grouped: dict[tuple[str, str], dict[int, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        grouped[(r["config"], r["successor"])][r["iteration"]].append(r)
    out = {}
    for key, by_iteration in grouped.items():
        points = []
        for t in sorted(by_iteration):
            rs = by_iteration[t]
            size = _mean_std([r["labeled_size"] for r in rs])[0]
            mean, std = _mean_std([r["successor_score"] for r in rs])
            acq_mean, acq_std = _mean_std([r["acquisition_score"] for r in rs])
            points.append(
                dict(
                    iteration=t,
                    labeled=size,
                    mean=mean,
                    std=std,
                    acq_mean=acq_mean,
                    acq_std=acq_std,
                    seeds=len(rs),
                    metric=rs[0]["metric"],
                )
            )
        out[key] = points
    return out


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", name)


def plot_curves(records: list[dict], out: Path) -> list[Path]:
    """One figure per successor (with its +plasm variant) and one for the acquisition models."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = curves(records)
    figures: dict[str, list[tuple[str, list[dict], str]]] = defaultdict(list)
    for (config, successor), points in sorted(data.items()):
        figures[successor.removesuffix("+plasm")].append((f"{config} / {successor}", points, "mean"))
    acquisition_seen = set()
    for (config, _successor), points in sorted(data.items()):
        if config not in acquisition_seen:
            acquisition_seen.add(config)
            figures["acquisition models"].append((config, points, "acq_mean"))
    written = []
    for title, lines in figures.items():
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for label, points, field in lines:
            x = np.array([p["labeled"] for p in points])
            y = np.array([p[field] for p in points])
            s = np.array([p["std" if field == "mean" else "acq_std"] for p in points])
            ax.plot(x, y, marker="o", markersize=3, label=label)
            ax.fill_between(x, y - s, y + s, alpha=0.15)
        metric = lines[0][1][0]["metric"]
        ax.set_xlabel("labeled tasks")
        ax.set_ylabel(METRIC_NAMES.get(metric, metric))
        ax.set_title(
            f"{title}: mean ± std over seeds"
            if title == "acquisition models"
            else f"successor {title}: mean ± std over seeds"
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        for suffix in ("png", "svg"):
            path = out / f"curves-{_safe(title)}.{suffix}"
            fig.savefig(path, dpi=120)
            written.append(path)
        plt.close(fig)
    return written


TIMING_FIELDS = [
    ("acq_fit_s", "acq. train (s)"),
    ("inference_s", "pool inference (s)"),
    ("n_scored", "tasks scored"),
    ("successor_fit_s", "successor train (s)"),
]


def timing_table(records: list[dict], config: str) -> str:
    """Per iteration and over the run: mean ± std over seeds (the paper's timing tables)."""
    rows = _acquisition_rows([r for r in records if r["config"] == config])[config]
    successors = defaultdict(lambda: defaultdict(list))  # iteration -> seed -> successor fit times
    for r in records:
        if r["config"] == config and r.get("successor_kind") != "acquisition":  # no double count
            successors[r["iteration"]][r["seed"]].append(r["successor_fit_s"])
    iterations = sorted({t for by_t in rows.values() for t in by_t})
    lines = [
        "| iteration | labeled | " + " | ".join(h for _, h in TIMING_FIELDS) + " | AL iteration (s) |",
        "|---|---|" + "---|" * (len(TIMING_FIELDS) + 1),
    ]
    for t in iterations:
        rs = [by_t[t] for by_t in rows.values() if t in by_t]
        cells = [_fmt(*_mean_std([r["labeled_size"] for r in rs]), digits=0).split(" ")[0]]
        for field, _ in TIMING_FIELDS:
            if field == "successor_fit_s":
                cells.append(_fmt(*_mean_std([sum(successors[t][r["seed"]]) for r in rs]), digits=1))
            else:
                cells.append(
                    _fmt(*_mean_std([r.get(field) for r in rs]), digits=0 if field == "n_scored" else 1)
                )
        cells.append(
            _fmt(*_mean_std([r["acq_fit_s"] + r["inference_s"] + r["select_s"] for r in rs]), digits=1)
        )
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    totals = totals_by_seed(records, config)
    lines.append(
        "| **whole run** | | "
        + " | ".join(
            _fmt(*_mean_std([tot[f] for tot in totals.values()]), digits=0 if f == "n_scored" else 1)
            for f, _ in TIMING_FIELDS
        )
        + f" | {_fmt(*_mean_std([tot['al_s'] for tot in totals.values()]), digits=1)} |"
    )
    return "\n".join(lines)


def totals_by_seed(records: list[dict], config: str) -> dict[int, dict[str, float]]:
    """Per seed, the run's totals: acquisition training, inference, tasks scored, successor training."""
    rows = _acquisition_rows([r for r in records if r["config"] == config])[config]
    last = max(t for by_t in rows.values() for t in by_t)
    out = {}
    for seed, by_t in rows.items():
        if len(by_t) != last + 1:  # an unfinished seed would understate the run's cost
            continue
        acq = list(by_t.values())
        out[seed] = {
            "acq_fit_s": sum(r["acq_fit_s"] for r in acq),
            "inference_s": sum(r["inference_s"] for r in acq),
            "n_scored": sum(r["n_scored"] for r in acq),
            "al_s": sum(r["acq_fit_s"] + r["inference_s"] + r["select_s"] for r in acq),
            "successor_fit_s": sum(
                r["successor_fit_s"]
                for r in records
                if r["config"] == config and r["seed"] == seed and r.get("successor_kind") != "acquisition"
            ),
        }
    return out


def overlap_table(records: list[dict], config: str) -> str | None:
    """Rows: top-k% of the previous ranking; columns: iterations; cells: share of the query held."""
    rows = _acquisition_rows([r for r in records if r["config"] == config])[config]
    by_t: dict[int, list[dict]] = defaultdict(list)
    for per_seed in rows.values():
        for t, r in per_seed.items():
            if r.get("overlap") and r.get("full_scoring"):
                by_t[t].append(r["overlap"])
    if not by_t:
        return None
    iterations = sorted(by_t)
    ks = sorted({k for ovs in by_t.values() for o in ovs for k in o}, key=int)
    lines = [
        "| top-k% / iteration | " + " | ".join(str(t) for t in iterations) + " |",
        "|---|" + "---|" * len(iterations),
    ]
    for k in ks:
        lines.append(
            f"| {k}% | "
            + " | ".join(_fmt(_mean_std([o.get(k) for o in by_t[t]])[0]) for t in iterations)
            + " |"
        )
    return "\n".join(lines)


def estimate_errors(records: list[dict], min_labels: int = 0) -> dict[str, dict]:
    """Per configuration, how far each version's estimates fall from its true test score
    (acquisition_score) over the versions with at least `min_labels` labels: mean absolute error of
    the cross-validated / held-out estimate (on actively chosen tasks) and of the audit estimate,
    the audit estimate's mean signed error (its bias), the share of audit intervals that hold the
    truth, and the share of the last labeled set that were audit tasks (the labels the audit cost).
    The audit's figures again (`*_pool`) against the version's score on the rest of the pool
    (pool_score, where the round scored all of it): what a uniform sample of the pool estimates,
    which the test split measures only where it mixes classes as the pool does. Records written
    before the audit or the pool score lack them: nan."""
    out = {}
    for config, per_seed in _acquisition_rows(records).items():
        rows = [r for seed_rows in per_seed.values() for r in seed_rows.values() if r["labeled_size"] >= min_labels]
        cv = [abs(r["quality_estimate"] - r["acquisition_score"]) for r in rows if r.get("quality_estimate") is not None]
        audited = [r for r in rows if r.get("audit_estimate") is not None]
        last = [seed_rows[max(seed_rows)] for seed_rows in per_seed.values()]
        out[config] = {
            "cv_mae": _mean_std(cv)[0],
            **_audit_errors(audited, "acquisition_score", ""),
            **_audit_errors([r for r in audited if r.get("pool_score") is not None], "pool_score", "_pool"),
            "n_cv": len(cv),
            "n_audit": len(audited),
            "audit_cost": _mean_std([r.get("audit_n", math.nan) / r["labeled_size"] for r in last])[0],
        }
    return out


def _audit_errors(rows: list[dict], truth: str, suffix: str) -> dict:
    """The audit estimate against the `truth` column of `rows`: MAE, bias (the mean signed error:
    below 0, the audit reads low) and the share of intervals holding the truth."""
    errors = [r["audit_estimate"] - r[truth] for r in rows]
    return {
        f"audit_mae{suffix}": _mean_std([abs(e) for e in errors])[0],
        f"audit_bias{suffix}": _mean_std(errors)[0],
        f"coverage{suffix}": _mean_std([r["audit_low"] <= r[truth] <= r["audit_high"] for r in rows])[0],
    }


def estimate_table(records: list[dict], min_labels: int = 0) -> str:
    lines = [
        "| config | MAE, estimate on actively chosen tasks | MAE, audit estimate | audit 95% interval coverage "
        "| the same against the rest of the pool: MAE, coverage | labels that were audit tasks | versions (CV / audit) |",
        "|---|---|---|---|---|---|---|",
    ]
    for config, e in sorted(estimate_errors(records, min_labels).items()):
        lines.append(
            f"| {config} | {_fmt(e['cv_mae'])} | {_fmt(e['audit_mae'])} | {_fmt(e['coverage'], digits=2)} "
            f"| {_fmt(e['audit_mae_pool'])}, {_fmt(e['coverage_pool'], digits=2)} "
            f"| {_fmt(e['audit_cost'], digits=3)} | {e['n_cv']} / {e['n_audit']} |"
        )
    return "\n".join(lines)


def _last_records(records: list[dict], config: str, successor: str) -> list[dict]:
    """The records of the last iteration of a configuration and successor, one per seed."""
    rows = [r for r in records if r["config"] == config and r["successor"] == successor]
    last = max(r["iteration"] for r in rows)
    return [r for r in rows if r["iteration"] == last]


def scores_table(records: list[dict]) -> str:
    """Final score (the headline) beside the other measures, and the mean over the curve, per
    configuration and successor."""
    data = curves(records)
    lines = [
        "| config | successor | seeds | labeled at end | metric | final score | final, other measures | "
        "mean over iterations |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (config, successor), points in sorted(data.items()):
        last = points[-1]
        per_seed = defaultdict(list)
        for r in records:
            if r["config"] == config and r["successor"] == successor:
                per_seed[r["seed"]].append(r["successor_score"])
        curve_means = _mean_std([np.mean(v) for v in per_seed.values()])
        final = _last_records(records, config, successor)
        others = ", ".join(
            f"{METRIC_NAMES[name]} {_fmt(*_mean_std([r.get(f'successor_{name}') for r in final]))}"
            for name in OTHER_MEASURES
            if name != last["metric"] and any(r.get(f"successor_{name}") is not None for r in final)
        )
        lines.append(
            f"| {config} | {successor} | {last['seeds']} | {last['labeled']:.0f} | "
            f"{METRIC_NAMES.get(last['metric'], last['metric'])} | {_fmt(last['mean'], last['std'])} | "
            f"{others or '-'} | {_fmt(*curve_means)} |"
        )
    return "\n".join(lines)


def recall_table(records: list[dict]) -> str | None:
    """Each class's recall on the test set at the last iteration (mean over seeds), per
    configuration and successor; None when the records carry none (older runs)."""
    groups = sorted({(r["config"], r["successor"]) for r in records})
    finals = {key: _last_records(records, *key) for key in groups}
    labels = list(dict.fromkeys(label for rs in finals.values() for r in rs for label in r.get("successor_recall") or {}))
    if not labels:
        return None
    lines = ["| config | successor | " + " | ".join(labels) + " |", "|---|---|" + "---|" * len(labels)]
    for (config, successor), rs in finals.items():
        cells = [_fmt(_mean_std([(r.get("successor_recall") or {}).get(label) for r in rs])[0]) for label in labels]
        lines.append(f"| {config} | {successor} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def runs_table(records: list[dict]) -> str:
    """One line per configuration: what it ran and what the whole run cost."""
    lines = [
        "| config | acquisition | strategy | scoring | seeds | iterations | AL time per run (s) | "
        "pool inference (s) | tasks scored | successor training (s) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for config in sorted({r["config"] for r in records}):
        sample = next(r for r in records if r["config"] == config)
        totals = totals_by_seed(records, config)
        iterations = max(r["iteration"] for r in records if r["config"] == config)
        cells = [
            _fmt(*_mean_std([t[f] for t in totals.values()]), digits=0 if f == "n_scored" else 1)
            for f in ("al_s", "inference_s", "n_scored", "successor_fit_s")
        ]
        lines.append(
            f"| {config} | {sample['acquisition']} | {sample['strategy']} | {sample['scoring']} | "
            f"{len(totals)} | {iterations} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def plasm_table(records: list[dict]) -> str | None:
    rows = [r for r in records if r.get("pseudo_labels")]
    if not rows:
        return None
    grouped = defaultdict(dict)  # one record per seed: the PLASM step is shared by the successors
    for r in rows:
        grouped[(r["config"], r["iteration"])][r["seed"]] = r
    lines = [
        "| config | iteration | teacher held-out score | dropped share | pseudo-labels kept | "
        "accuracy of kept pseudo-labels | check on held-out gold: gold alone / with pseudo | "
        "seeds using pseudo-labels | teacher train + refit (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (config, t), by_seed in sorted(grouped.items()):
        rs = list(by_seed.values())
        checked = [r for r in rs if r.get("check_better")]
        check = (
            f"{_fmt(*_mean_std([r['check_gold_only'] for r in checked]))} / "
            f"{_fmt(*_mean_std([r['check_with_pseudo'] for r in checked]))}"
            if checked else "not run"
        )
        used = sum(1 for r in rs if r.get("n_pseudo_used", r["n_pseudo_kept"]) > 0)
        fit = [r["teacher_fit_s"] + r.get("teacher_refit_s", 0.0) for r in rs]
        lines.append(
            f"| {config} | {t} | {_fmt(*_mean_std([r['teacher_holdout_score'] for r in rs]))} | "
            f"{_fmt(*_mean_std([r['drop_fraction'] for r in rs]))} | "
            f"{_fmt(*_mean_std([r['n_pseudo_kept'] for r in rs]), digits=0)} | "
            f"{_fmt(*_mean_std([r['pseudo_accuracy_kept'] for r in rs]))} | {check} | "
            f"{used} of {len(rs)} | {_fmt(*_mean_std(fit), digits=1)} |"
        )
    return "\n".join(lines)


def write_report(paths: list[str | Path], out: str | Path) -> Path:
    """Writes plots, tables and summary.md into `out`; returns the summary's path."""
    records = load_records(paths)
    if not records:
        from al_core.exceptions import ALError

        raise ALError(f"no results found in {', '.join(map(str, paths))} (expected {RESULTS} files)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    figures = plot_curves(records, out)
    parts = [
        "# Simulation report",
        "",
        "## Runs",
        "",
        runs_table(records),
        "",
        "## Scores",
        "",
        scores_table(records),
        "",
    ]
    recalls = recall_table(records)
    if recalls:
        parts += ["## Recall per class at the last iteration (mean over seeds)", "", recalls, ""]
    parts += [
        "## Learning curves",
        "",
    ]
    parts += [f"![{p.stem}]({p.name})" for p in figures if p.suffix == ".png"]
    parts += ["", "## Time per iteration (mean ± std over seeds; whole-run totals over finished seeds)", ""]
    for config in sorted({r["config"] for r in records}):
        parts += [f"### {config}", "", timing_table(records, config), ""]
    overlaps = [(c, overlap_table(records, c)) for c in sorted({r["config"] for r in records})]
    overlaps = [(c, t) for c, t in overlaps if t]
    if overlaps:
        parts += ["## Share of the full-scoring query within the previous ranking's top k%", ""]
        for config, table in overlaps:
            parts += [f"### {config}", "", table, ""]
    parts += [
        "## Quality estimates against the test score",
        "",
        "Per version, the estimate on the labeled tasks (cross-validated or held out: tasks active learning "
        "chose) and the one on the labeled audit tasks (a uniform sample of the pool), against the version's "
        "true test score.",
        "",
        estimate_table(records),
        "",
    ]
    plasm = plasm_table(records)
    if plasm:
        parts += ["## PLASM pseudo-labels", "", plasm, ""]
    summary = out / "summary.md"
    summary.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return summary
