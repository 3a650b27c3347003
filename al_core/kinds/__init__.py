"""The task kinds, by name: `kind_of(name)` for a saved name, `kind_for_control` for a labeling config."""

from __future__ import annotations

from al_core.kinds.base import TaskKind
from al_core.kinds.classification import Classification
from al_core.kinds.multilabel import MultiLabel
from al_core.kinds.tagging import Tagging

KINDS: dict[str, TaskKind] = {kind.name: kind for kind in (Classification(), MultiLabel(), Tagging())}


def kind_of(name: str) -> TaskKind:
    """The kind registered under `name` ("classification", "multilabel", "tagging")."""
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"unknown task kind {name!r}; expected one of {', '.join(KINDS)}") from None


def kind_for_control(control_tag: str, multiple: bool) -> TaskKind | None:
    """The kind that reads a labeling config's control, or None."""
    return next((kind for kind in KINDS.values() if kind.reads(control_tag, multiple)), None)


__all__ = ["KINDS", "TaskKind", "kind_for_control", "kind_of"]
