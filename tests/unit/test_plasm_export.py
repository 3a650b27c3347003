"""plasm-export end to end with a tiny random model: sources, formats re-read by the readers, resume, errors."""

from __future__ import annotations

import copy
import json
import random
import time
from pathlib import Path

import pytest

from al_core.data import Example
from al_core.ls_format import parse_label_config, read_ls_export, task_to_example
from al_core.readers import read_conll, read_csv, read_jsonl
from plasm_export.cli import main
from testkit.fake_label_studio import TOKEN
from tests.conftest import ROOT, require_or_skip

SAMPLES = ROOT.parent / "shared" / "label-studio" / "samples"
REAL_EXPORT = SAMPLES / "16_other_webhook_actions" / "export_p1.json"

# the configs of the real projects the samples were captured from
CLS_CONFIG = """<View>
  <Text name="text" value="$text"/>
  <Choices name="sentiment" toName="text" choice="single">
    <Choice value="Positive"/>
    <Choice value="Negative"/>
    <Choice value="Neutral"/>
  </Choices>
</View>"""
NER_CONFIG = """<View>
  <Labels name="label" toName="text">
    <Label value="PER"/>
    <Label value="ORG"/>
    <Label value="LOC"/>
  </Labels>
  <Text name="text" value="$text"/>
</View>"""

# one task of a Label Studio 1.23.2 JSON export, in its real shape (see export_p1.json)
TASK_TEMPLATE = {
    "id": 0,
    "annotations": [],
    "drafts": [],
    "predictions": [],
    "data": {"text": ""},
    "meta": {},
    "created_at": "2026-11-22T03:43:13.712265Z",
    "updated_at": "2026-11-22T03:47:48.704244Z",
    "allow_skip": True,
    "inner_id": 0,
    "total_annotations": 0,
    "cancelled_annotations": 0,
    "total_predictions": 0,
    "comment_count": 0,
    "unresolved_comment_count": 0,
    "last_comment_updated_at": None,
    "project": 1,
    "updated_by": 1,
    "comment_authors": [],
}
ANNOTATION_TEMPLATE = {
    "id": 0,
    "completed_by": 1,
    "result": [],
    "was_cancelled": False,
    "ground_truth": False,
    "created_at": "2026-11-22T03:47:48.678491Z",
    "updated_at": "2026-11-22T03:47:48.678541Z",
    "draft_created_at": None,
    "lead_time": 3.2,
    "prediction": {},
    "result_count": 1,
    "task": 0,
    "project": 1,
}

POSITIVE = "good great excellent fun love best".split()
NEGATIVE = "bad awful terrible boring hate worst".split()
NEUTRAL = "the movie film plot story actor".split()
NAMES, PLACES, COMPANIES = (
    ["john", "mary", "smith"],
    ["paris", "london", "berlin"],
    ["google", "apple", "microsoft"],
)


def make_task(task_id: int, text: str, result: list | None) -> dict:
    task = copy.deepcopy(TASK_TEMPLATE)
    task.update(id=task_id, inner_id=task_id, data={"text": text})
    if result is not None:
        annotation = copy.deepcopy(ANNOTATION_TEMPLATE)
        annotation.update(id=1000 + task_id, task=task_id, result=result)
        task.update(annotations=[annotation], total_annotations=1)
    return task


def classification_export(n_gold: int = 24, n_pool: int = 16, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    classes = [("Positive", POSITIVE), ("Negative", NEGATIVE), ("Neutral", NEUTRAL)]
    tasks = []
    for i in range(n_gold + n_pool):
        label, words = classes[i % 3]
        text = " ".join(rng.sample(words, 3) + rng.sample(NEUTRAL, 2))
        result = [
            {"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [label]}}
        ]
        tasks.append(make_task(i + 1, text, result if i < n_gold else None))
    return tasks


def ner_export(n_gold: int = 12, n_pool: int = 8) -> list[dict]:
    tasks = []
    for i in range(n_gold + n_pool):
        name, place, company = NAMES[i % 3], PLACES[(i + 1) % 3], COMPANIES[(i + 2) % 3]
        text = f"{name} said in {place} that {company} won."
        spans = [(name, "PER"), (place, "LOC"), (company, "ORG")]
        result = [
            {
                "id": f"r{k}",
                "from_name": "label",
                "to_name": "text",
                "type": "labels",
                "value": {
                    "start": text.index(word),
                    "end": text.index(word) + len(word),
                    "text": word,
                    "labels": [lab],
                },
            }
            for k, (word, lab) in enumerate(spans)
        ]
        tasks.append(make_task(i + 1, text, result if i < n_gold else None))
    return tasks


def write(path: Path, data) -> Path:
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def run_cli(tiny_model_dir, *args) -> int:
    training = [
        "--epochs",
        "5",
        "--batch-size",
        "4",
        "--learning-rate",
        "3e-3",
        "--max-length",
        "32",
        "--device",
        "cpu",
        "--seed",
        "0",
        "--no-progress",
    ]
    return main(["--teacher", str(tiny_model_dir), *training, *map(str, args)])


def read_rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "all_tasks.jsonl").read_text(encoding="utf-8").splitlines()]


@pytest.fixture()
def cls_files(tmp_path):
    return write(tmp_path / "export.json", classification_export()), write(
        tmp_path / "config.xml", CLS_CONFIG
    )


# -- classification ----------------------------------------------------------------------------


def test_classification_export_every_format_reads_back(tiny_model_dir, tmp_path, cls_files, capsys):
    export, config_file = cls_files
    out = tmp_path / "out"
    started = time.perf_counter()
    assert (
        run_cli(
            tiny_model_dir,
            "--export",
            export,
            "--label-config",
            config_file,
            "--out",
            out,
            "--filter",
            "tracin",
            "--format",
            "all",
            "--no-check",
        )
        == 0
    )
    wall_s = time.perf_counter() - started
    stdout = capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == [
        "all_tasks.jsonl",
        "label_studio_import.json",
        "report.json",
        "report.md",
        "train.csv",
    ]
    report = json.loads((out / "report.json").read_text())
    rows = read_rows(out)
    assert len(rows) == 40 and [r["id"] for r in rows] == [str(i) for i in range(1, 41)]
    gold, pseudo = [r for r in rows if r["source"] == "gold"], [r for r in rows if r["source"] == "pseudo"]
    assert len(gold) == 24 and len(pseudo) == 16
    assert all(r["kept"] and r["teacher_confidence"] is None for r in gold)
    assert sum(r["heldout"] for r in gold) == round(0.2 * 24) == report["teacher"]["n_heldout"]
    assert all(r["label"] in ("Positive", "Negative", "Neutral") for r in rows)
    assert all(0 < r["teacher_confidence"] <= 1 and r["filter_score"] >= 0 for r in pseudo)
    assert all(r["teacher_model"] == str(tiny_model_dir) and r["teacher_version"] for r in rows)
    # the fraction rule: 1 - the teacher's held-out accuracy, and the highest TracIn scores go
    fraction = 1 - report["teacher"]["heldout_score"]
    assert report["drop_fraction"] == pytest.approx(fraction)
    # the teacher's held-out report: macro F1 beside accuracy (the drop rule's measure), every class in the table
    quality = report["teacher"]["quality"]
    assert report["teacher"]["metric"] == "accuracy" and quality["figures"]["accuracy"] == report["teacher"]["heldout_score"]
    assert quality["metric"] == "macro_f1" and sorted(quality["per_label"]) == ["Negative", "Neutral", "Positive"]
    assert "## Teacher on the held-out tasks" in (out / "report.md").read_text()
    dropped = [r for r in pseudo if not r["kept"]]
    assert len(dropped) == round(fraction * 16) == report["tasks"]["pseudo_dropped"]
    if dropped:
        assert min(r["filter_score"] for r in dropped) >= max(r["filter_score"] for r in pseudo if r["kept"])
    # counts per class and source add up
    assert sum(c["gold"] for c in report["per_class"].values()) == 24
    assert sum(c["pseudo_kept"] + c["pseudo_dropped"] for c in report["per_class"].values()) == 16
    # one timing per step of the run, each in the Markdown report; together within the run's wall time
    timings = report["timings_s"]
    assert set(timings) == {"teacher_fit_s", "teacher_eval_s", "teacher_refit_s", "pseudo_label_s", "filter_s"}
    assert report["successor_check"] is None and report["pseudo_labels_used"] is True
    line = f"successor check: off (--no-check) -> the training set holds gold + {report['tasks']['pseudo_kept']} pseudo-labels"
    assert stdout.startswith(line) and report["verdict"] in (out / "report.md").read_text()
    markdown = (out / "report.md").read_text()
    assert "Teacher:" in markdown and all(f"| {step} | " in markdown for step in timings)
    assert sum(timings.values()) <= wall_s

    # JSONL and CSV re-read by the engine's readers
    again = read_jsonl(out / "all_tasks.jsonl", id_field="id")
    assert [e.label for e in again.examples] == [r["label"] for r in rows]
    assert again.examples[0].meta["source"] == rows[0]["source"]
    train = read_csv(out / "train.csv", "text", "label", id_column="id")
    assert [e.id for e in train.examples] == [r["id"] for r in rows if r["kept"]]
    assert [e.label for e in train.examples] == [r["label"] for r in rows if r["kept"]]

    # the Label Studio import: gold as annotations, every pseudo-label as a prediction of the teacher
    config = parse_label_config(CLS_CONFIG)
    imported = json.loads((out / "label_studio_import.json").read_text())
    dataset = read_ls_export(out / "label_studio_import.json", config)
    assert {e.id: e.label for e in dataset.labeled()} == {r["id"]: r["label"] for r in gold}
    by_id = {str(t["id"]): t for t in imported}
    for row in pseudo:
        task = by_id[row["id"]]
        prediction = task["predictions"][0]
        assert prediction["model_version"] == row["teacher_version"]
        assert prediction["score"] == pytest.approx(row["teacher_confidence"])
        assert task["data"]["plasm_kept"] == row["kept"]
        assert (
            task_to_example(task, config, annotation={"result": prediction["result"]}).label == row["label"]
        )


def test_given_fraction_with_the_uncertainty_filter(tiny_model_dir, tmp_path, cls_files):
    export, config_file = cls_files
    out = tmp_path / "out"
    assert (
        run_cli(
            tiny_model_dir,
            "--export",
            export,
            "--label-config",
            config_file,
            "--out",
            out,
            "--filter",
            "uncertainty",
            "--drop-fraction",
            "0.25",
            "--group-by-length",
            "--no-check",  # the filter's drops alone (the check may set every pseudo-label aside)
        )
        == 0
    )
    pseudo = [r for r in read_rows(out) if r["source"] == "pseudo"]
    kept, dropped = [r for r in pseudo if r["kept"]], [r for r in pseudo if not r["kept"]]
    assert len(dropped) == 4  # 25% of 16
    assert max(r["teacher_confidence"] for r in dropped) <= min(r["teacher_confidence"] for r in kept)
    assert all(r["filter_score"] == pytest.approx(1 - r["teacher_confidence"], abs=1e-6) for r in pseudo)
    report = json.loads((out / "report.json").read_text())
    assert report["drop_fraction_rule"] == "given" and report["fraction_dropped"] == 0.25
    assert report["training"]["group_by_length"] is True


def test_check_successor_compares_on_heldout_gold(tiny_model_dir, tmp_path, cls_files):
    export, config_file = cls_files
    out = tmp_path / "out"
    assert (
        run_cli(
            tiny_model_dir,
            "--export",
            export,
            "--label-config",
            config_file,
            "--out",
            out,
            "--filter",
            "none",
            "--check-successor",
            tiny_model_dir,
        )
        == 0
    )
    check = json.loads((out / "report.json").read_text())["successor_check"]
    assert check["n_heldout"] == 5 and check["gold_only"]["n_train"] == 19
    assert check["with_pseudo"]["n_train"] == 19 + 16  # filter none keeps every pseudo-label
    better = "with_pseudo" if check["with_pseudo"]["score"] > check["gold_only"]["score"] else "gold_only"
    assert check["better"] == better
    assert "Successor check" in (out / "report.md").read_text()


SEEN = {"Positive": ["good", "great"], "Negative": ["bad", "awful"], "Neutral": ["plot", "story"]}
UNSEEN = {"Positive": ["excellent", "fun"], "Negative": ["terrible", "boring"], "Neutral": ["actor", "film"]}


def check_export(tmp_path) -> tuple[Path, dict[str, str]]:
    """30 gold tasks whose held-out part (the split plasm-export makes with seed 0) mostly uses words
    the rest of the gold never does, and 60 unlabeled tasks using both: a successor learns those
    words only from pseudo-labels. Also the true label of each unlabeled task."""
    from al_core.plasm import split_gold

    rng = random.Random(0)
    classes = list(SEEN)
    labels = [classes[i % 3] for i in range(30)]
    _, heldout = split_gold(
        [Example(id=str(i + 1), text="x", label=y) for i, y in enumerate(labels)], "classification", 0.2, 0
    )
    heldout_ids = {e.id for e in heldout}
    tasks, truth = [], {}
    for i in range(90):
        task_id, label = str(i + 1), classes[i % 3]
        if task_id in heldout_ids:  # a known word, outweighed by an unknown one
            text = " ".join([rng.choice(SEEN[label])] + [rng.choice(UNSEEN[label])] * 2)
        else:
            text = " ".join([rng.choice(SEEN[label] if i < 30 else SEEN[label] + UNSEEN[label])] * 3)
        result = [{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]
        tasks.append(make_task(i + 1, text, result if i < 30 else None))
        if i >= 30:
            truth[task_id] = label
    return write(tmp_path / "export.json", tasks), truth


def teacher_answers(monkeypatch, answer) -> None:
    """Every teacher (the refit one pseudo-labeling, the scored one in the check) answers `answer(id)`."""
    import numpy as np

    import al_core.plasm as core

    def pseudo_label(teacher, examples, chunk_size=512, progress=False):
        return core.PseudoLabels([answer(e.id) for e in examples], np.full(len(examples), 0.9))

    monkeypatch.setattr(core, "pseudo_label", pseudo_label)


@pytest.mark.parametrize("right", [True, False])
def test_the_successor_check_writes_the_better_set(tiny_model_dir, tmp_path, monkeypatch, capsys, right):
    export, truth = check_export(tmp_path)
    classes = list(SEEN)
    flipped = {i: classes[(classes.index(y) + 1) % 3] for i, y in truth.items()}
    teacher_answers(monkeypatch, (truth if right else flipped).get)
    out = tmp_path / "out"
    args = ["--export", export, "--label-config", write(tmp_path / "c.xml", CLS_CONFIG), "--out", out]
    assert run_cli(tiny_model_dir, *args, "--filter", "none", "--format", "all") == 0
    stdout = capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    check = report["successor_check"]
    gold, pseudo = check["gold_only"], check["with_pseudo"]
    assert check["mode"] == "frozen" and check["model"] == str(tiny_model_dir) and check["n_heldout"] == 6
    assert (gold["n_train"], pseudo["n_train"]) == (24, 24 + 60)  # the held-out gold stays out of both
    rows = read_rows(out)
    train = read_csv(out / "train.csv", "text", "label", id_column="id")
    imported = json.loads((out / "label_studio_import.json").read_text())
    if right:  # the held-out words are learned from the pseudo-labels only
        assert pseudo["score"] > gold["score"] + check["margin"] and check["better"] == "with_pseudo"
        assert len(train.examples) == 90 and report["pseudo_labels_used"] is True
        assert [r["label"] for r in rows if r["source"] == "pseudo"] == list(truth.values())
        verdict = "the training set holds gold + pseudo-labels"
    else:  # they teach the held-out words wrong
        assert gold["score"] > pseudo["score"] and check["better"] == "gold_only"
        assert {e.id for e in train.examples} == {r["id"] for r in rows if r["source"] == "gold"}
        assert not any(r["kept"] for r in rows if r["source"] == "pseudo")
        assert not any(t["data"]["plasm_kept"] for t in imported if t["data"]["plasm_source"] == "pseudo")
        assert report["pseudo_labels_used"] is False and report["tasks"]["pseudo_kept"] == 0
        assert report["pseudo_passed_filter"] == 60
        verdict = "the training set holds gold alone"
    line = (
        f"successor check: gold + 60 pseudo-labels {pseudo['score']:.3f} vs gold alone {gold['score']:.3f} "
        f"(macro_f1) on 6 held-out gold -> {verdict}"
    )
    assert stdout.startswith(line) and report["verdict"].startswith(line)
    assert line in (out / "report.md").read_text()


def test_the_teacher_is_refit_on_all_the_gold_and_pseudo_labels(tiny_model_dir, tmp_path, cls_files, monkeypatch):
    from al_core.models import TransformerClassifier, load_model
    from al_core.training import TrainingConfig

    export, config_file = cls_files
    out = tmp_path / "out"
    fits = []
    original_fit = TransformerClassifier.fit
    monkeypatch.setattr(
        TransformerClassifier, "fit", lambda self, ex, *a, **k: fits.append(len(ex)) or original_fit(self, ex, *a, **k)
    )
    args = ["--export", export, "--label-config", config_file, "--out", out, "--filter", "uncertainty", "--no-check"]
    assert run_cli(tiny_model_dir, *args) == 0
    assert fits == [19, 24]  # scored without the 5 held-out tasks, then refit on all 24
    report = json.loads((out / "report.json").read_text())
    assert (report["teacher"]["n_train"], report["teacher"]["n_refit"]) == (19, 24)
    config = TrainingConfig(device="cpu", max_length=32)
    refit = load_model(tmp_path / "out.work" / "teacher", config)
    pseudo = [r for r in read_rows(out) if r["source"] == "pseudo"]
    assert refit.predict([Example(id=r["id"], text=r["text"]) for r in pseudo]) == [r["label"] for r in pseudo]
    # the held-out score is the scored teacher's, which never saw the held-out tasks
    state = json.loads((tmp_path / "out.work" / "state.json").read_text())
    assert (state["n_train"], state["n_refit"]) == (19, 24)
    assert report["teacher"]["heldout_score"] == state["teacher_score"]


def test_the_real_captured_export_file(tiny_model_dir, tmp_path):
    require_or_skip(REAL_EXPORT.exists(), f"the captured Label Studio export is not at {REAL_EXPORT}")
    out = tmp_path / "out"
    # no --label-config: kind and labels are guessed from the annotations
    assert (
        run_cli(
            tiny_model_dir,
            "--export",
            REAL_EXPORT,
            "--out",
            out,
            "--filter",
            "uncertainty",
            "--format",
            "jsonl,csv",
        )
        == 0
    )
    rows = read_rows(out)
    real = json.loads(REAL_EXPORT.read_text())
    assert [r["id"] for r in rows] == [str(t["id"]) for t in real]
    assert [r["label"] for r in rows] == [
        t["annotations"][0]["result"][0]["value"]["choices"][0] for t in real
    ]
    assert all(r["source"] == "gold" for r in rows)


# -- tagging -----------------------------------------------------------------------------------


def test_ner_export_sentences_spans_and_conll(tiny_model_dir, tmp_path):
    export = write(tmp_path / "ner.json", ner_export())
    config_file = write(tmp_path / "ner.xml", NER_CONFIG)
    out = tmp_path / "out"
    assert (
        run_cli(
            tiny_model_dir,
            "--export",
            export,
            "--label-config",
            config_file,
            "--out",
            out,
            "--filter",
            "tracin",
            "--drop-fraction",
            "0.25",
            "--format",
            "all",
        )
        == 0
    )
    assert sorted(p.name for p in out.iterdir()) == [
        "all_tasks.jsonl",
        "label_studio_import.json",
        "report.json",
        "report.md",
        "train.conll",
    ]
    rows = read_rows(out)
    assert len(rows) == 20
    for row in rows:  # one row per sentence, spans agree with the word tags
        assert len(row["words"]) == len(row["tags"])
        assert [s["label"] for s in row["spans"]] == [t[2:] for t in row["tags"] if t.startswith("B-")]
        assert all(row["text"][s["start"] : s["end"]] == s["text"] for s in row["spans"])
    gold = [r for r in rows if r["source"] == "gold"]
    assert all(r["spans"] and {s["label"] for s in r["spans"]} == {"PER", "LOC", "ORG"} for r in gold)
    pseudo = [r for r in rows if r["source"] == "pseudo"]
    report = json.loads((out / "report.json").read_text())
    assert report["pseudo_passed_filter"] == 6  # 25% of 8 sentences dropped by the filter
    check = report["successor_check"]
    assert check["mode"] == "frozen" and check["metric"] == "span_f1" and check["n_pseudo"] == 6
    assert check["gold_only"]["n_train"] == 10 and check["with_pseudo"]["n_train"] == 16
    used = check["with_pseudo"]["score"] > check["gold_only"]["score"] + check["margin"]
    assert report["pseudo_labels_used"] is used and sum(r["kept"] for r in pseudo) == (6 if used else 0)
    conll = read_conll(out / "train.conll")
    kept = [r for r in rows if r["kept"]]
    assert [e.words for e in conll.examples] == [r["words"] for r in kept]
    assert [e.tags for e in conll.examples] == [r["tags"] for r in kept]
    imported = read_ls_export(out / "label_studio_import.json", parse_label_config(NER_CONFIG))
    assert {e.id: e.tags for e in imported.labeled()} == {r["id"]: r["tags"] for r in gold}
    assert report["teacher"]["metric"] == "span_f1"
    assert report["per_class"]["PER"]["gold"] == 12


# -- resume ------------------------------------------------------------------------------------


def test_a_killed_run_resumes_from_the_teacher(tiny_model_dir, tmp_path, cls_files, monkeypatch):
    import plasm_export.writers as writers
    from al_core.models import TransformerClassifier, load_model
    from al_core.training import TrainingConfig

    export, config_file = cls_files
    out = tmp_path / "out"
    args = ["--export", export, "--label-config", config_file, "--out", out, "--filter", "tracin"]
    # a teacher trained too little to be right everywhere: its score tells which rows it was scored on
    args += ["--epochs", "1", "--min-steps", "0", "--learning-rate", "1e-5"]

    def killed(*_args, **_kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(writers, "write_outputs", killed)
        assert run_cli(tiny_model_dir, *args) == 130
    assert not out.exists()
    assert (tmp_path / "out.work" / "teacher").is_dir()
    saved_score = json.loads((tmp_path / "out.work" / "state.json").read_text())["teacher_score"]

    def no_training(*_args, **_kwargs):
        raise AssertionError("the teacher was trained again")

    with monkeypatch.context() as patch:
        patch.setattr(TransformerClassifier, "fit", no_training)
        assert run_cli(tiny_model_dir, *args) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["teacher"]["resumed"] is True and report["timings_s"]["teacher_fit_s"] == 0
    rows = read_rows(out)
    assert len(rows) == 40
    # the saved score is the saved teacher's accuracy on the rows the run held out
    heldout = [Example(id=r["id"], text=r["text"], label=r["label"]) for r in rows if r["heldout"]]
    assert len(heldout) == report["teacher"]["n_heldout"] == 5
    teacher = load_model(tmp_path / "out.work" / "teacher-scored", TrainingConfig(device="cpu", max_length=32))
    predicted = teacher.predict([e.without_labels() for e in heldout])
    accuracy = sum(p == e.label for p, e in zip(predicted, heldout, strict=True)) / len(heldout)
    assert saved_score == pytest.approx(accuracy) and report["teacher"]["heldout_score"] == saved_score

    # killed after the scored teacher was saved, while refitting: the rerun only refits
    fits = []
    original_fit = TransformerClassifier.fit

    def killed_at_the_refit(self, examples, *a, **k):
        fits.append(len(examples))
        if len(fits) == 2:
            raise KeyboardInterrupt
        return original_fit(self, examples, *a, **k)

    args += ["--seed", "1"]  # other inputs: a new work folder's worth of teachers
    with monkeypatch.context() as patch:
        patch.setattr(TransformerClassifier, "fit", killed_at_the_refit)
        assert run_cli(tiny_model_dir, *args, "--overwrite") == 130
    assert fits == [19, 24]
    fits.clear()
    with monkeypatch.context() as patch:
        patch.setattr(
            TransformerClassifier, "fit", lambda self, ex, *a, **k: fits.append(len(ex)) or original_fit(self, ex, *a, **k)
        )
        assert run_cli(tiny_model_dir, *args, "--overwrite") == 0
    assert fits == [24]
    report = json.loads((out / "report.json").read_text())
    assert report["teacher"]["resumed"] is False and report["timings_s"]["teacher_fit_s"] == 0

    # other settings of the teacher: the saved one does not match, so it trains again
    fits.clear()
    with monkeypatch.context() as patch:
        patch.setattr(
            TransformerClassifier, "fit", lambda self, *a, **k: fits.append(1) or original_fit(self, *a, **k)
        )
        assert run_cli(tiny_model_dir, *args, "--holdout", "0.3", "--overwrite") == 0
    assert fits and json.loads((out / "report.json").read_text())["teacher"]["resumed"] is False


# -- errors ------------------------------------------------------------------------------------


def _error_case(tmp_path, name):
    tasks = classification_export(6, 4)
    config = CLS_CONFIG
    if name == "no annotations":
        tasks = classification_export(0, 6)
    elif name == "label outside the config":
        tasks[2]["annotations"][0]["result"][0]["value"]["choices"] = ["Sarcastic"]
    elif name == "unreadable config":
        config = '<View><Image name="img" value="$image"/><Choices name="c" toName="img"><Choice value="A"/></Choices></View>'
    elif name == "two controls":
        config = CLS_CONFIG.replace(
            "</View>", '<Labels name="l" toName="text"><Label value="X"/></Labels></View>'
        )
    return write(tmp_path / "export.json", tasks), write(tmp_path / "config.xml", config)


@pytest.mark.parametrize(
    "case, message",
    [
        ("no annotations", "no task has an annotation"),
        ("label outside the config", "'Sarcastic' is not in the label config"),
        ("unreadable config", "<Image> is not supported"),
        ("two controls", "several control tags"),
    ],
)
def test_clear_errors_and_nothing_written(tiny_model_dir, tmp_path, capsys, case, message):
    export, config_file = _error_case(tmp_path, case)
    out = tmp_path / "out"
    assert run_cli(tiny_model_dir, "--export", export, "--label-config", config_file, "--out", out) == 2
    err = capsys.readouterr().err
    assert err.startswith("plasm-export: error: ") and message in err and "Traceback" not in err
    assert not out.exists()
    assert not any(p.name.startswith(".out.partial") for p in tmp_path.iterdir())


def test_more_errors(tiny_model_dir, tmp_path, capsys, cls_files):
    export, config_file = cls_files
    out = tmp_path / "out"
    assert run_cli(tiny_model_dir, "--export", tmp_path / "missing.json", "--out", out) == 2
    assert "no such file" in capsys.readouterr().err
    assert (
        run_cli(
            tiny_model_dir,
            "--export",
            export,
            "--label-config",
            config_file,
            "--out",
            out,
            "--format",
            "conll",
        )
        == 2
    )
    assert "does not fit a classification project" in capsys.readouterr().err
    assert run_cli(tiny_model_dir, "--export", export, "--out", out, "--drop-fraction", "1.5") == 2
    assert "--drop-fraction must be between 0 and 1" in capsys.readouterr().err
    assert run_cli(tiny_model_dir, "--export", export, "--out", out, "--check-margin", "-0.1") == 2
    assert "--check-margin must be between 0 and 1" in capsys.readouterr().err
    assert run_cli(tiny_model_dir, "--export", export, "--out", out, "--no-check", "--check-successor", "x") == 2
    assert "--no-check and --check-successor contradict" in capsys.readouterr().err
    write(tmp_path / "broken.json", '[{"id": 1, "data": {"text": "a"}},')
    assert run_cli(tiny_model_dir, "--export", tmp_path / "broken.json", "--out", out) == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert not out.exists()
    out.mkdir()
    assert run_cli(tiny_model_dir, "--export", export, "--out", out) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err


# -- reading a project through label-studio-sdk -------------------------------------------------


@pytest.fixture()
def annotated_project(fake_ls):
    """Project 7 of the fake Label Studio holding classification_export()'s tasks; (fake, URL)."""
    fake, url = fake_ls
    fake.add_project(7, CLS_CONFIG)
    for task in classification_export():
        (task_id,) = fake.add_tasks(7, [task["data"]["text"]])
        assert task_id == task["id"]
        for annotation in task["annotations"]:
            fake.annotate(task_id, annotation["result"])
    return fake, url


def test_reads_a_project_through_the_sdk(tiny_model_dir, tmp_path, annotated_project, capsys):
    fake, url = annotated_project
    out = tmp_path / "out"
    assert (
        run_cli(
            tiny_model_dir,
            "--url",
            url,
            "--api-key",
            TOKEN,
            "--project",
            7,
            "--out",
            out,
            "--filter",
            "uncertainty",
        )
        == 0
    )
    # the fake answers a legacy token sent as "Token <key>" only; the export holds every task
    # (download_all_tasks), so the unannotated ones come back pseudo-labeled
    rows = read_rows(out)
    assert len(rows) == 40 and sum(r["source"] == "pseudo" for r in rows) == 16
    assert fake.count("GET", "/api/projects/7/export") == 1
    assert (
        run_cli(
            tiny_model_dir,
            "--url",
            url,
            "--api-key",
            TOKEN,
            "--project",
            8,
            "--out",
            tmp_path / "other",
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "project 8" in err and "404" in err and "Traceback" not in err
