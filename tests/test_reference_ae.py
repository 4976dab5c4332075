"""The autoencoders' losses, corruptions and chain step against their definitions, written out in NumPy.

Reconstruction error per image (summed over pixels): the Bernoulli cross-entropy
-sum[x log s(l) + (1 - x) log(1 - s(l))] with s the logistic function (for x anywhere in [0, 1]), or the squared
error sum (s(l) - x)^2. The denoising autoencoder (Vincent et al. 2008) scores the reconstruction of a corrupted
digit against the clean one; its corruptions are additive Gaussian noise clipped to [0, 1], masking to 0, and
salt-and-pepper (a corrupted pixel set to 0 or 1 with even odds). The sampling chain (Bengio et al. 2013) corrupts,
denoises and draws each pixel from the reconstruction distribution P(X | X~).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genzoo.config import ConfigError
from genzoo.models.ae import Autoencoder, reconstruction_error
from genzoo.models.dae import DenoisingAutoencoder, corrupt

pytestmark = pytest.mark.usefixtures("one_thread")


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def bce(logits: np.ndarray, x: np.ndarray) -> np.ndarray:
    p = sigmoid(logits)
    return -(x * np.log(p) + (1 - x) * np.log(1 - p)).reshape(len(x), -1).sum(1)


def squared(logits: np.ndarray, x: np.ndarray) -> np.ndarray:
    return ((sigmoid(logits) - x) ** 2).reshape(len(x), -1).sum(1)


def grey_digits(n: int, seed: int) -> torch.Tensor:
    """Images in [0, 1] with exact 0s and 1s and greys between."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 1, 28, 28, generator=g) * 1.6 - 0.3).clamp(0, 1)


@pytest.mark.parametrize("kind, plain", [("bce", bce), ("mse", squared)])
def test_reconstruction_error_per_image(kind, plain):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 1, 28, 28, generator=g) * 3
    x = grey_digits(3, seed=1)
    got = reconstruction_error(logits, x, kind)
    assert got.shape == (3,) and got.dtype == torch.float32
    np.testing.assert_allclose(got.double().numpy(), plain(logits.double().numpy(), x.double().numpy()), rtol=1e-5)
    # bfloat16 logits (mixed precision) are scored in float32
    low = logits.bfloat16()
    got = reconstruction_error(low, x, kind)
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.double().numpy(), plain(low.double().numpy(), x.double().numpy()), rtol=1e-5)


@pytest.mark.parametrize("loss, plain", [("bce", bce), ("mse", squared)])
def test_autoencoder_loss_is_the_batch_mean_and_tracks_codes_in_training_only(loss, plain):
    torch.manual_seed(2)
    model = Autoencoder(channels=4, latent_dim=3, loss=loss, code_momentum=0.25)
    x = grey_digits(5, seed=3)
    with torch.no_grad():
        z = model.encoder(x)
        logits = model.decoder(z).double().numpy()
    want = plain(logits, x.double().numpy()).mean()
    model.eval()
    got = model.loss(x)
    assert set(got) == {"loss"}
    assert float(got["loss"].detach()) == pytest.approx(want, rel=1e-5)
    assert torch.equal(model.code_mean, torch.zeros(3)) and torch.equal(model.code_cov, torch.eye(3))
    model.train()
    assert float(model.loss(x)["loss"].detach()) == pytest.approx(want, rel=1e-5)
    zn = z.double().numpy()
    np.testing.assert_allclose(model.code_mean.double().numpy(), 0.25 * zn.mean(0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(model.code_cov.double().numpy(), 0.75 * np.eye(3) + 0.25 * np.cov(zn.T),
                               rtol=1e-4, atol=1e-6)


def test_gaussian_corruption_adds_the_generators_noise_and_clips():
    x = grey_digits(4, seed=4)
    got = corrupt(x, "gaussian", 0.7, torch.Generator().manual_seed(5))
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(5)).double().numpy()
    np.testing.assert_allclose(got.double().numpy(), np.clip(x.double().numpy() + 0.7 * noise, 0, 1), atol=1e-6)
    assert got.dtype == x.dtype


def test_masking_sets_to_zero_the_pixels_whose_draw_falls_below_the_level():
    x = grey_digits(4, seed=6)
    got = corrupt(x, "masking", 0.3, torch.Generator().manual_seed(7))
    u = torch.rand(x.shape, generator=torch.Generator().manual_seed(7)).numpy()
    assert np.array_equal(got.numpy(), np.where(u < 0.3, 0.0, x.numpy()))
    assert torch.equal(corrupt(x, "masking", 0.0, torch.Generator().manual_seed(7)), x)
    assert torch.equal(corrupt(x, "masking", 1.0, torch.Generator().manual_seed(7)), torch.zeros_like(x))


def test_salt_and_pepper_sets_the_chosen_pixels_to_a_second_draw_below_one_half():
    x = grey_digits(4, seed=8).double()
    got = corrupt(x, "salt-and-pepper", 0.4, torch.Generator().manual_seed(9))
    g = torch.Generator().manual_seed(9)
    u = torch.rand(x.shape, generator=g).numpy()
    salt = torch.rand(x.shape, generator=g).numpy() < 0.5
    assert got.dtype == torch.float64
    assert np.array_equal(got.numpy(), np.where(u < 0.4, salt.astype(float), x.numpy()))
    assert torch.equal(corrupt(x, "salt-and-pepper", 0.0, torch.Generator().manual_seed(9)), x)


def test_an_unknown_corruption_is_refused_in_whole():
    with pytest.raises(ConfigError) as caught:
        corrupt(torch.zeros(1, 1, 28, 28), "blur", 0.5, torch.Generator().manual_seed(0))
    assert str(caught.value) == "noise kind 'blur': must be one of gaussian, salt-and-pepper, masking"


def test_corruption_without_a_generator_draws_from_the_global_stream():
    x = grey_digits(2, seed=10)
    torch.manual_seed(11)
    got = corrupt(x, "masking", 0.5)
    torch.manual_seed(11)
    u = torch.rand(x.shape).numpy()
    assert np.array_equal(got.numpy(), np.where(u < 0.5, 0.0, x.numpy()))


@pytest.mark.parametrize("loss, plain", [("bce", bce), ("mse", squared)])
def test_dae_loss_scores_the_masked_digits_reconstruction_and_tracks_its_codes(loss, plain):
    """The clean digit is the target; the codes tracked in training are those of the corrupted input."""
    torch.manual_seed(12)
    model = DenoisingAutoencoder(channels=4, latent_dim=3, loss=loss, noise="masking", noise_level=0.4,
                                 code_momentum=0.5)
    x = grey_digits(5, seed=13)
    torch.manual_seed(14)
    u = torch.rand(x.shape).numpy()
    noisy = torch.from_numpy(np.where(u < 0.4, 0.0, x.numpy())).float()
    with torch.no_grad():
        z = model.encoder(noisy)
        want = plain(model.decoder(z).double().numpy(), x.double().numpy()).mean()
    model.eval()
    torch.manual_seed(14)
    assert float(model.loss(x)["loss"].detach()) == pytest.approx(want, rel=1e-5)
    assert torch.equal(model.code_mean, torch.zeros(3))
    model.train()
    torch.manual_seed(14)
    out = model.loss(x)
    assert set(out) == {"loss"} and float(out["loss"].detach()) == pytest.approx(want, rel=1e-5)
    np.testing.assert_allclose(model.code_mean.double().numpy(), 0.5 * z.double().numpy().mean(0), rtol=1e-5,
                               atol=1e-7)


@pytest.mark.parametrize("noise", ["masking", "salt-and-pepper"])
def test_a_chain_step_corrupts_denoises_and_draws_each_pixel(noise):
    """X~ ~ C(X~ | X), then X' ~ Bernoulli(P(X = 1 | X~)), all from the generator given; returns X' and P."""
    torch.manual_seed(15)
    model = DenoisingAutoencoder(channels=4, latent_dim=3, noise=noise, noise_level=0.3).eval()
    x = (grey_digits(3, seed=16) > 0.5).float()
    torch.manual_seed(17)
    before = torch.get_rng_state()
    state, probs = model.chain_step(x, torch.Generator().manual_seed(18))
    assert torch.equal(torch.get_rng_state(), before)
    g = torch.Generator().manual_seed(18)
    u = torch.rand(x.shape, generator=g).numpy()
    fill = (torch.rand(x.shape, generator=g).numpy() < 0.5).astype(np.float32) if noise != "masking" else 0.0
    noisy = torch.from_numpy(np.where(u < 0.3, fill, x.numpy())).float()
    with torch.no_grad():
        p = sigmoid(model.decoder(model.encoder(noisy)).double().numpy())
    draw = torch.rand(x.shape, generator=g).double().numpy()
    np.testing.assert_allclose(probs.double().numpy(), p, rtol=1e-5, atol=1e-7)
    assert probs.shape == state.shape == (3, 1, 28, 28) and state.dtype == probs.dtype == torch.float32
    assert np.array_equal(state.numpy(), (draw < p).astype(np.float32))


def test_a_chain_step_of_a_squared_error_model_returns_its_means():
    torch.manual_seed(19)
    model = DenoisingAutoencoder(channels=4, latent_dim=3, loss="mse", noise="masking", noise_level=0.3).eval()
    x = (grey_digits(2, seed=20) > 0.5).float()
    g = torch.Generator().manual_seed(21)
    state, probs = model.chain_step(x, g)
    u = torch.rand(x.shape, generator=torch.Generator().manual_seed(21)).numpy()
    noisy = torch.from_numpy(np.where(u < 0.3, 0.0, x.numpy())).float()
    with torch.no_grad():
        p = sigmoid(model.decoder(model.encoder(noisy)).double().numpy())
    np.testing.assert_allclose(probs.double().numpy(), p, rtol=1e-5, atol=1e-7)
    assert torch.equal(state, probs)
    # nothing drawn after the corruption: the generator stands where one corruption left it
    after = torch.Generator().manual_seed(21)
    torch.rand(x.shape, generator=after)
    assert torch.equal(g.get_state(), after.get_state())


def test_a_chain_steps_pixel_is_one_only_for_a_draw_below_its_probability(monkeypatch):
    """X' = 1 exactly when u < P(X = 1 | X~): a draw equal to the probability gives 0, one just below gives 1."""
    model = DenoisingAutoencoder(channels=4, latent_dim=3, noise="masking", noise_level=0.3).eval()
    p = torch.tensor([0.25, 0.5, 0.75, 1.0]).repeat(196).reshape(1, 1, 28, 28)
    monkeypatch.setattr(model, "reconstruct", lambda noisy: p)
    for u, want in ((p, torch.zeros_like(p)), (torch.nextafter(p, torch.zeros_like(p)), torch.ones_like(p))):
        monkeypatch.setattr(model, "rand", lambda *shape, generator=None, u=u: u)
        state, probs = model.chain_step(torch.zeros(1, 1, 28, 28), torch.Generator().manual_seed(0))
        assert torch.equal(state, want) and probs is p


@pytest.mark.parametrize("kind", ["masking", "salt-and-pepper"])
def test_a_pixel_is_corrupted_only_for_a_draw_below_the_level_and_salted_below_one_half(monkeypatch, kind):
    """u < level corrupts (a draw equal to the level does not); salt is a second draw < 1/2, exactly even odds on
    the float32 grid of [0, 1), so a second draw of exactly 1/2 gives pepper."""
    x = torch.full((1, 1, 2, 2), 0.6)
    draws = iter([torch.tensor([0.25, 0.5, 0.5, 0.0]).reshape(1, 1, 2, 2),  # the corruption draw u, level 0.5
                  torch.tensor([0.0, 0.0, 0.5, 0.5]).reshape(1, 1, 2, 2)])  # the salt draw
    monkeypatch.setattr(torch, "rand", lambda *args, **kwargs: next(draws))
    got = corrupt(x, kind, 0.5, torch.Generator().manual_seed(0))
    want = [1.0 if kind == "salt-and-pepper" else 0.0, 0.6, 0.6, 0.0]
    assert got.flatten().tolist() == pytest.approx(want)


def test_the_markov_chain_starts_from_uniform_noise_and_keeps_its_snapshots_in_order():
    """Chains start at U[0, 1) noise from the generator; frame 0 is that noise, later frames the pixel probabilities
    after that many chain steps (snapshots given in any order are shown sorted); a sample is the last one."""
    torch.manual_seed(29)
    model = DenoisingAutoencoder(channels=4, latent_dim=3, noise="masking", noise_level=0.3, chain_steps=3).eval()
    got = model.markov_chain(2, [3, 0, 1], torch.Generator().manual_seed(30))
    g = torch.Generator().manual_seed(30)
    x = torch.rand(2, 1, 28, 28, generator=g)
    frames = [x]
    for step in range(3):
        x, probs = model.chain_step(x, g)
        if step in (0, 2):
            frames.append(probs)
    assert got.shape == (2, 3, 1, 28, 28)
    assert torch.equal(got, torch.stack(frames, 1))
    assert torch.equal(model.sample(2, generator=torch.Generator().manual_seed(30)), frames[-1])
    two = model.sample(2, generator=torch.Generator().manual_seed(30), steps=1)
    assert torch.equal(two, frames[1])
    for steps in (0, 1.5, True):
        with pytest.raises(ConfigError) as caught:
            model.sample(2, steps=steps)
        assert str(caught.value) == f"dae: steps={steps!r} chain steps; give a whole number >= 1"


def test_a_prior_sample_decodes_the_tracked_mean_plus_the_cholesky_factor_times_the_generators_noise():
    """z = mean + L e with L L^T = cov + 1e-5 I (L lower), e standard normal from the generator; images decode z."""
    torch.manual_seed(31)
    model = Autoencoder(channels=4, latent_dim=3).eval()
    a = np.array([[1.0, 0.0, 0.0], [0.9, 0.5, 0.0], [-0.6, 0.8, 0.03]])  # nearly singular: the 1e-5 shows
    model.code_cov.copy_(torch.from_numpy(a @ a.T).float())
    model.code_mean.copy_(torch.tensor([1.0, -2.0, 0.5]))
    e = torch.randn(5, 3, generator=torch.Generator().manual_seed(32)).double().numpy()
    L = np.linalg.cholesky(model.code_cov.double().numpy() + 1e-5 * np.eye(3))
    z = np.array([1.0, -2.0, 0.5]) + e @ L.T
    got = model.sample(5, generator=torch.Generator().manual_seed(32))
    with torch.no_grad():
        want = torch.sigmoid(model.decoder(torch.from_numpy(z).float()))
    assert got.shape == (5, 1, 28, 28)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    model.decode = lambda codes: codes  # the codes themselves, to a float32 Cholesky factor's rounding
    codes = model.sample(5, generator=torch.Generator().manual_seed(32))
    np.testing.assert_allclose(codes.double().numpy(), z, rtol=0, atol=5e-5)  # the jitter moves them 1e-3


def test_the_codes_of_a_batch_of_two_move_the_covariance_toward_their_unbiased_estimate():
    """(z1 - z2)(z1 - z2)^T / 2 is the unbiased covariance of two codes (divided by n - 1 = 1); one code gives 0."""
    model = Autoencoder(channels=4, latent_dim=2, code_momentum=0.5)
    z = torch.tensor([[1.0, 3.0], [2.0, 1.0]])
    model._track_codes(z)
    d = np.array([-1.0, 2.0])
    np.testing.assert_allclose(model.code_cov.numpy(), 0.5 * np.eye(2) + 0.5 * np.outer(d, d) / 2, rtol=1e-6)
    np.testing.assert_allclose(model.code_mean.numpy(), [0.75, 1.0], rtol=1e-6)
    model._track_codes(z[:1])
    np.testing.assert_allclose(model.code_cov.numpy(), 0.5 * (0.5 * np.eye(2) + 0.25 * np.outer(d, d)), rtol=1e-6)
