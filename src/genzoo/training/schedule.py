"""Steps per epoch and per run, and the learning rate of each step."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..train_config import TrainConfig


def epoch_steps(cfg: TrainConfig, n_train: int) -> int:
    """Optimizer steps of an epoch: n_train // batch_size (the remainder is dropped), at least one."""
    return max(1, n_train // min(cfg.batch_size, n_train))


def total_steps(cfg: TrainConfig, n_train: int) -> int:
    """Optimizer steps of a run: `steps`, or `epochs` epochs."""
    return cfg.steps or cfg.epochs * epoch_steps(cfg, n_train)


def lr_factor(cfg: TrainConfig, total_steps: int) -> Callable[[int], float]:
    """Multiplier of the base learning rate at each step: linear warm-up, then constant or cosine."""

    def factor(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.schedule == "cosine":
            progress = (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return 1.0

    return factor


class LearningRates:
    """Sets every optimizer's rate for a step: its base rate times `lr_factor(step)`.

    The trainer's step count drives the schedule, not the optimizers' own steps: a model's step
    may skip an optimizer on purpose (a GAN's generator with d_steps > 1) and the schedule stays
    in time. The rate of any step follows from the step alone, so a checkpoint needs no scheduler
    state, and a lengthened run takes the new schedule's rate at once.
    """

    def __init__(self, optimizers: dict[str, torch.optim.Optimizer], cfg: TrainConfig, total: int):
        self.optimizers = optimizers
        self.factor = lr_factor(cfg, total)
        # The rates the optimizers were built with (before any checkpoint overwrites them).
        self.base = {key: [group["lr"] for group in opt.param_groups] for key, opt in optimizers.items()}

    def set(self, step: int) -> None:
        factor = self.factor(step)
        for key, opt in self.optimizers.items():
            for group, base in zip(opt.param_groups, self.base[key]):
                group["lr"] = base * factor

    def current(self) -> float:
        """The rate of the first optimizer's first group, as logged."""
        return next(iter(self.optimizers.values())).param_groups[0]["lr"] if self.optimizers else 0.0
