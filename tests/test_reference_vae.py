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


def same_weights(model: VAE, **config) -> VAE:
    """A VAE of the fixture's shape with other settings and the fixture's weights."""
    other = VAE(arch="mlp", hidden=16, latent_dim=3, **config).eval()
    other.load_state_dict(model.state_dict())
    return other


def plain_iwae(model: VAE, x: torch.Tensor, eps: np.ndarray) -> np.ndarray:
    """log (1/K) sum_k p(x | z_k) p(z_k) / q(z_k | x) per image, z_k = mu + sigma eps_k, eps (K, B, D)."""
    flat = x.reshape(len(x), -1).double().numpy()
    mu, logvar = encode(model, x)
    z = mu + np.exp(0.5 * logvar) * eps
    log_w = (log_bernoulli(mlp(model.decoder.net, z), flat)
             + log_normal(z, 0.0, 1.0) - log_normal(z, mu, np.exp(logvar)))  # (K, B)
    top = log_w.max(0)
    return top + np.log(np.exp(log_w - top).sum(0)) - math.log(len(eps))


@pytest.mark.parametrize("k", [2, 7])
def test_the_iwae_training_loss_is_minus_the_mean_k_sample_bound(vae_and_digits, k):
    """train_k = K > 1: the loss is -mean_x log (1/K) sum_k w_k, from K reparameterised draws (Burda et al.)."""
    model, x = vae_and_digits
    iwae = same_weights(model, train_k=k)
    torch.manual_seed(13)
    eps = torch.randn(k, len(x), 3).double().numpy()
    expected = -plain_iwae(model, x, eps).mean()
    for step in (None, 3):
        torch.manual_seed(13)
        out = iwae.loss(x, step=step)
        assert float(out["loss"].detach()) == pytest.approx(expected, rel=1e-5)
        assert float(out["niwae"]) == pytest.approx(expected, rel=1e-5)
    torch.manual_seed(13)
    eps3 = torch.randn(3, len(x), 3).double().numpy()
    torch.manual_seed(13)
    k3 = iwae.iwae_loss(x, 3)  # K as given, not train_k
    assert float(k3["loss"].detach()) == pytest.approx(-plain_iwae(model, x, eps3).mean(), rel=1e-5)


def test_the_kl_warm_up_weighs_the_training_loss_and_not_the_bound(vae_and_digits):
    """kl_warmup_steps = 4: at the trainer's step 1 the loss is recon + KL / 4; "nelbo" is recon + KL."""
    model, x = vae_and_digits
    warm = same_weights(model, kl_warmup_steps=4)
    flat = x.reshape(len(x), -1).double().numpy()
    mu, logvar = encode(model, x)
    torch.manual_seed(7)
    z = mu + np.exp(0.5 * logvar) * torch.randn(len(x), 3).double().numpy()
    recon = -log_bernoulli(mlp(model.decoder.net, z), flat).mean()
    kl = 0.5 * (mu**2 + np.exp(logvar) - 1 - logvar).sum(1).mean()
    for step, weight in ((1, 0.25), (None, 1.0)):
        torch.manual_seed(7)
        out = warm.loss(x, step=step)
        assert float(out["loss"].detach()) == pytest.approx(recon + weight * kl, rel=1e-5)
        assert float(out["nelbo"]) == pytest.approx(recon + kl, rel=1e-5)
        assert float(out["recon"].detach()) == pytest.approx(recon, rel=1e-5)
        assert float(out["kl"].detach()) == pytest.approx(kl, rel=1e-5)


def test_the_iwae_estimate_draws_its_samples_in_chunks_from_the_generator_it_is_given(vae_and_digits):
    """k = 7 importance samples in chunks of iwae_chunk = 3 (3, 3, then 1), drawn in that order; k defaults to
    iwae_k; a generator given is the one drawn from, the global stream is left alone."""
    model, x = vae_and_digits
    chunked = same_weights(model, iwae_k=7, iwae_chunk=3)
    g = torch.Generator().manual_seed(21)
    eps = torch.cat([torch.randn(m, len(x), 3, generator=g) for m in (3, 3, 1)]).double().numpy()
    expected = plain_iwae(model, x, eps)
    state = torch.get_rng_state()
    for k in (7, None):
        got = chunked.log_prob(x, k=k, generator=torch.Generator().manual_seed(21))
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5)
    assert torch.equal(state, torch.get_rng_state())
    torch.manual_seed(21)  # without a generator, the global stream
    np.testing.assert_allclose(chunked.log_prob(x).numpy(), expected, rtol=1e-5)


def test_prior_samples_draw_each_pixel_below_its_decoded_mean(vae_and_digits, monkeypatch):
    """z ~ N(0, I) from the generator, means = sigmoid(decoder(z)), then a pixel is 1 when its uniform draw (the
    generator's next) is below its mean; a draw equal to the mean gives 0. `sample` returns the binary images."""
    model, _ = vae_and_digits
    samples, means = model.sample_with_means(4, generator=torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)
    z = torch.randn(4, 3, generator=g).double().numpy()
    want = 1 / (1 + np.exp(-mlp(model.decoder.net, z)))
    u = torch.rand(4, 1, 28, 28, generator=g).double().numpy().reshape(4, -1)
    np.testing.assert_allclose(means.double().numpy().reshape(4, -1), want, rtol=1e-5, atol=1e-6)
    assert means.shape == samples.shape == (4, 1, 28, 28) and samples.dtype == torch.float32
    assert np.array_equal(samples.numpy().reshape(4, -1), (u < means.double().numpy().reshape(4, -1)).astype(float))
    assert torch.equal(model.sample(4, generator=torch.Generator().manual_seed(7)), samples)
    monkeypatch.setattr(model, "rand", lambda *shape, generator=None: means)
    edge, _ = model.sample_with_means(4, generator=torch.Generator().manual_seed(7))
    assert torch.equal(edge, torch.zeros_like(edge))


def test_reconstructions_decode_the_posterior_mean(vae_and_digits):
    model, x = vae_and_digits
    mu, _ = encode(model, x)
    want = 1 / (1 + np.exp(-mlp(model.decoder.net, mu)))
    np.testing.assert_allclose(model.reconstruct(x).double().numpy().reshape(len(x), -1), want, rtol=1e-5, atol=1e-6)


def test_the_elementary_densities_of_the_bound():
    """log N(z; mu, diag(exp(logvar))), its KL to N(0, I) per dimension, and the Bernoulli log-likelihood of
    bfloat16 logits (scored in float32) summed over the last three axes, each against NumPy."""
    from genzoo.models.vae import bernoulli_log_likelihood, gaussian_kl, gaussian_log_density

    rng = np.random.default_rng(8)
    z, mu, logvar = rng.standard_normal((3, 4, 5))
    got = gaussian_log_density(*(torch.from_numpy(a) for a in (z, mu, logvar)))
    np.testing.assert_allclose(got.numpy(), log_normal(z, mu, np.exp(logvar)), rtol=1e-12)
    kl = gaussian_kl(torch.from_numpy(mu), torch.from_numpy(logvar))
    want = np.log(1 / np.sqrt(np.exp(logvar))) + (np.exp(logvar) + mu**2) / 2 - 0.5
    np.testing.assert_allclose(kl.numpy(), want, rtol=1e-12, atol=1e-12)
    logits = torch.from_numpy(rng.standard_normal((2, 3, 1, 28, 28)) * 3).bfloat16()
    x = torch.bernoulli(torch.full((3, 1, 28, 28), 0.4), generator=torch.Generator().manual_seed(9))
    got = bernoulli_log_likelihood(logits, x)
    assert got.shape == (2, 3) and got.dtype == torch.float32
    want = log_bernoulli(logits.double().numpy().reshape(2, 3, -1), x.double().numpy().reshape(3, -1))
    np.testing.assert_allclose(got.double().numpy(), want, rtol=1e-5)


def test_the_posterior_log_variance_is_clamped_and_a_given_eps_is_used(vae_and_digits):
    """log sigma^2 is clamped to [-12, 8] (far outside that, exp overflows or the bound's gradient vanishes); with
    eps given, z = mu + sigma * eps uses it: eps = 0 scores the decoder at the posterior mean."""
    model, x = vae_and_digits
    clamped = VAE(arch="mlp", hidden=16, latent_dim=3).eval()
    with torch.no_grad():
        last = clamped.encoder.net[-1]
        last.weight.zero_()
        last.bias.copy_(torch.tensor([0.5, -0.5, 1.0, -30.0, 30.0, 0.25]))  # mu, then log sigma^2
    mu, logvar = clamped.encode(x)
    assert mu[0].tolist() == [0.5, -0.5, 1.0] and logvar[0].tolist() == [-12.0, 8.0, 0.25]
    terms = model.elbo_terms(x, eps=torch.zeros(len(x), 3))
    mu, _ = encode(model, x)
    want = log_bernoulli(mlp(model.decoder.net, mu), x.reshape(len(x), -1).double().numpy())
    np.testing.assert_allclose(terms["log_px_z"].detach().double().numpy(), want, rtol=1e-5)
