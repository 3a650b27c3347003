"""Read datasets from common files (CSV, JSONL, "<label> <text>" lines, CoNLL) and write them back.

Every reader returns a Dataset. Example ids are the 0-based row or sentence index as a string
unless an id column or field is named. Malformed rows raise DataFormatError naming file and line.
Files ending in .gz or .xz are decompressed on the fly.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import lzma
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from al_core.data import CLASSIFICATION, MULTILABEL, TAGGING, Dataset, Example
from al_core.exceptions import ALError, DataFormatError
from al_core.ls_format import iob2_labels, read_ls_export, words_text

LabelNames = dict | list | None
Column = str | int


# ---------------------------------------------------------------------------------------------
# Line access shared by every reader


def _open_binary(path: Path):
    suffix = path.suffix.lower()
    if suffix == ".gz":
        return gzip.open(path, "rb")
    if suffix == ".xz":
        return lzma.open(path, "rb")
    return open(path, "rb")


def _numbered_lines(path: str | Path, encoding: str) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, decoded line with its newline); a leading UTF-8 BOM is dropped."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError("no such file", str(path))
    line_no = 0
    with _open_binary(path) as stream:
        while True:
            try:
                raw = stream.readline()
            except (OSError, EOFError, lzma.LZMAError) as err:
                raise DataFormatError(f"cannot decompress: {err}", str(path), line_no + 1) from err
            if not raw:
                return
            line_no += 1
            try:
                text = raw.decode(encoding)
            except UnicodeDecodeError as err:
                raise DataFormatError(
                    f"byte {raw[err.start : err.start + 1]!r} at column {err.start + 1} cannot be decoded as "
                    f"{encoding} (pass encoding=..., e.g. 'latin-1')",
                    str(path),
                    line_no,
                ) from err
            if line_no == 1:
                text = text.removeprefix("\ufeff")
            yield line_no, text


# ---------------------------------------------------------------------------------------------
# Labels and ids


def _name_map(label_names: LabelNames) -> dict[str, str] | None:
    """Raw label -> class name. A list maps its 0-based positions ("0", "1", ...) to names."""
    if label_names is None:
        return None
    if isinstance(label_names, dict):
        return {str(raw): str(name) for raw, name in label_names.items()}
    return {str(index): str(name) for index, name in enumerate(label_names)}


def _label(raw, names: dict[str, str] | None, path: Path, line: int) -> str | None:
    """The class name of a raw label value; None (unlabeled) for a missing or empty label."""
    if raw is None or raw == "":
        return None
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        raise DataFormatError(f"label must be a string or an integer, found {raw!r}", str(path), line)
    raw = str(raw)
    if names is None:
        return raw
    if raw not in names:
        raise DataFormatError(f"unknown label {raw!r} (expected one of {', '.join(names)})", str(path), line)
    return names[raw]


def _classification_dataset(examples: list[Example], names: dict[str, str] | None, path: Path) -> Dataset:
    """A classification dataset, or a multi-label one when labels are lists (all of them must be)."""
    multi = any(e.choices is not None for e in examples)
    if multi and any(e.label is not None for e in examples):
        raise DataFormatError("some labels are lists and some are single values: use one or the other", str(path))
    if names is not None:
        labels = list(dict.fromkeys(names.values()))
    else:
        labels = sorted({c for e in examples for c in ([e.label] if e.label is not None else e.choices or [])})
    return Dataset(MULTILABEL if multi else CLASSIFICATION, examples, labels)


class _IdChecker:
    """Turns id values into strings and refuses duplicates (ids key scores and annotations)."""

    def __init__(self, path: Path):
        self.path = path
        self.first_line: dict[str, int] = {}

    def __call__(self, value, line: int) -> str:
        if value is None or value == "" or not isinstance(value, str | int) or isinstance(value, bool):
            raise DataFormatError(f"missing or invalid id {value!r}", str(self.path), line)
        example_id = str(value)
        if example_id in self.first_line:
            raise DataFormatError(
                f"duplicate id {example_id!r} (first seen on line {self.first_line[example_id]})",
                str(self.path),
                line,
            )
        self.first_line[example_id] = line
        return example_id


# ---------------------------------------------------------------------------------------------
# Classification readers


def read_csv(
    path: str | Path,
    text_columns: Sequence[Column] | Column,
    label_column: Column | None = None,
    delimiter: str = ",",
    header: bool | None = None,
    encoding: str = "utf-8",
    id_column: Column | None = None,
    label_names: LabelNames = None,
    text_separator: str = " ",
) -> Dataset:
    """Read a classification CSV; header=None means "has a header row when any column is named"."""
    path = Path(path)
    if isinstance(text_columns, str | int):
        text_columns = [text_columns]
    columns = [*text_columns, label_column, id_column]
    if header is None:
        header = any(isinstance(c, str) for c in columns)
    names = _name_map(label_names)
    ids = _IdChecker(path)
    lines = _numbered_lines(path, encoding)
    reader = csv.reader((text for _, text in lines), delimiter=delimiter)

    examples: list[Example] = []
    n_columns = None
    header_row = None
    text_idx: list[int] = []
    label_idx = id_idx = None
    last_line = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as err:
            raise DataFormatError(f"bad CSV: {err}", str(path), reader.line_num) from err
        line, last_line = last_line + 1, reader.line_num
        if not row:
            continue
        if n_columns is None:
            n_columns = len(row)
            if header:
                header_row = [name.strip() for name in row]
            text_idx = [_column_index(c, header_row, n_columns, path, line) for c in text_columns]
            label_idx = _column_index(label_column, header_row, n_columns, path, line)
            id_idx = _column_index(id_column, header_row, n_columns, path, line)
            if header:
                continue
        if len(row) != n_columns:
            raise DataFormatError(f"expected {n_columns} columns, found {len(row)}", str(path), line)
        text = text_separator.join(row[i] for i in text_idx if row[i])
        if not text.strip():
            raise DataFormatError("empty text", str(path), line)
        label = _label(row[label_idx], names, path, line) if label_idx is not None else None
        example_id = ids(row[id_idx], line) if id_idx is not None else str(len(examples))
        examples.append(Example(id=example_id, text=text, label=label))
    return _classification_dataset(examples, names, path)


def _column_index(
    column: Column | None, header: list[str] | None, n_columns: int, path: Path, line: int
) -> int | None:
    if column is None:
        return None
    if isinstance(column, str):
        if header is None:
            raise DataFormatError(
                f"column {column!r} is named but the file is read without a header", str(path)
            )
        if column not in header:
            raise DataFormatError(
                f"no column {column!r} in the header ({', '.join(header)})", str(path), line
            )
        return header.index(column)
    if not -n_columns <= column < n_columns:
        raise DataFormatError(
            f"column {column} does not exist: rows have {n_columns} columns", str(path), line
        )
    return column % n_columns


def read_jsonl(
    path: str | Path,
    text_field: str = "text",
    label_field: str | None = "label",
    id_field: str | None = None,
    encoding: str = "utf-8",
    label_names: LabelNames = None,
) -> Dataset:
    """Read one JSON object per line; fields other than text/label/id go to Example.meta.

    A label that is a list of classes (maybe empty) makes the dataset multi-label."""
    path = Path(path)
    names = _name_map(label_names)
    ids = _IdChecker(path)
    examples: list[Example] = []
    for line, raw in _numbered_lines(path, encoding):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as err:
            raise DataFormatError(f"not valid JSON: {err.msg} (column {err.colno})", str(path), line) from err
        if not isinstance(record, dict):
            raise DataFormatError(f"expected a JSON object, found {type(record).__name__}", str(path), line)
        text = record.get(text_field)
        if not isinstance(text, str):
            problem = "missing" if text is None else f"not a string ({type(text).__name__})"
            raise DataFormatError(f"text field {text_field!r} is {problem}", str(path), line)
        if not text.strip():
            raise DataFormatError("empty text", str(path), line)
        raw_label = record.get(label_field) if label_field else None
        label, choices = None, None
        if isinstance(raw_label, list):
            choices = [_label(value, names, path, line) for value in raw_label]
            if None in choices:
                raise DataFormatError("a label list holds an empty label", str(path), line)
        else:
            label = _label(raw_label, names, path, line)
        example_id = ids(record.get(id_field), line) if id_field else str(len(examples))
        meta = {k: v for k, v in record.items() if k not in (text_field, label_field, id_field)}
        examples.append(Example(id=example_id, text=text, label=label, choices=choices, meta=meta))
    return _classification_dataset(examples, names, path)


def read_label_text(path: str | Path, encoding: str = "utf-8", label_names: LabelNames = None) -> Dataset:
    """Read "<label> <text>" lines (TREC *.all, SST-2 stsa.binary.*)."""
    path = Path(path)
    names = _name_map(label_names)
    examples: list[Example] = []
    for line, raw in _numbered_lines(path, encoding):
        if not raw.strip():
            continue
        parts = raw.strip().split(maxsplit=1)
        if len(parts) != 2:
            raise DataFormatError("expected '<label> <text>'", str(path), line)
        label = _label(parts[0], names, path, line)
        examples.append(Example(id=str(len(examples)), text=parts[1], label=label))
    return _classification_dataset(examples, names, path)


# ---------------------------------------------------------------------------------------------
# Tagging reader


def _check_tag(tag: str, path: Path, line: int) -> None:
    if tag == "O" or (tag[:2] in ("B-", "I-") and len(tag) > 2):
        return
    raise DataFormatError(f"bad tag {tag!r}: expected O, B-<type> or I-<type> (IOB2)", str(path), line)


def read_conll(
    path: str | Path,
    tag_column: int | None = -1,
    token_column: int = 0,
    delimiter: str | None = None,
    encoding: str = "utf-8",
    docstart: str = "-DOCSTART-",
) -> Dataset:
    """Read CoNLL-style token-per-line files (blank line between sentences, IOB2 tags).

    delimiter=None splits a line on tabs when it has any, else on whitespace. tag_column=None reads
    an unlabeled file (tokens only). -DOCSTART- lines and stray BOM characters are skipped.
    """
    path = Path(path)
    examples: list[Example] = []
    types: set[str] = set()
    words: list[str] = []
    tags: list[str] = []
    first_line = 0
    n_columns = None

    def end_sentence() -> None:
        if words:
            text, offsets = words_text(words)
            examples.append(
                Example(
                    id=str(len(examples)),
                    text=text,
                    words=list(words),
                    tags=list(tags) if tag_column is not None else None,
                    offsets=offsets,
                    meta={"line": first_line},
                )
            )
        words.clear()
        tags.clear()

    for line, raw in _numbered_lines(path, encoding):
        # WNUT-17 has BOM characters inside the file (a line of its own, and glued to a token)
        raw = raw.replace("\ufeff", "").rstrip("\r\n")
        if not raw.strip():
            end_sentence()
            continue
        split_on = delimiter if delimiter is not None else ("\t" if "\t" in raw else None)
        fields = [f.strip() for f in raw.split(split_on)] if split_on else raw.split()
        if n_columns is None:
            n_columns = len(fields)
            for name, column in (("token_column", token_column), ("tag_column", tag_column)):
                if column is not None and not -n_columns <= column < n_columns:
                    raise DataFormatError(
                        f"{name}={column} but lines have {n_columns} columns", str(path), line
                    )
            if tag_column is not None and tag_column % n_columns == token_column % n_columns:
                raise DataFormatError(
                    "the tag column is the token column (one column only? pass tag_column=None)",
                    str(path),
                    line,
                )
        elif len(fields) != n_columns:
            raise DataFormatError(
                f"expected {n_columns} columns like the first token line, found {len(fields)}",
                str(path),
                line,
            )
        token = fields[token_column]
        if not token:
            raise DataFormatError("empty token", str(path), line)
        if token == docstart:
            end_sentence()
            continue
        if not words:
            first_line = line
        words.append(token)
        if tag_column is not None:
            tag = fields[tag_column]
            _check_tag(tag, path, line)
            if tag != "O":
                types.add(tag[2:])
            tags.append(tag)
    end_sentence()
    return Dataset(TAGGING, examples, iob2_labels(sorted(types)))


# ---------------------------------------------------------------------------------------------
# Dispatcher

_SUFFIX_FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "ls_json",
    ".conll": "conll",
    ".bio": "conll",
    ".iob": "conll",
    ".all": "label_text",
}
FORMATS = ("csv", "tsv", "jsonl", "label_text", "conll", "ls_json")


def guess_format(path: str | Path) -> str:
    """The reader format for a file name (.csv .tsv .jsonl .json .conll .all, optionally + .gz/.xz)."""
    path = Path(path)
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in (".gz", ".xz"):
        suffixes.pop()
    if suffixes and suffixes[-1] in _SUFFIX_FORMATS:
        return _SUFFIX_FORMATS[suffixes[-1]]
    raise DataFormatError(
        f"cannot tell the format from the file name; pass format= one of {', '.join(FORMATS)}", str(path)
    )


def read_dataset(path: str | Path, format: str | None = None, **options) -> Dataset:
    """Read any supported file; the format is guessed from the suffix when not given."""
    format = format or guess_format(path)
    if format in ("csv", "tsv"):
        options.setdefault("text_columns", ["text"])
        options.setdefault("label_column", "label")
        if format == "tsv":
            options.setdefault("delimiter", "\t")
        return read_csv(path, **options)
    readers = {
        "jsonl": read_jsonl,
        "label_text": read_label_text,
        "conll": read_conll,
        "ls_json": read_ls_export,
    }
    if format not in readers:
        raise ALError(f"unknown format {format!r}; known: {', '.join(FORMATS)}")
    return readers[format](path, **options)


# ---------------------------------------------------------------------------------------------
# Writers (their output reads back with the readers above)


def _examples(data: Dataset | Iterable[Example]) -> list[Example]:
    return list(data.examples if isinstance(data, Dataset) else data)


def _write_text(path: str | Path, text: str) -> None:
    """Write all at once through a temporary file, so a failure never leaves half a file."""
    path = Path(path)
    data = text.encode("utf-8")
    if path.suffix.lower() == ".gz":
        data = gzip.compress(data)
    elif path.suffix.lower() == ".xz":
        data = lzma.compress(data)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def write_jsonl(data: Dataset | Iterable[Example], path: str | Path) -> None:
    """Write classification examples as JSONL {id, text, label, **meta} (label: a list of classes for
    multi-label examples); read back with id_field="id"."""
    lines = []
    for example in _examples(data):
        label = example.choices if example.choices is not None else example.label
        record = {**example.meta, "id": example.id, "text": example.text, "label": label}
        lines.append(json.dumps(record, ensure_ascii=False) + "\n")
    _write_text(path, "".join(lines))


def write_csv(data: Dataset | Iterable[Example], path: str | Path) -> None:
    """Write classification examples as CSV with header id,text,label (empty label = unlabeled)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["id", "text", "label"])
    for example in _examples(data):
        writer.writerow([example.id, example.text, example.label or ""])
    _write_text(path, buffer.getvalue())


def write_conll(data: Dataset | Iterable[Example], path: str | Path) -> None:
    """Write tagging examples as "word<TAB>tag" lines (words only when no example has tags)."""
    examples = _examples(data)
    with_tags = [e.tags is not None for e in examples]
    if any(with_tags) and not all(with_tags):
        raise ValueError("cannot write labeled and unlabeled sentences to one CoNLL file")
    lines = []
    for example in examples:
        words = example.words if example.words is not None else example.text.split()
        if not words:
            raise ValueError(f"example {example.id} has no words")
        if example.tags is not None and len(example.tags) != len(words):
            raise ValueError(f"example {example.id} has {len(words)} words but {len(example.tags)} tags")
        for i, word in enumerate(words):
            if not word or any(ch.isspace() for ch in word):
                raise ValueError(f"example {example.id}: word {word!r} is empty or contains whitespace")
            lines.append(f"{word}\t{example.tags[i]}\n" if example.tags is not None else f"{word}\n")
        lines.append("\n")
    _write_text(path, "".join(lines))
