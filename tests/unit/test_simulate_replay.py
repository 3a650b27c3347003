"""The replay's Label Studio (the shared testkit.fake_label_studio), read by the backend's own
client, and a replay against the backend."""

from __future__ import annotations

import contextlib
import threading
import time

import pytest
import torch

from al_core.data import Example
from simulate.replay import Replay, label_config_xml
from testkit.fake_label_studio import TOKEN

torch.set_num_threads(1)


def _examples(n: int) -> list[Example]:
    words = {"positive": "good great fun love best", "negative": "bad awful boring hate worst"}
    return [
        Example(
            id=f"e{i}",
            text=f"the movie was {words[y].split()[i % 5]} really {words[y].split()[(i + 2) % 5]}",
            label=y,
        )
        for i, y in enumerate(["positive", "negative"] * (n // 2))
    ]


def test_label_configs_parse_back():
    from al_core.ls_format import parse_label_config

    cls = parse_label_config(label_config_xml("classification", ["positive", "negative"]))
    assert cls.kind == "classification" and cls.labels == ["positive", "negative"]
    ner = parse_label_config(label_config_xml("tagging", ["O", "B-PER", "I-PER", "B-LOC"]))
    assert ner.kind == "tagging" and sorted(ner.labels) == ["LOC", "PER"]


def test_backend_gateway_reads_and_writes_through_the_replay_routes(tmp_path):
    from ml_backend.labelstudio.gateway import LabelStudioError, LSGateway, split_tasks
    from ml_backend.settings import Settings

    replay = Replay(_examples(30), "classification", ["positive", "negative"], "http://unused")
    url = replay.ls.start()
    try:
        # annotate two tasks without a backend: the webhook is not sent here
        for task_id in (1, 2):
            replay.store_annotation(task_id)
        body = replay.ls.annotation_created(1)  # Label Studio's ANNOTATION_CREATED shape
        assert body["action"] == "ANNOTATION_CREATED" and body["annotation"]["task"] == 1
        assert body["task"]["id"] == 1 and body["project"]["label_config"] == replay.label_config
        assert body["annotation"]["result"][0]["value"]["choices"] == [replay.by_task[1].label]
        settings = Settings(
            label_studio_url=url,
            label_studio_api_key=TOKEN,
            ls_page_size=7,
            ls_retries=0,
            model_dir=str(tmp_path),
        )
        gateway = LSGateway(settings)
        project = gateway.get_project(1)
        assert project["label_config"] == replay.label_config and project["total_annotations_number"] == 2
        tasks = gateway.list_tasks(1)  # 30 tasks over 5 pages of 7
        assert sorted(t["id"] for t in tasks) == list(range(1, 31))
        labeled, unlabeled = split_tasks(tasks)
        assert [t["id"] for t in labeled] == [1, 2] and len(unlabeled) == 28
        with pytest.raises(
            LabelStudioError, match="400"
        ):  # Label Studio refuses a version with no predictions
            gateway.activate_version(1, "v1")
        sent = gateway.publish_predictions(
            1, "v1", [{"task": t["id"], "result": [], "score": t["id"] / 100} for t in unlabeled]
        )
        assert sent == 28
        gateway.activate_version(1, "v1")
        assert replay.active_version() == "v1"
        assert replay.ls.projects[1]["sampling"] == "Uncertainty sampling"
        assert replay.ls.activations[-1][1] == "v1"
        assert replay.next_batch("v1", 3) == [3, 4, 5]  # lowest score first
        bad = LSGateway(
            Settings(
                label_studio_url=url, label_studio_api_key="wrong", ls_retries=0, model_dir=str(tmp_path)
            )
        )
        with pytest.raises(LabelStudioError, match="401"):
            bad.get_project(1)
    finally:
        replay.ls.stop()


@contextlib.contextmanager
def _backend_for(replay: Replay, tmp_path, **settings):
    """The replay's Label Studio and the real backend app (in-process server, embedded retrain
    runner) reading it, with `settings` over the common ones; yields the replay pointed at it."""
    from werkzeug.serving import make_server

    from ml_backend.app import create_app
    from ml_backend.settings import Settings

    url = replay.ls.start()
    try:
        app = create_app(
            Settings(
                label_studio_url=url,
                label_studio_api_key=TOKEN,
                model_dir=str(tmp_path / "models"),
                retrain_delay=0.1,
                device="cpu",
                **settings,
            )
        )
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            replay.backend = f"http://127.0.0.1:{server.server_port}"
            yield replay
        finally:
            server.shutdown()
    finally:
        replay.ls.stop()


@pytest.mark.slow
def test_replay_against_the_backend_app(tmp_path, tiny_model_dir):
    """The whole protocol against the real backend app."""
    replay = Replay(
        _examples(24), "classification", ["positive", "negative"], "http://placeholder", timeout=120
    )
    with _backend_for(
        replay,
        tmp_path,
        acquisition_model=str(tiny_model_dir),
        epochs=1,
        max_length=16,
        ups_full_first=1,
        ups_full_every=0,
        query_window=0,  # a score for every unlabeled task under each version
    ):
        started = time.perf_counter()
        records = list(replay.run([1, 2, 3, 4], batch_size=3, iterations=1, progress=False))
        wall_s = time.perf_counter() - started
    assert [r["labeled"] for r in records] == [4, 7]
    assert records[0]["annotated_ids"] == [replay.by_task[n].id for n in (1, 2, 3, 4)]
    assert len(set(records[1]["annotated_ids"]) - set(records[0]["annotated_ids"])) == 3  # the next batch
    assert [r["predict_tasks"] for r in records] == [20, 17]  # one /predict result per unlabeled task
    assert all(r["published"] == r["predict_tasks"] for r in records)  # a score published for every task
    assert records[0]["version"] != records[1]["version"]
    # the webhooks of a batch, the wait for its version and the /predict call come one after the
    # other: per iteration, and all together within the replay's wall time
    assert all(r["webhook_mean_s"] <= r["webhook_max_s"] for r in records)
    per_iteration = [
        r["webhook_mean_s"] * r["annotated_now"] + r["retrain_latency_s"] + r["predict_s"] for r in records
    ]
    assert sum(per_iteration) <= wall_s
    assert replay.ls.projects[1]["sampling"] == "Uncertainty sampling" and not replay.ls.unserved


def test_a_replay_says_at_once_why_the_backend_gave_no_version(tmp_path):
    """A retrain that fails (here: no such acquisition model) ends the wait with the backend's own
    reason, long before the timeout."""
    from simulate.replay import ReplayError

    replay = Replay(_examples(12), "classification", ["positive", "negative"], "http://placeholder", timeout=300)
    with _backend_for(replay, tmp_path, acquisition_model=str(tmp_path / "no-such-model")):
        start = time.perf_counter()
        with pytest.raises(ReplayError, match="retrain failed: .*no-such-model"):
            list(replay.run([1, 2, 3, 4], batch_size=2, iterations=1, progress=False))
        assert time.perf_counter() - start < 60
