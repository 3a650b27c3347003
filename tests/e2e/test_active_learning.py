"""The live loop against a real Label Studio 1.23.2, the backend and an rq worker on Redis.

For a Choices project (AG News) and a Labels project (CoNLL-2003): connect the backend, retrieve
predictions, annotate with the gold labels through the SDK, train from the Train button and from
the annotation-count trigger, check what Label Studio then serves, look at the labeling page in
Chromium, restart the backend. Each class is one project; its tests are the loop's steps, in order.
"""

from __future__ import annotations

import time

import httpx
import pytest
import redis

from al_core.acquisition import AcquisitionConfig, is_audit_task
from al_core.config import TrainingConfig
from ml_backend.storage.store import RedisScoreCache
from testkit.gold import ag_news, conll_sentences
from testkit.ls_api import LabelStudioAPI
from tests.e2e import browser
from tests.e2e.conftest import TEST_SETTINGS
from tests.e2e.scenario import Scenario

pytestmark = pytest.mark.e2e

FIRST_LABELS = 3  # annotated before the Train button
TRIGGER_EVERY = 5  # min_annotations_to_start_training


class _Steps:
    title = ""

    @staticmethod
    def gold(data_dir):
        raise NotImplementedError

    @pytest.fixture(scope="class")
    def scenario(self, label_studio: LabelStudioAPI, backend, shared_data) -> Scenario:
        scenario = Scenario(label_studio, backend, self.gold(shared_data), self.title)
        yield scenario
        print(f"\n[e2e] {self.title}: {scenario.seen}")

    def test_connect(self, scenario: Scenario):
        health = httpx.get(f"{scenario.backend.url}/health", timeout=5).json()
        assert health["status"] == "UP" and health["queue"] == "rq"
        scenario.create_project()
        ml = scenario.connect()
        assert ml["state"] == "CO", ml
        assert ml["model_version"] == "untrained"  # what /setup answers before any training
        hooks = scenario.ls.webhooks(scenario.project_id)
        assert any(
            h["url"] == f"{scenario.backend.url}/webhook" and h["send_for_all_actions"] for h in hooks
        ), hooks
        scenario.seen["tasks"] = len(scenario.task_ids)

    def test_retrieve_predictions(self, scenario: Scenario):
        answer = scenario.ls.retrieve_predictions(scenario.project_id)
        stored = scenario.ls.predictions(scenario.project_id, "untrained")
        assert set(stored) == set(scenario.task_ids), answer
        assert {p["score"] for p in stored.values()} == {0.0}  # an untrained model is unsure of everything
        scenario.seen["retrieved"] = len(stored)

    def test_train_button_trains_a_version(self, scenario: Scenario):
        for task_id in scenario.task_ids[:FIRST_LABELS]:
            scenario.annotate(task_id)
        time.sleep(1.0)
        status = scenario.backend_status()
        assert status["current_version"] is None, "annotations alone must not train (trigger: start_training)"
        assert status["events_since_last_retrain"] >= FIRST_LABELS

        started = time.monotonic()
        scenario.ls.sdk.ml.train(id=scenario.ml_id)  # the Start Training button
        version = scenario.wait_for_new_version(started)
        scenario.check_version(version)
        # the first iteration scores the whole pool: every prediction carries regions
        empty = [t for t, p in version.predictions.items() if not p["result"]]
        assert not empty, f"predictions without regions in a full iteration: {empty}"
        scenario.seen["v1"] = {
            "version": version.name,
            "seconds": round(version.seconds, 1),
            "predictions": len(version.predictions),
            "next_task": version.next_task,
            "next_score": version.predictions[version.next_task]["score"],
            "scores": sorted(p["score"] for p in version.predictions.values())[:5],
        }

    def test_labeling_page_shows_the_pre_annotation(self, scenario: Scenario, chromium_paths, screenshot_dir):
        version = scenario.versions[0]
        path = screenshot_dir / f"{scenario.gold.kind}-task-{version.next_task}.png"
        shown, on_page, expected = stream_page(scenario, version, chromium_paths, path)
        assert shown == version.next_task, (
            f"the labeling page shows task {shown}, the next task is {version.next_task} (see {path})"
        )
        if scenario.gold.kind != "choices":
            assert expected, "the next task's prediction holds no entity span"
        assert on_page == expected, f"the page shows {on_page}, the backend predicted {expected} (see {path})"
        scenario.seen["page"] = {"task": shown, "shows": on_page, "screenshot": str(path)}

    def test_annotation_count_trigger_trains_on_a_subset(self, scenario: Scenario):
        first = scenario.versions[0]
        scenario.ls.update_project(scenario.project_id, min_annotations_to_start_training=TRIGGER_EVERY)
        served = [first.next_task]
        scenario.annotate(first.next_task)
        started = time.monotonic()
        # label what Label Studio serves next, as a person would, until the count trigger fires
        while scenario.annotation_count() < TRIGGER_EVERY:
            task = scenario.ls.next_task(scenario.project_id)
            served.append(task["id"])
            started = time.monotonic()
            scenario.annotate(task["id"])
        version = scenario.wait_for_new_version(started)
        scenario.check_version(version)

        unlabeled = scenario.ls.unlabeled_ids(scenario.project_id)
        cache = RedisScoreCache(redis.Redis.from_url(scenario.backend.redis_url), scenario.project_id).all()
        assert set(cache) == {str(t) for t in unlabeled}
        # the re-scored subset is what the new version wrote into the score cache
        fresh = {t for t in unlabeled if cache[str(t)].model_version == version.name}
        assert {cache[str(t)].model_version for t in unlabeled - fresh} == {first.name}
        assert 0 < len(fresh) < len(unlabeled), (
            f"UPS should re-score a subset, re-scored {len(fresh)}/{len(unlabeled)}"
        )
        # the query window (AL_QUERY_WINDOW, larger than the pool here): the re-scored subset first, then the
        # other unlabeled tasks from their cached scores, so every unlabeled task holds the new version; a
        # stale score never undercuts a fresh one (the fresh audit tasks keep their own places)
        assert set(version.predictions) & unlabeled == unlabeled
        regular = {t for t in fresh if not is_audit_task(str(t), TrainingConfig().seed, AcquisitionConfig().audit_share)}
        assert max(version.predictions[t]["score"] for t in regular) < min(
            version.predictions[t]["score"] for t in unlabeled - fresh
        )
        changed = {t for t in fresh if version.predictions[t]["score"] != first.predictions[t]["score"]}
        assert changed, "no score changed after a retrain"
        # tasks outside the subset keep their earlier prediction: the labeling page still pre-annotates them
        assert unlabeled - fresh <= set(scenario.ls.predictions(scenario.project_id, first.name))
        scenario.seen["v2"] = {
            "version": version.name,
            "seconds": round(version.seconds, 1),
            "served_for_labeling": served,
            "pool": len(unlabeled),
            "rescored": len(fresh),
            "scores_changed": len(changed),
            "next_task": version.next_task,
            "next_score": version.predictions[version.next_task]["score"],
        }

    def test_restart_keeps_version_and_cache(self, scenario: Scenario):
        version = scenario.versions[-1].name
        cache = RedisScoreCache(redis.Redis.from_url(scenario.backend.redis_url), scenario.project_id)
        before = cache.all()
        scenario.seen["restart_s"] = round(scenario.backend.restart(), 1)

        setup = httpx.post(
            f"{scenario.backend.url}/setup",
            timeout=10,
            json={"project": f"{scenario.project_id}.0", "schema": scenario.gold.label_config},
        )
        assert setup.json()["model_version"] == version
        assert version in httpx.get(f"{scenario.backend.url}/versions", timeout=10).json()["versions"]
        assert cache.all() == before

        # the restarted backend and worker score a task imported now, under the same version
        text = scenario.gold.tasks[0].text
        scenario.ls.import_tasks(scenario.project_id, [text])
        new_id = max(t["id"] for t in scenario.ls.tasks(scenario.project_id))
        scenario.copies[new_id] = 0
        deadline = time.monotonic() + 120
        while new_id not in scenario.ls.predictions(scenario.project_id, version):
            assert time.monotonic() < deadline, (
                f"task {new_id} got no {version} prediction\n{scenario.backend.logs()}"
            )
            time.sleep(0.5)
        prediction = scenario.ls.predictions(scenario.project_id, version)[new_id]
        assert isinstance(prediction["score"], float) and prediction["result"]
        assert str(new_id) in cache.all()
        scenario.seen["after_restart"] = {
            "version": version,
            "new_task": new_id,
            "score": prediction["score"],
        }

    def test_a_third_retrain_prunes_the_oldest_version(self, scenario: Scenario):
        first, second = scenario.versions[0].name, scenario.versions[-1].name
        # Label Studio locked the task it served last for this user: label it, as a person would
        scenario.annotate(scenario.versions[-1].next_task)
        started = time.monotonic()
        scenario.ls.sdk.ml.train(id=scenario.ml_id)
        version = scenario.wait_for_new_version(started)
        scenario.check_version(version)
        held = scenario.ls.model_versions(scenario.project_id)
        keep = int(TEST_SETTINGS["AL_KEEP_PREDICTION_VERSIONS"])
        ours = {v for v in held if v.startswith(f"{scenario.project_id}-v")}
        # (the annotation may have fired the count trigger too: then two retrains ran)
        assert version.name in ours and len(ours) <= keep and second != version.name, held
        assert first not in held
        assert scenario.ls.project(scenario.project_id)["model_version"] == version.name
        scenario.seen["v3"] = {"version": version.name, "versions_in_label_studio": held}
        split = scenario.seen["last_rounds"][-1]["split"]
        assert split["chunks"] >= 2 and len(split["by_worker"]) == 1, split  # one worker ran it all

    def test_two_workers_share_a_split_scoring_pass(self, scenario: Scenario):
        second = scenario.backend.add_worker(f"worker-second-{scenario.project_id}")
        try:
            scenario.annotate(scenario.versions[-1].next_task)  # the task Label Studio locked for this user
            started = time.monotonic()
            scenario.ls.sdk.ml.train(id=scenario.ml_id)
            version = scenario.wait_for_new_version(started)
            scenario.check_version(version)
        finally:
            second.stop()
        split = scenario.seen["last_rounds"][-1]["split"]
        assert split["chunks"] >= 2 and len(split["by_worker"]) == 2 and split["rerun"] == 0, split
        assert sum(split["by_worker"].values()) == split["chunks"], split
        scenario.seen["split"] = split

    def test_stream_after_a_ups_round_pre_annotates_fresh_and_cached_tasks(
        self, scenario: Scenario, chromium_paths, screenshot_dir
    ):
        """The stream after a round that re-scored a subset: its next task is a fresh one, and a task
        outside the subset, served from a tab that holds it alone, opens pre-annotated by the version.
        Last of the steps: the tab's stream locks its task for this user, which Label Studio would
        serve again before any other."""
        version = scenario.versions[-1]
        unlabeled = scenario.ls.unlabeled_ids(scenario.project_id)
        cache = RedisScoreCache(redis.Redis.from_url(scenario.backend.redis_url), scenario.project_id).all()
        fresh = {t for t in unlabeled if cache[str(t)].model_version == version.name}
        assert 0 < len(fresh) < len(unlabeled), f"{version.name} re-scored {len(fresh)}/{len(unlabeled)} tasks"
        # the window is larger than the pool here: the version holds every unlabeled task, fresh or cached
        assert unlabeled <= set(version.predictions), sorted(unlabeled - set(version.predictions))
        # the cached task the stream would reach first, one whose prediction holds a region where there is one
        outside = min(
            unlabeled - fresh,
            key=lambda t: (not version.predictions[t]["result"], version.predictions[t]["score"]),
        )
        checks = {}
        for name, tab, want in (
            ("fresh", None, version.next_task),
            ("cached", scenario.ls.create_view(scenario.project_id, "outside the re-scored subset", [outside]), outside),
        ):
            path = screenshot_dir / f"{scenario.gold.kind}-after-ups-{name}-task-{want}.png"
            shown, on_page, expected = stream_page(scenario, version, chromium_paths, path, tab)
            assert shown == want, f"the {name} stream shows task {shown}, expected {want} (see {path})"
            assert on_page == expected, (
                f"the page of {name} task {shown} shows {on_page}, {version.name} predicted {expected} (see {path})"
            )
            checks[name] = {"task": shown, "shows": on_page, "screenshot": str(path)}
        assert checks["fresh"]["task"] in fresh and checks["cached"]["task"] not in fresh
        scenario.seen["page_after_ups"] = checks


class TestChoicesProject(_Steps):
    title = "AG News topics"

    @staticmethod
    def gold(data_dir):
        return ag_news(data_dir, 40)


class TestLabelsProject(_Steps):
    title = "CoNLL-2003 entities"

    @staticmethod
    def gold(data_dir):
        return conll_sentences(data_dir, 30)


def stream_page(scenario: Scenario, version, chromium_paths, path, tab: int | None = None):
    """Opens the labeling stream in Chromium as a person would (in `tab` when given) and reads the
    pre-annotation the page shows; returns (task shown, what the page shows, what `version`
    predicted for that task). Saves a screenshot to `path`."""
    read = browser.checked_choices if scenario.gold.kind == "choices" else browser.highlighted_spans
    with browser.chromium(*chromium_paths) as driver:
        browser.log_in(driver, scenario.ls.url, *scenario.ls.credentials)
        shown = browser.open_labeling_stream(driver, scenario.ls.url, scenario.project_id, tab=tab)
        prediction = version.predictions.get(shown)
        expected = None if prediction is None else expected_on_page(scenario.gold.kind, prediction)
        on_page = browser.wait_for_value(driver, read, expected) if prediction is not None else None
        driver.save_screenshot(str(path))
    return shown, on_page, expected


def expected_on_page(kind: str, prediction: dict):
    """What the labeling page shows of a prediction: its ticked choices, or its (text, label) spans."""
    if kind == "choices":
        return prediction["result"][0]["value"]["choices"]
    return sorted((r["value"]["text"], r["value"]["labels"][0]) for r in prediction["result"])
