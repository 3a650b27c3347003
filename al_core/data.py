"""Examples and datasets: the one shape every reader produces and every model consumes."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

# The names of the task kinds (their behaviour: al_core.kinds)
KindName = Literal["classification", "multilabel", "tagging"]
CLASSIFICATION: KindName = "classification"
MULTILABEL: KindName = "multilabel"
TAGGING: KindName = "tagging"


@dataclass
class Example:
    """One task.

    Classification: `text` and, when labeled, `label`.
    Multi-label classification: `text` and, when labeled, `choices` (the set of classes, maybe empty).
    Tagging: `words` (and `text`, the words' source string) and, when labeled, `tags`
    (IOB2, one per word). `offsets` are the words' character spans in `text` when known
    (needed to turn word tags back into Label Studio character spans).
    """

    id: str
    text: str
    label: str | None = None
    choices: list[str] | None = None
    words: list[str] | None = None
    tags: list[str] | None = None
    offsets: list[tuple[int, int]] | None = None
    meta: dict = field(default_factory=dict)

    @property
    def is_labeled(self) -> bool:
        return self.label is not None or self.choices is not None or self.tags is not None

    @property
    def n_words(self) -> int:
        return len(self.words) if self.words is not None else len(self.text.split())

    def without_labels(self) -> Example:
        """The task as a model sees it when it predicts: no label, no choices, no tags."""
        return replace(self, label=None, choices=None, tags=None, meta=dict(self.meta))


@dataclass
class Dataset:
    """A list of examples of one kind with their label set.

    `labels` are class names (classification) or IOB2 tag names including "O" (tagging).
    """

    kind: KindName
    examples: list[Example]
    labels: list[str]

    def __len__(self) -> int:
        return len(self.examples)

    def labeled(self) -> list[Example]:
        return [e for e in self.examples if e.is_labeled]

    def unlabeled(self) -> list[Example]:
        return [e for e in self.examples if not e.is_labeled]
