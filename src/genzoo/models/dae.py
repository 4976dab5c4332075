"""Denoising autoencoder (Vincent et al. 2008): corrupted digits in, clean digits out.

The network is the convolutional autoencoder of `ae.py`; training corrupts each
input afresh and scores the reconstruction against the clean image. Three kinds of
corruption, each with a strength:

- gaussian: x + sigma * N(0, 1), clipped to [0, 1] (strength = sigma);
- salt-and-pepper: each pixel replaced by 0 or 1 (half each) with probability p;
- masking: each pixel set to 0 with probability p.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from ..config import ConfigError, in_range
from .ae import AEConfig, Autoencoder, reconstruction_error

NOISE_KINDS = ("gaussian", "salt-and-pepper", "masking")


@dataclass
class DAEConfig(AEConfig):
    noise: Literal["gaussian", "salt-and-pepper", "masking"] = "gaussian"
    noise_level: float = 0.5

    def __post_init__(self):
        super().__post_init__()
        in_range("noise_level", self.noise_level, 0.0, 1.0 if self.noise != "gaussian" else 10.0)


def parse_noise(text: str) -> tuple[str, float]:
    """'gaussian:0.5' -> ('gaussian', 0.5); the kind alone keeps its default strength of 0.5."""
    kind, _, level = text.partition(":")
    if kind not in NOISE_KINDS:
        raise ConfigError(f"--noise {text!r}: kind must be one of {', '.join(NOISE_KINDS)} (e.g. gaussian:0.5)")
    try:
        value = float(level) if level else 0.5
    except ValueError:
        raise ConfigError(f"--noise {text!r}: strength {level!r} is not a number (e.g. masking:0.3)") from None
    DAEConfig(noise=kind, noise_level=value)  # range check
    return kind, value


def corrupt(x: torch.Tensor, kind: str, level: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Corrupt images (B, 1, H, W) in [0, 1]; noise is drawn from `generator` on its device."""
    device = generator.device if generator is not None else x.device
    if kind == "gaussian":
        noise = torch.randn(x.shape, generator=generator, device=device).to(x.device)
        return (x + level * noise).clamp(0, 1)
    u = torch.rand(x.shape, generator=generator, device=device).to(x.device)
    if kind == "masking":
        return torch.where(u < level, torch.zeros_like(x), x)
    if kind == "salt-and-pepper":
        salt = torch.rand(x.shape, generator=generator, device=device).to(x.device) < 0.5
        return torch.where(u < level, salt.to(x.dtype), x)
    raise ConfigError(f"noise kind {kind!r}: must be one of {', '.join(NOISE_KINDS)}")


def psnr(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image, for images in [0, 1]. Returns (B,)."""
    mse = (x - reference).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return -10 * torch.log10(mse)


class DenoisingAutoencoder(Autoencoder):
    """Denoising autoencoder: clean digits out of noisy ones."""

    name = "dae"
    Config = DAEConfig

    def loss(self, x, y=None, *, step=None):
        noisy = corrupt(x, self.config.noise, self.config.noise_level)
        z = self.encode(noisy)
        if self.training:
            self._track_codes(z.detach().float())
        return {"loss": reconstruction_error(self.decoder(z), x, self.config.loss).mean()}

    @torch.no_grad()
    def denoise(self, noisy: torch.Tensor) -> torch.Tensor:
        return self.reconstruct(noisy)

    def write_pictures(self, run_dir, data):
        from ..pictures import spread, write_denoising

        super().write_pictures(run_dir, data)
        write_denoising(self, spread(data.test_x, 12), run_dir / "denoising.png", seed=0)
