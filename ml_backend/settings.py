"""The backend's settings: one frozen object, read from the environment once per process.

The names Label Studio's ML backends already use are kept as they are (LABEL_STUDIO_URL,
LABEL_STUDIO_API_KEY, REDIS_URL, MODEL_DIR, LOG_LEVEL); every other setting is AL_ and the
field name in upper case (AL_PORT, AL_STRATEGY, AL_UPS_GAMMA ...), so that generic names
such as PORT or SEED in the environment cannot change the backend by accident.

Training, pool subsampling, the acquisition mode, the query strategy and publishing are
settings of their config models (al_core.config and its neighbours, `PublishingConfig`
here), each field defined there once with its default, bounds and description, and embedded
here flat, so that every variable keeps its name: AL_EPOCHS, AL_UPS_GAMMA, AL_ACQUISITION_MODE.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

from pydantic import Field, create_model, field_validator, model_validator
from pydantic.dataclasses import dataclass as pydantic_dataclass
from pydantic_settings import BaseSettings, SettingsConfigDict

from al_core.acquisition import AcquisitionConfig
from al_core.config import STRICT, StrategyConfig, TrainingConfig, field_definitions
from al_core.ups import SubsamplingConfig


@pydantic_dataclass(frozen=True, config=STRICT)
class PublishingConfig:
    """How a retrain's scores reach Label Studio."""

    publish_batch_size: int = Field(
        10000,
        ge=1,
        description="Predictions per bulk import call when publishing scores to Label Studio (large batches "
        "are several times faster on a default Label Studio 1.23).",
    )
    publish_first: int = Field(
        1000,
        ge=1,
        description="Freshly scored predictions published before the project is pointed at a new version (the "
        "most informative first); the rest follow. Bounds the time to a refreshed ordering when every task "
        "was re-scored.",
    )
    query_window: int = Field(
        200,
        ge=0,
        description="Predictions a retrain publishes under its new version: the most informative freshly "
        "scored tasks, which Label Studio's uncertainty sampling serves lowest score first (past them it "
        "serves at random). Size it above the annotations made between two retrains by all annotators "
        "(e.g. 2 x annotators x AL_RETRAIN_EVERY). 0 publishes every unlabeled task under every version.",
    )
    keep_prediction_versions: int = Field(
        3,
        ge=0,
        description="Model versions whose predictions stay in Label Studio; older versions of this backend "
        "are deleted in bulk after each retrain (never the project's current one; while another retrain is "
        "pending, only once twice this number are held). 0 keeps every version.",
    )


@dataclass(frozen=True)
class Embedded:
    """A config model whose fields are settings, under their own names or those `rename` gives."""

    config: type
    rename: Mapping[str, str] = field(default_factory=dict)
    exclude: frozenset[str] = frozenset()

    def fields(self) -> dict[str, tuple]:
        return field_definitions(self.config, self.rename, self.exclude)

    def build(self, settings: BaseSettings, **values: Any):
        """The config these settings ask for (`values`: the excluded fields)."""
        given = {
            name: getattr(settings, self.rename.get(name, name))
            for name in self.config.__pydantic_fields__
            if name not in self.exclude
        }
        return self.config(**given, **values)


TRAINING = Embedded(TrainingConfig, exclude=frozenset({"from_scratch"}))  # AL_WARM_START decides it
SUBSAMPLING = Embedded(SubsamplingConfig, rename={name: f"ups_{name}" for name in SubsamplingConfig.__pydantic_fields__})
ACQUISITION = Embedded(AcquisitionConfig, rename={"mode": "acquisition_mode"})
STRATEGY = Embedded(StrategyConfig)
PUBLISHING = Embedded(PublishingConfig)
EMBEDDED = (TRAINING, SUBSAMPLING, ACQUISITION, STRATEGY, PUBLISHING)

# The embedded fields, as a model the settings inherit them from.
_EmbeddedSettings = create_model(
    "_EmbeddedSettings", __module__=__name__, **{k: v for embedded in EMBEDDED for k, v in embedded.fields().items()}
)


class Settings(BaseSettings, _EmbeddedSettings):
    # An alias, even the field's own name, is read without the AL_ prefix: LABEL_STUDIO_URL. The
    # cli_ keys shape the options `ml-backend` generates (ml_backend.cli); nothing parses the command
    # line unless asked, so an `rq worker`'s arguments are never read.
    model_config = SettingsConfigDict(
        frozen=True,
        extra="ignore",
        case_sensitive=False,
        env_prefix="AL_",
        cli_implicit_flags=True,
        cli_kebab_case=True,
        cli_show_env_vars=True,
    )

    # --- serving ---
    host: str = Field("127.0.0.1", description="Interface the HTTP server binds to.")
    port: int = Field(9090, ge=1, le=65535, description="HTTP port (Label Studio's usual ML backend port).")
    server_threads: int = Field(8, ge=1, description="Request threads of the HTTP server.")
    max_request_mb: float = Field(
        64.0, gt=0, description="Largest request body in MB (larger ones are refused with 413)."
    )
    basic_auth_user: str | None = Field(
        None, description="When set with AL_BASIC_AUTH_PASSWORD, every route but /health asks for basic auth."
    )
    basic_auth_password: str | None = Field(None, description="Password of AL_BASIC_AUTH_USER.")
    log_level: str = Field(
        "INFO", validation_alias="log_level", description="Python logging level."
    )

    # --- Label Studio ---
    label_studio_url: str | None = Field(
        None,
        validation_alias="label_studio_url",
        description="Label Studio's base URL, used by the retrain job to read tasks and publish scores.",
    )
    label_studio_api_key: str | None = Field(
        None,
        validation_alias="label_studio_api_key",
        description="API key for LABEL_STUDIO_URL: a legacy token or a personal access token (PAT).",
    )
    ls_timeout: float = Field(60.0, gt=0, description="Timeout in seconds of one call to Label Studio.")
    ls_retries: int = Field(
        3, ge=0, description="Retries (with exponential backoff) of a failed call to Label Studio."
    )
    ls_page_size: int = Field(
        1000, ge=1, description="Tasks per page when reading a project from Label Studio."
    )

    # --- queue ---
    redis_url: str | None = Field(
        None,
        validation_alias="redis_url",
        description="Redis URL. When set, retrains run in an `rq worker` and the score cache lives in Redis; "
        "when unset, an in-process background runner and a file cache in MODEL_DIR are used.",
    )
    rq_queue: str = Field("al-backend", description="RQ queue the retrain jobs go to.")
    job_timeout: int = Field(3600, ge=1, description="Longest a retrain job may run (seconds).")
    split_chunk: int = Field(
        2000,
        ge=0,
        description="With REDIS_URL: a retrain's scoring pass over more tasks than this (a full-scoring "
        "iteration, a new encoder's first embedding pass) is split into chunks of this size, run as RQ jobs "
        "by every idle `rq worker` of the queue and by the retrain's own worker, then merged. 0: never split.",
    )
    retrain_delay: float = Field(
        1.0,
        ge=0,
        description="Seconds a retrain waits before reading Label Studio, so that a burst of annotations "
        "lands in one retrain and the last annotation is committed.",
    )

    # --- models ---
    model_dir: str = Field(
        "model_store",
        validation_alias="model_dir",
        description="Folder holding the model versions and the file score cache.",
    )
    acquisition_model: str = Field(
        "models/minilm-l6",
        description="Acquisition model: a local folder (relative to the working directory) or a model id.",
    )
    keep_versions: int = Field(
        3, ge=1, description="Model versions kept per project (older ones are deleted)."
    )
    warm_start: bool = Field(
        False, description="Start each retrain from the previous version instead of the pretrained weights."
    )
    inference_precision: Literal["auto", "fp32", "int8", "bf16"] = Field(
        "auto",
        description="Precision of /predict and of scoring new tasks on a CPU: int8 (dynamic quantization of the "
        "linear layers, probabilities within about 0.01), bf16 (weights in bfloat16, within about 0.001; fast only "
        "on CPUs with AMX), fp32; auto: bf16 where the CPU has AMX, else int8. Retrains and their pool scoring "
        "always run in full precision.",
    )
    torch_threads: int = Field(0, ge=0, description="Torch CPU threads (0: torch's default).")

    # --- retrain trigger ---
    retrain_trigger: Literal["annotation", "start_training"] = Field(
        "annotation",
        description="annotation: retrain on annotation created/updated/deleted and on START_TRAINING; "
        "start_training: only on START_TRAINING (Label Studio's Train button or min_annotations_to_start_training).",
    )
    retrain_every: int = Field(
        1, ge=1, description="With retrain_trigger=annotation: retrain after this many annotation events."
    )
    min_labels: int = Field(2, ge=1, description="Labeled tasks needed before the first training.")

    @field_validator("log_level")
    @classmethod
    def _known_log_level(cls, value: str) -> str:
        levels = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
        if value.strip().upper() not in levels:
            raise ValueError(f"unknown log level {value!r}; expected one of {', '.join(levels)}")
        return value.strip().upper()

    @model_validator(mode="after")
    def _auth_pair(self) -> Settings:
        if bool(self.basic_auth_user) != bool(self.basic_auth_password):
            raise ValueError("AL_BASIC_AUTH_USER and AL_BASIC_AUTH_PASSWORD must be set together")
        return self

    def training_config(self) -> TrainingConfig:
        """The engine's training config these settings ask for."""
        return TRAINING.build(self, from_scratch=not self.warm_start)

    def subsampling_config(self) -> SubsamplingConfig:
        return SUBSAMPLING.build(self)

    def acquisition_config(self) -> AcquisitionConfig:
        return ACQUISITION.build(self)

    @property
    def embedded(self) -> bool:
        """True when no Redis is configured: jobs and cache run inside the web process."""
        return not self.redis_url

    def for_jobs(self) -> dict[str, Any]:
        """What the web process hands the jobs it queues (`job_settings`): every setting it resolved, so
        that an `rq worker` runs with the web's values whatever its own environment. RQ keeps a job's
        arguments in Redis, which already holds the work (tasks, scores, models' outputs) and is
        trusted with it; the Label Studio API key goes along (a job reads and writes Label Studio),
        the basic-auth pair does not (a worker serves no HTTP)."""
        return {**self.model_dump(), "basic_auth_user": None, "basic_auth_password": None}


SECRETS = {"label_studio_api_key", "basic_auth_password"}
PLAIN_NAMES = {name for name, info in Settings.model_fields.items() if info.validation_alias}


def env_name(field: str) -> str:
    """The environment variable of a setting."""
    return field.upper() if field in PLAIN_NAMES else f"AL_{field.upper()}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read from the environment on first use (never at import)."""
    return Settings()


def job_settings(values: Mapping[str, Any] | None) -> Settings:
    """A queued job's settings: those the web process resolved (`Settings.for_jobs`), or, for a job
    queued without them, the worker's environment."""
    return get_settings() if values is None else Settings(**values)
