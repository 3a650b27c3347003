"""PLASM on real data: does the exported training set help a successor of another family?

For AG News and CoNLL-2003: a cheap acquisition model (MiniLM-L3) picks the tasks to annotate
by uncertainty (gold labels revealed, as in the emulation protocol); the result is written as a
Label Studio JSON export; `plasm-export` trains a MiniLM-L6 teacher on it and writes the
training set with each filter (tracin, uncertainty, none). A successor of another family, a
linear model (TF-IDF + logistic regression for texts; word-feature logistic regression per
token for NER), is trained on the exported files (read back with the engine's readers) and
scored on a test set, against the same successor trained on the gold labels alone.

    python -m benchmarks.bench_plasm [--models /root/.cache/al-models] [--pool 1500] [--labeled 350]

CPU-sized (2 cores): small pool, max length 64, a few epochs. Writes the "plasm" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import numpy as np

from al_core.data import CLASSIFICATION, TAGGING, Example
from al_core.kinds import kind_of
from al_core.ls_format import (
    parse_label_config,
    prediction_result,
    spans_to_tags,
    tags_to_spans,
    words_text,
)
from al_core.models import build_model
from al_core.readers import read_conll, read_csv
from al_core.strategies import get_strategy, select_batch
from al_core.training import TrainingConfig
from benchmarks.report import machine_line, write_section
from plasm_export.cli import main as plasm_export
from simulate.datasets import shared_dataset
from simulate.report import METRIC_NAMES

FILTERS = ("tracin", "uncertainty", "none")


# -- data ----------------------------------------------------------------------------------------


def agnews(pool_size: int, test_size: int, seed: int):
    data = shared_dataset("agnews", "test")
    rng = random.Random(seed)
    examples = list(data.examples)
    rng.shuffle(examples)
    return data.labels, examples[:pool_size], examples[pool_size : pool_size + test_size]


def retokenized(example: Example, idx: str) -> Example:
    """A CoNLL sentence as a Label Studio task sees it: text, then words by the exporter's tokenizer."""
    text, offsets = words_text(example.words)
    spans = tags_to_spans(text, offsets, example.tags)
    words, offsets, tags = spans_to_tags(text, spans)
    return Example(id=idx, text=text, words=words, tags=tags, offsets=offsets)


def conll(pool_size: int, test_size: int, seed: int):
    train = [e for e in shared_dataset("conll2003", "train").examples if len(e.words) >= 3]
    test = shared_dataset("conll2003", "test").examples
    rng = random.Random(seed)
    rng.shuffle(train)
    pool = [retokenized(e, str(i)) for i, e in enumerate(train[:pool_size])]
    test = [retokenized(e, str(i)) for i, e in enumerate(test[:test_size])]
    types = sorted({t[2:] for e in pool for t in e.tags if t != "O"})
    return types, pool, test


# -- annotation with the cheap acquisition model --------------------------------------------------


def acquire(kind, labels, pool, seed_size, rounds, batch, acquisition_model, training, seed):
    """Ids annotated by uncertainty sampling with the acquisition model (gold revealed each round)."""
    rng = random.Random(seed)
    ids = [e.id for e in pool]
    labeled = set(rng.sample(ids, seed_size))
    strategy = get_strategy(kind_of(kind).default_strategy)
    model_labels = kind_of(kind).model_labels(labels)
    for _ in range(rounds):
        model = build_model(kind, acquisition_model, model_labels, training)
        model.fit([e for e in pool if e.id in labeled])
        rest = [e for e in pool if e.id not in labeled]
        scores = strategy.score_outputs(model.predict_proba(rest))
        labeled.update(select_batch([e.id for e in rest], scores, count=batch))
    return labeled


def export_tasks(kind, config_xml, pool, labeled_ids):
    config = parse_label_config(config_xml)
    tasks = []
    for e in pool:
        task = {"id": int(e.id), "data": {"text": e.text}, "annotations": [], "predictions": []}
        if e.id in labeled_ids:
            result = prediction_result(e, config)
            task["annotations"] = [{"id": int(e.id), "result": result, "was_cancelled": False}]
        tasks.append(task)
    return tasks


# -- the successor of another family: linear models -----------------------------------------------


def text_successor(train: list[Example]):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    model = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1),
        LogisticRegression(max_iter=2000, C=10.0),
    )
    model.fit([e.text for e in train], [e.label for e in train])
    return lambda examples: list(model.predict([e.text for e in examples]))


def _word_features(words, i):
    w = words[i]
    shape = "".join("X" if c.isupper() else "x" if c.islower() else "d" if c.isdigit() else c for c in w)[:6]
    return {
        "w=" + w.lower(): 1,
        "shape=" + shape: 1,
        "suf3=" + w[-3:].lower(): 1,
        "pre3=" + w[:3].lower(): 1,
        "title": float(w.istitle()),
        "upper": float(w.isupper()),
        "first": float(i == 0),
        "prev=" + (words[i - 1].lower() if i else "<s>"): 1,
        "next=" + (words[i + 1].lower() if i + 1 < len(words) else "</s>"): 1,
        "prevshape=" + ("".join("X" if c.isupper() else "x" for c in words[i - 1])[:4] if i else "<s>"): 1,
    }


def token_successor(train: list[Example]):
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = DictVectorizer()
    x = vectorizer.fit_transform([_word_features(e.words, i) for e in train for i in range(len(e.words))])
    y = [t for e in train for t in e.tags]
    model = LogisticRegression(max_iter=1000, C=5.0).fit(x, y)

    def predict(examples):
        feats = [_word_features(e.words, i) for e in examples for i in range(len(e.words))]
        flat = list(model.predict(vectorizer.transform(feats)))
        out, k = [], 0
        for e in examples:
            out.append(flat[k : k + len(e.words)])
            k += len(e.words)
        return out

    return predict


LINEAR_SUCCESSORS = {CLASSIFICATION: text_successor, TAGGING: token_successor}
# the training set plasm-export wrote, read back in the kind's own format
TRAIN_READERS = {
    CLASSIFICATION: lambda out: read_csv(out / "train.csv", "text", "label", id_column="id").examples,
    TAGGING: lambda out: read_conll(out / "train.conll").examples,
}


def successor_score(kind, train, test):
    start = time.perf_counter()
    predict = LINEAR_SUCCESSORS[kind](train)
    fit_s = time.perf_counter() - start
    return kind_of(kind).score([kind_of(kind).gold(e) for e in test], predict(test)), fit_s


def pseudo_quality(kind, rows, truth):
    """The kind's metric of the pseudo-labels against the hidden gold, kept vs dropped."""
    task_kind = kind_of(kind)
    field = {CLASSIFICATION: "label", TAGGING: "tags"}[kind]  # the JSONL record's label field
    out = {}
    for part, keep in (("kept", True), ("dropped", False)):
        chosen = [r for r in rows if r["source"] == "pseudo" and r["kept"] == keep]
        gold = [task_kind.gold(truth[r["id"]]) for r in chosen]
        out[part] = task_kind.score(gold, [r[field] for r in chosen]) if chosen else None
    return out


# -- one dataset ----------------------------------------------------------------------------------


def run_dataset(name, args, folder: Path) -> dict:
    kind = CLASSIFICATION if name == "agnews" else "tagging"
    labels, pool, test = (agnews if name == "agnews" else conll)(args.pool, args.test, args.seed)
    config_xml = kind_of(kind).label_config_xml(kind_of(kind).model_labels(labels))
    lr = {CLASSIFICATION: args.cls_lr, TAGGING: args.ner_lr}[kind]
    acq_training = TrainingConfig(
        learning_rate=lr, epochs=args.epochs, max_length=args.max_length, seed=args.seed
    )
    rounds = 3
    seed_size = args.labeled - rounds * (args.labeled // 4)
    start = time.perf_counter()
    labeled_ids = acquire(
        kind,
        labels,
        pool,
        seed_size,
        rounds,
        args.labeled // 4,
        str(Path(args.models) / "minilm-l3"),
        acq_training,
        args.seed,
    )
    acquisition_s = time.perf_counter() - start
    export = folder / f"{name}-export.json"
    export.write_text(json.dumps(export_tasks(kind, config_xml, pool, labeled_ids)), encoding="utf-8")
    (folder / f"{name}.xml").write_text(config_xml, encoding="utf-8")
    truth = {e.id: e for e in pool}
    gold = [truth[i] for i in sorted(labeled_ids, key=int)]

    score, fit_s = successor_score(kind, gold, test)
    result = {
        "kind": kind,
        "n_labeled": len(gold),
        "n_pool": len(pool) - len(gold),
        "n_test": len(test),
        "acquisition_s": acquisition_s,
        "gold_only": {"score": score, "fit_s": fit_s},
        "filters": {},
    }
    work = folder / f"{name}.work"
    for (
        filter_name
    ) in FILTERS:  # tracin first: it saves the teacher's checkpoints, the others reuse the teacher
        out = folder / f"{name}-{filter_name}"
        formats = ",".join(f for f in kind_of(kind).formats if f != "ls")
        start = time.perf_counter()
        code = plasm_export(
            [
                "--export",
                str(export),
                "--label-config",
                str(folder / f"{name}.xml"),
                "--out",
                str(out),
                "--work-dir",
                str(work),
                "--teacher",
                str(Path(args.models) / args.teacher),
                "--filter",
                filter_name,
                "--format",
                formats,
                "--epochs",
                str(args.epochs),
                "--learning-rate",
                str(lr),
                "--max-length",
                str(args.max_length),
                "--seed",
                str(args.seed),
                "--no-progress",
            ]
        )
        wall_s = time.perf_counter() - start
        if code != 0:
            raise SystemExit(f"plasm-export failed on {name} with {filter_name}")
        report = json.loads((out / "report.json").read_text())
        rows = [json.loads(line) for line in (out / "all_tasks.jsonl").read_text().splitlines()]
        train = TRAIN_READERS[kind](out)
        score, fit_s = successor_score(kind, train, test)
        result["teacher_score"] = report["teacher"]["heldout_score"]
        result["teacher_metric"] = report["teacher"]["metric"]
        result["filters"][filter_name] = {
            "successor": score,
            "successor_fit_s": fit_s,
            "n_train": len(train),
            "dropped": report["tasks"]["pseudo_dropped"],
            "drop_fraction": report["drop_fraction"],
            "pseudo_quality": pseudo_quality(kind, rows, truth),
            "timings": report["timings_s"],
            "wall_s": wall_s,
            "resumed": report["teacher"]["resumed"],
        }
        print(name, filter_name, json.dumps(result["filters"][filter_name]), flush=True)
    return result


def _f(value) -> str:
    return "–" if value is None else f"{value:.4f}"


def markdown(results: dict, args) -> str:
    lines = [
        "## PLASM export (`plasm-export`)",
        "",
        machine_line(),
        f"Annotated subset chosen by uncertainty sampling with MiniLM-L3 (seed {args.labeled - 3 * (args.labeled // 4)} "
        f"random + 3 rounds of {args.labeled // 4}; gold labels revealed): {args.labeled} labeled tasks out of a pool of "
        f"{args.pool}. Teacher `{args.teacher}` trained by `plasm-export` on 80% of the gold (20% held out to score it), "
        f"{args.epochs} epochs, max length {args.max_length}, batch 16, lr {args.cls_lr} (AG News) / {args.ner_lr} (CoNLL). "
        "Successor of another family: a linear model trained on the exported file read back with the engine's readers "
        "(AG News: TF-IDF 1-2-grams + logistic regression on `train.csv`; CoNLL: word-feature logistic regression per "
        f"token on `train.conll`), scored on {args.test} test tasks (AG News rows outside the pool; CoNLL eng.testb "
        "sentences), against the same successor on the gold labels alone. Pseudo-label quality is measured against the "
        "pool's hidden gold labels. Times: teacher fit is paid once (the other filters reload the saved teacher).",
        "",
    ]
    for name, r in results.items():
        metric = METRIC_NAMES[kind_of(r["kind"]).metric]
        lines += [
            f"### {'AG News' if name == 'agnews' else 'CoNLL-2003'} ({r['n_labeled']} labeled, {r['n_pool']} "
            f"unlabeled, {r['n_test']} test; acquisition took {r['acquisition_s']:.0f} s)",
            "",
            f"Teacher held-out {r['teacher_metric']}: {r['teacher_score']:.4f}. Successor on gold only: "
            f"{metric} **{r['gold_only']['score']:.4f}** ({r['n_labeled']} tasks).",
            "",
            f"| filter | dropped | successor {metric} | vs gold only | successor train tasks | pseudo-label "
            f"{metric} kept / dropped | teacher fit s | pseudo-label s | filter s | plasm-export wall s |",
            "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|",
        ]
        for filter_name, f in r["filters"].items():
            q, t = f["pseudo_quality"], f["timings"]
            lines.append(
                f"| {filter_name} | {f['dropped']} ({f['drop_fraction']:.1%}) | {f['successor']:.4f} | "
                f"{f['successor'] - r['gold_only']['score']:+.4f} | {f['n_train']} | {_f(q['kept'])} / {_f(q['dropped'])} | "
                f"{t.get('teacher_fit_s', 0):.0f}{' (reused)' if f['resumed'] else ''} | {t['pseudo_label_s']:.0f} | "
                f"{t['filter_s']:.0f} | {f['wall_s']:.0f} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="/root/.cache/al-models")
    parser.add_argument("--teacher", default="minilm-l6")
    parser.add_argument("--datasets", default="agnews,conll2003")
    parser.add_argument("--pool", type=int, default=1500)
    parser.add_argument("--labeled", type=int, default=350)
    parser.add_argument("--test", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--cls-lr", type=float, default=1e-4)
    parser.add_argument("--ner-lr", type=float, default=1.5e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--no-write", action="store_true", help="print the figures, leave BENCHMARKS.md alone"
    )
    args = parser.parse_args(argv)
    for name in ("minilm-l3", args.teacher):
        if not (Path(args.models) / name).is_dir():
            raise SystemExit(
                f"model folder {Path(args.models) / name} not found (see ../shared/models/fetch-models.sh)"
            )
    np.random.seed(args.seed)
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-plasm-") as folder:
        for name in args.datasets.split(","):
            results[name] = run_dataset(name, args, Path(folder))
    text = markdown(results, args)
    print(text)
    if not args.no_write:
        write_section("plasm", text)


if __name__ == "__main__":
    main()
