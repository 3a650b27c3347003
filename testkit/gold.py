"""Small real task sets with their gold labels, read from the shared datasets, as Label Studio tasks."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

# the shared datasets: $AL_SHARED_DATA, else ../shared/data beside the checkout
SHARED_DATA = Path(os.environ.get("AL_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))

TOPIC_CONFIG = """<View>
  <Text name="text" value="$text"/>
  <Choices name="topic" toName="text" choice="single" showInline="true">
    {choices}
  </Choices>
</View>"""

NER_CONFIG = """<View>
  <Labels name="label" toName="text">
    <Label value="PER"/><Label value="ORG"/><Label value="LOC"/><Label value="MISC"/>
  </Labels>
  <Text name="text" value="$text"/>
</View>"""


@dataclass
class GoldTask:
    text: str
    label: str | None = None  # Choices
    spans: list[tuple[int, int, str]] = field(default_factory=list)  # Labels: (start, end, type)


@dataclass
class GoldProject:
    kind: str  # "choices" | "labels"
    label_config: str
    from_name: str
    tasks: list[GoldTask]

    def result(self, task: GoldTask) -> list[dict]:
        """The Label Studio result regions of the task's gold annotation."""
        if self.kind == "choices":
            return [
                {
                    "from_name": self.from_name,
                    "to_name": "text",
                    "type": "choices",
                    "value": {"choices": [task.label]},
                }
            ]
        return [
            {
                "id": f"g{i}",
                "from_name": self.from_name,
                "to_name": "text",
                "type": "labels",
                "value": {"start": s, "end": e, "text": task.text[s:e], "labels": [t]},
            }
            for i, (s, e, t) in enumerate(task.spans)
        ]


def ag_news(data_dir: Path, count: int) -> GoldProject:
    """The first `count` AG News test articles (title and description) with their topic."""
    folder = data_dir / "agnews"
    classes = folder.joinpath("classes.txt").read_text(encoding="utf-8").split("\n")
    classes = [c.strip() for c in classes if c.strip()]
    tasks = []
    with open(folder / "test.csv", newline="", encoding="utf-8") as handle:
        for row in csv.reader(handle):
            text = f"{row[1]}. {row[2]}".replace("\\", " ")
            tasks.append(GoldTask(text=" ".join(text.split()), label=classes[int(row[0]) - 1]))
            if len(tasks) == count:
                break
    choices = "".join(f'<Choice value="{c}"/>' for c in classes)
    return GoldProject("choices", TOPIC_CONFIG.format(choices=choices), "topic", tasks)


def conll_sentences(data_dir: Path, count: int, min_words: int = 5) -> GoldProject:
    """The first `count` CoNLL-2003 dev sentences with an entity, words joined by spaces."""
    tasks: list[GoldTask] = []
    words: list[tuple[str, str]] = []
    for line in (data_dir / "conll2003" / "eng.testa").read_text(encoding="utf-8").splitlines() + [""]:
        parts = line.split()
        if parts and parts[0] != "-DOCSTART-":
            words.append((parts[0], parts[-1]))
            continue
        if len(words) >= min_words and any(tag != "O" for _, tag in words):
            tasks.append(_sentence_task(words))
            if len(tasks) == count:
                break
        words = []
    return GoldProject("labels", NER_CONFIG, "label", tasks)


def _sentence_task(words: list[tuple[str, str]]) -> GoldTask:
    """IOB tags (IOB1 or IOB2) to character spans over the space-joined sentence."""
    text, spans = "", []
    current: list | None = None  # [start, end, type] of the span being read
    for word, tag in words:
        text += ("" if not text else " ") + word
        start, position = len(text) - len(word), len(text)
        kind = tag[2:] if tag != "O" else None
        continues = current is not None and kind == current[2] and tag.startswith("I-")
        if continues:
            current[1] = position
            continue
        if current:
            spans.append(tuple(current))
        current = [start, position, kind] if kind else None
    if current:
        spans.append(tuple(current))
    return GoldTask(text=text, spans=spans)
