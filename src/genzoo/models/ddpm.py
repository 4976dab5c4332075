"""Denoising diffusion (DDPM), class-conditional with classifier-free guidance, DDIM sampling, pixel or latent space.

Papers followed:

- Ho, Jain & Abbeel 2020, "Denoising Diffusion Probabilistic Models": the forward noising
  q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I), the epsilon-prediction loss
  ||eps - eps_theta(x_t, t)||^2, the ancestral sampler through the posterior q(x_{t-1} | x_t, x_0),
  and the U-Net with sinusoidal time embedding, GroupNorm residual blocks and self-attention.
- Nichol & Dhariwal 2021, "Improved Denoising Diffusion Probabilistic Models": the cosine schedule.
- Song, Meng & Ermon 2021, "Denoising Diffusion Implicit Models": the DDIM sampler (steps, eta).
- Ho & Salimans 2022, "Classifier-Free Diffusion Guidance": the label is dropped with probability
  p_uncond in training (a learned null class), and sampling uses
  eps = eps(x, null) + w (eps(x, y) - eps(x, null)); w = 0 is unconditional, 1 conditional, > 1 guided.
- Salimans & Ho 2022, "Progressive Distillation for Fast Sampling of Diffusion Models": v-prediction,
  v = sqrt(abar) eps - sqrt(1 - abar) x_0.
- Rombach et al. 2022, "High-Resolution Image Synthesis with Latent Diffusion Models" (`space=latent`):
  a KL-regularised convolutional autoencoder (28x28 -> latent_channels x 7 x 7) is trained first, as
  stage one of the same run (`first_stage_steps`); its latents, scaled to unit standard deviation,
  are then diffused by the same U-Net, and samples are decoded.

Three separate pieces, as in diffusers, all in `genzoo.models.diffusion` (shared with the `instruct` editor):
the network (`UNet`), the noise schedule (`NoiseSchedule`, the closed forms of the forward process) and the
sampler (`Sampler`, one reverse step at a time). `DDPM` ties them together: images come in and go out in [0, 1],
and are rescaled inside. The sampling network is an exponential moving average of the trained U-Net's weights
(`ema_decay`), a submodule, so model.safetensors and the checkpoint carry it and a resumed run continues it exactly.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch

from ..config import ConfigError, in_range, non_negative
from ..constants import N_CLASSES
from .base import GenerativeModel
from .diffusion import DiffusionConfig, LatentSpace, NoiseSchedule, Sampler, UNet, WithEMA, ema_update, make_betas


@dataclass
class DDPMConfig(DiffusionConfig):
    """DiffusionConfig's settings (U-Net, schedule, prediction, EMA, first stage) and the label's, the linear
    schedule's and the sampler's."""

    conditional: bool = True
    p_uncond: float = 0.1  # chance of dropping the label in training (classifier-free guidance)
    beta_start: float = 1e-4  # linear schedule (Ho et al.)
    beta_end: float = 0.02
    # Sampling defaults (per call: sample(..., guidance=, steps=, eta=, sampler=)); steps: DiffusionConfig's
    # sample_steps (the ancestral sampler always takes all `timesteps`).
    sampler: Literal["ddim", "ancestral"] = "ddim"
    sample_eta: float = 0.0  # DDIM: 0 deterministic, 1 the ancestral variance
    guidance: float = 2.0  # classifier-free guidance weight w (conditional models)

    def __post_init__(self):
        super().__post_init__()
        non_negative(guidance=self.guidance)
        in_range("p_uncond", self.p_uncond, 0.0, 1.0)
        in_range("sample_eta", self.sample_eta, 0.0, 1.0)
        in_range("beta_start", self.beta_start, 1e-8, 0.5)
        in_range("beta_end", self.beta_end, self.beta_start, 0.999)


class DDPM(LatentSpace, WithEMA, GenerativeModel):
    """Denoising diffusion: class-conditional with classifier-free guidance, DDIM or ancestral, pixel or latent."""

    name = "ddpm"
    Config = DDPMConfig
    sample_options: ClassVar[tuple[str, ...]] = ("guidance", "steps", "eta", "sampler")
    heavy_sampling: ClassVar[bool] = True
    has_reverse_process: ClassVar[bool] = True
    conditional_hint: ClassVar[str] = "train it with --set conditional=true"
    train_defaults: ClassVar[dict] = {"epochs": 20, "batch_size": 128, "lr": 1e-3, "warmup_steps": 200,
                                      "grad_clip": 1.0}

    def __init__(self, config=None, **overrides):
        super().__init__(config, **overrides)
        cfg = self.config
        self.init_space(cfg.space, cfg.latent_channels, cfg.ae_widths)
        self.unet = UNet(self.shape[0], self.shape[1], cfg.unet_widths, cfg.res_blocks, cfg.attn_resolution,
                         cfg.attn_heads, cfg.dropout, N_CLASSES if cfg.conditional else 0)
        self.ema = copy.deepcopy(self.unet).requires_grad_(False) if cfg.ema_decay > 0 else None
        self.schedule = NoiseSchedule(make_betas(cfg.noise_schedule, cfg.timesteps, cfg.beta_start, cfg.beta_end))

    # ------------------------------------------------------------------ training

    def loss(self, x, y=None, *, step=None):
        """Stage one of a latent run: the autoencoder's loss. Otherwise the simple diffusion loss of
        Ho et al., the mean squared error of the predicted eps (or v), over a uniform t."""
        if self.in_first_stage(step):
            out = self.first_stage.loss(x, self.config.kl_weight)
            return {**out, "stage": torch.ones(())}
        x0 = self.to_space(x, remember_scale=self.training)  # (B, C, S, S)
        t = torch.randint(0, self.config.timesteps, (len(x),), device=x.device)
        noise = torch.randn_like(x0)
        xt = self.schedule.q_sample(x0, t, noise)
        labels = self.train_labels(y) if self.training else self.net_labels(y)
        output = self.unet(xt, t, labels)
        target = noise if self.config.prediction == "eps" else self.schedule.v_target(x0, noise, t)
        mse = (output.float() - target).pow(2).mean()
        return {"loss": mse, "stage": torch.full((), 2.0)}

    def net_labels(self, y: torch.Tensor | None) -> torch.Tensor | None:
        """The U-Net's label input: y, the null label N_CLASSES where y is None, or None (unconditional)."""
        if not self.config.conditional:
            return None
        if y is None:
            raise ValueError(f"{self.name}: a conditional model needs labels y; train with labelled data or "
                             "--set conditional=false")
        return y.long()

    def train_labels(self, y: torch.Tensor | None) -> torch.Tensor | None:
        """Labels with each replaced by the null label with probability p_uncond (classifier-free guidance)."""
        labels = self.net_labels(y)
        if labels is None or self.config.p_uncond == 0:
            return labels
        drop = torch.rand(len(labels), device=labels.device) < self.config.p_uncond
        return torch.where(drop, torch.full_like(labels, N_CLASSES), labels)

    @torch.no_grad()
    def after_optimizer_step(self, step: int) -> None:
        """EMA of the U-Net's weights, from the first diffusion step on, with a warm-up (decay
        min(ema_decay, (1 + n) / (10 + n)) after n updates) so short runs are not stuck near the start."""
        if self.ema is None or self.in_first_stage(step):
            return
        ema_update(self.ema, self.unet, self.diffusion_steps_before(step), self.config.ema_decay)

    # ------------------------------------------------------------------ sampling

    def sampling_network(self) -> UNet:
        return self.ema if self.ema is not None else self.unet

    def sample_settings(self, guidance: float | None = None, steps: int | None = None, eta: float | None = None,
                        sampler: str | None = None) -> dict:
        """The sampling options in force: those given, the config's defaults for the rest."""
        cfg = self.config
        sampler = sampler or cfg.sampler
        if steps is None:
            steps = cfg.sample_steps if sampler == "ddim" else cfg.timesteps
        guidance = (cfg.guidance if guidance is None else float(guidance)) if cfg.conditional else 0.0
        if guidance < 0:
            raise ConfigError(f"guidance={guidance}: must be >= 0 (0 unconditional, 1 conditional, > 1 guided)")
        eta = cfg.sample_eta if eta is None else float(eta)
        if sampler == "ancestral":
            eta = 1.0  # the ancestral sampler's variance is the posterior's (DDIM's eta = 1)
        Sampler(self.schedule, sampler, int(steps), eta)  # refuses a combination that cannot run, before any step
        return {"sampler": sampler, "steps": int(steps), "eta": eta, "guidance": guidance}

    def guided_output(self, net: UNet, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None,
                      guidance: float) -> torch.Tensor:
        """The network's output with classifier-free guidance: out(null) + w (out(y) - out(null))."""
        if y is None or not self.config.conditional:
            return net(x, t, torch.full((len(x),), N_CLASSES, device=x.device) if self.config.conditional else None)
        null = torch.full_like(y, N_CLASSES)
        if guidance == 0:
            return net(x, t, null)
        if guidance == 1:
            return net(x, t, y)
        both = net(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null]))  # one batch for both passes
        cond, uncond = both.chunk(2)
        return uncond + guidance * (cond - uncond)

    def predictor(self, y: torch.Tensor | None, guidance: float):
        """(x_t, t) -> (eps, x_0) for the sampler: guided network output, x_0 clipped to [-1, 1] in pixel space."""
        net = self.sampling_network()

        def predict(x: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
            tt = torch.full((len(x),), t, dtype=torch.long, device=x.device)
            output = self.guided_output(net, x, tt, y, guidance).float()
            eps, x0 = self.schedule.split(output, x, tt, self.config.prediction)
            if self.first_stage is None:  # pixels live in [-1, 1]; eps is made consistent with the clipped x_0
                x0 = x0.clamp(-1, 1)
                eps = self.schedule.eps_from_x0(x, tt, x0)
            return eps, x0

        return predict

    @torch.no_grad()
    def _sample(self, n: int, y: torch.Tensor | None, generator: torch.Generator | None, *,
                guidance: float | None = None, steps: int | None = None, eta: float | None = None,
                sampler: str | None = None, progress: bool | None = None) -> torch.Tensor:
        """n images (n, 1, 28, 28) in [0, 1]; the same generator gives the same images.

        Args:
            y: (n,) digits (conditional models).
            guidance: w of classifier-free guidance (0 unconditional, 1 conditional, > 1 guided).
            steps, eta, sampler: "ddim" with `steps` and `eta`, or "ancestral" (all timesteps).
        """
        images, _ = self.reverse_process(n, y, generator, keep=0, progress=progress, guidance=guidance, steps=steps,
                                         eta=eta, sampler=sampler)
        return images

    @torch.no_grad()
    def reverse_process(self, n: int, y: torch.Tensor | None, generator: torch.Generator | None, keep: int = 10,
                        progress: bool | None = None, **options) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Samples and `keep` states along the way (x_T ... x_0, decoded to images), each (n, 1, 28, 28)."""
        settings = self.sample_settings(**options)
        sampler = Sampler(self.schedule, settings["sampler"], settings["steps"], settings["eta"])
        x = self.randn(n, *self.shape, generator=generator)  # (n, C, S, S) = x_T
        was_training = self.training
        self.eval()
        out, kept = sampler.run(self.predictor(y, settings["guidance"]), x, generator, progress, keep)
        self.train(was_training)
        return self.from_space(out), [self.from_space(state) for state in kept]

    def pictures(self, data) -> dict[str, torch.Tensor]:
        """samples/reverse_process.png: x_T ... x_0 of one digit per row (seed 0)."""
        return {"samples/reverse_process.png": reverse_process_rows(self, generator=torch.Generator().manual_seed(0))}


@torch.no_grad()
def reverse_process_rows(model: DDPM, n: int = 4, columns: int = 10, y: torch.Tensor | None = None,
                         generator: torch.Generator | None = None, **options) -> torch.Tensor:
    """Rows of the reverse process, one per digit: (n, columns, 1, 28, 28), states x_T ... x_0 along a row."""
    if y is None and model.conditional:
        y = torch.arange(n, device=model.device) * 3 % N_CLASSES  # 0, 3, 6, 9, ...: a few different digits
    _, kept = model.reverse_process(n, model.check_labels(n, y), generator, keep=columns, **options)
    return torch.stack(kept, dim=1)  # (n, columns, 1, 28, 28)
