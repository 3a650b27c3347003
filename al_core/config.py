"""The engine's settings, one pydantic model per concern, each field defined once with its default,
bounds and description (no torch import here, so that settings and CLIs stay quick to load).

- `TrainingConfig`: fine-tuning;
- `StrategyConfig`: the query strategy and the stopping signal;
- `al_core.ups.SubsamplingConfig`: how much of the pool is scored each iteration;
- `al_core.acquisition.AcquisitionConfig`: frozen head or fine-tuning, and the quality estimate.

They are pydantic dataclasses: plain frozen dataclasses for the engine's code (dataclasses.asdict,
replace), validated on creation. The live backend's settings, the simulator's config and
plasm-export's flags are made of these fields (`field_definitions`), so their defaults and
bounds are these (a test holds the three to it). The training defaults are chosen to learn
from a few dozen labels on a CPU (docs/backend.md, "Training schedule"); the paper's recipe
(SPEC.md) is a config that names its values.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Annotated

from pydantic import AfterValidator, ConfigDict, Field
from pydantic.dataclasses import dataclass

if TYPE_CHECKING:
    from al_core.kinds import TaskKind

# an unknown keyword is an error, as it is for a plain dataclass
STRICT = ConfigDict(extra="forbid")


def field_definitions(config: type, rename: dict[str, str] | None = None, exclude=()) -> dict[str, tuple]:
    """The fields of a config model as `pydantic.create_model` takes them: the same annotation,
    default, bounds and description, under the field's name or its new one in `rename`."""
    rename = rename or {}
    return {
        rename.get(name, name): (field.annotation, field)
        for name, field in config.__pydantic_fields__.items()
        if name not in exclude
    }


@dataclass(frozen=True, config=STRICT)
class TrainingConfig:
    """Every knob of fine-tuning, with the project's one set of defaults."""

    learning_rate: float | None = Field(
        None,
        gt=0,
        description="Fine-tuning learning rate; unset: the task kind's (5e-5 for classification and "
        "multi-label, 3e-4 for tagging).",
    )
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay (not of biases and norms).")
    epochs: int = Field(3, ge=1, description="Training epochs (see min_steps).")
    # The schedule: max(epochs x batches per epoch, min_steps), capped by max_steps. Three epochs
    # of 38 labels are 9 steps, too few to move a pretrained model; the floor of 100 steps is what
    # makes the first few dozen labels count, and it stops mattering from about 530 labels on.
    min_steps: int = Field(
        100,
        ge=0,
        description="Fewest optimizer steps of a fine-tuning: a few dozen labels at 3 epochs are a handful "
        "of steps, too few to learn from (docs/backend.md, training schedule).",
    )
    max_steps: int | None = Field(
        None, ge=1, description="Most optimizer steps of a fine-tuning (a cap, e.g. for large sets on a CPU)."
    )
    batch_size: int = Field(16, ge=1, description="Training batch size.")
    warmup_ratio: float = Field(0.1, ge=0, le=1, description="Share of the steps the learning rate warms up.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradients are clipped to this norm.")
    max_length: int = Field(
        128, ge=4, description="Longest input in sub-word tokens (at least 4: the special tokens and a word)."
    )
    seed: int = Field(42, description="Random seed of training and sampling.")
    device: str | None = Field(
        None, description="Torch device; unset: cuda with mixed precision if available, else cpu."
    )
    mixed_precision: bool = Field(True, description="Mixed precision on a CUDA device.")
    eval_batch_size: int = Field(
        32,
        ge=1,
        description="Inference batch size (rows sorted by length). On a CPU small batches pad less: /predict of "
        "100 tasks was 1.2x to 1.6x faster than with 64 (BENCHMARKS.md); on a GPU use more.",
    )
    balance_classes: bool = Field(
        True,
        description="Weight each class's labeled texts by the inverse of its count (one label per text: the frozen "
        "head's logistic regression and the fine-tuned loss), so that a rare class gets predicted: macro F1 up to "
        "0.04 higher for the frozen head on imbalanced sets, the same on a balanced one (BENCHMARKS.md, class "
        "balance). Not for multi-label or tagging.",
    )
    # Set by the caller, not a setting: the backend's warm_start asks for the promoted weights.
    from_scratch: bool = Field(True, description="Train from the pretrained weights, not from the model's own.")
    # Word embeddings fixed during fine-tuning: on a CPU about a third less time per step for a
    # small model (its embedding matrix is most of its weights), same accuracy within noise.
    freeze_embeddings: bool = Field(
        True,
        description="Keep the word embeddings fixed while training: about a third less time per step on a CPU "
        "for a small model (its embedding matrix is most of its weights), same accuracy within noise "
        "(BENCHMARKS.md, backend loop).",
    )
    # Batches of similar lengths (shuffled within large chunks, then sorted): far less padding
    # per step on short, varied texts, same accuracy within noise.
    group_by_length: bool = Field(
        True,
        description="Train on batches of texts of similar length: much less padding per step on short, varied "
        "texts, same accuracy within noise (BENCHMARKS.md, backend loop).",
    )

    def replace(self, **changes) -> TrainingConfig:
        return dataclasses.replace(self, **changes)

    def for_kind(self, kind: TaskKind) -> TrainingConfig:
        """This config with the learning rate resolved for a task kind."""
        if self.learning_rate is not None:
            return self
        return self.replace(learning_rate=kind.learning_rate)

    @classmethod
    def fields(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]


def known_strategy(name: str) -> str:
    """A query strategy's name, normalized; `auto` picks the default of the project's kind."""
    from al_core.strategies import available_strategies  # numpy and scikit-learn, only when checked

    name = name.strip().lower()
    known = ["auto", *available_strategies()]
    if name not in known:
        raise ValueError(f"unknown strategy {name!r}; expected one of {', '.join(known)}")
    return name


@dataclass(frozen=True, config=STRICT)
class StrategyConfig:
    """Which tasks are asked first, and the signal that says when more labels stop paying (al_core.stopping)."""

    # the validator is part of the type, so it travels with the field wherever it is embedded
    strategy: Annotated[str, AfterValidator(known_strategy)] = Field(
        "auto",
        description="Query strategy: auto (dlc-rare for classification, lc for multi-label, mnlp-task for NER), lc, dlc, dlc-rare, "
        "margin, entropy, md, random (classification), mnlp, mnlp-task, random (NER).",
    )
    stability_sample: int = Field(
        200,
        ge=0,
        description="Stopping signal: unlabeled tasks (a fixed, hash-chosen sample) every version predicts, "
        "so consecutive versions can be compared (0: off).",
    )
    stop_kappa: float = Field(
        0.99, gt=0, le=1, description="Stopping signal: mean Cohen's kappa between consecutive versions that says stop."
    )
    stop_window: int = Field(3, ge=1, description="Stopping signal: number of last consecutive-version pairs averaged.")
