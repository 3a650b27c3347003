"""Readers and writers: the real shared datasets load with their published counts; broken files fail clearly."""

from __future__ import annotations

import gzip
import json
import lzma
from collections import Counter

import pytest

from al_core.data import Example
from al_core.exceptions import ALError, DataFormatError
from al_core.readers import (
    read_conll,
    read_csv,
    read_dataset,
    read_jsonl,
    read_label_text,
    write_conll,
    write_csv,
    write_jsonl,
)
from simulate.datasets import shared_dataset


def entity_counts(dataset) -> Counter:
    return Counter(tag[2:] for example in dataset.examples for tag in example.tags if tag.startswith("B-"))


# ---------------------------------------------------------------------------------------------
# The real shared datasets (counts from their PROVENANCE.txt)

CONLL_COUNTS = {
    "train": (14041, 203621, {"PER": 6600, "LOC": 7140, "ORG": 6321, "MISC": 3438}),
    "dev": (3250, 51362, {"PER": 1842, "LOC": 1837, "ORG": 1341, "MISC": 922}),
    "test": (3453, 46435, {"PER": 1617, "LOC": 1668, "ORG": 1661, "MISC": 702}),
}


@pytest.mark.parametrize("split", CONLL_COUNTS)
def test_conll2003_counts(shared_data, split):
    sentences, tokens, entities = CONLL_COUNTS[split]
    dataset = shared_dataset("conll2003", split, shared_data)
    assert dataset.kind == "tagging"
    assert len(dataset) == sentences
    assert sum(len(e.words) for e in dataset.examples) == tokens
    assert entity_counts(dataset) == entities
    assert dataset.labels == ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    first = dataset.examples[0]
    assert first.id == "0" and len(first.tags) == len(first.words) == len(first.offsets)
    assert all(first.text[s:e] == w for w, (s, e) in zip(first.words, first.offsets, strict=True))


WNUT_COUNTS = {"train": (3394, 62730), "dev": (1009, 15733), "test": (1287, 23394)}


@pytest.mark.parametrize("split", WNUT_COUNTS)
def test_wnut17_counts_and_bom(shared_data, split):
    sentences, tokens = WNUT_COUNTS[split]
    dataset = shared_dataset("wnut17", split, shared_data)
    assert len(dataset) == sentences
    assert sum(len(e.words) for e in dataset.examples) == tokens
    assert not any("\ufeff" in word for e in dataset.examples for word in e.words)
    assert len(dataset.labels) == 13


def test_wnut17_train_entities(shared_data):
    dataset = shared_dataset("wnut17", "train", shared_data)
    assert entity_counts(dataset) == {
        "person": 660,
        "location": 548,
        "group": 264,
        "corporation": 221,
        "product": 142,
        "creative-work": 140,
    }


CLASSIFICATION_COUNTS = {
    ("agnews", "test"): {"World": 1900, "Sports": 1900, "Business": 1900, "Sci/Tech": 1900},
    ("imdb", "train"): {"negative": 12500, "positive": 12500},
    ("imdb", "test"): {"negative": 12500, "positive": 12500},
    ("imdb5k", "train"): {"negative": 2500, "positive": 2500},
    ("imdb5k", "test"): {"negative": 1000, "positive": 1000},
    ("trec", "train"): {"DESC": 1162, "ENTY": 1250, "ABBR": 86, "HUM": 1223, "NUM": 896, "LOC": 835},
    ("trec", "test"): {"DESC": 138, "ENTY": 94, "ABBR": 9, "HUM": 65, "LOC": 81, "NUM": 113},
    ("sst2", "train"): {"negative": 3310, "positive": 3610},
    ("sst2", "dev"): {"negative": 428, "positive": 444},
    ("sst2", "test"): {"negative": 912, "positive": 909},
}


@pytest.mark.parametrize(("name", "split"), CLASSIFICATION_COUNTS)
def test_classification_sets_load(shared_data, name, split):
    dataset = shared_dataset(name, split, shared_data)
    assert dataset.kind == "classification"
    assert Counter(e.label for e in dataset.examples) == CLASSIFICATION_COUNTS[(name, split)]
    assert set(dataset.labels) == set(CLASSIFICATION_COUNTS[(name, split)])
    assert len({e.id for e in dataset.examples}) == len(dataset)
    assert all(e.text.strip() for e in dataset.examples)


def test_shared_dataset_details(shared_data):
    agnews = shared_dataset("agnews", "test", shared_data)
    assert agnews.labels == ["World", "Sports", "Business", "Sci/Tech"]
    # title and description joined
    assert agnews.examples[0].text.startswith("Fears for T N pension after talks Unions representing workers")
    assert agnews.examples[0].label == "Business"
    trec = shared_dataset("trec", "test", shared_data)
    assert trec.labels == ["DESC", "ENTY", "ABBR", "HUM", "LOC", "NUM"]
    assert (trec.examples[0].text, trec.examples[0].label) == ("How far is it from Denver to Aspen ?", "NUM")
    imdb = shared_dataset("imdb5k", "test", shared_data)
    assert set(imdb.examples[0].meta) == {"id", "rating"}  # the file's id repeats, so it is kept as meta
    with pytest.raises(ALError, match="has no split 'train'"):
        shared_dataset("agnews", "train", shared_data)
    with pytest.raises(ALError, match="unknown dataset 'mnist'"):
        shared_dataset("mnist", "train", shared_data)


def test_shared_dataset_missing_root(tmp_path):
    with pytest.raises(DataFormatError, match="dataset folder not found"):
        shared_dataset("sst2", "dev", tmp_path / "nowhere")


# ---------------------------------------------------------------------------------------------
# CSV


def test_read_csv_headerless_with_label_map(tmp_path):
    path = tmp_path / "news.csv"
    path.write_text('"2","Title one","Body, with comma"\n"1","Title two","Body two"\n', encoding="utf-8")
    dataset = read_csv(path, text_columns=[1, 2], label_column=0, label_names={"1": "World", "2": "Sports"})
    assert [(e.id, e.text, e.label) for e in dataset.examples] == [
        ("0", "Title one Body, with comma", "Sports"),
        ("1", "Title two Body two", "World"),
    ]
    assert dataset.labels == ["World", "Sports"]


def test_read_csv_with_header_ids_and_unlabeled_rows(tmp_path):
    path = tmp_path / "pool.csv"
    path.write_text("key,review,label\na7,good film,pos\nb3,dull,\n", encoding="utf-8")
    dataset = read_csv(path, ["review"], "label", id_column="key")
    assert [(e.id, e.label) for e in dataset.examples] == [("a7", "pos"), ("b3", None)]
    assert dataset.labels == ["pos"]
    assert [e.id for e in dataset.unlabeled()] == ["b3"]


def test_read_csv_bad_column_count_names_file_and_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("text,label\nfine,a\nmissing a column\nfine again,b\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"bad\.csv:3: expected 2 columns, found 1") as info:
        read_csv(path, ["text"], "label")
    assert info.value.line == 3 and info.value.path == str(path)


def test_read_csv_bad_label_names_file_and_line(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("1,a\n2,b\n7,c\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"labels\.csv:3: unknown label '7'"):
        read_csv(path, [1], 0, label_names=["zero", "one", "two"])


def test_read_csv_unknown_column_name(tmp_path):
    path = tmp_path / "cols.csv"
    path.write_text("text,label\nx,y\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match="no column 'sentence'"):
        read_csv(path, ["sentence"], "label")


# ---------------------------------------------------------------------------------------------
# JSONL


def test_read_jsonl_gz_and_xz(tmp_path):
    lines = [
        {"id": 10, "text": "great", "label": 1, "rating": 9},
        {"id": 11, "text": "bad", "label": 0, "rating": 2},
    ]
    payload = "".join(json.dumps(r) + "\n" for r in lines).encode()
    (tmp_path / "r.jsonl.gz").write_bytes(gzip.compress(payload))
    (tmp_path / "r.jsonl.xz").write_bytes(lzma.compress(payload))
    for name in ("r.jsonl.gz", "r.jsonl.xz"):
        dataset = read_jsonl(tmp_path / name, id_field="id", label_names={"0": "neg", "1": "pos"})
        assert [(e.id, e.text, e.label, e.meta) for e in dataset.examples] == [
            ("10", "great", "pos", {"rating": 9}),
            ("11", "bad", "neg", {"rating": 2}),
        ]


def test_read_jsonl_bad_json_line(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"text": "ok", "label": "a"}\n\n{"text": "cut off", \n', encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"broken\.jsonl:3: not valid JSON"):
        read_jsonl(path)


def test_read_jsonl_missing_text_and_duplicate_id(tmp_path):
    path = tmp_path / "fields.jsonl"
    path.write_text('{"text": "ok"}\n{"body": "where is text"}\n', encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"fields\.jsonl:2: text field 'text' is missing"):
        read_jsonl(path)
    path.write_text('{"id": 1, "text": "a"}\n{"id": 1, "text": "b"}\n', encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"fields\.jsonl:2: duplicate id '1' \(first seen on line 1\)"):
        read_jsonl(path, id_field="id")


def test_corrupt_gzip_is_a_data_error(tmp_path):
    path = tmp_path / "half.jsonl.gz"
    whole = gzip.compress(b'{"text": "a"}\n' * 1000)
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataFormatError, match="cannot decompress"):
        read_jsonl(path)


# ---------------------------------------------------------------------------------------------
# "<label> <text>" lines


def test_read_label_text_latin1_and_undecodable_bytes(tmp_path):
    path = tmp_path / "questions.all"
    path.write_bytes("0 What is a caf\xe9 ?\n3 Who was Galileo ?\n".encode("latin-1"))
    with pytest.raises(
        DataFormatError, match=r"questions\.all:1: byte b'\\xe9' at column 16 cannot be decoded"
    ):
        read_label_text(path)
    dataset = read_label_text(path, encoding="latin-1", label_names=["DESC", "ENTY", "ABBR", "HUM"])
    assert [(e.text, e.label) for e in dataset.examples] == [
        ("What is a café ?", "DESC"),
        ("Who was Galileo ?", "HUM"),
    ]


def test_read_label_text_line_without_text(tmp_path):
    path = tmp_path / "sst.txt"
    path.write_text("1 a fine film\n0\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"sst\.txt:2: expected '<label> <text>'"):
        read_label_text(path)


# ---------------------------------------------------------------------------------------------
# CoNLL


def test_read_conll_docstart_bom_and_columns(tmp_path):
    path = tmp_path / "eng.sample"
    path.write_text(
        "\ufeff-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n"
        "Peter NNP B-NP B-PER\nBlackburn NNP I-NP I-PER\n",
        encoding="utf-8",
    )
    dataset = read_conll(path)
    assert [e.words for e in dataset.examples] == [["EU", "rejects"], ["Peter", "Blackburn"]]
    assert [e.tags for e in dataset.examples] == [["B-ORG", "O"], ["B-PER", "I-PER"]]
    assert [e.id for e in dataset.examples] == ["0", "1"]
    assert dataset.examples[1].text == "Peter Blackburn"
    assert dataset.examples[1].offsets == [(0, 5), (6, 15)]
    assert dataset.labels == ["O", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    chunks = read_conll(path, tag_column=2)
    assert chunks.examples[0].tags == ["B-NP", "B-VP"]


def test_read_conll_tab_file_with_bom_lines(tmp_path):
    path = tmp_path / "tweets.conll"
    path.write_text("Dubbz\ufeff\tB-person\nrocks\tO\n\ufeff\nnew\tO\n\t\nlast\tO\n", encoding="utf-8")
    dataset = read_conll(path)
    assert [e.words for e in dataset.examples] == [["Dubbz", "rocks"], ["new"], ["last"]]


def test_read_conll_bad_column_count(tmp_path):
    path = tmp_path / "cols.conll"
    path.write_text("EU NNP B-NP B-ORG\nrejects B-VP O\n", encoding="utf-8")
    with pytest.raises(
        DataFormatError, match=r"cols\.conll:2: expected 4 columns like the first token line, found 3"
    ):
        read_conll(path)


def test_read_conll_bad_tag(tmp_path):
    path = tmp_path / "tags.conll"
    path.write_text("EU\tB-ORG\n\nrejects\tPERSON\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"tags\.conll:3: bad tag 'PERSON'"):
        read_conll(path)


def test_read_conll_tokens_only(tmp_path):
    path = tmp_path / "raw.conll"
    path.write_text("hello\nworld\n\nagain\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match="pass tag_column=None"):
        read_conll(path)
    dataset = read_conll(path, tag_column=None)
    assert [e.words for e in dataset.examples] == [["hello", "world"], ["again"]]
    assert not dataset.labeled()


# ---------------------------------------------------------------------------------------------
# Writers and the dispatcher


def test_jsonl_round_trip(tmp_path):
    examples = [
        Example(id="a", text='good "quoted" film', label="pos", meta={"rating": 9}),
        Example(id="b", text="no label yet"),
    ]
    for name in ("out.jsonl", "out.jsonl.gz"):
        write_jsonl(examples, tmp_path / name)
        back = read_dataset(tmp_path / name, id_field="id")
        assert back.examples == examples
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "out.jsonl",
        "out.jsonl.gz",
    ]  # no partial files left


def test_csv_round_trip(tmp_path):
    examples = [
        Example(id="7", text='comma, "quotes"\nand a newline', label="x"),
        Example(id="9", text="plain"),
    ]
    write_csv(examples, tmp_path / "out.csv")
    back = read_csv(tmp_path / "out.csv", ["text"], "label", id_column="id")
    assert back.examples == examples


def test_conll_round_trip(tmp_path):
    dataset = read_conll_from_text(tmp_path, "EU\tB-ORG\nrejects\tO\n\nPeter\tB-PER\nBlackburn\tI-PER\n")
    write_conll(dataset, tmp_path / "copy.conll")
    back = read_dataset(tmp_path / "copy.conll")
    assert [(e.words, e.tags, e.text, e.offsets) for e in back.examples] == [
        (e.words, e.tags, e.text, e.offsets) for e in dataset.examples
    ]
    assert back.labels == dataset.labels


def read_conll_from_text(folder, text):
    path = folder / "in.conll"
    path.write_text(text, encoding="utf-8")
    return read_conll(path)


def test_read_dataset_guesses_format(tmp_path):
    (tmp_path / "a.all").write_text("1 text one\n", encoding="utf-8")
    assert read_dataset(tmp_path / "a.all").examples[0].label == "1"
    (tmp_path / "b.tsv").write_text("text\tlabel\nhello\tgreeting\n", encoding="utf-8")
    assert read_dataset(tmp_path / "b.tsv").examples[0].label == "greeting"
    with pytest.raises(DataFormatError, match="cannot tell the format"):
        read_dataset(tmp_path / "data.parquet")
    with pytest.raises(DataFormatError, match="no such file"):
        read_dataset(tmp_path / "missing.jsonl")
