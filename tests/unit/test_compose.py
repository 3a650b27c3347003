"""docker-compose.yml and the Dockerfile, checked without a Docker engine: services, ports,
variables and commands must agree with each other, with the backend's settings and CLI, and
with what the end-to-end tests run (testkit.processes, testkit.real_label_studio)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from benchmarks import bench_publish
from ml_backend.cli import parse_command_line
from ml_backend.settings import Settings, env_name
from testkit import processes, real_label_studio

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = processes.ROOT
SERVICES = processes.compose_services()
SETTING_VARIABLES = {env_name(name) for name in Settings.model_fields}
BACKEND_SERVICES = ["backend", "worker", "worker-gpu"]


def environment(service: str) -> dict[str, str]:
    return processes.compose_environment(service)


def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text(encoding="utf-8")


def test_services_present():
    assert set(SERVICES) == {"label-studio", "redis", "backend", "worker", "worker-gpu"}


def test_label_studio_service_is_the_tested_version():
    service = SERVICES["label-studio"]
    assert service["image"] == f"heartexlabs/label-studio:{real_label_studio.LS_VERSION}"
    assert "8080:8080" in service["ports"]
    command = processes.compose_command("label-studio")
    assert command[:2] == ["label-studio", "start"] and "--no-browser" in command
    assert command[command.index("-p") + 1] == "8080"
    env = environment("label-studio")
    # without these Label Studio refuses a backend on a private address and creates no webhook
    assert env["ML_BLOCK_LOCAL_IP"] == "false"
    assert env["SSRF_PROTECTION_ENABLED"] == "false"
    assert env["LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN"] == "true"
    assert env[bench_publish.IMPORT_FLAG] == "true"  # the fast prediction import the benchmark measures
    volume = service["volumes"][0].split(":")
    assert volume[1] == env["LABEL_STUDIO_BASE_DATA_DIR"]


def test_redis_keeps_the_score_cache_across_restarts():
    command = processes.compose_command("redis")
    assert command[0] == "redis-server"
    assert command[command.index("--appendonly") + 1] == "yes"
    assert SERVICES["redis"]["volumes"][0].endswith(":/data")


def test_backend_gets_the_token_label_studio_creates():
    ls_token = SERVICES["label-studio"]["environment"]["LABEL_STUDIO_USER_TOKEN"]
    for name in BACKEND_SERVICES:
        assert SERVICES[name]["environment"]["LABEL_STUDIO_API_KEY"] == ls_token
    assert len(environment("label-studio")["LABEL_STUDIO_USER_TOKEN"]) > 5  # Label Studio's minimum


@pytest.mark.parametrize("name", BACKEND_SERVICES)
def test_backend_variables_are_backend_settings(name):
    env = environment(name)
    unknown = set(env) - SETTING_VARIABLES - {"HF_HOME"}
    assert not unknown, f"{name} sets variables the backend does not read: {sorted(unknown)}"
    assert urlparse(env["LABEL_STUDIO_URL"]).hostname == "label-studio"
    assert urlparse(env["LABEL_STUDIO_URL"]).port == 8080
    redis_url = urlparse(env["REDIS_URL"])
    assert (redis_url.scheme, redis_url.hostname, redis_url.port) == ("redis", "redis", 6379)


@pytest.mark.parametrize("name", BACKEND_SERVICES)
def test_backend_settings_validate(name, monkeypatch):
    for key in list(Settings.model_fields):
        monkeypatch.delenv(env_name(key), raising=False)
    for key, value in environment(name).items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.redis_url == environment(name)["REDIS_URL"]
    assert settings.model_dir == environment(name)["MODEL_DIR"]


def test_backend_and_workers_share_settings_and_models():
    envs = [SERVICES[name]["environment"] for name in BACKEND_SERVICES]
    assert all(env == envs[0] for env in envs)
    model_dir = environment("backend")["MODEL_DIR"]
    for name in BACKEND_SERVICES:
        mounts = [v.split(":") for v in SERVICES[name]["volumes"]]
        assert any(model_dir.startswith(target) for _, target in mounts), f"{name} does not mount {model_dir}"
        assert {"redis", "label-studio"} <= set(SERVICES[name]["depends_on"])


def test_backend_command_parses_and_listens_on_the_published_port():
    command = processes.compose_command("backend")
    assert command[0] == "ml-backend"
    _, settings = parse_command_line(command[1:])
    assert settings.host == "0.0.0.0"
    assert f"{settings.port}:{settings.port}" in SERVICES["backend"]["ports"]


@pytest.mark.parametrize("name", ["worker", "worker-gpu"])
def test_worker_command_listens_to_the_backend_queue(name):
    command = processes.compose_command(name)
    assert command[:2] == ["rq", "worker"]
    assert command[command.index("--worker-class") + 1] == "ml_backend.worker.Worker"  # the job code preloaded
    assert command[command.index("--url") + 1] == environment(name)["REDIS_URL"]
    queue = command[-1]
    assert queue == environment(name)["AL_RQ_QUEUE"] == Settings.model_fields["rq_queue"].default


def test_gpu_worker_is_optional_and_reserves_a_gpu():
    gpu = SERVICES["worker-gpu"]
    assert gpu["profiles"] == ["gpu"]
    assert gpu["build"]["args"]["VARIANT"] == "cuda"
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    for name in set(SERVICES) - {"worker-gpu"}:
        assert "profiles" not in SERVICES[name], f"{name} must start without a profile"
        assert "deploy" not in SERVICES[name]


def test_dockerfile_builds_both_variants():
    text = dockerfile()
    assert re.search(r"^ARG VARIANT=cpu$", text, re.M)
    assert "cpu)" in text and "cuda)" in text
    assert SERVICES["backend"]["build"]["context"] == "."


def test_dockerfile_default_command_is_the_backend_service():
    (cmd,) = re.findall(r"^CMD (.+)$", dockerfile(), re.M)
    assert yaml.safe_load(cmd) == processes.compose_command("backend")


def test_dockerfile_copies_every_package():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packages = {p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    copied = {
        src for line in re.findall(r"^COPY (.+)$", dockerfile(), re.M) for src in shlex.split(line)[:-1]
    }
    assert packages <= copied
    assert {"ml-backend"} <= set(pyproject["project"]["scripts"])
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert not packages & set(ignored) and "pyproject.toml" not in ignored


def test_harness_runs_the_compose_commands():
    """The end-to-end tests start what the services run, with local addresses swapped in."""
    ls = real_label_studio.ls_command(Path("/venv"), 8123)
    assert ls[0] == "/venv/bin/label-studio"
    assert (
        ls[1:]
        == processes.compose_command(
            "label-studio",
            {"-p": "8123", "--internal-host": processes.HOST, "--host": f"http://{processes.HOST}:8123"},
        )[1:]
    )
    with pytest.raises(KeyError, match="no --missing"):
        processes.compose_command("backend", {"--missing": "x"})


def test_compose_defaults_are_read_like_compose(monkeypatch):
    monkeypatch.setenv("AL_TEST_VALUE", "from-env")
    assert processes._compose_default("${AL_TEST_UNSET:-fallback}") == "fallback"
    assert processes._compose_default("${AL_TEST_VALUE}") == "from-env"
    assert processes._compose_default("plain") == "plain"
