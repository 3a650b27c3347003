"""The per-project warnings of /status: what a person should know about the loop, and fix.

Each is {"code": str, "message": str} (an unlearned_class warning also names its "label"); the
campaign page shows the messages verbatim. They are derived
from the last retrain's summary (`last_round`) and the backend's check of its Label Studio key.

| code                  | when |
|-----------------------|------|
| single_class          | the labeled tasks hold one class only: the model predicts it everywhere |
| missing_classes       | some classes (entity types) have no label yet |
| unlearned_class       | a class with labels that the model predicts for almost no scored unlabeled task (or, a class per task, for under a fifth of its share of the labels), or whose estimated recall is near zero |
| skipped_annotations   | annotations or spans were left out of the last training (by reason) |
| annotation_ties       | tasks whose annotations disagree with no majority (the newest was used) |
| publish_shortfall     | Label Studio created fewer predictions than were sent |
| api_key               | Label Studio refuses LABEL_STUDIO_API_KEY, or it is not set |
"""

from __future__ import annotations

from typing import Any

# unlearned_class: a class with at least UNPREDICTED_MIN_LABELS labels that the version predicts for
# fewer than UNPREDICTED_SHARE of the unlabeled tasks it scored, or one with at least
# LOW_RECALL_MIN_LABELS labels whose estimated recall is below LOW_RECALL (fewer labels: too few
# to expect the class learned, or a recall measured on one or two examples), or (a class per task)
# one with that many labels predicted for less than UNDERPREDICTED_RATIO of its share of the labeled
# tasks. The estimate is taken on actively chosen tasks, the easy ones of a rare class among them,
# so it misses most unlearned classes; the ratio leaves room for the rare classes active learning
# over-samples (BENCHMARKS.md "unlearned-warning").
UNPREDICTED_SHARE = 0.005
UNPREDICTED_MIN_LABELS = 5
LOW_RECALL = 0.1
LOW_RECALL_MIN_LABELS = 10
UNDERPREDICTED_RATIO = 0.2


def warning(code: str, message: str, **fields: str) -> dict[str, str]:
    return {"code": code, "message": message, **fields}


def unlearned_warnings(
    label_counts: dict[str, int],
    predicted_counts: dict[str, int] | None,
    n_predicted: int | None,
    quality: dict | None,
    kind: str = "classification",
    n_labeled: int | None = None,
) -> list[dict[str, str]]:
    """Classes with labels that the current model does not learn: predicted for (almost) no scored
    unlabeled task, or for far fewer than their share of the `n_labeled` labeled tasks, or of
    near-zero estimated recall (the quality estimate's per-label table)."""
    from al_core.kinds import kind_of

    task_kind = kind_of(kind)
    what, unit = task_kind.label_noun, task_kind.mention_unit
    predicted_counts = predicted_counts or {}
    per_label = (quality or {}).get("per_label") or {}
    out = []
    for label, given in label_counts.items():
        reasons = []
        share = predicted_counts.get(label, 0) / n_predicted if n_predicted else None
        if share is not None and share < UNPREDICTED_SHARE and given >= UNPREDICTED_MIN_LABELS:
            reasons.append(
                f"the model predicts it for {predicted_counts.get(label, 0)} of the {n_predicted} unlabeled "
                f"tasks it scored ({share:.1%})"
            )
        elif (
            share is not None and unit == "tasks" and n_labeled and given >= LOW_RECALL_MIN_LABELS
            and share < UNDERPREDICTED_RATIO * given / n_labeled
        ):
            reasons.append(
                f"the model predicts it for {share:.1%} of the {n_predicted} unlabeled tasks it scored, while "
                f"{given / n_labeled:.0%} of the labeled tasks are of it"
            )
        row = per_label.get(label) or {}
        recall = row.get("recall")
        if row.get("support") and isinstance(recall, (int, float)) and recall < LOW_RECALL and given >= LOW_RECALL_MIN_LABELS:
            reasons.append(f"its estimated recall is {recall:.2f} ({row['support']} examples measured)")
        if reasons:
            out.append(
                warning(
                    "unlearned_class",
                    f"the {what} {label!r} has {given} labeled {unit} but is not learned: {'; '.join(reasons)}. "
                    f"Label more tasks of it (search Label Studio for likely ones), or check that its labels agree",
                    label=label,
                )
            )
    return out


def class_warnings(label_counts: dict[str, int], kind: str = "classification") -> list[dict[str, str]]:
    if not label_counts:
        return []
    from al_core.kinds import kind_of

    what = kind_of(kind).label_noun
    seen = [label for label, n in label_counts.items() if n > 0]
    missing = [label for label, n in label_counts.items() if n == 0]
    if len(seen) == 1 and missing:
        return [
            warning(
                "single_class",
                f"only the {what} {seen[0]!r} has labels so far: the model predicts it everywhere, with "
                f"a confidence that means nothing; label tasks of {', '.join(map(repr, missing))} too",
            )
        ]
    if missing:
        return [
            warning(
                "missing_classes",
                f"no label yet for {', '.join(map(repr, missing))}: the model cannot predict "
                f"{'it' if len(missing) == 1 else 'them'} until some tasks are labeled so",
            )
        ]
    return []


def round_warnings(last_round: dict[str, Any] | None) -> list[dict[str, str]]:
    """Warnings about the last retrain (its summary as /status shows it)."""
    if not isinstance(last_round, dict):
        return []
    kind = last_round.get("kind") or "classification"
    counts = last_round.get("label_counts") or {}
    out = class_warnings(counts, kind)
    quality = last_round.get("quality") if isinstance(last_round.get("quality"), dict) else None
    out += unlearned_warnings(
        counts, last_round.get("predicted_counts"), last_round.get("n_predicted"), quality, kind,
        last_round.get("n_labeled"),
    )
    skipped = last_round.get("skipped") or {}
    if skipped:
        listed = ", ".join(f"{n} {reason.replace('_', ' ')}" for reason, n in sorted(skipped.items()))
        out.append(
            warning(
                "skipped_annotations",
                f"left out of the last training: {listed} (see docs/backend.md, 'Reading annotations')",
            )
        )
    if last_round.get("ties"):
        out.append(
            warning(
                "annotation_ties",
                f"{last_round['ties']} tasks have disagreeing annotations with no majority; the newest "
                "was used (mark one as ground truth to decide)",
            )
        )
    publish = last_round.get("publish") or {}
    refused = publish.get("refused") or {}
    if refused:
        first = next(iter(refused.values()))
        out.append(
            warning(
                "publish_shortfall",
                f"Label Studio did not create the predictions of version {last_round.get('version')} for "
                f"{len(refused)} tasks ({', '.join(list(refused)[:20])}{' ...' if len(refused) > 20 else ''}): "
                f"{first}",
            )
        )
    return out
