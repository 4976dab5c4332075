"""The fixed evaluator network: a small CNN MNIST classifier used as feature extractor.

Every sample-quality number in genzoo (FID-style score, precision/recall,
class coverage, conditional accuracy) is computed in the feature space of this
one network, the way Inception-v3 pool features are used for FID on natural
images (Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule
Converge to a Local Nash Equilibrium"). Inception features fit MNIST poorly,
so genzoo ships its own classifier, trained by `train_evaluator` and stored as
`genzoo/assets/evaluator-v1.safetensors` (fp16 weights) whose SHA-256 is pinned
below. Changing the network changes every number, hence the version string
written next to each metric.

Network: three 3x3 conv blocks (BatchNorm, ReLU, 2x2 max pool) -> 128-d
ReLU hidden layer (the *features*) -> 10 logits. Trained with Adam, a
one-cycle learning rate, random shifts of up to 2 px and dropout.

Reproduce the asset with::

    genzoo evaluator train --data ../shared/data/mnist --out src/genzoo/assets/evaluator-v1.safetensors
    # or: python -m genzoo.evaluation.evaluator --data ... --out ...
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from ..data import Dataset, load_data
from ..defaults import add_evaluator_arguments

EVALUATOR_VERSION = "v1"
EVALUATOR_SHA256 = "94a7ac32d1bf24f0bbe2a0039d701e6558b2e5b2a6167ef877477a36336d2b38"
# the package's data folder, where the rebuild command and the docs put it
ASSET_PATH = Path(__file__).parents[1] / "assets" / f"evaluator-{EVALUATOR_VERSION}.safetensors"
REBUILD_COMMAND = f"genzoo evaluator train --data mnist --out {ASSET_PATH}"
FEATURE_DIM = 128


class EvaluatorError(RuntimeError):
    """The evaluator asset is missing or is not the pinned file; the message says how to rebuild it."""


class Evaluator(nn.Module):
    """MNIST classifier whose 128-d penultimate layer is the feature space for every metric.

    Inputs everywhere are float32 images in [0, 1] of shape (N, 1, 28, 28); the
    network standardises them inside.
    """

    # MNIST training-set pixel mean and standard deviation.
    MEAN, STD = 0.1307, 0.3081

    def __init__(self, width: int = 32, feature_dim: int = FEATURE_DIM, dropout: float = 0.3):
        super().__init__()

        def block(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            )

        self.body = nn.Sequential(
            block(1, width),  # (N, 32, 14, 14)
            block(width, 2 * width),  # (N, 64, 7, 7)
            block(2 * width, 4 * width),  # (N, 128, 3, 3)
        )
        self.hidden = nn.Linear(4 * width * 3 * 3, feature_dim)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(feature_dim, 10)

    def _check(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or tuple(x.shape[1:]) != (1, 28, 28):
            raise ValueError(f"evaluator expects images of shape (N, 1, 28, 28), got {tuple(x.shape)}")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer features.

        Args:
            x: (N, 1, 28, 28) float images in [0, 1].
        Returns:
            (N, 128) float32 features (post-ReLU hidden layer).
        """
        self._check(x)
        x = (x.float() - self.MEAN) / self.STD
        h = self.body(x).flatten(1)  # (N, 128 * 3 * 3)
        return F.relu(self.hidden(h))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (N, 10) for images (N, 1, 28, 28) in [0, 1]."""
        return self.head(self.dropout(self.features(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(x)

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
        """Predicted digit (N,) int64 for images (N, 1, 28, 28) in [0, 1], in batches."""
        return torch.cat([self.logits(b).argmax(1) for b in x.split(batch_size)])

    @torch.no_grad()
    def class_probabilities(self, features: torch.Tensor) -> torch.Tensor:
        """Class probabilities (N, 10) from features (N, 128) of `features_and_predictions` (eval mode: no dropout)."""
        device = next(self.parameters()).device
        return torch.softmax(self.head(features.to(device)).float(), dim=1).cpu()

    @torch.no_grad()
    def features_and_predictions(self, x: torch.Tensor, batch_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
        """Features (N, 128) and predicted digits (N,) in one pass, batched; on CPU."""
        device = next(self.parameters()).device
        feats, preds = [], []
        for b in x.split(batch_size):
            f = self.features(b.to(device))
            feats.append(f.cpu())
            preds.append(self.head(f).argmax(1).cpu())
        return torch.cat(feats), torch.cat(preds)


# ---------------------------------------------------------------------------- the asset


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_evaluator(device: str | torch.device = "cpu", path: str | Path | None = None,
                   sha256: str | None = EVALUATOR_SHA256) -> Evaluator:
    """Load the pinned evaluator, in eval mode, after checking the asset's SHA-256.

    Args:
        device: where to put the network.
        path: the asset file; the packaged `evaluator-v1.safetensors` by default.
        sha256: the expected hash; None skips the check (only for a freshly trained
            candidate, never for reported numbers).
    Returns:
        The `Evaluator`, float32, eval mode, no gradients.
    Raises:
        EvaluatorError: the file is missing or its hash differs from the pinned one.
    """
    path = Path(path) if path is not None else ASSET_PATH
    if not path.exists():
        raise EvaluatorError(f"evaluator asset {path} not found; rebuild it with `{REBUILD_COMMAND}`")
    if sha256 is not None:
        found = file_sha256(path)
        if found != sha256:
            raise EvaluatorError(
                f"evaluator asset {path} has SHA-256 {found}, expected {sha256} "
                f"(evaluator {EVALUATOR_VERSION}); the file is corrupt or not the pinned one: "
                f"reinstall genzoo or rebuild it with `{REBUILD_COMMAND}` and pin the new hash "
                "in genzoo/evaluation/evaluator.py as a new EVALUATOR_VERSION"
            )
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in load_file(str(path)).items()}
    model = Evaluator()
    model.load_state_dict(state)
    model.eval().requires_grad_(False)
    return model.to(device)


@functools.lru_cache(maxsize=4)
def evaluator_or_reason(device: str) -> tuple[Evaluator | None, str]:
    """The pinned evaluator on `device` for optional checks during training, loaded once per device;
    (None, why) when it cannot be loaded, so that training goes on and says why the check was skipped."""
    try:
        return load_evaluator(device), ""
    except EvaluatorError as e:
        return None, str(e)


def save_evaluator(model: Evaluator, path: str | Path, metadata: dict[str, str] | None = None) -> str:
    """Write the weights as fp16 safetensors (integer buffers kept as is). Returns the file's SHA-256."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: (v.detach().half() if v.is_floating_point() else v.detach()).contiguous().cpu()
             for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata=metadata)
    return file_sha256(path)


# ---------------------------------------------------------------------------- training


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Shift each image by an integer offset in [-max_shift, max_shift] px per axis, zero fill.

    Args:
        x: (N, 1, H, W) images.
    Returns:
        (N, 1, H, W) shifted images.
    """
    n, _, h, w = x.shape
    s = max_shift
    padded = F.pad(x, (s, s, s, s))  # (N, 1, H + 2s, W + 2s)
    dy = torch.randint(0, 2 * s + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * s + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h)[None]).to(x.device)  # (N, H)
    cols = (dx[:, None] + torch.arange(w)[None]).to(x.device)  # (N, W)
    idx = torch.arange(n, device=x.device)[:, None, None]
    return padded[idx, 0, rows[:, :, None], cols[:, None, :]].unsqueeze(1)  # (N, 1, H, W)


@torch.no_grad()
def accuracy(model: Evaluator, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    """Share of images (N, 1, 28, 28) whose predicted digit equals y (N,)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    correct = sum(int((model.logits(xb.to(device)).argmax(1).cpu() == yb).sum())
                  for xb, yb in zip(x.split(batch_size), y.split(batch_size)))
    model.train(was_training)
    return correct / len(x)


def train_evaluator(data: str | Dataset = "mnist", out_path: str | Path = ASSET_PATH, epochs: int = 8, seed: int = 0,
                    device: str = "cpu", batch_size: int = 128, lr: float = 3e-3, max_shift: int = 2,
                    verbose: bool = True) -> dict:
    """Train the evaluator from scratch and write it as fp16 safetensors.

    The last epoch's weights are written; the test set is only measured, never
    used to choose anything.

    Args:
        data: a `load_data` spec (the full MNIST for the shipped asset) or a loaded `Dataset`.
        out_path: where to write the safetensors file.
        epochs: passes over the training set.
        seed: seeds initialisation, shuffling, augmentation and dropout.
        device: "cpu" or "cuda".
        batch_size, lr: Adam with a one-cycle schedule peaking at `lr`.
        max_shift: random translation range in pixels (augmentation).
    Returns:
        dict with test accuracy (of the fp16 file as loaded back), SHA-256, path, seconds.
    """
    torch.manual_seed(seed)
    dataset = data if isinstance(data, Dataset) else load_data(data)
    gen = torch.Generator().manual_seed(seed)
    model = Evaluator().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    steps_per_epoch = math.ceil(len(dataset.train_x) / batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=epochs * steps_per_epoch)
    start = time.time()
    for epoch in range(epochs):
        loss = train_epoch(model, dataset, optimizer, schedule, gen, batch_size, max_shift, device)
        if verbose:
            acc = accuracy(model, dataset.test_x, dataset.test_y)
            print(f"epoch {epoch + 1}/{epochs}  loss {loss:.4f}  "
                  f"test accuracy {acc:.4%}  ({time.time() - start:.0f} s)", flush=True)
    metadata = {"version": EVALUATOR_VERSION, "data": dataset.name, "epochs": str(epochs), "seed": str(seed)}
    digest = save_evaluator(model, out_path, metadata)
    loaded = load_evaluator(device, out_path, sha256=None)
    result = {
        "path": str(out_path),
        "sha256": digest,
        "test_accuracy": accuracy(loaded, dataset.test_x, dataset.test_y),
        "bytes": Path(out_path).stat().st_size,
        "seconds": round(time.time() - start, 1),
        "epochs": epochs,
        "seed": seed,
        "data": dataset.describe(),
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    if verbose:
        print(json.dumps(result, indent=2))
    return result


def train_epoch(model: Evaluator, dataset: Dataset, optimizer: torch.optim.Optimizer, schedule, gen: torch.Generator,
                batch_size: int, max_shift: int, device: str) -> float:
    """One pass over the shuffled training set with random shifts; returns the mean loss of its batches."""
    model.train()
    order = torch.randperm(len(dataset.train_x), generator=gen)
    steps = math.ceil(len(dataset.train_x) / batch_size)
    total = 0.0
    for i in range(steps):
        idx = order[i * batch_size:(i + 1) * batch_size]
        x = random_shift(dataset.train_x[idx], max_shift, gen).to(device)
        loss = F.cross_entropy(model.logits(x), dataset.train_y[idx].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        total += loss.item()
    return total / steps


def main(args: argparse.Namespace | None = None) -> dict:
    """Entry point for `genzoo evaluator train`: trains and prints accuracy and hash."""
    if args is None:
        parser = argparse.ArgumentParser(description="Train the genzoo evaluator network.")
        add_evaluator_arguments(parser)
        args = parser.parse_args()
    return train_evaluator(args.data, args.out or ASSET_PATH, args.epochs, args.seed, args.device)


if __name__ == "__main__":
    main()
