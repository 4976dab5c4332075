"""The contract every registered model keeps: train a few steps, sample, save, load, same samples."""

from __future__ import annotations

import re

import pytest
import torch

import genzoo
from genzoo import registry
from genzoo.config import ConfigError
from genzoo.models.base import CapabilityError
from genzoo.runs import read_metrics_log

# Small networks so that every model trains in seconds on a CPU.
TINY = {
    "ae": {"channels": 8, "latent_dim": 8},
    "dae": {"channels": 8, "latent_dim": 8},
    "vae": {"channels": 8, "latent_dim": 8, "iwae_k": 8, "iwae_chunk": 4},
    "gan": {"latent_dim": 8, "widths": (32, 32)},
    "cgan": {"latent_dim": 8, "widths": (32, 32)},
    "dcgan": {"latent_dim": 8, "widths": (16, 8)},
    "gmm": {"n_components": 3, "pca_dim": 20, "max_iter": 20},
    "bayes": {"pca_dim": 10},
    "rbm": {"n_hidden": 16, "persistent_chains": 32, "gibbs_steps": 20, "ais_betas": 100, "ais_runs": 8},
    "pixelcnn": {"channels": 8, "n_layers": 2, "head_channels": 8},
    "pixelrnn": {"channels": 8, "n_layers": 1, "hidden": 8, "head_channels": 8},
    "ddpm": {"widths": (8, 16), "res_blocks": 1, "attn_heads": 2, "timesteps": 50, "sample_steps": 4},
    "instruct": {"widths": (8, 16), "res_blocks": 1, "attn_heads": 2, "timesteps": 50, "sample_steps": 4,
                 "text_dim": 16, "text_layers": 1, "text_heads": 2, "trigram_buckets": 64},
}
TRAIN = {"steps": 40, "epochs": 0, "batch_size": 32, "log_every": 10, "n_grid": 16, "lr": 3e-3}


def test_registry_keys_are_the_class_names_and_every_model_has_a_tiny_config():
    assert {key: cls.name for key, cls in registry.MODELS.items()} == {key: key for key in registry.MODELS}
    assert set(TINY) == set(registry.MODELS), "add a tiny config for every registered model (and none for others)"


@pytest.fixture(scope="module", params=list(registry.MODELS))
def trained(request, tiny, tmp_path_factory):
    name = request.param
    used = {k: v for k, v in TRAIN.items() if k not in registry.get(name).unused_train_keys}
    run = genzoo.train(name, data=tiny, out=tmp_path_factory.mktemp(name), device="cpu", seed=0,
                       train_overrides=used, model_overrides=TINY.get(name), progress=False)
    return name, run


def test_run_folder(trained):
    name, run = trained
    for f in ("config.json", "model.safetensors", "checkpoint.pt", "metrics.jsonl"):
        assert (run / f).exists(), f
    assert (run / "samples" / "epoch_001.png").exists() and (run / "samples" / "progress.gif").exists()
    config = genzoo.runs.read_config(run)
    assert config["model"] == name and config["seed"] == 0 and config["genzoo_version"] == genzoo.__version__


def test_loss_falls(trained):
    name, run = trained
    if registry.get(name).training_mode != "gradient":
        pytest.skip(f"{name} is not trained by gradient steps on a loss")
    losses = [r["loss"] for r in read_metrics_log(run) if "loss" in r]
    assert losses[-1] < losses[0], losses


def test_samples_shape_range_and_reproducible(trained):
    name, run = trained
    model = genzoo.load(run)
    labels = model.default_labels(12) if model.conditional else None
    a = model.sample(12, y=labels, generator=torch.Generator().manual_seed(3))
    assert a.shape == (12, 1, 28, 28) and a.dtype == torch.float32
    assert a.min() >= 0 and a.max() <= 1
    again = genzoo.load(run).sample(12, y=labels, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, again)
    other = model.sample(12, y=labels, generator=torch.Generator().manual_seed(4))
    assert not torch.equal(a, other)


def test_load_restores_weights(trained):
    name, run = trained
    model = genzoo.load(run)
    state = torch.load(run / "checkpoint.pt", weights_only=True)["model"]
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0, equal_nan=True, msg=key)  # e.g. an unset log Z


def test_sample_checks_what_it_is_asked_once_for_every_model(trained):
    name, run = trained
    model = genzoo.load(run)
    with pytest.raises(ConfigError, match=rf"{name}: n=0 images to sample; give a whole number >= 1"):
        model.sample(0)
    with pytest.raises(CapabilityError, match=rf"{name}: sampling has no option temperature"):
        model.sample(2, temperature=2.0)
    if model.conditional:
        a = model.sample(3, y=7, generator=torch.Generator().manual_seed(1))
        b = model.sample(3, y=torch.full((3,), 7), generator=torch.Generator().manual_seed(1))
        assert torch.equal(a, b)  # one int is every image's label
        with pytest.raises(ValueError, match=rf"{name}: labels must be digits 0..9, got values in \[0, 10\]"):
            model.sample(2, y=torch.tensor([0, 10]))
    else:  # an unconditional model given labels says so; it never ignores them
        with pytest.raises(CapabilityError, match=rf"{name}: this model is unconditional, it cannot draw a chosen"):
            model.sample(2, y=torch.tensor([3, 3]))


@pytest.mark.parametrize("name", list(registry.MODELS))
def test_model_and_trainer_keys_are_apart_and_unused_trainer_keys_are_refused(name, tiny, tmp_path):
    from dataclasses import fields

    from genzoo.train_config import TrainConfig

    cls = registry.get(name)
    shared = {f.name for f in fields(cls.Config)} & {f.name for f in fields(TrainConfig)}
    assert not shared, f"{name}: --set {shared} would be ambiguous between the model and the trainer"
    for key, instead in cls.unused_train_keys.items():
        with pytest.raises(ConfigError, match=rf"{name}: does not use the trainer's {key}: {re.escape(instead)}"):
            genzoo.train(name, data=tiny, out=tmp_path, device="cpu", train_overrides={key: 0.1}, progress=False)


@pytest.mark.parametrize("name", [n for n in registry.MODELS if registry.get(n).training_mode == "step"])
def test_a_model_with_its_own_step_refuses_grad_clip_which_only_the_gradient_path_applies(name):
    """The trainer clips gradients in its own step (`Loop.train_step`); a model that steps its optimizers itself
    (the GANs, the RBM) would ignore grad_clip silently unless it refuses it."""
    assert "grad_clip" in registry.get(name).unused_train_keys


def test_the_python_api_takes_typed_values_and_says_which():
    with pytest.raises(ConfigError, match=r"gan: widths='32,32' is a string; .*here widths=\(32, 32\)"):
        genzoo.create("gan", widths="32,32")
    assert genzoo.create("gan", widths=(32, 32), latent_dim=8).config.widths == (32, 32)
