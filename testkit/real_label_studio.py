"""A real Label Studio 1.23.2 for the end-to-end tests and the benchmarks.

Label Studio lives in its own virtualenv (its pins clash with the project's), kept in a cache
folder between runs together with a migrated template data folder: the first run installs and
migrates (a few minutes), later runs copy the template and start in seconds. Its command and
environment are those of the docker-compose.yml service (testkit.processes), with local
addresses, ports and folders.

Cache folder: $AL_E2E_CACHE, default ~/.cache/al-e2e.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from testkit.processes import HOST, Process, compose_command, compose_environment, free_port, wait_http

LS_VERSION = "1.23.2"
# label-studio 1.23.2 asks for sentry-sdk>=2.16 with no upper bound; sentry-sdk 3 no longer takes
# the options it starts with (the server exits: "Unknown option 'send_default_pii'").
LS_REQUIREMENTS = (f"label-studio=={LS_VERSION}", "sentry-sdk>=2.16,<3")
ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "e2e-password-123"

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


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Serialises installs between test sessions that share the cache folder."""
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_ls_venv(cache: Path | None = None) -> Path:
    """Label Studio's own virtualenv, created on first use and reused afterwards."""
    cache = cache or cache_dir()
    venv = cache / "ls-venv"
    # the marker names the requirements, so a virtualenv installed with others is brought in line
    marker = venv / (".installed-" + hashlib.sha1(" ".join(LS_REQUIREMENTS).encode()).hexdigest()[:12])
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    with file_lock(cache / "ls-venv.lock"):
        if marker.exists():
            return venv
        if not _has_label_studio(venv):
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
            subprocess.run(pip + ["-U", "pip"], check=True)
        subprocess.run(pip + list(LS_REQUIREMENTS), check=True)
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
