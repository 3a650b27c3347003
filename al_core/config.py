"""The training settings, with the project's one set of defaults (no torch import here, so that
settings and CLIs stay quick to load).

`TrainingConfig`'s defaults are the only training defaults of the project: the live
backend, plasm-export and the simulator start from them and change a value only through an
explicit setting, flag or config key (a test holds the three to it). They are chosen to
learn from a few dozen labels on a CPU (docs/backend.md, "Training schedule"); the paper's
recipe (SPEC.md) is a config that names its values.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class TrainingConfig:
    """Every knob of fine-tuning, with the project's one set of defaults."""

    learning_rate: float | None = None  # None: the learning rate of the model's task kind
    weight_decay: float = 0.01
    epochs: int = 3
    # The schedule: max(epochs x batches per epoch, min_steps), capped by max_steps. Three epochs
    # of 38 labels are 9 steps, too few to move a pretrained model; the floor of 100 steps is what
    # makes the first few dozen labels count, and it stops mattering from about 530 labels on.
    min_steps: int = 100
    max_steps: int | None = None  # a cap, e.g. for large pseudo-labeled sets on a CPU
    batch_size: int = 16
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    max_length: int = 128
    seed: int = 42
    device: str | None = None
    mixed_precision: bool = True
    eval_batch_size: int = 32
    from_scratch: bool = True
    # Word embeddings fixed during fine-tuning: on a CPU about a third less time per step for a
    # small model (its embedding matrix is most of its weights), same accuracy within noise.
    freeze_embeddings: bool = True
    # Batches of similar lengths (shuffled within large chunks, then sorted): far less padding
    # per step on short, varied texts, same accuracy within noise.
    group_by_length: bool = True

    def replace(self, **changes) -> TrainingConfig:
        return dataclasses.replace(self, **changes)

    def for_kind(self, kind: str) -> TrainingConfig:
        """This config with the learning rate resolved for a task kind."""
        if self.learning_rate is not None:
            return self
        from al_core.kinds import kind_of

        return self.replace(learning_rate=kind_of(kind).learning_rate)

    @classmethod
    def fields(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]
