"""bench_refresh's summary: the served model's figures per label count, and the verdicts counted."""

from __future__ import annotations

import argparse

import pytest

from benchmarks.bench_refresh import main, section, summarise, verdict_lines


def _row(n, f1, mode, accepted=None, candidate=None):
    return {
        "labeled_size": n, "acquisition_score": f1, "acquisition_accuracy": f1, "acq_fit_s": 1.0,
        "inference_s": 0.5, "select_s": 0.0, "acquisition_mode": mode, "finetune_accepted": accepted,
        "finetune_verdict": None if candidate is None else {"candidate_score": candidate},
    }


def test_the_section_compares_refresh_with_the_better_of_the_others_and_counts_the_verdicts():
    every = summarise([_row(40, 0.8, "finetune"), _row(60, 0.9, "finetune")])
    frozen = summarise([_row(40, 0.7, "frozen"), _row(60, 0.7, "frozen")])
    refresh = summarise(
        [_row(40, 0.75, "frozen", True), _row(40, 0.85, "frozen", False), _row(60, 0.88, "refresh", None)]
    )
    assert refresh[40]["f1"] == 0.8 and refresh[40]["taken_up"] == [True, False] and refresh[60]["taken_up"] == []
    args = argparse.Namespace(seeds=2, pool=1000, test=500, start=20, step=20, every=20)
    text = section({"sst2": {"finetune-every-round": every, "refresh": refresh, "frozen": frozen}}, args)
    assert "| 40 | 0.800 / 0.800 / 1.5 | 0.800 / 0.800 / 1.5 (frozen) | 0.700 / 0.700 / 1.5 | +0.000 |" in text
    assert "| 60 |" in text and "| -0.020 |" in text
    assert "taken up by the verdict: 1 of 2 (labels: taken up / run, over the seeds: 40: 1/2)." in text


def test_an_unknown_variant_is_refused_before_anything_runs(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--variants", "refresh,sometimes", "--no-write"])
    assert exit_info.value.code == 2 and "unknown variant(s) sometimes" in capsys.readouterr().err


def test_the_verdicts_are_set_against_the_test_set():
    refresh = summarise([
        _row(40, 0.70, "frozen", True, candidate=0.80),  # taken up, right: +0.10
        _row(40, 0.70, "frozen", False, candidate=0.75),  # rejected, wrong: gave away +0.05
        _row(60, 0.80, "refresh", False, candidate=0.70),  # rejected, right: -0.10
        _row(60, 0.80, "refresh", True),  # recorded before verdicts had a truth: left out
    ])
    text = "\n".join(verdict_lines(refresh))
    assert "the new one scored higher in 2 of 3 fine-tunes; the verdict agreed with the test set in 2 of 3" in text
    assert "took up 1 of the 2 better, rejected 1 of the 1 not better" in text
    assert "those taken up +0.100 (1), of those rejected -0.025 (2;" in text
    assert verdict_lines(summarise([_row(40, 0.7, "frozen", True)])) == []
