"""Denoising autoencoder (Vincent et al. 2008): corrupted digits in, clean digits out; and a generative
model through its Markov chain (Bengio et al. 2013, "Generalized Denoising Auto-Encoders as Generative Models").

The network is the convolutional autoencoder of `ae.py`; training corrupts each
input afresh and scores the reconstruction against the clean image. Three kinds of
corruption, each with a strength:

- gaussian: x + sigma * N(0, 1), clipped to [0, 1] (strength = sigma);
- salt-and-pepper: each pixel replaced by 0 or 1 (half each) with probability p;
- masking: each pixel set to 0 with probability p.

Sampling follows Bengio et al. 2013: the denoiser learns the reconstruction distribution
P(X | X~) (independent Bernoulli pixels with the decoder's probabilities, for the BCE loss),
and the chain X~_t ~ C(X~ | X_t), X_{t+1} ~ P(X | X~_t), started from uniform noise, has the
data distribution as its stationary distribution when the denoiser is a consistent estimator.
`sample` runs `chain_steps` of it and returns the last reconstruction's pixel probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from ..config import ConfigError, in_range, positive
from ..data import spread
from .ae import AEConfig, Autoencoder, reconstruction_error

NOISE_KINDS = ("gaussian", "salt-and-pepper", "masking")
DEFAULT_PICTURE_NOISES = [("gaussian", 0.5), ("salt-and-pepper", 0.3), ("masking", 0.5)]


@dataclass
class DAEConfig(AEConfig):
    noise: Literal["gaussian", "salt-and-pepper", "masking"] = "gaussian"
    noise_level: float = 0.5
    chain_steps: int = 30  # corruption-denoising steps of the sampling chain, from uniform noise to a sample

    def __post_init__(self):
        super().__post_init__()
        positive(chain_steps=self.chain_steps)
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


class DenoisingAutoencoder(Autoencoder):
    """Denoising autoencoder: clean digits out of noisy ones."""

    name = "dae"
    Config = DAEConfig
    can_denoise = True
    sample_options = ("steps",)  # corruption-denoising steps of the chain (default: the config's chain_steps)

    def loss(self, x, y=None, *, step=None):
        noisy = corrupt(x, self.config.noise, self.config.noise_level)
        z = self.encode(noisy)
        if self.training:
            self._track_codes(z.detach().float())
        return {"loss": reconstruction_error(self.decoder(z), x, self.config.loss).mean()}

    @torch.no_grad()
    def denoise(self, noisy: torch.Tensor) -> torch.Tensor:
        return self.reconstruct(noisy)

    @torch.no_grad()
    def denoising_rows(self, x: torch.Tensor, noises: list[tuple[str, float]] | None = None,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """For each noise (kind, strength): rows clean / noisy / denoised of x (N, 1, 28, 28).

        Returns:
            (3 * len(noises), N, 1, 28, 28); by default the three kinds at gaussian:0.5,
            salt-and-pepper:0.3 and masking:0.5.
        """
        x = x.to(self.device)
        rows = []
        for kind, level in noises or DEFAULT_PICTURE_NOISES:
            noisy = corrupt(x, kind, level, generator)
            rows += [x, noisy, self.reconstruct(noisy)]
        return torch.stack(rows)

    # ------------------------------------------------------------ the Markov chain (Bengio et al. 2013)

    @torch.no_grad()
    def chain_step(self, x: torch.Tensor,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One step of the chain from x (B, 1, 28, 28): corrupt, denoise, draw from the reconstruction distribution.

        Returns the next state (binary pixels drawn from P(X | X~) for the BCE loss; the mean for the squared
        error, whose Gaussian reconstruction distribution genzoo does not fit a variance for) and the
        pixel probabilities P(X = 1 | X~), both (B, 1, 28, 28) in [0, 1].
        """
        noisy = corrupt(x, self.config.noise, self.config.noise_level, generator)  # X~_t ~ C(X~ | X_t)
        probs = self.reconstruct(noisy)
        if self.config.loss != "bce":
            return probs, probs
        return (self.rand(*probs.shape, generator=generator) < probs).to(probs.dtype), probs  # X_{t+1} ~ P(X | X~_t)

    @torch.no_grad()
    def markov_chain(self, n: int, snapshots: list[int], generator: torch.Generator | None = None) -> torch.Tensor:
        """n chains from uniform noise; the pixel probabilities after each number of steps in `snapshots`
        (0: the noise itself). Returns (n, len(snapshots), 1, 28, 28) in [0, 1]."""
        x = self.rand(n, 1, 28, 28, generator=generator)
        frames, done, probs = [], 0, x
        for target in sorted(snapshots):
            while done < target:
                x, probs = self.chain_step(x, generator)
                done += 1
            frames.append(probs)
        return torch.stack(frames, 1)

    @torch.no_grad()
    def _sample(self, n, y, generator, steps: int | None = None):
        """The last reconstruction's pixel probabilities after `steps` (default chain_steps) steps of the chain."""
        steps = self.config.chain_steps if steps is None else steps
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ConfigError(f"{self.name}: steps={steps!r} chain steps; give a whole number >= 1")
        return self.markov_chain(n, [steps], generator)[:, -1]

    def chain_snapshots(self) -> list[int]:
        """The steps shown in a picture of the chain: 0, 1, 2, 5, 10, ... up to chain_steps (always included)."""
        steps = self.config.chain_steps
        return sorted({s for s in (0, 1, 2, 3, 5, 10, 20, 50, 100, 200) if s < steps} | {steps})

    def pictures(self, data):
        """reconstructions.png; denoising.png: 12 test digits under each kind of noise (seed 0); markov_chain.png:
        8 chains from uniform noise (rows), their pixel probabilities at the steps of `chain_snapshots` (columns)."""
        rows = self.denoising_rows(spread(data.test_x, 12), generator=torch.Generator().manual_seed(0))
        chain = self.markov_chain(8, self.chain_snapshots(), torch.Generator().manual_seed(0))
        return {**super().pictures(data), "denoising.png": rows, "markov_chain.png": chain}
