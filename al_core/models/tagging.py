"""Tagging models: one IOB2 tag per word, read at the word's first sub-token; fine-tuned
(`TransformerTagger`, token classification) or a logistic regression on the frozen encoder's
word vectors (`FrozenTagger`).
"""

from __future__ import annotations

import numpy as np
from transformers import AutoModelForTokenClassification

from al_core.data import TAGGING, Example
from al_core.kinds import kind_of
from al_core.models.finetuned import TransformerModel, clip_words
from al_core.models.frozen import FrozenEncoderModel
from al_core.models.heads import LinearHead


class TransformerTagger(TransformerModel):
    """Token classification: one IOB2 tag per word, read at the word's first sub-token.

    A word left with no sub-token (cut by max_length, or made of characters the tokenizer
    drops) gets probability 1 on "O": the model has not seen it, so it tags nothing there.
    """

    kind = TAGGING
    task_kind = kind_of(TAGGING)
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
            [clip_words(w, limit) for w in words], is_split_into_words=True, truncation=True, max_length=limit
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


class FrozenTagger(FrozenEncoderModel, TransformerTagger):
    """Encoder vectors at each word's first sub-token and a logistic regression: one tag per word.

    A word with no sub-token (cut by max_length) gets probability 1 on "O", as in
    TransformerTagger; its row is NaN in the cache and never reaches the head.
    """

    _head_class = LinearHead  # one regression over the words of the labeled sentences

    def _content(self, example: Example) -> str:
        return "\x1f".join(self.words_of(example))

    def _pool_batch(self, hidden, mask, features) -> list[np.ndarray]:
        # the batch's words in one array, each sentence's rows a view of it (see FrozenEncoderModel)
        counts = [len(f["first_token"]) for f in features]
        out = np.full((sum(counts), hidden.shape[-1]), np.nan, dtype=np.float32)
        matrices, start = [], 0
        for k, (feature, count) in enumerate(zip(features, counts, strict=True)):
            first = feature["first_token"]
            block = out[start : start + count]
            seen = [w for w, p in enumerate(first) if p >= 0]
            if seen:
                block[seen] = hidden[k][[first[w] for w in seen]].cpu().numpy()
            matrices.append(block)
            start += count
        return matrices

    def _rows(self, examples, vectors):
        rows, targets = [], []
        for example, matrix in zip(examples, vectors, strict=True):
            tags = example.tags or []
            if len(tags) != len(matrix):
                raise ValueError(f"example {example.id}: {len(matrix)} words but {len(tags)} tags")
            for tag, row in zip(tags, matrix, strict=True):
                if tag not in self.label_to_id:
                    raise ValueError(f"example {example.id}: tag {tag!r} is not one of {self.labels}")
                if not np.isnan(row[0]):
                    rows.append(row)
                    targets.append(self.label_to_id[tag])
        if not rows:
            raise ValueError("the labeled sentences have no word the encoder can read")
        return np.stack(rows), np.array(targets)

    def _probs_of(self, matrix, head):
        k = len(self.labels)
        probs = np.tile(self._fallback(), (len(matrix), 1))
        seen = ~np.isnan(matrix[:, 0]) if len(matrix) else np.zeros(0, dtype=bool)
        if seen.any():
            probs[seen] = head.probs(matrix[seen], k)
        return probs

    def _batch_probs(self, vectors):
        if not vectors:
            return []
        stacked = np.concatenate(vectors) if any(len(v) for v in vectors) else np.zeros((0, 1))
        flat = self._probs_of(stacked, self.head_) if len(stacked) else np.zeros((0, len(self.labels)))
        bounds = np.cumsum([0] + [len(v) for v in vectors])
        return [flat[bounds[i] : bounds[i + 1]] for i in range(len(vectors))]

    def _decode(self, probs) -> list[str]:
        return [self.labels[i] for i in np.asarray(probs).argmax(axis=1)] if len(probs) else []

    def _summary(self, matrix):
        seen = matrix[~np.isnan(matrix[:, 0])] if len(matrix) else matrix
        return seen.mean(axis=0) if len(seen) else np.zeros(matrix.shape[-1], dtype=np.float32)
