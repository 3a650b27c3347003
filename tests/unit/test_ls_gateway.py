"""Publishing a version through LSGateway, against the fake Label Studio."""

import pytest

from ml_backend.ls_gateway import LSGateway
from tests.integration.fake_ls import FakeLabelStudio, backend_settings


@pytest.fixture
def gateway(tmp_path):
    fake = FakeLabelStudio()
    url = fake.start()
    fake.add_project(1)
    ids = fake.add_tasks(1, [f"text {i}" for i in range(10)])
    yield fake, ids, LSGateway(backend_settings(url, tmp_path, "unused", publish_batch_size=2))
    fake.stop()


def prediction(task_id: int, score: float) -> dict:
    return {"task": task_id, "result": [], "score": score}


def test_the_fresh_subset_is_published_and_activated_before_the_rest(gateway):
    fake, ids, ls = gateway
    fresh = [prediction(i, 0.1) for i in ids[:3]]
    rest = [prediction(i, 0.9) for i in ids[3:]]
    timings = ls.publish_version(1, "v1", fresh, rest)
    assert fake.activated_with["v1"] == 3
    assert fake.projects[1]["model_version"] == "v1"
    assert fake.projects[1]["sampling"] == "Uncertainty sampling"
    assert sorted(p["task"] for p in fake.predictions_of("v1")) == ids
    assert set(timings) == {"publish_s", "activate_s", "publish_rest_s"}
    # batches of 2: two imports for the subset, the PATCH, then four for the rest
    requests = [method for method, path in fake.calls if method in ("POST", "PATCH")]
    assert requests == ["POST", "POST", "PATCH", "POST", "POST", "POST", "POST"]


def test_with_nothing_fresh_every_prediction_is_published_before_activation(gateway):
    fake, ids, ls = gateway
    timings = ls.publish_version(1, "v2", [], [prediction(i, 0.5) for i in ids])
    assert fake.activated_with["v2"] == len(ids)
    assert fake.projects[1]["model_version"] == "v2"
    assert set(timings) == {"publish_s", "activate_s"}
