"""The shared research datasets (../shared/data next to the project, or $AL_SHARED_DATA) by name,
for the simulator, the benchmarks and the tests: `shared_dataset(name, split)`."""

from __future__ import annotations

import os
from pathlib import Path

from al_core.data import Dataset, Example
from al_core.exceptions import ALError, DataFormatError
from al_core.readers import read_conll, read_csv, read_jsonl, read_label_text

_SENTIMENT = {"0": "negative", "1": "positive"}
_TREC_CLASSES = ["DESC", "ENTY", "ABBR", "HUM", "LOC", "NUM"]

# name -> (folder, {split: file name})
SHARED_DATASETS: dict[str, tuple[str, dict[str, str]]] = {
    "conll2003": ("conll2003", {"train": "eng.train", "dev": "eng.testa", "test": "eng.testb"}),
    "wnut17": (
        "wnut17",
        {"train": "wnut17train.conll", "dev": "emerging.dev.conll", "test": "emerging.test.annotated"},
    ),
    "agnews": ("agnews", {"test": "test.csv"}),
    "imdb": ("imdb", {"train": "imdb_train.jsonl.gz", "test": "imdb_test.jsonl.gz"}),
    "imdb5k": ("imdb", {"train": "imdb_train_5k_seed13.jsonl.xz", "test": "imdb_test_2k_seed13.jsonl.xz"}),
    "trec": ("trec", {"train": "TREC.train.all", "test": "TREC.test.all"}),
    "sst2": ("sst2", {"train": "stsa.binary.train", "dev": "stsa.binary.dev", "test": "stsa.binary.test"}),
    # GoEmotions' Ekman grouping (6 emotions + neutral), the comments with exactly one label
    "goemotions-ekman": ("goemotions/ekman", {"train": "train.tsv", "dev": "dev.tsv", "test": "test.tsv"}),
}


def shared_data_root() -> Path:
    """The shared datasets folder: $AL_SHARED_DATA, else ../shared/data next to the project."""
    return Path(os.environ.get("AL_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def shared_dataset(name: str, split: str, root: str | Path | None = None) -> Dataset:
    """Load one split of a shared research dataset (see SHARED_DATASETS for names and splits)."""
    if name not in SHARED_DATASETS:
        raise ALError(f"unknown dataset {name!r}; known: {', '.join(SHARED_DATASETS)}")
    folder, splits = SHARED_DATASETS[name]
    if split not in splits:
        raise ALError(f"dataset {name!r} has no split {split!r}; it has: {', '.join(splits)}")
    directory = Path(root if root is not None else shared_data_root()) / folder
    if not directory.is_dir():
        raise DataFormatError("dataset folder not found (set AL_SHARED_DATA or pass root)", str(directory))
    path = directory / splits[split]
    if name in ("conll2003", "wnut17"):
        return read_conll(path)
    if name == "agnews":
        classes = [
            c.strip()
            for c in (directory / "classes.txt").read_text(encoding="utf-8").splitlines()
            if c.strip()
        ]
        # class index 1-4 -> name; the text is title + description
        names = {str(i + 1): c for i, c in enumerate(classes)}
        return read_csv(path, text_columns=[1, 2], label_column=0, header=False, label_names=names)
    if name in ("imdb", "imdb5k"):
        # the files' "id" repeats between positive and negative reviews, so ids are row numbers;
        # the original id and the rating stay in Example.meta
        return read_jsonl(path, label_names=_SENTIMENT)
    if name == "goemotions-ekman":
        return _single_label_goemotions(path, directory / "labels.txt")
    if name == "trec":
        return read_label_text(path, encoding="latin-1", label_names=_TREC_CLASSES)
    return read_label_text(path, label_names=_SENTIMENT)


def _single_label_goemotions(path: Path, labels_file: Path) -> Dataset:
    """GoEmotions' "text<TAB>label ids<TAB>comment id" rows with one label id (the rest are multi-label
    and left out); the text may hold quotes, so the rows are split on tabs rather than read as CSV."""
    labels = [line.strip() for line in labels_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    examples = []
    for line in path.read_text(encoding="utf-8").splitlines():
        text, ids, comment = line.split("\t")
        if "," not in ids:
            examples.append(Example(id=comment, text=text, label=labels[int(ids)]))
    return Dataset("classification", examples, labels)
