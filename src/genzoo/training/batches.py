"""Training batches cut from the data set kept on the device."""

from __future__ import annotations

import torch

from ..data import Dataset, binarize
from ..train_config import TrainConfig
from . import TrainingError
from .devices import Distributed
from .schedule import epoch_steps


class Batches:
    """Training batches cut from the data set kept on the device, in a seeded order per epoch (a
    function of seed and epoch only, so a resumed run repeats it). No DataLoader, no workers."""

    def __init__(self, dataset: Dataset, cfg: TrainConfig, device: torch.device, ddp: Distributed, seed: int,
                 binary: bool):
        self.x, self.y = dataset.train_x.to(device), dataset.train_y.to(device)
        self.n = len(self.x)
        self.size = min(cfg.batch_size, self.n)
        if self.size % ddp.world:
            raise TrainingError(f"batch_size={self.size} must be divisible by the {ddp.world} processes")
        self.per_epoch = epoch_steps(cfg, self.n)
        self.device, self.ddp, self.seed, self.binary = device, ddp, seed, binary
        self._order: tuple[int, torch.Tensor | None] = (-1, None)

    def order(self, epoch: int) -> torch.Tensor:
        if self._order[0] != epoch:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            self._order = (epoch, torch.randperm(self.n, generator=generator).to(self.device))
        return self._order[1]

    def at(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This process's part of the global batch of `step` (rank r takes every world-th image)."""
        epoch, position = divmod(step, self.per_epoch)
        index = self.order(epoch)[position * self.size : (position + 1) * self.size]
        index = index[self.ddp.rank :: self.ddp.world]
        x, y = self.x.index_select(0, index), self.y.index_select(0, index)  # faster than x[index] on the CPU
        return (binarize(x) if self.binary else x), y
