"""The GAN losses against their definitions, and a GAN that must learn a 1-D two-mode mixture.

- Goodfellow et al. 2014: D minimises -log D(x) - log(1 - D(G(z))) (with one-sided label smoothing,
  Salimans et al. 2016, the real target is 1 - s); the non-saturating G minimises -log D(G(z)).
- Hinge (Lim & Ye 2017): D minimises max(0, 1 - D(x)) + max(0, 1 + D(G(z))); G minimises -D(G(z)).
- WGAN-GP (Gulrajani et al. 2017): the critic minimises D(G(z)) - D(x) + lambda (||grad D(x_hat)|| - 1)^2,
  x_hat = eps x + (1 - eps) G(z); G minimises -D(G(z)).

The reference scores are recomputed in NumPy from the discriminator's weights, and the penalty's gradient
by central finite differences of that NumPy discriminator.
"""

from __future__ import annotations

import contextlib
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from genzoo.models.gan import (
    GAN,
    ConditionalGAN,
    discriminator_loss,
    generator_loss,
    gradient_penalty,
)

pytestmark = pytest.mark.usefixtures("one_thread")

KINDS = ("nonsaturating", "hinge", "wgan-gp")


def log_sigmoid(a):
    return -np.logaddexp(0, -a)


def reference_losses(real: np.ndarray, fake: np.ndarray, kind: str, smoothing: float = 0.0) -> tuple[float, float]:
    """(D loss without penalty, G loss) from the scores, written from the papers."""
    if kind == "nonsaturating":
        t = 1 - smoothing
        d = np.mean(-(t * log_sigmoid(real) + (1 - t) * log_sigmoid(-real))) + np.mean(-log_sigmoid(-fake))
        return d, np.mean(-log_sigmoid(fake))
    if kind == "hinge":
        return np.mean(np.maximum(0, 1 - real)) + np.mean(np.maximum(0, 1 + fake)), -np.mean(fake)
    return np.mean(fake) - np.mean(real), -np.mean(fake)


@pytest.mark.parametrize("kind", KINDS)
def test_loss_functions_match_their_definitions(kind):
    g = torch.Generator().manual_seed(0)
    real = torch.randn(16, generator=g, dtype=torch.float64) * 2
    fake = torch.randn(16, generator=g, dtype=torch.float64) * 2
    smoothing = 0.1 if kind == "nonsaturating" else 0.0
    d_ref, g_ref = reference_losses(real.numpy(), fake.numpy(), kind, smoothing)
    assert float(discriminator_loss(real, fake, kind, smoothing)) == pytest.approx(d_ref, rel=1e-12)
    assert float(generator_loss(fake, kind)) == pytest.approx(g_ref, rel=1e-12)
    # without a smoothing argument the real target is 1
    unsmoothed, _ = reference_losses(real.numpy(), fake.numpy(), kind, 0.0)
    assert float(discriminator_loss(real, fake, kind)) == pytest.approx(unsmoothed, rel=1e-12)


def test_gradient_penalty_of_a_critic_with_a_known_gradient():
    """D(x) = sum_i a_i tanh(x_i): grad = a (1 - tanh^2 x), at x_hat = eps real + (1 - eps) fake."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(6, generator=g, dtype=torch.float64)
    real = torch.randn(5, 6, generator=g, dtype=torch.float64)
    fake = torch.randn(5, 6, generator=g, dtype=torch.float64)
    eps = torch.rand(5, 1, generator=g, dtype=torch.float64)

    def critic(x, y):
        return (a * torch.tanh(x)).sum(1)

    x_hat = eps.numpy() * real.numpy() + (1 - eps.numpy()) * fake.numpy()
    grad = a.numpy() * (1 - np.tanh(x_hat) ** 2)
    expected = np.mean((np.sqrt((grad**2).sum(1)) - 1) ** 2)
    assert float(gradient_penalty(critic, real, fake, None, eps).detach()) == pytest.approx(expected, rel=1e-10)


def mlp_discriminator(model, x: np.ndarray, y: np.ndarray | None) -> np.ndarray:
    """The MLP discriminator in NumPy: (B, 784) in [-1, 1] (+ one-hot y) -> Linear/LeakyReLU(0.2) ... -> score,
    plus the projection <embed(y), features> for conditional models."""
    d = model.discriminator
    h = x if y is None else np.concatenate([x, np.eye(10)[y]], 1)
    for layer in d.body:
        if isinstance(layer, nn.Linear):
            h = h @ layer.weight.detach().double().numpy().T + layer.bias.detach().double().numpy()
        else:
            h = np.where(h > 0, h, 0.2 * h)
    score = h @ d.head.weight.detach().double().numpy()[0] + d.head.bias.detach().double().numpy()[0]
    if y is not None:
        score = score + (d.embed.weight.detach().double().numpy()[y] * h).sum(1)
    return score


def numeric_grad_norms(model, x: np.ndarray, y: np.ndarray | None, step: float = 1e-5) -> np.ndarray:
    """||grad_x D(x)|| per row by central differences of the NumPy discriminator."""
    norms = []
    for n in range(len(x)):
        eye = np.eye(x.shape[1]) * step
        plus = mlp_discriminator(model, x[n] + eye, None if y is None else np.full(len(eye), y[n]))
        minus = mlp_discriminator(model, x[n] - eye, None if y is None else np.full(len(eye), y[n]))
        norms.append(np.sqrt((((plus - minus) / (2 * step)) ** 2).sum()))
    return np.array(norms)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("cls", [GAN, ConditionalGAN], ids=["gan", "cgan"])
def test_model_losses_match_the_plain_computation(kind, cls):
    torch.manual_seed(0)
    model = cls(latent_dim=4, widths=(8, 6), loss=kind, ema_decay=0.0).double()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(6, 1, 28, 28, generator=g, dtype=torch.float64)
    z = torch.randn(6, 4, generator=g, dtype=torch.float64)
    eps = torch.rand(6, 1, 1, 1, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 3, 3, 9, 1, 5]) if model.conditional else None
    model.eval()  # the generator's batch norm from running statistics: the same fakes in both computations
    d = model.d_losses(x, y, z, eps)
    g_out = model.g_losses(y, z)
    with torch.no_grad():
        fake_in = model.generator(z, y).flatten(1).numpy()
    real_in = x.flatten(1).numpy() * 2 - 1  # the discriminator sees [-1, 1]
    y_np = None if y is None else y.numpy()
    real, fake = mlp_discriminator(model, real_in, y_np), mlp_discriminator(model, fake_in, y_np)
    np.testing.assert_allclose(d["real"].detach().numpy(), real, rtol=1e-5)  # scores leave D as float32
    np.testing.assert_allclose(d["fake"].detach().numpy(), fake, rtol=1e-5)
    np.testing.assert_allclose(g_out["fake"].detach().numpy(), fake, rtol=1e-5)  # the generator step's scores
    d_ref, g_ref = reference_losses(real, fake, kind)
    if kind == "wgan-gp":
        e = eps.flatten(1).numpy()
        norms = numeric_grad_norms(model, e * real_in + (1 - e) * fake_in, y_np)
        penalty = np.mean((norms - 1) ** 2)
        assert float(d["gp"].detach()) == pytest.approx(penalty, rel=1e-5)
        d_ref = d_ref + model.config.gp_weight * penalty
    assert float(d["loss"].detach()) == pytest.approx(d_ref, rel=1e-5)
    assert float(g_out["loss"].detach()) == pytest.approx(g_ref, rel=1e-5)


def test_the_model_smooths_with_its_setting_and_draws_the_penalty_mix_when_not_given_one():
    """label_smoothing = 0.2 reaches the discriminator's loss (real target 0.8); without eps, d_losses draws
    eps ~ U[0, 1) of shape (B, 1, 1, 1) from the global stream, the loss then being that of the eps drawn."""
    g = torch.Generator().manual_seed(1)
    x = torch.rand(6, 1, 28, 28, generator=g, dtype=torch.float64)
    z = torch.randn(6, 4, generator=g, dtype=torch.float64)
    torch.manual_seed(0)
    smoothed = GAN(latent_dim=4, widths=(8, 6), loss="nonsaturating", label_smoothing=0.2, ema_decay=0.0)
    smoothed = smoothed.double().eval()
    d = smoothed.d_losses(x, None, z)
    with torch.no_grad():
        fake_in = smoothed.generator(z, None).flatten(1).numpy()
    real = mlp_discriminator(smoothed, x.flatten(1).numpy() * 2 - 1, None)
    fake = mlp_discriminator(smoothed, fake_in, None)
    d_ref, _ = reference_losses(real, fake, "nonsaturating", 0.2)
    assert float(d["loss"].detach()) == pytest.approx(d_ref, rel=1e-5)
    assert d_ref != pytest.approx(reference_losses(real, fake, "nonsaturating")[0], rel=1e-3)

    torch.manual_seed(0)
    critic = GAN(latent_dim=4, widths=(8, 6), loss="wgan-gp", ema_decay=0.0).double().eval()
    torch.manual_seed(3)
    drawn = critic.d_losses(x, None, z)
    torch.manual_seed(3)
    eps = torch.rand(6, 1, 1, 1).double()
    given = critic.d_losses(x, None, z, eps)
    assert float(drawn["gp"].detach()) == pytest.approx(float(given["gp"].detach()), rel=1e-6)
    assert float(drawn["loss"].detach()) == pytest.approx(float(given["loss"].detach()), rel=1e-6)
    other = critic.d_losses(x, None, z, torch.rand(6, 1, 1, 1, generator=g).double())
    assert float(other["gp"].detach()) != pytest.approx(float(given["gp"].detach()), rel=1e-3)


# ---------------------------------------------------------------------------- a known problem: two modes in 1-D


MODES = (0.25, 0.75)  # in the data's [0, 1]; the networks see 2x - 1 = -0.5 and 0.5
MODE_SD = 0.03


class Line(nn.Module):
    """A small MLP on 1-D inputs; `out=1` and a squeeze for the critic."""

    def __init__(self, d_in: int, critic: bool):
        super().__init__()
        self.critic = critic
        self.net = nn.Sequential(nn.Linear(d_in, 32), nn.LeakyReLU(0.2), nn.Linear(32, 32), nn.LeakyReLU(0.2),
                                 nn.Linear(32, 1))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        out = self.net(x.flatten(1))
        return out.squeeze(1) if self.critic else out.view(-1, 1, 1, 1)  # critic: (B,) scores; G: (B, 1, 1, 1)


class LineGAN(GAN):
    """The adversarial training step of `gan` with 1-D networks."""

    def build_generator(self) -> nn.Module:
        return Line(self.config.latent_dim, critic=False)

    def build_discriminator(self) -> nn.Module:
        return Line(1, critic=True)


def mixture(n: int, g: torch.Generator) -> torch.Tensor:
    """(n, 1, 1, 1) draws in [0, 1], shaped like one-pixel images."""
    mode = torch.randint(0, 2, (n, 1, 1, 1), generator=g).float()
    return MODES[0] + (MODES[1] - MODES[0]) * mode + MODE_SD * torch.randn(n, 1, 1, 1, generator=g)


@pytest.mark.parametrize("kind", ["nonsaturating", "hinge"])
def test_gan_learns_both_modes_of_a_1d_mixture(kind):
    """400 adversarial steps (`AdversarialModel.train_step`, 1-D networks): both modes covered, each near
    half the mass and centred near its mean, little mass between them. (WGAN-GP needs several critic
    steps per generator step and so more time; its losses are checked value for value above.)"""
    torch.manual_seed(0)
    model = LineGAN(latent_dim=2, widths=(32,), loss=kind, lr_g=2e-3, lr_d=2e-3, ema_decay=0.0)
    optimizers = model.configure_optimizers(SimpleNamespace(beta1=0.5, beta2=0.9, amp=False))
    g = torch.Generator().manual_seed(0)
    for step in range(400):
        model.train_step(mixture(64, g), None, optimizers, step=step, autocast=contextlib.nullcontext)
    with torch.no_grad():
        samples = ((model.generator(torch.randn(4000, 2, generator=g)) + 1) / 2).flatten().numpy()
    for mode in MODES:
        near = samples[np.abs(samples - mode) < 0.1]
        assert len(near) > 0.3 * len(samples), (kind, mode, len(near))  # the mode is covered (true share 0.5)
        assert abs(near.mean() - mode) < 0.05, (kind, mode, near.mean())  # and centred near it
    assert np.mean(np.abs(samples - 0.5) < 0.1) < 0.1  # little mass between the modes
    assert math.isfinite(float(samples.std()))
