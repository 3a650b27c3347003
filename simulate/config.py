"""The simulation config: one YAML file, validated into pydantic models with clear errors.

A config names the dataset, the acquisition model, one or more successors, optional PLASM,
the query strategy, how the pool is scored (full / UPS / random subsampling), the seed and
batch sizes, the number of iterations and the seeds. See docs/simulate.md for a full example.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from al_core.acquisition import AcquisitionConfig
from al_core.config import TrainingConfig
from al_core.exceptions import ALError
from al_core.ups import SubsamplingConfig


def expand_path(value: str) -> str:
    """Expand ~ and $VARS; $AL_MODELS_DIR defaults to ~/.cache/al-models (where fetch-models.sh puts models)."""
    env = {"AL_MODELS_DIR": str(Path.home() / ".cache" / "al-models"), **os.environ}
    for name in ("AL_MODELS_DIR", "AL_SHARED_DATA"):
        if name in env:
            value = value.replace("${" + name + "}", env[name]).replace("$" + name, env[name])
    return os.path.expanduser(os.path.expandvars(value))


class ConfigError(ALError):
    """The simulation config is missing, unreadable or invalid; the message says where."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class DatasetConfig(_Strict):
    """Where the pool and the test set come from.

    Either `name` (a dataset under the shared data root, read by simulate.datasets.shared_dataset)
    or `pool_path` (+ `test_path`) read by al_core.readers.read_dataset. Without a test split,
    `test_size` rows are split off the pool (AG News has a single 7,600-row file).
    """

    name: str | None = None
    root: str | None = None
    pool_split: str = "train"
    test_split: str | None = "test"
    pool_path: str | None = None
    test_path: str | None = None
    format: str | None = None
    options: dict = Field(default_factory=dict)
    test_size: int | None = Field(default=None, gt=0)
    pool_size: int | None = Field(default=None, gt=0)
    test_limit: int | None = Field(default=None, gt=0)
    split_seed: int = 0

    @model_validator(mode="after")
    def _one_source(self):
        if (self.name is None) == (self.pool_path is None):
            raise ValueError("give either dataset.name (a shared dataset) or dataset.pool_path, not both")
        has_test = self.test_path is not None if self.pool_path else self.test_split is not None
        if not has_test and self.test_size is None:
            raise ValueError("no test split: set dataset.test_size to split a test set off the pool")
        return self


class ModelSpec(_Strict):
    """A model: `transformer` (any Hugging Face folder or id), or a classical one.

    kinds: transformer, tfidf_lr (classification), glove_bilstm (tagging), and, for successors
    only, `acquisition` (the matched pair: the acquisition model trained on every label, as the
    other successors are; the round's own model when its quality estimate held no label out).
    """

    name: str | None = None
    kind: Literal["transformer", "tfidf_lr", "glove_bilstm", "acquisition"] = "transformer"
    model: str | None = None
    training: dict = Field(default_factory=dict)
    params: dict = Field(default_factory=dict)

    @model_validator(mode="after")
    def _model_given(self):
        if self.kind == "transformer" and not self.model:
            raise ValueError("a transformer needs `model` (a folder or model id)")
        if self.name is None:
            self.name = Path(self.model).name if self.model else self.kind
        return self


class PlasmConfig(_Strict):
    """Pseudo-labeling after annotation: the teacher labels the rest of the pool, a filter drops
    the doubtful pseudo-labels, and each successor is trained again on gold + pseudo."""

    teacher: ModelSpec
    filter: Literal["tracin", "uncertainty", "none"] = "uncertainty"
    holdout_fraction: float = Field(default=0.2, gt=0, lt=1)
    drop_fraction: float | None = Field(default=None, ge=0, lt=1)
    # plasm-export's successor check, for each successor: the successor itself trained on the
    # non-held-out gold alone and with the kept pseudo-labels; they go into its training set only
    # when they win on the held-out gold by more than check_margin
    check: bool = True
    check_margin: float = Field(default=0.005, ge=0)
    # PLASM runs once annotation ends, so the last iteration is what it is judged on; every k-th
    # iteration as well when every > 0 (for curves), at the cost of a teacher per iteration
    every: int = Field(default=1, ge=0)


class Amount(_Strict):
    """A seed or batch size: exactly one of a count, a share of the pool, a word budget or a
    share of the pool's words (tagging: the paper uses 2% of the tokens)."""

    count: int | None = Field(default=None, gt=0)
    fraction: float | None = Field(default=None, gt=0, le=1)
    words: int | None = Field(default=None, gt=0)
    word_fraction: float | None = Field(default=None, gt=0, le=1)

    @model_validator(mode="after")
    def _exactly_one(self):
        given = [k for k in ("count", "fraction", "words", "word_fraction") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one of count, fraction, words, word_fraction (got {given or 'none'})"
            )
        return self

    @property
    def in_words(self) -> bool:
        return self.words is not None or self.word_fraction is not None

    def resolve(self, pool_size: int, pool_words: int) -> int:
        """The amount as a number of tasks or of words, for this pool."""
        if self.count is not None:
            return self.count
        if self.words is not None:
            return self.words
        if self.fraction is not None:
            return max(1, round(self.fraction * pool_size))
        return max(1, round(self.word_fraction * pool_words))


class SimulationConfig(_Strict):
    name: str
    output_dir: str | None = None
    dataset: DatasetConfig
    acquisition: ModelSpec
    successors: list[ModelSpec] = Field(min_length=1)
    plasm: PlasmConfig | None = None
    strategy: str = "auto"  # auto: the task kind's, as the backend's AL_STRATEGY=auto
    # the engine's configs, the live backend's too: the same defaults and bounds
    scoring: SubsamplingConfig = Field(default_factory=SubsamplingConfig)
    acquisition_mode: AcquisitionConfig = Field(default_factory=AcquisitionConfig)
    seed_set: Amount
    batch: Amount
    iterations: int = Field(gt=0)
    seeds: list[int] = Field(min_length=1)
    training: dict = Field(default_factory=dict)
    overlap_k: list[int] = Field(default_factory=lambda: [10, 20, 30, 40, 50])
    source: str | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _checks(self):
        _check_training_keys("training", self.training)
        for where, spec in [
            ("acquisition", self.acquisition),
            *((f"successors.{s.name}", s) for s in self.successors),
        ]:
            _check_training_keys(f"{where}.training", spec.training)
        if self.plasm is not None:
            _check_training_keys("plasm.teacher.training", self.plasm.teacher.training)
        if self.acquisition.kind == "acquisition":
            raise ValueError("acquisition.kind cannot be `acquisition`")
        names = [s.name for s in self.successors]
        if len(set(names)) != len(names):
            raise ValueError(f"successor names must be unique, got {names}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be unique, got {self.seeds}")
        return self

    def results_dir(self) -> Path:
        """Where results go: output_dir, or results/<name>; relative paths start at the working directory."""
        if self.output_dir:
            return Path(expand_path(self.output_dir)).absolute()
        return Path.cwd() / "results" / self.name


def _check_training_keys(where: str, values: dict) -> None:
    """Training overrides must be TrainingConfig fields within its bounds."""
    known = set(TrainingConfig.fields())
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{where}: unknown training setting(s) {unknown}; known: {sorted(known)}")
    try:
        TrainingConfig(**values)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise ValueError(f"{where}: {problems}") from None


def _format_errors(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        lines.append(f"  {where}: {message}")
    return "\n".join(lines)


def parse_config(data: dict, source: str | None = None) -> SimulationConfig:
    """Validate a config dict; raise ConfigError listing every problem with its field path."""
    where = source or "config"
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: the config must be a mapping of settings, got {type(data).__name__}")
    try:
        config = SimulationConfig.model_validate({**data, "source": source})
    except ValidationError as error:
        raise ConfigError(f"{where}: invalid config:\n{_format_errors(error)}") from None
    return config


def load_config(path: str | Path) -> SimulationConfig:
    """Read and validate a YAML config file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the config: {error.strerror or error}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    return parse_config(data, source=str(path))
