"""bench_refresh's summary: the served model's figures per label count, and the verdicts counted."""

from __future__ import annotations

import argparse

import pytest

from benchmarks.bench_refresh import main, section, summarise


def _row(n, f1, mode, accepted=None):
    return {
        "labeled_size": n, "acquisition_score": f1, "acquisition_accuracy": f1, "acq_fit_s": 1.0,
        "inference_s": 0.5, "select_s": 0.0, "acquisition_mode": mode, "finetune_accepted": accepted,
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
