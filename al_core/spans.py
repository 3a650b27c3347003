"""Words, character spans and IOB2 tags: how a tagging task's text, its Label Studio spans and a
model's per-word tags map onto each other."""

from __future__ import annotations

import re

from al_core.exceptions import DataFormatError

Span = tuple[int, int, str]


def iob2_labels(entity_types: list[str]) -> list[str]:
    """The IOB2 tag set for entity types: ["O", "B-T1", "I-T1", ...] in the given order."""
    tags = ["O"]
    for entity_type in entity_types:
        tags += [f"B-{entity_type}", f"I-{entity_type}"]
    return tags


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
