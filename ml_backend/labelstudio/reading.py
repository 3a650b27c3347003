"""Annotated tasks -> training examples, with what was left out and why (for /status).

Tasks are read leniently: an NER annotation keeps its valid spans when one span has a label
that is not in the config (or is malformed); a classification annotation whose choice is not
in the config leaves its task out of the training set; overlapping spans keep the earlier one.
Every such case is counted by reason, and so are ties between disagreeing annotations
(al_core.ls_format.choose_annotation).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

from al_core.data import Example
from al_core.exceptions import DataFormatError
from al_core.ls_format import LabelConfig, task_to_example

log = logging.getLogger(__name__)


@dataclass
class ReadReport:
    skipped: Counter = field(default_factory=Counter)  # reason -> annotations/spans/tasks left out
    ties: int = 0  # tasks whose annotations disagreed with no majority (the newest was taken)
    examples: dict[str, str] = field(default_factory=dict)  # reason -> one message, for the log


def read_examples(tasks: list[dict], config: LabelConfig, report: ReadReport) -> list[Example]:
    out = []
    for task in tasks:
        try:
            example = task_to_example(task, config, lenient=True)
        except DataFormatError as error:
            report.skipped["invalid_task"] += 1
            report.examples.setdefault("invalid_task", str(error))
            continue
        for reason, n in (example.meta.get("skipped") or {}).items():
            report.skipped[reason] += n
            report.examples.setdefault(reason, f"task {example.id}")
        report.ties += bool(example.meta.get("annotation_tie"))
        out.append(example)
    return out


def log_report(project_id: int, report: ReadReport) -> None:
    """One line per reason, not one per task."""
    for reason, n in sorted(report.skipped.items()):
        log.warning(
            "project %s: %d skipped (%s), e.g. %s", project_id, n, reason, report.examples.get(reason)
        )
    if report.ties:
        log.info("project %s: %d tasks with tied annotations (the newest was used)", project_id, report.ties)

