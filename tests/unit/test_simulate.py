"""The simulator end to end on tiny data and tiny random models: outputs, resume, repeatability."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from al_core.data import Example
from al_core.readers import write_conll, write_jsonl
from simulate.config import ConfigError, load_config, parse_config
from simulate.report import write_report
from simulate.runner import Simulation, overlap_with_previous_ranking

torch.set_num_threads(1)

POSITIVE = "good great excellent fun love best".split()
NEGATIVE = "bad awful terrible boring hate worst".split()
FILLER = "the movie film plot story actor was very really".split()


def _review(rng: random.Random, label: str) -> str:
    words = rng.sample(FILLER, 4) + rng.sample(POSITIVE if label == "positive" else NEGATIVE, 2)
    rng.shuffle(words)
    return " ".join(words)


@pytest.fixture(scope="module")
def classification_files(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("cls-data")
    rng = random.Random(0)

    def examples(n, prefix):
        labels = ["positive", "negative"] * (n // 2)
        return [Example(id=f"{prefix}{i}", text=_review(rng, y), label=y) for i, y in enumerate(labels)]

    write_jsonl(examples(240, "p"), folder / "pool.jsonl")
    write_jsonl(examples(60, "t"), folder / "test.jsonl")
    return folder / "pool.jsonl", folder / "test.jsonl"


def _config(tmp_path: Path, pool: Path, test: Path, **changes) -> dict:
    config = {
        "name": "tiny",
        "output_dir": str(tmp_path / "out"),
        "dataset": {"pool_path": str(pool), "test_path": str(test), "options": {"id_field": "id"}},
        "acquisition": {"name": "tiny-acq", "model": None},
        "successors": [{"name": "tfidf", "kind": "tfidf_lr"}, {"name": "matched", "kind": "acquisition"}],
        "strategy": "lc",
        "scoring": {"mode": "ups", "full_first": 1, "full_every": 0},
        "seed_set": {"count": 20},
        "batch": {"count": 10},
        "iterations": 2,
        "seeds": [0, 1],
        "acquisition_mode": {"mode": "finetune"},
        "training": {"epochs": 1, "min_steps": 0, "batch_size": 16, "max_length": 16, "device": "cpu"},
    }
    config.update(changes)
    return config


@pytest.fixture
def tiny_config(tmp_path, tiny_model_dir, classification_files):
    pool, test = classification_files
    data = _config(tmp_path, pool, test)
    data["acquisition"]["model"] = str(tiny_model_dir)
    return data


def _read(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]


def _outcome(records: list[dict]) -> list[tuple]:
    """What must repeat exactly with the same seeds (timings may not)."""
    keys = (
        "seed",
        "iteration",
        "successor",
        "labeled_size",
        "query_ids",
        "n_scored",
        "successor_score",
        "acquisition_score",
    )
    return sorted(tuple(json.dumps(r[k]) for k in keys) for r in records)


def test_run_writes_every_record_and_repeats(tiny_config, tmp_path):
    config = parse_config(tiny_config)
    started = time.perf_counter()
    folder = Simulation(config, progress=False).run()
    wall_s = time.perf_counter() - started
    records = _read(folder)
    # 2 seeds x 3 evaluation points (seed set + 2 queries) x 2 successors
    assert len(records) == 2 * 3 * 2
    by_key = {(r["seed"], r["iteration"], r["successor"]): r for r in records}
    first, second, last = (by_key[(0, t, "tfidf")] for t in range(3))
    assert [first["labeled_size"], second["labeled_size"], last["labeled_size"]] == [20, 30, 40]
    assert len(first["query_ids"]) == 10 and not set(first["query_ids"]) & set(first["labeled_ids_before"])
    assert second["labeled_ids_before"] == first["labeled_ids_before"] + first["query_ids"]
    assert last["query_ids"] == [] and last["n_scored"] == 0
    # iteration 0 scores the whole pool; iteration 1 is a UPS iteration: a subset
    assert first["n_scored"] == first["pool_size"] == 220 and first["full_scoring"]
    assert 0 < second["n_scored"] < second["pool_size"] and not second["full_scoring"]
    assert first["overlap"] is None and set(second["overlap"]) == {"10", "20", "30", "40", "50"}
    assert 0.0 <= first["successor_score"] <= 1.0
    # the headline is macro F1, accuracy beside it, and each class's recall on the test set
    assert first["metric"] == "macro_f1" and 0.0 <= first["successor_accuracy"] <= 1.0
    assert set(first["successor_recall"]) == set(first["acquisition_recall"]) and len(first["successor_recall"]) >= 2
    # every successor trains on all the labels, the matched one too (the round's fine-tuned
    # acquisition model held some out for its quality estimate, so the matched one is trained anew)
    assert all(r["successor_n_train"] == r["labeled_size"] for r in records)
    # (which tasks a hash holds out: at 20 labels it may be none)
    assert all(r["acq_n_train"] <= r["labeled_size"] for r in records)
    assert any(r["acq_n_train"] < r["labeled_size"] for r in records)
    assert all(
        r["successor_fit_s"] != r["acq_fit_s"]
        for r in records
        if r["successor"] == "matched" and r["acq_n_train"] < r["labeled_size"]
    )
    # timings: one acquisition round per (seed, iteration), whose records all carry its times; pool
    # scoring takes time only where something was scored; all the seconds measured fit in the run's
    rounds: dict[tuple, tuple] = {}
    for r in records:
        round_s = (r["acq_fit_s"], r["inference_s"], r["select_s"], r["acq_eval_s"])
        assert rounds.setdefault((r["seed"], r["iteration"]), round_s) == round_s
        assert (r["inference_s"] > 0) == (r["n_scored"] > 0)
    # (a matched successor whose round held nothing out is the round's model: its times are the round's)
    successors_s = sum(
        r["successor_fit_s"] + r["successor_eval_s"]
        for r in records
        if not (r["successor"] == "matched" and r["acq_n_train"] == r["labeled_size"])
    )
    assert sum(map(sum, rounds.values())) + successors_s <= wall_s
    assert (folder / "results.csv").read_text().splitlines()[0].count(",") > 10
    # the two seeds draw different seed sets
    assert by_key[(0, 0, "tfidf")]["labeled_ids_before"] != by_key[(1, 0, "tfidf")]["labeled_ids_before"]

    summary = write_report([folder], tmp_path / "report").read_text()
    for name in ("curves-tfidf", "curves-matched", "curves-acquisition_models"):
        assert (tmp_path / "report" / f"{name}.png").stat().st_size > 0
        assert (tmp_path / "report" / f"{name}.svg").read_text().lstrip().startswith("<?xml")
    assert "| 1 | 30 |" in summary  # the timing row of iteration 1: 30 labeled
    assert "top-k% / iteration" not in summary  # iteration 1 was a UPS iteration: no full-scoring overlap
    assert "| tiny | tfidf | 2 | 40 | macro F1 |" in summary and "accuracy " in summary
    assert "## Recall per class at the last iteration" in summary
    recall_header = next(line for line in summary.splitlines() if line.startswith("| config | successor | ") and "seeds" not in line)
    assert all(f" {label} " in recall_header for label in first["successor_recall"])

    again = tiny_config | {"output_dir": str(tmp_path / "again")}
    assert _outcome(_read(Simulation(parse_config(again), progress=False).run())) == _outcome(records)


def test_interrupted_run_resumes_to_the_same_results(tiny_config, tmp_path):
    whole = Simulation(parse_config(tiny_config), progress=False).run()
    cut = tiny_config | {"output_dir": str(tmp_path / "cut")}
    folder = Simulation(parse_config(cut), progress=False).run(stop_after=2)  # killed after 2 iterations
    assert len(_read(folder)) == 2 * 2
    # a kill in the middle of a write leaves half a line: it is dropped and that iteration runs again
    with (folder / "results.jsonl").open("a") as out:
        out.write('{"seed": 0, "iteration": 2, "succ')
    Simulation(parse_config(cut), progress=False).run()
    assert _outcome(_read(folder)) == _outcome(_read(whole))


def test_resume_refuses_a_changed_config(tiny_config):
    Simulation(parse_config(tiny_config), progress=False).run(stop_after=1)
    changed = tiny_config | {"strategy": "entropy"}
    with pytest.raises(ConfigError, match="different config"):
        Simulation(parse_config(changed), progress=False).run()


def test_tagging_with_word_budget_and_bilstm(tmp_path, tiny_model_dir):
    rng = random.Random(1)
    names, places = ["john", "mary", "smith"], ["paris", "london", "berlin"]

    def sentence(i):
        words, tags = [], []
        for _ in range(rng.randint(3, 7)):
            choice = rng.random()
            if choice < 0.2:
                word, tag = rng.choice(names).title(), "B-PER"
            elif choice < 0.4:
                word, tag = rng.choice(places).title(), "B-LOC"
            else:
                word, tag = rng.choice(FILLER), "O"
            words.append(word)
            tags.append(tag)
        return Example(id=str(i), text=" ".join(words), words=words, tags=tags)

    train = [sentence(i) for i in range(150)]
    write_conll(train, tmp_path / "train.conll")
    write_conll([sentence(i) for i in range(40)], tmp_path / "test.conll")
    budget = round(0.05 * sum(len(e.words) for e in train))
    glove = tmp_path / "glove"
    glove.mkdir()
    vocab = names + places + FILLER
    (glove / "vocab.txt").write_text("\n".join(vocab) + "\n")
    np.save(glove / "vectors.npy", np.random.default_rng(0).normal(size=(len(vocab), 8)).astype(np.float32))
    config = parse_config(
        {
            "name": "tiny-ner",
            "output_dir": str(tmp_path / "out"),
            "dataset": {
                "pool_path": str(tmp_path / "train.conll"),
                "test_path": str(tmp_path / "test.conll"),
            },
            "acquisition": {"model": str(tiny_model_dir)},
            "successors": [
                {
                    "name": "bilstm",
                    "kind": "glove_bilstm",
                    "params": {"vectors_dir": str(glove), "epochs": 3, "hidden": 8},
                }
            ],
            "strategy": "mnlp",
            "scoring": {"mode": "full"},
            "seed_set": {"word_fraction": 0.05},
            "batch": {"word_fraction": 0.05},
            "iterations": 1,
            "seeds": [3],
            "training": {"epochs": 1, "max_length": 16, "device": "cpu", "learning_rate": 5e-5},
        }
    )
    records = _read(Simulation(config, progress=False).run())
    assert [r["iteration"] for r in records] == [0, 1]
    assert records[0]["labeled_words"] >= budget  # the seed set reaches the word budget
    # it opens with the cold-start order (over the sentences sorted by id, but the audit sample's,
    # which are served at their audit places only), each while it fits
    from al_core.acquisition import AcquisitionConfig, without_audit
    from al_core.config import TrainingConfig
    from al_core.models import encoder_vectors
    from al_core.ordering import cold_start_order

    choosable = without_audit(train, 3, AcquisitionConfig().audit_share)
    assert len(choosable) < len(train)  # the audit sample holds some of them
    by_id = sorted(choosable, key=lambda e: (len(e.id), e.id))  # numeric order of digit ids
    vectors_of = encoder_vectors("tagging", str(tiny_model_dir), ["PER", "LOC"], TrainingConfig().replace(**config.training))
    cold, used = [], 0
    for i in cold_start_order(np.stack(vectors_of(by_id)), 20, seed=3):
        if used + len(by_id[i].words) <= budget:
            cold.append(by_id[i].id)
            used += len(by_id[i].words)
    assert len(cold) > 1 and records[0]["labeled_ids_before"][: len(cold)] == cold
    added = records[1]["labeled_words"] - records[0]["labeled_words"]
    assert 0 < added <= budget  # the query never exceeds it
    assert records[0]["metric"] == "span_f1" and 0.0 <= records[1]["successor_score"] <= 1.0


def test_overlap_counts_the_share_of_the_query_in_the_previous_top():
    previous = {str(i): float(100 - i) for i in range(100)}  # id 0 most uncertain
    overlap = overlap_with_previous_ranking(previous, ["0", "5", "15", "95"], [10, 20, 50])
    assert overlap == {"10": 0.5, "20": 0.75, "50": 0.75}


def test_a_full_scoring_run_measures_the_ups_premise_on_the_rounds_that_read_a_fine_tune(tiny_config):
    modes = {
        "mode": "auto", "frozen_below_classification": 30, "finetune_every": 20, "cold_start_labels": 0,
        "finetune_head_start": 0,
    }
    data = {**tiny_config, "acquisition_mode": modes, "scoring": {"mode": "full"}, "iterations": 4, "seeds": [0]}
    folder = Simulation(parse_config(data), progress=False).run()
    records = {r["iteration"]: r for r in _read(folder) if r["successor"] == "tfidf"}
    for t in range(4):
        r = records[t]
        assert r["n_scored"] == r["pool_size"]  # every round a full pass
        if r["acquisition_mode"] == "frozen":
            assert r["ups_premise"] is None and r["ups_subset_share"] is None  # no subset to judge
        else:  # a refresh round: judged against the subset UPS would have handed over, smaller than the pool
            assert set(r["ups_premise"]) == {"1", "10", "50"}
            assert all(0.0 <= v <= 1.0 for v in r["ups_premise"].values())
            assert 0.0 < r["ups_subset_share"] < 1.0
    assert any(records[t]["acquisition_mode"] == "refresh" for t in range(4)) == bool(records[1]["finetune_accepted"])
    assert records[4]["ups_premise"] is None  # the last iteration queries nothing
    # the background fine-tune embedded the whole pool (its cached scores are another model's) and measured it
    assert set(records[1]["finetune_premise"]) == {"1", "10", "50"} and records[0]["finetune_premise"] is None


def test_plasm_every_zero_runs_only_at_the_last_iteration(tiny_config, tmp_path):
    tiny_config.update(
        seeds=[0],
        iterations=2,
        output_dir=str(tmp_path / "out"),
        successors=[{"name": "tfidf", "kind": "tfidf_lr"}],
        plasm={
            "teacher": {"name": "teacher", "model": tiny_config["acquisition"]["model"]},
            "filter": "uncertainty",
            "every": 0,
        },
    )
    config = parse_config(tiny_config)
    records = _read(Simulation(config, progress=False).run())
    assert sorted((r["iteration"], r["successor"]) for r in records) == [
        (0, "tfidf"),
        (1, "tfidf"),
        (2, "tfidf"),
        (2, "tfidf+plasm"),
    ]
    # a finished run is recognised as finished: running it again adds nothing
    again = _read(Simulation(config, progress=False).run())
    assert len(again) == len(records)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"iterations": 0}, "iterations"),
        ({"batch": {"count": 5, "fraction": 0.1}}, "exactly one"),
        ({"successors": [{"kind": "transformer"}]}, "needs `model`"),
        ({"training": {"epochz": 3}}, "unknown training setting"),
        ({"scoring": {"mode": "sometimes"}}, "scoring.mode"),
        ({"scoring": {"gamma": 1.5}}, "scoring.gamma"),
        ({"scoring": {"gama": 0.2}}, "scoring.gama"),
        ({"acquisition_mode": {"holdout_share": 1}}, "acquisition_mode.holdout_share"),
        ({"training": {"epochs": 0}}, "training: epochs"),
    ],
)
def test_config_errors_name_the_problem(tmp_path, change, message):
    data = _config(tmp_path, tmp_path / "p.jsonl", tmp_path / "t.jsonl", **change)
    data["acquisition"]["model"] = "some-model"
    with pytest.raises(ConfigError, match=message):
        parse_config(data)


def test_cli_reports_a_bad_config_without_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"name": "x", "iterations": -1}))
    done = subprocess.run(
        [sys.executable, "-m", "simulate.cli", "run", str(bad)], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "iterations" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "results").exists()


def test_cli_report_without_results_fails_cleanly(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "simulate.cli", "report", str(tmp_path), "--out", str(tmp_path / "r")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "no results found" in done.stderr and "Traceback" not in done.stderr


def test_ready_configs_are_valid():
    folder = Path(__file__).resolve().parents[2] / "simulate" / "configs"
    paths = sorted(folder.glob("*.yaml"))
    assert len(paths) >= 6
    for path in paths:
        config = load_config(path)
        assert len(config.seeds) >= 3, path


@pytest.mark.parametrize("label_filter", ["uncertainty", "tracin"])
def test_plasm_trains_each_successor_with_and_without_pseudo_labels(tiny_config, label_filter, monkeypatch):
    # the teacher named as the ready configs name it, through an environment variable
    teacher = Path(tiny_config["acquisition"]["model"])
    monkeypatch.setenv("AL_TEST_MODELS", str(teacher.parent))
    tiny_config.update(
        seeds=[0],
        iterations=1,
        successors=[{"name": "tfidf", "kind": "tfidf_lr"}],
        plasm={
            "teacher": {"name": "teacher", "model": "${AL_TEST_MODELS}/" + teacher.name},
            "filter": label_filter,
            "holdout_fraction": 0.25,
        },
    )
    started = time.perf_counter()
    records = _read(Simulation(parse_config(tiny_config), progress=False).run())
    wall_s = time.perf_counter() - started
    assert sorted((r["iteration"], r["successor"]) for r in records) == [
        (0, "tfidf"),
        (0, "tfidf+plasm"),
        (1, "tfidf"),
        (1, "tfidf+plasm"),
    ]
    for r in (r for r in records if r["pseudo_labels"]):
        assert r["n_pseudo"] == r["pool_size"]
        # the share dropped is 1 - the teacher's score on the held-out gold labels
        assert r["drop_fraction"] == pytest.approx(1 - r["teacher_holdout_score"])
        assert r["n_pseudo_kept"] == r["n_pseudo"] - round(r["drop_fraction"] * r["n_pseudo"])
        assert 0.0 <= r["pseudo_accuracy_kept"] <= 1.0
        # plasm-export's check decides whether the kept pseudo-labels go in: all of them or none
        assert r["check_better"] in ("gold_only", "with_pseudo")
        wins = r["check_with_pseudo"] > r["check_gold_only"] + 0.005
        assert (r["check_better"] == "with_pseudo") == wins
        assert r["n_pseudo_used"] == (r["n_pseudo_kept"] if wins else 0)
        gold_row = next(g for g in records if g["iteration"] == r["iteration"] and not g["pseudo_labels"])
        assert r["successor_n_train"] == gold_row["successor_n_train"] + r["n_pseudo_used"]
    # the PLASM steps are timed in the records with pseudo-labels only, within the run's wall time
    plasm_steps = ("teacher_fit_s", "teacher_refit_s", "pseudo_label_s", "filter_s", "successor_check_s")
    assert all(all(step in r for step in plasm_steps) == r["pseudo_labels"] for r in records)
    assert sum(r[step] for r in records if r["pseudo_labels"] for step in plasm_steps) <= wall_s


def test_plasm_without_the_check_uses_every_kept_pseudo_label(tiny_config):
    tiny_config.update(
        seeds=[0],
        iterations=1,
        successors=[{"name": "tfidf", "kind": "tfidf_lr"}],
        plasm={
            "teacher": {"name": "teacher", "model": tiny_config["acquisition"]["model"]},
            "holdout_fraction": 0.25,
            "check": False,
        },
    )
    records = _read(Simulation(parse_config(tiny_config), progress=False).run())
    plasm_rows = [r for r in records if r["pseudo_labels"]]
    assert plasm_rows
    for r in plasm_rows:
        assert r["check_better"] is None and "successor_check_s" not in r
        assert r["n_pseudo_used"] == r["n_pseudo_kept"] > 0


def test_each_successor_is_checked_itself_whatever_the_teacher(tiny_config, monkeypatch):
    from al_core import plasm

    checked = []
    check_successor = plasm.check_successor

    def spy(successor, *args, build=None, **kwargs):
        checked.append((successor, type(build()).__name__))
        return check_successor(successor, *args, build=build, **kwargs)

    monkeypatch.setattr(plasm, "check_successor", spy)
    tiny_config.update(
        seeds=[0],
        iterations=1,
        successors=[{"name": "tfidf", "kind": "tfidf_lr"}, {"name": "narrow", "kind": "tfidf_lr", "params": {"C": 0.01}}],
        plasm={"teacher": {"name": "teacher-tfidf", "kind": "tfidf_lr"}, "filter": "uncertainty", "holdout_fraction": 0.25},
    )
    records = _read(Simulation(parse_config(tiny_config), progress=False).run())
    # one check per successor and PLASM iteration, of that successor (no teacher vectors needed)
    assert checked == [("tfidf", "TfidfLogisticRegression"), ("narrow", "TfidfLogisticRegression")] * 2
    plasm_rows = {(r["iteration"], r["successor"]): r for r in records if r["pseudo_labels"]}
    assert sorted(plasm_rows) == [(0, "narrow+plasm"), (0, "tfidf+plasm"), (1, "narrow+plasm"), (1, "tfidf+plasm")]
    for r in plasm_rows.values():
        assert r["check_better"] in ("gold_only", "with_pseudo") and r["check_gold_only"] is not None
        assert (r["n_pseudo_used"] > 0) == (r["check_better"] == "with_pseudo")


@pytest.mark.parametrize(
    "change, message",
    [
        ({"acquisition": {"model": "/nonexistent/model"}}, "does not exist"),
        ({"strategy": "mnlp"}, "does not apply to classification"),
        (
            {
                "successors": [
                    {"name": "lstm", "kind": "glove_bilstm", "params": {"vectors_dir": "/nonexistent"}}
                ]
            },
            "no GloVe vectors",
        ),
    ],
)
def test_run_refuses_what_cannot_work_before_writing_anything(tiny_config, change, message):
    tiny_config.update(change)
    with pytest.raises(ConfigError, match=message):
        Simulation(parse_config(tiny_config), progress=False).run()
    assert not Path(tiny_config["output_dir"]).exists()


def test_more_iterations_extend_a_finished_run(tiny_config, tmp_path):
    short = tiny_config | {"seeds": [0], "iterations": 1}
    folder = Simulation(parse_config(short), progress=False).run()
    longer = Simulation(parse_config(short | {"iterations": 2}), progress=False).run()
    assert longer == folder
    reference = tiny_config | {"seeds": [0], "output_dir": str(tmp_path / "reference")}
    assert _outcome(_read(folder)) == _outcome(
        _read(Simulation(parse_config(reference), progress=False).run())
    )


def test_auto_mode_refreshes_between_fine_tunes_as_the_backend_does(tiny_config):
    modes = {
        "mode": "auto", "frozen_below_classification": 30, "finetune_every": 20, "cold_start_labels": 0,
        "finetune_lane": "inline",
    }
    data = {**tiny_config, "acquisition_mode": modes, "iterations": 4, "seeds": [0]}
    folder = Simulation(parse_config(data), progress=False).run()
    records = {r["iteration"]: r for r in _read(folder) if r["successor"] == "tfidf"}
    assert [records[t]["labeled_size"] for t in range(5)] == [20, 30, 40, 50, 60]
    assert [records[t]["acquisition_mode"] for t in range(5)] == ["frozen", "finetune", "refresh", "finetune", "refresh"]
    # a refresh round scores the tasks the fine-tune handed over (its UPS subset, here 24 tasks), topped
    # up to the window (200) with the most uncertain others by their cached score
    assert records[1]["n_scored"] < 200 and records[2]["n_scored"] == min(records[2]["pool_size"], 200)
    # measured on the held-out share, then refit on every label (a fine-tune trains without that share)
    assert records[2]["acq_n_train"] == 40 and records[1]["acq_n_train"] < 30
    # the fine-tuned encoder of the seed is kept for its refresh rounds, the earlier one deleted
    assert [p.name for p in (folder / "encoders").iterdir()] == ["seed0-it3"]


def test_the_background_lane_serves_the_round_and_reads_the_fine_tune_it_took_up_from_the_next(tiny_config):
    # finetune_min_held_out 0: the verdicts here rest on a few held-out tasks, and this test checks the figures' rule;
    # finetune_head_start 0: the first fine-tune at the threshold, 30 labels (iteration 1)
    modes = {
        "mode": "auto", "frozen_below_classification": 30, "finetune_every": 20, "cold_start_labels": 0,
        "finetune_min_held_out": 0, "finetune_head_start": 0,
    }
    data = {**tiny_config, "acquisition_mode": modes, "iterations": 4, "seeds": [0]}
    folder = Simulation(parse_config(data), progress=False).run()
    records = {r["iteration"]: r for r in _read(folder) if r["successor"] == "tfidf"}
    assert [records[t]["labeled_size"] for t in range(5)] == [20, 30, 40, 50, 60]
    # 30 labels: the frozen head serves while the fine-tune runs; 50: the refresh round serves while the next runs
    assert [records[t]["acquisition_mode"] for t in range(5)] == ["frozen", "frozen", "refresh", "refresh", "refresh"]
    assert [records[t]["finetune_accepted"] is not None for t in range(4)] == [False, True, False, True]
    accepted = [records[t]["finetune_accepted"] for t in (1, 3)]
    # each verdict beside its truth: the test-set score of the head the fine-tune would have served
    verdicts = [records[t]["finetune_verdict"] for t in range(4)]
    assert [v is not None for v in verdicts] == [False, True, False, True]
    assert all(0.0 <= verdicts[t]["candidate_score"] <= 1.0 and verdicts[t]["n_held_out"] > 0 for t in (1, 3))
    # the first fine-tune must not be worse than the pretrained encoder; the second may be, within the margin
    assert [verdicts[t]["margin"] for t in (1, 3)] == [0.0, 0.2 if accepted[0] else 0.0]
    assert [verdicts[t]["min_held_out"] for t in (1, 3)] == [0, 0]
    assert [verdicts[t]["value"] >= verdicts[t]["incumbent_value"] - verdicts[t]["margin"] for t in (1, 3)] == accepted
    encoders = sorted(p.name for p in (folder / "encoders").iterdir()) if (folder / "encoders").exists() else []
    expected = {(True, True): ["seed0-it3"], (True, False): ["seed0-it1"], (False, True): ["seed0-it3"]}
    assert encoders == expected.get(tuple(accepted), [])


def test_the_simulated_background_lane_asks_for_its_first_fine_tune_a_head_start_before_the_threshold(tiny_config):
    # threshold 30, head start 20 (the default): the fine-tune is due at the seed set's 20 labels, beside the frozen head
    modes = {"mode": "auto", "frozen_below_classification": 30, "finetune_every": 20, "cold_start_labels": 0}
    data = {**tiny_config, "acquisition_mode": modes, "iterations": 1, "seeds": [0]}
    folder = Simulation(parse_config(data), progress=False).run()
    records = {r["iteration"]: r for r in _read(folder) if r["successor"] == "tfidf"}
    assert records[0]["labeled_size"] == 20 and records[0]["acquisition_mode"] == "frozen"
    assert records[0]["finetune_accepted"] is not None


def test_a_frozen_acquisition_model_scores_the_whole_pool_and_the_run_records_its_settings(tiny_config):
    import dataclasses

    from al_core.config import TrainingConfig

    data = {**tiny_config, "acquisition_mode": {"mode": "frozen"}, "iterations": 1, "seeds": [0]}
    folder = Simulation(parse_config(data), progress=False).run()
    records = [r for r in _read(folder) if r["successor"] == "tfidf"]
    assert [r["acquisition_mode"] for r in records] == ["frozen", "frozen"]
    assert records[0]["n_scored"] == records[0]["pool_size"]  # a UPS config, yet every task is scored
    # what the audit sample estimates: the version's headline over the rest of the pool, where the
    # round scored all of it (the last iteration scores nothing)
    assert 0.0 <= records[0]["pool_score"] <= 1.0 and records[-1]["pool_score"] is None
    assert all(r["quality_estimate"] is not None for r in records)
    # a frozen head is fit on every label after its cross-validation: the matched successor is it
    for r in (r for r in _read(folder) if r["successor"] == "matched"):
        assert r["acq_n_train"] == r["successor_n_train"] == r["labeled_size"]
        assert r["successor_score"] == r["acquisition_score"] and r["successor_fit_s"] == r["acq_fit_s"]
    settings = json.loads((folder / "settings.json").read_text())
    expected = TrainingConfig().replace(**tiny_config["training"])
    assert settings["acquisition"]["training"] == {
        k: v for k, v in dataclasses.asdict(expected).items() if k != "seed"
    }
    assert settings["acquisition"]["mode"]["mode"] == "frozen"
    assert settings["scoring"]["mode"] == "ups"


# -- the orders the backend serves (al_core.ordering) ---------------------------------------


def _fresh_ranking(folder: Path, seed: int, t: int, pool_order: list[str]) -> list[str]:
    """The ranking of iteration t's freshly scored tasks, rebuilt from its score-cache checkpoint:
    highest score first, ties in pool order (al_core.strategies.select_batch's rule)."""
    rows = json.loads((folder / "state" / f"seed-{seed}" / f"cache-it{t}.json").read_text())
    fresh = [i for i in pool_order if i in rows and rows[i][2] == t]
    return sorted(fresh, key=lambda i: -rows[i][0])


def _pool_file(folder: Path, texts: dict[str, str]) -> Path:
    labels = {i: "positive" if any(w in text.split() for w in POSITIVE) else "negative" for i, text in texts.items()}
    write_jsonl([Example(id=i, text=text, label=labels[i]) for i, text in texts.items()], folder / "groups.jsonl")
    return folder / "groups.jsonl"


def test_team_size_one_and_no_cold_start_take_the_ranking_as_it_is(tiny_config):
    from al_core.acquisition import audited_query, is_audit_task

    tiny_config.update(seeds=[0], acquisition_mode={"mode": "finetune", "team_size": 1, "cold_start_labels": 0})
    folder = Simulation(parse_config(tiny_config), progress=False).run()
    records = {r["iteration"]: r for r in _read(folder) if r["successor"] == "tfidf"}
    pool_order = [json.loads(line)["id"] for line in Path(tiny_config["dataset"]["pool_path"]).read_text().splitlines()]
    # the seed set: the random draw of the seed
    draw = np.random.default_rng([0, 0]).permutation(len(pool_order))
    assert records[0]["labeled_ids_before"] == [pool_order[i] for i in draw[:20]]
    # iteration 1 (a UPS iteration): the top of the fresh ranking, the audit tasks in their places
    before = records[1]["labeled_ids_before"]
    unlabeled = [i for i in pool_order if i not in set(before)]
    ranking = _fresh_ranking(folder, 0, 1, unlabeled)
    share = parse_config(tiny_config).acquisition_mode.audit_share
    labeled_audit = sum(is_audit_task(i, 0, share) for i in before)
    assert records[1]["query_ids"] == audited_query(ranking[:10], unlabeled, len(before), labeled_audit, 0, share)
    assert [(r["query_order"], r["team_size"]) for r in records.values()] == [("ranking", 1), ("ranking", 1), (None, 1)]


def test_a_team_is_served_the_serving_order_no_two_twins_in_one_batch(tmp_path, tiny_model_dir, classification_files):
    from al_core.config import TrainingConfig
    from al_core.models import encoder_vectors
    from al_core.ordering import serving_order

    rng = random.Random(2)
    texts: set[str] = set()
    while len(texts) < 120:
        texts.add(_review(rng, rng.choice(["positive", "negative"])))
    pairs = {f"{twin}{n}": text for n, text in enumerate(sorted(texts)) for twin in "ab"}  # each text twice
    pool = _pool_file(tmp_path, pairs)
    data = _config(tmp_path, pool, classification_files[1], seeds=[0], scoring={"mode": "full"})
    data["acquisition"]["model"] = str(tiny_model_dir)
    modes = {"mode": "frozen", "audit_share": 0, "cold_start_labels": 0}

    def queries(team: int, name: str) -> tuple[Path, dict[int, dict]]:
        config = data | {"output_dir": str(tmp_path / name), "acquisition_mode": modes | {"team_size": team}}
        folder = Simulation(parse_config(config), progress=False).run()
        return folder, {r["iteration"]: r for r in _read(folder) if r["successor"] == "tfidf"}

    def has_twins(ids: list[str]) -> bool:
        return len({pairs[i] for i in ids}) < len(ids)

    # one annotator: the ranking as it is; twins score the same and stand side by side
    _, alone = queries(1, "alone")
    assert any(has_twins(alone[t]["query_ids"]) for t in (0, 1))
    folder, team = queries(10, "team")
    assert [team[t]["team_size"] for t in range(3)] == [10, 10, 10]
    assert not any(has_twins(team[t]["query_ids"]) for t in (0, 1))
    # the batch is the first tasks of serving_order over the top QUERY_WINDOW of the ranking
    before = team[1]["labeled_ids_before"]
    ranking = _fresh_ranking(folder, 0, 1, [i for i in pairs if i not in set(before)])
    examples = {i: Example(id=i, text=pairs[i]) for i in pairs}
    training = TrainingConfig().replace(**data["training"])
    vectors_of = encoder_vectors("classification", str(tiny_model_dir), ["negative", "positive"], training)
    served = serving_order([examples[i] for i in ranking[:200]], vectors_of, 10, seed=0)
    assert team[1]["query_ids"] == [e.id for e in served[:10]]
    assert set(team[1]["query_ids"]) != set(ranking[:10])


@pytest.mark.filterwarnings("ignore:Number of distinct clusters")  # the serving order's k-means on 16 points
def test_the_cold_start_order_takes_one_task_per_cluster_first(tmp_path, tiny_model_dir, classification_files):
    # 16 groups of 15 copies of one text: to the encoder, 16 points
    rng = random.Random(3)
    texts: set[str] = set()
    while len(texts) < 16:
        texts.add(_review(rng, rng.choice(["positive", "negative"])))
    group_of = {f"g{g}-{c}": text for g, text in enumerate(sorted(texts)) for c in range(15)}
    pool = _pool_file(tmp_path, group_of)
    data = _config(
        tmp_path, pool, classification_files[1], seeds=[0, 1], scoring={"mode": "full"},
        seed_set={"count": 8}, batch={"count": 8},
        acquisition_mode={"mode": "frozen", "audit_share": 0, "cold_start_labels": 16},
    )
    data["acquisition"]["model"] = str(tiny_model_dir)
    records = [r for r in _read(Simulation(parse_config(data), progress=False).run()) if r["successor"] == "tfidf"]
    for seed in (0, 1):
        by_t = {r["iteration"]: r for r in records if r["seed"] == seed}
        seed_set = by_t[0]["labeled_ids_before"]
        # the seed set (8 of the 16 cold-start labels) from 8 groups; the next query, still in the
        # cold start, from the 8 others
        assert len({group_of[i] for i in seed_set}) == 8
        assert len({group_of[i] for i in seed_set + by_t[0]["query_ids"]}) == 16
        assert [by_t[t]["query_order"] for t in range(3)] == ["cold_start", "ranking", None]
    # without the cold start the same seeds draw the seed set at random: copies of one text in it
    off = {"mode": "frozen", "audit_share": 0, "cold_start_labels": 0}
    plain = data | {"output_dir": str(tmp_path / "plain"), "iterations": 1, "acquisition_mode": off}
    plain_records = _read(Simulation(parse_config(plain), progress=False).run())
    drawn = [r["labeled_ids_before"] for r in plain_records if r["iteration"] == 0 and r["successor"] == "tfidf"]
    assert all(len({group_of[i] for i in ids}) < 8 for ids in drawn)


def test_the_audit_is_measured_against_the_test_split_and_against_the_rest_of_the_pool():
    from simulate.report import estimate_errors

    def version(seed, iteration, audit, low, high, test, pool):
        return {
            "config": "c", "seed": seed, "iteration": iteration, "labeled_size": 100 + 20 * iteration,
            "quality_estimate": 0.9, "acquisition_score": test, "pool_score": pool,
            "audit_estimate": audit, "audit_low": low, "audit_high": high, "audit_n": 10,
        }

    # the test split reads 0.2 above the pool: the audit, right about the pool, misses the test's score
    records = [version(0, 0, 0.6, 0.5, 0.7, 0.8, 0.62), version(0, 1, 0.7, 0.6, 0.8, 0.9, 0.66),
               version(1, 0, 0.5, 0.4, 0.6, 0.7, 0.66)]
    e = estimate_errors(records)["c"]
    assert e["audit_mae"] == pytest.approx(0.2) and e["audit_bias"] == pytest.approx(-0.2) and e["coverage"] == 0.0
    assert e["audit_mae_pool"] == pytest.approx((0.02 + 0.04 + 0.16) / 3)
    assert e["audit_bias_pool"] == pytest.approx((-0.02 + 0.04 - 0.16) / 3)
    assert e["coverage_pool"] == pytest.approx(2 / 3)
    # records written before the pool score: nan, not an error
    assert math.isnan(estimate_errors([{**r, "pool_score": None} for r in records])["c"]["coverage_pool"])
