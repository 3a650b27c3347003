"""Pool scoring speed: end-to-end engine scoring against the model's raw forward rate.

Scores IMDb reviews with a real model three ways, measured side by side in one run:
- end-to-end: `model.infer` (tokenising, length-sorted batches, dynamic padding, scoring);
- raw forward: only the forward passes, on the same pre-tokenised, length-sorted, pre-padded batches;
- naive: pad every batch to the maximum length, in input order.
Goal: end-to-end >= 0.9 of raw forward. Each way runs `--repeats` times interleaved; the best
time of each counts. Both wall-clock and CPU time (all threads of this process) are recorded:
on a shared machine the wall clock mostly measures the other processes, while CPU time
measures the work done, so the goal is judged on CPU time.

    python benchmarks/bench_inference.py --model ~/.cache/al-models/minilm-l6 --n 5000
"""

from __future__ import annotations

import argparse
import os
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

    forward_only(sorted_batches[:4])  # warm-up (allocator, kernel choice), so no pipeline pays it alone
    timings: dict[str, list[float]] = {"raw forward": [], "end-to-end": [], "naive (pad to max)": []}
    cpu: dict[str, list[float]] = {name: [] for name in timings}
    runs = {"raw forward": lambda: forward_only(sorted_batches), "end-to-end": end_to_end, "naive (pad to max)": naive}
    for _ in range(args.repeats):
        for name, run in runs.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            run()
            timings[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
            print(f"{name}: {timings[name][-1]:.1f} s wall, {cpu[name][-1]:.1f} s CPU", flush=True)
    del naive_batches

    best = {name: min(t) for name, t in timings.items()}
    best_cpu = {name: min(t) for name, t in cpu.items()}
    rate = {name: args.n / t for name, t in best.items()}
    cpu_rate = {name: args.n / t for name, t in best_cpu.items()}
    tokens = sum(lengths)
    rows = "\n".join(
        f"| {name} | {best[name]:.1f} | {rate[name] / rate['raw forward']:.2f} | {best_cpu[name]:.1f} "
        f"| {cpu_rate[name]:.1f} | {cpu_rate[name] / cpu_rate['raw forward']:.2f} |"
        for name in runs
    )
    load = os.getloadavg()
    markdown = f"""## Pool scoring throughput (engine inference)

{machine_line()}
{args.n:,} IMDb training reviews, model `{Path(args.model).name}`, max_length {args.max_length}, batch {args.batch_size},
{tokens:,} tokens after truncation (mean {tokens / args.n:.0f} per review). Best of {args.repeats} interleaved runs.

Load average after the run (1, 5, 15 min): {load[0]:.1f}, {load[1]:.1f}, {load[2]:.1f} on {os.cpu_count()} cores.

| pipeline | wall s | wall rate vs raw | CPU s | reviews per CPU s | CPU rate vs raw forward |
|---|---|---|---|---|---|
{rows}

Goal: end-to-end >= 0.9 of raw forward (CPU time): **{"met" if cpu_rate["end-to-end"] / cpu_rate["raw forward"] >= 0.9 else "NOT met"}**
({cpu_rate["end-to-end"] / cpu_rate["raw forward"]:.2f}). Length-sorted dynamic padding against padding every batch to
the maximum length: {cpu_rate["end-to-end"] / cpu_rate["naive (pad to max)"]:.2f}x the rate.
"""
    print(markdown)
    if not args.no_write:
        write_section("inference", markdown)


if __name__ == "__main__":
    main()
