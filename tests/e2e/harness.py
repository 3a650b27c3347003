"""Real processes for the end-to-end tests: Label Studio 1.23.2, Redis, the backend and an rq worker.

Label Studio lives in its own virtualenv (its pins clash with the project's), kept in a cache
folder between runs together with a migrated template data folder: the first run installs and
migrates (a few minutes), later runs copy the template and start in seconds.

The commands and environment of Label Studio, Redis, the backend and the worker are read from
docker-compose.yml, so these tests run what the compose services run; only addresses, ports
and folders are replaced by local ones.

Cache folder: $AL_E2E_CACHE, default ~/.cache/al-e2e.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import requests
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
LS_VERSION = "1.23.2"
ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "e2e-password-123"
HOST = "127.0.0.1"

# Minting a personal access token needs Django set up with Label Studio's settings;
# it runs inside Label Studio's virtualenv against a stopped server's data folder.
MINT_TOKEN = """
import os, sys
import label_studio
sys.path.insert(0, os.path.dirname(label_studio.__file__))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "core.settings.label_studio")
import django
django.setup()
from jwt_auth.models import LSAPIToken
from users.models import User
print(LSAPIToken.for_user(User.objects.get(email=sys.argv[1])).get_full_jwt())
"""


def cache_dir() -> Path:
    folder = Path(os.environ.get("AL_E2E_CACHE", "~/.cache/al-e2e")).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Serialises installs between test sessions that share the cache folder."""
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


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


def wait_http(url: str, process: Process, timeout: float, ok=lambda r: r.ok) -> float:
    """Polls `url` until `ok(response)`; fails early, with the log, if the process died."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if not process.alive():
            raise RuntimeError(
                f"{process.name} exited with {process.popen.returncode}:\n{process.log_tail()}"
            )
        try:
            if ok(requests.get(url, timeout=2)):
                return time.monotonic() - start
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{process.name} not ready at {url} after {timeout:.0f} s:\n{process.log_tail()}")


# ---------------------------------------------------------------- Label Studio


def ensure_ls_venv(cache: Path | None = None) -> Path:
    """Label Studio's own virtualenv, created on first use and reused afterwards."""
    cache = cache or cache_dir()
    venv = cache / "ls-venv"
    marker = venv / f".label-studio-{LS_VERSION}"
    with file_lock(cache / "ls-venv.lock"):
        if marker.exists():
            return venv
        if not _has_label_studio(venv):
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
            pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
            subprocess.run(pip + ["-U", "pip"], check=True)
            subprocess.run(pip + [f"label-studio=={LS_VERSION}"], check=True)
            if not _has_label_studio(venv):
                raise RuntimeError(f"label-studio=={LS_VERSION} did not install into {venv}")
        marker.touch()
    return venv


def _has_label_studio(venv: Path) -> bool:
    python = venv / "bin" / "python"
    if not python.exists():
        return False
    found = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('label-studio'))"],
        capture_output=True,
        text=True,
    )
    return found.returncode == 0 and found.stdout.strip() == LS_VERSION


def ls_environment(data_dir: Path, port: int) -> dict[str, str]:
    """The compose service's environment, pointed at a local data folder and port."""
    env = dict(os.environ)
    env.update(compose_environment("label-studio"))
    env.update(
        LABEL_STUDIO_BASE_DATA_DIR=str(data_dir),
        LABEL_STUDIO_USERNAME=ADMIN_EMAIL,
        LABEL_STUDIO_PASSWORD=ADMIN_PASSWORD,
        LABEL_STUDIO_HOST=f"http://{HOST}:{port}",
    )
    return env


def ls_command(venv: Path, port: int) -> list[str]:
    command = compose_command(
        "label-studio", {"-p": str(port), "--internal-host": HOST, "--host": f"http://{HOST}:{port}"}
    )
    if command[0] != "label-studio":
        raise ValueError(f"the label-studio service should run label-studio, not {command[0]}")
    return [str(venv / "bin" / "label-studio")] + command[1:]


def start_label_studio(
    venv: Path,
    data_dir: Path,
    log_dir: Path,
    timeout: float = 120.0,
    extra_env: Mapping[str, str] | None = None,
) -> tuple[Process, str, float]:
    port = free_port()
    env = dict(ls_environment(data_dir, port), **(extra_env or {}))
    process = Process("label-studio", ls_command(venv, port), env, log_dir)
    url = f"http://{HOST}:{port}"
    try:
        seconds = wait_http(f"{url}/health", process, timeout)
    except Exception:
        process.stop()
        raise
    return process, url, seconds


def ensure_template(venv: Path, cache: Path | None = None) -> Path:
    """A migrated data folder with the admin user and a personal access token (token.txt)."""
    cache = cache or cache_dir()
    template = cache / f"ls-data-{LS_VERSION}"
    with file_lock(cache / "ls-data.lock"):
        if (template / "token.txt").exists():
            return template
        building = cache / f"ls-data-{LS_VERSION}.building"
        shutil.rmtree(building, ignore_errors=True)
        building.mkdir()
        process, _, _ = start_label_studio(venv, building, building, timeout=600.0)  # runs every migration
        process.stop()
        env = ls_environment(building, 0)
        token = (
            subprocess.run(
                [str(venv / "bin" / "python"), "-c", MINT_TOKEN, ADMIN_EMAIL],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        (building / "label-studio.log").unlink(missing_ok=True)
        (building / "token.txt").write_text(token + "\n")
        shutil.rmtree(template, ignore_errors=True)
        building.rename(template)
    return template


@contextmanager
def postgres_label_studio(venv: Path, work: Path, pg_url: str = "postgresql://postgres@127.0.0.1:5432"):
    """Label Studio on a PostgreSQL database of its own (created here, dropped after): yields
    (process, url, token, database name). The machine's server must accept `pg_url` (trust auth)."""
    name = f"al_ls_{os.getpid()}_{int(time.time())}"
    psql = ["psql", pg_url + "/postgres", "-q", "-v", "ON_ERROR_STOP=1", "-c"]
    subprocess.run(psql + [f"CREATE DATABASE {name}"], check=True, capture_output=True)
    user, host_port = pg_url.split("//", 1)[1].split("@", 1)
    host, port = host_port.split(":")
    env = {
        "DJANGO_DB": "default",
        "POSTGRE_NAME": name,
        "POSTGRE_USER": user,
        "POSTGRE_PASSWORD": "",
        "POSTGRE_HOST": host,
        "POSTGRE_PORT": port,
    }
    data = work / "ls-data"
    data.mkdir(parents=True, exist_ok=True)
    process = None
    try:
        # as for the template: a first start runs the migrations and makes the admin user, the token
        # is minted while Label Studio is stopped, then it starts for good
        process, _, _ = start_label_studio(venv, data, work, timeout=900.0, extra_env=env)
        process.stop()
        minted = subprocess.run(
            [str(venv / "bin" / "python"), "-c", MINT_TOKEN, ADMIN_EMAIL],
            env=dict(ls_environment(data, 0), **env),
            capture_output=True,
            text=True,
            check=True,
        )
        process, url, _ = start_label_studio(venv, data, work, timeout=300.0, extra_env=env)
        yield process, url, minted.stdout.strip().splitlines()[-1], name
    finally:
        if process is not None:
            process.stop()
        subprocess.run(psql + [f"DROP DATABASE IF EXISTS {name}"], capture_output=True)


def postgres_size(name: str, pg_url: str = "postgresql://postgres@127.0.0.1:5432") -> int:
    """Bytes the database takes on disk."""
    answer = subprocess.run(
        ["psql", pg_url + "/postgres", "-tA", "-c", f"SELECT pg_database_size('{name}')"],
        check=True, capture_output=True, text=True,
    )
    return int(answer.stdout.strip())


def copy_template(template: Path, target: Path) -> str:
    """Copies the template data folder to `target`; returns the access token stored with it."""
    shutil.copytree(template, target)
    return (target / "token.txt").read_text().strip()


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
