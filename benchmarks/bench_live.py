"""The live loop, annotation by annotation: how long after each annotation the ordering that covers
it is served, and how good the served model is, with the fine-tune beside the retrains
(AL_FINETUNE_LANE=background, the default) and inside them (inline), and the annotator taking tasks in
random order instead of the served one (random: the background lane's backend), in one run.

  python -m benchmarks.bench_live [--sets agnews,sst2] [--pool 6600] [--start 20] [--labels 200]
                                  [--pace 3] [--lanes background,inline,random] [--model minilm-l6]
                                  [--seed 0]

One annotator against the backend (embedded mode, its defaults but AL_KEEP_VERSIONS, which keeps
every version for the evaluation) and the fake Label Studio of the tests, which serves the next task
as Label Studio 1.23 does (the lowest score of the project's current version; Label Studio's own
speed is not in these figures): `--start` tasks labeled at random, a retrain (the one-time
embedding pass of the pool, timed apart), then one gold label every `--pace` seconds on the task
served next, each sent as an ANNOTATION_CREATED webhook. Per annotation: the seconds until the
project is pointed at a version trained on it (p50, p95, max, by label range). Per checkpoint (every
20 labels): the version the annotator was served by, its acquisition mode, macro F1, accuracy and
lowest per-class recall on held-out texts; and the labels each ordered lane needed to reach the random
lane's last macro F1. The figures go into BENCHMARKS.md, section live-loop.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from al_core.kinds import kind_of
from al_core.models import load_model
from benchmarks.bench_backend import MODELS, percentile, settings_for
from benchmarks.bench_saving import Campaign, load_set
from benchmarks.report import machine_line, write_section
from ml_backend.app import create_app
from ml_backend.storage.layout import VERSION_RE
from ml_backend.storage.store import VersionStore
from testkit.fake_label_studio import FakeLabelStudio

PROJECT = 1


def label_config(labels: list[str]) -> str:
    choices = "".join(f'<Choice value="{label}"/>' for label in labels)
    return (
        '<View><Text name="text" value="$text"/>'
        f'<Choices name="label" toName="text" choice="single">{choices}</Choices></View>'
    )


def webhook(task_id: int, config: str) -> dict:
    return {
        "action": "ANNOTATION_CREATED",
        "annotation": {"id": task_id, "task": task_id, "project": PROJECT},
        "task": {"id": task_id, "project": PROJECT},
        "project": {"id": PROJECT, "label_config": config},
    }


class Switches:
    """The project's model_version in the fake Label Studio, polled: (time, version) at each change."""

    def __init__(self, fake: FakeLabelStudio, state):
        self.fake = fake
        self.state = state
        self.seen: list[tuple[float, str]] = []
        self.verdicts: dict[float, dict] = {}  # the background lane's fine-tunes, by when they finished
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            version = (self.fake.projects.get(PROJECT) or {}).get("model_version")
            if version and VERSION_RE.match(version) and (not self.seen or self.seen[-1][1] != version):
                self.seen.append((time.perf_counter(), version))
            verdict = self.state.status(str(PROJECT)).get("last_finetune")
            if verdict and verdict.get("finished_at") not in self.verdicts:
                self.verdicts[verdict.get("finished_at")] = verdict
            time.sleep(0.05)

    def current(self) -> str | None:
        return self.seen[-1][1] if self.seen else None

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def run_lane(data: Campaign, lane: str, args, folder: Path) -> dict:
    """One campaign with the fine-tune lane `lane` (random: the background lane, the annotator taking
    the tasks in random order); returns its latencies and checkpoints."""
    config = label_config(data.labels)
    fake = FakeLabelStudio()
    url = fake.start()
    fake.add_project(PROJECT, config)
    ids = fake.add_tasks(PROJECT, [e.text for e in data.pool])
    gold = {task_id: e.label for task_id, e in zip(ids, data.pool, strict=True)}
    settings = settings_for(
        url, folder / lane, args.model, finetune_lane="background" if lane == "random" else lane,
        keep_versions=100000, retrain_delay=0.0, seed=42 + args.seed,
    )
    app = create_app(settings)
    client = app.test_client()
    store = VersionStore(settings.model_dir)
    switches = Switches(fake, app.extensions["al_backend"].state)
    try:
        first = random.Random(args.seed).sample(ids, args.start)
        shuffled = iter(random.Random(args.seed + 1).sample(sorted(set(ids) - set(first)), len(ids) - len(first)))
        for task_id in first:
            fake.choose(task_id, gold[task_id], from_name="label")
        start = time.perf_counter()
        client.post("/webhook", json=webhook(first[-1], config))
        while switches.current() is None:
            time.sleep(0.1)
        first_s = time.perf_counter() - start
        taken = list(first)  # the labeled tasks, in the order they were labeled
        made: list[tuple[int, float, str | None]] = []  # (labels after it, when, version served before it)
        for n in range(args.start + 1, args.labels + 1):
            began = time.perf_counter()
            served = switches.current()
            task_id = next(shuffled) if lane == "random" else fake.next_task(PROJECT)["id"]
            fake.choose(task_id, gold[task_id], from_name="label")
            taken.append(task_id)
            made.append((n, time.perf_counter(), served))
            client.post("/webhook", json=webhook(task_id, config))
            time.sleep(max(0.0, args.pace - (time.perf_counter() - began)))
        final_version = switches.current()
        deadline = time.perf_counter() + args.drain
        backend = app.extensions["al_backend"]
        while time.perf_counter() < deadline:  # the retrains (and fine-tunes) the last labels asked for
            status = backend.state.status(str(PROJECT))
            if not (status.get("pending") or status.get("running") or status.get("finetuning")):
                break
            time.sleep(0.5)
        time.sleep(0.5)
        backend.runner.stop()
    finally:
        switches.stop()
        fake.stop()
    labeled_of = {v: store.meta(PROJECT, v)["n_labeled"] for _, v in switches.seen}
    latencies = []
    for n, when, _ in made:
        covered = next((t for t, v in switches.seen if t >= when and labeled_of[v] >= n), None)
        latencies.append((n, None if covered is None else covered - when))
    checkpoints = {n: served for n, _, served in made if (n - 1) % 20 == 0}  # served when label n was made
    checkpoints[args.labels] = final_version
    evaluated = {}
    kind = kind_of(data.kind)
    gold_test = [kind.gold(e) for e in data.test]
    for n, version in sorted(checkpoints.items()):
        if version is None:
            continue
        meta = store.meta(PROJECT, version)
        model = load_model(store.version_dir(PROJECT, version), settings.training_config())
        report = kind.report(gold_test, model.predict(data.test), kind.config_labels(data.labels))
        evaluated[n - 1 if n != args.labels else n] = {
            "version_labels": meta["n_labeled"],
            "mode": meta["acquisition_mode"],
            "macro_f1": report["value"],
            "accuracy": report["figures"].get("accuracy", report["value"]),
            "lowest_recall": min(figures["recall"] for figures in report["per_label"].values()),
        }
    # the labeled class mix: the share of the commonest class among the first n labels
    for n, checkpoint in evaluated.items():
        counts = Counter(gold[task_id] for task_id in taken[:n])
        checkpoint["top_share"] = max(counts.values()) / n
    modes = [store.meta(PROJECT, v)["acquisition_mode"] for v in store.versions(PROJECT)]
    verdicts = [
        f"{v['n_labeled']}: {v['status']} ({v.get('value')} vs {v.get('incumbent_value')} on {v.get('n_held_out')}, "
        f"{v['finished_at'] - v['started_at']:.0f} s)"
        if v.get("status") in ("adopted", "rejected") else f"{v.get('status')}"
        for _, v in sorted(switches.verdicts.items(), key=lambda kv: kv[0] or 0)
    ]
    return {"first_s": first_s, "latencies": latencies, "checkpoints": evaluated, "modes": modes, "verdicts": verdicts}


def latency_rows(name: str, lane: str, result: dict, ranges: list[tuple[int, int]]) -> list[str]:
    rows = []
    for low, high in ranges:
        values = [s for n, s in result["latencies"] if low <= n <= high and s is not None]
        missing = sum(1 for n, s in result["latencies"] if low <= n <= high and s is None)
        if not values:
            continue
        rows.append(
            f"| {name} | {lane} | {low}-{high} | {percentile(values, 50):.1f} s | {percentile(values, 95):.1f} s | "
            f"{max(values):.1f} s | {missing} |"
        )
    return rows


def labels_saved(name: str, results: dict[str, dict]) -> list[str]:
    """Per ordered lane: the first checkpoint whose macro F1 reaches the random lane's at its last one."""
    randomly = results["random"]["checkpoints"]
    last = max(randomly)
    target = randomly[last]["macro_f1"]
    lines = []
    for lane, result in results.items():
        if lane == "random":
            continue
        reached = next((n for n, c in sorted(result["checkpoints"].items()) if c["macro_f1"] >= target), None)
        lines.append(
            f"- {name}, {lane}: random order's {target:.3f} at {last} labels reached at "
            + (f"{reached} labels ({1 - reached / last:.0%} fewer)" if reached else f"no count up to {last}")
        )
    return lines


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", default="agnews,sst2")
    parser.add_argument("--pool", type=int, default=6600)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--start", type=int, default=20)
    parser.add_argument("--labels", type=int, default=200)
    parser.add_argument("--pace", type=float, default=3.0, help="seconds between two annotations")
    parser.add_argument("--drain", type=float, default=600, help="seconds to wait for the last retrains")
    parser.add_argument("--lanes", default="background,inline,random")
    parser.add_argument("--model", default=str(MODELS / "minilm-l6"))
    parser.add_argument(
        "--seed", type=int, default=0,
        help="campaign seed: the first labels, the random lane's order and the backend's AL_SEED (42 + seed)",
    )
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    started = time.time()
    lanes = args.lanes.split(",")
    step = max(20, (args.labels - args.start) // 4)
    ranges = [(low, min(low + step - 1, args.labels)) for low in range(args.start + 1, args.labels + 1, step)]
    latency = ["| set | lane | labels | p50 | p95 | max | not covered by the end |", "|---|---|---|---|---|---|---|"]
    quality = ["| set | labels | " + " | ".join(f"{lane}: version (mode) F1 / acc / low rec / top" for lane in lanes) + " |",
               "|---|---|" + "---|" * len(lanes)]
    firsts, verdicts, saved = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.sets.split(","):
            data = load_set(name, args.pool, args.test)
            results = {}
            for lane in lanes:
                results[lane] = run_lane(data, lane, args, Path(tmp) / name)
                print(name, lane, results[lane]["checkpoints"], flush=True)
                latency += latency_rows(name, lane, results[lane], ranges)
                firsts.append(f"{name} {lane} {results[lane]['first_s']:.0f} s")
                if results[lane]["verdicts"]:
                    verdicts.append(f"- {name}, {lane}: " + "; ".join(results[lane]["verdicts"]))
            counts = sorted({n for r in results.values() for n in r["checkpoints"]})
            for n in counts:
                cells = []
                for lane in lanes:
                    c = results[lane]["checkpoints"].get(n)
                    cells.append(
                        "-" if c is None
                        else f"{c['version_labels']} ({c['mode']}) {c['macro_f1']:.3f} / {c['accuracy']:.3f} / "
                        f"{c['lowest_recall']:.3f} / {c['top_share']:.2f}"
                    )
                quality.append(f"| {name} | {n} | " + " | ".join(cells) + " |")
            if "random" in results:
                saved += labels_saved(name, results)
            text = "\n".join([
                "## live-loop",
                "",
                machine_line(),
                f"{(time.time() - started) / 60:.0f} min. {Path(args.model).name}; pool {args.pool} tasks; one "
                f"annotator, one gold label every {args.pace:g} s on the task served next; the backend's defaults "
                f"in the embedded mode; the fake Label Studio; {args.test} held-out texts; campaign seed {args.seed}.",
                "",
                "Annotation -> the project pointed at a version trained on it (the first retrain, the one-time "
                "embedding pass of the pool, apart: " + ", ".join(firsts) + "):",
                "",
                *latency,
                "",
                "The version serving when the annotator had made so many labels (its labels and acquisition mode), "
                "its macro F1, accuracy and lowest per-class recall on the held-out texts, and the commonest class's share "
                "of the labels made (top):",
                "",
                *quality,
                "",
                "Labels to reach the random lane's macro F1 at its last label count (the first checkpoint at or "
                "above it; one campaign each):",
                "",
                *saved,
                "",
                "The background lane's fine-tunes (labels: verdict (held-out macro F1 of a head over the new "
                "encoder vs over the one served, on so many held-out tasks; past the first fine-tune rejected only "
                "when lower by more than AL_FINETUNE_REPLACE_MARGIN, never on fewer than AL_FINETUNE_MIN_HELD_OUT "
                "tasks), seconds):",
                "",
                *verdicts,
            ])
            if not args.no_write:
                write_section("live-loop", text)
            print(text, flush=True)


if __name__ == "__main__":
    main()
