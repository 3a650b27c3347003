"""Label Studio's JSON shapes: labeling configs, tasks, annotations, exports and prediction results.

Plain dicts and XML only (no SDK). Supported configs: one <Choices> (classification, or
multi-label classification with choice="multiple") or one <Labels> (named entities) over one
<Text> object. What differs by kind is the kind's (al_core.kinds).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from al_core.data import Dataset, Example, KindName
from al_core.exceptions import DataFormatError, UnsupportedConfigError
from al_core.kinds import TaskKind, kind_for_control, kind_of
from al_core.spans import (  # noqa: F401  (the span helpers, importable from here as well)
    Span,
    iob2_labels,
    spans_to_tags,
    tags_to_spans,
    tokenize_words,
    words_text,
)

_CONTROL_TAGS = ("Choices", "Labels")
_OBJECT_TAG = "Text"
_LAYOUT_TAGS = {"Filter"}  # has toName but only filters the label list on screen


@dataclass
class LabelConfig:
    """What the engine needs from a labeling config."""

    kind: KindName
    from_name: str  # name of the control tag (<Choices name=...>)
    to_name: str  # name of the <Text> object it labels
    value_key: str  # the task data field holding the text ($text -> "text")
    labels: list[str]  # class names or entity types, in config order
    multi_label: bool  # <Choices choice="multiple">
    tag: str  # "Choices" or "Labels"

    @property
    def result_type(self) -> str:
        """The "type" of result regions for this control ("choices" or "labels")."""
        return self.tag.lower()

    @property
    def task_kind(self) -> TaskKind:
        return kind_of(self.kind)


# ---------------------------------------------------------------------------------------------
# Labeling config


def parse_label_config(xml: str) -> LabelConfig:
    """Parse a labeling config; raise UnsupportedConfigError naming what the engine cannot handle."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as err:
        raise UnsupportedConfigError(f"the label config is not valid XML: {err}") from err
    elements = list(root.iter())
    # control tags point at an object with toName; object tags show task data (name + $value)
    controls = [el for el in elements if "toName" in el.attrib and el.tag not in _LAYOUT_TAGS]
    objects = {
        el.get("name"): el
        for el in elements
        if "name" in el.attrib and "value" in el.attrib and el not in controls
    }

    for obj in objects.values():
        if obj.tag != _OBJECT_TAG:
            raise UnsupportedConfigError(f"<{obj.tag}> is not supported: only <Text> objects can be labeled")
    if not objects:
        raise UnsupportedConfigError("no <Text> object in the label config")
    if not controls:
        raise UnsupportedConfigError("no <Choices> or <Labels> control tag in the label config")
    if len(controls) > 1:
        found = ", ".join(f"<{c.tag} name={c.get('name')!r}>" for c in controls)
        raise UnsupportedConfigError(
            f"several control tags ({found}); only one <Choices> or <Labels> is supported"
        )

    control = controls[0]
    if control.tag not in _CONTROL_TAGS:
        raise UnsupportedConfigError(
            f"<{control.tag}> is not supported: use <Choices> or <Labels> over <Text>"
        )
    name, to_name = control.get("name"), control.get("toName", "")
    if not name:
        raise UnsupportedConfigError(f"<{control.tag}> has no name attribute")
    if "," in to_name:
        raise UnsupportedConfigError(
            f"<{control.tag} toName={to_name!r}> labels several objects; only one is supported"
        )
    if to_name not in objects:
        raise UnsupportedConfigError(f"<{control.tag}> toName={to_name!r} does not name a <Text> object")
    value = objects[to_name].get("value", "")
    if not value.startswith("$") or len(value) < 2:
        raise UnsupportedConfigError(
            f"<Text name={to_name!r}> value={value!r} must name a task field, like $text"
        )

    option_tag = "Choice" if control.tag == "Choices" else "Label"
    # a result stores the alias when one is set, else the value
    labels = [el.get("alias") or el.get("value") for el in control.iter(option_tag)]
    if not labels or not all(labels):
        raise UnsupportedConfigError(f"<{control.tag} name={name!r}> needs <{option_tag} value=...> children")
    if len(set(labels)) != len(labels):
        raise UnsupportedConfigError(f"<{control.tag} name={name!r}> repeats a label")
    multi_label = control.tag == "Choices" and control.get("choice", "single") == "multiple"
    return LabelConfig(
        kind=kind_for_control(control.tag, multi_label).name,
        from_name=name,
        to_name=to_name,
        value_key=value[1:],
        labels=labels,
        multi_label=multi_label,
        tag=control.tag,
    )


def model_labels(config: LabelConfig) -> list[str]:
    """The labels a model predicts: class names, or IOB2 tags ("O", "B-PER", "I-PER", ...)."""
    return config.task_kind.model_labels(config.labels)


# ---------------------------------------------------------------------------------------------
# Tasks and exports

def label_counts(labeled: list[Example], config: LabelConfig) -> dict[str, int]:
    """Labeled tasks per class (classification, multi-label) or spans per entity type (NER), every
    label listed."""
    counts = dict.fromkeys(config.labels, 0)
    for example in labeled:
        for label in config.task_kind.label_mentions(example):
            if label in counts:
                counts[label] += 1
    return counts


def latest_annotation(task: dict) -> dict | None:
    """The most recently updated annotation of a task that was not cancelled (skipped), or None."""
    kept = _kept_annotations(task)
    return max(kept, key=_newest_key) if kept else None


def _kept_annotations(task: dict) -> list[dict]:
    return [a for a in task.get("annotations") or [] if isinstance(a, dict) and not a.get("was_cancelled")]


def _newest_key(annotation: dict) -> tuple:
    return (str(annotation.get("updated_at") or annotation.get("created_at") or ""), annotation.get("id") or 0)


def _answer_key(annotation: dict, config: LabelConfig) -> tuple:
    """What an annotation says for the config's control: its choices, or its spans."""
    values = [
        region["value"]
        for region in annotation.get("result") or []
        if isinstance(region, dict) and region.get("from_name") == config.from_name and isinstance(region.get("value"), dict)
    ]
    return config.task_kind.answer(values)


@dataclass
class AnnotationChoice:
    annotation: dict | None
    rule: str  # "none", "single", "ground_truth", "majority" or "newest"
    tie: bool = False  # several answers had the top count: the newest of them was taken


def choose_annotation(task: dict, config: LabelConfig) -> AnnotationChoice:
    """The annotation that gives a task its training label, when several people disagree.

    Cancelled (skipped) annotations do not count. Rule, in order:
    1. annotations marked as ground truth in Label Studio, if any, are the only candidates;
    2. the answer (the choices, or the set of spans) given by most candidates wins;
    3. between answers with the same count (a tie, recorded), the newest annotation wins
       (updated_at, else created_at, then the highest id). Agreeing annotations are no tie.
    """
    kept = _kept_annotations(task)
    if not kept:
        return AnnotationChoice(None, "none")
    if len(kept) == 1:
        return AnnotationChoice(kept[0], "single")
    truth = [a for a in kept if a.get("ground_truth") is True]
    candidates = truth or kept
    groups: dict[tuple, list[dict]] = {}
    for annotation in candidates:
        groups.setdefault(_answer_key(annotation, config), []).append(annotation)
    top = max(len(group) for group in groups.values())
    leaders = [a for group in groups.values() if len(group) == top for a in group]
    tie = sum(1 for group in groups.values() if len(group) == top) > 1
    chosen = max(leaders, key=_newest_key)
    if truth:
        rule = "ground_truth"
    elif len(groups) == 1:
        rule = "single" if len(candidates) == 1 else "majority"
    else:
        rule = "newest" if tie else "majority"
    return AnnotationChoice(chosen, rule, tie)


def task_to_example(
    task: dict, config: LabelConfig, annotation: dict | None = None, lenient: bool = False
) -> Example:
    """A Label Studio task -> Example, gold from `annotation` or else from `choose_annotation`.

    For a webhook (whose task carries no annotations) pass the event's annotation. A classification
    annotation with no choice leaves the example unlabeled; a multi-label one is the empty set; a
    tagging annotation with no regions means "no entities" (all O).

    Strict (the default, for exports): a label outside the config or a malformed region raises
    DataFormatError. `lenient` (the live backend): such a choice leaves the example unlabeled and
    such a span is left out while the task's valid spans are kept; either way meta["skipped"]
    counts them by reason ("unknown_label", "malformed_region"), and spans dropped for overlapping
    an earlier one as "overlapping_span". meta["annotation_rule"] / meta["annotation_tie"] say how
    the annotation was chosen.
    """
    if not isinstance(task, dict) or "id" not in task:
        raise DataFormatError(f"a task must be an object with an id, got {str(task)[:80]!r}")
    task_id = str(task["id"])
    data = task.get("data")
    text = data.get(config.value_key) if isinstance(data, dict) else None
    if not isinstance(text, str):
        problem = "missing" if text is None else f"not a string ({type(text).__name__})"
        raise DataFormatError(f"task {task_id}: data field {config.value_key!r} is {problem}")
    meta: dict = {}
    if annotation is None:
        choice = choose_annotation(task, config)
        annotation = choice.annotation
        if choice.rule != "none":
            meta["annotation_rule"] = choice.rule
        if choice.tie:
            meta["annotation_tie"] = True
    elif annotation.get("was_cancelled"):
        annotation = None
    regions = []
    if annotation is not None:
        result = annotation.get("result") or []
        regions = [r for r in result if isinstance(r, dict) and r.get("from_name") == config.from_name]
        meta["annotation_id"] = annotation.get("id")
    skipped: dict[str, int] = {}

    def skip(reason: str, error: str | None) -> None:
        if error is not None and not lenient:
            raise DataFormatError(error)
        skipped[reason] = skipped.get(reason, 0) + 1

    kind = config.task_kind
    example = kind.unlabeled(task_id, text, meta)
    if annotation is not None:
        example = kind.labeled(example, regions, config.labels, skip, lenient)
    if skipped:
        meta["skipped"] = skipped
    return example


def examples_from_export(tasks: list[dict], config: LabelConfig) -> Dataset:
    """Tasks (as in a Label Studio JSON export) -> Dataset of the config's kind."""
    examples = [task_to_example(task, config) for task in tasks]
    seen: set[str] = set()
    for example in examples:
        if example.id in seen:
            raise DataFormatError(f"task id {example.id} appears twice")
        seen.add(example.id)
    return Dataset(config.kind, examples, model_labels(config))


def read_ls_export(path: str | Path, config: LabelConfig | str | None = None) -> Dataset:
    """Read a Label Studio JSON export; config (LabelConfig or XML) is inferred from the annotations if None."""
    path = Path(path)
    try:
        tasks = json.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError as err:
        raise DataFormatError("no such file", str(path)) from err
    except UnicodeDecodeError as err:
        raise DataFormatError(f"not UTF-8 text: {err.reason} at byte {err.start}", str(path)) from err
    except json.JSONDecodeError as err:
        raise DataFormatError(
            f"not valid JSON: {err.msg} (column {err.colno})", str(path), err.lineno
        ) from err
    if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
        raise DataFormatError("expected a JSON list of task objects (Label Studio JSON export)", str(path))
    if isinstance(config, str):
        config = parse_label_config(config)
    if config is None:
        config = infer_config(tasks, path)
    try:
        return examples_from_export(tasks, config)
    except DataFormatError as err:
        raise DataFormatError(str(err), str(path)) from err


def infer_config(tasks: list[dict], path: Path) -> LabelConfig:
    """Guess the config from the first annotated region; labels are those seen in annotations."""
    first = None
    labels: dict[str, None] = {}
    multi_label = False
    for task in tasks:
        annotation = latest_annotation(task)
        for region in (annotation or {}).get("result") or []:
            if not isinstance(region, dict) or region.get("type") not in ("choices", "labels"):
                continue
            first = first or region
            if region.get("from_name") != first.get("from_name"):
                raise DataFormatError(
                    "annotations use several control tags; pass the label config", str(path)
                )
            key = region["type"]
            values = (region.get("value") or {}).get(key) or []
            multi_label = multi_label or (key == "choices" and len(values) > 1)
            labels.update(dict.fromkeys(values))
    if first is None:
        raise DataFormatError("no choices or labels in any annotation; pass the label config", str(path))
    to_name = first.get("to_name", "text")
    data_keys = {k for task in tasks for k in (task.get("data") or {})}
    value_key = to_name if to_name in data_keys or len(data_keys) != 1 else next(iter(data_keys))
    tag = "Choices" if first["type"] == "choices" else "Labels"
    kind = kind_for_control(tag, multi_label).name
    return LabelConfig(kind, first.get("from_name"), to_name, value_key, sorted(labels), multi_label, tag)


# ---------------------------------------------------------------------------------------------
# Results sent back to Label Studio


def prediction_result(example: Example | str, config: LabelConfig, value=None, score: float | None = None) -> list[dict]:
    """Label Studio result regions saying `value` (a class, a list of classes, or IOB2 word tags;
    default: the example's own gold value) for `example` (or a bare text).

    Tags are read at the example's word offsets, else at tokenize_words(text)'s. `score`, when
    given, is set on every region.
    """
    if isinstance(example, str):
        example = Example(id="", text=example)
    kind = config.task_kind
    if value is None:
        value = kind.gold(example)
    if value is None:
        raise ValueError(f"no {config.result_type} to put in a result")
    base = {"from_name": config.from_name, "to_name": config.to_name, "type": config.result_type}
    regions = kind.regions(example, value, base)
    _check_result_labels([label for r in regions for label in r["value"][kind.result_key]], config)
    if score is not None:
        for region in regions:
            region["score"] = float(score)
    return regions


def _check_result_labels(labels: list[str], config: LabelConfig) -> None:
    unknown = [label for label in labels if label not in config.labels]
    if unknown:
        raise ValueError(f"label {unknown[0]!r} is not in the label config ({', '.join(config.labels)})")
