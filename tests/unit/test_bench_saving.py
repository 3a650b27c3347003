"""The labels-saved arithmetic of benchmarks/bench_saving.py on hand-made curves."""

import pytest

from benchmarks.bench_saving import labels_to_reach, summarise, team_kept


def test_labels_to_reach_interpolates_between_counts():
    curve = {20: 0.5, 30: 0.6, 40: 0.8}
    assert labels_to_reach(curve, 0.5) == 20
    assert labels_to_reach(curve, 0.7) == pytest.approx(35.0)
    assert labels_to_reach(curve, 0.9) is None


def _rows(ordering, values, seed=0, step=10):
    return [
        {"set": "toy", "ordering": ordering, "step": step, "seed": seed, "labels": n, "headline": v, "metric": "macro_f1",
         "accuracy": v, "rare_recall": 0.0, "rarest": "r", "rare_labels": 0}
        for n, v in values.items()
    ]


def test_saving_is_the_share_of_labels_random_needs_more():
    random = {100: 0.60, 150: 0.65, 200: 0.70}
    better = {100: 0.70, 150: 0.72, 200: 0.74}  # reaches random's 200-label figure at 100 labels
    summary = {s["ordering"]: s for s in summarise(_rows("random", random) + _rows("default", better))}
    assert summary["default"]["saved_200"] == pytest.approx(0.5)
    assert summary["default"]["saved_100"] == pytest.approx(0.0)
    assert summary["random"]["saved_200"] == pytest.approx(0.0)
    assert summary["default"]["worst_gap"] == pytest.approx(0.04)
    worse = {100: 0.50, 150: 0.55, 200: 0.60}
    summary = {s["ordering"]: s for s in summarise(_rows("random", random) + _rows("default", worse))}
    assert summary["default"]["saved_200"] is None and summary["default"]["worst_gap"] == pytest.approx(-0.10)


def test_each_kind_of_run_writes_its_own_section():
    from argparse import Namespace

    from benchmarks.bench_saving import report

    args = Namespace(model="minilm-l6", mode="frozen", strategy=None, team=None, cold_start=None, finetune_every=None,
                     pool=100, test=50, start=20, stop=200, warnings=False, section=None)
    rows = _rows("random", {100: 0.6, 200: 0.7}) + _rows("default", {100: 0.7, 200: 0.75})
    assert report(rows, [], args)[0] == "labels-saved"
    section, body = report(rows, [], Namespace(**{**vars(args), "mode": "auto"}))
    assert section == "labels-saved-auto" and "(auto mode)" in body and "| toy (r; macro_f1) | 10 | default |" in body
    assert "| 0.700 / 0.750 |" in body  # the default order's accuracy at 100 / 200 beside its macro F1
    ner = [{**r, "metric": "span_f1"} for r in rows]
    section, body = report(ner, [], args)
    assert section == "labels-saved-ner" and body.startswith("## Labels saved against random order: NER")
    section, _ = report(ner, [], Namespace(**{**vars(args), "section": "labels-saved-ner-cadence"}))
    assert section == "labels-saved-ner-cadence"  # beside the earlier NER section, not over it
    both = ner + [{**r, "step": 1} for r in ner]
    assert report(both, [], args)[1].startswith("## Labels saved against random order: NER, one annotator and a team")
    rows[-1]["warnings"] = {"r": [12, 0.05, True], "s": [30, 0.9, False]}
    section, body = report(rows, [], Namespace(**{**vars(args), "warnings": True}))
    # one label-round with recall < 0.1 and >= 10 labels, warned; none warned wrongly
    assert section == "unlearned-warning" and "| toy | default | 2 | 1 | 1 | 0 | 1 |" in body


def test_tagging_saving_is_also_counted_in_words_and_each_strategy_is_its_own_row():
    def tagged(ordering, values, words_per_label, strategy=None):
        rows = _rows(ordering, values)
        for row in rows:
            row["words"] = row["labels"] * words_per_label
            if strategy:
                row["strategy"] = strategy
        return rows

    random = {100: 0.60, 200: 0.70}
    long_sentences = {100: 0.70, 200: 0.75}  # reaches random's 200-sentence figure at 100 sentences...
    summary = {
        s["ordering"]: s
        for s in summarise(tagged("random", random, 15) + tagged("default", long_sentences, 40, "mnlp-task")
                           + tagged("default", random, 15, "mnlp"))
    }
    assert set(summary) == {"random", "default (mnlp-task)", "default (mnlp)"}
    tagging = summary["default (mnlp-task)"]
    assert tagging["saved_200"] == pytest.approx(0.5)
    # ...but with 4,000 words where random read 3,000 for it: a third more words, not a saving
    assert tagging["words_200"] == 8000 and tagging["saved_words_200"] == pytest.approx(1 - 4000 / 3000)
    assert summary["default (mnlp)"]["saved_words_200"] == pytest.approx(0.0)


def test_both_cadences_are_measured_against_every_random_campaign_and_the_team_share_is_reported():
    # random order does not depend on the cadence: its campaigns at 1 and 10 labels a retrain are
    # one baseline (here 0.60 / 0.70 at 100 / 200, the mean of the two)
    rows = (_rows("random", {100: 0.55, 150: 0.60, 200: 0.65}, step=1)
            + _rows("random", {100: 0.65, 150: 0.70, 200: 0.75}, step=10)
            + _rows("default", {100: 0.70, 150: 0.72, 200: 0.74}, step=1)
            + _rows("default", {100: 0.60, 150: 0.65, 200: 0.70}, step=10))
    summary = {(s["ordering"], s["step"]): s for s in summarise(rows)}
    assert summary[("default", 1)]["saved_200"] == pytest.approx(0.5)  # 0.70 at 100 labels
    assert summary[("default", 10)]["saved_200"] == pytest.approx(0.0)
    assert summary[("random", 10)]["worst_gap"] == pytest.approx(0.05)  # its own cadence's row against the pool
    # mean gain over the baseline at the counts both measure: +0.07 and 0.0; savings 50% and 0%
    assert "| toy | +0% / +50% | +0% / +0% | - / 0% | +0.070 / +0.000 (0%) |" in team_kept(rows, summarise(rows))
    assert team_kept(rows[:6], summarise(rows[:6])) == ""  # one cadence only: no comparison
