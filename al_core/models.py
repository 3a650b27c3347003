"""Transformer models over the transformers Auto* classes, for any model id or local folder.

`TransformerClassifier` (sequence classification), `TransformerMultiLabel` (a sigmoid per class)
and `TransformerTagger` (token classification, one tag per word, read at each word's first
sub-token) share one wrapper:
fit with the project's schedule, class probabilities, [CLS] embeddings for Mahalanobis, and
save/load as safetensors (never pickle).

The two classifiers read the mean of the encoder's last layer (`MeanPooledClassifier`), and a
new head starts as the logistic regression of the labeled texts' pretrained vectors (a linear
probe, then fine-tuning); a version saved with a [CLS] head (*ForSequenceClassification) still loads.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
from transformers import (
    AutoModel,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoTokenizer,
)
from transformers.modeling_outputs import SequenceClassifierOutput

from al_core.data import CLASSIFICATION, MULTILABEL, TAGGING, Example
from al_core.exceptions import ModelLoadError, NotFittedError
from al_core.heads import HEAD_C, BinaryHeads, LinearHead
from al_core.inference import run_batched
from al_core.kinds import KINDS, kind_of
from al_core.training import CheckpointCallback, TrainingConfig, resolve_device, seed_everything, train_module

MODEL_META = "al_model.json"
# The linear head of a mean-pooled classifier, beside its encoder's weights.
POOLED_HEAD = "pooled_head.safetensors"


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The mean of each row's hidden vectors over its sub-tokens (padding left out): (batch, hidden)."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)


class MeanPooledClassifier(torch.nn.Module):
    """A text classifier: the encoder's last hidden layer averaged over the text, then one linear layer.

    Sentence encoders (the packaged MiniLM and MPNet) are trained for this pooling, not for the
    [CLS] pooler of *ForSequenceClassification, and a linear layer on it can start as the logistic
    regression of the frozen head (`TransformerClassifier.fit`): on 40 labels that start gave
    fine-tuning several points more than a random one (BENCHMARKS.md, learning curves).
    """

    def __init__(self, encoder: torch.nn.Module, n_labels: int, multi_label: bool):
        super().__init__()
        self.encoder = encoder
        self.config = encoder.config
        self.classifier = torch.nn.Linear(encoder.config.hidden_size, n_labels)
        self.multi_label = multi_label

    @classmethod
    def from_pretrained(cls, source: str, n_labels: int, multi_label: bool, fresh: bool) -> MeanPooledClassifier:
        """The encoder of `source` with a new head (`fresh`), or a saved classifier with its own."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        module = cls(AutoModel.from_pretrained(source, use_safetensors=True), n_labels, multi_label)
        if not fresh:
            try:
                module.classifier.load_state_dict(load_file(str(Path(source) / POOLED_HEAD)))
            except (SafetensorError, RuntimeError) as error:
                raise ValueError(f"cannot read {POOLED_HEAD}: {error}") from error
        return module

    def save_pretrained(self, folder: str | Path, safe_serialization: bool = True) -> None:
        from safetensors.torch import save_file

        self.encoder.save_pretrained(folder, safe_serialization=True)
        save_file({k: v.contiguous() for k, v in self.classifier.state_dict().items()}, str(Path(folder) / POOLED_HEAD))

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.encoder.get_input_embeddings()

    def pooled(self, input_ids, attention_mask, token_type_ids=None, output_hidden_states=False):
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        out = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=output_hidden_states, **extra
        )
        return mean_pool(out.last_hidden_state, attention_mask), out

    def forward(self, input_ids, attention_mask, token_type_ids=None, labels=None, output_hidden_states=False):
        vectors, out = self.pooled(input_ids, attention_mask, token_type_ids, output_hidden_states)
        logits = self.classifier(vectors)
        loss = None
        if labels is not None:
            if self.multi_label:
                loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
            else:
                loss = torch.nn.functional.cross_entropy(logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states)


@dataclasses.dataclass
class ModelOutputs:
    """What one pass over a set of examples gives: probabilities and/or embeddings, in input order.

    `probs` is an (n, K) array for classification, an (n, K, 2) array for multi-label
    classification (each class's [P(absent), P(present)]) and a list of (n_words, K) arrays for
    tagging.
    """

    n: int
    probs: np.ndarray | list[np.ndarray] | None = None
    embeddings: np.ndarray | None = None

    @classmethod
    def concat(cls, parts: list[ModelOutputs]) -> ModelOutputs:
        """The outputs of consecutive chunks of one pass, as one pass over all of them."""
        out = cls(n=sum(p.n for p in parts))
        if parts and parts[0].probs is not None:
            if isinstance(parts[0].probs, list):
                out.probs = [row for p in parts for row in p.probs]
            else:
                out.probs = np.concatenate([p.probs for p in parts])
        if parts and parts[0].embeddings is not None:
            out.embeddings = np.concatenate([p.embeddings for p in parts])
        return out

    def save(self, path: str | Path) -> None:
        """One .npz file (no pickle): tagging's per-sentence arrays are stored flat with their lengths."""
        arrays: dict[str, np.ndarray] = {"n": np.array(self.n)}
        if isinstance(self.probs, list):
            arrays["word_counts"] = np.array([len(p) for p in self.probs], dtype=np.int64)
            arrays["word_probs"] = np.concatenate(self.probs) if self.probs else np.zeros((0, 0), np.float32)
        elif self.probs is not None:
            arrays["probs"] = np.asarray(self.probs)
        if self.embeddings is not None:
            arrays["embeddings"] = np.asarray(self.embeddings)
        with open(path, "wb") as handle:
            np.savez(handle, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> ModelOutputs:
        with np.load(path, allow_pickle=False) as data:
            out = cls(n=int(data["n"]))
            if "word_counts" in data:
                bounds = np.cumsum(np.concatenate([[0], data["word_counts"]]))
                flat = data["word_probs"]
                out.probs = [flat[bounds[i] : bounds[i + 1]] for i in range(out.n)]
            elif "probs" in data:
                out.probs = data["probs"]
            if "embeddings" in data:
                out.embeddings = data["embeddings"]
        return out


def _quiet_transformers() -> None:
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:  # weight writing/loading bars come from huggingface_hub in recent versions
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    except ImportError:
        pass


class _TransformerModel:
    kind: str
    _auto_class: type
    mode = "finetune"
    scores_whole_pool = False  # scoring means a forward pass per task: UPS decides how many
    _head_options: dict = {}  # extra settings of a fresh head (its loss)

    def __init__(self, model_name_or_path: str | Path, labels: list[str], config: TrainingConfig | None = None):
        if not labels:
            raise ValueError("a model needs at least one label")
        if len(set(labels)) != len(labels):
            raise ValueError(f"labels must be unique: {labels}")
        self.model_name_or_path = str(model_name_or_path)
        self.labels = list(labels)
        self.label_to_id = {label: i for i, label in enumerate(self.labels)}
        self.config = (config or TrainingConfig()).for_kind(self.kind)
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
            cls = outputs.hidden_states[-1][:, 0, :].float().cpu().numpy() if embeddings else None
            return [
                (None if token_probs is None else token_probs[k], None if cls is None else cls[k])
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

    def embed(self, examples: list[Example]) -> np.ndarray:
        """[CLS] vectors of the last hidden layer, (n, hidden)."""
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


def _clip_text(text: str, max_length: int) -> str:
    return text[: max_length * CHARS_PER_TOKEN]


def _clip_words(words: list[str], max_length: int) -> list[str]:
    """The words that can reach the first max_length sub-tokens (a word gives at least one,
    except a word of characters the tokenizer drops: twice as many are kept for those)."""
    return [w[: max_length * CHARS_PER_TOKEN] for w in words[: max_length * 2]]


class TransformerClassifier(_TransformerModel):
    """Sequence classification: one label per text."""

    kind = CLASSIFICATION
    _auto_class = AutoModelForSequenceClassification
    _multi_label = False  # the head's loss: softmax cross-entropy
    _head_class: type = LinearHead  # the regression the head starts as

    def _module_from(self, source, fresh_head, head_options):
        if not fresh_head and not (Path(source) / POOLED_HEAD).exists():  # saved with a [CLS] head
            return super()._module_from(source, fresh_head, head_options)
        return MeanPooledClassifier.from_pretrained(source, len(self.labels), self._multi_label, fresh_head)

    def _start_head(self, features):
        """A linear probe first: the head starts as the logistic regression of the labeled texts'
        mean-pooled vectors under the pretrained encoder (one forward pass over the labeled set)."""
        module = self.model_
        inputs = [{k: v for k, v in f.items() if k != "labels"} for f in features]
        vectors = run_batched(
            module.encoder, inputs, self.config.eval_batch_size, self.tokenizer_.pad_token_id, self.device_,
            lambda out, batch, _: list(mean_pool(out.last_hidden_state.float(), batch["attention_mask"]).cpu().numpy()),
            use_amp=self.config.mixed_precision,
        )
        probe = self._head_class.fit(np.stack(vectors), np.array([f["labels"] for f in features]), HEAD_C, self.config.seed)
        weight, bias = probe.dense(len(self.labels))
        with torch.no_grad():
            module.classifier.weight.copy_(torch.from_numpy(weight))
            module.classifier.bias.copy_(torch.from_numpy(bias))

    def _encode(self, examples, with_labels):
        limit = self.config.max_length
        enc = self.tokenizer_([_clip_text(e.text, limit) for e in examples], truncation=True, max_length=limit)
        features = [{key: enc[key][i] for key in enc} for i in range(len(examples))]
        if with_labels:
            for feature, example in zip(features, examples, strict=True):
                if example.label not in self.label_to_id:
                    raise ValueError(f"example {example.id}: label {example.label!r} is not one of {self.labels}")
                feature["labels"] = self.label_to_id[example.label]
        return features

    def _probs_from_rows(self, rows, features):
        return np.stack(rows).astype(np.float32)

    def _empty_probs(self):
        return np.zeros((0, len(self.labels)), dtype=np.float32)

    def predict(self, examples: list[Example]) -> list:
        """The kind's decoded values: a class per text (a list of classes, multi-label)."""
        kind = kind_of(self.kind)
        return [kind.decode(p, self.labels) for p in self.predict_proba(examples)]


class TransformerMultiLabel(TransformerClassifier):
    """Multi-label sequence classification: a sigmoid per class, trained with binary cross-entropy."""

    kind = MULTILABEL
    _head_options = {"problem_type": "multi_label_classification"}
    _multi_label = True  # the head's loss: binary cross-entropy per class
    _head_class = BinaryHeads

    def _encode(self, examples, with_labels):
        features = super()._encode([e.without_labels() for e in examples], with_labels=False)
        if with_labels:
            for feature, example in zip(features, examples, strict=True):
                feature["labels"] = multi_hot(example, self.labels, self.label_to_id)
        return features

    @staticmethod
    def _activate(logits):
        present = torch.sigmoid(logits)
        return torch.stack([1.0 - present, present], dim=-1)

    def _empty_probs(self):
        return np.zeros((0, len(self.labels), 2), dtype=np.float32)


def multi_hot(example: Example, labels: list[str], label_to_id: dict[str, int]) -> np.ndarray:
    """A multi-label example's classes as a 0/1 float vector over `labels`."""
    if example.choices is None:
        raise ValueError(f"example {example.id} has no label set")
    target = np.zeros(len(labels), dtype=np.float32)
    for label in example.choices:
        if label not in label_to_id:
            raise ValueError(f"example {example.id}: label {label!r} is not one of {labels}")
        target[label_to_id[label]] = 1.0
    return target


class TransformerTagger(_TransformerModel):
    """Token classification: one IOB2 tag per word, read at the word's first sub-token.

    A word left with no sub-token (cut by max_length, or made of characters the tokenizer
    drops) gets probability 1 on "O": the model has not seen it, so it tags nothing there.
    """

    kind = TAGGING
    _auto_class = AutoModelForTokenClassification

    def __init__(self, model_name_or_path, labels, config=None):
        super().__init__(model_name_or_path, labels, config)
        self._outside = self.label_to_id.get("O")

    @staticmethod
    def words_of(example: Example) -> list[str]:
        return list(example.words) if example.words is not None else example.text.split()

    def _encode(self, examples, with_labels):
        words = [self.words_of(e) for e in examples]
        limit = self.config.max_length
        enc = self.tokenizer_(
            [_clip_words(w, limit) for w in words], is_split_into_words=True, truncation=True, max_length=limit
        )
        features = []
        for i, example in enumerate(examples):
            feature = {key: enc[key][i] for key in enc}
            first = [-1] * len(words[i])
            for position, word in enumerate(enc.word_ids(i)):
                if word is not None and first[word] < 0:
                    first[word] = position
            feature["first_token"] = first
            if with_labels:
                tags = example.tags or []
                if len(tags) != len(words[i]):
                    raise ValueError(f"example {example.id}: {len(words[i])} words but {len(tags)} tags")
                labels = [-100] * len(feature["input_ids"])
                for word, position in enumerate(first):
                    if position >= 0:
                        if tags[word] not in self.label_to_id:
                            raise ValueError(f"example {example.id}: tag {tags[word]!r} is not one of {self.labels}")
                        labels[position] = self.label_to_id[tags[word]]
                feature["labels"] = labels
            features.append(feature)
        return features

    def _fallback(self) -> np.ndarray:
        """The probabilities of a word the model has not seen: "O" for sure (uniform without "O")."""
        k = len(self.labels)
        fallback = np.full(k, 1.0 / k, dtype=np.float32)
        if self._outside is not None:
            fallback = np.zeros(k, dtype=np.float32)
            fallback[self._outside] = 1.0
        return fallback

    def _probs_from_rows(self, rows, features):
        fallback = self._fallback()
        result = []
        for token_probs, feature in zip(rows, features, strict=True):
            first = feature["first_token"]
            word_probs = np.tile(fallback, (len(first), 1))
            for word, position in enumerate(first):
                if position >= 0:
                    word_probs[word] = token_probs[position]
            result.append(word_probs)
        return result

    def _empty_probs(self):
        return []

    def predict(self, examples: list[Example]) -> list[list[str]]:
        return [[self.labels[i] for i in p.argmax(axis=1)] for p in self.predict_proba(examples)]


# How an acquisition model learns: fine-tuning the whole transformer, or a head on frozen vectors.
MODES = ("finetune", "frozen")


def model_class(kind: str, mode: str = "finetune") -> type:
    """The model class of a task kind and mode."""
    if mode not in MODES:
        raise ValueError(f"unknown model mode {mode!r}; expected one of {', '.join(MODES)}")
    return kind_of(kind).model_class(mode)


def build_model(
    kind: str,
    model_name_or_path: str | Path,
    labels: list[str],
    config: TrainingConfig | None = None,
    mode: str = "finetune",
    embedding_cache=None,
):
    """A new, unfitted model of the given task kind and mode (`embedding_cache`: frozen mode only)."""
    cls = model_class(kind, mode)
    if mode == "frozen":
        return cls(model_name_or_path, labels, config, embedding_cache)
    return cls(model_name_or_path, labels, config)


def read_model_meta(folder: str | Path) -> dict:
    path = Path(folder) / MODEL_META
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise ModelLoadError(f"{folder} is not a saved model folder (no {MODEL_META})") from error
    except (OSError, json.JSONDecodeError) as error:
        raise ModelLoadError(f"cannot read {path}: {error}") from error
    if not isinstance(meta, dict) or meta.get("kind") not in KINDS or not meta.get("labels"):
        raise ModelLoadError(f"{path} does not describe a model (kind and labels needed)")
    if meta.get("mode", "finetune") not in MODES:
        raise ModelLoadError(f"{path}: unknown model mode {meta.get('mode')!r}")
    return meta


def load_model(folder: str | Path, config: TrainingConfig | None = None, embedding_cache=None):
    """Loads a model saved by `save`, of whichever kind and mode it is."""
    meta = read_model_meta(folder)
    mode = meta.get("mode", "finetune")
    cls = model_class(meta["kind"], mode)
    if mode == "frozen":
        return cls.load(folder, config, embedding_cache)
    return cls.load(folder, config)
