"""What an epoch end writes besides the checkpoint: the sample grid and the loss on the test set."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from ..data import Dataset, fixed_binarization
from ..images import save_gif, save_grid
from ..sampling import sample_in_batches
from ..train_config import TrainConfig
from . import progress
from .devices import forked_rng


@torch.no_grad()
def write_sample_grid(model, n: int, seed: int, samples: Path, epoch: int) -> None:
    """samples/epoch_<epoch>.png from the seed (the same noise every epoch) and the progress.gif of all grids.

    Drawn inside a forked RNG: pictures must not move the training stream, or a resumed run would diverge.
    """
    with forked_rng(model.device):
        model.eval()
        labels = model.default_labels(n) if model.conditional else None
        images = torch.cat(list(sample_in_batches(model, n, labels=labels,
                                                  generator=torch.Generator().manual_seed(seed))))
        model.train()
    save_grid(images, samples / f"epoch_{epoch:03d}.png", nrow=10 if model.conditional else None)
    save_gif(sorted(samples.glob("epoch_*.png")), samples / "progress.gif")


class TestPass:
    """Every entry of the model's loss dict, averaged over the test set, as test_<key>.

    Eval mode, no autocast, no step (the fully trained objective), Bernoulli models on the fixed
    binarization that evaluation uses (a pixel model's test_loss is then its exact test NLL, a VAE's
    its negative ELBO). Any noise the loss draws comes from the run's seed inside a forked RNG: the
    figure repeats, and training's random stream is left as it was.
    """

    def __init__(self, model, dataset: Dataset, cfg: TrainConfig, trained_images: int, device: torch.device,
                 seed: int, batch: int, show_progress: bool):
        self.model, self.dataset, self.cfg, self.trained_images = model, dataset, cfg, trained_images
        self.device, self.seed, self.batch, self.progress = device, seed, batch, show_progress
        self._test: tuple[torch.Tensor, torch.Tensor] | None = None  # images and labels on the device, chosen once

    def test_set(self) -> tuple[torch.Tensor, torch.Tensor]:
        """`test_images` picks the first so many. By default all of them, except in a run that trains on
        fewer images than the test set holds: it scores as many as it trains on, spread over the set,
        so that a short run does not spend most of its time on the test pass."""
        if self._test is None:
            x, y = self.dataset.test_x, self.dataset.test_y
            index = torch.arange(min(self.cfg.test_images or len(x), len(x)))
            if not self.cfg.test_images and self.trained_images < len(x):
                index = torch.linspace(0, len(x) - 1, self.trained_images).long()
                print(f"genzoo: this run trains on {self.trained_images:,} images, fewer than the {len(x):,} test "
                      f"digits: its test pass scores {self.trained_images:,} of them, spread over the test set "
                      "(--set test_images=N to choose)", file=sys.stderr)
            x, y = x[index], y[index]
            self._test = ((fixed_binarization(x) if self.model.binary_data else x).to(self.device), y.to(self.device))
        return self._test

    @torch.no_grad()
    def __call__(self) -> dict[str, float]:
        """The test_<key> means, "test_images" and "test_seconds"."""
        start = time.perf_counter()
        x, y = self.test_set()
        totals: dict[str, float] = {}
        self.model.eval()
        with forked_rng(self.device), progress.bar(len(x), "test pass", "img", self.progress, delay=2.0) as bar:
            torch.manual_seed(self.seed)
            for first in range(0, len(x), self.batch):  # one process's training batch: known to fit
                xb, yb = x[first : first + self.batch], y[first : first + self.batch]
                for key, value in self.model.loss(xb, yb).items():
                    totals[key] = totals.get(key, 0.0) + float(value) * len(xb)
                bar.update(len(xb))
        self.model.train()
        return {**{f"test_{key}": total / len(x) for key, total in totals.items()}, "test_images": len(x),
                "test_seconds": round(time.perf_counter() - start, 3)}
