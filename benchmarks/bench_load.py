"""/predict under load: C concurrent clients for N seconds against a real `ml-backend` process
(gunicorn, one process, threads) on loopback, serving a trained version. Section "load" of
BENCHMARKS.md ("load-<folder name>" with --model): requests, throughput, p50/p95/p99 latency
and errors.

  python -m benchmarks.bench_load [--clients 50] [--seconds 20] [--tasks 1] [--model DIR]

Without --model a tiny random-weight BERT is built (the figure then measures the server, not the
model); with --model, a local model folder (e.g. ~/.cache/al-models/minilm-l6) is trained on 8 labels.
Each client keeps one connection open and sends one /predict after another, as Label Studio's
labeling UI does (one task per request by default).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from benchmarks.report import machine_line, write_section
from ml_backend.settings import Settings
from testkit.fake_label_studio import CLS_CONFIG, TEXTS, FakeLabelStudio, backend_values

ROOT = Path(__file__).resolve().parent.parent
ML_BACKEND = Path(sys.executable).with_name("ml-backend")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def train_version(model: Path, store: Path) -> str:
    """One promoted version of project 1, trained in this process against the fake Label Studio."""
    from ml_backend.jobs.run import run_retrain
    from ml_backend.jobs.status import MemoryState

    fake = FakeLabelStudio()
    url = fake.start()
    try:
        fake.add_project(1)
        ids = fake.add_tasks(1, TEXTS[:16])
        for n, task_id in enumerate(ids[:8]):
            fake.choose(task_id, "Positive" if n % 2 else "Negative")
        settings = Settings(**backend_values(url, store, model))
        return run_retrain(1, settings, MemoryState())["version"]
    finally:
        fake.stop()


def start_backend(store: Path, model: Path, threads: int) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AL_")}
    env.update(
        MODEL_DIR=str(store), AL_ACQUISITION_MODEL=str(model), AL_PORT=str(port),
        AL_SERVER_THREADS=str(threads), LOG_LEVEL="WARNING", PYTHONPATH=str(ROOT),
    )
    process = subprocess.Popen(
        [str(ML_BACKEND)], env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return process, port
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("bench_load: ml-backend did not start within 60 s")


def client_loop(port: int, body: bytes, until: float, latencies: list, errors: list) -> None:
    headers = {"Content-Type": "application/json"}
    one_connection = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60, limits=one_connection) as client:
        while time.monotonic() < until:
            started = time.perf_counter()
            try:
                reply = client.post("/predict", content=body, headers=headers)
                if reply.status_code != 200 or b'"model_version"' not in reply.content:
                    errors.append(f"HTTP {reply.status_code}")
                else:
                    latencies.append(time.perf_counter() - started)
            except httpx.HTTPError as error:  # the client opens a new connection for the next one
                errors.append(type(error).__name__)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--tasks", type=int, default=1, help="tasks per /predict request")
    parser.add_argument("--threads", type=int, default=8, help="server threads (AL_SERVER_THREADS)")
    parser.add_argument("--model", type=Path, help="a local model folder (default: a tiny random BERT)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        tmp_path = Path(tmp)
        if args.model:
            model, model_name = args.model, args.model.name
        else:
            from testkit.tiny_models import write_tiny_bert

            model, model_name = write_tiny_bert(tmp_path / "tiny-bert"), "tiny random BERT (1 layer, 32 wide)"
        version = train_version(model, tmp_path / "store")
        process, port = start_backend(tmp_path / "store", model, args.threads)
        try:
            tasks = [{"id": 100 + n, "data": {"text": TEXTS[n % len(TEXTS)]}} for n in range(args.tasks)]
            body = json.dumps({"project": "1.1", "tasks": tasks, "label_config": CLS_CONFIG}).encode()
            client_loop(port, body, time.monotonic() + 5, [], [])  # loads the version once
            latencies: list[float] = []
            errors: list[str] = []
            until = time.monotonic() + args.seconds
            clients = [
                threading.Thread(target=client_loop, args=(port, body, until, latencies, errors))
                for _ in range(args.clients)
            ]
            started = time.monotonic()
            for thread in clients:
                thread.start()
            for thread in clients:
                thread.join()
            elapsed = time.monotonic() - started
            alive = process.poll() is None
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)

    ms = np.array(latencies) * 1000 if latencies else np.zeros(1)
    kinds = {kind: errors.count(kind) for kind in sorted(set(errors))}
    markdown = (
        f"{machine_line()}"
        f"`ml-backend` (gunicorn, 1 process, {args.threads} threads) on loopback, model {model_name}, "
        f"version {version}; {args.clients} clients, each one connection sending /predict of "
        f"{args.tasks} task(s) back to back for {args.seconds:g} s. Clients run on the same machine.\n\n"
        "| requests | errors | throughput (req/s) | p50 (ms) | p95 (ms) | p99 (ms) | max (ms) | server alive |\n"
        "|---|---|---|---|---|---|---|---|\n"
        f"| {len(latencies)} | {len(errors)} {kinds if kinds else ''} | {len(latencies) / elapsed:.1f} | "
        f"{np.percentile(ms, 50):.0f} | {np.percentile(ms, 95):.0f} | {np.percentile(ms, 99):.0f} | "
        f"{ms.max():.0f} | {'yes' if alive else 'NO'} |\n"
    )
    write_section("load" if not args.model else f"load-{args.model.name}", markdown)
    print(markdown)
    return 0 if alive and not errors else 1


if __name__ == "__main__":
    sys.exit(main())
