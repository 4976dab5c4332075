"""Adversarial models: GAN, conditional GAN and DCGAN, sharing one config and one adversarial step.

- `gan`: Goodfellow et al. 2014, "Generative Adversarial Nets": fully connected
  generator and discriminator, with the non-saturating generator loss
  (maximise log D(G(z)) instead of minimising log(1 - D(G(z)))) by default.
- `cgan`: Mirza & Osindero 2014, "Conditional Generative Adversarial Nets": the
  one-hot label is concatenated to the generator's noise and to the
  discriminator's input. The discriminator also gets a projection term
  (Miyato & Koyama 2018, "cGANs with Projection Discriminator"): its score adds
  <embed(y), features(x)>.
- `dcgan`: Radford et al. 2015, "Unsupervised Representation Learning with Deep
  Convolutional GANs": project-and-reshape then fractionally strided
  convolutions with batch norm and ReLU in the generator, strided convolutions
  with LeakyReLU(0.2) in the discriminator (no batch norm on its first layer),
  N(0, 0.02) weights, Adam with lr 2e-4 and beta1 0.5. `conditional=true` makes
  it class-conditional the same way as `cgan` (one-hot planes into D). Options of
  its own: a third generator width (`widths=256,128,64`) adds a stage at 28x28 and
  a 3x3 output convolution; `minibatch_std=4` gives D the spread of each group of 4
  samples as one more feature map (Karras et al. 2018, "Progressive Growing of
  GANs"); `fc_width=1024` puts a fully connected layer between z and the projection,
  `d_fc_width=1024` one before D's score (InfoGAN's MNIST networks, Chen et al. 2016).

Options of all three (`AdversarialConfig`, `--set key=value`): latent size, widths,
`lr_g`/`lr_d`, `d_steps` (discriminator steps per generator step, each on its own
batch), the loss (`nonsaturating`; `hinge`, Lim & Ye 2017 and Miyato et al. 2018; or
`wgan-gp`, Gulrajani et al. 2017, "Improved Training of Wasserstein GANs", with
`gp_weight`), one-sided label smoothing (Salimans et al. 2016, "Improved Techniques
for Training GANs"), an exponential moving average of the generator weights used for
sampling (Yazici et al. 2019, "The Unusual Effectiveness of Averaging in GAN
Training"; `ema_decay=0` disables it), with batch-norm statistics recomputed for the
averaged weights (Brock et al. 2019's "standing statistics"), `spectral_norm=true`
(each of D's weights divided by its largest singular value: Miyato et al. 2018,
"Spectral Normalization for Generative Adversarial Networks"; in the DCGAN it replaces
D's batch norm), and, for unconditional models, `pack=2` (PacGAN: Lin et al. 2018,
"PacGAN: The power of two samples in generative adversarial networks": D scores two
samples at once, so a generator that drops digits makes pairs that are too alike).

Defaults follow the loss: lr_g = lr_d = 2e-4, one D step per G step and Adam betas
(0.5, 0.999) (Radford et al.); with `loss=wgan-gp`, Gulrajani et al.'s Algorithm 1:
lr 1e-4, five critic steps per generator step, betas (0, 0.9). An explicit setting wins.

Images enter in [0, 1] and are rescaled to [-1, 1] inside (tanh generator output);
samples leave in [0, 1]. The trainer's `lr` is not used: the two learning rates are
`lr_g` and `lr_d` in the model config; `beta1`/`beta2` are the training config's.
At each epoch end the model reports its epoch averages and, with the evaluator
network the trainer hands in, whether its samples cover the digits (`metrics.coverage_check`).

`interpolate` decodes straight lines between latent points into rows of images.
Measured results (FID-style scores, digit coverage per configuration): docs/results/gan.md.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ConfigError, in_range, non_negative, positive
from ..constants import IMAGE_SHAPE, N_CLASSES, N_PIXELS
from ..metrics import coverage_check
from .base import CapabilityError, GenerativeModel

D_WINS_PROB = 0.95  # nonsaturating: mean D(x) above this and mean D(G(z)) below 1 - this warns at an epoch end
EPOCH_STATS = ("loss_d", "d_real", "d_fake", "loss_g")  # what a training step returns, in this order
EMA_STATS_BATCHES, EMA_STATS_BATCH = 8, 256  # latent draws that set the averaged generator's batch-norm statistics

# Defaults that depend on the loss: Radford et al.'s for the (non-saturating, hinge) GANs, and Gulrajani et al.'s
# Algorithm 1 for WGAN-GP (alpha = 1e-4, n_critic = 5, beta1 = 0, beta2 = 0.9).
LOSS_DEFAULTS = {
    "nonsaturating": {"lr_g": 2e-4, "lr_d": 2e-4, "d_steps": 1},
    "hinge": {"lr_g": 2e-4, "lr_d": 2e-4, "d_steps": 1},
    "wgan-gp": {"lr_g": 1e-4, "lr_d": 1e-4, "d_steps": 5},
}
WGAN_GP_BETAS = {"beta1": 0.0, "beta2": 0.9}


# ---------------------------------------------------------------------------- configs


@dataclass
class AdversarialConfig:
    """The options every adversarial model shares; `lr_g`, `lr_d` and `d_steps` left at None take the
    loss's defaults (LOSS_DEFAULTS), so `loss=wgan-gp` alone gives the WGAN-GP paper's settings."""

    latent_dim: int = 64
    widths: tuple[int, ...] = (256, 512, 1024)
    lr_g: float | None = None  # generator's Adam learning rate
    lr_d: float | None = None  # discriminator's
    d_steps: int | None = None  # discriminator steps (each on a new batch) per generator step
    loss: Literal["nonsaturating", "hinge", "wgan-gp"] = "nonsaturating"
    gp_weight: float = 10.0  # weight of the WGAN-GP gradient penalty
    label_smoothing: float = 0.0  # one-sided: real targets are 1 - label_smoothing
    ema_decay: float = 0.999  # EMA of generator weights for sampling; 0 disables
    spectral_norm: bool = False  # spectral normalisation of D's weights (Miyato et al. 2018)
    pack: int = 1  # > 1: D judges this many samples at once (PacGAN, Lin et al. 2018)

    @property
    def conditional(self) -> bool:
        """Whether the label enters both networks: fixed by the model (gan: no, cgan: yes), an option for dcgan."""
        return False

    def __post_init__(self):
        for key, value in LOSS_DEFAULTS[self.loss].items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        positive(latent_dim=self.latent_dim, lr_g=self.lr_g, lr_d=self.lr_d, d_steps=self.d_steps,
                 gp_weight=self.gp_weight, pack=self.pack)
        if not self.widths or min(self.widths) <= 0:
            raise ConfigError(f"widths={self.widths!r}: give positive layer widths, e.g. widths=256,512")
        in_range("label_smoothing", self.label_smoothing, 0.0, 0.5)
        in_range("ema_decay", self.ema_decay, 0.0, 0.99999)
        if self.pack > 1 and self.loss == "wgan-gp":
            raise ConfigError(f"pack={self.pack} scores samples together, which WGAN-GP's per-sample penalty "
                              "forbids; set pack=1 or another loss")
        if self.pack > 1 and self.conditional:
            raise ConfigError(f"pack={self.pack} is for unconditional models (labels already spread a conditional "
                              "model's samples over the digits); set pack=1")
        if self.label_smoothing > 0 and self.loss != "nonsaturating":
            raise ConfigError(f"label_smoothing={self.label_smoothing} only applies to loss=nonsaturating, "
                              f"not loss={self.loss!r}; set label_smoothing=0")


@dataclass
class GANConfig(AdversarialConfig):
    """`gan`: generator hidden layers `widths`; the discriminator uses them reversed. Unconditional."""


@dataclass
class CGANConfig(AdversarialConfig):
    """`cgan`: the fully connected networks of `gan`, always class-conditional."""

    @property
    def conditional(self) -> bool:
        return True


@dataclass
class DCGANConfig(AdversarialConfig):
    conditional: bool = False  # class-conditional DCGAN (label into both networks)
    latent_dim: int = 100
    # generator channels at 7x7 and 14x14 (and, with a third, at 28x28 before a 3x3 output conv);
    # the discriminator uses the first two, reversed
    widths: tuple[int, ...] = (256, 128)
    minibatch_std: int = 0  # > 0: D sees the spread of its batch in groups of this size (Karras et al. 2018)
    fc_width: int = 0  # > 0: a fully connected layer of this width between z and the 7x7 projection (InfoGAN's G)
    d_fc_width: int = 0  # > 0: a fully connected layer of this width before D's score (InfoGAN's D)

    def __post_init__(self):
        super().__post_init__()
        non_negative(minibatch_std=self.minibatch_std, fc_width=self.fc_width, d_fc_width=self.d_fc_width)
        if self.minibatch_std and self.loss == "wgan-gp":
            raise ConfigError(f"minibatch_std={self.minibatch_std} mixes samples in D's score, which WGAN-GP's "
                              "per-sample penalty forbids; set minibatch_std=0 or another loss")
        if len(self.widths) not in (2, 3):
            raise ConfigError(f"widths={self.widths!r}: dcgan needs two or three channel counts "
                              "(generator at 7x7, 14x14 and optionally 28x28), e.g. widths=256,128")


# ---------------------------------------------------------------------------- networks


def one_hot(y: torch.Tensor) -> torch.Tensor:
    """(B,) int64 labels -> (B, 10) float one-hot."""
    return F.one_hot(y, N_CLASSES).float()


class MLPGenerator(nn.Module):
    """z (+ one-hot y) -> Linear/BatchNorm/LeakyReLU stack -> 784 tanh pixels."""

    def __init__(self, latent_dim: int, widths: tuple[int, ...], conditional: bool):
        super().__init__()
        self.conditional = conditional
        layers, prev = [], latent_dim + (N_CLASSES if conditional else 0)
        for w in widths:
            layers += [nn.Linear(prev, w), nn.BatchNorm1d(w), nn.LeakyReLU(0.2)]
            prev = w
        layers += [nn.Linear(prev, N_PIXELS), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.conditional:
            z = torch.cat([z, one_hot(y)], 1)  # (B, latent + 10)
        return self.net(z).view(-1, *IMAGE_SHAPE)  # (B, 1, 28, 28) in [-1, 1]


def pack_samples(x: torch.Tensor, pack: int) -> torch.Tensor:
    """PacGAN's packing (Lin et al. 2018): (B, C, H, W) -> (B // pack, pack * C, H, W).

    Consecutive samples become the channels of one input, so D scores them together and
    can see when they are too alike (a generator that drops digits). A remainder of
    B % pack samples is left out of that batch's score.
    """
    if pack == 1:
        return x
    b, c, h, w = x.shape
    return x[: b - b % pack].reshape(b // pack, pack * c, h, w)


class MLPDiscriminator(nn.Module):
    """784 pixels per packed sample (+ one-hot y) -> Linear/LeakyReLU stack -> one score (a logit for nonsaturating)."""

    def __init__(self, widths: tuple[int, ...], conditional: bool, pack: int = 1):
        super().__init__()
        layers, prev = [], pack * N_PIXELS + (N_CLASSES if conditional else 0)
        for w in widths:
            layers += [nn.Linear(prev, w), nn.LeakyReLU(0.2)]
            prev = w
        self.conditional, self.pack = conditional, pack
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(prev, 1)
        self.embed = nn.Embedding(N_CLASSES, prev) if conditional else None  # projection term

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = pack_samples(x, self.pack).flatten(1)  # (B / pack, pack * 784)
        if self.conditional:
            h = torch.cat([h, one_hot(y)], 1)  # (B, 794)
        h = self.body(h)  # (B / pack, W)
        score = self.head(h).squeeze(1)  # (B / pack,)
        if self.conditional:
            score = score + (self.embed(y) * h).sum(1)
        return score


class ConvGenerator(nn.Module):
    """DCGAN generator: z (+ y) -> project to (C0, 7, 7) -> 14x14 -> 28x28, BN + ReLU, tanh out.

    With three widths the last fractionally strided convolution gives C2 channels at 28x28
    (BN + ReLU) and a 3x3 convolution turns them into the image. With `fc_width` > 0 a fully
    connected layer of that width (BN + ReLU) comes before the projection, as in InfoGAN's
    MNIST generator (Chen et al. 2016): one more nonlinearity between z and the digit's shape.
    """

    def __init__(self, latent_dim: int, widths: tuple[int, ...], conditional: bool, fc_width: int = 0):
        super().__init__()
        c0, c1 = widths[:2]
        self.conditional, self.c0 = conditional, c0
        d_in = latent_dim + (N_CLASSES if conditional else 0)
        fc = [nn.Linear(d_in, fc_width, bias=False), nn.BatchNorm1d(fc_width), nn.ReLU()] if fc_width else []
        self.project = nn.Sequential(
            *fc,  # (B, fc_width)
            nn.Linear(fc_width or d_in, c0 * 7 * 7, bias=False),
            nn.BatchNorm1d(c0 * 7 * 7),
            nn.ReLU(),
        )
        if len(widths) == 2:
            out = [nn.ConvTranspose2d(c1, 1, 4, 2, 1)]  # (B, 1, 28, 28)
        else:
            c2 = widths[2]
            out = [nn.ConvTranspose2d(c1, c2, 4, 2, 1, bias=False), nn.BatchNorm2d(c2), nn.ReLU(),  # (B, C2, 28, 28)
                   nn.Conv2d(c2, 1, 3, 1, 1)]  # (B, 1, 28, 28)
        self.net = nn.Sequential(
            nn.ConvTranspose2d(c0, c1, 4, 2, 1, bias=False),  # (B, C1, 14, 14)
            nn.BatchNorm2d(c1),
            nn.ReLU(),
            *out,
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.conditional:
            z = torch.cat([z, one_hot(y)], 1)  # (B, latent + 10)
        h = self.project(z).view(-1, self.c0, 7, 7)  # (B, C0, 7, 7)
        return self.net(h)  # (B, 1, 28, 28) in [-1, 1]


class MinibatchStd(nn.Module):
    """Appends one feature map: the standard deviation across each group of `group` samples,
    averaged over features and positions (Karras et al. 2018, "Progressive Growing of GANs").

    A generator that draws too few kinds of digit makes batches that vary too little, which
    D can then see; a batch not divisible by `group` is taken as one group.
    """

    def __init__(self, group: int):
        super().__init__()
        self.group = group

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        b, c, height, width = h.shape
        g = self.group if b % self.group == 0 else b
        var = h.float().view(g, b // g, c, height, width).var(0, unbiased=False)  # (B/G, C, H, W)
        stat = (var + 1e-8).sqrt().mean((1, 2, 3)).to(h.dtype)  # (B/G,); the epsilon keeps the gradient finite
        stat = stat.repeat(g)[:, None, None, None].expand(b, 1, height, width)  # sample k has group k % (B/G)
        return torch.cat([h, stat], 1)  # (B, C + 1, H, W)


def _norm(kind: Literal["batch", "layer", "none"], channels: int, dims: int) -> nn.Module:
    """The discriminator's normalisation over `channels` features of a (B, C) (dims=1) or (B, C, H, W) tensor."""
    if kind == "batch":
        return nn.BatchNorm1d(channels) if dims == 1 else nn.BatchNorm2d(channels)
    if kind == "layer":
        return nn.GroupNorm(1, channels)  # per sample: statistics over all of its features
    return nn.Identity()


class ConvDiscriminator(nn.Module):
    """DCGAN discriminator: 28x28 -> 14x14 -> 7x7 strided convs, LeakyReLU(0.2), one score.

    Batch norm on the second layer only (Radford et al.). `norm` chooses it: "batch";
    "layer", a per-sample layer norm for WGAN-GP, whose penalty is per sample (Gulrajani
    et al.); or "none", for spectral normalisation, which takes its place (Miyato et al.).
    With `minibatch_std` > 0 the last feature maps get the batch's spread as one more channel;
    with `pack` > 1 each input holds that many samples as channels (PacGAN); with `fc_width`
    > 0 a fully connected layer of that width (same norm, LeakyReLU) comes before the score,
    as in InfoGAN's MNIST discriminator (Chen et al. 2016).
    """

    def __init__(self, widths: tuple[int, int], conditional: bool, norm: Literal["batch", "layer", "none"] = "batch",
                 minibatch_std: int = 0, pack: int = 1, fc_width: int = 0):
        super().__init__()
        c0, c1 = widths
        self.conditional, self.pack = conditional, pack
        in_ch = pack + (N_CLASSES if conditional else 0)
        flat = (c1 + (1 if minibatch_std else 0)) * 7 * 7  # the last feature maps, flattened
        features = fc_width or flat
        fc = [nn.Linear(flat, fc_width, bias=norm == "none"), _norm(norm, fc_width, dims=1),
              nn.LeakyReLU(0.2)] if fc_width else []
        self.body = nn.Sequential(
            nn.Conv2d(in_ch, c0, 4, 2, 1),  # (B / pack, C0, 14, 14)
            nn.LeakyReLU(0.2),
            nn.Conv2d(c0, c1, 4, 2, 1, bias=norm == "none"),  # (B / pack, C1, 7, 7)
            _norm(norm, c1, dims=2),
            nn.LeakyReLU(0.2),
            *([MinibatchStd(minibatch_std)] if minibatch_std else []),  # (B, C1 + 1, 7, 7)
            nn.Flatten(),  # (B, flat)
            *fc,  # (B, fc_width)
        )
        self.head = nn.Linear(features, 1)
        self.embed = nn.Embedding(N_CLASSES, features) if conditional else None

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        x = pack_samples(x, self.pack)  # (B / pack, pack, 28, 28)
        if self.conditional:
            planes = one_hot(y)[:, :, None, None].expand(-1, -1, *x.shape[2:])  # (B, 10, 28, 28)
            x = torch.cat([x, planes], 1)  # (B, 11, 28, 28)
        h = self.body(x)  # (B / pack, features)
        score = self.head(h).squeeze(1)  # (B / pack,)
        if self.conditional:
            score = score + (self.embed(y) * h).sum(1)
        return score


def spectral_normalise(net: nn.Module) -> nn.Module:
    """Divide each weight of `net` by its largest singular value, estimated by one power
    iteration per training forward pass (Miyato et al. 2018, "Spectral Normalization for GANs")."""
    for module in list(net.modules()):
        if isinstance(module, (nn.Conv2d, nn.Linear, nn.Embedding)):
            nn.utils.parametrizations.spectral_norm(module)
    return net


def dcgan_init(module: nn.Module) -> None:
    """Radford et al.: weights from N(0, 0.02); batch-norm scales from N(1, 0.02); biases 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm)):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


# ---------------------------------------------------------------------------- losses


def discriminator_loss(real: torch.Tensor, fake: torch.Tensor, kind: str, label_smoothing: float = 0.0) -> torch.Tensor:
    """The discriminator's loss (without any gradient penalty) from its scores.

    Args:
        real: (B,) scores D(x) on real images (logits for "nonsaturating").
        fake: (B,) scores D(G(z)).
        kind: "nonsaturating" (binary cross-entropy), "hinge" or "wgan-gp" (critic).
        label_smoothing: one-sided; the real target is 1 - label_smoothing.
    Returns:
        Scalar loss.
    """
    if kind == "nonsaturating":
        target = 1.0 - label_smoothing
        # BCE with target t on logit r: t * softplus(-r) + (1 - t) * softplus(r).
        real_term = target * F.softplus(-real) + (1 - target) * F.softplus(real)
        return real_term.mean() + F.softplus(fake).mean()
    if kind == "hinge":
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    return fake.mean() - real.mean()  # wgan-gp: the critic maximises E[D(x)] - E[D(G(z))]


def generator_loss(fake: torch.Tensor, kind: str) -> torch.Tensor:
    """The generator's loss from the discriminator's scores (B,) on its samples."""
    if kind == "nonsaturating":
        return F.softplus(-fake).mean()  # -log sigmoid(D(G(z)))
    return -fake.mean()  # hinge and wgan-gp


def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, y: torch.Tensor | None,
                     eps: torch.Tensor) -> torch.Tensor:
    """WGAN-GP penalty E[(||grad_x D(x_hat)||_2 - 1)^2] on x_hat = eps * real + (1 - eps) * fake.

    Args:
        critic: the discriminator, called as critic(x, y).
        real, fake: (B, 1, 28, 28) in the critic's input scale.
        y: (B,) labels for a conditional critic, else None.
        eps: (B, 1, 1, 1) mixing weights in [0, 1].
    Returns:
        Scalar penalty, differentiable with respect to the critic's parameters.
    """
    # fake may be bf16 under autocast; the penalty's second-order terms are computed at real's precision.
    x_hat = (eps * real + (1 - eps) * fake.to(real.dtype)).detach().requires_grad_(True)
    with torch.autocast(device_type=x_hat.device.type, enabled=False):
        scores = critic(x_hat, y)
        (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


# ---------------------------------------------------------------------------- the model family


class AdversarialModel(GenerativeModel):
    """Generator + discriminator trained by the model's own step; subclasses build the networks."""

    training_mode: ClassVar[str] = "step"
    uses_evaluator: ClassVar[bool] = True  # epoch_end checks the samples' digits with the evaluator handed in
    can_interpolate: ClassVar[bool] = True
    # Sampling needs the generator's moving average only; the discriminator serves training alone.
    training_only_weights: ClassVar[tuple[str, ...]] = ("discriminator.",)
    averaged_weights: ClassVar[dict[str, str]] = {"generator_ema.": "generator."}
    # n_grid 100: a 10 x 10 grid, one digit per row for conditional models.
    adversarial_train_defaults: ClassVar[dict[str, Any]] = {"beta1": 0.5, "beta2": 0.999, "epochs": 30,
                                                            "batch_size": 64, "n_grid": 100}

    def interpolation(self, steps: int, *, rows: int = 1, label: int | None = None, start: torch.Tensor | None = None,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """`interpolate`'s rows (one per digit for a conditional model without `label`); no encoder: no `start`."""
        if start is not None:
            raise CapabilityError(f"{self.name}: has no encoder, its latent lines cannot start from a digit; "
                                  "leave the digit out (a vae run can start from one)")
        return interpolate(self, steps, label=label, rows=rows, generator=generator)

    def __init__(self, config: Any = None, **overrides: Any):
        super().__init__(config, **overrides)
        cfg = self.config
        self.generator = self.build_generator()
        self.discriminator = self.build_discriminator()
        self.init_weights()
        if cfg.spectral_norm:
            spectral_normalise(self.discriminator)
        # Sampling network: an exponential moving average of the generator's weights.
        self.generator_ema = copy.deepcopy(self.generator).requires_grad_(False) if cfg.ema_decay > 0 else None
        # Runs saved before the trainer passed the step count held it in an "n_steps" buffer.
        self.register_load_state_dict_pre_hook(lambda module, state, prefix, *_: state.pop(prefix + "n_steps", None))
        # Running sums of EPOCH_STATS over the epoch's steps and their count: buffers, so that a checkpoint
        # taken mid-epoch carries them and a resumed run reports the same epoch averages.
        self.register_buffer("epoch_sums", torch.zeros(len(EPOCH_STATS)))
        self.register_buffer("epoch_steps", torch.zeros((), dtype=torch.long))
        self.register_load_state_dict_pre_hook(_fill_epoch_sums)
        # The averaged weights need batch-norm statistics of their own; recomputed before sampling when stale.
        self._ema_stats_stale = True
        self.register_load_state_dict_post_hook(lambda module, keys: setattr(module, "_ema_stats_stale", True))

    @property
    def train_defaults(self) -> dict[str, Any]:
        """TrainConfig defaults: Radford et al.'s Adam betas (0.5, 0.999), or WGAN-GP's (0, 0.9) for that loss."""
        betas = WGAN_GP_BETAS if self.config.loss == "wgan-gp" else {}
        return {**self.adversarial_train_defaults, **betas}

    def build_generator(self) -> nn.Module:
        raise NotImplementedError

    def build_discriminator(self) -> nn.Module:
        raise NotImplementedError

    def init_weights(self) -> None:
        """Initialise both networks (before the EMA copy is taken); PyTorch's defaults here."""

    # ------------------------------------------------------------------ training

    unused_train_keys: ClassVar[dict[str, str]] = {
        "lr": "set lr_g and lr_d, the generator's and the discriminator's learning rates",
        "weight_decay": "the adversarial networks train without weight decay",
        "grad_clip": "the two networks' steps are not clipped; lower lr_g and lr_d instead",
    }

    def configure_optimizers(self, train: Any) -> dict[str, torch.optim.Optimizer]:
        """Adam for each network, lr_g / lr_d from the model config, betas from the training config."""
        betas = (train.beta1, train.beta2)
        return {
            "generator": torch.optim.Adam(self.generator.parameters(), lr=self.config.lr_g, betas=betas),
            "discriminator": torch.optim.Adam(self.discriminator.parameters(), lr=self.config.lr_d, betas=betas),
        }

    def _labels(self, y: torch.Tensor | None) -> torch.Tensor | None:
        if not self.conditional:
            return None
        if y is None:
            raise ValueError(f"{self.name}: conditional training needs labels y, got None")
        return y.to(self.device).long()

    def d_losses(self, x: torch.Tensor, y: torch.Tensor | None, z: torch.Tensor,
                 eps: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Discriminator loss on real images x ([0, 1]) and fakes G(z, y), generator held fixed.

        Returns:
            dict with "loss" (including the gradient penalty for wgan-gp), "real" and "fake" scores (B,).
        """
        cfg = self.config
        real_in = x * 2 - 1  # (B, 1, 28, 28) in [-1, 1]
        with torch.no_grad():
            fake_in = self.generator(z, y)
        real, fake = self.discriminator(real_in, y).float(), self.discriminator(fake_in, y).float()
        loss = discriminator_loss(real, fake, cfg.loss, cfg.label_smoothing)
        out = {"real": real, "fake": fake}
        if cfg.loss == "wgan-gp":
            if eps is None:
                eps = self.rand(len(x), 1, 1, 1)
            out["gp"] = gradient_penalty(self.discriminator, real_in, fake_in, y, eps)
            loss = loss + cfg.gp_weight * out["gp"]
        out["loss"] = loss
        return out

    def g_losses(self, y: torch.Tensor | None, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """Generator loss on G(z, y) against the current discriminator. Returns "loss" and "fake" scores."""
        fake = self.discriminator(self.generator(z, y), y).float()
        return {"loss": generator_loss(fake, self.config.loss), "fake": fake}

    def _score_summary(self, scores: torch.Tensor) -> torch.Tensor:
        # Probability D gives "real" for the nonsaturating loss; the raw score for hinge and wgan-gp.
        return (
            torch.sigmoid(scores.detach().float()).mean()
            if self.config.loss == "nonsaturating"
            else scores.detach().float().mean()
        )

    def train_step(self, x: torch.Tensor, y: torch.Tensor | None, optimizers: dict[str, torch.optim.Optimizer], *,
                   step: int, autocast) -> dict[str, torch.Tensor]:
        """One discriminator step on this batch, then (after every d_steps-th D step) one generator step.

        Args:
            x: (B, 1, 28, 28) real images in [0, 1].
            y: (B,) labels (used by conditional models).
            optimizers: from `configure_optimizers`.
            step: the trainer's steps before this one (each one D step).
            autocast: the context for forward passes (losses and the gradient penalty stay in float32).
        Returns:
            0-d float32 tensors on the model's device: "loss_d", "loss_g" (of the generator step, or on D's
            fakes when none was taken), "d_real" and "d_fake" (mean D(x) and D(G(z)): probabilities for
            nonsaturating, raw scores otherwise).
        """
        cfg = self.config
        x = x.to(self.device)
        y = self._labels(y)
        opt_g, opt_d = optimizers["generator"], optimizers["discriminator"]

        # Discriminator step (the generator is run without a graph).
        z = self.randn(len(x), cfg.latent_dim)
        with autocast():
            d = self.d_losses(x, y, z)
        opt_d.zero_grad(set_to_none=True)
        d["loss"].backward()
        opt_d.step()
        # Without a generator step (d_steps > 1), loss_g is G's loss on the fakes D just scored.
        loss_g = generator_loss(d["fake"].detach(), cfg.loss)
        stats = [d["loss"].detach().float(), self._score_summary(d["real"]), self._score_summary(d["fake"])]

        if (step + 1) % cfg.d_steps == 0:
            # Generator step: D's weights need no gradients here, only its input does.
            self.discriminator.requires_grad_(False)
            z = self.randn(len(x), cfg.latent_dim)
            with autocast():
                g = self.g_losses(y, z)
            opt_g.zero_grad(set_to_none=True)
            g["loss"].backward()
            opt_g.step()
            self.discriminator.requires_grad_(True)
            self._update_ema(generator_steps=(step + 1) // cfg.d_steps)
            loss_g = g["loss"].detach()
        stats.append(loss_g.float())
        stats = torch.stack(stats)  # stays on the device: the trainer reads it at its log points, no sync per step
        self.epoch_sums += stats
        self.epoch_steps += 1
        return dict(zip(EPOCH_STATS, stats.unbind()))

    @torch.no_grad()
    def _update_ema(self, generator_steps: int) -> None:
        if self.generator_ema is None:
            return
        # Warm-up: early on average over fewer steps, so short runs are not stuck near the initialisation.
        decay = min(self.config.ema_decay, (1 + generator_steps) / (10 + generator_steps))
        torch._foreach_lerp_(list(self.generator_ema.parameters()), list(self.generator.parameters()), 1 - decay)
        self._ema_stats_stale = True

    @torch.no_grad()
    def refresh_ema_statistics(self) -> None:
        """Set the averaged generator's batch-norm statistics from its own activations.

        An average of weights is a network that was never run in training: the raw generator's
        running statistics describe other weights' activations. As BigGAN's "standing statistics"
        (Brock et al. 2019), run the averaged network in training mode on EMA_STATS_BATCHES batches of
        fixed latent draws (and balanced labels) and keep the plain average of their batch statistics
        (momentum None). Fixed draws make the result a function of the weights only: a resumed or
        reloaded model gets the same statistics, and training's random stream is not touched.
        """
        net = self.generator_ema
        norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not norms:
            self._ema_stats_stale = False
            return
        saved = [(m.momentum, m.training) for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the batches below
            m.train()
        generator = torch.Generator().manual_seed(0)
        for _ in range(EMA_STATS_BATCHES):
            z = self.randn(EMA_STATS_BATCH, self.config.latent_dim, generator=generator)
            y = self.default_labels(EMA_STATS_BATCH) if self.conditional else None
            net(z, y)
        for m, (momentum, training) in zip(norms, saved):
            m.momentum = momentum
            m.train(training)
        self._ema_stats_stale = False

    # ------------------------------------------------------------------ honest reporting

    def epoch_end(self, epoch: int, evaluator: Any = None) -> dict[str, Any]:
        """Epoch averages of the losses and D outputs, the evaluator's coverage check, and a warning.

        A "warning" says when the discriminator won outright (D(x) ~ 1 and D(G(z)) ~ 0 over
        the epoch: the generator gets no useful gradient) or when samples collapsed onto a few
        digits (or, for conditional models, do not follow their labels): `metrics.coverage_check`
        with the `evaluator` network that the caller hands in. Without one, "coverage_check" says so.
        """
        out: dict[str, Any] = {}
        n = int(self.epoch_steps)
        if n:
            out.update({f"epoch_{k}": v / n for k, v in zip(EPOCH_STATS, self.epoch_sums.tolist())})
        warnings = []
        if n and self._discriminator_won(out["epoch_d_real"], out["epoch_d_fake"]):
            warnings.append(f"discriminator wins outright (mean D(x)={out['epoch_d_real']:.3f}, "
                            f"D(G(z))={out['epoch_d_fake']:.3f}); if this lasts the generator stops improving: "
                            "try loss=hinge or wgan-gp, label_smoothing=0.1 or a lower lr_d")
        if evaluator is None:
            out["coverage_check"] = "skipped: no evaluator network"
        else:
            coverage, warning = coverage_check(self, evaluator)
            out.update(coverage)
            if warning:
                warnings.append(warning)
        if warnings:
            out["warning"] = f"{self.name} epoch {epoch}: " + "; ".join(warnings)
        self.epoch_sums.zero_()
        self.epoch_steps.zero_()
        return out

    def _discriminator_won(self, d_real: float, d_fake: float) -> bool:
        if self.config.loss == "nonsaturating":
            return d_real > D_WINS_PROB and d_fake < 1 - D_WINS_PROB
        if self.config.loss == "hinge":
            return d_real > 1 and d_fake < -1  # both hinge margins met on average: D's loss is ~0
        return False  # a WGAN critic's scores are unbounded: no such threshold

    # ------------------------------------------------------------------ sampling

    def n_parameters(self) -> int:
        """Trained parameters of both networks (the EMA copy of the generator is not counted)."""
        return sum(p.numel() for net in (self.generator, self.discriminator) for p in net.parameters())

    def pictures(self, data: Any = None) -> dict[str, torch.Tensor]:
        """samples/interpolation.png: straight latent paths, 8 rows of 10 (one row per digit if conditional)."""
        return {"samples/interpolation.png": interpolate(self, 10, rows=8, generator=torch.Generator().manual_seed(0))}

    def sampling_network(self) -> nn.Module:
        """The EMA generator (its batch-norm statistics brought up to date) when enabled, else the trained one."""
        if self.generator_ema is None:
            return self.generator
        if self._ema_stats_stale:
            self.refresh_ema_statistics()
        return self.generator_ema

    @torch.no_grad()
    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None, batch_size: int = 1000) -> torch.Tensor:
        """Generator output for given latents, in eval mode (batch-norm running statistics).

        Args:
            z: (N, latent_dim) latent points.
            y: (N,) labels for conditional models, else None.
        Returns:
            (N, 1, 28, 28) images in [0, 1].
        """
        net = self.sampling_network()
        was_training = net.training
        net.eval()
        z = z.to(self.device)
        y = y.to(self.device).long() if y is not None else None
        chunks = [net(zb, None if y is None else y[i * batch_size:(i + 1) * batch_size]).float()
                  for i, zb in enumerate(z.split(batch_size))]
        net.train(was_training)
        return ((torch.cat(chunks) + 1) / 2).clamp(0, 1)

    def _sample(self, n: int, y: torch.Tensor | None, generator: torch.Generator | None) -> torch.Tensor:
        """n images (n, 1, 28, 28) in [0, 1] of the labels y (n,) (conditional models), from generator's noise."""
        z = self.randn(n, self.config.latent_dim, generator=generator)  # all noise first: chunking-independent
        return self.decode(z, y)


class GAN(AdversarialModel):
    """Fully connected GAN (Goodfellow et al. 2014)."""

    name: ClassVar[str] = "gan"
    Config: ClassVar[type] = GANConfig
    conditional_hint: ClassVar[str] = "use cgan, or dcgan with --set conditional=true"

    def build_generator(self) -> nn.Module:
        return MLPGenerator(self.config.latent_dim, self.config.widths, self.conditional)

    def build_discriminator(self) -> nn.Module:
        return MLPDiscriminator(tuple(reversed(self.config.widths)), self.conditional, self.config.pack)


class ConditionalGAN(GAN):
    """Conditional GAN (Mirza & Osindero 2014): the label enters both networks; always conditional."""

    name: ClassVar[str] = "cgan"
    Config: ClassVar[type] = CGANConfig


class DCGAN(AdversarialModel):
    """Deep convolutional GAN (Radford et al. 2015), optionally class-conditional."""

    name: ClassVar[str] = "dcgan"
    Config: ClassVar[type] = DCGANConfig
    conditional_hint: ClassVar[str] = "train it with --set conditional=true"
    adversarial_train_defaults: ClassVar[dict[str, Any]] = {"beta1": 0.5, "beta2": 0.999, "epochs": 20,
                                                            "batch_size": 128, "n_grid": 100}

    def init_weights(self) -> None:
        self.generator.apply(dcgan_init)
        self.discriminator.apply(dcgan_init)

    def build_generator(self) -> nn.Module:
        return ConvGenerator(self.config.latent_dim, self.config.widths, self.conditional, self.config.fc_width)

    def build_discriminator(self) -> nn.Module:
        cfg = self.config
        norm = "none" if cfg.spectral_norm else "layer" if cfg.loss == "wgan-gp" else "batch"
        return ConvDiscriminator(tuple(reversed(cfg.widths[:2])), self.conditional, norm=norm,
                                 minibatch_std=cfg.minibatch_std, pack=cfg.pack, fc_width=cfg.d_fc_width)


def _fill_epoch_sums(module, state_dict, prefix, *args) -> None:
    """Weights saved before the epoch sums were part of the state load with empty sums."""
    for key in ("epoch_sums", "epoch_steps"):
        state_dict.setdefault(prefix + key, getattr(module, key).new_zeros(getattr(module, key).shape))


# ---------------------------------------------------------------------------- latent interpolation


def interpolate(model: AdversarialModel, steps: int = 10, *, label: int | None = None, rows: int = 1,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Decode straight lines between pairs of latent points.

    Each row goes from one random latent point z0 to another z1 in `steps` equal steps,
    z = (1 - t) z0 + t z1. A conditional model keeps the label fixed along a row: with
    `label` given, every row draws that digit; without, there is one row per digit 0..9,
    all ten sharing the same z0 and z1 (so the rows differ only by label).

    Args:
        model: a trained gan, cgan or dcgan.
        steps: images per row (>= 2), both end points included.
        label: digit to draw (conditional models only).
        rows: number of independent lines (ignored for a conditional model without `label`).
        generator: seeds the end points.
    Returns:
        (n_rows, steps, 1, 28, 28) images in [0, 1].
    """
    if steps < 2:
        raise ValueError(f"steps={steps}: an interpolation needs at least 2 images per row")
    if rows < 1:
        raise ValueError(f"rows={rows}: need at least one row")
    if label is not None and not model.conditional:
        model.check_labels(1, label)  # raises the CapabilityError that names the model and the fix
    if model.conditional and label is None:
        labels = torch.arange(N_CLASSES)  # one row per digit
        ends = model.randn(2, model.config.latent_dim, generator=generator).expand(N_CLASSES, 2, -1)
    else:
        labels = torch.full((rows,), label) if model.conditional else None
        ends = model.randn(rows, 2, model.config.latent_dim, generator=generator)  # (R, 2, latent)
    t = torch.linspace(0, 1, steps, device=ends.device)[None, :, None]  # (1, S, 1)
    z = (1 - t) * ends[:, :1] + t * ends[:, 1:]  # (R, S, latent)
    n_rows = len(z)
    y = None if labels is None else labels[:, None].expand(n_rows, steps).reshape(-1)  # (R * S,)
    images = model.decode(z.reshape(n_rows * steps, -1), y)  # (R * S, 1, 28, 28)
    return images.view(n_rows, steps, *IMAGE_SHAPE)
