"""Fast pool inference: length-sorted batches, dynamic padding, inference_mode, input order kept.

Sorting by length puts rows of similar length together, so each batch is padded only to
its own longest row and little compute is wasted on padding; results are put back in the
order the caller gave.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np
import torch

from al_core.training import mixed_precision_on, pad_batch

T = TypeVar("T")


def configure_threads(n_threads: int | None = None) -> int:
    """Sets torch's intra-op threads (default: all cores) and returns the number in use."""
    n_threads = n_threads or os.cpu_count() or 1
    torch.set_num_threads(n_threads)
    return n_threads


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[np.ndarray]:
    """Index batches, longest rows first, so similar lengths share a batch."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def run_batched(
    module: torch.nn.Module,
    features: Sequence[dict[str, list[int]]],
    batch_size: int,
    pad_token_id: int,
    device: torch.device,
    per_batch: Callable[[object, dict[str, torch.Tensor], np.ndarray], list[T]],
    use_amp: bool = False,
    output_hidden_states: bool = False,
) -> list[T]:
    """Runs `module` over `features` and returns `per_batch`'s per-row results in input order.

    `per_batch(outputs, batch, indices)` turns one batch's model outputs into one result per
    row (`indices` are the rows' positions in `features`).
    """
    results: list[T | None] = [None] * len(features)
    if not features:
        return []
    module.eval()
    lengths = [len(f["input_ids"]) for f in features]
    with torch.inference_mode():
        for indices in length_sorted_batches(lengths, batch_size):
            batch = pad_batch([features[i] for i in indices], pad_token_id)
            batch = {k: v.to(device) for k, v in batch.items()}
            with torch.autocast(device.type, dtype=torch.float16, enabled=mixed_precision_on(device, use_amp)):
                outputs = module(**batch, output_hidden_states=output_hidden_states)
            for i, row in zip(indices, per_batch(outputs, batch, indices), strict=True):
                results[int(i)] = row
    return results  # type: ignore[return-value]
