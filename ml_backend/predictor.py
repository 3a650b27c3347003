"""Answers for /predict (and for published predictions) from a saved model version.

A `Predictor` is one loaded version: the model, its label config and its strategy. The
`PredictorCache` keeps the promoted version of each project in memory and swaps it when a
newer one is promoted (checked with a stat of current.json per call, no restart needed).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path

import numpy as np

from al_core.data import Example
from al_core.exceptions import DataFormatError
from al_core.ls_format import (
    LabelConfig,
    parse_label_config,
    prediction_result,
    task_to_example,
)
from al_core.models import load_model
from al_core.strategies import get_strategy
from ml_backend.settings import Settings
from ml_backend.storage.store import UNTRAINED, VersionStore, embedding_cache, has_model

log = logging.getLogger(__name__)

STRATEGY_STATE = "strategy_state.npz"


def config_hash(label_config: str) -> str:
    return hashlib.sha1(label_config.encode("utf-8")).hexdigest()[:16]


def check_encodable(example: Example) -> None:
    """Refuse text the tokenizer cannot take: JSON may carry lone UTF-16 surrogates ("\\ud800")."""
    try:
        example.text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise DataFormatError(
            f"task {example.id}: the text is not valid Unicode ({error.reason} at character {error.start})"
        ) from None


def untrained_answer(n_tasks: int) -> list[dict]:
    """Before the first training: no regions, score 0.0 (an untrained model is maximally
    uncertain about every task, the bottom of the published scale), version "untrained"."""
    return [{"result": [], "score": 0.0, "model_version": UNTRAINED} for _ in range(n_tasks)]


def regions(example: Example, probs: np.ndarray, labels: list[str], config: LabelConfig) -> list[dict]:
    """Label Studio regions for one example from its probabilities (one row of ModelOutputs.probs).

    A choices region carries the model's confidence in it as its score; a multi-label text with no
    class above the threshold gets no region."""
    kind = config.task_kind
    result = prediction_result(example, config, kind.decode(probs, labels))
    if kind.region_confidence:
        for region in result:
            region["score"] = round(kind.confidence(probs), 4)
    return result


def save_strategy_state(strategy, folder: Path) -> None:
    """Keeps what a strategy learned in its round (md: centroids and precision; dlc: landmarks)."""
    state = strategy.state()
    if state:
        np.savez(folder / STRATEGY_STATE, **state)


def load_strategy_state(strategy, folder: Path) -> None:
    path = folder / STRATEGY_STATE
    if path.exists():
        with np.load(path) as state:
            strategy.restore({name: state[name] for name in state.files})


def cpu_has_amx_bf16() -> bool:
    """True on CPUs with AMX bfloat16 tiles (Linux flag amx_bf16), where bf16 matrix products are fast."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            return any(line.startswith("flags") and " amx_bf16" in line for line in cpuinfo)
    except OSError:
        return False


def inference_precision(requested: str, device_type: str) -> str:
    """The precision /predict runs in: on a GPU the model's own (mixed precision), on a CPU the
    requested one, `auto` choosing bf16 with AMX and int8 elsewhere (bf16 is slow without it)."""
    if device_type != "cpu":
        return "fp32"
    if requested != "auto":
        return requested
    return "bf16" if cpu_has_amx_bf16() else "int8"


def quantize_linear_layers(model) -> None:
    """int8 dynamic quantization of the model's Linear layers, for faster CPU inference."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch announces the move of this API to torchao
        model.model_ = torch.ao.quantization.quantize_dynamic(
            model.model_, {torch.nn.Linear}, dtype=torch.qint8
        )


class Predictor:
    """One saved version, ready to answer /predict."""

    def __init__(self, folder: Path, meta: dict, settings: Settings):
        self.folder = folder
        self.meta = meta
        self.version: str = meta["version"]
        self.config = parse_label_config(meta["label_config"])
        self.model = load_model(folder, settings.training_config(), embedding_cache(settings, meta.get("project")))
        self.precision = inference_precision(settings.inference_precision, self.model.device_.type)
        if self.precision == "int8":
            quantize_linear_layers(self.model)
        elif self.precision == "bf16":
            import torch

            self.model.model_ = self.model.model_.to(torch.bfloat16)
        self.labels = list(self.model.labels)
        self.strategy = get_strategy(meta["strategy"], seed=settings.seed)
        load_strategy_state(self.strategy, folder)
        self._lock = threading.Lock()  # fast tokenizers must not be shared by threads at once

    def predict(self, tasks: list[dict], config: LabelConfig | None = None) -> list[dict]:
        """One {"result", "score", "model_version"} per task, in task order."""
        return self.predict_and_score(tasks, config)[0]

    def predict_and_score(
        self, tasks: list[dict], config: LabelConfig | None = None
    ) -> tuple[list[dict], np.ndarray]:
        """The answers and the strategy's own informativeness per task (what the score cache holds)."""
        config = config or self.config
        examples = [task_to_example({"id": t.get("id"), "data": t.get("data")}, config) for t in tasks]
        for example in examples:
            check_encodable(example)
        if not examples:
            return [], np.zeros(0)
        with self._lock:
            outputs = self.model.infer(examples, probs=True, embeddings=self.strategy.needs_embeddings)
        informativeness = np.asarray(
            self.strategy.score_outputs(probs=outputs.probs, embeddings=outputs.embeddings, n=len(examples)),
            dtype=np.float64,
        )
        scores = self.strategy.published_scores(informativeness, config.task_kind.outcomes(len(self.labels)))
        answers = [
            {
                "result": regions(example, probs, self.labels, config),
                "score": round(float(score), 6),
                "model_version": self.version,
            }
            for example, probs, score in zip(examples, outputs.probs, scores, strict=True)
        ]
        return answers, informativeness


class PredictorCache:
    """The promoted version of each project, loaded once and swapped when a new one is promoted."""

    def __init__(self, store: VersionStore, settings: Settings):
        self.store = store
        self.settings = settings
        self._predictors: dict[str, Predictor] = {}
        self._model_less: dict[str, str] = {}  # project -> its promoted version, which has no model
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, project: str) -> Predictor | None:
        """The promoted version's predictor (loading it if needed), or None before the first version
        and while the promoted one has no model (a cold-start version)."""
        version = self.store.current_version(project)
        if version is None or self._model_less.get(project) == version:
            return None
        loaded = self._predictors.get(project)
        if loaded is not None and loaded.version == version:
            return loaded
        with self._guard:
            lock = self._locks.setdefault(project, threading.Lock())
        with lock:
            loaded = self._predictors.get(project)
            if loaded is None or loaded.version != version:
                meta = self.store.meta(project, version)
                if not has_model(meta):
                    self._model_less[project] = version
                    return None
                folder = self.store.version_dir(project, version)
                loaded = Predictor(folder, meta, self.settings)
                self._predictors[project] = loaded
                log.info("project %s: loaded model version %s", project, version)
        return loaded

    def warm(self, project: str) -> None:
        """Load the promoted version in the background (so /setup stays fast)."""
        version = self.store.current_version(project)
        loaded = self._predictors.get(project)
        if version is None or self._model_less.get(project) == version or (loaded is not None and loaded.version == version):
            return

        def load() -> None:
            try:
                self.get(project)
            except Exception:  # noqa: BLE001 - reported again by the /predict that needs it
                log.exception("project %s: cannot load version %s", project, version)

        threading.Thread(target=load, name=f"warm-{project}", daemon=True).start()
