"""al-simulate: run a simulation config, report on results, or replay against a live backend."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="al-simulate", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run (or resume) the simulation a YAML config describes")
    run.add_argument("config", help="path to a YAML config (see simulate/configs/)")
    run.add_argument("--output", help="results folder (default: the config's output_dir or results/<name>)")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    report = sub.add_parser("report", help="plots, timing tables and a Markdown summary from results folders")
    report.add_argument("results", nargs="+", help="results folders (or a folder holding several)")
    report.add_argument("--out", default="report", help="where to write the report (default: report/)")
    replay = sub.add_parser(
        "replay", help="play Label Studio's part against a running backend (webhooks, /predict)"
    )
    replay.add_argument(
        "config", help="YAML config: its dataset, seed set, batch size, iterations, first seed"
    )
    group = replay.add_mutually_exclusive_group(required=True)
    group.add_argument(
        "--backend", help="URL of a running backend that reads Label Studio at the URL printed"
    )
    group.add_argument(
        "--start-backend",
        action="store_true",
        help="start `ml-backend` for the replay (its settings from the environment)",
    )
    replay.add_argument(
        "--ls-port", type=int, default=0, help="port of the Label Studio routes (default: any free)"
    )
    replay.add_argument("--out", default=None, help="folder of replay.jsonl (default: results/<name>-replay)")
    replay.add_argument("--timeout", type=float, default=600.0, help="longest wait for a retrain (s)")
    replay.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    from al_core.exceptions import ALError

    try:
        if args.command == "run":
            from simulate.config import load_config
            from simulate.runner import Simulation

            config = load_config(args.config)
            folder = Simulation(config, args.output, progress=not args.no_progress).run()
            print(f"results in {folder}")
        elif args.command == "replay":
            from pathlib import Path

            from simulate.config import load_config
            from simulate.replay import replay_config

            config = load_config(args.config)
            out = Path(args.out) if args.out else Path("results") / f"{config.name}-replay"
            path = replay_config(
                config,
                None if args.start_backend else args.backend,
                out,
                args.timeout,
                progress=not args.no_progress,
                ls_port=args.ls_port,
            )
            print(f"replay records in {path}")
        elif args.command == "report":
            from simulate.report import write_report

            print(f"report: {write_report(args.results, args.out)}")
    except ALError as error:
        print(f"al-simulate: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"al-simulate: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("al-simulate: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
