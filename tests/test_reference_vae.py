"""The VAE's ELBO and IWAE estimate against plain NumPy computations (Kingma & Welling 2014; Burda et al. 2016).

ELBO(x) = log p(x | z) + log p(z) - log q(z | x) with one z = mu + sigma * eps, where the expectation of the
last two terms is the analytic -KL(N(mu, sigma^2) || N(0, I)) = 0.5 sum(1 + log sigma^2 - mu^2 - sigma^2);
log p(x | z) = sum x log s + (1 - x) log(1 - s), s = sigmoid(decoder logits). IWAE:
log (1/K) sum_k p(x | z_k) p(z_k) / q(z_k | x). The noise is drawn by seeding torch's generator the way
the model draws it; everything else is recomputed from the weights.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from genzoo.models.vae import VAE

pytestmark = pytest.mark.usefixtures("one_thread")


def mlp(net: nn.Sequential, x: np.ndarray) -> np.ndarray:
    for layer in net:
        if isinstance(layer, nn.Linear):
            x = x @ layer.weight.detach().double().numpy().T + layer.bias.detach().double().numpy()
        elif isinstance(layer, nn.ReLU):
            x = np.maximum(x, 0)
    return x


def log_bernoulli(logits: np.ndarray, x: np.ndarray) -> np.ndarray:
    """sum over pixels of x log sigmoid(l) + (1 - x) log(1 - sigmoid(l)); logits (..., 784), x (784,) or same."""
    return (x * -np.logaddexp(0, -logits) + (1 - x) * -np.logaddexp(0, logits)).sum(-1)


def log_normal(z: np.ndarray, mu: np.ndarray, var: np.ndarray) -> np.ndarray:
    return (-0.5 * np.log(2 * np.pi * var) - (z - mu) ** 2 / (2 * var)).sum(-1)


@pytest.fixture(scope="module")
def vae_and_digits():
    torch.manual_seed(0)
    model = VAE(arch="mlp", hidden=16, latent_dim=3).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # weights large enough that the posterior is far from the prior
        for p in model.parameters():
            p.mul_(3.0)
    x = torch.bernoulli(torch.full((5, 1, 28, 28), 0.3), generator=g)
    return model, x


def encode(model: VAE, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    out = mlp(model.encoder.net, x.reshape(len(x), -1).double().numpy())
    mu, logvar = np.split(out, 2, axis=1)
    return mu, np.clip(logvar, -12, 8)


def test_elbo_terms_loss_and_elbo_match_the_plain_computation(vae_and_digits):
    model, x = vae_and_digits
    flat = x.reshape(len(x), -1).double().numpy()
    mu, logvar = encode(model, x)
    torch.manual_seed(7)
    eps = torch.randn(len(x), 3).double().numpy()  # the draw `elbo_terms` makes after the same seed
    z = mu + np.exp(0.5 * logvar) * eps
    log_px_z = log_bernoulli(mlp(model.decoder.net, z), flat)
    kl = 0.5 * (mu**2 + np.exp(logvar) - 1 - logvar).sum(1)
    assert (kl > 0.1).all() and np.ptp(log_px_z) > 1  # away from the prior, and the images score differently
    torch.manual_seed(7)
    terms = model.elbo_terms(x)
    np.testing.assert_allclose(terms["log_px_z"].detach().numpy(), log_px_z, rtol=1e-4)
    np.testing.assert_allclose(terms["kl"].detach().numpy(), kl, rtol=1e-4)
    torch.manual_seed(7)
    with torch.no_grad():
        out = model.loss(x)
    assert float(out["loss"]) == pytest.approx(np.mean(-log_px_z + kl), rel=1e-4)
    assert float(out["recon"]) == pytest.approx(np.mean(-log_px_z), rel=1e-4)
    assert float(out["kl"]) == pytest.approx(np.mean(kl), rel=1e-4)
    torch.manual_seed(7)
    np.testing.assert_allclose(model.elbo(x).numpy(), log_px_z - kl, rtol=1e-4)


def test_analytic_kl_equals_the_monte_carlo_log_q_minus_log_p(vae_and_digits):
    """The closed form against its definition, E_q[log q(z | x) - log p(z)], by many draws in NumPy."""
    model, x = vae_and_digits
    mu, logvar = encode(model, x)
    rng = np.random.default_rng(0)
    z = mu + np.exp(0.5 * logvar) * rng.standard_normal((200_000, *mu.shape))
    mc = (log_normal(z, mu, np.exp(logvar)) - log_normal(z, 0.0, 1.0)).mean(0)
    kl = model.elbo_terms(x, eps=torch.zeros(len(x), 3))["kl"].detach().numpy()
    np.testing.assert_allclose(kl, mc, rtol=0.02, atol=0.02)


@pytest.mark.parametrize("k", [1, 7])
def test_iwae_estimate_matches_the_plain_computation(vae_and_digits, k):
    model, x = vae_and_digits
    flat = x.reshape(len(x), -1).double().numpy()
    mu, logvar = encode(model, x)
    torch.manual_seed(11)
    eps = torch.randn(k, len(x), 3).double().numpy()  # one chunk of k draws (k <= iwae_chunk)
    z = mu + np.exp(0.5 * logvar) * eps  # (k, B, D)
    log_w = (log_bernoulli(mlp(model.decoder.net, z), flat)
             + log_normal(z, 0.0, 1.0) - log_normal(z, mu, np.exp(logvar)))  # (k, B)
    top = log_w.max(0)
    expected = top + np.log(np.exp(log_w - top).sum(0)) - math.log(k)
    torch.manual_seed(11)
    got = model.log_prob(x, k=k).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4)
    if k == 1:  # one importance sample: log p(x | z) + log p(z) - log q(z | x), whose mean is the ELBO
        assert np.ptp(got) > 1
