"""VAE: the ELBO against a direct computation, the KL against Monte Carlo, IWAE bounds."""

from __future__ import annotations

import functools
import math

import pytest
import torch

from genzoo.config import ConfigError
from genzoo.data import fixed_binarization
from genzoo.models.vae import VAE


@pytest.fixture(scope="module")
def model(embedded):
    """A small VAE trained briefly, so that q(z|x) is informative and the bounds differ."""
    torch.manual_seed(0)
    vae = VAE(arch="mlp", hidden=64, latent_dim=3)
    opt = torch.optim.Adam(vae.parameters(), lr=3e-3)
    data = fixed_binarization(embedded.train_x[:512])
    for step in range(150):
        opt.zero_grad()
        vae.loss(data[(step % 8) * 64 : (step % 8 + 1) * 64])["loss"].backward()
        opt.step()
    return vae.eval()


@pytest.fixture(scope="module")
def x(embedded):
    return fixed_binarization(embedded.test_x[:8])


def test_elbo_against_direct_computation(model, x):
    eps = torch.randn(len(x), 3, generator=torch.Generator().manual_seed(1))
    terms = model.elbo_terms(x, eps)
    # Direct: Bernoulli log-likelihood pixel by pixel, KL as the sum over dimensions of the 1-D formula.
    h = model.encoder(x)
    mu, logvar = h[:, :3], h[:, 3:].clamp(-12, 8)
    sigma = (0.5 * logvar).exp()
    z = mu + sigma * eps
    p = torch.sigmoid(model.decoder(z)).flatten(1).double()
    flat = x.flatten(1).double()
    log_px_z = (flat * p.log() + (1 - flat) * (1 - p).log()).sum(1)
    kl = sum(math.log(1 / s) + (s**2 + m**2) / 2 - 0.5 for m, s in zip(mu.flatten().tolist(), sigma.flatten().tolist()))
    torch.testing.assert_close(terms["log_px_z"].double(), log_px_z, rtol=1e-5, atol=1e-3)
    assert terms["kl"].sum().item() == pytest.approx(kl, rel=1e-5)
    loss = model.loss(x)["loss"]
    assert loss.item() > 0 and math.isfinite(loss.item())


def test_kl_matches_monte_carlo(model, x):
    torch.manual_seed(2)
    mu, logvar = model.encode(x[:1])
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    z = q.sample((200_000,))
    mc = (q.log_prob(z) - torch.distributions.Normal(0, 1).log_prob(z)).sum(-1).mean()
    closed = model.elbo_terms(x[:1])["kl"]
    assert closed.item() == pytest.approx(mc.item(), abs=0.02 + 0.01 * closed.item())


def test_iwae_is_above_elbo_and_tightens_with_k(model, x):
    torch.manual_seed(3)
    elbo = torch.stack([model.elbo(x) for _ in range(200)]).mean(0)  # expected ELBO per image
    iwae = {
        k: torch.stack([model.log_prob(x, k=k) for _ in range(200 if k == 1 else 20)]).mean(0) for k in (1, 10, 200)
    }
    torch.testing.assert_close(iwae[1], elbo, rtol=0.01, atol=0)  # K=1 is the ELBO itself, in expectation
    assert iwae[10].mean() > elbo.mean() + 0.5 and iwae[200].mean() > iwae[10].mean() + 0.3
    assert (iwae[200] > elbo).all()
    assert (iwae[200] - elbo).mean() > 1.0  # a gap of nats, not noise


def test_iwae_decodes_in_parts_without_changing_the_estimate(model, x, monkeypatch):
    # The decoder sees at most DECODED_PER_PASS images at once (memory); the draws, and so the
    # estimate, must be those of decoding each chunk whole.
    import genzoo.models.vae as vae_module

    torch.manual_seed(4)
    whole = model.log_prob(x, k=50)
    calls = []
    decode = model.decode_logits
    monkeypatch.setattr(model, "decode_logits", lambda z: calls.append(len(z)) or decode(z))
    monkeypatch.setattr(vae_module, "DECODED_PER_PASS", 3 * len(x))
    torch.manual_seed(4)
    parts = model.log_prob(x, k=50)
    assert max(calls) == 3 * len(x) and sum(calls) == 50 * len(x)
    torch.testing.assert_close(parts, whole)


def test_log_prob_normalises_on_a_tiny_decoder():
    """With 1-D latent and 2 pixels we can sum p(x) over all 4 images by quadrature."""
    torch.manual_seed(0)
    model = VAE(arch="mlp", hidden=8, latent_dim=1).eval()
    # p(x) = integral p(x|z) p(z) dz; the IWAE estimate with many samples should agree with quadrature.
    x = fixed_binarization(torch.full((2, 1, 28, 28), 0.3), seed=5)
    z = torch.linspace(-8, 8, 4001).unsqueeze(1)
    logits = model.decode_logits(z)  # (Z, 1, 28, 28)
    from genzoo.models.vae import bernoulli_log_likelihood

    for image in x:
        log_px_z = bernoulli_log_likelihood(logits, image.unsqueeze(0))
        integrand = log_px_z + torch.distributions.Normal(0, 1).log_prob(z[:, 0])
        exact = torch.logsumexp(integrand, 0) + math.log(16 / 4000)
        estimate = model.log_prob(image.unsqueeze(0), k=20000)
        assert estimate.item() == pytest.approx(exact.item(), abs=0.5)


def test_kl_warmup_weighs_the_kl_from_0_to_1_by_the_trainers_step(x):
    torch.manual_seed(0)
    vae = VAE(arch="mlp", hidden=16, latent_dim=2, kl_warmup_steps=4).train()
    weights = []
    for step in range(6):
        weights.append(vae.kl_weight(step))
        out = vae.loss(x, step=step)
        # the training loss weighs the KL; "nelbo" stays the true negative bound
        torch.testing.assert_close(out["loss"], out["recon"] + weights[-1] * out["kl"])
        torch.testing.assert_close(out["nelbo"], (out["recon"] + out["kl"]).detach())
    assert weights == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    assert vae.kl_weight() == 1.0  # without a step (evaluation, the test pass) the ELBO itself
    out = vae.loss(x)
    torch.testing.assert_close(out["loss"], out["recon"] + out["kl"])
    reloaded = VAE(arch="mlp", hidden=16, latent_dim=2, kl_warmup_steps=4)
    reloaded.load_state_dict({**vae.state_dict(), "train_steps": torch.tensor(6)})  # the buffer runs of before held


def test_elbo_and_log_prob_draw_from_the_generator_they_are_given():
    model = VAE(channels=4, latent_dim=3, iwae_chunk=4)
    x = (torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    state = torch.get_rng_state()
    for fn in (model.elbo, functools.partial(model.log_prob, k=10)):
        a = fn(x, generator=torch.Generator().manual_seed(1))
        assert torch.equal(a, fn(x, generator=torch.Generator().manual_seed(1)))
        assert not torch.equal(a, fn(x, generator=torch.Generator().manual_seed(2)))
    assert torch.equal(state, torch.get_rng_state())  # the global stream is left alone


def test_iwae_training_loss_is_the_k_sample_bound_computed_directly(model, x):
    """train_k = K: the loss is -mean_x log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x), z_k = mu + sigma eps_k, with the
    eps drawn from the global generator (Burda et al. 2016), each density written out here."""
    iwae = VAE(arch="mlp", hidden=64, latent_dim=3, train_k=7)
    iwae.load_state_dict(model.state_dict())
    torch.manual_seed(3)
    out = iwae.loss(x)
    torch.manual_seed(3)
    eps = torch.randn(7, len(x), 3)
    h = model.encoder(x)
    mu, logvar = h[:, :3], h[:, 3:].clamp(-12, 8)
    z = mu + (0.5 * logvar).exp() * eps  # (K, B, D)
    p = torch.sigmoid(model.decoder(z.reshape(-1, 3))).reshape(7, len(x), -1)
    pixels = x.reshape(1, len(x), -1)
    log_px_z = (pixels * p.log() + (1 - pixels) * (1 - p).log()).sum(-1)
    log_pz = (-0.5 * z.pow(2) - 0.5 * math.log(2 * math.pi)).sum(-1)
    log_qz = (-0.5 * eps.pow(2) - 0.5 * logvar - 0.5 * math.log(2 * math.pi)).sum(-1)
    bound = torch.logsumexp(log_px_z + log_pz - log_qz, dim=0) - math.log(7)
    torch.testing.assert_close(out["loss"], -bound.mean(), rtol=1e-4, atol=1e-3)
    # the K-sample bound of a trained model lies above its ELBO (Burda et al.'s theorem 1), by nats here;
    # each averaged over 20 draws (one draw of either varies by a few nats)
    torch.manual_seed(4)
    negative_iwae = torch.stack([iwae.loss(x)["loss"] for _ in range(20)]).mean()
    negative_elbo = torch.stack([model.loss(x)["nelbo"] for _ in range(20)]).mean()
    assert negative_iwae < negative_elbo - 0.5


def test_iwae_training_refuses_a_kl_warmup():
    with pytest.raises(ConfigError, match="train_k=5 with kl_warmup_steps=10"):
        VAE(arch="mlp", hidden=16, latent_dim=2, train_k=5, kl_warmup_steps=10)


def test_mlp_depth_stacks_hidden_layers_and_keeps_one_layer_keys():
    """depth=2: 784 -> h -> h -> 2 * latent in the encoder and latent -> h -> h -> 784 in the decoder; depth=1 keeps
    the state-dict names of one-hidden-layer runs saved before `depth` existed."""
    deep = VAE(arch="mlp", hidden=12, depth=2, latent_dim=3)
    shapes = [tuple(m.weight.shape) for m in deep.encoder.net if isinstance(m, torch.nn.Linear)]
    assert shapes == [(12, 784), (12, 12), (6, 12)]
    shapes = [tuple(m.weight.shape) for m in deep.decoder.net if isinstance(m, torch.nn.Linear)]
    assert shapes == [(12, 3), (12, 12), (784, 12)]
    x = torch.rand(4, 1, 28, 28)
    h = x.flatten(1)
    for i, layer in enumerate(m for m in deep.encoder.net if isinstance(m, torch.nn.Linear)):
        h = layer(h) if i == 2 else torch.relu(layer(h))
    mu, logvar = deep.encode(x)
    torch.testing.assert_close(mu, h[:, :3])
    torch.testing.assert_close(logvar, h[:, 3:].clamp(-12, 8))
    shallow = VAE(arch="mlp", hidden=12, latent_dim=3).state_dict()
    assert {k for k in shallow if k.startswith(("encoder", "decoder"))} == {
        "encoder.net.1.weight", "encoder.net.1.bias", "encoder.net.3.weight", "encoder.net.3.bias",
        "decoder.net.0.weight", "decoder.net.0.bias", "decoder.net.2.weight", "decoder.net.2.bias"}
