"""The audit sample: a uniform share of the pool by a hash of (seed, task id), served among the
queried tasks, trained on like any label, and the estimate with its intervals on the labeled ones."""

from __future__ import annotations

import math
import random

import pytest

from al_core.acquisition import (
    AcquisitionConfig,
    audit_estimate,
    audit_ids,
    audit_slots,
    audit_step,
    audited_query,
    bootstrap_interval,
    fit_with_estimate,
    interleave_audit,
    is_audit_task,
    wilson_interval,
    without_audit,
)
from al_core.data import Example
from al_core.kinds import kind_of
from ml_backend.app import create_app
from ml_backend.jobs.retrain_steps import served_order
from ml_backend.jobs.run import run_retrain
from ml_backend.jobs.status import MemoryState
from tests.unit.test_query_window import settings_for, start_project


def test_the_audit_sample_is_a_uniform_share_of_any_ids_whatever_their_order_or_label():
    share, n = 0.04, 20_000
    ids = [str(i) for i in range(n)]
    chosen = {i for i in ids if is_audit_task(i, 7, share)}
    three_se = 3 * math.sqrt(share * (1 - share) / n)
    assert abs(len(chosen) / n - share) < three_se
    shuffled = random.Random(1).sample(ids, n)
    assert {i for i in shuffled if is_audit_task(i, 7, share)} == chosen  # a property of the id alone
    # a random labelling splits the ids in two; each half holds the share within its own error
    rng = random.Random(2)
    labels = {i: rng.choice("ab") for i in ids}
    for label in "ab":
        half = [i for i in ids if labels[i] == label]
        rate = sum(i in chosen for i in half) / len(half)
        assert abs(rate - share) < 3 * math.sqrt(share * (1 - share) / len(half))
    # another seed, another sample; share 0 turns it off; a larger share holds the smaller one
    assert {i for i in ids if is_audit_task(i, 8, share)} != chosen
    assert not any(is_audit_task(i, 7, 0.0) for i in ids)
    assert chosen <= {i for i in ids if is_audit_task(i, 7, 0.1)}


def test_interleaving_puts_an_audit_task_every_step_and_keeps_the_rest_in_order():
    regular, audit = [f"r{i}" for i in range(30)], ["a0", "a1", "a2"]
    out = interleave_audit(regular, audit, 0.1)
    assert [out.index(a) for a in audit] == [9, 19, 29]
    assert [i for i in out if i.startswith("r")] == regular
    # an audit task falls due sooner when labels came since the last one
    assert interleave_audit(regular, audit, 0.1, first=2).index("a0") == 2
    # the simulator's query: the same rule over a batch, its size kept
    pool = [str(i) for i in range(2000)]
    query = audited_query(without_audit(pool, 3, 0.1)[:50], pool, n_labeled=20, labeled_audit=0, seed=3, share=0.1)
    assert len(query) == 50 and sum(is_audit_task(i, 3, 0.1) for i in query) >= 5


def test_a_ranking_never_serves_an_audit_task_before_its_audit_place():
    # the ranking puts the audit sample's hardest tasks first: the query serves the audit tasks of
    # their own order (by rank) at their places and none of those the ranking chose, so that the
    # labeled audit tasks stay a uniform sample and not the uncertain ones
    pool = [str(i) for i in range(2000)]
    audit = audit_ids(pool, 3, 0.1)
    late = audit[-20:]  # far from their turn
    others = [i for i in pool if i not in set(audit)]
    query = audited_query(late + others[:30], pool, n_labeled=20, labeled_audit=0, seed=3, share=0.1)
    assert not set(late) & set(query)
    assert [i for i in query if is_audit_task(i, 3, 0.1)] == audit[: audit_slots(50, 0.1)]
    assert [i for i in query if not is_audit_task(i, 3, 0.1)] == others[:30]
    assert without_audit(late + others[:3], 3, 0.1) == others[:3]
    assert without_audit(late[:2] + others[:1], 3, 0.1, keep={late[0]}) == [late[0], others[0]]
    assert without_audit(late, 3, 0.0) == late  # no audit: every task may be chosen


def test_the_window_order_places_audit_tasks_by_their_published_score():
    predictions = [{"task": i, "result": [], "score": round(0.01 * i, 6)} for i in range(40)]
    ordered = served_order(predictions, audit=["35", "36"], share=0.1)
    assert [p["task"] for p in ordered].index(35) == 9
    scores = [p["score"] for p in ordered]
    assert scores == sorted(scores)  # lowest first still serves this order
    assert sorted(ordered, key=lambda p: p["score"]) == ordered


def test_an_unlabeled_audit_task_is_served_within_the_first_step_of_tasks(fake_ls, tmp_path, tiny_model_dir):
    fake, url = fake_ls
    ids = start_project(fake)
    share = 0.1
    settings = settings_for(url, tmp_path, tiny_model_dir, acquisition_mode="frozen", query_window=30, audit_share=share)
    pool = [str(i) for i in ids[6:]]
    audit = {i for i in pool if is_audit_task(i, settings.seed, share)}
    assert audit, "the pool holds audit tasks"
    summary = run_retrain(1, settings, MemoryState())
    assert summary["audit"]["served"] >= 1 and summary["audit"]["share"] == share
    served = []
    for _ in range(audit_step(share) + 1):
        task = fake.next_task(1)
        served.append(str(task["id"]))
        fake.choose(task["id"], "Positive")
    assert audit & set(served), served


def test_the_frozen_head_fits_on_the_audit_labels_and_its_estimate_is_out_of_fold():
    labeled = [Example(id=str(i), text=f"t{i}", label="pos" if i % 3 else "neg") for i in range(60)]
    config = AcquisitionConfig(audit_share=0.5)
    audit = {e.id for e in labeled if is_audit_task(e.id, 4, 0.5)}
    fits = []

    class Recording:
        mode, labels, task_kind = "frozen", ["neg", "pos"], kind_of("classification")

        def fit(self, examples):
            fits.append({e.id for e in examples})

        def cross_validated_predictions(self, examples, folds):
            return [e.label for e in examples]

    estimate = fit_with_estimate(Recording(), labeled, config, seed=4)
    assert audit <= fits[-1] and len(fits[-1]) == 60  # excluded from nothing
    assert estimate.audit["n"] == len(audit) >= 10 and estimate.audit["value"] == 1.0
    assert estimate.value == 1.0 and estimate.n == 60


class _Recording:
    """A fine-tuned model that records what it trains on and what it is asked to predict."""

    mode = "finetune"

    def __init__(self, kind: str, labels: list[str], answers: dict):
        self.task_kind, self.labels, self.answers = kind_of(kind), labels, answers
        self.trained: set[str] = set()
        self.asked: set[str] = set()

    def fit(self, examples):
        self.trained = {e.id for e in examples}

    def predict(self, examples):
        assert all(not e.is_labeled for e in examples)  # predicted without their gold
        self.asked |= {e.id for e in examples}
        return [self.answers[e.id] for e in examples]


def test_a_fine_tuned_model_never_trains_on_the_audit_tasks_and_is_audited_on_them():
    labeled = [Example(id=str(i), text=f"t{i}", label="pos" if i % 3 else "neg") for i in range(80)]
    config = AcquisitionConfig(audit_share=0.3, holdout_share=0.1)
    audit = {e.id for e in labeled if is_audit_task(e.id, 2, 0.3)}
    wrong = sorted(audit)[:3]  # three audit tasks predicted wrong, every other task right
    answers = {e.id: ("neg" if e.label == "pos" else "pos") if e.id in wrong else e.label for e in labeled}
    model = _Recording("classification", ["neg", "pos"], answers)
    estimate = fit_with_estimate(model, labeled, config, seed=2)
    assert len(audit) >= 10 and not model.trained & audit and audit <= model.asked
    assert model.trained | model.asked == {e.id for e in labeled} and not model.trained & model.asked
    assert estimate.audit["n"] == len(audit) and estimate.audit["accuracy"] == pytest.approx(1 - 3 / len(audit), abs=1e-4)
    assert estimate.audit["low"] <= estimate.audit["value"] < 1.0 and estimate.n == len(model.asked)


def test_a_tagger_is_audited_by_span_f1_on_the_audit_sentences_it_never_trained_on():
    words = ["john", "smith", "said", "in", "paris"]
    gold = ["B-PER", "I-PER", "O", "O", "B-LOC"]
    labeled = [Example(id=str(i), text=" ".join(words), words=words, tags=gold) for i in range(80)]
    audit = {e.id for e in labeled if is_audit_task(e.id, 5, 0.3)}
    missed = sorted(audit)[0]  # one audit sentence loses its LOC span: 2 of 3 spans found there
    answers = {e.id: gold[:4] + ["O"] if e.id == missed else gold for e in labeled}
    model = _Recording("tagging", ["PER", "LOC"], answers)
    estimate = fit_with_estimate(model, labeled, AcquisitionConfig(audit_share=0.3, holdout_share=0.0), seed=5)
    assert not model.trained & audit and model.asked == audit
    spans = 2 * len(audit)  # PER and LOC per sentence
    precision, recall = 1.0, (spans - 1) / spans
    assert estimate.audit["n"] == len(audit)
    assert estimate.audit["value"] == pytest.approx(2 * precision * recall / (precision + recall), abs=1e-4)  # rounded
    assert estimate.value is None  # no held-out share: only the audit sample measures it


def test_too_few_labeled_audit_tasks_give_no_audit_estimate():
    kind = kind_of("classification")
    gold = [Example(id=str(i), text="x", label="a") for i in range(9)]
    assert audit_estimate(kind, gold, ["a"] * 9, ["a", "b"], 0.04).value is None


def test_the_wilson_interval_of_eight_in_ten_is_the_hand_computed_one():
    # p = 0.8, z = 1.959964: centre (p + z²/2n) / (1 + z²/n), half-width z √(p(1-p)/n + z²/4n²) / (1 + z²/n)
    z, n, p = 1.959964, 10, 0.8
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(centre - half, abs=1e-5) and high == pytest.approx(centre + half, abs=1e-5)
    assert (round(low, 3), round(high, 3)) == (0.49, 0.943)


def test_the_bootstrap_interval_holds_the_estimate_and_narrows_with_more_tasks():
    kind = kind_of("classification")
    rng = random.Random(5)

    def interval(n):
        gold = [Example(id=str(i), text="x", label=rng.choice("abc")) for i in range(n)]
        predicted = [e.label if rng.random() < 0.7 else rng.choice("abc") for e in gold]
        return audit_estimate(kind, gold, predicted, list("abc"), 0.04, seed=1)

    small, large = interval(30), interval(600)
    for e in (small, large):
        assert e.low <= e.value <= e.high and e.accuracy_low <= e.accuracy <= e.accuracy_high
    assert large.high - large.low < (small.high - small.low) / 2
    # seeded: the same interval twice
    def distinct(draws):
        return [len(set(row)) for row in draws]

    assert bootstrap_interval(distinct, 20, seed=3) == bootstrap_interval(distinct, 20, seed=3)


def test_status_carries_the_audit_estimate(fake_ls, tmp_path, tiny_model_dir):
    fake, url = fake_ls
    ids = start_project(fake, n_tasks=60, n_labeled=40)
    settings = settings_for(url, tmp_path, tiny_model_dir, acquisition_mode="frozen", audit_share=0.5)
    run_retrain(1, settings, MemoryState())
    current = create_app(settings).test_client().get("/status/1").json["projects"]["1"]["current"]
    labeled_audit = sum(is_audit_task(str(i), settings.seed, 0.5) for i in ids[:40])
    assert current["audit"]["labeled"] == labeled_audit >= 10
    estimate = current["audit_estimate"]
    assert estimate["n"] == labeled_audit and estimate["low"] <= estimate["value"] <= estimate["high"]
    assert current["quality"]["audit"] == estimate
