"""Local processes run as the docker-compose.yml services run them: Redis, `ml-backend` and
`rq worker` here, Label Studio in testkit.real_label_studio, all started and awaited with Process
and wait_http.

The commands and environment are read from docker-compose.yml, so a test or benchmark runs what
the compose services run; only addresses, ports and folders are replaced by local ones.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------- compose file


def compose_services(path: Path = COMPOSE_FILE) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))["services"]


def compose_command(
    service: str, replace: Mapping[str, str] | None = None, path: Path = COMPOSE_FILE
) -> list[str]:
    """The service's command as a list, with the value after each flag in `replace` swapped."""
    command = compose_services(path)[service]["command"]
    command = command.split() if isinstance(command, str) else list(command)
    for flag, value in (replace or {}).items():
        if flag not in command:
            raise KeyError(f"compose service {service!r} has no {flag} in its command {command}")
        command[command.index(flag) + 1] = value
    return command


def compose_environment(service: str, path: Path = COMPOSE_FILE) -> dict[str, str]:
    """The service's environment with ${VAR:-default} reduced to its default."""
    env = compose_services(path)[service].get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: _compose_default(str(value)) for key, value in env.items()}


def _compose_default(value: str) -> str:
    if value.startswith("${") and value.endswith("}"):
        inner = value[2:-1]
        for sep in (":-", "-"):
            if sep in inner:
                return inner.split(sep, 1)[1]
        return os.environ.get(inner, "")
    return value


# ---------------------------------------------------------------- processes


class Process:
    """A child process in its own process group, with its output in a log file."""

    def __init__(
        self, name: str, args: Sequence[str], env: Mapping[str, str], log_dir: Path, cwd: Path | None = None
    ):
        self.name = name
        self.args = [str(a) for a in args]
        self.log_path = Path(log_dir) / f"{name}.log"
        self._log = open(self.log_path, "ab")
        self.popen = subprocess.Popen(
            self.args,
            env=dict(env),
            cwd=cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        self._log.flush()
        text = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM to the process group this process leads, SIGKILL if it lingers."""
        if self.alive():
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(10)
            except ProcessLookupError:
                pass
        self._log.close()


def wait_http(url: str, process: Process, timeout: float, ok=lambda r: r.is_success) -> float:
    """Polls `url` until `ok(response)`; fails early, with the log, if the process died."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if not process.alive():
            raise RuntimeError(
                f"{process.name} exited with {process.popen.returncode}:\n{process.log_tail()}"
            )
        try:
            if ok(httpx.get(url, timeout=2, follow_redirects=True)):
                return time.monotonic() - start
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{process.name} not ready at {url} after {timeout:.0f} s:\n{process.log_tail()}")


# ---------------------------------------------------------------- Redis


def start_redis(work_dir: Path, log_dir: Path) -> tuple[Process, str]:
    """The compose service's redis-server, on a free loopback port with its files in `work_dir`."""
    port = free_port()
    args = compose_command("redis") + ["--port", str(port), "--bind", HOST, "--dir", str(work_dir)]
    process = Process("redis", args, os.environ, log_dir)
    start = time.monotonic()
    while time.monotonic() - start < 20:
        if not process.alive():
            raise RuntimeError(f"redis-server exited:\n{process.log_tail()}")
        with socket.socket() as sock:
            if sock.connect_ex((HOST, port)) == 0:
                return process, f"redis://{HOST}:{port}/0"
        time.sleep(0.1)
    process.stop()
    raise TimeoutError(f"redis-server not listening on {port}")


# ---------------------------------------------------------------- the backend and its worker


def project_executable(name: str) -> str:
    """A console script of the project's environment (the one running these tests)."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        raise FileNotFoundError(
            f"{name} is not installed: run `pip install -e .` in the project's environment"
        )
    return found


class BackendStack:
    """`ml-backend` and `rq worker`, started with the compose services' commands and environment.

    Only what points at the containers is replaced: Label Studio's URL and key, Redis, the
    model folder, the listening address; `settings` adds test settings (AL_* variables).
    """

    def __init__(
        self, work_dir: Path, ls_url: str, api_key: str, redis_url: str, settings: Mapping[str, str]
    ):
        self.work_dir = Path(work_dir)
        self.log_dir = self.work_dir / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.redis_url = redis_url
        env = dict(os.environ)
        env.update(compose_environment("backend"))
        env.update(
            LABEL_STUDIO_URL=ls_url,
            LABEL_STUDIO_API_KEY=api_key,
            REDIS_URL=redis_url,
            MODEL_DIR=str(self.work_dir / "models"),
            HF_HOME=str(self.work_dir / "hf-cache"),
            HF_HUB_OFFLINE="1",
        )
        env.update(settings)
        self.env = env
        self.backend: Process | None = None
        self.worker: Process | None = None
        self.starts = 0

    def start(self) -> float:
        """Starts both; returns the seconds until the backend answered /health."""
        self.starts += 1
        command = compose_command("backend", {"--host": HOST, "--port": str(self.port)})
        command[0] = project_executable(command[0])
        self.backend = Process(f"backend-{self.starts}", command, self.env, self.log_dir, cwd=self.work_dir)
        self.worker = self._worker(f"worker-{self.starts}")
        seconds = wait_http(f"{self.url}/health", self.backend, 60)
        self._wait_worker(self.worker)
        return seconds

    def add_worker(self, name: str) -> Process:
        """Another `rq worker` on the same queue, Redis and MODEL_DIR, listening; the caller stops it."""
        worker = self._worker(name)
        self._wait_worker(worker)
        return worker

    def _worker(self, name: str) -> Process:
        command = compose_command("worker", {"--url": self.redis_url})
        command[0] = project_executable(command[0])
        return Process(name, command, self.env, self.log_dir, cwd=self.work_dir)

    @staticmethod
    def _wait_worker(worker: Process, timeout: float = 60) -> None:
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if not worker.alive():
                raise RuntimeError(f"rq worker exited:\n{worker.log_tail()}")
            if "Listening on" in worker.log_path.read_text(errors="replace"):
                return
            time.sleep(0.2)
        raise TimeoutError(f"rq worker not listening after {timeout} s:\n{worker.log_tail()}")

    def stop(self) -> None:
        for process in (self.backend, self.worker):
            if process is not None:
                process.stop()

    def restart(self) -> float:
        self.stop()
        return self.start()

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name} ---\n{p.log_tail(60)}" for p in (self.backend, self.worker) if p is not None
        )
