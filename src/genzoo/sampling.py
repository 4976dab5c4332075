"""Many samples of a model, a batch at a time: the one loop behind the commands' pictures and arrays, the scoring
of sample quality and the trainer's sample grids, so that each draws the same images from the same generator."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

SAMPLE_BATCH = 1000  # images per `model.sample` call: memory stays bounded whatever the count


def sample_in_batches(model, n: int, *, labels: torch.Tensor | None = None,
                      generator: torch.Generator | None = None, batch_size: int | None = None,
                      options: dict[str, Any] | None = None) -> Iterator[torch.Tensor]:
    """Yield n samples of `model` in batches of `batch_size` (SAMPLE_BATCH by default), drawn from one generator.

    Args:
        model: a `GenerativeModel`, or anything with its `sample(n, y=, generator=, **options)` and `device`.
        labels: (n,) the digits a conditional model is asked for, each batch its slice (moved to the model's device).
        options: the model's sampling options (diffusion: guidance, steps, ...); the model checks them.
    Yields:
        (size, 1, 28, 28) batches as the model returns them (on its device), sizes summing to n; without autograd.
    """
    batch_size = batch_size or SAMPLE_BATCH  # read when called: a caller (or a test) may set the module's value
    for first in range(0, n, batch_size):
        size = min(batch_size, n - first)
        y = labels[first:first + size].to(model.device) if labels is not None else None
        with torch.no_grad():
            batch = model.sample(size, y=y, generator=generator, **(options or {}))
        yield batch  # outside the no_grad block: the caller's code between batches keeps its own grad mode
