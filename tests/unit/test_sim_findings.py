"""The findings table: verdicts per comparison, the label count a verdict holds from, UPS's premise."""

from benchmarks import sim_findings
from benchmarks.sim_findings import docs_table, holds_from, premise_rows, verdict


def _record(config, successor, seed, iteration, score, overlap=None):
    return {
        "config": config, "successor": successor, "seed": seed, "iteration": iteration,
        "successor_score": score, "labeled_size": 20 + 30 * iteration, "pool_size": 980 - 30 * iteration,
        "acquisition": "minilm-l3", "strategy": "lc", "scoring": "full",
        "overlap": {"30": overlap} if overlap is not None else None,
    }


def test_verdicts_need_the_difference_beyond_one_standard_error():
    assert verdict("lower", [0.05, 0.06, 0.04]).startswith("holds (3/3")
    assert verdict("lower", [-0.05, -0.06, -0.04]).startswith("the other way")
    assert verdict("lower", [0.05, -0.05, 0.01]).startswith("unclear")
    assert verdict("same", [0.10, 0.11, 0.09]) == "does not hold (lower by 0.100)"
    assert verdict("same", [0.0, 0.01, -0.01]) == "holds (no quality cost)"
    assert verdict("same", [0.008, 0.009, 0.007]) == "holds (no quality cost)"  # within one point
    assert verdict("lower", [0.05]) == "too few seeds"


def test_holds_from_the_first_count_after_which_it_always_holds():
    # reference above the first by 0.05 from iteration 2 on, level before
    a = {s: {t: 0.5 for t in range(5)} for s in range(3)}
    b = {s: {t: 0.5 + (0.05 + 0.001 * s if t >= 2 else 0.001 * (s - 1)) for t in range(5)} for s in range(3)}
    labels = {("x", t): 20 + 30 * t for t in range(5)}
    assert holds_from("lower", a, b, [0, 1, 2], labels, "x") == "from 80 labels on"
    # broken at the last count: it does not hold "from" anywhere
    for s in range(3):
        b[s][4] = 0.5
    assert holds_from("lower", a, b, [0, 1, 2], labels, "x").startswith("not at the last count; held at 2 of 4")


def test_docs_table_names_each_finding_and_what_was_not_run():
    records = []
    for seed in range(3):
        for t in range(3):
            records.append(_record("agnews-asm", "matched", seed, t, 0.70 + 0.05 * t, overlap=0.4 + 0.3 * t))
            records.append(_record("agnews-ups", "matched", seed, t, 0.70 + 0.05 * t - 0.001 * seed))
    table = docs_table(records)
    ups = next(line for line in table.splitlines() if "UPS costs no quality" in line and "AG News" in line)
    assert "| F3 |" in ups and "holds (no quality cost)" in ups and "3 seeds" in ups
    assert "ASM is worse with MD" in table and "not run on this code" in table
    # the premise: 0.4 / 0.7 / 1.0 at 20 / 50 / 80 labels; held (>= 0.9) from 80 labels only
    premise = premise_rows(records)[0]
    assert "0.70 at 50 labels" in premise and "| partly | from 80 labels on |" in premise
    assert [row.endswith("not run on this code | | |") for row in premise_rows(records)[1:]] == [True, True]
    assert all(row.endswith("not run on this code | | |") for row in premise_rows([]))
    assert len({c[0] for c in sim_findings.COMPARISONS} - set(sim_findings.PAPER)) == 0
