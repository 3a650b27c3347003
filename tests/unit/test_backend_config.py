"""Label configs accepted or refused on /setup, and settings read from the environment."""

import pytest
from pydantic import ValidationError

from ml_backend.app import create_app
from ml_backend.cli import main, parse_command_line
from ml_backend.settings import Settings
from testkit.fake_label_studio import CLS_CONFIG, NER_CONFIG
from tests.helpers import backend_settings

MULTI = CLS_CONFIG.replace('choice="single"', 'choice="multiple"')
IMAGE = """<View><Image name="img" value="$image"/>
<Choices name="c" toName="img"><Choice value="A"/></Choices></View>"""
TWO_CONTROLS = """<View><Text name="text" value="$text"/>
<Choices name="a" toName="text"><Choice value="A"/></Choices>
<Choices name="b" toName="text"><Choice value="B"/></Choices></View>"""


@pytest.fixture
def client(tmp_path):
    return create_app(backend_settings(None, tmp_path / "store", tmp_path / "model")).test_client()


@pytest.mark.parametrize("config", [CLS_CONFIG, MULTI, NER_CONFIG])
def test_setup_accepts_choices_multiple_choices_and_labels_over_text(client, config):
    answer = client.post("/setup", json={"project": "3.1795318993", "schema": config})
    assert answer.status_code == 200
    assert answer.json == {"model_version": "untrained"}


@pytest.mark.parametrize(
    "config,named",
    [
        (IMAGE, "<Image>"),
        (TWO_CONTROLS, "several control tags"),
        ("<View", "not valid XML"),
    ],
)
def test_setup_refuses_unsupported_configs_naming_the_problem(client, config, named):
    answer = client.post("/setup", json={"project": "3.1795318993", "schema": config})
    assert answer.status_code == 400
    assert named in answer.json["error"]


@pytest.mark.parametrize("project", ["abc", "../1.2", None, ""])
def test_setup_refuses_a_project_that_is_not_an_id(client, project):
    answer = client.post("/setup", json={"project": project, "schema": CLS_CONFIG})
    assert answer.status_code == 400
    assert "project" in answer.json["error"]


def test_label_studio_names_are_plain_and_ours_are_prefixed(monkeypatch):
    monkeypatch.setenv("LABEL_STUDIO_URL", "http://ls:8080")
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "k")
    monkeypatch.setenv("REDIS_URL", "redis://r:6379/0")
    monkeypatch.setenv("MODEL_DIR", "/m")
    monkeypatch.setenv("AL_UPS_GAMMA", "0.25")
    monkeypatch.setenv("EPOCHS", "99")  # a generic name must not leak in
    settings = Settings()
    assert (settings.label_studio_url, settings.redis_url, settings.model_dir) == (
        "http://ls:8080",
        "redis://r:6379/0",
        "/m",
    )
    assert settings.ups_gamma == 0.25 and settings.epochs == 3
    assert not settings.embedded
    with pytest.raises(ValidationError, match="frozen"):
        settings.epochs = 5


def test_cli_help_lists_every_setting(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps the help
    for name in Settings.model_fields:
        assert f"--{name.replace('_', '-')}" in text
    assert "[env: LABEL_STUDIO_URL]" in text and "[env: AL_UPS_GAMMA]" in text
    assert "--warm-start, --no-warm-start" in text


@pytest.mark.parametrize("gamma", ["2", "7"])
def test_cli_bad_setting_is_one_line_on_stderr(capsys, monkeypatch, gamma):
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert main(["--ups-gamma", gamma, "--print-settings"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ml-backend: invalid settings: AL_UPS_GAMMA: ") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_cli_booleans_are_real_flags(capsys, monkeypatch):
    monkeypatch.setenv("AL_WARM_START", "true")
    assert parse_command_line([])[1].warm_start is True
    assert parse_command_line(["--no-warm-start"])[1].warm_start is False
    monkeypatch.delenv("AL_WARM_START")
    assert parse_command_line(["--warm-start"])[1].warm_start is True
    assert parse_command_line(["--no-freeze-embeddings"])[1].training_config().freeze_embeddings is False
    with pytest.raises(SystemExit):  # a flag takes no value
        parse_command_line(["--warm-start", "true"])
    assert main(["--warm-start", "--print-settings"]) == 0
    assert "AL_WARM_START=True" in capsys.readouterr().out.splitlines()


def test_print_settings_hides_secrets(capsys, monkeypatch):
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "secret-key")
    assert main(["--print-settings"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "LABEL_STUDIO_API_KEY=***" in out and "secret-key" not in " ".join(out)


def test_cli_option_wins_over_environment(capsys, monkeypatch):
    monkeypatch.setenv("AL_PORT", "9999")
    assert main(["--port", "9191", "--print-settings"]) == 0
    assert "AL_PORT=9191" in capsys.readouterr().out


def test_a_job_runs_with_the_settings_the_web_process_resolved(monkeypatch, tmp_path):
    """An `rq worker` started with another environment (or none) runs the web process's values."""
    from ml_backend.jobs import run as jobs
    from ml_backend.jobs import split_pass
    from ml_backend.settings import get_settings, job_settings

    web = Settings(
        epochs=5,
        ups_gamma=0.3,
        warm_start=True,
        label_studio_url="http://ls:8080",
        label_studio_api_key="key",
        redis_url="redis://127.0.0.1:6379/15",
        model_dir=str(tmp_path / "models"),
        basic_auth_user="admin",
        basic_auth_password="secret",
    )
    sent = web.for_jobs()
    # the worker's own environment says otherwise
    monkeypatch.setenv("AL_EPOCHS", "9")
    monkeypatch.setenv("LABEL_STUDIO_URL", "http://elsewhere:8080")
    monkeypatch.setenv("MODEL_DIR", str(tmp_path / "worker"))
    get_settings.cache_clear()
    try:
        ran = {}
        monkeypatch.setattr(jobs, "run_retrain", lambda project, settings, state, **_: ran.setdefault("retrain", settings))
        monkeypatch.setattr(jobs, "run_scoring", lambda project, tasks, settings, **_: ran.setdefault("scoring", settings))
        jobs.retrain(3, settings=sent)  # called outside a worker: no run lock
        jobs.score_new_tasks(3, [], settings=sent)
        for settings in (ran["retrain"], ran["scoring"], job_settings(sent)):
            assert settings.epochs == 5 and settings.ups_gamma == 0.3 and settings.warm_start
            assert settings.label_studio_url == "http://ls:8080" and settings.label_studio_api_key == "key"
            assert settings.model_dir == str(tmp_path / "models")
            assert settings.basic_auth_user is None and settings.basic_auth_password is None  # no HTTP in a worker
        gone = split_pass.score_chunk(3, "nopass", 0, 1, True, False, settings=sent)
        assert gone["status"] == "gone"  # looked for the pass in the web's MODEL_DIR, which holds none
        # a job queued without settings (by an older web process): the worker's environment
        assert job_settings(None).epochs == 9 and job_settings(None).model_dir == str(tmp_path / "worker")
    finally:
        get_settings.cache_clear()


def test_the_web_process_sends_its_settings_with_every_job(tmp_path):
    from redis import Redis

    from ml_backend.jobs.queue import RQRunner

    class Recorder:
        def __init__(self):
            self.jobs = []

        def enqueue(self, name, *args, **options):
            self.jobs.append((name, args, options))

    settings = Settings(epochs=5, redis_url="redis://127.0.0.1:6379/15", model_dir=str(tmp_path))
    runner = RQRunner(settings, Redis.from_url(settings.redis_url))  # no connection is made here
    runner.queue = Recorder()
    runner.submit_retrain("4")
    runner.submit_scoring("4", [{"id": 1}])
    sent = [options["settings"] for _, _, options in runner.queue.jobs]
    assert sent == [settings.for_jobs(), settings.for_jobs()]
    assert Settings(**sent[0]) == settings
