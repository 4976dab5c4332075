"""The contract every registered model keeps: train a few steps, sample, save, load, same samples."""

from __future__ import annotations

import pytest
import torch

import genzoo
from genzoo import registry
from genzoo.runs import read_metrics_log

# Small networks so that every model trains in seconds on a CPU.
TINY = {
    "ae": {"channels": 8, "latent_dim": 8},
    "dae": {"channels": 8, "latent_dim": 8},
    "vae": {"channels": 8, "latent_dim": 8, "iwae_k": 8, "iwae_chunk": 4},
    "gan": {"latent_dim": 8, "widths": "32,32"},
    "cgan": {"latent_dim": 8, "widths": "32,32"},
    "dcgan": {"latent_dim": 8, "widths": "16,8"},
    "gmm": {"n_components": 3, "pca_dim": 20, "max_iter": 20},
    "bayes": {"pca_dim": 10},
    "rbm": {"n_hidden": 16, "persistent_chains": 32, "gibbs_steps": 20, "ais_betas": 100, "ais_runs": 8},
    "pixelcnn": {"channels": 8, "n_layers": 2, "head_channels": 8},
    "pixelrnn": {"channels": 8, "n_layers": 1, "hidden": 8, "head_channels": 8},
    "ddpm": {"widths": "8,16", "res_blocks": 1, "attn_heads": 2, "timesteps": 50, "sample_steps": 4},
}
TRAIN = {"steps": 40, "epochs": 0, "batch_size": 32, "log_every": 10, "n_grid": 16, "lr": 3e-3}


@pytest.fixture(scope="module", params=list(registry.MODELS))
def trained(request, tiny, tmp_path_factory):
    name = request.param
    run = genzoo.train(name, data=tiny, out=tmp_path_factory.mktemp(name), device="cpu", seed=0,
                       train_overrides=TRAIN, model_overrides=TINY.get(name), progress=False)
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
