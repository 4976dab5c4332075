"""The parts the diffusion models share (`ddpm` and the `instruct` editor): the network, the noise schedule,
the sampler, the first-stage autoencoder of latent diffusion, the diffused space and the EMA of the weights.

Papers followed:

- Ho, Jain & Abbeel 2020, "Denoising Diffusion Probabilistic Models": the forward noising
  q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I), the ancestral sampler through the posterior
  q(x_{t-1} | x_t, x_0), and the U-Net with sinusoidal time embedding, GroupNorm residual blocks and self-attention.
- Nichol & Dhariwal 2021, "Improved Denoising Diffusion Probabilistic Models": the cosine schedule.
- Song, Meng & Ermon 2021, "Denoising Diffusion Implicit Models": the DDIM sampler (steps, eta).
- Salimans & Ho 2022, "Progressive Distillation for Fast Sampling of Diffusion Models": v-prediction,
  v = sqrt(abar) eps - sqrt(1 - abar) x_0.
- Rombach et al. 2022, "High-Resolution Image Synthesis with Latent Diffusion Models": a KL-regularised
  convolutional autoencoder (28x28 -> latent_channels x 7 x 7), trained as stage one of the same run
  (`first_stage_steps`), whose latents, scaled to unit standard deviation, are diffused.

Three separate pieces, as in diffusers: the network (`UNet`), the noise schedule (`NoiseSchedule`, the closed
forms of the forward process) and the sampler (`Sampler`, one reverse step at a time). A model ties them together
with `LatentSpace` (what is diffused) and `WithEMA` (the sampling network, a moving average of the trained one).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..config import ConfigError, in_range, non_negative, positive
from ..constants import IMAGE_SHAPE
from .base import adam, report_progress

IMAGE_SIZE = IMAGE_SHAPE[-1]
LATENT_SIZE = 7  # the first stage halves 28 twice


@dataclass
class DiffusionConfig:
    """The settings every diffusion model here has; a model's config adds its own (and may change a default)."""

    # U-Net channels per resolution level, from 28x28 (pixels) or 7x7 (latents) down; () takes the space's
    # default, the class's pixel_widths or latent_widths.
    pixel_widths: ClassVar[tuple[int, ...]] = (32, 64, 64)
    latent_widths: ClassVar[tuple[int, ...]] = (64, 128)

    space: Literal["pixel", "latent"] = "pixel"
    widths: tuple[int, ...] = ()
    res_blocks: int = 2  # residual blocks per level on the way down (one more on the way up)
    attn_resolution: int = 7  # self-attention in the blocks of feature maps this size or smaller
    attn_heads: int = 4
    dropout: float = 0.0
    timesteps: int = 1000
    noise_schedule: Literal["linear", "cosine"] = "cosine"  # (not `schedule`: that is the trainer's lr schedule)
    # What the U-Net predicts: the noise (Ho et al.) or v = sqrt(abar) eps - sqrt(1 - abar) x_0 (Salimans & Ho).
    prediction: Literal["eps", "v"] = "eps"
    ema_decay: float = 0.999  # 0: sample with the trained weights
    sample_steps: int = 50  # DDIM steps of a sample (or an edit) when the call does not say
    # Latent diffusion: the first-stage autoencoder.
    latent_channels: int = 4
    ae_widths: tuple[int, ...] = (32, 64)  # channels at 28x28 and at 14x14 (and 7x7)
    kl_weight: float = 1e-3  # weight of KL(q(z|x) || N(0, I)) against the reconstruction's nats
    first_stage_steps: int = 2000  # space=latent: the run's first steps train the autoencoder

    def __post_init__(self):
        for w in self.widths + self.ae_widths:
            positive(width=w)
        positive(res_blocks=self.res_blocks, attn_heads=self.attn_heads, timesteps=self.timesteps,
                 sample_steps=self.sample_steps, latent_channels=self.latent_channels)
        non_negative(attn_resolution=self.attn_resolution, kl_weight=self.kl_weight,
                     first_stage_steps=self.first_stage_steps)
        in_range("dropout", self.dropout, 0.0, 0.9)
        in_range("ema_decay", self.ema_decay, 0.0, 0.99999)
        if self.sample_steps > self.timesteps:
            raise ConfigError(f"sample_steps={self.sample_steps}: must be <= timesteps={self.timesteps}")
        if len(self.ae_widths) != 2:
            example = ",".join(map(str, next(f.default for f in fields(self) if f.name == "ae_widths")))
            raise ConfigError(f"ae_widths={self.ae_widths!r}: give two widths, for 28x28 and 14x14 (e.g. {example})")

    @property
    def unet_widths(self) -> tuple[int, ...]:
        if self.widths:
            return self.widths
        return self.pixel_widths if self.space == "pixel" else self.latent_widths


# ---------------------------------------------------------------------------- the network


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding of (B,) timesteps as in the Transformer: (B, dim), cos then sin."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]  # (B, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, dim % 2))


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(8, channels), channels)


class ResBlock(nn.Module):
    """GroupNorm, SiLU, conv; add the (time + class) embedding; GroupNorm, SiLU, dropout, conv; plus the skip."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float):
        super().__init__()
        self.norm1, self.conv1 = group_norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2, self.conv2 = group_norm(c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        nn.init.zeros_(self.conv2.weight)  # each block starts as the identity (Ho et al.'s zero-initialised last conv)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (B, c_out, H, W)
        h = h + self.emb(F.silu(emb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Multi-head self-attention over the H*W positions of a feature map, with a residual connection."""

    def __init__(self, channels: int, heads: int):
        super().__init__()
        if channels % heads:
            raise ConfigError(f"attn_heads={heads}: must divide the attention width {channels}")
        self.heads = heads
        self.norm = group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        d = c // self.heads
        # Positions first, channels last (a copy, or a view of a channels_last feature map): q, k and v then
        # have unit stride along d, which PyTorch's fused attention kernel needs; with d strided (as before)
        # it falls back to its matmul-and-softmax path (diffusers' UNet2DModel gets the fused kernel).
        qkv = self.qkv(self.norm(x)).permute(0, 2, 3, 1).reshape(b, h * w, 3, self.heads, d)  # (B, HW, 3, heads, d)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # (B, heads, HW, d) each
        out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, HW, d)
        out = out.transpose(1, 2).reshape(b, h, w, c).permute(0, 3, 1, 2)  # (B, C, H, W), NHWC in memory
        return x + self.out(out)


class Block(nn.Module):
    """A residual block, followed by self-attention at small resolutions."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float, attention: bool, heads: int):
        super().__init__()
        self.res = ResBlock(c_in, c_out, emb_dim, dropout)
        self.attn = SelfAttention(c_out, heads) if attention else None

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        x = self.res(x, emb)
        return self.attn(x) if self.attn is not None else x


class UNet(nn.Module):
    """eps_theta(x_t, t, y) (or v): a U-Net over (B, C, S, S) inputs.

    Each level halves the resolution (stride-2 convolution, ceil(S / 2) for odd sizes: 7 -> 4);
    the way up upsamples to the size of the skip it meets and concatenates it. The label enters
    with the time embedding; index `n_classes` is the learned null label of classifier-free guidance.
    Other conditioning (the `instruct` editor's instruction) can join the same way, as `cond` (B, 4 * widths[0]);
    `out_channels` (default in_channels) lets extra input channels, such as an image to edit, come in.
    """

    def __init__(self, in_channels: int, size: int, widths: tuple[int, ...], res_blocks: int, attn_resolution: int,
                 heads: int, dropout: float, n_classes: int = 0, out_channels: int | None = None):
        super().__init__()
        self.emb_dim = 4 * widths[0]
        emb_dim = 4 * widths[0]
        self.base = widths[0]
        self.time_mlp = nn.Sequential(nn.Linear(widths[0], emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.label_emb = nn.Embedding(n_classes + 1, emb_dim) if n_classes else None
        self.stem = nn.Conv2d(in_channels, widths[0], 3, padding=1)
        sizes = [size]
        for _ in widths[1:]:
            sizes.append((sizes[-1] + 1) // 2)

        self.down = nn.ModuleList()
        skip_channels = [widths[0]]
        c = widths[0]
        for level, width in enumerate(widths):
            attention = sizes[level] <= attn_resolution
            for _ in range(res_blocks):
                self.down.append(Block(c, width, emb_dim, dropout, attention, heads))
                c = width
                skip_channels.append(c)
            if level < len(widths) - 1:
                self.down.append(nn.Conv2d(c, c, 3, stride=2, padding=1))  # (B, c, ceil(S/2), ceil(S/2))
                skip_channels.append(c)
        self.mid1 = Block(c, c, emb_dim, dropout, True, heads)
        self.mid2 = Block(c, c, emb_dim, dropout, False, heads)

        self.up = nn.ModuleList()
        for level in reversed(range(len(widths))):
            attention = sizes[level] <= attn_resolution
            for _ in range(res_blocks + 1):
                self.up.append(Block(c + skip_channels.pop(), widths[level], emb_dim, dropout, attention, heads))
                c = widths[level]
            if level > 0:
                self.up.append(nn.Conv2d(c, c, 3, padding=1))  # after a nearest-neighbour upsampling
        self.out = nn.Sequential(group_norm(c), nn.SiLU(), nn.Conv2d(c, out_channels or in_channels, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None,
                cond: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, C, S, S), t (B,) integer steps, y (B,) labels with n_classes for "no label", cond (B, emb_dim)
        added to the embedding -> (B, out_channels, S, S)."""
        emb = self.time_mlp(timestep_embedding(t, self.base))  # (B, emb_dim)
        if self.label_emb is not None:
            emb = emb + self.label_emb(y)
        if cond is not None:
            emb = emb + cond
        h = self.stem(x)
        skips = [h]
        for layer in self.down:
            h = layer(h, emb) if isinstance(layer, Block) else layer(h)
            skips.append(h)
        h = self.mid2(self.mid1(h, emb), emb)
        for layer in self.up:
            if isinstance(layer, Block):
                h = layer(torch.cat([h, skips.pop()], dim=1), emb)
            else:  # upsample to the size of the next skip (7 from 4, 28 from 14)
                h = layer(F.interpolate(h, size=skips[-1].shape[-2:], mode="nearest"))
        return self.out(h)


# ---------------------------------------------------------------------------- the noise schedule


def _as(values: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """values[t] shaped (B, 1, 1, 1) to broadcast against x."""
    return values[t].to(x.dtype).view(-1, *([1] * (x.dim() - 1)))


def make_betas(kind: str, timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """beta_1..beta_T in float64: linear (Ho et al.) or cosine (Nichol & Dhariwal, s = 0.008, betas <= 0.999)."""
    if kind == "linear":
        return torch.linspace(beta_start, beta_end, timesteps, dtype=torch.float64)
    s = 0.008
    steps = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=0.999)


class NoiseSchedule(nn.Module):
    """The forward process and its closed forms. Index t = 0..T-1 stands for the paper's step t + 1.

    Computed in float64 and kept as float32 buffers (not saved: the config rebuilds them).
    """

    def __init__(self, betas: torch.Tensor):
        super().__init__()
        betas = betas.double()
        alphas = 1 - betas
        alpha_bar = torch.cumprod(alphas, 0)
        alpha_bar_prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar[:-1]])
        self.timesteps = len(betas)
        tables = {
            "betas": betas,
            "alphas": alphas,
            "alpha_bar": alpha_bar,
            "alpha_bar_prev": alpha_bar_prev,
            # the square roots too: 1 - abar taken in float32 loses digits where abar is near 1 (small t)
            "sqrt_alpha_bar": alpha_bar.sqrt(),
            "sqrt_one_minus_alpha_bar": (1 - alpha_bar).sqrt(),
            # q(x_{t-1} | x_t, x_0) = N(coef_x0 x_0 + coef_xt x_t, posterior_var) (Ho et al. eq. 7)
            "posterior_var": betas * (1 - alpha_bar_prev) / (1 - alpha_bar),
            "coef_x0": betas * alpha_bar_prev.sqrt() / (1 - alpha_bar),
            "coef_xt": (1 - alpha_bar_prev) * alphas.sqrt() / (1 - alpha_bar),
        }
        for key, value in tables.items():
            self.register_buffer(key, value.float(), persistent=False)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) noise."""
        return _as(self.sqrt_alpha_bar, t, x0) * x0 + _as(self.sqrt_one_minus_alpha_bar, t, x0) * noise

    def posterior(self, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of q(x_{t-1} | x_t, x_0)."""
        mean = _as(self.coef_x0, t, xt) * x0 + _as(self.coef_xt, t, xt) * xt
        return mean, _as(self.posterior_var, t, xt)

    def v_target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return _as(self.sqrt_alpha_bar, t, x0) * noise - _as(self.sqrt_one_minus_alpha_bar, t, x0) * x0

    def split(self, output: torch.Tensor, xt: torch.Tensor, t: torch.Tensor,
              prediction: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The network's output (eps or v) at x_t -> (predicted eps, predicted x_0)."""
        a, s = _as(self.sqrt_alpha_bar, t, xt), _as(self.sqrt_one_minus_alpha_bar, t, xt)
        if prediction == "v":
            return s * xt + a * output, a * xt - s * output
        return output, (xt - s * output) / a

    def eps_from_x0(self, xt: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        return (xt - _as(self.sqrt_alpha_bar, t, xt) * x0) / _as(self.sqrt_one_minus_alpha_bar, t, xt)


# ---------------------------------------------------------------------------- the sampler


class Sampler:
    """The reverse process, one step at a time, on a NoiseSchedule.

    kind="ancestral": all T steps, x_{t-1} ~ q(x_{t-1} | x_t, x_0 = predicted x_0) (Ho et al.).
    kind="ddim": `steps` evenly spaced timesteps, x_prev = sqrt(abar_prev) x0 + sqrt(1 - abar_prev - sigma^2) eps
    + sigma z with sigma = eta sqrt((1 - abar_prev) / (1 - abar_t)) sqrt(1 - abar_t / abar_prev) (Song et al. eq. 12).
    """

    def __init__(self, schedule: NoiseSchedule, kind: str = "ddim", steps: int = 50, eta: float = 0.0):
        T = schedule.timesteps
        if kind not in ("ddim", "ancestral"):
            raise ConfigError(f"sampler={kind!r}: must be ddim or ancestral")
        if kind == "ancestral" and steps != T:
            raise ConfigError(f"steps={steps}: the ancestral sampler takes all {T} steps; leave steps out or use "
                              "--sampler ddim")
        if not 1 <= steps <= T:
            raise ConfigError(f"steps={steps}: must lie in 1..{T} (the model's timesteps)")
        if not 0 <= eta <= 1:
            raise ConfigError(f"eta={eta}: must lie in [0, 1] (0 deterministic DDIM, 1 ancestral-like)")
        self.schedule, self.kind, self.steps, self.eta = schedule, kind, steps, eta
        ts = torch.linspace(0, T - 1, steps, dtype=torch.float64).round().long().flip(0)  # T-1 ... 0
        self.timesteps = ts.tolist()

    def step(self, eps: torch.Tensor, x0: torch.Tensor, t: int, t_prev: int, x: torch.Tensor,
             generator: torch.Generator | None) -> torch.Tensor:
        """x at step t -> x at step t_prev (-1: the end, x_0), given the predicted eps and x_0."""
        s = self.schedule
        tt = torch.full((len(x),), t, dtype=torch.long, device=x.device)
        if self.kind == "ancestral":
            mean, var = s.posterior(x0, x, tt)
            return mean if t == 0 else mean + var.sqrt() * _noise(x, generator)
        abar = float(s.alpha_bar[t])
        abar_prev = float(s.alpha_bar[t_prev]) if t_prev >= 0 else 1.0
        sigma = self.eta * math.sqrt((1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev))
        out = math.sqrt(abar_prev) * x0 + math.sqrt(max(1 - abar_prev - sigma**2, 0.0)) * eps
        return out + sigma * _noise(x, generator) if sigma > 0 else out

    def run(self, predict: Callable[[torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]], x: torch.Tensor,
            generator: torch.Generator | None = None, progress: bool | None = None,
            keep: int = 0) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Run the reverse process from x = x_T.

        Args:
            predict: (x_t, t) -> (predicted eps, predicted x_0), each like x.
            x: the start, pure noise (B, C, S, S).
            generator: draws the noise of stochastic steps (a CPU generator: the same on any device).
            progress: a tqdm bar over the steps (None: only on a terminal).
            keep: how many states along the way to return, evenly spaced, x_T first and x_0 last.
        Returns:
            x_0 and the list of kept states.
        """
        keep_at = set(torch.linspace(0, len(self.timesteps), keep).round().long().tolist()) if keep else set()
        kept = [x] if 0 in keep_at else []
        bar = tqdm(self.timesteps, desc=f"{self.kind} {self.steps} steps", leave=False, unit="step",
                   disable=None if progress is None else not progress)  # None: on a terminal only
        for i, t in enumerate(bar):
            t_prev = self.timesteps[i + 1] if i + 1 < len(self.timesteps) else -1
            report_progress(i, len(self.timesteps))
            eps, x0 = predict(x, t)
            x = self.step(eps, x0, t, t_prev, x, generator)
            if i + 1 in keep_at:
                kept.append(x)
        bar.close()
        return x, kept


def _noise(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    device = generator.device if generator is not None else x.device
    return torch.randn(x.shape, generator=generator, device=device).to(x.device, x.dtype)


# ---------------------------------------------------------------------------- the first stage (latent diffusion)


class KLAutoencoder(nn.Module):
    """(B, 1, 28, 28) <-> q(z | x) = N(mu, diag(sigma^2)) over (B, latent_channels, 7, 7); Bernoulli decoder logits.

    Rombach et al.'s first stage in small: convolutions down 28 -> 14 -> 7 and back up, with a
    weak KL term towards N(0, I) that keeps the latent space smooth and its scale bounded.
    """

    def __init__(self, widths: tuple[int, ...], latent_channels: int):
        super().__init__()
        c1, c2 = widths
        self.encoder = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1), group_norm(c1), nn.SiLU(),  # (B, c1, 28, 28)
            nn.Conv2d(c1, c2, 4, 2, 1), group_norm(c2), nn.SiLU(),  # (B, c2, 14, 14)
            nn.Conv2d(c2, c2, 4, 2, 1), group_norm(c2), nn.SiLU(),  # (B, c2, 7, 7)
            nn.Conv2d(c2, c2, 3, padding=1), group_norm(c2), nn.SiLU(),
            nn.Conv2d(c2, 2 * latent_channels, 1),  # (B, 2 * latent, 7, 7): mean and log-variance
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(latent_channels, c2, 3, padding=1), group_norm(c2), nn.SiLU(),  # (B, c2, 7, 7)
            nn.Conv2d(c2, c2, 3, padding=1), group_norm(c2), nn.SiLU(),
            nn.ConvTranspose2d(c2, c2, 4, 2, 1), group_norm(c2), nn.SiLU(),  # (B, c2, 14, 14)
            nn.ConvTranspose2d(c2, c1, 4, 2, 1), group_norm(c1), nn.SiLU(),  # (B, c1, 28, 28)
            nn.Conv2d(c1, 1, 3, padding=1),  # (B, 1, 28, 28) logits
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(2 * x - 1).chunk(2, dim=1)
        return mu, logvar.clamp(-30, 10)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(z))

    def loss(self, x: torch.Tensor, kl_weight: float) -> dict[str, torch.Tensor]:
        """Per-image nats of the Bernoulli reconstruction (against grey levels) plus kl_weight * KL, batch means."""
        mu, logvar = self.encode(x)
        z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
        recon = F.binary_cross_entropy_with_logits(self.decoder(z), x, reduction="none").flatten(1).sum(1).mean()
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).flatten(1).sum(1).mean()
        return {"loss": recon + kl_weight * kl, "ae_recon": recon.detach(), "ae_kl": kl.detach()}



# ---------------------------------------------------------------------------- shared by the models


class LatentSpace:
    """What a diffusion model diffuses: pixels in [-1, 1], or the scaled latent means of a first-stage autoencoder
    (Rombach et al.), which the model's first `config.first_stage_steps` training steps train. Shared by `ddpm` and
    the `instruct` editor: a model calls `init_space` in its __init__, then `to_space` / `from_space` and
    `in_first_stage`."""

    first_stage: KLAutoencoder | None
    shape: tuple[int, int, int]
    latent_scale: torch.Tensor

    def init_space(self, space: str, latent_channels: int, ae_widths: tuple[int, ...],
                   scale_buffer: bool = True) -> None:
        """The first stage (space="latent") and the shape diffused; `latent_scale` is a buffer of latent models
        (and of pixel ones when scale_buffer, as ddpm's state has always had it)."""
        latent = space == "latent"
        self.first_stage = KLAutoencoder(ae_widths, latent_channels) if latent else None
        self.shape = (latent_channels, LATENT_SIZE, LATENT_SIZE) if latent else (1, IMAGE_SIZE, IMAGE_SIZE)
        if latent or scale_buffer:
            # 1 / std of the first stage's latents, measured on the first diffusion batch (0: not yet), as Rombach
            self.register_buffer("latent_scale", torch.zeros(()))

    def diffusion_steps_before(self, step: int) -> int:
        """How many diffusion steps (not first-stage ones) came before the trainer's `step`: the EMA's count."""
        return step - (self.config.first_stage_steps if self.first_stage is not None else 0)

    def in_first_stage(self, step: int | None) -> bool:
        """True while `step` (the trainer's) belongs to the autoencoder's stage; None means fully trained."""
        return self.first_stage is not None and step is not None and step < self.config.first_stage_steps

    @torch.no_grad()
    def to_space(self, x: torch.Tensor, remember_scale: bool = False) -> torch.Tensor:
        """Images in [0, 1] -> what is diffused: pixels in [-1, 1], or scaled latent means."""
        if self.first_stage is None:
            return 2 * x - 1
        mu, _ = self.first_stage.encode(x)
        scale = self.latent_scale
        if float(scale) == 0:
            scale = 1 / mu.float().std().clamp_min(1e-6)
            if remember_scale:
                self.latent_scale.copy_(scale)
        return mu * scale

    @torch.no_grad()
    def from_space(self, z: torch.Tensor) -> torch.Tensor:
        """Inverse of `to_space`: images in [0, 1]."""
        if self.first_stage is None:
            return ((z + 1) / 2).clamp(0, 1)
        scale = self.latent_scale if float(self.latent_scale) > 0 else torch.ones(())
        return self.first_stage.decode(z / scale).clamp(0, 1)


@torch.no_grad()
def ema_update(ema: nn.Module, net: nn.Module, n: int, ema_decay: float) -> None:
    """ema <- decay ema + (1 - decay) net after n earlier updates, decay = min(ema_decay, (1 + n) / (10 + n))."""
    decay = min(ema_decay, (1 + n) / (10 + n))
    torch._foreach_lerp_(list(ema.parameters()), list(net.parameters()), 1 - decay)


class WithEMA:
    """A model whose `ema` submodule is a moving average of its weights, not trained: one Adam over the rest, and
    only the rest counted as its parameters. Shared by `ddpm` and `instruct`."""

    def trained_parameters(self) -> list[nn.Parameter]:
        return [p for name, p in self.named_parameters() if not name.startswith("ema.")]

    def configure_optimizers(self, train):
        return {"model": adam(self.trained_parameters(), train)}

    def n_parameters(self) -> int:
        """Trained parameters (the EMA copy is not counted)."""
        return sum(p.numel() for p in self.trained_parameters())
