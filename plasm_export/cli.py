"""plasm-export: a training set for any successor model, from an annotated Label Studio project.

    plasm-export --export project.json --teacher bert-base-uncased --out plasm-out
    plasm-export --url http://127.0.0.1:8080 --api-key KEY --project 3 --teacher ./mpnet --out plasm-out \
        --filter tracin --format jsonl,csv,ls --check-successor ./electra

Errors the user can fix are printed as "plasm-export: error: <message>" with exit code 2.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from al_core.config import TrainingConfig
from al_core.exceptions import ALError
from al_core.plasm import available_filters

PROG = "plasm-export"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Train a teacher on the gold labels of an annotated Label Studio project, pseudo-label "
        "the unlabeled tasks, filter them (PLASM) and write a training set for any successor model.",
    )
    source = parser.add_argument_group(
        "where the project comes from (an export file, or a running Label Studio)"
    )
    source.add_argument("--export", metavar="FILE", help="Label Studio JSON export (export with all tasks)")
    source.add_argument(
        "--label-config",
        metavar="FILE",
        help="the project's label config XML (for --export; guessed from annotations if absent)",
    )
    source.add_argument(
        "--url",
        default=os.environ.get("LABEL_STUDIO_URL"),
        help="Label Studio URL (default: $LABEL_STUDIO_URL)",
    )
    source.add_argument(
        "--api-key",
        default=os.environ.get("LABEL_STUDIO_API_KEY"),
        help="API key: legacy token or personal access token (default: $LABEL_STUDIO_API_KEY)",
    )
    source.add_argument("--project", type=int, metavar="ID", help="project id in Label Studio")

    plasm = parser.add_argument_group("PLASM")
    plasm.add_argument(
        "--teacher",
        required=True,
        metavar="MODEL",
        help="teacher model: a Hugging Face model id or a local folder",
    )
    plasm.add_argument(
        "--filter",
        default="tracin",
        choices=available_filters(),
        help="pseudo-label filter (default: tracin)",
    )
    plasm.add_argument(
        "--drop-fraction",
        type=float,
        metavar="F",
        help="share of pseudo-labels to drop (default: 1 - the teacher's held-out score)",
    )
    plasm.add_argument(
        "--holdout",
        type=float,
        default=0.2,
        metavar="F",
        help="share of gold tasks kept aside to score the teacher (default: 0.2)",
    )
    plasm.add_argument(
        "--check-successor",
        metavar="MODEL",
        help="also train this successor with and without the pseudo-labels and compare on held-out gold",
    )

    train = parser.add_argument_group(
        "training (teacher and successor; defaults: the engine's, the same as the live backend's)"
    )
    defaults = TrainingConfig()
    train.add_argument("--epochs", type=int, default=defaults.epochs)
    train.add_argument("--min-steps", type=int, default=defaults.min_steps, help="fewest optimizer steps")
    train.add_argument("--max-steps", type=int, default=defaults.max_steps, help="most optimizer steps")
    train.add_argument(
        "--learning-rate", type=float, default=defaults.learning_rate,
        help="default: 5e-5 for classification, 3e-4 for tagging",
    )
    train.add_argument("--batch-size", type=int, default=defaults.batch_size)
    train.add_argument("--max-length", type=int, default=defaults.max_length)
    train.add_argument("--eval-batch-size", type=int, default=defaults.eval_batch_size)
    train.add_argument("--seed", type=int, default=defaults.seed)
    train.add_argument(
        "--group-by-length",
        action=argparse.BooleanOptionalAction,
        default=defaults.group_by_length,
        help="train on batches of texts of similar length: less padding, faster on short varied texts",
    )
    train.add_argument(
        "--freeze-embeddings",
        action=argparse.BooleanOptionalAction,
        default=defaults.freeze_embeddings,
        help="keep the word embeddings fixed while training (faster on a CPU)",
    )
    train.add_argument("--device", default=defaults.device, help="cpu, cuda, cuda:1 ... (default: cuda when present)")

    output = parser.add_argument_group("output")
    output.add_argument(
        "--out", required=True, metavar="DIR", help="output folder (written at once at the end)"
    )
    output.add_argument(
        "--format",
        default="jsonl",
        metavar="LIST",
        help="comma-separated: jsonl (every task), csv (classification training set), "
        "conll (tagging training set), ls (Label Studio import with pseudo-labels as predictions), "
        "or all (default: jsonl)",
    )
    output.add_argument("--overwrite", action="store_true", help="replace the output folder if it exists")
    output.add_argument(
        "--work-dir",
        metavar="DIR",
        help="where the teacher and its checkpoints are kept to resume (default: <out>.work)",
    )
    output.add_argument(
        "--remove-work", action="store_true", help="delete the work folder after a successful run"
    )
    output.add_argument("--no-progress", action="store_true", help="no progress bars or messages")
    return parser


# Flags that are TrainingConfig fields of the same name (with - for _).
TRAINING_FLAGS = (
    "epochs", "min_steps", "max_steps", "learning_rate", "batch_size", "max_length", "eval_batch_size", "seed",
    "group_by_length", "freeze_embeddings", "device",
)


def training_config(args) -> TrainingConfig:
    """The engine's TrainingConfig with the values the flags gave (their defaults are its own)."""
    return TrainingConfig(**{name: getattr(args, name) for name in TRAINING_FLAGS})


def _load_project(args, parser: argparse.ArgumentParser):
    from plasm_export.source import from_export_file, from_label_studio, read_label_config_file

    if args.export and args.project is not None:
        parser.error("give either --export FILE or --url/--api-key/--project, not both")
    if args.export:
        xml = read_label_config_file(args.label_config) if args.label_config else None
        return from_export_file(args.export, xml)
    if args.project is None:
        parser.error("give --export FILE, or --project ID with --url and --api-key")
    if not args.url or not args.api_key:
        parser.error("--project needs --url and --api-key (or LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY)")
    return from_label_studio(args.url, args.api_key, args.project, progress=not args.no_progress)


def run(args, parser: argparse.ArgumentParser) -> Path:
    from plasm_export.pipeline import ExportSettings, run_plasm
    from plasm_export.report import report_files
    from plasm_export.writers import check_formats, write_outputs

    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise ALError(f"{out} already exists; pass --overwrite to replace it")
    if args.drop_fraction is not None and not 0.0 <= args.drop_fraction <= 1.0:
        raise ALError(f"--drop-fraction must be between 0 and 1, got {args.drop_fraction}")
    project = _load_project(args, parser)
    formats = check_formats([f.strip() for f in args.format.split(",") if f.strip()], project.config.kind)
    training = training_config(args)
    settings = ExportSettings(
        teacher=args.teacher,
        filter=args.filter,
        drop_fraction=args.drop_fraction,
        holdout=args.holdout,
        training=training,
        successor=args.check_successor,
        progress=not args.no_progress,
    )
    work = Path(args.work_dir) if args.work_dir else out.with_name(out.name + ".work")
    result = run_plasm(project, settings, work)
    written = write_outputs(result, out, formats, report_files(result), overwrite=args.overwrite)
    if args.remove_work:
        shutil.rmtree(work, ignore_errors=True)
    if not args.no_progress:
        print(f"wrote {', '.join(p.name for p in written)} to {out}", file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        run(args, parser)
    except KeyboardInterrupt:
        print(
            f"{PROG}: interrupted; run the same command again to resume from the trained teacher",
            file=sys.stderr,
        )
        return 130
    except (ALError, OSError, ValueError) as error:
        message = str(error)
        if isinstance(error, OSError) and error.filename and error.strerror:
            message = f"{error.filename}: {error.strerror}"
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
