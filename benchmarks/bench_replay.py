"""The live loop through the real protocol beside the simulator's in-process run of the same config.

`al-simulate replay` plays Label Studio's part (annotations, webhooks, /predict, Label Studio's
lowest-score-first sampling) against an `ml-backend` it starts with the live defaults; the
simulator runs the same config in-process through al_core.loop.run_round, from the same seed set
with the same batch size. Per iteration: the labels, the backend's time from the last annotation
to its new version, the accuracy of the pre-annotations it published on the unlabeled pool
(AL_QUERY_WINDOW 0, so that every unlabeled task has one), the held-out accuracy of the
backend's saved version (AL_KEEP_VERSIONS keeps them all) and of the simulator's acquisition
model on the config's test set, and the share of the first query (after the seed set, where
both start from the same labels) that both chose.
Writes the "replay" section of BENCHMARKS.md (--section).

    python -m benchmarks.bench_replay [--config simulate/configs/sst2-live.yaml] [--seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from benchmarks.report import machine_line, write_section


def backend_accuracy(model_dir: Path, version: str, test) -> float:
    """The held-out metric of a version the backend saved, loaded as the backend loads it."""
    from al_core.models import load_model
    from ml_backend.storage.layout import VERSION_RE
    from ml_backend.storage.store import VersionStore
    from simulate.runner import evaluate

    folder = VersionStore(model_dir).version_dir(VERSION_RE.match(version)["project"], version)
    return next(iter(evaluate(load_model(folder), test).values()))


def replay_and_simulate(config, data, work: Path, timeout: float) -> dict:
    """One seed: the replay against a started backend, then the simulator, on the same config."""
    from simulate.config import expand_path
    from simulate.replay import replay_config
    from simulate.runner import RESULTS, Simulation

    start = time.perf_counter()
    path = replay_config(
        config, None, work / "replay", timeout, progress=False,
        backend_env={
            "AL_ACQUISITION_MODEL": expand_path(config.acquisition.model),
            "AL_QUERY_WINDOW": "0",
            "AL_KEEP_VERSIONS": str(config.iterations + 2),  # every version stays on disk to be evaluated
            "AL_STRATEGY": config.strategy,  # the config's, as the simulator runs it (auto: the kind's default)
        },
    )
    replay_s = time.perf_counter() - start
    replayed = [json.loads(line) for line in path.read_text().splitlines()]
    for record in replayed:
        record["held_out"] = backend_accuracy(work / "replay" / "backend-models", record["version"], data.test)
    start = time.perf_counter()
    simulation = Simulation(config, work / "simulation", progress=False)
    records = [json.loads(line) for line in (simulation.run() / RESULTS).read_text().splitlines()]
    simulated = {r["iteration"]: r for r in records if r["successor"] == "tfidf-lr"}  # one row per iteration
    return {"replayed": replayed, "simulated": simulated, "replay_s": replay_s,
            "simulate_s": time.perf_counter() - start, "strategy": simulation.strategy}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="simulate/configs/sst2-live.yaml")
    parser.add_argument("--seeds", default="0,1,2", help="each seed: its own seed set, replayed and simulated")
    parser.add_argument("--timeout", type=float, default=900.0, help="longest wait for one retrain (s)")
    parser.add_argument("--strategy", default=None, help="instead of the config's (backend and simulator alike)")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--section", default="replay", help="the BENCHMARKS.md section written")
    args = parser.parse_args()

    from al_core.kinds import kind_of
    from simulate.config import parse_config
    from simulate.runner import load_data

    raw = yaml.safe_load(Path(args.config).read_text(encoding="utf-8"))
    # a cheap successor: the comparison is of the acquisition model, the one the backend runs
    raw["successors"] = [{"name": "tfidf-lr", "kind": "tfidf_lr"}]
    if args.strategy:
        raw["strategy"] = args.strategy
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = []
    for seed in seeds:
        config = parse_config({**raw, "seeds": [seed]}, source=args.config)
        data = load_data(config)
        with tempfile.TemporaryDirectory(prefix="al-replay-") as tmp:
            runs.append(replay_and_simulate(config, data, Path(tmp), args.timeout))

    metric = kind_of(data.kind).metric
    iterations = min(len(run["replayed"]) for run in runs)

    def mean(values) -> float:
        return float(np.mean(values))

    lines = [
        f"## Replay: the live loop through the protocol beside the simulator ({config.name})",
        "",
        machine_line(),
        f"`{args.config}`: {len(data.pool)} pool tasks, {len(data.test)} held-out, {config.acquisition.name}, "
        f"seed set {config.seed_set.count}, batches of {config.batch.count}, strategy {runs[0]['strategy']}, the "
        "backend's live defaults (AL_ACQUISITION_MODE auto) with AL_QUERY_WINDOW 0, fake Label Studio in-process. "
        f"Seeds {seeds} (each its own seed set), means over them; a replay took {mean([r['replay_s'] for r in runs]):.0f} s, "
        f"the simulator {mean([r['simulate_s'] for r in runs]):.0f} s.",
        "",
        f"| labels | backend: annotation -> version s | backend: published pre-annotations, pool {metric} "
        f"| backend version: held-out {metric} | simulator: held-out {metric} | mode (backend / simulator) |",
        "|---|---|---|---|---|---|",
    ]
    for t in range(iterations):
        rows = [run["replayed"][t] for run in runs]
        sims = [run["simulated"].get(t, {}) for run in runs]
        modes = sorted({s.get("acquisition_mode", "") for s in sims})
        lines.append(
            f"| {mean([r['labeled'] for r in rows]):.0f} | {mean([r['retrain_latency_s'] for r in rows]):.1f} | "
            f"{mean([r['pool_quality'] for r in rows]):.3f} | {mean([r['held_out'] for r in rows]):.3f} | "
            f"{mean([s.get('acquisition_score', np.nan) for s in sims]):.3f} | {'/'.join(modes)} |"
        )
    overlaps = [_first_query_overlap(run["replayed"], run["simulated"]) for run in runs]
    lines += ["", "First query after the seed set (both start from the same labels), tasks chosen by both: "
              + ", ".join(f"{both} of {asked}" for both, asked in overlaps) + "."]
    report = "\n".join(lines) + "\n"
    print(report)
    if not args.no_write:
        write_section(args.section, report)


def _first_query_overlap(replayed: list[dict], simulated: dict) -> tuple[int, int]:
    """(tasks of the simulator's first query that the backend also served first, query size)."""
    asked = simulated.get(0, {}).get("query_ids") or []
    served = replayed[1]["annotated_ids"] if len(replayed) > 1 else []
    return len(set(asked) & set(served)), len(asked)


if __name__ == "__main__":
    main()
