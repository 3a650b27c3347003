"""The fine-tuned base: a transformer from the transformers Auto* classes, any model id or local folder.

`TransformerModel` is what the fine-tuned model of every kind shares: fit with the project's
schedule (al_core.training), probabilities and embeddings in one batched pass, and save/load
as safetensors (never pickle). A kind's module gives its tokenization, head and probabilities.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer

from al_core.config import TrainingConfig
from al_core.data import Example
from al_core.exceptions import ModelLoadError, NotFittedError
from al_core.inference import run_batched
from al_core.kinds import TaskKind
from al_core.models.base import MODEL_META, ModelOutputs, read_model_meta
from al_core.training import CheckpointCallback, resolve_device, seed_everything, train_module


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The mean of each row's hidden vectors over its sub-tokens (padding left out): (batch, hidden)."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)


def _quiet_transformers() -> None:
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:  # weight writing/loading bars come from huggingface_hub in recent versions
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    except ImportError:
        pass


class TransformerModel:
    """A transformer fine-tuned whole on the labeled examples; its kind's subclass says how a task is
    tokenized (`_encode`), what the head learns and how its logits become probabilities."""

    kind: str  # the task kind's name (saved with the model)
    task_kind: TaskKind  # its behaviour: decoding, metric, learning rate
    _auto_class: type
    mode = "finetune"
    scores_whole_pool = False  # scoring means a forward pass per task: UPS decides how many
    _head_options: dict = {}  # extra settings of a fresh head (its loss)
    # Whether AL_BALANCE_CLASSES weights the classes (the frozen head's regression, the fine-tuned
    # loss): for one label per text (BENCHMARKS.md, class balance), not for label sets or tags.
    _balances_classes = False

    def __init__(self, model_name_or_path: str | Path, labels: list[str], config: TrainingConfig | None = None):
        if not labels:
            raise ValueError("a model needs at least one label")
        if len(set(labels)) != len(labels):
            raise ValueError(f"labels must be unique: {labels}")
        self.model_name_or_path = str(model_name_or_path)
        self.labels = list(labels)
        self.label_to_id = {label: i for i, label in enumerate(self.labels)}
        self.config = (config or TrainingConfig()).for_kind(self.task_kind)
        self.device_ = resolve_device(self.config.device)
        self.model_: torch.nn.Module | None = None
        self.tokenizer_ = None
        self.train_losses_: list[float] = []

    # -- loading -------------------------------------------------------------------------
    def _load(self, source: str, fresh_head: bool) -> None:
        _quiet_transformers()
        try:
            tokenizer = AutoTokenizer.from_pretrained(source)
            extra = {}
            if fresh_head:
                extra = dict(
                    num_labels=len(self.labels),
                    id2label=dict(enumerate(self.labels)),
                    label2id=self.label_to_id,
                    ignore_mismatched_sizes=True,
                    **self._head_options,
                )
            module = self._module_from(source, fresh_head, extra)
        except (OSError, ValueError, KeyError) as error:
            raise ModelLoadError(f"cannot load model {source!r}: {error}") from error
        if not getattr(tokenizer, "is_fast", False):
            raise ModelLoadError(f"model {source!r} has no fast tokenizer (needed for word alignment)")
        self.tokenizer_ = tokenizer
        self.model_ = module.to(self.device_).eval()

    def _module_from(self, source: str, fresh_head: bool, head_options: dict) -> torch.nn.Module:
        return self._auto_class.from_pretrained(source, use_safetensors=True, **head_options)

    def _start_head(self, features: list[dict]) -> None:
        """First weights of a new head before fine-tuning; a random start unless a kind says otherwise."""

    def _prepare_loss(self, features: list[dict]) -> None:
        """What the loss needs to know of this training set (a kind's class weights); nothing by default."""

    def _balanced(self) -> bool:
        return self._balances_classes and self.config.balance_classes

    def _require_fitted(self) -> torch.nn.Module:
        if self.model_ is None:
            raise NotFittedError(f"{type(self).__name__} is used before fit() or load()")
        return self.model_

    # -- training ------------------------------------------------------------------------
    def fit(self, examples: list[Example], on_checkpoint: CheckpointCallback | None = None):
        """Fine-tunes on labeled `examples`: from the pretrained weights (the default) or warm."""
        if not examples:
            raise ValueError("no labeled examples to train on")
        seed_everything(self.config.seed)  # the new head's initialisation depends on it
        fresh = self.config.from_scratch or self.model_ is None
        if fresh:
            self._load(self.model_name_or_path, fresh_head=True)
        features = self._encode(examples, with_labels=True)
        if fresh:
            self._start_head(features)
        self._prepare_loss(features)
        callback = None
        if on_checkpoint is not None:
            def callback(step: int, learning_rate: float) -> None:
                self.model_.eval()
                on_checkpoint(self, step, learning_rate)
                self.model_.train()
        self.train_losses_ = train_module(
            self.model_, features, self.config, self.tokenizer_.pad_token_id, self.device_, callback
        )
        return self

    # -- inference -----------------------------------------------------------------------
    def needs_forward(self, examples: list[Example]) -> list[Example]:
        """The examples that `infer` runs the network on: all of them (a frozen head: the uncached)."""
        return list(examples)

    def infer(self, examples: list[Example], probs: bool = True, embeddings: bool = False) -> ModelOutputs:
        """One pass over `examples` giving what is asked, in input order."""
        module = self._require_fitted()
        out = ModelOutputs(n=len(examples))
        if not examples or not (probs or embeddings):
            if probs:
                out.probs = self._empty_probs()
            if embeddings:
                out.embeddings = np.zeros((0, module.config.hidden_size), dtype=np.float32)
            return out
        features = self._encode(examples, with_labels=False)

        def per_batch(outputs, batch, indices):
            token_probs = self._activate(outputs.logits.float()).cpu().numpy() if probs else None
            vectors = self._embeddings(outputs, batch).float().cpu().numpy() if embeddings else None
            return [
                (None if token_probs is None else token_probs[k], None if vectors is None else vectors[k])
                for k in range(len(indices))
            ]

        rows = run_batched(
            module, features, self.config.eval_batch_size, self.tokenizer_.pad_token_id, self.device_,
            per_batch, use_amp=self.config.mixed_precision, output_hidden_states=embeddings,
        )
        if probs:
            out.probs = self._probs_from_rows([r[0] for r in rows], features)
        if embeddings:
            out.embeddings = np.stack([r[1] for r in rows])
        return out

    @staticmethod
    def _embeddings(outputs, batch) -> torch.Tensor:
        """A task's vector for md and dlc: the [CLS] vector of the last hidden layer (n, hidden)."""
        return outputs.hidden_states[-1][:, 0, :]

    def embed(self, examples: list[Example]) -> np.ndarray:
        """The vectors `infer` gives as embeddings, (n, hidden)."""
        return self.infer(examples, probs=False, embeddings=True).embeddings

    def predict_proba(self, examples: list[Example]):
        return self.infer(examples).probs

    # -- persistence ---------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        """Writes weights (safetensors), tokenizer and a small metadata file into `folder`."""
        module = self._require_fitted()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        module.save_pretrained(folder, safe_serialization=True)
        self.tokenizer_.save_pretrained(folder)
        self._write_meta(folder)
        return folder

    def _write_meta(self, folder: Path, **extra) -> None:
        """The small metadata file `load` reads: kind, labels, base model, training config."""
        meta = {
            "kind": self.kind,
            "labels": self.labels,
            "base_model": self.model_name_or_path,
            "training": dataclasses.asdict(self.config),
            **extra,
        }
        (folder / MODEL_META).write_text(json.dumps(meta, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, folder: str | Path, config: TrainingConfig | None = None):
        meta = read_model_meta(folder)
        if meta["kind"] != cls.kind:
            raise ModelLoadError(f"{folder} holds a {meta['kind']} model, not a {cls.kind} model")
        config = config or TrainingConfig(**meta.get("training", {}))
        model = cls(meta["base_model"], meta["labels"], config)
        model._load(str(folder), fresh_head=False)
        return model

    # -- per-kind parts ------------------------------------------------------------------
    @staticmethod
    def _activate(logits: torch.Tensor) -> torch.Tensor:
        """Probabilities from the head's logits: a softmax over the labels."""
        return torch.softmax(logits, dim=-1)

    def encode(self, examples: list[Example], with_labels: bool) -> list[dict]:
        """Token ids (and label ids) of `examples` as this model reads them, its text cut included."""
        return self._encode(examples, with_labels)

    def _encode(self, examples: list[Example], with_labels: bool) -> list[dict]:
        raise NotImplementedError

    def _probs_from_rows(self, rows: list[np.ndarray], features: list[dict]):
        raise NotImplementedError

    def _empty_probs(self):
        raise NotImplementedError


# Tokenizing a whole 10 MB text only to keep its first max_length tokens costs seconds of CPU.
# A sub-token covers at most about 100 characters (WordPiece turns longer words into [UNK]), so
# the text is cut there first; only a text padded with long runs of whitespace could lose
# tokens it would otherwise have kept.
CHARS_PER_TOKEN = 100


def clip_text(text: str, max_length: int) -> str:
    return text[: max_length * CHARS_PER_TOKEN]


def clip_words(words: list[str], max_length: int) -> list[str]:
    """The words that can reach the first max_length sub-tokens (a word gives at least one,
    except a word of characters the tokenizer drops: twice as many are kept for those)."""
    return [w[: max_length * CHARS_PER_TOKEN] for w in words[: max_length * 2]]
