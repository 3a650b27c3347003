"""Classification models: one label per text, fine-tuned (`TransformerClassifier`) or a head on frozen
vectors (`FrozenClassifier`).

The fine-tuned classifier reads the mean of the encoder's last layer (`MeanPooledClassifier`), and
a new head starts as the logistic regression of the labeled texts' pretrained vectors (a linear
probe, then fine-tuning); a version saved with a [CLS] head (*ForSequenceClassification) still loads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from transformers import AutoModel, AutoModelForSequenceClassification
from transformers.modeling_outputs import SequenceClassifierOutput

from al_core.data import CLASSIFICATION, Example
from al_core.inference import run_batched
from al_core.kinds import kind_of
from al_core.models.finetuned import TransformerModel, clip_text, mean_pool
from al_core.models.frozen import FrozenEncoderModel
from al_core.models.heads import HEAD_C, LinearHead

# The linear head of a mean-pooled classifier, beside its encoder's weights.
POOLED_HEAD = "pooled_head.safetensors"


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
        self.class_weights: torch.Tensor | None = None  # of the softmax loss, set per training set

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
                weight = None if self.class_weights is None else self.class_weights.to(logits.device, logits.dtype)
                loss = torch.nn.functional.cross_entropy(logits, labels, weight=weight)
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states)


class TransformerClassifier(TransformerModel):
    """Sequence classification: one label per text.

    What differs for multi-label classification (its target, head, activation, probabilities'
    shape) is in the attributes and small methods below, which TransformerMultiLabel overrides.
    """

    kind = CLASSIFICATION
    task_kind = kind_of(CLASSIFICATION)
    _auto_class = AutoModelForSequenceClassification
    _multi_label = False  # the head's loss: softmax cross-entropy
    _balances_classes = True
    _head_class: type = LinearHead  # the regression the head starts as (and a frozen head is)

    def _target(self, example: Example):
        """What the head learns for a labeled example: its label's index."""
        if example.label not in self.label_to_id:
            raise ValueError(f"example {example.id}: label {example.label!r} is not one of {self.labels}")
        return self.label_to_id[example.label]

    def _empty_probs(self):
        return np.zeros((0, len(self.labels)), dtype=np.float32)

    @staticmethod
    def _embeddings(outputs, batch):
        """The vector the head reads: the mean of the last hidden layer over the text's sub-tokens."""
        return mean_pool(outputs.hidden_states[-1], batch["attention_mask"])

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
        probe = self._head_class.fit(
            np.stack(vectors), np.array([f["labels"] for f in features]), HEAD_C, self.config.seed, self._balanced()
        )
        weight, bias = probe.dense(len(self.labels))
        with torch.no_grad():
            module.classifier.weight.copy_(torch.from_numpy(weight))
            module.classifier.bias.copy_(torch.from_numpy(bias))

    def _prepare_loss(self, features):
        """Balanced classes: each class's texts weigh n / (classes labeled x its count) in the loss,
        as the frozen head's regression weighs them (scikit-learn's "balanced")."""
        module = self.model_
        if not isinstance(module, MeanPooledClassifier) or module.multi_label:
            return
        module.class_weights = None
        if self._balanced():
            counts = np.bincount([f["labels"] for f in features], minlength=len(self.labels)).astype(np.float64)
            present = counts > 0
            weights = np.ones(len(self.labels))
            weights[present] = counts.sum() / (present.sum() * counts[present])
            module.class_weights = torch.tensor(weights, dtype=torch.float32)

    def _encode(self, examples, with_labels):
        limit = self.config.max_length
        enc = self.tokenizer_([clip_text(e.text, limit) for e in examples], truncation=True, max_length=limit)
        features = [{key: enc[key][i] for key in enc} for i in range(len(examples))]
        if with_labels:
            for feature, example in zip(features, examples, strict=True):
                feature["labels"] = self._target(example)
        return features

    def _probs_from_rows(self, rows, features):
        return np.stack(rows).astype(np.float32)

    def predict(self, examples: list[Example]) -> list:
        """The kind's decoded values: a class per text (a list of classes, multi-label)."""
        return [self.task_kind.decode(p, self.labels) for p in self.predict_proba(examples)]


class FrozenClassifier(FrozenEncoderModel, TransformerClassifier):
    """Mean-pooled encoder vectors and a logistic regression: one label per text."""
