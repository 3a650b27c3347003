"""Pool scoring speed: end-to-end engine scoring against the model's raw forward rate.

Scores IMDb reviews with a real model three ways, measured side by side in one run:
- end-to-end: `model.infer` (tokenising, length-sorted batches, dynamic padding, scoring);
- raw forward: only the forward passes, on the same pre-tokenised, length-sorted, pre-padded batches;
- naive: pad every batch to the maximum length, in input order.
Goal: end-to-end >= 0.9 of raw forward. Each way runs `--repeats` times interleaved; the best
time of each counts (the machine is shared and noisy).

    python benchmarks/bench_inference.py --model ~/.cache/al-models/minilm-l6 --n 5000
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from al_core.data import Example
from al_core.inference import configure_threads, length_sorted_batches
from al_core.models import TransformerClassifier
from al_core.readers import read_jsonl
from al_core.strategies import least_confidence
from al_core.training import TrainingConfig, pad_batch
from benchmarks.report import machine_line, write_section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(Path.home() / ".cache/al-models/minilm-l6"))
    parser.add_argument("--data", default="../shared/data/imdb/imdb_train.jsonl.gz")
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--no-write", action="store_true", help="print, do not touch BENCHMARKS.md")
    args = parser.parse_args()

    configure_threads()
    dataset = read_jsonl(args.data)
    rng = np.random.default_rng(0)
    pool = [dataset.examples[i] for i in rng.choice(len(dataset.examples), args.n, replace=False)]
    config = TrainingConfig(max_length=args.max_length, eval_batch_size=args.batch_size, epochs=1, batch_size=16)
    model = TransformerClassifier(args.model, dataset.labels, config)
    model.fit([Example(id=e.id, text=e.text, label=e.label) for e in pool[:16]])  # one step: weights only need to exist
    module, pad_id = model.model_, model.tokenizer_.pad_token_id

    enc = model.tokenizer_([e.text for e in pool], truncation=True, max_length=args.max_length)
    features = [{k: enc[k][i] for k in enc} for i in range(len(pool))]
    lengths = [len(f["input_ids"]) for f in features]
    sorted_batches = [pad_batch([features[i] for i in idx], pad_id) for idx in length_sorted_batches(lengths, args.batch_size)]
    naive_batches = [
        model.tokenizer_([e.text for e in pool[i : i + args.batch_size]], truncation=True, max_length=args.max_length,
                         padding="max_length", return_tensors="pt")
        for i in range(0, len(pool), args.batch_size)
    ]

    def forward_only(batches):
        with torch.inference_mode():
            for batch in batches:
                torch.softmax(module(**batch).logits, dim=-1)

    def end_to_end():
        least_confidence(model.predict_proba(pool))

    def naive():
        with torch.inference_mode():
            for start in range(0, len(pool), args.batch_size):
                batch = model.tokenizer_([e.text for e in pool[start : start + args.batch_size]], truncation=True,
                                         max_length=args.max_length, padding="max_length", return_tensors="pt")
                least_confidence(torch.softmax(module(**batch).logits, dim=-1).numpy())

    timings: dict[str, list[float]] = {"raw forward": [], "end-to-end": [], "naive (pad to max)": []}
    runs = {"raw forward": lambda: forward_only(sorted_batches), "end-to-end": end_to_end, "naive (pad to max)": naive}
    for _ in range(args.repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            timings[name].append(time.perf_counter() - start)
            print(f"{name}: {timings[name][-1]:.1f} s", flush=True)
    del naive_batches

    best = {name: min(t) for name, t in timings.items()}
    rate = {name: args.n / t for name, t in best.items()}
    tokens = sum(lengths)
    rows = "\n".join(
        f"| {name} | {best[name]:.1f} | {rate[name]:.1f} | {rate[name] / rate['raw forward']:.2f} |" for name in runs
    )
    markdown = f"""## Pool scoring throughput (engine inference)

{machine_line()}
{args.n:,} IMDb training reviews, model `{Path(args.model).name}`, max_length {args.max_length}, batch {args.batch_size},
{tokens:,} tokens after truncation (mean {tokens / args.n:.0f} per review). Best of {args.repeats} interleaved runs.

| pipeline | seconds | reviews/s | rate vs raw forward |
|---|---|---|---|
{rows}

Goal: end-to-end >= 0.9 of raw forward: **{"met" if rate["end-to-end"] / rate["raw forward"] >= 0.9 else "NOT met"}**
({rate["end-to-end"] / rate["raw forward"]:.2f}). Length-sorted dynamic padding against padding every batch to
the maximum: {rate["end-to-end"] / rate["naive (pad to max)"]:.2f}x.
"""
    print(markdown)
    if not args.no_write:
        write_section("inference", markdown)


if __name__ == "__main__":
    main()
