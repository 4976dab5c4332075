"""The one protocol every genzoo model follows.

A model is an `nn.Module` with a `Config` dataclass of hyper-parameters and:

- `loss(x, y=None, *, step=None) -> dict` with a "loss" entry (plus any scalars worth
  logging), for models trained by gradient steps; `step` is the trainer's step count
  (None outside training: the fully trained behaviour);
- `sample(n, *, y=None, generator=None, **options) -> (n, 1, 28, 28)` in [0, 1]: checked here
  once (n, labels, the options a model declares), drawn by the model's `_sample`;
- `log_prob(x, y=None) -> (N,)` in nats, only where it is defined; `log_prob_kind`
  says whether it is exact, a bound or an estimate;
- `reconstruct(x)` for autoencoders;
- capabilities declared as class attributes (`can_sample`, `log_prob_kind`, `log_prob_options`,
  `has_elbo`, `can_reconstruct`, `can_denoise`, `can_edit`, `can_complete`, `can_interpolate`,
  `heavy_sampling`, `sample_options`, ...), which evaluation, the commands, the report and the app read:
  code outside `models/` asks a model what it can do, never which class it is;
- long loops report their progress through `report_progress`, heard by a `reporting_progress` callback;
- `pictures(data) -> dict[str, Tensor | Figure]`: what the model shows after training, as
  data, not files. Each key is a file name relative to the run folder (the report looks
  for these names: "reconstructions.png", "samples/interpolation.png", ...); each value is
  rows of images, a (rows, columns, 1, H, W) tensor in [0, 1], or a matplotlib
  `Figure`. The model writes nothing: the trainer (after training) and `genzoo.commands`
  (on a trained run) hand the dict to `images.save_pictures`, the one writer of picture
  files, so models never touch the file system nor import the image-file code.

The trainer picks how to train from `training_mode`: "gradient" (it owns the
optimizer, calls `loss` and then `after_optimizer_step`), "step" (the model's own
`train_step`, e.g. an adversarial or contrastive-divergence update, with optimizers it
asked for in `configure_optimizers`), or "fit" (a closed-form `fit` on the whole
training set). In every mode the trainer owns the step count and the autocast decision.
Inputs are always float32 in [0, 1], (N, 1, 28, 28); models rescale inside.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, ClassVar

import torch
from torch import nn

from ..config import ConfigError, build
from ..constants import N_CLASSES


class CapabilityError(NotImplementedError):
    """Raised when a model is asked for something it cannot do (e.g. log_prob of a GAN)."""


# What a model fitted in closed form or by EM ("fit" mode) does not use of the trainer's settings.
NO_OPTIMIZER = {key: "it is fitted in closed form or by EM, with no optimizer"
                for key in ("lr", "beta1", "beta2", "weight_decay", "schedule", "warmup_steps", "grad_clip")}


def adam(params: list[torch.nn.Parameter], train: Any) -> torch.optim.Adam:
    """The trainer's Adam (its `lr`, `beta1`, `beta2`, `weight_decay`), on PyTorch's fused path.

    The fused path updates each parameter tensor in one pass, where Adam's default (foreach) path makes
    several passes over every tensor; on the CPU that is a large share of a small network's step
    (benchmarks/train_step_ab.py measures it). The same update, up to float rounding. A checkpoint
    keeps its optimizer's settings: a run started before this resumes on the path it started with.
    """
    return torch.optim.Adam(params, lr=train.lr, betas=(train.beta1, train.beta2), weight_decay=train.weight_decay,
                            fused=True)


class GenerativeModel(nn.Module):
    name: ClassVar[str] = ""
    Config: ClassVar[type]
    training_mode: ClassVar[str] = "gradient"  # "gradient" | "step" | "fit"
    binary_data: ClassVar[bool] = False  # trained on dynamically binarized digits, evaluated on the fixed draw
    # What the model can do, declared once here and read by evaluation, the commands and the report:
    can_sample: ClassVar[bool] = True
    log_prob_kind: ClassVar[str | None] = None  # "exact" | "bound" | "estimate" where log_prob exists
    log_prob_options: ClassVar[tuple[str, ...]] = ()  # keyword options of log_prob, e.g. ("k",) for IWAE
    log_prob_batch: ClassVar[int | None] = None  # test images per log_prob call in an evaluation, if it must be few
    has_elbo: ClassVar[bool] = False  # elbo(x) -> (N,) nats
    estimates_log_z: ClassVar[bool] = False  # log_prob uses an estimated log Z: log_z_uncertainty() gives its spread
    can_reconstruct: ClassVar[bool] = False  # reconstruct(x) -> x_hat
    can_denoise: ClassVar[bool] = False  # denoise(x_noisy) -> x_hat
    can_edit: ClassVar[bool] = False  # edit(images, instructions) -> edited images (the instruct editor)
    can_complete: ClassVar[bool] = False  # completes the hidden part of a digit (autoregressive.completion_rows)
    can_interpolate: ClassVar[bool] = False  # interpolation(steps, ...): images along straight latent lines
    interpolates_from_digit: ClassVar[bool] = False  # interpolation(start=x) begins at the code of the digit x
    has_latent_map: ClassVar[bool] = False  # a 2-D latent space is drawn as a map (latent_manifold, encode)
    heavy_sampling: ClassVar[bool] = False  # sampling takes many sequential network calls (pixels, denoising steps)
    has_reverse_process: ClassVar[bool] = False  # reverse_process(...) keeps states x_T ... x_0 (diffusion)
    sample_options: ClassVar[tuple[str, ...]] = ()  # keyword options of sample beyond n, y, generator
    # what to use instead when a chosen digit is asked of an unconditional model
    conditional_hint: ClassVar[str] = "use a conditional model: cgan, bayes, or one trained with --set conditional=true"
    train_defaults: ClassVar[dict[str, Any]] = {}  # TrainConfig values this model is best trained with
    amp_safe: ClassVar[bool] = True  # bf16 autocast on GPU is safe for its loss
    # TrainConfig keys this model does not use -> what it uses instead (asking for one is an error)
    unused_train_keys: ClassVar[dict[str, str]] = {}
    uses_evaluator: ClassVar[bool] = False  # epoch_end wants the evaluator network (handed in by the trainer)
    # What shipped weights leave out (genzoo.pretrained): prefixes of weights only training uses, and averaged
    # copies that stand in for the weights they average ({"ema.": "unet."}: ema.* ship, and load into unet.* too).
    training_only_weights: ClassVar[tuple[str, ...]] = ()
    averaged_weights: ClassVar[dict[str, str]] = {}

    def __init__(self, config: Any = None, **overrides: Any):
        super().__init__()
        if isinstance(config, self.Config) and not overrides:
            self.config = config
        else:
            base = config.__dict__ if isinstance(config, self.Config) else dict(config or {})
            self.config = build(self.Config, {**base, **overrides}, owner=self.name)

    # ------------------------------------------------------------------ protocol

    @property
    def conditional(self) -> bool:
        """True when the model takes a digit label (sampling and training).

        Declared one way, by the Config's `conditional` (a field, or a fixed property where a model
        is always or never conditional); a Config without one is an unconditional model.
        """
        return bool(getattr(self.config, "conditional", False))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None,
                step: int | None = None) -> dict[str, torch.Tensor]:
        # forward is the loss so that DistributedDataParallel sees the computation it must sync.
        return self.loss(x, y, step=step)

    def loss(self, x: torch.Tensor, y: torch.Tensor | None = None, *,
             step: int | None = None) -> dict[str, torch.Tensor]:
        """The training objective of a batch; `step` counts the optimizer steps taken before this one
        (a warm-up may read it), None outside training (evaluation: the fully trained objective)."""
        raise CapabilityError(f"{self.name}: trains with '{self.training_mode}', it has no gradient loss")

    def sample(self, n: int, *, y: torch.Tensor | int | None = None, generator: torch.Generator | None = None,
               **options: Any) -> torch.Tensor:
        """Draw n images, (n, 1, 28, 28) in [0, 1]; the same generator gives the same images.

        The one place that checks what a caller asks for: `n`, the labels (`check_labels`) and the
        options a model declares in `sample_options`; models implement `_sample(n, y, generator, **options)`.

        Args:
            n: number of images, >= 1.
            y: conditional models only: the digits to draw, (n,) or one int for all; None: `default_labels(n)`.
            generator: seeds the noise (a CPU generator gives the same images on any device).
        """
        if not self.can_sample:
            raise CapabilityError(f"{self.name}: cannot sample")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"{self.name}: n={n!r} images to sample; give a whole number >= 1")
        unknown = sorted(set(options) - set(self.sample_options))
        if unknown:
            known = ", ".join(self.sample_options) or "none"
            raise CapabilityError(f"{self.name}: sampling has no option {', '.join(unknown)} (its options: {known})")
        labels = self.check_labels(n, y) if y is not None or self.conditional else None
        return self._sample(n, labels, generator, **options)

    def sample_settings(self, **options: Any) -> dict[str, Any]:
        """The sampling options a `sample(**options)` call would use, defaults filled in (for the record)."""
        return dict(options)

    def _sample(self, n: int, y: torch.Tensor | None, generator: torch.Generator | None,
                **options: Any) -> torch.Tensor:
        raise CapabilityError(f"{self.name}: cannot sample")

    def check_labels(self, n: int, y: torch.Tensor | int | None) -> torch.Tensor:
        """The labels a conditional model draws or scores n images with, as (n,) int64 on its device.

        y: (n,) digits, one int for all, or None for `default_labels(n)`. An unconditional model given
        labels, or labels of the wrong shape or range, is an error that says what came and what fits.
        """
        if not self.conditional:
            raise CapabilityError(f"{self.name}: this model is unconditional, it cannot draw a chosen digit "
                                  f"(labels y were given); {self.conditional_hint}")
        if y is None:
            return self.default_labels(n)
        y = torch.as_tensor(y, device=self.device)
        if y.dtype.is_floating_point or y.dtype == torch.bool:
            raise ConfigError(f"{self.name}: labels must be integers (digits), got dtype {y.dtype}")
        y = y.long().expand(n) if y.dim() == 0 else y.long()
        if y.shape != (n,):
            raise ConfigError(f"{self.name}: labels must have shape ({n},) for {n} images, got {tuple(y.shape)}")
        n_classes = getattr(self.config, "n_classes", N_CLASSES)
        if n and (int(y.min()) < 0 or int(y.max()) >= n_classes):
            raise ConfigError(f"{self.name}: labels must be digits 0..{n_classes - 1}, "
                              f"got values in [{int(y.min())}, {int(y.max())}]")
        return y


    def log_prob(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        raise CapabilityError(f"{self.name}: has no tractable log-likelihood (log_prob)")

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        raise CapabilityError(f"{self.name}: is not an autoencoder, it cannot reconstruct")

    @torch.no_grad()
    def reconstruction_rows(self, x: torch.Tensor) -> torch.Tensor:
        """Originals (N, 1, 28, 28) above their reconstructions: (2, N, 1, 28, 28)."""
        x = x.to(self.device)
        return torch.stack([x, self.reconstruct(x)])

    def edit_settings(self, image_guidance: float | None = None, text_guidance: float | None = None,
                      steps: int | None = None) -> dict:
        """Where `can_edit`: the editing options in force (those given, checked; defaults for the rest)."""
        raise CapabilityError(f"{self.name}: is not an instruction editor; use an instruct run")

    def edit(self, images: torch.Tensor, instructions: list[str], *, image_guidance: float | None = None,
             text_guidance: float | None = None, steps: int | None = None,
             generator: torch.Generator | None = None) -> torch.Tensor:
        """Where `can_edit`: each image (B, 1, 28, 28) in [0, 1] edited by its instruction, (B, 1, 28, 28)."""
        raise CapabilityError(f"{self.name}: is not an instruction editor; use an instruct run")

    def interpolation(self, steps: int, *, rows: int = 1, label: int | None = None, start: torch.Tensor | None = None,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """Images decoded along `rows` straight latent lines of `steps` points each, (rows, steps, 1, 28, 28).

        Where `can_interpolate`; `start` (1, 1, 28, 28) begins the line at that digit's code where
        `interpolates_from_digit`, `label` fixes the digit of a conditional model.
        """
        raise CapabilityError(f"{self.name}: has no latent space to walk; use a vae, gan, cgan or dcgan run")

    def configure_optimizers(self, train: Any) -> dict[str, torch.optim.Optimizer]:
        """The optimizers the trainer steps (and checkpoints); override for several networks."""
        return {"model": adam([p for p in self.parameters() if p.requires_grad], train)}

    def after_optimizer_step(self, step: int) -> None:
        """Called by the trainer after optimizer step `step` (0-based) of a gradient-trained model,
        e.g. for an exponential moving average of the weights."""

    def train_step(self, x: torch.Tensor, y: torch.Tensor | None, optimizers: dict[str, torch.optim.Optimizer], *,
                   step: int, autocast: Callable[[], AbstractContextManager]) -> dict[str, float | torch.Tensor]:
        """One update of a "step" model; returns scalars for the log, as floats or 0-d tensors.

        `step` counts the trainer's steps before this one (resume restores it); `autocast()` is the
        context for forward passes that the trainer chose (bf16 on CUDA where `amp_safe`, else none).
        Returning tensors left on the device spares a GPU a wait for the host at every step:
        the trainer reads them in one go at its log points and stops on a non-finite one.
        """
        raise CapabilityError(f"{self.name}: has no own training step (training_mode={self.training_mode!r})")

    def fit_iterations(self) -> int | None:
        """A fitted model's most iterations (EM), for the trainer's progress; None: not counted."""
        return None

    def fit(self, x: torch.Tensor, y: torch.Tensor | None = None,
            on_iteration: Callable[[float], None] | None = None) -> dict[str, float]:
        """training_mode "fit": fit on the whole training set; `on_iteration` is called after each iteration."""
        raise CapabilityError(f"{self.name}: has no closed-form fit (training_mode={self.training_mode!r})")

    def epoch_end(self, epoch: int, evaluator: Any = None) -> dict[str, Any]:
        """Called by the trainer after each epoch; the scalars returned go to metrics.jsonl.

        `evaluator` is the pinned evaluator network when the class sets `uses_evaluator` (and the asset
        loads), else None. A "warning" entry (a string) is also printed: e.g. a GAN whose samples collapsed.
        """
        return {}

    def pictures(self, data) -> dict[str, Any]:
        """Model-specific pictures of the trained model (reconstructions, latent plots, filters), from the
        Dataset `data`: {file name in the run folder: (rows, columns, 1, H, W) images | matplotlib Figure}.

        Called once after training, in eval mode inside a forked RNG; the caller writes the files.
        """
        return {}

    # ------------------------------------------------------------------ helpers

    @property
    def device(self) -> torch.device:
        for tensor in list(self.parameters()) + list(self.buffers()):
            return tensor.device
        return torch.device("cpu")

    def randn(self, *shape: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Standard normal noise drawn on the generator's device, then moved to the model's.

        A CPU generator thus gives the same noise whatever device the model is on.
        """
        gen_device = generator.device if generator is not None else self.device
        return torch.randn(*shape, generator=generator, device=gen_device).to(self.device)

    def rand(self, *shape: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Uniform [0, 1) noise, drawn like `randn`."""
        gen_device = generator.device if generator is not None else self.device
        return torch.rand(*shape, generator=generator, device=gen_device).to(self.device)

    def default_labels(self, n: int) -> torch.Tensor:
        """Labels 0..9 in rows of n // 10 (the grid layout for conditional samples)."""
        return (torch.arange(n, device=self.device) * 10 // max(n, 1)).long()

    def n_parameters(self) -> int:
        """Learned numbers: the parameters, or the buffers of a model fitted in closed form (GMM, RBM stats)."""
        count = sum(p.numel() for p in self.parameters())
        return count or sum(b.numel() for b in self.buffers())


# ---------------------------------------------------------------------------- progress of long computations

# Per thread: a server computes with one model in several threads at once, and only the thread that asked
# for the progress of its computation may hear of it.
_progress = threading.local()


@contextmanager
def reporting_progress(callback: Callable[[int, int], None]) -> Iterator[None]:
    """Within the block, in this thread, the models' long loops (a pixel model's pixels, a diffusion sampler's
    steps) call `callback(done, total)` before each step. The callback may raise to stop the computation
    there (a cancelled job); blocks nest, the inner callback winning."""
    previous = getattr(_progress, "callback", None)
    _progress.callback = callback
    try:
        yield
    finally:
        _progress.callback = previous


def report_progress(done: int, total: int) -> None:
    """`done` of `total` steps of a long loop are done: tell the callback of `reporting_progress`, if any."""
    callback = getattr(_progress, "callback", None)
    if callback is not None:
        callback(done, total)


def image_rows(images: torch.Tensor, columns: int) -> torch.Tensor:
    """(N, 1, H, W) images as rows of `columns`, (R, columns, 1, H, W); a short last row is filled with
    grey (0.5), the colour of the grid's padding, so the picture looks like a grid of N images."""
    short = -len(images) % columns
    if short:
        images = torch.cat([images, images.new_full((short, *images.shape[1:]), 0.5)])
    return images.view(-1, columns, *images.shape[1:])
