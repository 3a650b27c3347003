"""The campaign figures of a project: is the model learning, is the ordering worth it, when to stop.

Computed from the retrain history (ml_backend.storage.history, its last records only) and the project's
/status entry; the same dict is served as JSON (/campaign/<project>.json), drawn as SVG plots
and shown on the page.
"""

from __future__ import annotations

import math
from typing import Any

from al_core.acquisition import MIN_AUDIT_LABELS, label_table
from al_core.stopping import StoppingRule

# The timeline's steps, from the summary's timings (seconds); whatever else the total holds is "other".
STEPS = {
    "read": ("read_s",),
    "fit": ("fit_s",),
    "score": ("inference_s", "select_s", "stability_s"),
    "publish": ("publish_s", "activate_s", "publish_rest_s"),
}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def timeline_steps(timings: dict) -> dict[str, float]:
    """Seconds per step of one retrain: read, fit, score, publish and other (the rest of the total)."""
    timings = {k: v for k, v in (timings or {}).items() if _number(v) is not None}
    steps = {name: round(sum(timings.get(k, 0.0) for k in keys), 3) for name, keys in STEPS.items()}
    steps["publish"] = round(
        steps["publish"]
        + sum(v for k, v in timings.items() if k.startswith("publish") and k not in STEPS["publish"]),
        3,
    )
    total = timings.get("total_s", 0.0) + timings.get("stability_s", 0.0)
    steps["other"] = round(max(0.0, total - sum(steps.values())), 3)
    return steps


def quality_points(records: list[dict]) -> list[dict]:
    out = []
    for record in records:
        quality = record.get("quality") if isinstance(record.get("quality"), dict) else {}
        out.append(
            {
                "version": record.get("version"),
                "iteration": record.get("iteration"),
                "n_labeled": record.get("n_labeled"),
                "metric": quality.get("metric"),
                "value": _number(quality.get("value")),
                "method": quality.get("method"),
                "n": quality.get("n"),
                "figures": quality.get("figures") or {},
                "worst": quality.get("worst"),
                "label_counts": record.get("label_counts") or {},
                "audit": audit_point(quality.get("audit"), record.get("audit")),
            }
        )
    return out


def audit_point(estimate: dict | None, sample: dict | None) -> dict:
    """A version's audit estimate (al_core.acquisition.AuditEstimate) and its audit sample (share,
    served, labeled); a record written before the audit, or with it off, has share 0 and no value."""
    estimate = estimate if isinstance(estimate, dict) else {}
    sample = sample if isinstance(sample, dict) else {}
    return {
        "value": _number(estimate.get("value")),
        "low": _number(estimate.get("low")),
        "high": _number(estimate.get("high")),
        "accuracy": _number(estimate.get("accuracy")),
        "accuracy_low": _number(estimate.get("accuracy_low")),
        "accuracy_high": _number(estimate.get("accuracy_high")),
        "n": estimate.get("n") or 0,
        "share": sample.get("share") or estimate.get("share") or 0,
        "served": sample.get("served"),
        "labeled": sample.get("labeled"),
        "min_labels": MIN_AUDIT_LABELS,
    }


def class_recall(records: list[dict]) -> dict[str, list[dict]]:
    """Per label, its estimated recall against its label count, one point per version whose
    estimate has a per-label table (records written before it had one are left out)."""
    out: dict[str, list[dict]] = {}
    for record in records:
        quality = record.get("quality") if isinstance(record.get("quality"), dict) else {}
        counts = record.get("label_counts") or {}
        for label, row in (quality.get("per_label") or {}).items():
            recall = _number((row or {}).get("recall"))
            if recall is None or not row.get("support"):
                continue  # no example of it measured: no recall to show
            out.setdefault(label, []).append(
                {"version": record.get("version"), "iteration": record.get("iteration"),
                 "labels": counts.get(label, 0), "recall": recall}
            )
    return out


def class_quality(records: list[dict]) -> dict:
    """The per-class table of the latest version with an estimate: label, labels given, precision,
    recall, F1, support, predicted (al_core.acquisition.label_table), and its headline."""
    for record in reversed(records):
        quality = record.get("quality") if isinstance(record.get("quality"), dict) else {}
        if quality.get("value") is not None:
            return {
                "version": record.get("version"),
                "metric": quality.get("metric"),
                "value": _number(quality.get("value")),
                "worst": quality.get("worst"),
                "n_predicted": record.get("n_predicted"),
                "rows": label_table(quality, record.get("label_counts"), record.get("predicted_counts")),
            }
    return {"version": None, "metric": None, "value": None, "worst": None, "n_predicted": None, "rows": []}


def stability_figures(records: list[dict], rule: StoppingRule, sample_size: int) -> dict:
    points = []
    for record in records:
        stability = record.get("stability") or {}
        points.append(
            {
                "version": record.get("version"),
                "iteration": record.get("iteration"),
                "n_labeled": record.get("n_labeled"),
                "kappa": _number(stability.get("kappa")),
                "n_compared": stability.get("n_compared", 0),
            }
        )
    kappas = [p["kappa"] for p in points if p["kappa"] is not None]
    mean = rule.window_mean(kappas)
    stop = rule.should_stop(kappas)
    if mean is None:
        sentence = (
            f"Not enough versions yet: the rule needs {rule.window} comparisons of consecutive versions, "
            f"there {'is' if len(kappas) == 1 else 'are'} {len(kappas)}."
        )
    elif stop:
        sentence = (
            f"Stop: the predictions have stabilized. The last {rule.window} retrains changed the model's "
            f"predictions on the sample by little (mean kappa {mean:.3f}, at least {rule.threshold:g}); "
            f"more labels are unlikely to change the model much."
        )
    else:
        sentence = (
            f"Keep annotating: the mean kappa of the last {rule.window} comparisons is {mean:.3f}, "
            f"below {rule.threshold:g}; retrains still change the model's predictions."
        )
    return {
        "rule": rule.describe() + " (stabilizing predictions, Bloodgood and Vijay-Shanker 2009)",
        "threshold": rule.threshold,
        "window": rule.window,
        "sample_size": sample_size,
        "points": points,
        "window_mean": None if mean is None else round(mean, 6),
        "stop": stop,
        "sentence": sentence,
    }


def warnings_of(records: list[dict], status: dict, current: dict | None) -> list[dict]:
    """What needs a person: the /status warnings verbatim, classes with no label, skipped
    annotations, the last error, versions that failed to publish."""
    out = [
        {"code": str(w.get("code", "warning")), "message": str(w.get("message", ""))}
        for w in status.get("warnings") or []
        if isinstance(w, dict)
    ]
    given = {w["code"] for w in out}  # what /status already says is not said twice
    if records and not given & {"missing_classes", "single_class"}:
        last = records[-1]
        counts = last.get("label_counts") or {}
        missing = [c for c in last.get("classes") or [] if not counts.get(c)]
        if missing:
            out.append(
                {
                    "code": "class_without_labels",
                    "message": f"no label yet for {', '.join(missing)}: the model cannot learn "
                    f"{'this class' if len(missing) == 1 else 'these classes'} before someone labels an example",
                }
            )
    for reason, count in sorted((status.get("skipped") or {}).items() if "skipped_annotations" not in given else []):
        out.append({"code": "skipped", "message": f"{count} annotation(s) skipped: {reason}"})
    if status.get("last_error"):
        out.append({"code": "last_error", "message": f"last error: {status['last_error']}"})
    for record in records:
        publish = record.get("publish") or {}
        if publish.get("ok") is False:
            detail = publish.get("error") or "see the backend's log"
            out.append({"code": "publish_failed", "message": f"version {record.get('version')} failed to publish: {detail}"})
    if (
        records
        and current
        and not status.get("running_retrain")
        and int(current.get("iteration", -1)) > int(records[-1].get("iteration", -1))
    ):
        out.append(
            {
                "code": "publish_failed",
                "message": f"version {current.get('version')} was saved but its retrain did not finish "
                "publishing (no history record): Label Studio may still order tasks by an older version",
            }
        )
    return out


def campaign_figures(
    project: str,
    records: list[dict],
    status: dict,
    current: dict | None,
    rule: StoppingRule,
    sample_size: int,
    read_limit: int,
) -> dict:
    last = records[-1] if records else {}
    return {
        "project": project,
        "current_version": (current or {}).get("version"),
        "retrains_shown": len(records),
        "read_limit": read_limit,
        "kind": last.get("kind"),
        "classes": last.get("classes") or [],
        "label_counts": last.get("label_counts") or {},
        "n_labeled": last.get("n_labeled"),
        "n_pool": last.get("n_pool"),
        "quality": quality_points(records),
        "class_quality": class_quality(records),
        "class_recall": class_recall(records),
        "timeline": [
            {
                "version": r.get("version"),
                "iteration": r.get("iteration"),
                "started_at": r.get("started_at"),
                "finished_at": r.get("finished_at"),
                "steps": timeline_steps(r.get("timings") or {}),
                "n_scored": r.get("n_scored"),
                "n_pool": r.get("n_pool"),
                "n_published": r.get("n_published"),
            }
            for r in records
        ],
        "stability": stability_figures(records, rule, sample_size),
        "warnings": warnings_of(records, status, current),
        "skipped": status.get("skipped") or {},
        "last_error": status.get("last_error"),
    }
