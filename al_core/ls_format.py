"""Label Studio's JSON shapes: labeling configs, tasks, annotations, exports and prediction results.

Plain dicts and XML only (no SDK). Supported configs: one <Choices> (classification, single or
multiple choice) or one <Labels> (named entities) over one <Text> object.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from al_core.data import CLASSIFICATION, TAGGING, Dataset, Example, TaskKind
from al_core.exceptions import DataFormatError, UnsupportedConfigError

Span = tuple[int, int, str]

_CONTROL_KINDS = {"Choices": CLASSIFICATION, "Labels": TAGGING}
_OBJECT_TAG = "Text"
_LAYOUT_TAGS = {"Filter"}  # has toName but only filters the label list on screen


@dataclass
class LabelConfig:
    """What the engine needs from a labeling config."""

    kind: TaskKind
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
    if control.tag not in _CONTROL_KINDS:
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
        kind=_CONTROL_KINDS[control.tag],
        from_name=name,
        to_name=to_name,
        value_key=value[1:],
        labels=labels,
        multi_label=multi_label,
        tag=control.tag,
    )


def iob2_labels(entity_types: list[str]) -> list[str]:
    """The IOB2 tag set for entity types: ["O", "B-T1", "I-T1", ...] in the given order."""
    tags = ["O"]
    for entity_type in entity_types:
        tags += [f"B-{entity_type}", f"I-{entity_type}"]
    return tags


def model_labels(config: LabelConfig) -> list[str]:
    """The labels a model predicts: class names, or IOB2 tags ("O", "B-PER", "I-PER", ...)."""
    return list(config.labels) if config.kind == CLASSIFICATION else iob2_labels(config.labels)


# ---------------------------------------------------------------------------------------------
# Words, spans and IOB2 tags

# a word is a run of word characters or one other non-space character (CoNLL-like tokens)
_WORD = re.compile(r"\w+|[^\w\s]")


def tokenize_words(text: str) -> tuple[list[str], list[tuple[int, int]]]:
    """Split text into words with their (start, end) character offsets."""
    matches = list(_WORD.finditer(text))
    return [m.group() for m in matches], [m.span() for m in matches]


def words_text(words: list[str]) -> tuple[str, list[tuple[int, int]]]:
    """Join pre-tokenized words with single spaces; return the text and each word's offsets."""
    offsets = []
    position = 0
    for word in words:
        offsets.append((position, position + len(word)))
        position += len(word) + 1
    return " ".join(words), offsets


def spans_to_tags(
    text: str,
    spans: list[Span],
    words: list[str] | None = None,
    offsets: list[tuple[int, int]] | None = None,
    dropped: list[Span] | None = None,
) -> tuple[list[str], list[tuple[int, int]], list[str]]:
    """Character spans (start, end, label) -> words, offsets and IOB2 tags.

    Words come from tokenize_words(text) unless words and offsets are given. A word is in a span
    when they overlap; a span overlapping an earlier-starting one (or covering no word) is
    dropped, and appended to `dropped` when a list is given.
    """
    if offsets is None:
        words, offsets = tokenize_words(text)
    elif words is None:
        words = [text[start:end] for start, end in offsets]
    tags = ["O"] * len(offsets)
    for start, end, label in sorted(spans):
        if not 0 <= start < end <= len(text):
            raise DataFormatError(
                f"span {start}-{end} ({label}) is outside the text of {len(text)} characters"
            )
        inside = [i for i, (w_start, w_end) in enumerate(offsets) if w_start < end and w_end > start]
        if not inside or any(tags[i] != "O" for i in inside):
            if dropped is not None:
                dropped.append((start, end, label))
            continue
        tags[inside[0]] = f"B-{label}"
        for i in inside[1:]:
            tags[i] = f"I-{label}"
    return list(words), list(offsets), tags


def tags_to_spans(text: str, offsets: list[tuple[int, int]], tags: list[str]) -> list[Span]:
    """IOB2 word tags -> character spans (start, end, label); a stray I- tag starts a new span."""
    if len(offsets) != len(tags):
        raise ValueError(f"{len(offsets)} words but {len(tags)} tags")
    spans: list[Span] = []
    current: list | None = None  # [start, end, label] of the open span
    for (start, end), tag in zip(offsets, tags, strict=True):
        if tag == "O":
            current = None
            continue
        prefix, _, label = tag.partition("-")
        if prefix not in ("B", "I") or not label:
            raise ValueError(f"bad IOB2 tag {tag!r}")
        if prefix == "I" and current is not None and current[2] == label:
            current[1] = end
            spans[-1] = (current[0], end, label)
        else:
            current = [start, end, label]
            spans.append((start, end, label))
    return spans


# ---------------------------------------------------------------------------------------------
# Tasks and exports


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
    answer = []
    for region in annotation.get("result") or []:
        if not isinstance(region, dict) or region.get("from_name") != config.from_name:
            continue
        value = region.get("value") if isinstance(region.get("value"), dict) else {}
        if config.kind == CLASSIFICATION:
            answer += [str(c) for c in value.get("choices") or []]
        else:
            answer.append((str(value.get("start")), str(value.get("end")), str(value.get("labels"))))
    return tuple(sorted(answer))


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
    annotation with no choice leaves the example unlabeled; a tagging annotation with no regions
    means "no entities" (all O). Multiple choices: label is the first, meta["labels"] has them all.

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

    def skip(reason: str, error: str) -> None:
        if not lenient:
            raise DataFormatError(error)
        skipped[reason] = skipped.get(reason, 0) + 1

    if config.kind == CLASSIFICATION:
        chosen = [c for r in regions for c in (r.get("value") or {}).get("choices") or []]
        unknown = _unknown_labels(chosen, config)
        if unknown:
            skip("unknown_label", _unknown_message(unknown, config, task_id))
            chosen = []  # a removed class cannot be learned: the task is not used for training
        if chosen:
            meta["labels"] = chosen
        if skipped:
            meta["skipped"] = skipped
        return Example(id=task_id, text=text, label=chosen[0] if chosen else None, meta=meta)

    words, offsets = tokenize_words(text)
    if annotation is None:
        return Example(id=task_id, text=text, words=words, offsets=offsets, meta=meta)
    spans = []
    for region in regions:
        value = region.get("value") or {}
        region_labels = value.get("labels") or []
        unknown = _unknown_labels(region_labels, config)
        if unknown:
            skip("unknown_label", _unknown_message(unknown, config, task_id))
            continue
        start, end = value.get("start"), value.get("end")
        if not region_labels or not isinstance(start, int) or not isinstance(end, int):
            skip("malformed_region", f"task {task_id}: a labels region needs start, end and labels: {value}")
            continue
        if lenient and not 0 <= start < end <= len(text):  # strict: spans_to_tags names the span
            skip("malformed_region", "")
            continue
        spans.append((start, end, region_labels[0]))
    if lenient and regions and not spans and skipped:
        # every span was unusable: training on "no entities" would teach the opposite of the annotation
        meta["skipped"] = skipped
        return Example(id=task_id, text=text, words=words, offsets=offsets, meta=meta)
    dropped: list[Span] = []
    try:
        words, offsets, tags = spans_to_tags(text, spans, words, offsets, dropped=dropped)
    except DataFormatError as err:
        raise DataFormatError(f"task {task_id}: {err}") from err
    if dropped:
        skipped["overlapping_span"] = len(dropped)
    if skipped:
        meta["skipped"] = skipped
    return Example(id=task_id, text=text, words=words, tags=tags, offsets=offsets, meta=meta)


def _unknown_labels(labels: list, config: LabelConfig) -> list:
    return [label for label in labels if label not in config.labels]


def _unknown_message(unknown: list, config: LabelConfig, task_id: str) -> str:
    return f"task {task_id}: label {unknown[0]!r} is not in the label config ({', '.join(config.labels)})"


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
    return LabelConfig(
        _CONTROL_KINDS[tag], first.get("from_name"), to_name, value_key, sorted(labels), multi_label, tag
    )


# ---------------------------------------------------------------------------------------------
# Results sent back to Label Studio


def prediction_result(
    example_or_text: Example | str,
    config: LabelConfig,
    label: str | list[str] | None = None,
    tags: list[str] | None = None,
    offsets: list[tuple[int, int]] | None = None,
    score: float | None = None,
) -> list[dict]:
    """Label Studio result regions for a predicted label (choices) or IOB2 word tags (labels).

    With an Example and no label/tags, its own label/tags are used. Tag offsets default to the
    example's offsets, else tokenize_words(text). `score`, when given, is set on every region.
    """
    example = example_or_text if isinstance(example_or_text, Example) else None
    text = example.text if example is not None else example_or_text
    base = {"from_name": config.from_name, "to_name": config.to_name, "type": config.result_type}
    if config.kind == CLASSIFICATION:
        if label is None and example is not None:
            label = example.meta.get("labels") or example.label
        if label is None:
            raise ValueError("no label to put in a choices result")
        choices = [label] if isinstance(label, str) else list(label)
        _check_result_labels(choices, config)
        regions = [{**base, "value": {"choices": choices}}]
    else:
        if tags is None and example is not None:
            tags = example.tags
            offsets = offsets if offsets is not None else example.offsets
        if tags is None:
            raise ValueError("no tags to put in a labels result")
        if offsets is None:
            offsets = tokenize_words(text)[1]
        spans = tags_to_spans(text, offsets, tags)
        _check_result_labels([span_label for _, _, span_label in spans], config)
        regions = [
            {
                "id": f"r{i}",
                **base,
                "value": {"start": start, "end": end, "text": text[start:end], "labels": [lab]},
            }
            for i, (start, end, lab) in enumerate(spans)
        ]
    if score is not None:
        for region in regions:
            region["score"] = float(score)
    return regions


def _check_result_labels(labels: list[str], config: LabelConfig) -> None:
    unknown = [label for label in labels if label not in config.labels]
    if unknown:
        raise ValueError(f"label {unknown[0]!r} is not in the label config ({', '.join(config.labels)})")
