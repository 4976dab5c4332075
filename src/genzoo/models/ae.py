"""Convolutional autoencoder with a bottleneck (Hinton & Salakhutdinov 2006, in convolutional form).

Encoder: two stride-2 convolutions (28 -> 14 -> 7) and a linear map to a small code;
the decoder mirrors it with transposed convolutions and a sigmoid. The loss is the
per-image reconstruction error (binary cross-entropy against grey levels, or squared
error), summed over pixels.

An autoencoder has no prior to sample from. So that it can still show "samples",
it keeps a running Gaussian fit of the training codes (mean and covariance) and
`sample` decodes draws from that Gaussian: a crude generative model, and a fair
baseline for the VAE, which learns to make its codes match its prior.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..config import in_range, positive
from ..data import spread
from .base import GenerativeModel


@dataclass
class AEConfig:
    latent_dim: int = 16
    channels: int = 32  # first conv width; the second has twice as many
    loss: Literal["bce", "mse"] = "bce"
    code_momentum: float = 0.01  # EMA rate of the Gaussian fitted to the codes (for sampling)

    def __post_init__(self):
        positive(latent_dim=self.latent_dim, channels=self.channels)
        in_range("code_momentum", self.code_momentum, 0.0, 1.0)


def norm(channels: int) -> nn.GroupNorm:
    # Without normalisation these nets sit for a long while on the mean-image plateau. GroupNorm (not
    # BatchNorm) normalises each image on its own: the same in training and evaluation, and a
    # data-parallel run computes exactly what one process would. The convolutions before it have no
    # bias: the normalisation would cancel it, leaving it a parameter trained on rounding noise.
    return nn.GroupNorm(min(8, channels), channels)


class ConvEncoder(nn.Module):
    """(B, 1, 28, 28) -> (B, out_dim)."""

    def __init__(self, channels: int, out_dim: int):
        super().__init__()
        c = channels
        self.net = nn.Sequential(
            nn.Conv2d(1, c, 4, 2, 1, bias=False), norm(c), nn.GELU(),  # (B, c, 14, 14)
            nn.Conv2d(c, 2 * c, 4, 2, 1, bias=False), norm(2 * c), nn.GELU(),  # (B, 2c, 7, 7)
            nn.Conv2d(2 * c, 2 * c, 3, 1, 1, bias=False), norm(2 * c), nn.GELU(),
            nn.Flatten(),  # (B, 2c * 49)
            nn.Linear(2 * c * 49, out_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * 2 - 1)  # inputs in [0, 1], the network sees [-1, 1]


class ConvDecoder(nn.Module):
    """(B, in_dim) -> logits (B, 1, 28, 28)."""

    def __init__(self, channels: int, in_dim: int):
        super().__init__()
        c = channels
        self.fc = nn.Linear(in_dim, 2 * c * 49)
        self.net = nn.Sequential(
            nn.GELU(),
            nn.Conv2d(2 * c, 2 * c, 3, 1, 1, bias=False), norm(2 * c), nn.GELU(),
            nn.ConvTranspose2d(2 * c, c, 4, 2, 1, bias=False), norm(c), nn.GELU(),  # (B, c, 14, 14)
            nn.ConvTranspose2d(c, c, 4, 2, 1, bias=False), norm(c), nn.GELU(),  # (B, c, 28, 28)
            nn.Conv2d(c, 1, 3, 1, 1),  # (B, 1, 28, 28) logits
        )
        self.channels = c
        # Start from a dark image (sigmoid(-2) = 0.12, about MNIST's mean intensity), not grey 0.5.
        nn.init.constant_(self.net[-1].bias, -2.0)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc(z).view(len(z), 2 * self.channels, 7, 7)  # (B, 2c, 7, 7)
        return self.net(h)


def reconstruction_error(logits: torch.Tensor, x: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-image error summed over pixels: BCE in nats, or squared error. Returns (B,)."""
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(logits.float(), x, reduction="none").flatten(1).sum(1)
    return (torch.sigmoid(logits.float()) - x).pow(2).flatten(1).sum(1)


class Autoencoder(GenerativeModel):
    """Convolutional autoencoder: bottleneck reconstructions."""

    name = "ae"
    Config = AEConfig
    can_reconstruct = True
    train_defaults = {"epochs": 20, "batch_size": 128, "lr": 2e-3, "schedule": "cosine"}

    def __init__(self, config=None, **overrides):
        super().__init__(config, **overrides)
        cfg = self.config
        self.encoder = ConvEncoder(cfg.channels, cfg.latent_dim)
        self.decoder = ConvDecoder(cfg.channels, cfg.latent_dim)
        self.register_buffer("code_mean", torch.zeros(cfg.latent_dim))
        self.register_buffer("code_cov", torch.eye(cfg.latent_dim))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Codes (B, latent_dim) -> images (B, 1, 28, 28) in [0, 1]."""
        return torch.sigmoid(self.decoder(z).float())

    def loss(self, x, y=None, *, step=None):
        z = self.encode(x)
        error = reconstruction_error(self.decoder(z), x, self.config.loss).mean()
        if self.training:
            self._track_codes(z.detach().float())
        return {"loss": error}

    @torch.no_grad()
    def _track_codes(self, z: torch.Tensor) -> None:
        m = self.config.code_momentum
        centred = z - z.mean(0)
        self.code_mean.lerp_(z.mean(0), m)
        self.code_cov.lerp_(centred.T @ centred / max(len(z) - 1, 1), m)

    @torch.no_grad()
    def reconstruct(self, x):
        return self.decode(self.encode(x))

    @torch.no_grad()
    def _sample(self, n, y, generator):
        eye = torch.eye(self.config.latent_dim, device=self.code_cov.device)
        chol = torch.linalg.cholesky(self.code_cov + 1e-5 * eye)
        z = self.code_mean + self.randn(n, self.config.latent_dim, generator=generator) @ chol.T
        return self.decode(z)

    def pictures(self, data):
        """reconstructions.png: 16 test digits spread over the set, above their reconstructions."""
        return {"reconstructions.png": self.reconstruction_rows(spread(data.test_x, 16))}
