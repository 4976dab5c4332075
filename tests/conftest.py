"""Shared fixtures: small real digits (the embedded subset), so tests need no network."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from genzoo.data import Dataset, load_embedded

SHARED_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def embedded() -> Dataset:
    return load_embedded()


@pytest.fixture(scope="session")
def tiny(embedded) -> Dataset:
    """256 training and 64 test digits, all classes."""
    g = torch.Generator().manual_seed(0)
    train = torch.randperm(len(embedded.train_x), generator=g)[:256]
    test = torch.randperm(len(embedded.test_x), generator=g)[:64]
    return Dataset("embedded", embedded.source, embedded.train_x[train], embedded.train_y[train],
                   embedded.test_x[test], embedded.test_y[test])


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    """For the mixture tests: 300 points in 5-D, three correlated Gaussian blobs of 100 (shifted +4, -3, 0)."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 5)) @ rng.standard_normal((5, 5))
    X[:100] += 4.0
    X[100:200] -= 3.0
    return X


@pytest.fixture(scope="module")
def one_thread():
    """For modules of tiny networks: one thread spares OpenMP's overhead (large on a shared machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def nll_after_steps_on_a_bar():
    """For the pixel models: (NLL before, NLL after) 30 Adam steps on copies of one 8x8 bar image."""

    def run(model, steps: int = 30) -> tuple[float, float]:
        x = torch.zeros(8, 1, 8, 8)
        x[:, :, 2:6, 3:5] = 1  # one bar: easy to learn
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        first = model.loss(x)["loss"].item()
        for _ in range(steps):
            optimizer.zero_grad()
            model.loss(x)["loss"].backward()
            optimizer.step()
        return first, model.loss(x)["loss"].item()

    return run
