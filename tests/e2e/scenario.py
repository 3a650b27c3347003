"""The active-learning loop as a person runs it in Label Studio, step by step, with what each step saw.

Used by test_choices_project.py and test_labels_project.py: one Scenario per project, its steps run
in order (each test function is one step and checks what Label Studio and the backend show).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import httpx

from testkit.gold import GoldProject
from testkit.ls_api import LabelStudioAPI
from testkit.processes import BackendStack
from tests.e2e.conftest import TEST_SETTINGS

UNCERTAINTY_SAMPLING = "Uncertainty sampling"


@dataclass
class Version:
    name: str
    predictions: dict[int, dict]  # unlabeled task id -> prediction of this version
    next_task: int
    seconds: float


@dataclass
class Scenario:
    ls: LabelStudioAPI
    backend: BackendStack
    gold: GoldProject
    title: str
    project_id: int = 0
    ml_id: int = 0
    task_ids: list[int] = field(default_factory=list)  # in import order, aligned with gold.tasks
    versions: list[Version] = field(default_factory=list)
    seen: dict = field(default_factory=dict)  # figures for the report
    copies: dict[int, int] = field(default_factory=dict)  # a task imported later -> the gold task it copies

    # --- setup ---
    def create_project(self) -> None:
        project = self.ls.sdk.projects.create(title=self.title, label_config=self.gold.label_config)
        self.project_id = project.id
        self.ls.import_tasks(self.project_id, [t.text for t in self.gold.tasks])
        self.task_ids = sorted(t["id"] for t in self.ls.tasks(self.project_id))
        assert len(self.task_ids) == len(self.gold.tasks)

    def connect(self) -> dict:
        ml = self.ls.sdk.ml.create(
            project=self.project_id, url=self.backend.url, title=f"{self.title} backend"
        )
        self.ml_id = ml.id
        return self.ls.request("GET", f"/api/ml/{ml.id}")

    # --- annotating ---
    def gold_result(self, task_id: int) -> list[dict]:
        index = self.copies[task_id] if task_id in self.copies else self.task_ids.index(task_id)
        return self.gold.result(self.gold.tasks[index])

    def annotate(self, task_id: int) -> None:
        self.ls.annotate(task_id, self.gold_result(task_id))

    def annotation_count(self) -> int:
        return sum(t.get("total_annotations") or 0 for t in self.ls.tasks(self.project_id))

    # --- training ---
    def backend_status(self) -> dict:
        answer = httpx.get(f"{self.backend.url}/status/{self.project_id}", timeout=10)
        answer.raise_for_status()
        return answer.json()["projects"][str(self.project_id)]

    def wait_for_new_version(self, since: float, timeout: float = 240.0) -> Version:
        """Waits until the project points at a version newer than the last one and the retrain is done."""
        previous = self.versions[-1].name if self.versions else None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.backend_status()
            current = status["current_version"]
            if status.get("last_error") and not status["running_retrain"]:
                raise AssertionError(f"retrain failed: {status['last_error']}\n{self.backend.logs()}")
            if (
                current
                and current != previous
                and not status["pending_retrain"]
                and not status["running_retrain"]
                and self.ls.project(self.project_id)["model_version"] == current
            ):
                seconds = time.monotonic() - since
                version = Version(current, self.ls.predictions(self.project_id, current), 0, seconds)
                self.versions.append(version)
                self.seen.setdefault("last_rounds", []).append(status.get("last_round"))
                return version
            time.sleep(0.5)
        raise AssertionError(
            f"no new version after {timeout:.0f} s (last: {previous}); status {self.backend_status()}\n"
            f"{self.backend.logs()}"
        )

    def check_version(self, version: Version) -> None:
        """The project points at the version, which is on at most AL_QUERY_WINDOW tasks (every
        unlabeled task after a round that scored them all, as the window is larger than the pool
        here), and Label Studio serves the lowest score among them first."""
        unlabeled = self.ls.unlabeled_ids(self.project_id)
        held = set(version.predictions) & unlabeled
        assert 0 < len(version.predictions) <= int(TEST_SETTINGS["AL_QUERY_WINDOW"]), len(version.predictions)
        last_round = self.seen["last_rounds"][-1]
        if last_round["n_scored"] == last_round["n_pool"]:
            missing = unlabeled - held
            assert not missing, f"unlabeled tasks without a {version.name} prediction: {sorted(missing)}"
        scores = {t: version.predictions[t]["score"] for t in held}
        assert all(isinstance(s, float) and 0.0 <= s <= 1.0 for s in scores.values()), scores
        project = self.ls.project(self.project_id)
        assert project["model_version"] == version.name
        assert project["sampling"] == UNCERTAINTY_SAMPLING
        served = self.ls.next_task(self.project_id)
        lowest = min(scores.values())
        assert scores.get(served["id"]) == lowest, (
            f"next task {served['id']} has score {scores.get(served['id'])}, the lowest is {lowest} "
            f"(tasks {[t for t, s in scores.items() if s == lowest]})"
        )
        assert served["queue"].startswith("Active learning"), served["queue"]
        version.next_task = served["id"]
