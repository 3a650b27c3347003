"""The backend's settings: one frozen object, read from the environment once per process.

The names Label Studio's ML backends already use are kept as they are (LABEL_STUDIO_URL,
LABEL_STUDIO_API_KEY, REDIS_URL, MODEL_DIR, LOG_LEVEL); every other setting is AL_ and the
field name in upper case (AL_PORT, AL_STRATEGY, AL_UPS_GAMMA ...), so that generic names
such as PORT or SEED in the environment cannot change the backend by accident.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from al_core.acquisition import AcquisitionConfig
from al_core.config import TrainingConfig

_TRAINING = TrainingConfig()
_ACQUISITION = AcquisitionConfig()
# Settings that are TrainingConfig fields of the same name (warm_start sets from_scratch).
TRAINING_FIELDS = (
    "learning_rate", "epochs", "min_steps", "max_steps", "batch_size", "max_length", "seed", "device",
    "eval_batch_size", "freeze_embeddings", "group_by_length",
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        frozen=True, extra="ignore", case_sensitive=False, env_prefix="AL_", populate_by_name=True
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
        "INFO", validation_alias=AliasChoices("LOG_LEVEL", "log_level"), description="Python logging level."
    )

    # --- Label Studio ---
    label_studio_url: str | None = Field(
        None,
        validation_alias=AliasChoices("LABEL_STUDIO_URL", "label_studio_url"),
        description="Label Studio's base URL, used by the retrain job to read tasks and publish scores.",
    )
    label_studio_api_key: str | None = Field(
        None,
        validation_alias=AliasChoices("LABEL_STUDIO_API_KEY", "label_studio_api_key"),
        description="API key for LABEL_STUDIO_URL: a legacy token or a personal access token (PAT).",
    )
    ls_timeout: float = Field(60.0, gt=0, description="Timeout in seconds of one call to Label Studio.")
    ls_retries: int = Field(
        3, ge=0, description="Retries (with exponential backoff) of a failed call to Label Studio."
    )
    ls_page_size: int = Field(
        1000, ge=1, description="Tasks per page when reading a project from Label Studio."
    )
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
        "are deleted in bulk after each retrain (never the project's current one). 0 keeps every version.",
    )

    # --- queue ---
    redis_url: str | None = Field(
        None,
        validation_alias=AliasChoices("REDIS_URL", "redis_url"),
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
        validation_alias=AliasChoices("MODEL_DIR", "model_dir"),
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
    # Training: the defaults are the engine's (al_core.training.TrainingConfig), the one source.
    epochs: int = Field(_TRAINING.epochs, ge=1, description="Training epochs per retrain (see min_steps).")
    min_steps: int = Field(
        _TRAINING.min_steps,
        ge=0,
        description="Fewest optimizer steps per fine-tuning retrain: a few dozen labels at 3 epochs are a "
        "handful of steps, too few to learn from (docs/backend.md, training schedule).",
    )
    max_steps: int | None = Field(_TRAINING.max_steps, ge=1, description="Most optimizer steps per retrain.")
    freeze_embeddings: bool = Field(
        _TRAINING.freeze_embeddings,
        description="Keep the word embeddings fixed while training: about a third less time per step on "
        "a CPU for a small model (its embedding matrix is most of its weights), same accuracy within noise "
        "(BENCHMARKS.md, backend loop).",
    )
    group_by_length: bool = Field(
        _TRAINING.group_by_length,
        description="Train on batches of texts of similar length: much less padding per step on short, "
        "varied texts, same accuracy within noise (BENCHMARKS.md, backend loop).",
    )
    max_length: int = Field(_TRAINING.max_length, ge=8, description="Longest input in sub-word tokens.")
    batch_size: int = Field(_TRAINING.batch_size, ge=1, description="Training batch size.")
    eval_batch_size: int = Field(
        _TRAINING.eval_batch_size,
        ge=1,
        description="Inference batch size (rows sorted by length). On a CPU small batches pad less: /predict of "
        "100 tasks was 1.2x to 1.6x faster than with 64 (BENCHMARKS.md); on a GPU use more.",
    )
    learning_rate: float | None = Field(
        _TRAINING.learning_rate,
        gt=0,
        description="Fine-tuning learning rate; unset: 5e-5 for classification, 3e-4 for tagging.",
    )
    seed: int = Field(_TRAINING.seed, description="Random seed of training and sampling.")
    device: str | None = Field(
        _TRAINING.device, description="Torch device; default: cuda with mixed precision if available, else cpu."
    )
    inference_precision: Literal["auto", "fp32", "int8", "bf16"] = Field(
        "auto",
        description="Precision of /predict and of scoring new tasks on a CPU: int8 (dynamic quantization of the "
        "linear layers, probabilities within about 0.01), bf16 (weights in bfloat16, within about 0.001; fast only "
        "on CPUs with AMX), fp32; auto: bf16 where the CPU has AMX, else int8. Retrains and their pool scoring "
        "always run in full precision.",
    )
    torch_threads: int = Field(0, ge=0, description="Torch CPU threads (0: torch's default).")

    # --- acquisition model: defaults from al_core.acquisition.AcquisitionConfig ---
    acquisition_mode: Literal["auto", "frozen", "finetune"] = Field(
        _ACQUISITION.mode,
        description="frozen: a logistic regression on the encoder's cached vectors (retrains in milliseconds, "
        "every task scored each time); finetune: the whole model fine-tuned; auto: frozen below "
        "AL_FROZEN_BELOW_CLASSIFICATION / AL_FROZEN_BELOW_TAGGING labeled tasks, finetune from there on.",
    )
    frozen_below_classification: int = Field(
        _ACQUISITION.frozen_below_classification, ge=0, description="auto: classification labels before fine-tuning."
    )
    frozen_below_tagging: int = Field(
        _ACQUISITION.frozen_below_tagging, ge=0, description="auto: tagging labels before fine-tuning."
    )
    cv_folds: int = Field(
        _ACQUISITION.cv_folds, ge=2, description="Quality estimate of a frozen head: k-fold cross-validation."
    )
    holdout_share: float = Field(
        _ACQUISITION.holdout_share,
        ge=0,
        lt=1,
        description="Quality estimate of a fine-tuned version: the share of labeled tasks held out of its "
        "training (the same tasks every version, by a hash of their ids); 0: no estimate.",
    )

    # --- active learning ---
    strategy: str = Field(
        "auto",
        description="Query strategy: auto (lc for classification, mnlp for NER), lc, margin, entropy, md, "
        "random (classification), mnlp, random (NER).",
    )
    ups_mode: Literal["full", "ups", "random"] = Field(
        "ups",
        description="Pool scoring: full (every task each time), ups (uncertainty-based subsampling), random.",
    )
    ups_gamma: float = Field(
        0.1, gt=0, le=1, description="UPS: fraction of the pool re-scored per iteration."
    )
    ups_temperature: float = Field(0.01, gt=0, description="UPS: temperature T of the sampling.")
    ups_full_first: int = Field(2, ge=0, description="UPS: first iterations that score the whole pool.")
    ups_full_every: int = Field(
        4, ge=0, description="UPS: score the whole pool every N-th iteration (0: never)."
    )
    stability_sample: int = Field(
        200,
        ge=0,
        description="Stopping signal: unlabeled tasks (a fixed, hash-chosen sample) every version predicts, "
        "so consecutive versions can be compared (0: off).",
    )
    stop_kappa: float = Field(
        0.99,
        gt=0,
        le=1,
        description="Stopping signal: mean Cohen's kappa between consecutive versions that says stop.",
    )
    stop_window: int = Field(
        3, ge=1, description="Stopping signal: number of last consecutive-version pairs averaged."
    )

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

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, value: str) -> str:
        from al_core.strategies import available_strategies

        value = value.strip().lower()
        known = ["auto", *available_strategies()]
        if value not in known:
            raise ValueError(f"unknown strategy {value!r}; expected one of {', '.join(known)}")
        return value

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
        return TrainingConfig(
            **{name: getattr(self, name) for name in TRAINING_FIELDS}, from_scratch=not self.warm_start
        )

    def acquisition_config(self) -> AcquisitionConfig:
        return AcquisitionConfig(
            mode=self.acquisition_mode,
            frozen_below_classification=self.frozen_below_classification,
            frozen_below_tagging=self.frozen_below_tagging,
            cv_folds=self.cv_folds,
            holdout_share=self.holdout_share,
        )

    @property
    def embedded(self) -> bool:
        """True when no Redis is configured: jobs and cache run inside the web process."""
        return not self.redis_url


PLAIN_NAMES = {"label_studio_url", "label_studio_api_key", "redis_url", "model_dir", "log_level"}


def env_name(field: str) -> str:
    """The environment variable of a setting."""
    return field.upper() if field in PLAIN_NAMES else f"AL_{field.upper()}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read from the environment on first use (never at import)."""
    return Settings()
