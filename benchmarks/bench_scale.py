"""A campaign's retrains against a real Label Studio 1.23.2 on PostgreSQL, at several project sizes,
written into BENCHMARKS.md (section scale-postgres).

  python -m benchmarks.bench_scale [--sizes 10000,50000,100000] [--retrains 20] [--labels 30]

Per size: a project of that many IMDb reviews (train and test sets from ../shared/data, repeated
with a marker past 50,000), `--labels` random tasks annotated with their gold label, then
`--retrains` retrains in a row, each after one more annotation of the task Label Studio serves
next (GET /api/projects/<id>/next), as an annotator would. The retrain is the backend's own
(ml_backend.jobs.run.run_retrain, what the worker runs) with the live defaults (AL_QUERY_WINDOW 200,
AL_KEEP_PREDICTION_VERSIONS 3) and the frozen head that auto serves first (AL_ACQUISITION_MODE=frozen,
so that the campaign stays on it past 40 labels), minilm-l3, AL_MAX_LENGTH 48,
2 torch threads. No webhook reaches it: the mirror finds every annotation by its updated_at.

Recorded per retrain: the Label Studio read (mirror sync), scoring, publish and prune seconds, the
project's prediction rows and database size after it, GET /next latency, and the quality: the
5-fold estimate of the version, and the accuracy of its published labels (the window: the tasks
it asks first, so the hardest ones). Retrain 1 is the first contact: a full read and the one-time
embedding pass of the whole pool, reported on its own.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks.report import machine_line, write_section
from ml_backend.jobs.run import run_retrain
from ml_backend.jobs.status import MemoryState
from ml_backend.settings import Settings
from testkit import real_label_studio
from testkit.ls_api import LabelStudioAPI

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("AL_SHARED_DATA", ROOT.parent / "shared" / "data"))
MODELS = Path(os.environ.get("AL_MODELS_DIR", Path.home() / ".cache" / "al-models"))
CONFIG = """<View><Text name="text" value="$text"/>
<Choices name="sentiment" toName="text" choice="single">
<Choice value="negative"/><Choice value="positive"/></Choices></View>"""
LABELS = ["negative", "positive"]


def imdb(n: int) -> list[tuple[str, str]]:
    rows = []
    for part in ("train", "test"):
        with gzip.open(DATA / "imdb" / f"imdb_{part}.jsonl.gz", "rt", encoding="utf-8") as handle:
            rows += [(r["text"], LABELS[int(r["label"])]) for r in map(json.loads, handle)]
    random.Random(0).shuffle(rows)
    out = []
    while len(out) < n:
        copy = len(out) // len(rows)
        out += [(f"{t} ({copy})" if copy else t, y) for t, y in rows[: n - len(out)]]
    return out


def choice(label: str) -> list[dict]:
    return [{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]


class Project:
    """One project of the run: its Label Studio calls and gold labels."""

    def __init__(self, url: str, token: str, size: int):
        self.url, self.api = url, LabelStudioAPI(url, token)  # a personal access token: Bearer access tokens
        answer = self.call("POST", "/api/projects/", json={"title": f"scale {size}", "label_config": CONFIG})
        self.id = answer["id"]
        rows = imdb(size)
        for start in range(0, size, 5000):
            self.call("POST", f"/api/projects/{self.id}/import", json=[{"text": t} for t, _ in rows[start : start + 5000]])
        ids = self.task_ids()
        assert len(ids) == size, (len(ids), size)
        self.gold = {task: label for task, (_, label) in zip(ids, rows, strict=True)}

    def call(self, method: str, path: str, **kwargs):
        return self.api.request(method, path, **kwargs)

    def get(self, path: str, params: dict) -> httpx.Response:
        return self.api.http.get(path, params=params, headers=self.api._headers(), timeout=600)

    def task_ids(self) -> list[int]:
        ids, page = [], 1
        while True:
            answer = self.get("/api/tasks", {"project": self.id, "page": page, "page_size": 5000})
            if answer.status_code == 404:
                return sorted(ids)
            answer.raise_for_status()
            tasks = answer.json()["tasks"]
            ids += [t["id"] for t in tasks]
            if len(tasks) < 5000:
                return sorted(ids)
            page += 1

    def annotate(self, task: int) -> None:
        self.call("POST", f"/api/tasks/{task}/annotations/", json={"result": choice(self.gold[task])})

    def next_task(self) -> tuple[int, float]:
        start = time.perf_counter()
        task = self.call("GET", f"/api/projects/{self.id}/next")
        return task["id"], time.perf_counter() - start

    def window_accuracy(self, version: str) -> float | None:
        """Share of the version's published labels that match the gold label."""
        hits = total = 0
        page = 1
        query = json.dumps({"filters": {"conjunction": "and", "items": [
            {"filter": "filter:tasks:predictions_model_versions", "operator": "contains", "type": "List", "value": [version]}
        ]}})
        while True:
            answer = self.get(
                "/api/tasks", {"project": self.id, "fields": "all", "page": page, "page_size": 1000, "query": query}
            )
            if answer.status_code == 404:
                break
            answer.raise_for_status()
            tasks = answer.json()["tasks"]
            for task in tasks:
                mine = [p for p in task["predictions"] if p["model_version"] == version and p["result"]]
                if mine and not task["annotations"]:
                    total += 1
                    hits += mine[0]["result"][0]["value"]["choices"][0] == self.gold[task["id"]]
            if len(tasks) < 1000:
                break
            page += 1
        return hits / total if total else None


def run_size(url: str, token: str, database: str, size: int, retrains: int, labels: int, model: Path, work: Path) -> list[dict]:
    started = time.perf_counter()
    project = Project(url, token, size)
    import_s = time.perf_counter() - started
    print(f"[scale] {size} tasks imported in {import_s:.0f} s", flush=True)
    for task in random.Random(size).sample(sorted(project.gold), labels):
        project.annotate(task)
    settings = Settings(
        label_studio_url=url,
        label_studio_api_key=token,
        model_dir=str(work / f"models-{size}"),
        acquisition_model=str(model),
        acquisition_mode="frozen",
        max_length=48,
        torch_threads=2,
        retrain_delay=0,
    )
    rows = []
    for number in range(1, retrains + 1):
        summary = run_retrain(project.id, settings, MemoryState())
        timings = summary["timings"]
        versions = project.call("GET", f"/api/projects/{project.id}/model-versions/")
        served, next_s = project.next_task()
        row = {
            "size": size,
            "retrain": number,
            "import_s": round(import_s, 1),
            "read": summary["read"]["mode"],
            "ls_read_s": timings.get("ls_read_s"),
            "read_s": timings.get("read_s"),
            "fit_s": timings.get("fit_s"),
            "score_s": round(timings.get("inference_s", 0) + timings.get("select_s", 0), 3),
            "publish_s": round(timings.get("publish_s", 0) + timings.get("activate_s", 0), 3),
            "prune_s": timings.get("prune_s", 0.0),
            "total_s": timings["total_s"],  # to the new ordering; the prune comes after it
            "job_s": round(timings["total_s"] + timings.get("prune_s", 0.0), 3),
            "n_labeled": summary["n_labeled"],
            "mode": summary["acquisition_mode"],
            "n_scored": summary["n_scored"],
            "n_published": summary["n_published"],
            "prediction_rows": sum(versions.values()),
            "versions": len(versions),
            "db_mb": round(real_label_studio.postgres_size(database) / 2**20, 1),
            "next_ms": round(next_s * 1000, 1),
            "quality": (summary.get("quality") or {}).get("value"),
            "window_accuracy": project.window_accuracy(summary["version"]),
        }
        row["ls_part_s"] = round(row["ls_read_s"] + row["publish_s"] + row["prune_s"], 3)
        rows.append(row)
        print(f"[scale] {json.dumps(row)}", flush=True)
        project.annotate(served)
    return rows


def report(rows: list[dict], command: str) -> str:
    sizes = sorted({r["size"] for r in rows})
    lines = [
        "| tasks | retrain | read | LS read s | fit s | score s | publish s | prune s | LS part s | to the ordering s "
        "| with the prune s | prediction rows | versions | DB MB | GET /next ms | labels | estimate | window acc. |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["retrain"] in (1, 2, 3, 4, 10, 20) or r["retrain"] == max(x["retrain"] for x in rows if x["size"] == r["size"]):
            lines.append(
                f"| {r['size']:,} | {r['retrain']} | {r['read']} | {r['ls_read_s']:.2f} | {r['fit_s'] or 0:.2f} | "
                f"{r['score_s']:.2f} | {r['publish_s']:.2f} | {r['prune_s']:.2f} | {r['ls_part_s']:.2f} | "
                f"{r['total_s']:.1f} | {r.get('job_s', r['total_s']):.1f} | {r['prediction_rows']:,} | {r['versions']} | {r['db_mb']} | {r['next_ms']} | "
                f"{r['n_labeled']} | {_f(r['quality'])} | {_f(r['window_accuracy'])} |"
            )
    summary = [
        "",
        "| tasks | import s | retrain 1 (full read, embedding pass) s | median LS part of retrains 2.. s "
        "| retrain last / retrain 3 (to the ordering) | the same with the prune "
        "| median of the last 3 / median of retrains 2-4 (to the ordering) | prediction rows after the last |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for size in sizes:
        mine = [r for r in rows if r["size"] == size]
        steady = [r["ls_part_s"] for r in mine[1:]]
        third = mine[2] if len(mine) > 2 else None
        summary.append(
            f"| {size:,} | {mine[0]['import_s']} | {mine[0]['total_s']:.1f} | "
            f"{statistics.median(steady) if steady else float('nan'):.2f} | "
            f"{(mine[-1]['total_s'] / third['total_s']) if third else float('nan'):.2f} | "
            f"{(mine[-1].get('job_s', 0) / third.get('job_s', third['total_s'])) if third else float('nan'):.2f} | "
            f"{_median_ratio(mine):.2f} | {mine[-1]['prediction_rows']:,} |"
        )
    medians = {size: statistics.median([r["ls_part_s"] for r in rows if r["size"] == size][1:] or [float("nan")]) for size in sizes}
    if len(sizes) > 1:
        summary += ["", f"Median Label Studio part of retrains 2.. at {sizes[-1]:,} tasks / at {sizes[0]:,}: "
                    f"{medians[sizes[-1]] / medians[sizes[0]]:.2f}."]
    return (
        f"## Scale: a campaign of retrains against Label Studio on PostgreSQL ({', '.join(f'{s:,}' for s in sizes)} tasks)\n\n"
        f"{machine_line()}Label Studio {real_label_studio.LS_VERSION} on PostgreSQL (its own database, on the same machine). "
        f"Command: `{command}`.\n\n" + "\n".join(lines + summary) + "\n"
    )


def _median_ratio(rows: list[dict]) -> float:
    """The steady state against the start of the campaign, each side the median of three retrains
    (one retrain's seconds vary by a fifth on a shared machine)."""
    if len(rows) < 7:
        return float("nan")
    return statistics.median(r["total_s"] for r in rows[-3:]) / statistics.median(r["total_s"] for r in rows[1:4])


def _f(value) -> str:
    return "" if value is None else f"{value:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,50000,100000")
    parser.add_argument("--retrains", type=int, default=20)
    parser.add_argument("--labels", type=int, default=30)
    parser.add_argument("--model", default=str(MODELS / "minilm-l3"))
    parser.add_argument("--results", default="results/scale.jsonl")
    parser.add_argument("--no-write", action="store_true", help="do not write BENCHMARKS.md")
    parser.add_argument("--section", default="scale-postgres", help="the BENCHMARKS.md section written")
    parser.add_argument("--report-only", action="store_true", help="write the section from --results, run nothing")
    args = parser.parse_args()
    command = "python -m benchmarks.bench_scale " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in (("sizes", args.sizes), ("retrains", args.retrains), ("labels", args.labels))
    )
    results = Path(args.results)
    results.parent.mkdir(parents=True, exist_ok=True)
    if args.report_only:  # the rows of the last run of each size in the file
        runs: dict[int, list[dict]] = {}
        for row in map(json.loads, results.read_text().splitlines()):
            if row["retrain"] == 1:
                runs[row["size"]] = []
            runs.setdefault(row["size"], []).append(row)
        wanted = [int(s) for s in args.sizes.split(",")]
        write_section(args.section, report([r for size in wanted for r in runs.get(size, [])], command))
        return
    venv = real_label_studio.ensure_ls_venv()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="al-scale-") as tmp:
        work = Path(tmp)
        with real_label_studio.postgres_label_studio(venv, work) as (_, url, token, database):
            for size in [int(s) for s in args.sizes.split(",")]:
                mine = run_size(url, token, database, size, args.retrains, args.labels, Path(args.model), work)
                rows += mine
                with results.open("a") as handle:
                    for row in mine:
                        handle.write(json.dumps(row) + "\n")
                if not args.no_write:
                    write_section(args.section, report(rows, command))


if __name__ == "__main__":
    main()
