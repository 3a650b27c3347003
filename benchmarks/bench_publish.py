"""Publishing scores for 10,000 tasks to a real Label Studio 1.23.2 (goal: <= 10 s per version).

Times the backend's own publishing path (ml_backend.labelstudio.gateway.LSGateway.publish_version): the
bulk import of the re-scored subset's predictions, pointing the project at the version
(model_version + uncertainty sampling), the bulk import of the rest, then the first "next task"
Label Studio serves.
Compared: publish batch sizes, and Label Studio with and without its faster prediction import.

Label Studio is started by testkit.real_label_studio (its own virtualenv and a copied template
data folder, cached in $AL_E2E_CACHE). Writes the "publish" section of BENCHMARKS.md.

    python -m benchmarks.bench_publish [--tasks 10000] [--batch-sizes 1000,10000] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from pathlib import Path

from benchmarks.report import machine_line, write_section
from ml_backend.labelstudio.gateway import LSGateway
from ml_backend.settings import Settings
from testkit import real_label_studio
from testkit.gold import SHARED_DATA, ag_news
from testkit.ls_api import LabelStudioAPI

GOAL_S = 10.0


def texts(count: int) -> tuple[list[str], object]:
    """AG News test articles, repeated with a running number past the 7,600 the file holds."""
    gold = ag_news(SHARED_DATA, count)
    base = [t.text for t in gold.tasks]
    return [base[i % len(base)] + ("" if i < len(base) else f" ({i})") for i in range(count)], gold


# The share of the pool a UPS round re-scores with the default gamma 0.1 and T 0.01.
UPS_SHARE = 0.11


def publish(gateway: LSGateway, ls: LabelStudioAPI, project: int, ids: list[int], version: str, split: bool):
    """One version: a prediction with a region and a score per task, published as a UPS round is
    (`LSGateway.publish_version`: the re-scored subset, the project pointed at the version, the
    rest), or with `split` off all at once before the project is pointed at it; returns the
    subset's size, the timings and the task served."""
    labels = ["World", "Sports", "Business", "Sci/Tech"]
    rng = random.Random(version)
    predictions = [
        {
            "task": task_id,
            "result": [
                {
                    "from_name": "topic",
                    "to_name": "text",
                    "type": "choices",
                    "value": {"choices": [rng.choice(labels)]},
                }
            ],
            "score": round(rng.random(), 6),
        }
        for task_id in ids
    ]
    # the re-scored subset holds the tasks the model was least sure of: the lowest published scores
    ranked = sorted(predictions, key=lambda p: p["score"])
    cut = round(UPS_SHARE * len(ranked)) if split else len(ranked)
    timings = gateway.publish_version(project, version, ranked[:cut], ranked[cut:])
    start = time.perf_counter()
    served = ls.next_task(project)
    next_s = time.perf_counter() - start
    scores = {p["task"]: p["score"] for p in predictions}
    stored = ls.model_versions(project).get(version)
    assert stored == len(ids), f"stored {stored}, expected {len(ids)}"
    assert scores[served["id"]] == min(scores.values()), f"served {served['id']}, not the lowest score"
    # release the lock "next" took, so the next version's first task is served afresh
    ls.request("POST", f"/api/tasks/{served['id']}/annotations/", json={"result": [], "was_cancelled": True})
    return cut, timings, next_s, served["id"]


# Label Studio 1.23.2 ships a faster prediction import behind a feature flag (off by default; an
# environment variable of that name turns it on). Off, every import request recounts the
# annotations and predictions of EVERY task of the project, so the cost grows with requests x tasks.
IMPORT_FLAG = "fflag_fix_back_4620_memory_efficient_predictions_import_08012025_short"
MODES = [
    ("flag off (Label Studio's default)", {IMPORT_FLAG: "false"}),
    ("flag on (as docker-compose.yml sets it)", {IMPORT_FLAG: "true"}),
]


def run_mode(venv, template, env: dict, texts_, gold, batch_sizes: list[int]) -> tuple[float, list[tuple]]:
    """One Label Studio with `env`: import the tasks, then publish one version per batch size."""
    with tempfile.TemporaryDirectory(prefix="bench-publish-") as work:
        work = Path(work)
        token = real_label_studio.copy_template(template, work / "data")
        process, url, _ = real_label_studio.start_label_studio(venv, work / "data", work, extra_env=env)
        try:
            ls = LabelStudioAPI(url, token)
            project = ls.sdk.projects.create(title="publish benchmark", label_config=gold.label_config).id
            start = time.perf_counter()
            for i in range(0, len(texts_), 2500):
                ls.import_tasks(project, texts_[i : i + 2500])
            import_s = time.perf_counter() - start
            ids = sorted(t["id"] for t in ls.tasks(project))
            rows = []
            for n, (batch, split) in enumerate([(b, s) for b in batch_sizes for s in (True, False)], 1):
                settings = Settings(
                    label_studio_url=url, label_studio_api_key=token, publish_batch_size=batch
                )
                gateway = LSGateway(settings)
                subset, timings, next_s, served = publish(gateway, ls, project, ids, f"bench-v{n}", split)
                rows.append((batch, split, len(ids), subset, timings, next_s))
                ids.remove(served)  # skipped to release its lock: no longer unlabeled
                print(f"{env or 'default'} batch {batch} split {split}: {timings}")
            return import_s, rows
        finally:
            process.stop()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--batch-sizes", default="1000,10000", help="publish batch sizes to compare")
    parser.add_argument(
        "--no-write", action="store_true", help="print the figures, leave BENCHMARKS.md alone"
    )
    args = parser.parse_args(argv)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]

    venv = real_label_studio.ensure_ls_venv()
    template = real_label_studio.ensure_template(venv)
    all_texts, gold = texts(args.tasks)
    lines, import_s = [], 0.0
    for name, env in MODES:
        import_s, rows = run_mode(venv, template, env, all_texts, gold, batch_sizes)
        for batch, split, count, subset, t, next_s in rows:
            ordering_s = t["publish_s"] + t["activate_s"]
            rest_s = t.get("publish_rest_s", 0.0)
            ok = "yes" if ordering_s + rest_s <= GOAL_S else "NO"
            lines.append(
                f"| {name} | {batch:,} | {'subset, activate, rest' if split else 'all, activate'} | {count:,} "
                f"| {subset:,} | {t['publish_s']:.2f} s | {t['activate_s']:.2f} s | **{ordering_s:.2f} s** "
                f"| {f'{rest_s:.2f} s' if split else '-'} | **{ordering_s + rest_s:.2f} s** | {next_s:.2f} s | {ok} |"
            )
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    default_batch = Settings.model_fields["publish_batch_size"].default
    table = "\n".join(lines)
    markdown = f"""## Publishing scores to Label Studio

{machine_line()}Label Studio {real_label_studio.LS_VERSION} (SQLite, one process) on the same machine. One version = a scored prediction
(with its region) for every unlabeled task, published as a UPS round publishes it (`LSGateway.publish_version`,
in batches of `AL_PUBLISH_BATCH_SIZE`, default {default_batch:,}): the re-scored subset ({UPS_SHARE:.0%} of the
tasks, the lowest scores), then the project pointed at the version (model_version + uncertainty sampling), from
which moment Label Studio serves the next task from the subset, then the cached scores of the rest (order
"subset, activate, rest"; "all, activate" is the one-part publish for comparison). The versions go one after
another into one project per flag setting, and Label Studio keeps every earlier version's predictions, so each
row imports into a fuller project than the row above it. "First next
task" is `GET /api/projects/:id/next` after all of it (checked: the lowest score). Importing the {args.tasks:,}
tasks took {import_s:.1f} s. Load average at the end (1, 5, 15 min): {load} (the machine is shared). Goal: every
score published and the version activated <= {GOAL_S:.0f} s.

| `{IMPORT_FLAG}` | batch | order | predictions | first part | first part published | activated | ordering refreshed | rest published | all published | first next task | within goal |
|---|---|---|---|---|---|---|---|---|---|---|---|
{table}
"""
    print(markdown)
    if not args.no_write:
        write_section("publish", markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
