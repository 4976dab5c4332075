"""The benchmarks' recipes are valid: each builds its model and trainer config and runs a forward pass.

A typo in a recipe would otherwise show only on the GPU, part-way through a benchmark
call of a session's limited device time.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from genzoo import config, runs
from genzoo.train_config import TrainConfig

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def load_benchmark(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GAN_MODELS = load_benchmark("gan").MODELS
PIXEL_RECIPES = load_benchmark("pixel").RECIPES


@pytest.mark.parametrize("key", list(GAN_MODELS))
def test_gan_recipe_builds_and_samples(key):
    name, overrides, epochs = GAN_MODELS[key]
    assert epochs > 0
    model = runs.create(name, **overrides)  # an unknown key or a bad value raises ConfigError
    labels = torch.tensor([3, 7]) if model.conditional else None
    x = model.sample(2, y=labels, generator=torch.Generator().manual_seed(0))
    assert x.shape == (2, 1, 28, 28) and 0 <= x.min() and x.max() <= 1


@pytest.mark.parametrize("key", list(PIXEL_RECIPES))
def test_pixel_recipe_builds_and_scores(key):
    name, model_overrides, train_overrides, target = PIXEL_RECIPES[key]
    config.build(TrainConfig, train_overrides)
    model = runs.create(name, **model_overrides)
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(0)).round()
    log_p = model.log_prob(x)
    assert log_p.shape == (2,) and bool((log_p < 0).all())
    assert target is None or 75 < target < 90  # nats per image on binarized MNIST
