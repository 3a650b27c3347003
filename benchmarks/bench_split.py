"""A retrain's split scoring pass on 1 and 2 real `rq worker`s, written into BENCHMARKS.md
(one section per mode: split-pass-frozen, split-pass-finetune).

  python -m benchmarks.bench_split [--sizes 2000,4000] [--labels 40] [--modes frozen,finetune]

Per size and mode, a fresh MODEL_DIR and a project of that many AG News test texts (../shared/data)
in the in-process fake Label Studio, `--labels` of them labeled with their gold topic; then one
retrain, enqueued as the backend enqueues it, run by 1 and then by 2 `rq worker` processes on
real Redis (`--redis`), 1 torch thread each, AL_SPLIT_CHUNK `--chunk`:
- frozen: the live default below 40 labels; its first retrain embeds the whole pool once
  (the first embedding pass of a new encoder);
- finetune: a full-scoring iteration (AL_UPS_MODE full) after fine-tuning with the live schedule.
Recorded: the scoring step (`inference_s`: saving the model for the workers, the chunks, the
merge), the chunks each worker ran, the fit, the quality (accuracy of the version's labels on the
whole pool against the gold topics, every task published: AL_QUERY_WINDOW 0) and whether the one-
and two-worker runs gave the same labels.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from benchmarks.bench_backend import AG_CONFIG, MODELS, ag_news
from benchmarks.report import machine_line, write_section
from benchmarks.rq_retrain import run_retrain, start_workers, stop_workers
from ml_backend.settings import Settings
from testkit.fake_label_studio import FakeLabelStudio, backend_values

WHAT = {
    "frozen": "The first retrain of a frozen head (the live default below 40 labels), which embeds the whole "
    "pool: the first embedding pass of the encoder.",
    "finetune": "A full-scoring iteration (AL_UPS_MODE full) after fine-tuning ({args.epochs} epochs, at least "
    "{args.min_steps} steps).",
}
PROJECT = 1


def run_once(size: int, labels: int, mode: str, workers: int, args, data) -> dict:
    from redis import Redis

    redis = Redis.from_url(args.redis)
    redis.flushdb()
    fake = FakeLabelStudio()
    url = fake.start()
    work = Path(tempfile.mkdtemp(prefix="bench-split-"))
    processes = []
    try:
        fake.add_project(PROJECT, AG_CONFIG)
        ids = fake.add_tasks(PROJECT, [t for t, _ in data[:size]])
        gold = {task_id: y for task_id, (_, y) in zip(ids, data[:size], strict=True)}
        for task_id in ids[:labels]:
            fake.choose(task_id, gold[task_id], from_name="topic")
        settings = Settings(**backend_values(
            url, work / "store", MODELS / args.model, redis_url=args.redis, rq_queue="al-bench-split",
            acquisition_mode=mode, ups_mode="full", split_chunk=args.chunk, query_window=0,
            max_length=args.max_length, torch_threads=1, min_labels=2,
            # the live training schedule (the engine's defaults), not the tests' fast one
            epochs=args.epochs, min_steps=args.min_steps, batch_size=16,
        ))
        processes = start_workers(settings, redis, workers)
        summary, elapsed = run_retrain(settings, redis, PROJECT)
        if summary.get("status") != "trained":
            raise SystemExit(f"the retrain did not train: {summary}")
        predicted = {
            p["task"]: p["result"][0]["value"]["choices"][0]
            for p in fake.predictions_of(summary["version"]) if p["result"]
        }
        pool = [t for t in ids[labels:]]
        accuracy = sum(predicted.get(t) == gold[t] for t in pool) / len(pool)
        return {
            "size": size, "mode": mode, "workers": workers, "job_s": round(elapsed, 1),
            "fit_s": summary["timings"].get("fit_s"), "inference_s": summary["timings"]["inference_s"],
            "split": summary["split"], "accuracy": round(accuracy, 3), "labels_of": predicted,
        }
    finally:
        stop_workers(processes)
        fake.stop()
        redis.flushdb()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="2000,4000")
    parser.add_argument("--labels", type=int, default=40)
    parser.add_argument("--modes", default="frozen,finetune")
    parser.add_argument("--model", default="minilm-l6")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--chunk", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--min-steps", type=int, default=100)
    parser.add_argument("--redis", default=os.environ.get("AL_BENCH_REDIS_URL", "redis://127.0.0.1:6379/12"))
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    data = ag_news(max(sizes))
    rows = []
    for mode in args.modes.split(","):
        for size in sizes:
            pair = [run_once(size, args.labels, mode, n, args, data) for n in (1, 2)]
            one, two = pair
            differ = sum(one["labels_of"].get(t) != label for t, label in two["labels_of"].items())
            for row in pair:
                row["labels_differ"] = differ
                print({k: v for k, v in row.items() if k != "labels_of"}, flush=True)
            rows.append((one, two))

    for mode in args.modes.split(","):
        write_section(f"split-pass-{mode}", "\n".join(section(mode, [r for r in rows if r[0]["mode"] == mode], args)))


def section(mode: str, rows: list[tuple[dict, dict]], args) -> list[str]:
    lines = [
        f"## Split scoring pass over rq workers, {mode} (split-pass-{mode})",
        "",
        machine_line(),
        f"One retrain of a project of AG News test texts in the in-process fake Label Studio, {args.labels} "
        f"labels, {args.model} (AL_MAX_LENGTH {args.max_length}), real Redis, `rq worker` processes with 1 torch "
        f"thread each, AL_SPLIT_CHUNK {args.chunk}. {WHAT[mode].format(args=args)} Scoring step = `inference_s` of the "
        "retrain (saving the model for the workers, the chunks, the merge). Accuracy: the version's labels on the "
        "whole unlabeled pool against the gold topics.",
        "",
        "| mode | tasks | scoring, 1 worker | scoring, 2 workers | speed-up | chunks per worker (2 workers) "
        "| fit | accuracy | labels that differ, 1 vs 2 workers |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for one, two in rows:
        chunks = ", ".join(str(v) for v in sorted(two["split"]["by_worker"].values(), reverse=True))
        lines.append(
            f"| {one['mode']} | {one['size']} | {one['inference_s']:.1f} s | {two['inference_s']:.1f} s "
            f"| {one['inference_s'] / two['inference_s']:.2f}x | {chunks} | {one['fit_s']:.1f} s "
            f"| {one['accuracy']:.3f} | {one['labels_differ']} |"
        )
    return lines


if __name__ == "__main__":
    main()
