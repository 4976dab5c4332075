"""Variational autoencoder (Kingma & Welling 2014) with a Bernoulli decoder on binarized digits.

The encoder gives q(z|x) = N(mu, diag(sigma^2)); the prior is p(z) = N(0, I); the
decoder gives independent Bernoulli pixels p(x|z). Training minimises the negative
ELBO per image, in nats:

    -ELBO(x) = E_q[-log p(x|z)] + KL(q(z|x) || p(z))

with one reparameterised sample for the expectation and the closed-form KL.
`log_prob` is the importance-weighted estimate of Burda et al. 2016 (IWAE),

    log p(x) ~= log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x),  z_k ~ q(z|x),

a stochastic lower bound that tightens as K grows (K=5000 for reported numbers).

Two architectures: `arch=conv` (default, the NLL target) and `arch=mlp` with the
sizes of PyTorch's own MNIST VAE example (784-400-20), the speed reference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..config import non_negative, positive
from .ae import ConvDecoder, ConvEncoder
from .base import GenerativeModel

LOG_2PI = math.log(2 * math.pi)
# Images decoded at once by `log_prob`: K importance samples of a batch of B digits are K * B decoder
# passes, and the conv decoder holds 64 x 28 x 28 floats per image (K = 500 samples of 500 digits
# would need 50 GB for one layer's output). Chunking the decoding leaves the draws, and so the
# estimate, as they are.
DECODED_PER_PASS = 8192


@dataclass
class VAEConfig:
    arch: Literal["conv", "mlp"] = "conv"
    latent_dim: int = 32
    channels: int = 64  # conv width (first layer)
    hidden: int = 400  # mlp width
    iwae_k: int = 5000  # importance samples for log_prob
    iwae_chunk: int = 500  # importance samples drawn at once (decoded DECODED_PER_PASS images at a time)
    kl_warmup_steps: int = 0  # > 0: the KL term's weight rises linearly from 0 to 1 over these steps (Sønderby et al. 2016)

    def __post_init__(self):
        positive(latent_dim=self.latent_dim, channels=self.channels, hidden=self.hidden,
                 iwae_k=self.iwae_k, iwae_chunk=self.iwae_chunk)
        non_negative(kl_warmup_steps=self.kl_warmup_steps)


class MLPEncoder(nn.Module):
    def __init__(self, hidden: int, out_dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))

    def forward(self, x):
        return self.net(x)


class MLPDecoder(nn.Module):
    def __init__(self, hidden: int, in_dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, 784))

    def forward(self, z):
        return self.net(z).view(len(z), 1, 28, 28)  # (B, 1, 28, 28) logits


def gaussian_log_density(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag(exp(logvar))) summed over the last axis."""
    return -0.5 * (LOG_2PI + logvar + (z - mu).pow(2) / logvar.exp()).sum(-1)


def bernoulli_log_likelihood(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """sum over pixels of log Bernoulli(x; sigmoid(logits)); returns the leading shape."""
    return -F.binary_cross_entropy_with_logits(logits.float(), x.expand_as(logits), reduction="none").flatten(-3).sum(-1)


class VAE(GenerativeModel):
    """Variational autoencoder: ELBO, prior samples, reconstructions, IWAE NLL."""

    name = "vae"
    Config = VAEConfig
    binary_data = True
    log_prob_kind = "estimate"
    train_defaults = {"epochs": 100, "batch_size": 128, "lr": 1e-3, "schedule": "cosine"}

    def __init__(self, config=None, **overrides):
        super().__init__(config, **overrides)
        cfg = self.config
        if cfg.arch == "conv":
            self.encoder = ConvEncoder(cfg.channels, 2 * cfg.latent_dim)
            self.decoder = ConvDecoder(cfg.channels, cfg.latent_dim)
        else:
            self.encoder = MLPEncoder(cfg.hidden, 2 * cfg.latent_dim)
            self.decoder = MLPDecoder(cfg.hidden, cfg.latent_dim)
        self.register_buffer("train_steps", torch.zeros((), dtype=torch.long))  # losses taken in training mode

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 1, 28, 28) -> mean and log-variance of q(z|x), each (B, latent_dim)."""
        mu, logvar = self.encoder(x).float().chunk(2, dim=-1)
        return mu, logvar.clamp(-12, 8)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def elbo_terms(self, x: torch.Tensor, eps: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Per-image reconstruction log-likelihood and KL, (B,) each, from one sample z = mu + sigma * eps."""
        mu, logvar = self.encode(x)
        eps = torch.randn_like(mu) if eps is None else eps
        z = mu + (0.5 * logvar).exp() * eps
        log_px_z = bernoulli_log_likelihood(self.decode_logits(z), x)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(-1)
        return {"log_px_z": log_px_z, "kl": kl}

    def kl_weight(self) -> float | torch.Tensor:
        """Weight of the KL term in the training loss: 1, or rising from 0 during `kl_warmup_steps`
        (a 0-d tensor then, computed on the device from the step buffer)."""
        warmup = self.config.kl_warmup_steps
        return (self.train_steps / warmup).clamp(max=1.0) if warmup and self.training else 1.0

    def loss(self, x, y=None, *, step=None):
        """The negative ELBO, mean over the batch ("loss" weighs the KL by `kl_weight` during warm-up;
        "nelbo" is always the true bound)."""
        terms = self.elbo_terms(x)
        recon, kl = -terms["log_px_z"].mean(), terms["kl"].mean()
        weight = self.kl_weight()
        if self.training:
            self.train_steps += 1
        return {"loss": recon + weight * kl, "nelbo": (recon + kl).detach(), "recon": recon, "kl": kl}

    @torch.no_grad()
    def elbo(self, x: torch.Tensor) -> torch.Tensor:
        """One-sample ELBO per image in nats, (B,)."""
        terms = self.elbo_terms(x)
        return terms["log_px_z"] - terms["kl"]

    @torch.no_grad()
    def log_prob(self, x, y=None, k: int | None = None):
        """IWAE estimate of log p(x) per image in nats, (B,), with k importance samples."""
        k = k or self.config.iwae_k
        mu, logvar = self.encode(x)  # (B, D) each
        std = (0.5 * logvar).exp()
        chunks = []
        for start in range(0, k, self.config.iwae_chunk):
            m = min(self.config.iwae_chunk, k - start)
            z = mu + std * torch.randn(m, *mu.shape, device=mu.device)  # (m, B, D)
            log_px_z = torch.cat([  # (m, B), decoded a few samples at a time
                bernoulli_log_likelihood(self.decode_logits(part.flatten(0, 1)).view(len(part), len(x), 1, 28, 28), x)
                for part in z.split(max(1, DECODED_PER_PASS // len(x)))])
            log_w = (log_px_z
                     + gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z))
                     - gaussian_log_density(z, mu, logvar))
            chunks.append(log_w)
        return torch.logsumexp(torch.cat(chunks), dim=0) - math.log(k)

    @torch.no_grad()
    def decode_mean(self, z: torch.Tensor) -> torch.Tensor:
        """Decoder means (pixel probabilities) for codes (B, latent_dim): (B, 1, 28, 28)."""
        return torch.sigmoid(self.decode_logits(z).float())

    @torch.no_grad()
    def sample_with_means(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Prior samples: the binary images drawn from p(x|z) and the means they came from."""
        z = self.randn(n, self.config.latent_dim, generator=generator)
        means = self.decode_mean(z)
        u = self.rand(*means.shape, generator=generator)
        return (u < means).float(), means

    @torch.no_grad()
    def sample(self, n, *, y=None, generator=None):
        return self.sample_with_means(n, generator)[0]

    @torch.no_grad()
    def reconstruct(self, x):
        mu, _ = self.encode(x)
        return self.decode_mean(mu)

    def write_pictures(self, run_dir, data):
        from ..pictures import spread, write_latent_plots, write_reconstructions, write_samples_and_means

        write_reconstructions(self, spread(data.test_x, 16), run_dir / "reconstructions.png")
        write_samples_and_means(self, run_dir / "prior_samples_and_means.png")
        if self.config.latent_dim == 2:
            write_latent_plots(self, data.test_x[:5000], data.test_y[:5000], run_dir)
