"""Variational autoencoder (Kingma & Welling 2014) with a Bernoulli decoder on binarized digits.

The encoder gives q(z|x) = N(mu, diag(sigma^2)); the prior is p(z) = N(0, I); the
decoder gives independent Bernoulli pixels p(x|z). Training minimises the negative
ELBO per image, in nats:

    -ELBO(x) = E_q[-log p(x|z)] + KL(q(z|x) || p(z))

with one reparameterised sample for the expectation and the closed-form KL.
`log_prob` is the importance-weighted estimate of Burda et al. 2016 (IWAE),

    log p(x) ~= log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x),  z_k ~ q(z|x),

a stochastic lower bound that tightens as K grows (K=5000 for reported numbers).
With `train_k` > 1 training maximises that bound itself with K = `train_k` reparameterised
samples (the IWAE objective of the same paper) instead of the ELBO.

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

from ..config import ConfigError, non_negative, positive
from ..constants import IMAGE_SHAPE, N_PIXELS
from ..data import fixed_binarization, spread
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
    depth: int = 1  # mlp hidden layers, in the encoder and in the decoder
    iwae_k: int = 5000  # importance samples for log_prob
    iwae_chunk: int = 500  # importance samples drawn at once (decoded DECODED_PER_PASS images at a time)
    kl_warmup_steps: int = (
        0  # > 0: the KL term's weight rises linearly from 0 to 1 over these steps (Sønderby et al. 2016)
    )
    train_k: int = 1  # > 1: train on the IWAE bound with this many samples (Burda et al. 2016), not the ELBO

    def __post_init__(self):
        positive(latent_dim=self.latent_dim, channels=self.channels, hidden=self.hidden, depth=self.depth,
                 iwae_k=self.iwae_k, iwae_chunk=self.iwae_chunk, train_k=self.train_k)
        non_negative(kl_warmup_steps=self.kl_warmup_steps)
        if self.train_k > 1 and self.kl_warmup_steps:
            raise ConfigError(f"train_k={self.train_k} with kl_warmup_steps={self.kl_warmup_steps}: the warm-up "
                              "weighs the ELBO's KL term, which the IWAE bound has not; set one of them only")


def mlp(in_dim: int, hidden: int, depth: int, out_dim: int) -> list[nn.Module]:
    """`depth` hidden layers of `hidden` ReLU units between `in_dim` inputs and `out_dim` outputs."""
    layers: list[nn.Module] = []
    for width_in in [in_dim] + [hidden] * (depth - 1):
        layers += [nn.Linear(width_in, hidden), nn.ReLU()]
    return layers + [nn.Linear(hidden, out_dim)]


class MLPEncoder(nn.Module):
    def __init__(self, hidden: int, out_dim: int, depth: int = 1):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), *mlp(N_PIXELS, hidden, depth, out_dim))

    def forward(self, x):
        return self.net(x)


class MLPDecoder(nn.Module):
    def __init__(self, hidden: int, in_dim: int, depth: int = 1):
        super().__init__()
        self.net = nn.Sequential(*mlp(in_dim, hidden, depth, N_PIXELS))

    def forward(self, z):
        return self.net(z).view(len(z), 1, 28, 28)  # (B, 1, 28, 28) logits


def gaussian_log_density(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag(exp(logvar))) summed over the last axis."""
    return -0.5 * (LOG_2PI + logvar + (z - mu).pow(2) / logvar.exp()).sum(-1)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) of each dimension, in nats: the same shape as mu."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar)


def bernoulli_log_likelihood(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """sum over pixels of log Bernoulli(x; sigmoid(logits)); returns the leading shape."""
    return (
        -F.binary_cross_entropy_with_logits(logits.float(), x.expand_as(logits), reduction="none").flatten(-3).sum(-1)
    )


class VAE(GenerativeModel):
    """Variational autoencoder: ELBO, prior samples, reconstructions, IWAE NLL."""

    name = "vae"
    Config = VAEConfig
    binary_data = True
    log_prob_kind = "estimate"
    log_prob_options = ("k", "generator")
    has_elbo = True
    can_reconstruct = True
    can_interpolate = True
    interpolates_from_digit = True
    has_latent_map = True  # with latent_dim 2
    train_defaults = {"epochs": 100, "batch_size": 128, "lr": 1e-3, "schedule": "cosine"}

    def __init__(self, config=None, **overrides):
        super().__init__(config, **overrides)
        cfg = self.config
        if cfg.arch == "conv":
            self.encoder = ConvEncoder(cfg.channels, 2 * cfg.latent_dim)
            self.decoder = ConvDecoder(cfg.channels, cfg.latent_dim)
        else:
            self.encoder = MLPEncoder(cfg.hidden, 2 * cfg.latent_dim, cfg.depth)
            self.decoder = MLPDecoder(cfg.hidden, cfg.latent_dim, cfg.depth)
        # Runs saved before the trainer passed the step count held it in a "train_steps" buffer.
        self.register_load_state_dict_pre_hook(lambda _, state, prefix, *__: state.pop(prefix + "train_steps", None))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 1, 28, 28) -> mean and log-variance of q(z|x), each (B, latent_dim)."""
        mu, logvar = self.encoder(x).float().chunk(2, dim=-1)
        return mu, logvar.clamp(-12, 8)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def elbo_terms(self, x: torch.Tensor, eps: torch.Tensor | None = None,
                   generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Per-image reconstruction log-likelihood and KL, (B,) each, from one sample z = mu + sigma * eps
        (eps drawn from `generator` when not given)."""
        mu, logvar = self.encode(x)
        eps = self.randn(*mu.shape, generator=generator) if eps is None else eps
        z = mu + (0.5 * logvar).exp() * eps
        log_px_z = bernoulli_log_likelihood(self.decode_logits(z), x)
        kl = gaussian_kl(mu, logvar).sum(-1)
        return {"log_px_z": log_px_z, "kl": kl}

    def kl_weight(self, step: int | None = None) -> float:
        """Weight of the KL term in the training loss at the trainer's `step`: rising from 0 during
        `kl_warmup_steps`, then 1; always 1 without a step (evaluation scores the true bound)."""
        warmup = self.config.kl_warmup_steps
        return min(1.0, step / warmup) if warmup and step is not None else 1.0

    def loss(self, x, y=None, *, step=None):
        """The negative ELBO, mean over the batch ("loss" weighs the KL by `kl_weight(step)` during warm-up;
        "nelbo" is always the true bound); with `train_k` > 1 the negative IWAE bound with that many samples."""
        if self.config.train_k > 1:
            return self.iwae_loss(x, self.config.train_k)
        terms = self.elbo_terms(x)
        recon, kl = -terms["log_px_z"].mean(), terms["kl"].mean()
        weight = self.kl_weight(step)
        return {"loss": recon + weight * kl, "nelbo": (recon + kl).detach(), "recon": recon, "kl": kl}

    def iwae_loss(self, x: torch.Tensor, k: int) -> dict[str, torch.Tensor]:
        """The negative k-sample IWAE bound, -log (1/k) sum_k p(x|z_k) p(z_k) / q(z_k|x), mean over the batch, from
        k reparameterised samples z_k ~ q(z|x): the training loss with `train_k` = k > 1."""
        mu, logvar = self.encode(x)
        z = mu + (0.5 * logvar).exp() * self.randn(k, *mu.shape)  # (k, B, D)
        loss = -(torch.logsumexp(self.log_weights(x, z, mu, logvar), dim=0) - math.log(k)).mean()
        return {"loss": loss, "niwae": loss.detach()}

    @torch.no_grad()
    def elbo(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One-sample ELBO per image in nats, (B,); the posterior sample drawn from `generator`."""
        terms = self.elbo_terms(x, generator=generator)
        return terms["log_px_z"] - terms["kl"]

    @torch.no_grad()
    def log_prob(self, x, y=None, k: int | None = None, generator: torch.Generator | None = None):
        """IWAE estimate of log p(x) per image in nats, (B,), with k importance samples drawn from `generator`."""
        k = k or self.config.iwae_k
        mu, logvar = self.encode(x)  # (B, D) each
        std = (0.5 * logvar).exp()
        chunks = []
        for start in range(0, k, self.config.iwae_chunk):
            m = min(self.config.iwae_chunk, k - start)
            z = mu + std * self.randn(m, *mu.shape, generator=generator)  # (m, B, D)
            chunks.append(self.log_weights(x, z, mu, logvar))
        return torch.logsumexp(torch.cat(chunks), dim=0) - math.log(k)

    def log_weights(self, x: torch.Tensor, z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """log p(x|z) + log p(z) - log q(z|x), (m, B), of codes z (m, B, D) drawn from q(z|x) = N(mu, exp(logvar))
        for images x (B, 1, 28, 28); decoded a few samples at a time."""
        log_px_z = torch.cat([
            bernoulli_log_likelihood(self.decode_logits(part.flatten(0, 1)).view(len(part), len(x), 1, 28, 28), x)
            for part in z.split(max(1, DECODED_PER_PASS // len(x)))])
        return (log_px_z
                + gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z))
                - gaussian_log_density(z, mu, logvar))

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
    def _sample(self, n, y, generator):
        return self.sample_with_means(n, generator)[0]

    @torch.no_grad()
    def reconstruct(self, x):
        mu, _ = self.encode(x)
        return self.decode_mean(mu)

    @torch.no_grad()
    def kl_per_dimension(self, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        """Mean over images x (N, 1, 28, 28) of each latent dimension's KL(q(z_d|x) || N(0, 1)) in nats, (latent_dim,).

        The closed-form KL of the ELBO, split by dimension: a dimension with KL ~ 0 for every image is unused
        (its posterior is the prior, the decoder ignores it; Burda et al. 2016 call the others "active units").
        """
        total = torch.zeros(self.config.latent_dim, dtype=torch.float64, device=self.device)
        for batch in x.split(batch_size):
            mu, logvar = self.encode(batch.to(self.device))
            total += gaussian_kl(mu, logvar).double().sum(0)
        return (total / len(x)).float().cpu()

    def kl_figure(self, x: torch.Tensor, active: float = 0.01):
        """A matplotlib Figure: bars of `kl_per_dimension(x)`, sorted, with how many exceed `active` nats."""
        from matplotlib.figure import Figure  # optional heavy dependency, only for this picture

        kl = self.kl_per_dimension(x).sort(descending=True).values
        n_active = int((kl > active).sum())
        fig = Figure(figsize=(6.4, 2.8), dpi=100, layout="tight")
        ax = fig.subplots()
        ax.bar(range(len(kl)), kl.numpy(), color="tab:blue")
        ax.axhline(active, color="0.5", lw=0.8, ls="--")
        ax.set(xlabel="latent dimension (sorted by KL)", ylabel="mean KL (nats)",
               title=f"KL per latent dimension, {len(x):,} test digits: {n_active} of {len(kl)} carry > {active} nats")
        return fig

    def pictures(self, data):
        """reconstructions.png; prior_samples_and_means.png (16 prior samples above the decoder means they
        were drawn from, seed 0); kl_per_dimension.png (1,000 test digits, fixed binarization); with a 2-D latent
        space, latent_space.png and latent_manifold.png."""
        samples, means = self.sample_with_means(16, torch.Generator().manual_seed(0))
        out = {"reconstructions.png": self.reconstruction_rows(spread(data.test_x, 16)),
               "prior_samples_and_means.png": torch.stack([samples, means]),
               "kl_per_dimension.png": self.kl_figure(fixed_binarization(spread(data.test_x, 1000)))}
        if self.config.latent_dim == 2:
            out["latent_space.png"] = self.latent_scatter(data.test_x[:5000], data.test_y[:5000])
            out["latent_manifold.png"] = self.latent_manifold()
        return out

    @torch.no_grad()
    def latent_scatter(self, x: torch.Tensor, y: torch.Tensor):
        """A matplotlib Figure of test digits at their encoder means, coloured by digit (2-D latents)."""
        from matplotlib.figure import Figure  # optional heavy dependency, only for 2-D latent spaces

        mu = self.encode(x.to(self.device))[0].cpu()  # (N, 2)
        fig = Figure(figsize=(6, 5.5), dpi=110)
        ax = fig.subplots()
        points = ax.scatter(mu[:, 0], mu[:, 1], c=y.cpu(), cmap="tab10", s=3, vmin=-0.5, vmax=9.5)
        fig.colorbar(points, ax=ax, ticks=range(10), label="digit")
        ax.set(xlabel="z1", ylabel="z2", title="Test digits in the latent space (encoder means)")
        return fig

    @torch.no_grad()
    def interpolation(self, steps: int, *, rows: int = 1, label: int | None = None, start: torch.Tensor | None = None,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """Decoder means along straight lines z0 -> z1, (rows, steps, 1, 28, 28): z1 a prior draw, z0 the code
        (encoder mean) of the digit `start` (1, 1, 28, 28) when given, else a prior draw."""
        if steps < 2 or rows < 1:
            raise ConfigError(f"{self.name}: steps={steps}, rows={rows}: need at least 2 steps and 1 row")
        if label is not None:
            self.check_labels(1, label)  # unconditional: the error that says so
        z1 = self.randn(rows, self.config.latent_dim, generator=generator)
        z0 = self.encode(start.to(self.device))[0].expand(rows, -1) if start is not None else \
            self.randn(rows, self.config.latent_dim, generator=generator)
        t = torch.linspace(0, 1, steps, device=z1.device)[None, :, None]  # (1, S, 1)
        z = z0[:, None] + t * (z1 - z0)[:, None]  # (R, S, latent)
        return self.decode_mean(z.flatten(0, 1)).view(rows, steps, *IMAGE_SHAPE)

    @torch.no_grad()
    def latent_manifold(self, steps: int = 20) -> torch.Tensor:
        """Decoder means over a grid of 2-D latents: (steps, steps, 1, 28, 28).

        The grid covers the prior's central mass at Gaussian quantiles 0.05..0.95, as in
        Kingma & Welling's figure 4; z2 decreases down the rows.
        """
        q = torch.distributions.Normal(0, 1).icdf(torch.linspace(0.05, 0.95, steps))
        z1, z2 = torch.meshgrid(q, q.flip(0), indexing="xy")
        z = torch.stack([z1.flatten(), z2.flatten()], dim=1).to(self.device)  # (steps^2, 2)
        return self.decode_mean(z).view(steps, steps, *IMAGE_SHAPE)
