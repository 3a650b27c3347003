"""`ml-backend`: serve the active-learning backend for Label Studio.

Every setting is read from the environment (names in --help) and may be overridden by the
option of the same name. The server is gunicorn (one process, threads); the embedded retrain
runner, when REDIS_URL is unset, lives in that process.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from pydantic import ValidationError

from ml_backend.settings import Settings, env_name

SECRETS = {"label_studio_api_key", "basic_auth_password"}


def _default_text(field) -> str:
    default = field.default
    return "unset" if default is None else str(default)


def _env_of(loc: tuple) -> str:
    if not loc:
        return "settings"
    name = str(loc[0])
    return env_name(name) if name in Settings.model_fields else name.upper()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ml-backend",
        description="Label Studio ML backend for cheap deep active learning. Each option can also be set by "
        "the environment variable named in brackets; options win over the environment.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="The retrain jobs run in this process unless REDIS_URL is set; then start workers with\n"
        "  rq worker --worker-class ml_backend.worker.Worker --url $REDIS_URL al-backend\n"
        "in an environment holding the same settings.",
    )
    for name, field in Settings.model_fields.items():
        parser.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            default=None,
            metavar=name.upper(),
            help=f"[{env_name(name)}] {field.description} (default: {_default_text(field)})",
        )
    parser.add_argument("--print-settings", action="store_true", help="print the resolved settings and exit")
    return parser


def load_settings(args: argparse.Namespace) -> Settings:
    overrides = {
        name: getattr(args, name) for name in Settings.model_fields if getattr(args, name) is not None
    }
    return Settings(**overrides)


def serve(settings: Settings) -> None:
    from gunicorn.app.base import BaseApplication

    from ml_backend.app import create_app

    loaded = {}

    def worker_exit(server, worker) -> None:
        """The server process stops (SIGTERM, SIGINT): end it here, cleanly. Left to the interpreter's
        exit, a retrain thread still inside torch made the C++ runtime abort ("terminate called
        without an active exception", SIGABRT). The embedded state is already on disk, so a retrain
        cut short is queued again at the next start."""
        app = loaded.get("app")
        if app is not None:
            app.extensions["al_backend"].shutdown()
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)

    class Server(BaseApplication):
        def load_config(self):
            self.cfg.set("bind", f"{settings.host}:{settings.port}")
            self.cfg.set("workers", 1)  # the embedded runner and the model cache live in this one process
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("threads", settings.server_threads)
            self.cfg.set("timeout", 300)  # a /predict of thousands of tasks may take a while
            self.cfg.set("loglevel", settings.log_level.lower())
            self.cfg.set("accesslog", "-")
            if "control_socket_disable" in self.cfg.settings:  # gunicorn >= 25: no shared ~/.gunicorn socket
                self.cfg.set("control_socket_disable", True)
            self.cfg.set("worker_exit", worker_exit)

        def load(self):
            loaded["app"] = create_app(settings)
            return loaded["app"]

    Server().run()


def model_dir_problem(folder: Path) -> str | None:
    """Why the model folder cannot hold versions, or None (created when missing)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        return f"cannot create {folder}: {error.strerror}"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"{folder} is not writable"
    return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(args)
    except ValidationError as error:
        problems = "; ".join(f"{_env_of(e['loc'])}: {e['msg']}" for e in error.errors())
        print(f"ml-backend: invalid settings: {problems}", file=sys.stderr)
        return 2
    if args.print_settings:
        for name, value in settings.model_dump().items():
            shown = "***" if name in SECRETS and value else value
            print(f"{env_name(name)}={'' if shown is None else shown}")
        return 0
    problem = model_dir_problem(Path(settings.model_dir))
    if problem:
        print(f"ml-backend: invalid settings: MODEL_DIR: {problem}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    serve(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
