"""Fixtures shared by every test: tiny random models, the path to ../shared/data, the fake Label Studio."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from testkit.gold import SHARED_DATA
from testkit.tiny_models import write_tiny_bert

ROOT = Path(__file__).resolve().parent.parent


def require_or_skip(condition: bool, reason: str) -> None:
    """Skip locally when a real part is missing; fail loudly in CI (CI=true), never skip there."""
    if condition:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A random-weight tiny BERT folder, built once per test session."""
    return write_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    require_or_skip(SHARED_DATA.is_dir(), f"the shared datasets are not at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def fake_ls():
    """The fake Label Studio (testkit.fake_label_studio), running; yields (fake, its URL)."""
    from testkit.fake_label_studio import FakeLabelStudio

    fake = FakeLabelStudio()
    url = fake.start()
    yield fake, url
    fake.stop()
