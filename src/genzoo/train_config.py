"""The trainer's own hyper-parameters (the model's live in its Config)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from .config import ConfigError, in_range, non_negative, positive


@dataclass
class TrainConfig:
    epochs: int = 10
    steps: int = 0  # > 0: train for this many steps instead of epochs
    batch_size: int = 128
    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    weight_decay: float = 0.0
    schedule: Literal["constant", "cosine"] = "constant"
    warmup_steps: int = 0
    grad_clip: float = 0.0  # 0: no clipping
    amp: bool = True  # bf16 autocast on CUDA where the model says it is safe
    log_every: int = 50  # steps between metrics.jsonl lines
    checkpoint_minutes: float = 5.0  # also checkpointed at every epoch end
    sample_every: int = 1  # epochs between sample grids (0: none)
    n_grid: int = 64  # images in each sample grid
    test_every: int = 1  # epochs between passes of the loss over the test set, logged as test_* (0: none)
    test_images: int = 0  # test images in that pass (0: all)
    time_budget: float = 0.0  # seconds; > 0 stops training (cleanly, checkpointed) after this long
    recipe: str = ""  # the named recipe (genzoo.recipes) these settings came from, if any
    init_from: str = ""  # a run (or pretrained:NAME) whose weights a new run starts from, with a fresh optimizer

    def __post_init__(self):
        positive(batch_size=self.batch_size, lr=self.lr, log_every=self.log_every, n_grid=self.n_grid)
        in_range("beta1", self.beta1, 0.0, 1.0)
        in_range("beta2", self.beta2, 0.0, 1.0)
        non_negative(
            epochs=self.epochs,
            steps=self.steps,
            warmup_steps=self.warmup_steps,
            sample_every=self.sample_every,
            test_every=self.test_every,
            test_images=self.test_images,
        )
        if self.epochs == 0 and self.steps == 0:
            raise ConfigError("epochs=0 and steps=0: give a number of epochs or of steps")


def check_train_keys(model: Any, overrides: dict[str, Any]) -> None:
    """A trainer setting that the model does not use is an error naming what it uses instead."""
    for key in overrides:
        if key in model.unused_train_keys:
            raise ConfigError(f"{model.name}: does not use the trainer's {key}: {model.unused_train_keys[key]}")
