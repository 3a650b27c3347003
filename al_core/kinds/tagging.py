"""Tagging (named entities): character spans from <Labels>, one IOB2 tag per word for the model."""

from __future__ import annotations

from dataclasses import replace
from xml.sax.saxutils import quoteattr

import numpy as np

from al_core.data import TAGGING, Example
from al_core.exceptions import DataFormatError
from al_core.kinds.base import TaskKind
from al_core.kinds.classification import unknown_message
from al_core.spans import iob2_labels, spans_to_tags, tags_to_spans, tokenize_words


def valid_iob2(tags: list[str]) -> list[str]:
    """Word-by-word argmax can give I-X with no B-X before it; such a tag starts the entity (B-X)."""
    fixed = []
    for i, tag in enumerate(tags):
        if tag.startswith("I-") and (i == 0 or fixed[-1][2:] != tag[2:] or fixed[-1] == "O"):
            tag = "B-" + tag[2:]
        fixed.append(tag)
    return fixed


def word_offsets(example) -> list[tuple[int, int]]:
    return list(example.offsets) if example.offsets is not None else tokenize_words(example.text)[1]


class Tagging(TaskKind):
    name = TAGGING
    control_tag = "Labels"
    result_key = "labels"
    metric = "span_f1"
    metrics = ("span_f1",)
    drop_metric = "span_f1"
    default_strategy = "mnlp-task"
    label_noun = "entity type"
    mention_unit = "spans"
    unit = "sentence (task); per-class counts are entity spans"
    # a token-classification head trained for a hundred steps needs a larger rate than a
    # sequence head (BENCHMARKS.md, learning curves)
    learning_rate = 3e-4
    formats = ("jsonl", "conll", "ls")
    refreshes = False  # a frozen tagger reads a vector per word; the fine-tuned embedding is one per sentence

    def reads(self, control_tag, multiple):
        return control_tag == self.control_tag

    def model_labels(self, labels):
        return iob2_labels(labels)

    def label_config_xml(self, labels):
        types = sorted({t.split("-", 1)[1] for t in labels if t != "O"})
        entries = "\n".join(f"    <Label value={quoteattr(t)}/>" for t in types)
        return (
            f'<View>\n  <Labels name="label" toName="text">\n{entries}\n  </Labels>\n'
            f'  <Text name="text" value="$text"/>\n</View>'
        )

    def unlabeled(self, task_id, text, meta):
        words, offsets = tokenize_words(text)
        return Example(id=task_id, text=text, words=words, offsets=offsets, meta=meta)

    def labeled(self, example, regions, labels, skip, lenient):
        """A tagging annotation with no regions means "no entities" (all O)."""
        text, task_id = example.text, example.id
        spans, unusable = [], False
        for region in regions:
            value = region.get("value") or {}
            region_labels = value.get("labels") or []
            unknown = [label for label in region_labels if label not in labels]
            if unknown:
                skip("unknown_label", unknown_message(unknown, labels, task_id))
                unusable = True
                continue
            start, end = value.get("start"), value.get("end")
            if not region_labels or not isinstance(start, int) or not isinstance(end, int):
                skip("malformed_region", f"task {task_id}: a labels region needs start, end and labels: {value}")
                unusable = True
                continue
            if lenient and not 0 <= start < end <= len(text):  # strict: spans_to_tags names the span
                skip("malformed_region", "")
                unusable = True
                continue
            spans.append((start, end, region_labels[0]))
        if regions and not spans and unusable:
            # every span was unusable: training on "no entities" would teach the opposite of the annotation
            return example
        dropped: list = []
        try:
            words, offsets, tags = spans_to_tags(text, spans, example.words, example.offsets, dropped=dropped)
        except DataFormatError as err:
            raise DataFormatError(f"task {task_id}: {err}") from err
        for _ in dropped:  # counted, never refused: the earlier span is kept
            skip("overlapping_span", None)
        return replace(example, words=words, offsets=offsets, tags=tags)

    def answer(self, values):
        return tuple(sorted((str(v.get("start")), str(v.get("end")), str(v.get("labels"))) for v in values))

    def regions(self, example, value, base):
        text = example.text
        spans = tags_to_spans(text, word_offsets(example), value)
        return [
            {"id": f"r{i}", **base, "value": {"start": start, "end": end, "text": text[start:end], "labels": [label]}}
            for i, (start, end, label) in enumerate(spans)
        ]

    def gold(self, example):
        return example.tags

    def with_gold(self, example, value):
        words = example.words if example.words is not None else example.text.split()
        return replace(example, tags=list(value), words=words, meta=dict(example.meta))

    def decode(self, probs, labels):
        return valid_iob2([labels[i] for i in np.asarray(probs).argmax(axis=1)]) if len(probs) else []

    def confidence(self, probs):
        # the geometric mean of the words' max probabilities: one unsure word lowers the sentence
        sure = np.clip(np.asarray(probs).max(axis=1), 1e-12, 1.0) if len(probs) else np.zeros(0)
        return float(np.exp(np.log(sure).mean())) if len(sure) else 1.0

    def config_labels(self, model_labels):
        return list(dict.fromkeys(tag[2:] for tag in model_labels if tag[:2] in ("B-", "I-")))

    def measures(self, gold, predicted, labels):
        from al_core.metrics import span_f1

        report = span_f1(gold, predicted, labels)
        return {"span_f1": report["f1"]}, report["per_label"]

    def value_labels(self, value):
        return [tag[2:] for tag in valid_iob2(list(value or [])) if tag.startswith("B-")]

    def label_mentions(self, example):
        return self.value_labels(example.tags)

    def json_fields(self, example):
        text = example.text
        spans = [
            {"start": start, "end": end, "label": label, "text": text[start:end]}
            for start, end, label in tags_to_spans(text, word_offsets(example), example.tags)
        ]
        return {"words": list(example.words), "tags": list(example.tags), "spans": spans}

    def frozen_below(self, config):
        return config.frozen_below_tagging
