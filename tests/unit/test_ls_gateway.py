"""Publishing a version through LSGateway, against the fake Label Studio."""

import pytest

from ml_backend.labelstudio.gateway import LSGateway
from testkit.fake_label_studio import FakeLabelStudio
from tests.helpers import backend_settings


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


class FlakyProjects:
    """projects.get answers HTTP 503 `failures` times, then the project."""

    def __init__(self, failures: int, status: int = 503):
        self.failures, self.status, self.calls = failures, status, 0

    def get(self, id):
        from label_studio_sdk.core.api_error import ApiError

        self.calls += 1
        if self.calls <= self.failures:
            raise ApiError(status_code=self.status, body={"detail": "busy"})
        return {"id": id, "label_config": "<View/>"}


def flaky_gateway(tmp_path, failures: int, retries: int, status: int = 503):
    from types import SimpleNamespace

    projects = FlakyProjects(failures, status)
    waits: list[float] = []
    settings = backend_settings("http://127.0.0.1:1", tmp_path, "unused", ls_retries=retries)
    return LSGateway(settings, client=SimpleNamespace(projects=projects), sleep=waits.append), projects, waits


def test_a_busy_label_studio_is_retried_with_growing_waits(tmp_path):
    ls, projects, waits = flaky_gateway(tmp_path, failures=3, retries=3)
    assert ls.get_project(7)["id"] == 7
    assert projects.calls == 4 and waits == [0.5, 1.0, 2.0]


def test_retries_end_with_an_error_naming_the_call_and_a_client_error_is_not_retried(tmp_path):
    from ml_backend.labelstudio.gateway import LabelStudioError

    ls, projects, waits = flaky_gateway(tmp_path, failures=5, retries=2)
    with pytest.raises(LabelStudioError, match="GET project 7 failed: HTTP 503") as raised:
        ls.get_project(7)
    assert projects.calls == 3 and waits == [0.5, 1.0] and raised.value.status_code == 503
    ls, projects, waits = flaky_gateway(tmp_path, failures=1, retries=3, status=404)
    with pytest.raises(LabelStudioError, match="HTTP 404"):
        ls.get_project(7)
    assert projects.calls == 1 and waits == []


def test_exports_and_model_versions_are_read_and_deleted_without_the_sdks_internals(gateway):
    fake, ids, ls = gateway
    ls.publish_predictions(1, "v1", [prediction(i, 0.5) for i in ids[:4]])
    assert sorted(t["id"] for t in ls.export_tasks(1, [ids[1], ids[3], 10_000])) == [ids[1], ids[3]]
    assert ls.model_versions(1) == {"v1": 4}
    assert ls.delete_version(1, "v1") == 4
    assert ls.model_versions(1) == {}
    assert ("DELETE", "/api/projects/1/model-versions/") in fake.calls


def test_a_personal_access_token_goes_as_a_bearer_access_token_renewed_once_refused():
    import base64
    import json

    import httpx

    from ml_backend.labelstudio.gateway import ApiKeyAuth

    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    personal = ".".join([part({"alg": "HS256", "typ": "JWT"}), part({"token_type": "refresh"}), "sig"])
    issued = iter(["access-1", "access-2"])
    refreshed: list[str] = []
    valid = {"Token legacy-0123", "Bearer access-2"}
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["Authorization"])
        return httpx.Response(200 if seen[-1] in valid else 401, json={})

    def refresh(key: str) -> str:
        refreshed.append(key)
        return next(issued)

    for key, expected in (("legacy-0123", ["Token legacy-0123"]), (personal, ["Bearer access-1", "Bearer access-2"])):
        seen.clear()
        with httpx.Client(transport=httpx.MockTransport(answer)) as client:
            auth = ApiKeyAuth(key, refresh)
            assert client.get("http://ls/api/x", auth=auth).status_code == 200
            assert seen == expected
            assert client.get("http://ls/api/x", auth=auth).status_code == 200  # the new token is kept
            assert seen[-1] == expected[-1]
    assert refreshed == [personal, personal]
