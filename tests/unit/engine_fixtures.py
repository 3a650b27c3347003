"""Small labeled sets and fitted tiny models shared by the engine tests."""

from __future__ import annotations

from al_core.data import Example
from al_core.training import TrainingConfig

POSITIVE = ["great movie love", "best story fun", "excellent film great", "love this fun movie"]
NEGATIVE = ["awful film hate", "worst plot boring", "terrible movie bad", "hate this boring film"]

# The whole model trains, in plain random batches, for exactly `epochs` (no step floor).
FAST = TrainingConfig(
    learning_rate=5e-3, epochs=20, batch_size=8, seed=3, max_length=32, eval_batch_size=4,
    min_steps=0, freeze_embeddings=False, group_by_length=False,
)


def sentiment_examples(repeat: int = 3) -> list[Example]:
    rows = [(t, "pos") for t in POSITIVE] + [(t, "neg") for t in NEGATIVE]
    return [Example(id=f"s{i}", text=t, label=label) for i, (t, label) in enumerate(rows * repeat)]


NER_SENTENCES = [
    (["john", "smith", "said", "in", "paris"], ["B-PER", "I-PER", "O", "O", "B-LOC"]),
    (["mary", "won", "the", "match", "in", "london"], ["B-PER", "O", "O", "O", "O", "B-LOC"]),
    (["google", "and", "apple", "said", "no"], ["B-ORG", "O", "B-ORG", "O", "O"]),
    (["the", "president", "of", "france", "said", "yes"], ["O", "O", "O", "B-LOC", "O", "O"]),
]
TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]


def ner_examples(repeat: int = 3) -> list[Example]:
    return [
        Example(id=f"n{i}", text=" ".join(w), words=list(w), tags=list(t))
        for i, (w, t) in enumerate(NER_SENTENCES * repeat)
    ]
