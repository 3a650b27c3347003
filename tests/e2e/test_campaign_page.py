"""The campaign page of a project trained twice against the real Label Studio, read in headless Chromium."""

from __future__ import annotations

import time
from collections import Counter

import httpx
import pytest

from testkit.gold import ag_news
from tests.e2e import browser
from tests.e2e.scenario import Scenario

pytestmark = pytest.mark.e2e

# Everything the page shows, read in one script (the page is static: nothing re-renders).
PAGE_JS = """
const plots = {};
for (const f of document.querySelectorAll('figure[id^="plot-"]')) {
  const svg = f.querySelector('svg');
  const box = svg ? svg.getBoundingClientRect() : null;
  plots[f.id.slice(5)] = box ? [Math.round(box.width), Math.round(box.height), svg.querySelectorAll('path').length] : null;
}
const counts = {};
for (const row of document.querySelectorAll('#label-counts tr')) {
  const cells = row.querySelectorAll('td');
  if (cells.length === 2) counts[cells[0].textContent] = Number(cells[1].textContent);
}
return {
  plots: plots,
  counts: counts,
  sentence: (document.getElementById('stop-sentence') || {}).textContent || '',
  retrains: document.querySelectorAll('#retrains tr').length - 1,
  resources: performance.getEntriesByType('resource').map(e => e.name),
  scripts: document.scripts.length,
  text: document.body.innerText,
};
"""


def test_campaign_page_of_a_project_trained_twice(label_studio, backend, shared_data, chromium_paths, tmp_path):
    scenario = Scenario(label_studio, backend, ag_news(shared_data, 30), "Campaign page")
    scenario.create_project()
    scenario.connect()
    labeled = scenario.task_ids[:3]
    for task_id in labeled:
        scenario.annotate(task_id)
    for extra in (None, 2):  # two retrains from the Train button, with two more labels before the second
        if extra:
            served = [scenario.ls.next_task(scenario.project_id)["id"]]
            scenario.annotate(served[0])
            served.append(scenario.ls.next_task(scenario.project_id)["id"])
            scenario.annotate(served[1])
            labeled += served
        started = time.monotonic()
        scenario.ls.sdk.ml.train(id=scenario.ml_id)
        scenario.wait_for_new_version(started)
    second = scenario.versions[-1].name

    figures = httpx.get(f"{backend.url}/campaign/{scenario.project_id}.json", timeout=30).json()
    gold = Counter(scenario.gold.tasks[scenario.task_ids.index(t)].label for t in labeled)
    classes = figures["classes"]
    expected_counts = {c: gold.get(c, 0) for c in classes}
    assert figures["current_version"] == second and figures["retrains_shown"] == 2, figures
    assert figures["label_counts"] == expected_counts
    assert [p["n_labeled"] for p in figures["quality"]] == [3, 5]
    kappa = figures["stability"]["points"][1]["kappa"]
    assert kappa is not None and -1.0 <= kappa <= 1.0
    assert figures["stability"]["points"][1]["n_compared"] > 0
    assert all(step["steps"]["fit"] > 0 and step["steps"]["publish"] > 0 for step in figures["timeline"])

    path = tmp_path / f"campaign-project-{scenario.project_id}.png"
    with browser.chromium(*chromium_paths) as driver:
        driver.set_window_size(1280, 2600)
        driver.get(f"{backend.url}/campaign/{scenario.project_id}")
        seen = driver.execute_script(PAGE_JS)
        driver.save_screenshot(str(path))
    print(f"\n[e2e] campaign page screenshot: {path}")
    for name in ("quality", "timeline", "stability"):
        width, height, paths = seen["plots"][name] or (0, 0, 0)
        assert width > 300 and height > 150 and paths > 5, (name, seen["plots"], path)
    assert seen["counts"] == expected_counts, (seen["counts"], path)
    assert seen["retrains"] == 2
    assert seen["sentence"].startswith("Not enough versions yet"), seen["sentence"]  # 1 comparison, window 3
    assert "Rule: stop when the mean Cohen's kappa" in seen["text"]
    assert seen["scripts"] == 0 and seen["resources"] == [], seen["resources"]  # no JavaScript, nothing fetched
    missing = [c for c, n in expected_counts.items() if n == 0]
    if missing:  # 5 labels over 4 topics: a topic without a label is shown as a warning
        # once, as /status words it (the page does not repeat a warning /status gives)
        assert seen["text"].count("no label yet for") == 1
        assert f"no label yet for {', '.join(map(repr, missing))}" in seen["text"]
    assert path.stat().st_size > 20_000
