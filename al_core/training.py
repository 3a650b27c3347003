"""The fine-tuning loop shared by every transformer model.

AdamW with weight decay, linear warm-up then linear decay, a number of epochs with a
minimum number of steps, gradient clipping, dynamic padding, and a seed that makes a CPU
run repeatable. Mixed precision is used on CUDA only. Its settings, `TrainingConfig`, live in al_core.config.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

import numpy as np
import torch

from al_core.config import TrainingConfig

# on_checkpoint(model_wrapper, step, learning_rate): called at the end of every epoch.
CheckpointCallback = Callable[[object, int, float], None]


def resolve_device(requested: str | None) -> torch.device:
    """The requested device, else CUDA when present, else CPU."""
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def mixed_precision_on(device: torch.device, mixed_precision: bool) -> bool:
    """Whether training and inference run under fp16 autocast (and training with a GradScaler)."""
    return device.type == "cuda" and mixed_precision


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


# Keys of an encoded row that go to the model; anything else (e.g. word alignment) stays behind.
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "labels")


def pad_batch(features: Sequence[dict[str, list[int]]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Pads a batch to its own longest row (dynamic padding). Per-token `labels` pad with -100."""
    width = max(len(f["input_ids"]) for f in features)
    batch: dict[str, torch.Tensor] = {}
    for key in (k for k in MODEL_INPUTS if k in features[0]):
        if key == "labels" and not isinstance(features[0]["labels"], list):
            # a class id per row, or a multi-label row's 0/1 float vector
            batch[key] = torch.as_tensor(np.array([f[key] for f in features]))
            continue
        fill = {"input_ids": pad_token_id, "labels": -100}.get(key, 0)
        rows = [list(f[key]) + [fill] * (width - len(f[key])) for f in features]
        batch[key] = torch.tensor(rows, dtype=torch.long)
    return batch


# Rows drawn together before sorting by length: large enough to find similar lengths, small
# enough that each epoch still mixes the whole set (the same factor as transformers' Trainer).
LENGTH_GROUP_BATCHES = 50


def epoch_batches(lengths: Sequence[int], config: TrainingConfig, rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch's batches of row indices, in random order.

    With `group_by_length`, a random permutation is cut into chunks of LENGTH_GROUP_BATCHES
    batches, each chunk is sorted by length and cut into batches, and the batches are shuffled.
    """
    order = rng.permutation(len(lengths))
    size = config.batch_size
    if not config.group_by_length:
        return [order[start : start + size] for start in range(0, len(order), size)]
    lengths = np.asarray(lengths)
    batches = []
    for start in range(0, len(order), size * LENGTH_GROUP_BATCHES):
        chunk = order[start : start + size * LENGTH_GROUP_BATCHES]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches += [chunk[i : i + size] for i in range(0, len(chunk), size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def _optimizer(module: torch.nn.Module, config: TrainingConfig) -> torch.optim.Optimizer:
    """AdamW; biases and LayerNorm weights get no weight decay (the usual BERT recipe)."""
    decay, no_decay = [], []
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 or "LayerNorm" in name or "layer_norm" in name else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if config.learning_rate is None:
        raise ValueError("the learning rate is not resolved: use TrainingConfig.for_kind(kind)")
    return torch.optim.AdamW(groups, lr=config.learning_rate)


def total_steps(n_examples: int, config: TrainingConfig) -> int:
    """The schedule: `epochs` passes, at least `min_steps`, at most `max_steps` optimizer steps."""
    steps_per_epoch = math.ceil(n_examples / config.batch_size)
    steps = max(config.epochs * steps_per_epoch, config.min_steps)
    return min(steps, config.max_steps) if config.max_steps else steps


def train_module(
    module: torch.nn.Module,
    features: Sequence[dict[str, list[int]]],
    config: TrainingConfig,
    pad_token_id: int,
    device: torch.device,
    on_epoch_end: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Fine-tunes `module` on encoded `features` (each with `labels`); returns the loss per step.

    `on_epoch_end(step, learning_rate)` runs after every pass over the data.
    """
    if not features:
        raise ValueError("cannot train on an empty set")
    seed_everything(config.seed)
    module.to(device).train()
    if config.freeze_embeddings and hasattr(module, "get_input_embeddings"):
        module.get_input_embeddings().weight.requires_grad_(False)
    optimizer = _optimizer(module, config)
    n_steps = total_steps(len(features), config)
    warmup = int(config.warmup_ratio * n_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: (step + 1) / max(1, warmup) if step < warmup else max(0.0, (n_steps - step) / max(1, n_steps - warmup)),
    )
    use_amp = mixed_precision_on(device, config.mixed_precision)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    order_rng = np.random.default_rng(config.seed)
    lengths = [len(f["input_ids"]) for f in features]
    losses: list[float] = []
    step = 0
    while step < n_steps:
        for indices in epoch_batches(lengths, config, order_rng):
            batch = pad_batch([features[i] for i in indices], pad_token_id)
            batch = {k: v.to(device) for k, v in batch.items()}
            with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                loss = module(**batch).loss
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(module.parameters(), config.max_grad_norm)
            learning_rate = optimizer.param_groups[0]["lr"]
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            losses.append(float(loss.detach()))
            step += 1
            if step >= n_steps:
                break
        if on_epoch_end is not None:
            on_epoch_end(step, learning_rate)
    module.eval()
    return losses
