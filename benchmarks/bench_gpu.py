"""The backend's retrains on a CUDA GPU with mixed precision, through real `rq worker`s, written into
BENCHMARKS.md (section gpu). On a GPU machine, from the checkout (Redis at 127.0.0.1:6379):

  pip install torch --index-url https://download.pytorch.org/whl/cu128 && pip install -e .   # a CUDA build of torch
  AL_MODELS_DIR=~/.cache/al-models ../shared/models/fetch-models.sh minilm-l6 mpnet-base   # if not there yet
  python -m benchmarks.bench_gpu --models ~/.cache/al-models        # sized for at most 8 min on an H200

  python -m benchmarks.bench_gpu --tiny --out /tmp/gpu-tiny.md      # the same steps on CPU, a tiny random BERT

Every part runs the code path the backend runs: a project of AG News test texts (../shared/data) in the
in-process fake Label Studio, `--labels` of them annotated with their gold topic, one retrain enqueued by
`enqueue_retrain` with settings from ml_backend.settings (the device unset: cuda with fp16 autocast and a
GradScaler when there is one) and run by `--workers` `rq worker --worker-class ml_backend.worker.Worker`
processes on real Redis (`--redis`). `--heldout` texts are kept out of every project; a version's quality
is the accuracy and macro F1 of its /predict answers (ml_backend.predictor) on them.

  finetune  AL_ACQUISITION_MODE=finetune on --labels labels, for each of --finetune-models; the rest of
            AG News (but the held-out texts) is the pool, scored whole (AL_UPS_MODE full).
  frozen    AL_ACQUISITION_MODE=frozen on a project of --labels labeled and --pool-tasks distinct unlabeled
            tasks (AG News texts repeated with a suffix): the first retrain embeds the whole pool, split in
            AL_SPLIT_CHUNK --chunk chunks.
  split     a fine-tuned full-scoring retrain (AL_UPS_MODE full) of --pool-tasks tasks, split the same way.
  teacher   plasm-export (its CLI, a subprocess) on the finetune project exported as Label Studio JSON:
            --teacher trained on the gold, the pool pseudo-labeled (--teacher-filter); its quality is the
            pseudo-labels' against the pool's gold.

Each part stops at its --budgets seconds (a retrain's workers killed, the row says so) and the run goes on:
60 + 60 + 100 + 100 + 70 s bound the parts to 6.5 min, leaving the rest of 8 min for starting the workers,
filling the fake Label Studio and the held-out predictions.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.report import BENCHMARKS_MD, machine_line, write_section
from benchmarks.rq_retrain import run_retrain, start_workers, stop_workers
from ml_backend.settings import Settings
from testkit.fake_label_studio import FakeLabelStudio, backend_values
from testkit.gold import SHARED_DATA, ag_news

ROOT = Path(__file__).resolve().parent.parent
MODELS = Path(os.environ.get("AL_MODELS_DIR", Path.home() / ".cache" / "al-models"))
QUEUE = "al-bench-gpu"
PARTS = ("finetune", "frozen", "split", "teacher")
FULL = dict(labels=1000, heldout=2000, finetune_pool=0, pool_tasks=100_000, chunk=10_000, workers=2)
TINY = dict(labels=40, heldout=100, finetune_pool=200, pool_tasks=300, chunk=100, workers=1)
FULL_BUDGETS = "finetune=60,frozen=100,split=100,teacher=70"
# the live fine-tuning schedule (the engine's defaults); --tiny keeps backend_values' fast one
LIVE_SCHEDULE = dict(epochs=3, min_steps=100, batch_size=16, max_length=128, torch_threads=0)


def device_line() -> tuple[str, bool]:
    import torch

    from al_core.training import mixed_precision_on, resolve_device

    training = Settings(model_dir="unused").training_config()
    device = resolve_device(training.device)
    amp = mixed_precision_on(device, training.mixed_precision)
    if device.type != "cuda":
        return f"Device: cpu (torch {torch.__version__}, no CUDA device).", amp
    props = torch.cuda.get_device_properties(device)
    return (
        f"Device: {torch.cuda.get_device_name(device)}, {props.total_memory / 2**30:.0f} GiB, CUDA "
        f"{torch.version.cuda}, torch {torch.__version__}; training in fp16 autocast with a GradScaler, "
        f"scoring in fp16 autocast: {'yes' if amp else 'no'}.",
        amp,
    )


class Run:
    """The fake Label Studio, Redis, the data and the workers, shared by the parts."""

    def __init__(self, args, work: Path):
        from redis import Redis

        self.args, self.work = args, work
        self.redis = Redis.from_url(args.redis)
        self.fake = FakeLabelStudio()
        self.url = self.fake.start()
        gold = ag_news(SHARED_DATA, 10**6)
        self.config, self.classes = gold.label_config, [t.label for t in gold.tasks]
        self.classes = sorted(set(self.classes))
        tasks = [(t.text, t.label) for t in gold.tasks]
        random.Random(0).shuffle(tasks)
        self.heldout = tasks[: args.heldout]
        self.labeled = tasks[args.heldout : args.heldout + args.labels]
        self.rest = tasks[args.heldout + args.labels :]
        self.workers: list[subprocess.Popen] = []
        self.next_project = 1
        self.logs = work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)

    def settings(self, part: str, model: Path, **values) -> Settings:
        schedule = {} if self.args.tiny else LIVE_SCHEDULE
        return Settings(**backend_values(
            self.url, self.work / part / "store", model, redis_url=self.args.redis, rq_queue=QUEUE,
            ups_mode="full", split_chunk=self.args.chunk, min_labels=2,
            ls_page_size=10_000, job_timeout=max(self.args.budgets.values()) + 60, **{**schedule, **values},
        ))

    def start_workers(self, settings: Settings) -> None:
        if not self.workers:
            self.workers = start_workers(settings, self.redis, self.args.workers, self.logs)

    def stop_workers(self, kill: bool = False) -> None:
        stop_workers(self.workers, kill=kill)
        self.workers = []

    def project(self, texts: list[tuple[str, str]]) -> tuple[int, dict[int, str]]:
        """A project of the labeled texts (annotated) and `texts`; returns its id and each task's gold."""
        project, self.next_project = self.next_project, self.next_project + 1
        self.fake.add_project(project, self.config)
        rows = self.labeled + texts
        ids = self.fake.add_tasks(project, [t for t, _ in rows])
        for task_id, (_, label) in zip(ids[: len(self.labeled)], self.labeled, strict=True):
            self.fake.choose(task_id, label, from_name="topic")
        return project, {task_id: label for task_id, (_, label) in zip(ids, rows, strict=True)}

    def pool_texts(self, count: int) -> list[tuple[str, str]]:
        """`count` distinct texts: the unlabeled ones, then again with a suffix, as often as needed."""
        out: list[tuple[str, str]] = []
        while len(out) < count:
            copy = len(out) // len(self.rest)
            out += [(f"{t} (copy {copy})" if copy else t, y) for t, y in self.rest[: count - len(out)]]
        return out

    def heldout_quality(self, settings: Settings, project: int, version: str) -> dict:
        """Accuracy and macro F1 of the version's /predict answers on the held-out texts."""
        from ml_backend.predictor import Predictor
        from ml_backend.storage.store import VersionStore

        store = VersionStore(settings.model_dir)
        folder = store.version_dir(project, version)
        predictor = Predictor(folder, store.meta(project, version), settings)
        tasks = [{"id": i, "data": {"text": t}} for i, (t, _) in enumerate(self.heldout)]
        answers = predictor.predict(tasks)
        predicted = [a["result"][0]["value"]["choices"][0] if a["result"] else "" for a in answers]
        del predictor
        _free_gpu()
        return scores([y for _, y in self.heldout], predicted, self.classes)

    def model_name(self, name: str) -> str:
        return f"tiny-bert (as {name})" if self.args.tiny else name

    def retrain_part(self, name: str, model: Path, project: int, settings: Settings) -> dict:
        self.start_workers(settings)
        summary, elapsed = run_retrain(settings, self.redis, project, timeout=self.args.budgets[name])
        row = {"part": name, "model": self.model_name(model.name), "job_s": elapsed, "status": summary["status"]}
        if summary["status"] != "trained":
            self.stop_workers(kill=summary["status"] == "over budget")
            return {**row, "error": summary.get("error")}
        timings = summary["timings"]
        split = summary.get("split") or {}
        return {
            **row, "version": summary["version"], "job": summary["job"], "labels": summary["n_labeled"],
            "scored": summary["n_scored"], "fit_s": timings.get("fit_s"), "score_s": timings.get("inference_s"),
            "chunks": split.get("by_worker", {}), "model_dir": settings.model_dir,
            **self.heldout_quality(settings, project, summary["version"]),
        }


def scores(gold: list[str], predicted: list[str], classes: list[str]) -> dict:
    from sklearn.metrics import accuracy_score, f1_score

    return {
        "accuracy": float(accuracy_score(gold, predicted)),
        "macro_f1": float(f1_score(gold, predicted, labels=classes, average="macro", zero_division=0)),
        "n_quality": len(gold),
    }


def _free_gpu() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def part_finetune(run: Run, model: Path) -> dict:
    pool = run.rest[: run.args.finetune_pool] if run.args.finetune_pool else run.rest
    project, gold = run.project(pool)
    settings = run.settings(f"finetune-{model.name}", model, acquisition_mode="finetune")
    row = run.retrain_part("finetune", model, project, settings)
    run.finetune_project = project, gold
    return row


def part_pool(run: Run, model: Path, mode: str) -> dict:
    project, gold = run.project(run.pool_texts(run.args.pool_tasks))
    name = {"frozen": "frozen", "finetune": "split"}[mode]
    settings = run.settings(name, model, acquisition_mode=mode)
    try:
        return run.retrain_part(name, model, project, settings)
    finally:
        run.fake.delete_tasks(list(gold))


def part_teacher(run: Run, teacher: Path) -> dict:
    """plasm-export on the finetune project's Label Studio JSON export."""
    project, truth = getattr(run, "finetune_project", None) or run.project(
        run.rest[: run.args.finetune_pool] if run.args.finetune_pool else run.rest
    )
    folder = run.work / "teacher"
    folder.mkdir(parents=True, exist_ok=True)
    _, export = run.fake.export(project, {"download_all_tasks": ["true"]})
    (folder / "export.json").write_text(json.dumps(export), encoding="utf-8")
    (folder / "config.xml").write_text(run.config, encoding="utf-8")
    schedule = [] if run.args.tiny else ["--epochs", "3", "--min-steps", "100", "--batch-size", "16"]
    max_length = "32" if run.args.tiny else "128"
    command = [
        sys.executable, "-m", "plasm_export.cli", "--export", str(folder / "export.json"),
        "--label-config", str(folder / "config.xml"), "--teacher", str(teacher), "--filter", run.args.teacher_filter,
        "--out", str(folder / "out"), "--work-dir", str(folder / "work"), "--format", "jsonl", "--no-progress",
        "--max-length", max_length, *schedule,
    ]
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    if run.args.tiny:
        env.update(OMP_NUM_THREADS="1")
        command += ["--epochs", "1", "--min-steps", "0", "--batch-size", "8"]
    row = {"part": "teacher", "model": run.model_name(teacher.name)}
    started = time.perf_counter()
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=run.args.budgets["teacher"])
    except subprocess.TimeoutExpired:
        return {**row, "status": "over budget", "job_s": time.perf_counter() - started}
    row["job_s"] = time.perf_counter() - started
    if done.returncode != 0:
        return {**row, "status": "failed", "error": done.stderr.strip().splitlines()[-1:]}
    report = json.loads((folder / "out" / "report.json").read_text(encoding="utf-8"))
    pseudo = [
        json.loads(line) for line in (folder / "out" / "all_tasks.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    pseudo = [r for r in pseudo if r["source"] == "pseudo"]
    quality = scores([truth[int(r["id"])] for r in pseudo], [r["label"] for r in pseudo], run.classes)
    timings = report["timings_s"]
    return {
        **row, "status": "trained", "labels": report["teacher"]["n_train"], "scored": len(pseudo),
        "fit_s": timings.get("teacher_fit_s"), "score_s": timings.get("pseudo_label_s"),
        "teacher_heldout": report["teacher"]["heldout_score"], **quality,
    }


WHAT = {
    "finetune": "fine-tune retrain, pool scored whole",
    "frozen": "frozen head: first embedding pass of the pool, split",
    "split": "fine-tune, full-scoring pass, split",
    "teacher": "plasm-export teacher: fit on the gold, pseudo-label the pool",
}


def section(rows: list[dict], args, device: str, cuda: bool) -> str:
    sizes = (
        f"{args.labels} labels, {args.heldout} held-out texts, pool parts {args.pool_tasks:,} unlabeled tasks, AL_SPLIT_CHUNK "
        f"{args.chunk}, {args.workers} worker(s)"
    )
    lines = [
        "## The backend on a GPU: rq worker retrains with mixed precision (gpu)",
        "",
        machine_line(),
        device,
        "",
    ]
    if args.tiny or not cuda:
        lines += [
            f"**A {'CPU ' if not cuda else ''}run{' at tiny sizes' if args.tiny else ''}** ({'a random-weight tiny BERT for every model, ' if args.tiny else ''}"
            f"{sizes}): it checks the steps, its figures say nothing about a GPU.",
            "",
        ]
    lines += [
        f"AG News test texts in the in-process fake Label Studio; {sizes}; "
        + ("the tests' fast schedule (1 epoch, max length 32)" if args.tiny else
           "the live schedule (3 epochs, at least 100 steps, batch 16, max length 128)")
        + ". One retrain per row enqueued as the backend enqueues it and run by `rq worker --worker-class "
        "ml_backend.worker.Worker` on real Redis (AL_LS_PAGE_SIZE 10,000: the fake builds each page from the "
        "whole project). Budget per part (s): " + ", ".join(f"{k} {v:.0f}" for k, v in args.budgets.items())
        + ". fit = the retrain's fit_s, scoring = its inference_s (for the "
        "teacher: plasm-export's teacher_fit_s and pseudo_label_s); job = enqueue to finished (teacher: the whole "
        "plasm-export run). Quality: accuracy and macro F1 of the version's /predict answers on the held-out texts "
        "(teacher: its pseudo-labels against the pool's gold).",
        "",
        "| part | what | model | labels | tasks scored | fit | scoring | job | accuracy | macro F1 | quality on "
        "| chunks per worker | version |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|---|",
    ]
    for r in rows:
        if r["status"] != "trained":
            why = f"{r['status']} after {r['job_s']:.0f} s" + (f": {r['error']}" if r.get("error") else "")
            lines.append(f"| {r['part']} | {WHAT[r['part']]} | {r['model']} | {why} |||||||||")
            continue
        chunks = ", ".join(str(v) for v in sorted(r.get("chunks", {}).values(), reverse=True)) or "not split"
        on = "pool's gold" if r["part"] == "teacher" else "held-out"
        lines.append(
            f"| {r['part']} | {WHAT[r['part']]} | {r['model']} | {r['labels']} | {r['scored']:,} | {r['fit_s']:.1f} s "
            f"| {r['score_s']:.1f} s | {r['job_s']:.1f} s | {r['accuracy']:.3f} | {r['macro_f1']:.3f} "
            f"| {on} ({r['n_quality']:,}) | {chunks if r['part'] != 'teacher' else '–'} "
            f"| {r.get('version', '–')} |"
        )
    teacher = [r for r in rows if r["part"] == "teacher" and r["status"] == "trained"]
    if teacher:
        lines += ["", f"The teacher's own held-out accuracy (plasm-export, 20% of the gold): "
                  f"{teacher[0]['teacher_heldout']:.3f}; filter {args.teacher_filter}."]
    return "\n".join(lines)


def parse(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="a tiny random BERT at tiny sizes (CPU, no download)")
    parser.add_argument("--out", type=Path, help="file to write the section into (default: BENCHMARKS.md, "
                        "none with --tiny)")
    parser.add_argument("--models", type=Path, default=MODELS, help="folder of the model folders ($AL_MODELS_DIR)")
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--finetune-models", default="minilm-l6,mpnet-base")
    parser.add_argument("--pool-model", default="minilm-l6", help="the model of the frozen and split parts")
    parser.add_argument("--teacher", default="mpnet-base")
    parser.add_argument("--teacher-filter", default="uncertainty")
    for name, value in FULL.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, help=f"default {value} ({TINY[name]} with --tiny)")
    parser.add_argument("--budgets", help="seconds per part, default finetune=60,frozen=100,split=100,teacher=70 "
                        "(60 each with --tiny) (each fine-tuned model's retrain has the finetune budget)")
    parser.add_argument("--redis", default=os.environ.get("AL_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14"))
    parser.add_argument("--work-dir", type=Path, help="keep the model stores and worker logs here (default: a "
                        "temporary folder, removed)")
    args = parser.parse_args(argv)
    for name, value in (TINY if args.tiny else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.budgets = args.budgets or ("finetune=60,frozen=60,split=60,teacher=60" if args.tiny else FULL_BUDGETS)
    args.budgets = {k: float(v) for k, v in (item.split("=") for item in args.budgets.split(",") if item)}
    if set(PARTS) - set(args.budgets):
        parser.error(f"--budgets needs a number of seconds for each of {', '.join(PARTS)}")
    return args


def main(argv=None) -> int:
    args = parse(argv)
    parts = [p for p in args.parts.split(",") if p]
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise SystemExit(f"unknown part(s) {', '.join(sorted(unknown))}; parts: {', '.join(PARTS)}")
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="bench-gpu-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.tiny:
        from testkit.tiny_models import write_tiny_bert

        # one tiny model folder named as each model it stands for
        names = {*args.finetune_models.split(","), args.pool_model, args.teacher} - {""}
        tiny = {name: write_tiny_bert(work / "tiny-bert" / name) for name in names}
        finetune_models = [tiny[m] for m in args.finetune_models.split(",") if m]
        pool_model, teacher = tiny[args.pool_model], tiny[args.teacher]
    else:
        finetune_models = [args.models / m for m in args.finetune_models.split(",") if m]
        pool_model, teacher = args.models / args.pool_model, args.models / args.teacher
        for folder in dict.fromkeys([*finetune_models, pool_model, teacher]):
            if not (folder / "config.json").is_file():
                print(f"bench_gpu: model folder {folder} missing (install it: AL_MODELS_DIR={args.models} "
                      f"../shared/models/fetch-models.sh {folder.name})", file=sys.stderr)
                return 2
    if not (SHARED_DATA / "agnews" / "test.csv").is_file():
        print(f"bench_gpu: AG News not found at {SHARED_DATA / 'agnews'} ($AL_SHARED_DATA)", file=sys.stderr)
        return 2
    from redis import Redis
    from redis.exceptions import RedisError

    try:
        Redis.from_url(args.redis).ping()
    except RedisError as error:
        print(f"bench_gpu: no Redis at {args.redis}: {error}", file=sys.stderr)
        return 2
    device, cuda = device_line()
    print(device, flush=True)
    run = Run(args, work)
    run.redis.flushdb()
    rows = []
    try:
        if "finetune" in parts:
            rows += [part_finetune(run, model) for model in finetune_models]
            _print(rows[-len(finetune_models):])
        if "frozen" in parts:
            rows.append(part_pool(run, pool_model, "frozen"))
            _print(rows[-1:])
        if "split" in parts:
            rows.append(part_pool(run, pool_model, "finetune"))
            _print(rows[-1:])
        run.stop_workers()
        if "teacher" in parts:
            rows.append(part_teacher(run, teacher))
            _print(rows[-1:])
    finally:
        run.stop_workers(kill=True)
        run.fake.stop()
        run.redis.flushdb()
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    text = section(rows, args, device, cuda)
    print(text)
    out = args.out or (None if args.tiny else BENCHMARKS_MD)
    if out is not None:
        write_section("gpu", text, out)
        print(f"written: section gpu of {out} ({platform.node()})")
    return 0 if all(r["status"] == "trained" for r in rows) else 1


def _print(rows: list[dict]) -> None:
    for row in rows:
        print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)


if __name__ == "__main__":
    sys.exit(main())
