"""Label Studio shapes: configs, tasks and annotations as Label Studio 1.23 sends them, results as it stores them."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from al_core.data import Example
from al_core.exceptions import DataFormatError, UnsupportedConfigError
from al_core.ls_format import (
    LabelConfig,
    examples_from_export,
    model_labels,
    parse_label_config,
    prediction_result,
    read_ls_export,
    spans_to_tags,
    tags_to_spans,
    task_to_example,
    tokenize_words,
)

# the two configs of the recorded Label Studio sessions
CLS_CONFIG = (
    '<View>\n  <Text name="text" value="$text"/>\n  <Choices name="sentiment" toName="text" choice="single">\n'
    '    <Choice value="Positive"/>\n    <Choice value="Negative"/>\n    <Choice value="Neutral"/>\n'
    "  </Choices>\n</View>"
)
NER_CONFIG = (
    '<View>\n  <Labels name="label" toName="text">\n    <Label value="PER"/>\n    <Label value="ORG"/>\n'
    '    <Label value="LOC"/>\n  </Labels>\n  <Text name="text" value="$text"/>\n</View>'
)
NER_TEXT = "On day 1 the team from Globex visited Berlin with Carol."


# ---------------------------------------------------------------------------------------------
# Labeling configs


def test_parse_choices_config():
    config = parse_label_config(CLS_CONFIG)
    assert config == LabelConfig(
        kind="classification",
        from_name="sentiment",
        to_name="text",
        value_key="text",
        labels=["Positive", "Negative", "Neutral"],
        multi_label=False,
        tag="Choices",
    )
    assert model_labels(config) == ["Positive", "Negative", "Neutral"]


def test_parse_multiple_choice_and_aliases():
    xml = (
        '<View><Header value="Topics"/><Text name="doc" value="$body"/>'
        '<Choices name="topic" toName="doc" choice="multiple"><Choice value="Sport" alias="S"/>'
        '<Choice value="Politics"/></Choices></View>'
    )
    config = parse_label_config(xml)
    assert (config.multi_label, config.value_key, config.labels) == (True, "body", ["S", "Politics"])


def test_parse_labels_config():
    config = parse_label_config(NER_CONFIG)
    assert (config.kind, config.tag, config.from_name, config.to_name) == (
        "tagging",
        "Labels",
        "label",
        "text",
    )
    assert config.labels == ["PER", "ORG", "LOC"]
    assert model_labels(config) == ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        (
            '<View><Image name="img" value="$image"/><Choices name="c" toName="img">'
            '<Choice value="cat"/></Choices></View>',
            "<Image> is not supported",
        ),
        ('<View><Choices name="c" toName="text"><Choice value="a"/></Choices></View>', "no <Text> object"),
        (
            '<View><Text name="text" value="$text"/><Choices name="a" toName="text"><Choice value="x"/></Choices>'
            '<Labels name="b" toName="text"><Label value="PER"/></Labels></View>',
            "several control tags",
        ),
        (
            '<View><Text name="text" value="$text"/><TextArea name="t" toName="text"/></View>',
            "<TextArea> is not supported",
        ),
        ('<View><Text name="text" value="$text"/></View>', "no <Choices> or <Labels> control tag"),
        (
            '<View><Text name="text" value="$text"/><Choices name="c" toName="text"/></View>',
            "needs <Choice value=...>",
        ),
        (
            '<View><Text name="text" value="$text"/><Choices name="c" toName="txt"><Choice value="a"/></Choices></View>',
            "toName='txt' does not name a <Text> object",
        ),
        ("<View><Text name='text' value='$text'>", "not valid XML"),
    ],
)
def test_unsupported_configs_name_the_problem(xml, message):
    with pytest.raises(UnsupportedConfigError, match=re.escape(message)):
        parse_label_config(xml)


# ---------------------------------------------------------------------------------------------
# Words, spans, tags


def test_tokenize_words_offsets():
    text = "U.S. troops,  Dubbz's 1,000 café!"
    words, offsets = tokenize_words(text)
    assert words == ["U", ".", "S", ".", "troops", ",", "Dubbz", "'", "s", "1", ",", "000", "café", "!"]
    assert [text[s:e] for s, e in offsets] == words


def test_spans_to_tags_and_back():
    spans = [(23, 29, "ORG"), (38, 44, "LOC"), (50, 55, "PER")]
    words, offsets, tags = spans_to_tags(NER_TEXT, spans)
    assert [(w, t) for w, t in zip(words, tags, strict=True) if t != "O"] == [
        ("Globex", "B-ORG"),
        ("Berlin", "B-LOC"),
        ("Carol", "B-PER"),
    ]
    assert tags_to_spans(NER_TEXT, offsets, tags) == spans


def test_spans_cover_whole_words_and_overlaps_are_dropped():
    text = "New York City is big"
    _, offsets, tags = spans_to_tags(text, [(1, 7, "LOC"), (4, 13, "ORG")])
    assert tags == ["B-LOC", "I-LOC", "O", "O", "O"]  # partial words included; the overlapping span dropped
    assert tags_to_spans(text, offsets, tags) == [(0, 8, "LOC")]
    with pytest.raises(DataFormatError, match="outside the text"):
        spans_to_tags(text, [(15, 40, "LOC")])


def test_tags_to_spans_adjacent_and_stray_inside_tags():
    text = "a b c d"
    _, offsets = tokenize_words(text)
    assert tags_to_spans(text, offsets, ["B-X", "B-X", "I-Y", "I-Y"]) == [
        (0, 1, "X"),
        (2, 3, "X"),
        (4, 7, "Y"),
    ]


WORD = st.text(alphabet="abcXYZ019é.,'-", min_size=1, max_size=6)


@st.composite
def text_with_spans(draw):
    pieces = draw(st.lists(WORD, min_size=1, max_size=12))
    gaps = draw(
        st.lists(st.sampled_from([" ", "  ", "\n", "\t "]), min_size=len(pieces), max_size=len(pieces))
    )
    text = "".join(p + g for p, g in zip(pieces, gaps, strict=True))
    _, offsets = tokenize_words(text)
    spans, i = [], 0
    while i < len(offsets):
        i += draw(st.integers(0, 2))
        length = draw(st.integers(1, 3))
        if i + length > len(offsets):
            break
        spans.append(
            (offsets[i][0], offsets[i + length - 1][1], draw(st.sampled_from(["PER", "LOC", "misc-1"])))
        )
        i += length
    return text, spans


@given(text_with_spans())
def test_spans_tags_spans_round_trip(case):
    text, spans = case
    words, offsets, tags = spans_to_tags(text, spans)
    assert len(words) == len(offsets) == len(tags)
    assert tags_to_spans(text, offsets, tags) == spans
    assert spans_to_tags(text, tags_to_spans(text, offsets, tags))[2] == tags


# ---------------------------------------------------------------------------------------------
# Tasks, annotations, exports


def annotation(result, annotation_id=1, updated="2026-11-22T03:46:52Z", cancelled=False):
    return {"id": annotation_id, "result": result, "was_cancelled": cancelled, "updated_at": updated}


def choice(label):
    return {"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [label]}}


def entity(start, end, label):
    text = NER_TEXT[start:end]
    value = {"start": start, "end": end, "text": text, "labels": [label]}
    return {"id": "a1", "from_name": "label", "to_name": "text", "type": "labels", "value": value}


def test_task_to_example_uses_latest_non_cancelled_annotation():
    config = parse_label_config(CLS_CONFIG)
    task = {
        "id": 8,
        "data": {"text": "Review 7: the product was terrible and shipping took 7 days."},
        "annotations": [
            annotation([choice("Positive")], 1, "2026-11-22T03:40:00Z"),
            annotation([choice("Negative")], 2, "2026-11-22T03:46:52Z"),
            annotation([], 3, "2026-11-22T03:50:00Z", cancelled=True),
        ],
        "predictions": [{"result": [choice("Neutral")], "score": 0.1858}],
    }
    example = task_to_example(task, config)
    assert (example.id, example.label, example.meta["annotation_id"]) == ("8", "Negative", 2)
    unlabeled = task_to_example(
        {"id": 9, "data": {"text": "x"}, "annotations": [], "predictions": []}, config
    )
    assert unlabeled.label is None and not unlabeled.is_labeled


def test_task_to_example_with_webhook_annotation():
    # an ANNOTATION_CREATED webhook carries the task without annotations, and the annotation beside it
    config = parse_label_config(NER_CONFIG)
    task = {"id": 22, "data": {"text": NER_TEXT}, "is_labeled": True}
    example = task_to_example(task, config, annotation=annotation([entity(23, 29, "ORG")], 3))
    assert example.id == "22"
    assert [(w, t) for w, t in zip(example.words, example.tags, strict=True) if t != "O"] == [
        ("Globex", "B-ORG")
    ]
    empty = task_to_example(task, config, annotation=annotation([]))
    assert empty.is_labeled and set(empty.tags) == {"O"}  # submitted with no entities
    assert task_to_example(task, config).tags is None


def test_task_to_example_bad_tasks():
    config = parse_label_config(CLS_CONFIG)
    with pytest.raises(DataFormatError, match="task 5: data field 'text' is missing"):
        task_to_example({"id": 5, "data": {"body": "x"}}, config)
    with pytest.raises(DataFormatError, match="task 6: data field 'text' is not a string"):
        task_to_example({"id": 6, "data": {"text": ["x"]}}, config)
    with pytest.raises(DataFormatError, match="task 7: label 'Angry' is not in the label config"):
        task_to_example(
            {"id": 7, "data": {"text": "x"}, "annotations": [annotation([choice("Angry")])]}, config
        )


def test_examples_from_export_and_read_ls_export(tmp_path):
    tasks = [
        {"id": 21, "data": {"text": "Alice met Bob."}, "annotations": [], "predictions": []},
        {"id": 22, "data": {"text": NER_TEXT}, "annotations": [annotation([entity(38, 44, "LOC")])]},
    ]
    config = parse_label_config(NER_CONFIG)
    dataset = examples_from_export(tasks, config)
    assert dataset.kind == "tagging" and dataset.labels == model_labels(config)
    assert [e.id for e in dataset.labeled()] == ["22"]
    path = tmp_path / "export.json"
    path.write_text(json.dumps(tasks), encoding="utf-8")
    inferred = read_ls_export(path)  # config inferred from the annotations
    assert inferred.labels == ["O", "B-LOC", "I-LOC"]
    assert [e.tags for e in inferred.examples] == [e.tags for e in dataset.examples]
    assert read_ls_export(path, NER_CONFIG).labels == model_labels(config)


def test_read_ls_export_errors_name_file(tmp_path):
    path = tmp_path / "export.json"
    path.write_text('[\n  {"id": 1,\n   "data": }\n]', encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"export\.json:3: not valid JSON"):
        read_ls_export(path)
    path.write_text(json.dumps([{"id": 1, "data": {"text": "x"}, "annotations": []}]), encoding="utf-8")
    with pytest.raises(DataFormatError, match="pass the label config"):
        read_ls_export(path)
    path.write_text(json.dumps([{"id": 1, "data": {"txt": "x"}}]), encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"export\.json: task 1: data field 'text' is missing"):
        read_ls_export(path, CLS_CONFIG)


# ---------------------------------------------------------------------------------------------
# Results, exactly as Label Studio stored and showed them


def test_prediction_result_choices():
    config = parse_label_config(CLS_CONFIG)
    assert prediction_result("some review", config, "Neutral") == [
        {"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": ["Neutral"]}}
    ]
    scored = prediction_result(Example(id="1", text="t", label="Negative"), config, score=0.0288)
    assert scored[0]["value"] == {"choices": ["Negative"]} and scored[0]["score"] == 0.0288
    with pytest.raises(ValueError, match="'Angry' is not in the label config"):
        prediction_result("t", config, "Angry")


def test_prediction_result_labels():
    config = parse_label_config(NER_CONFIG)
    text = "Alice works at Globex"
    regions = prediction_result(text, config, ["B-PER", "O", "O", "B-ORG"])
    assert regions == [
        {
            "id": "r0",
            "from_name": "label",
            "to_name": "text",
            "type": "labels",
            "value": {"start": 0, "end": 5, "text": "Alice", "labels": ["PER"]},
        },
        {
            "id": "r1",
            "from_name": "label",
            "to_name": "text",
            "type": "labels",
            "value": {"start": 15, "end": 21, "text": "Globex", "labels": ["ORG"]},
        },
    ]
    # regions read back as the same tags
    back = task_to_example({"id": 1, "data": {"text": text}}, config, annotation=annotation(regions))
    assert back.tags == ["B-PER", "O", "O", "B-ORG"]
