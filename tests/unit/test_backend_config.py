"""Label configs accepted or refused on /setup, and settings read from the environment."""

import pytest
from pydantic import ValidationError

from fake_label_studio import CLS_CONFIG, NER_CONFIG, backend_settings
from ml_backend.app import create_app
from ml_backend.cli import main
from ml_backend.settings import Settings

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
    text = capsys.readouterr().out
    for name in Settings.model_fields:
        assert f"--{name.replace('_', '-')}" in text
    assert "[LABEL_STUDIO_URL]" in text and "[AL_UPS_GAMMA]" in text


def test_cli_bad_setting_is_one_line_on_stderr(capsys, monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert main(["--ups-gamma", "7", "--print-settings"]) == 2
    err = capsys.readouterr().err
    assert "AL_UPS_GAMMA" in err and "Traceback" not in err


def test_cli_option_wins_over_environment(capsys, monkeypatch):
    monkeypatch.setenv("AL_PORT", "9999")
    assert main(["--port", "9191", "--print-settings"]) == 0
    assert "AL_PORT=9191" in capsys.readouterr().out
