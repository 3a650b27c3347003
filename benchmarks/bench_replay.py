"""The live loop through the real protocol beside the simulator's in-process run of the same config.

`al-simulate replay` plays Label Studio's part (annotations, webhooks, /predict, Label Studio's
lowest-score-first sampling) against an `ml-backend` it starts with the live defaults; the
simulator runs the same config in-process through al_core.loop.run_round, from the same seed set
with the same batch size. Per iteration: the labels, the backend's time from the last annotation to
its new version, the accuracy of the pre-annotations it published on the unlabeled pool
(AL_QUERY_WINDOW 0, so that every unlabeled task has one), the held-out accuracy of the backend's
saved version and of the simulator's acquisition model on the config's test set, and the share of
the first query (after the seed set, where both start from the same labels) that both chose.
Writes the "replay" section of BENCHMARKS.md.

    python -m benchmarks.bench_replay [--config simulate/configs/sst2-live.yaml] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks.report import machine_line, write_section

MODELS = Path(os.environ.get("AL_MODELS_DIR", Path.home() / ".cache" / "al-models"))


def backend_accuracy(model_dir: Path, version: str, test) -> float:
    """The held-out metric of a version the backend saved, loaded as the backend loads it."""
    from al_core.models import load_model
    from ml_backend.store import VERSION_RE, VersionStore
    from simulate.runner import evaluate

    folder = VersionStore(model_dir).version_dir(VERSION_RE.match(version)["project"], version)
    return next(iter(evaluate(load_model(folder), test).values()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="simulate/configs/sst2-live.yaml")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=900.0, help="longest wait for one retrain (s)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("AL_MODELS_DIR", str(MODELS))

    from al_core.kinds import kind_of
    from simulate.config import parse_config
    from simulate.replay import replay_config
    from simulate.runner import RESULTS, Simulation, load_data

    raw = yaml.safe_load(Path(args.config).read_text(encoding="utf-8"))
    raw["seeds"] = [args.seed]
    # a cheap successor: the comparison is of the acquisition model, the one the backend runs
    raw["successors"] = [{"name": "tfidf-lr", "kind": "tfidf_lr"}]
    config = parse_config(raw, source=args.config)
    data = load_data(config)

    with tempfile.TemporaryDirectory(prefix="al-replay-") as tmp:
        work = Path(tmp)
        start = time.perf_counter()
        path = replay_config(
            config, None, work / "replay", args.timeout, progress=False,
            backend_env={"AL_ACQUISITION_MODEL": config.acquisition.model, "AL_QUERY_WINDOW": "0"},
        )
        replay_s = time.perf_counter() - start
        replayed = [json.loads(line) for line in path.read_text().splitlines()]
        models = work / "replay" / "backend-models"
        for record in replayed:
            record["held_out"] = backend_accuracy(models, record["version"], data.test)

        start = time.perf_counter()
        simulation = Simulation(config, work / "simulation", progress=False)
        records = [json.loads(line) for line in (simulation.run() / RESULTS).read_text().splitlines()]
        simulate_s = time.perf_counter() - start
    acquisition = {r["iteration"]: r for r in records if r["successor"] == "tfidf-lr"}  # one row per iteration

    first_query = _first_query_overlap(replayed, acquisition, data)
    metric = kind_of(data.kind).metric
    lines = [
        f"## Replay: the live loop through the protocol beside the simulator ({config.name}, seed {args.seed})",
        "",
        machine_line(),
        f"`{args.config}`: {len(data.pool)} pool tasks, {len(data.test)} held-out, {config.acquisition.name}, "
        f"seed set {config.seed_set.count}, batches of {config.batch.count}, strategy {simulation.strategy}, the "
        "backend's live defaults (AL_ACQUISITION_MODE auto) with AL_QUERY_WINDOW 0. Replay (backend started, "
        f"fake Label Studio in-process): {replay_s:.0f} s; simulator: {simulate_s:.0f} s.",
        "",
        f"| labels | backend: annotation -> version s | backend: published pre-annotations, pool {metric} "
        f"| backend version: held-out {metric} | simulator: mode | simulator: held-out {metric} |",
        "|---|---|---|---|---|---|",
    ]
    for record in replayed:
        sim = acquisition.get(record["iteration"], {})
        lines.append(
            f"| {record['labeled']} | {record['retrain_latency_s']:.1f} | {record['pool_quality']:.3f} | "
            f"{record['held_out']:.3f} | {sim.get('acquisition_mode', '')} | "
            f"{sim.get('acquisition_score', float('nan')):.3f} |"
        )
    lines += ["", f"First query after the seed set: {first_query}."]
    report = "\n".join(lines) + "\n"
    print(report)
    if not args.no_write:
        write_section("replay", report)


def _first_query_overlap(replayed: list[dict], acquisition: dict, data) -> str:
    """How many of the simulator's first query the replay's backend also served first."""
    asked = acquisition.get(0, {}).get("query_ids") or []
    served = replayed[1]["annotated_ids"] if len(replayed) > 1 else []
    if not asked or not served:
        return "not measured (a single iteration)"
    both = len(set(asked) & set(served))
    return f"{both} of {len(asked)} tasks chosen by both"


if __name__ == "__main__":
    main()
