"""Backend latency and live-loop figures, written into BENCHMARKS.md (sections backend-http,
backend-predict, backend-loop and backend-frozen, each as soon as its part ends).

  python -m benchmarks.bench_backend [--parts http,predict,loop,frozen] [--pool 10000] [--labels 500]

http:    /webhook reply p50/p99 (embedded, and Redis when reachable) and /health + /setup p99,
         from the shipped `ml-backend` server (a new connection per call, as Label Studio makes).
predict: /predict of 100 tasks from a warm --predict-model version (p50/p95), and one of --big
         tasks, in full precision, int8 and bf16 (AL_INFERENCE_PRECISION), with the default
         inference batch size and with 64.
loop:    annotation -> refreshed ordering on a pool of --pool tasks with --labels labels and
         minilm-l3: webhook, retrain, UPS scoring, promote, publish every score, PATCH the
         project; time split by step. By default the steady-state round (the score cache already
         holds a score for every task, as after the full-scoring first iterations); --full also
         times a full-scoring first iteration. Label Studio is the fake one
         from tests/integration (in-process), so publishing to a real server is not in this figure.
frozen:  the same with the frozen head the live default serves below 40 labels (on cached encoder
         vectors, --frozen-labels labels, --loop-model encoder): the first retrain, which embeds
         the whole pool once, then two single annotations, each re-scoring every task.
Texts: AG News test set from ../shared/data (repeated with a marker when the pool needs more).
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
import threading
import time
from pathlib import Path

import httpx
from werkzeug.serving import make_server

from benchmarks.report import machine_line, write_section
from ml_backend.app import create_app
from testkit.fake_label_studio import CLS_CONFIG, TOKEN, FakeLabelStudio

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("AL_SHARED_DATA", ROOT.parent / "shared" / "data"))
MODELS = Path(os.environ.get("AL_MODELS_DIR", Path.home() / ".cache" / "al-models"))
AG_CONFIG = """<View><Text name="text" value="$text"/>
<Choices name="topic" toName="text" choice="single">
<Choice value="World"/><Choice value="Sports"/><Choice value="Business"/><Choice value="Sci/Tech"/></Choices></View>"""
AG_LABELS = ["World", "Sports", "Business", "Sci/Tech"]
WEBHOOK_SAMPLE = (
    ROOT.parent
    / "shared"
    / "label-studio"
    / "samples"
    / "05_annotation_webhook"
    / "req_026_POST_webhook.json"
)


def ag_news(n: int) -> list[tuple[str, str]]:
    rows = []
    with open(DATA / "agnews" / "test.csv", encoding="utf-8") as handle:
        for label, title, body in csv.reader(handle):
            rows.append((f"{title}. {body}", AG_LABELS[int(label) - 1]))
    out = []
    while len(out) < n:
        copy = len(out) // len(rows)
        out += [(f"{t} ({copy})" if copy else t, y) for t, y in rows[: n - len(out)]]
    return out


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


class Served:
    """create_app(settings) behind a real HTTP server in a thread."""

    def __init__(self, settings):
        self.app = create_app(settings)
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


def settings_for(url, model_dir, model, **overrides):
    from ml_backend.settings import Settings

    values = dict(
        label_studio_url=url,
        label_studio_api_key=TOKEN,
        model_dir=str(model_dir),
        acquisition_model=str(model),
    )
    values.update(overrides)
    return Settings(**values)


def timed_calls(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServedByCli:
    """The shipped server: `ml-backend` (gunicorn, one process, threads) as a subprocess."""

    def __init__(self, env: dict[str, str]):
        import subprocess
        import sys

        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("AL_") and k != "REDIS_URL"}
        full_env.update(env, AL_PORT=str(port), LOG_LEVEL="WARNING")
        self.process = subprocess.Popen(
            [str(Path(sys.executable).with_name("ml-backend"))],
            env=full_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/health", timeout=1).is_success:
                    return
            except httpx.HTTPError:
                time.sleep(0.3)
        self.close()
        raise RuntimeError("ml-backend did not start within 120 s")

    def close(self):
        self.process.terminate()
        self.process.wait(timeout=60)


def bench_http(tmp: Path, n: int) -> list[str]:
    import json

    body = (
        json.loads(WEBHOOK_SAMPLE.read_text())["body"]
        if WEBHOOK_SAMPLE.exists()
        else {"action": "ANNOTATION_CREATED", "project": {"id": 1, "label_config": CLS_CONFIG}}
    )
    setup = {
        "project": "1.1795318993",
        "schema": CLS_CONFIG,
        "hostname": "http://127.0.0.1:8089",
        "access_token": "x",
        "extra_params": None,
    }
    lines = [
        "| mode | /webhook p50 | /webhook p99 | /health + /setup p50 | /health + /setup p99 | calls |",
        "|---|---|---|---|---|---|",
    ]
    modes = [("embedded", {})]
    try:
        from redis import Redis

        Redis.from_url("redis://127.0.0.1:6379/14").ping()
        modes.append(("redis + rq", {"REDIS_URL": "redis://127.0.0.1:6379/14", "AL_RQ_QUEUE": "al-bench"}))
    except Exception:  # noqa: BLE001 - no Redis here: embedded figures only
        pass
    for mode, extra in modes:
        if extra:
            Redis.from_url(extra["REDIS_URL"]).flushdb()
        # a long retrain delay keeps the one queued retrain pending: the burst path (merge) is measured
        env = {"MODEL_DIR": str(tmp / f"http-{mode[:5]}"), "AL_RETRAIN_DELAY": "3600", **extra}
        served = ServedByCli(env)
        try:
            url = served.url
            webhook = timed_calls(
                lambda url=url: httpx.post(url + "/webhook", json=body, timeout=5).raise_for_status(), n
            )

            def health_setup(url=url):
                httpx.get(url + "/health", timeout=1).raise_for_status()
                httpx.post(url + "/setup", json=setup, timeout=3).raise_for_status()

            hs = timed_calls(health_setup, n)
        finally:
            served.close()
            if extra:
                Redis.from_url(extra["REDIS_URL"]).flushdb()
        lines.append(
            f"| {mode} | {percentile(webhook, 50):.1f} ms | {percentile(webhook, 99):.1f} ms | "
            f"{percentile(hs, 50):.1f} ms | {percentile(hs, 99):.1f} ms | {n} |"
        )
    return lines


def bench_predict(tmp: Path, repeats: int, model: str, big: int, threads: int) -> list[str]:
    from ml_backend.jobs.run import run_retrain
    from ml_backend.jobs.status import MemoryState

    fake = FakeLabelStudio()
    url = fake.start()
    settings = settings_for(
        url, tmp / "predict", MODELS / model, retrain_delay=0, epochs=1, torch_threads=threads
    )
    data = ag_news(120 + 100 + big)
    fake.add_project(1, AG_CONFIG)
    ids = fake.add_tasks(1, [t for t, _ in data[:120]])  # the version: 100 labels, a pool of 20
    for task_id, (_, label) in zip(ids[:100], data[:100], strict=True):
        fake.choose(task_id, label, from_name="topic")
    run_retrain(1, settings, MemoryState())
    fake.stop()
    tasks = [{"id": 10_000 + i, "data": {"text": t}} for i, (t, _) in enumerate(data[120:])]
    lines = ["| request | p50 | p95 | calls |", "|---|---|---|---|"]
    from ml_backend.predictor import inference_precision

    default = inference_precision("auto", "cpu")
    default_batch = settings.eval_batch_size
    for precision, batch_size in [(p, b) for p in ("fp32", "int8", "bf16") for b in (default_batch, 64)]:
        served = Served(settings.model_copy(update={"inference_precision": precision, "eval_batch_size": batch_size}))
        label = (
            f"warm {model}, AL_INFERENCE_PRECISION={precision}"
            + (" (auto here)" if precision == default else "")
            + f", AL_EVAL_BATCH_SIZE={batch_size}"
            + (" (default)" if batch_size == default_batch else "")
        )
        try:

            def predict(batch, url=served.url):
                body = {"project": "1.1", "tasks": batch, "label_config": AG_CONFIG}
                answer = httpx.post(url + "/predict", json=body, timeout=100)
                answer.raise_for_status()
                assert len(answer.json()["results"]) == len(batch)

            predict(tasks[:10])  # loads the promoted version: the model is warm from here on
            hundred = timed_calls(lambda predict=predict: predict(tasks[:100]), repeats)
            start = time.perf_counter()
            predict(tasks[100 : 100 + big])
            big_s = time.perf_counter() - start
        finally:
            served.close()
        lines += [
            f"| /predict 100 tasks, {label} (AG News, 60 tokens on average) "
            f"| {percentile(hundred, 50):.0f} ms | {percentile(hundred, 95):.0f} ms | {repeats} |",
            f"| /predict {big:,} tasks in one request, {label} (Label Studio allows 100 s) | {big_s:.1f} s | | 1 |",
        ]
    return lines


LOOP_HEADER = [
    "| embeddings | batches | round | labels | pool | re-scored | annotation -> ordering | webhook reply | read LS s | fit s "
    "| score s | save+promote s | build s | publish subset s | PATCH s | publish rest s "
    "| /health+/setup during it, p99 / max | held-out macro F1 | accuracy | rarest-class recall |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
]
# (AL_FREEZE_EMBEDDINGS, AL_GROUP_BY_LENGTH) of each loop run; the first is the default
LOOP_VARIANTS = {
    "default": [(True, True)],
    "all": [(True, True), (True, False), (False, False)],
}


def held_out_quality(settings, project: int, rows: list[tuple[str, str]]) -> str:
    """The promoted version on unlabeled pool rows (never trained on): "macro F1 / accuracy / recall of
    the rows' rarest class", three table cells."""
    from collections import Counter

    from al_core.data import Example
    from al_core.models import load_model
    from ml_backend.storage.store import VersionStore

    store = VersionStore(settings.model_dir)
    model = load_model(store.version_dir(project, store.current_version(project)))
    predicted = model.predict([Example(id=str(i), text=t) for i, (t, _) in enumerate(rows)])
    report = model.task_kind.report([y for _, y in rows], predicted, model.labels)
    rarest = min(Counter(y for _, y in rows).items(), key=lambda item: item[1])[0]
    return (
        f"{report['value']:.3f} | {report['figures']['accuracy']:.3f} | "
        f"{report['per_label'][rarest]['recall']:.3f} ({rarest})"
    )


def bench_loop(
    tmp: Path, pool: int, labels: int, full: bool, threads: int, freeze: bool, group: bool
) -> list[str]:
    fake = FakeLabelStudio()
    url = fake.start()
    settings = settings_for(
        url,
        tmp / f"loop-{freeze}-{group}",
        MODELS / "minilm-l3",
        retrain_delay=0,
        torch_threads=threads,
        ups_full_first=1 if full else 0,
        ups_full_every=0,
        freeze_embeddings=freeze,
        group_by_length=group,
    )
    data = ag_news(pool + labels + 1)
    fake.add_project(1, AG_CONFIG)
    ids = fake.add_tasks(1, [t for t, _ in data])
    rounds = [range(labels), range(labels, labels + 1)] if full else [range(labels + 1)]
    if not full:
        # the steady state: every pool task holds a score from an earlier round (as after the
        # full-scoring first iterations), so this round re-scores the UPS subset only
        import numpy as np

        from al_core.ups import CachedScore
        from ml_backend.storage.layout import ModelDirLayout
        from ml_backend.storage.store import FileScoreCache

        rng = np.random.default_rng(0)
        cache = FileScoreCache(ModelDirLayout(settings.model_dir).scores_file(1))
        cache.set_many({str(i): CachedScore(float(rng.random() * 0.75), "1-v0-earlier", 0) for i in ids})
    served = Served(settings)
    rows = []
    try:
        for round_no, new_labels in enumerate(rounds):
            total, reply_ms, during, last = annotate_and_wait(served, fake, ids, data, new_labels)
            t = last["timings"]
            kind = "full scoring (first iteration)" if full and round_no == 0 else "UPS round (cache filled)"
            quality = held_out_quality(settings, 1, data[labels + 1 : labels + 1001])
            rows.append(
                f"| {'fixed' if freeze else 'trained'} | {'by length' if group else 'random'} | {kind} | {last['n_labeled']} | {last['n_pool']:,} | {last['n_scored']:,} | {total:.1f} s | "
                f"{reply_ms:.0f} ms | {t['read_s']:.1f} | {t['fit_s']:.1f} | {t['inference_s']:.1f} | "
                f"{t['save_s']:.1f} | {t['predictions_s']:.1f} | {t.get('publish_s', 0):.1f} | {t.get('activate_s', 0):.2f} | "
                f"{t.get('publish_rest_s', 0):.1f} | "
                f"{percentile(during, 99):.0f} / {max(during):.0f} ms | {quality} |"
            )
    finally:
        served.close()
        fake.stop()
    return rows


def annotate_and_wait(served, fake, ids, data, new_labels):
    """Annotates `new_labels` rows, posts the webhook, waits for the new version to be active
    while calling /health + /setup as Label Studio does; (seconds, webhook ms, /health+/setup ms
    during the retrain, the retrain's summary)."""
    backend = served.app.extensions["al_backend"]
    for i in new_labels:
        fake.choose(ids[i], data[i][1], from_name="topic")
    before = fake.projects[1]["model_version"]
    start = time.perf_counter()
    reply = httpx.post(
        served.url + "/webhook",
        timeout=5,
        json={
            "action": "ANNOTATION_CREATED",
            "annotation": {"id": ids[new_labels[-1]]},
            "project": {"id": 1, "label_config": AG_CONFIG},
        },
    )
    reply_ms = (time.perf_counter() - start) * 1000
    reply.raise_for_status()
    during: list[float] = []  # Label Studio keeps calling /health + /setup while we train
    while fake.projects[1]["model_version"] == before:
        status = backend.status("1")["projects"]["1"]
        if status["last_error"]:
            raise RuntimeError(status["last_error"])
        call = time.perf_counter()
        httpx.get(served.url + "/health", timeout=1).raise_for_status()
        httpx.post(served.url + "/setup", json={"project": "1.1", "schema": AG_CONFIG}, timeout=3)
        during.append((time.perf_counter() - call) * 1000)
        time.sleep(0.2)
    total = time.perf_counter() - start
    backend.runner.join(timeout=600)
    return total, reply_ms, during, backend.status("1")["projects"]["1"]["last_round"]


FROZEN_HEADER = [
    "| round | labels | pool | re-scored | annotation -> ordering | read LS s | fit s (+ estimate) | score s "
    "| save s | build s | publish first s | PATCH s | publish rest s | quality estimate | held-out macro F1 "
    "| accuracy | rarest-class recall |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
]


def bench_frozen_loop(tmp: Path, pool: int, labels: int, threads: int, model: str) -> list[str]:
    """The frozen head serving (AL_ACQUISITION_MODE=frozen, what auto serves below its threshold): the first retrain
    embeds the whole pool once; the next ones read every vector from the cache."""
    fake = FakeLabelStudio()
    url = fake.start()
    settings = settings_for(
        url, tmp / "loop-frozen", MODELS / model, retrain_delay=0, torch_threads=threads, acquisition_mode="frozen"
    )
    data = ag_news(pool + labels + 2)
    fake.add_project(1, AG_CONFIG)
    ids = fake.add_tasks(1, [t for t, _ in data])
    served = Served(settings)
    rows = []
    try:
        rounds = [("first: embeds the pool", range(labels)), ("next annotation", range(labels, labels + 1)),
                  ("next annotation", range(labels + 1, labels + 2))]
        for name, new_labels in rounds:
            total, _, _, last = annotate_and_wait(served, fake, ids, data, new_labels)
            t = last["timings"]
            held_out = held_out_quality(settings, 1, data[labels + 2 : labels + 1002])
            quality = last["quality"]["value"]
            rows.append(
                f"| {name} ({last['acquisition_mode']}) | {last['n_labeled']} | {last['n_pool']:,} | {last['n_scored']:,} "
                f"| {total:.1f} s | {t['read_s']:.1f} | {t['fit_s']:.2f} | {t['inference_s']:.1f} | {t['save_s']:.2f} "
                f"| {t['predictions_s']:.1f} | {t.get('publish_s', 0):.1f} | {t.get('activate_s', 0):.2f} "
                f"| {t.get('publish_rest_s', 0):.1f} | {quality if quality is None else f'{quality:.3f}'} | {held_out} |"
            )
    finally:
        served.close()
        fake.stop()
    return rows


def main(argv=None) -> None:
    import logging

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--parts", default="http,predict,loop")
    parser.add_argument("--pool", type=int, default=10_000)
    parser.add_argument("--labels", type=int, default=500)
    parser.add_argument("--frozen-labels", type=int, default=60, help="frozen loop: labels before its rounds")
    parser.add_argument("--loop-model", default="minilm-l3", help="frozen loop: the encoder")
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--predict-model", default="minilm-l6")
    parser.add_argument("--big", type=int, default=2000, help="tasks in the one large /predict")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (AL_TORCH_THREADS)")
    parser.add_argument(
        "--full", action="store_true", help="loop: also time the full-scoring first iteration"
    )
    parser.add_argument(
        "--loop-variants",
        choices=sorted(LOOP_VARIANTS),
        default="all",
        help="loop: the default settings only, or side by side with random batches (AL_GROUP_BY_LENGTH=false) "
        "and with trained embeddings as well (AL_FREEZE_EMBEDDINGS=false)",
    )
    args = parser.parse_args(argv)
    parts = set(args.parts.split(","))

    def write(name: str, title: str, lines: list[str]) -> None:
        load = f"Load average (1 min) after the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (the machine is shared)."
        text = "\n".join([f"## {title}", "", machine_line() + load, "", *lines])
        write_section(name, text)
        print(text, flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if "http" in parts:
            write(
                "backend-http",
                "Backend: HTTP replies (goals: /webhook p99 < 50 ms, /health + /setup < 20 ms)",
                bench_http(tmp, args.calls),
            )
        if "predict" in parts:
            write(
                "backend-predict",
                f"Backend: /predict from a warm model, {args.threads} torch thread(s) (goal: 100 tasks p95 < 200 ms)",
                bench_predict(tmp, args.repeats, args.predict_model, args.big, args.threads),
            )
        if "loop" in parts:
            write(
                f"backend-loop-t{args.threads}",
                f"Backend: annotation to refreshed ordering, {args.threads} torch thread(s) (goal <= 60 s)",
                [
                    f"{args.pool:,}-task pool, {args.labels} labels, minilm-l3, torch on {args.threads} thread(s), 3 epochs, "
                    "max_length 128, AL_RETRAIN_DELAY 0 (the default adds 1 s), UPS gamma 0.1, T 0.01; "
                    "Label Studio is the in-process fake (publishing to a real server is measured end to end).",
                    "",
                    *LOOP_HEADER,
                    *[
                        row
                        for freeze, group in LOOP_VARIANTS[args.loop_variants]
                        for row in bench_loop(tmp, args.pool, args.labels, args.full, args.threads, freeze, group)
                    ],
                ],
            )


        if "frozen" in parts:
            write(
                f"backend-frozen-t{args.threads}",
                f"Backend: annotation to refreshed ordering with the frozen head, {args.threads} torch thread(s) "
                "(goal <= 5 s after the one-time embedding pass)",
                [
                    f"{args.pool:,}-task AG News pool, {args.frozen_labels} labels, {args.loop_model} encoder, "
                    f"torch on {args.threads} thread(s), AL_ACQUISITION_MODE=frozen (what auto serves below 40 "
                    "labels: every task re-scored), AL_QUERY_WINDOW=200 (the 200 lowest scores published), AL_RETRAIN_DELAY 0 (the default "
                    "adds 1 s); Label Studio is the in-process fake. Held-out macro F1, accuracy and the rarest class's recall on 1,000 unlabeled pool texts.",
                    "",
                    *FROZEN_HEADER,
                    *bench_frozen_loop(tmp, args.pool, args.frozen_labels, args.threads, args.loop_model),
                ],
            )


if __name__ == "__main__":
    main()
