"""What the autoregressive pixel models (PixelCNN, PixelRNN) share.

A binary image is generated one pixel at a time in raster order (row by row,
left to right), each pixel a Bernoulli draw given the ones before it:

    log p(x) = sum_ij log p(x_ij | x_<ij)        (exact, in nats)

as in van den Oord, Kalchbrenner and Kavukcuoglu 2016, "Pixel Recurrent Neural
Networks". This module holds:

- `PixelModel`, the base of both model files: exact `log_prob`, the loss (mean
  NLL in nats per image, and bits/dim), and `sample`;
- two samplers that take the same random numbers: `sample_naive`, the reference,
  runs the whole network once per pixel; `sample_cached` asks the model for one
  pixel's logit from caches of what earlier pixels computed, so that each new
  pixel does only the work it needs (in the spirit of Ramachandran et al. 2017,
  "Fast Generation for Convolutional Autoregressive Models"). Both draw pixel
  (i, j) as `u[:, 0, i, j] < p`, with one uniform tensor `u` of shape
  (n, 1, H, W) drawn up front, so they give the same images;
- completion of partly hidden digits (`complete`, `completion_rows`) and the
  pixel-probability picture (`pixel_probability_rows`).

A model plugs in with three methods: `logits(x, y)` for the whole image,
`init_cache(n, y)` and `cached_logit(cache, x, i, j)`, called once per pixel in
raster order after every earlier pixel of `x` has been set.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F

from ..config import ConfigError
from ..data import fixed_binarization
from ..metrics import bits_per_dim
from .base import CapabilityError, GenerativeModel, report_progress

HIDE_KINDS = ("bottom-half", "right-half", "box")


class PixelModel(GenerativeModel):
    """Base of the Bernoulli pixel models: exact likelihood and pixel-by-pixel sampling."""

    training_mode = "gradient"
    binary_data = True
    log_prob_kind = "exact"
    can_complete = True
    heavy_sampling = True
    # On a CPU the cost per image grows with the batch (the activations of a large batch leave the caches): the
    # gated cpu recipe's log p(x) took 0.010 s an image at 16, 0.017 at 128 and 0.040 at 500 on one thread; the
    # evaluation's likelihood probe times 16 images, so the pass then runs at the probed pace too.
    log_prob_batch = 16
    train_defaults = {"lr": 1e-3, "epochs": 30, "batch_size": 128, "schedule": "cosine", "warmup_steps": 200,
                      "grad_clip": 1.0}

    # ------------------------------------------------------------ what a model fills in

    def logits(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Logit of p(x_ij = 1 | x_<ij) for every pixel: (N, 1, H, W) binary -> (N, 1, H, W)."""
        raise NotImplementedError

    def init_cache(self, n: int, y: torch.Tensor | None) -> Any:
        """Empty caches for generating n images (labels y (n,) for conditional models)."""
        raise NotImplementedError

    def cached_logit(self, cache: Any, x: torch.Tensor, i: int, j: int) -> torch.Tensor:
        """Logit (n,) of pixel (i, j) given x's earlier pixels; updates the caches."""
        raise NotImplementedError

    # ------------------------------------------------------------ protocol

    @property
    def image_size(self) -> int:
        return int(self.config.image_size)

    def check_input(self, x: torch.Tensor) -> None:
        size = self.image_size
        if x.dim() != 4 or tuple(x.shape[1:]) != (1, size, size):
            raise ValueError(
                f"{self.name}: expected images of shape (N, 1, {size}, {size}), got {tuple(x.shape)}; "
                f"set image_size to match the data"
            )

    def labels(self, n: int, y: torch.Tensor | None) -> torch.Tensor | None:
        """The labels to condition on (`check_labels`) for a conditional model; None otherwise."""
        return self.check_labels(n, y) if self.conditional else None

    def log_prob(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Exact log p(x) in nats, (N,), of binary images x (N, 1, H, W); log p(x | y) for a conditional model.

        A conditional model needs the labels y (N,): filling in default ones would score each image under
        a label picked by its position in the batch. Its log p(x) is the mixture over labels
        (`genzoo.evaluate.class_conditional_likelihood_metrics`).
        """
        if self.conditional and y is None:
            raise CapabilityError(
                f"{self.name}: is class-conditional, log_prob gives log p(x | y) and needs the labels; "
                f"pass them as log_prob(x, y), y (N,) ints in [0, {self.config.n_classes})"
            )
        self.check_input(x)
        logits = self.logits(x, self.labels(len(x), y)).float()
        return -F.binary_cross_entropy_with_logits(logits, x.float(), reduction="none").sum((1, 2, 3))

    def loss(self, x: torch.Tensor, y: torch.Tensor | None = None, *,
             step: int | None = None) -> dict[str, torch.Tensor]:
        nll = -self.log_prob(x, y).mean()
        return {"loss": nll, "bits_per_dim": bits_per_dim(nll.detach(), dequantized=False, n_dims=x[0].numel())}

    def pictures(self, data) -> dict[str, torch.Tensor]:
        """Completions of eight half-hidden test digits and their pixel probabilities (fixed binarization)."""
        x = fixed_binarization(data.test_x[:8]).to(self.device)
        y = data.test_y[:8].to(self.device) if self.conditional else None
        generator = torch.Generator().manual_seed(0)
        return {"completions-bottom-half.png": completion_rows(self, x, "bottom-half", 2, y, generator),
                "pixel_probabilities.png": pixel_probability_rows(self, x, y)}

    @torch.no_grad()
    def _sample(self, n: int, y: torch.Tensor | None, generator: torch.Generator | None,
                method: Literal["cached", "naive"] = "cached") -> torch.Tensor:
        """n binary images (n, 1, H, W), pixel by pixel; the same generator gives the same images."""
        size = self.image_size
        u = self.rand(n, 1, size, size, generator=generator)
        return generate(self, u, y, method=method)


# ---------------------------------------------------------------------------- samplers


def _draw(x, u, logit, i, j, x_known, visible) -> None:
    """Set pixel (i, j) of x in place: u < p, or the known value where it is visible."""
    pixel = (u[:, 0, i, j] < torch.sigmoid(logit.float())).to(x.dtype)
    if visible is not None:
        pixel = torch.where(visible[:, 0, i, j], x_known[:, 0, i, j], pixel)
    x[:, 0, i, j] = pixel


def _start(u, x_known, visible, dtype) -> torch.Tensor:
    x = torch.zeros(u.shape, dtype=dtype, device=u.device)
    if visible is not None:
        x = torch.where(visible, x_known.to(dtype), x)
    return x


def _raster_logits(model: PixelModel, x: torch.Tensor, y: torch.Tensor | None, cached: bool):
    """Yield (i, j, logit of pixel (i, j) given x) in raster order, from the caches or from the
    whole network; the caller sets pixel (i, j) of x before asking for the next one."""
    n, _, height, width = x.shape
    cache = model.init_cache(n, y) if cached else None
    for i in range(height):
        for j in range(width):
            report_progress(i * width + j, height * width)
            yield i, j, model.cached_logit(cache, x, i, j) if cached else model.logits(x, y)[:, 0, i, j]


def _raster_sample(model: PixelModel, u, y, x_known, visible, cached: bool) -> torch.Tensor:
    x = _start(u, x_known, visible, next(model.parameters()).dtype)
    for i, j, logit in _raster_logits(model, x, y, cached):
        _draw(x, u, logit, i, j, x_known, visible)
    return x


@torch.no_grad()
def sample_naive(model: PixelModel, u, y=None, x_known=None, visible=None) -> torch.Tensor:
    """The reference sampler: the whole network once per pixel (H * W passes).

    Args:
        u: (n, 1, H, W) uniform noise; pixel (i, j) is 1 when u < p(x_ij = 1 | x_<ij).
        y: (n,) labels for a conditional model, else None.
        x_known, visible: (n, 1, H, W) values and a bool mask of pixels to keep (completion).
    Returns:
        (n, 1, H, W) binary images.
    """
    return _raster_sample(model, u, y, x_known, visible, cached=False)


@torch.no_grad()
def sample_cached(model: PixelModel, u, y=None, x_known=None, visible=None) -> torch.Tensor:
    """The fast sampler: each pixel's logit from the model's caches. Same arguments as `sample_naive`."""
    return _raster_sample(model, u, y, x_known, visible, cached=True)


@torch.no_grad()
def cached_logits(model: PixelModel, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """Every pixel's logit for the given images, each from the caches as the fast sampler gets it.

    The pixels of `x` are revealed one at a time in raster order, as sampling would set them,
    so for an exact cache the result equals `model.logits(x, y)` up to rounding: a finer
    check of the caches than equal samples, which a small error can leave unchanged.

    Args:
        x: (n, 1, H, W) binary images. y: (n,) labels for conditional models.
    Returns:
        (n, 1, H, W) logits.
    """
    revealed, out = torch.zeros_like(x), torch.empty_like(x)
    for i, j, logit in _raster_logits(model, revealed, y, cached=True):
        out[:, 0, i, j] = logit
        revealed[:, :, i, j] = x[:, :, i, j]
    return out


def generate(model: PixelModel, u, y=None, x_known=None, visible=None, method: str = "cached") -> torch.Tensor:
    """Run the sampler named by `method` ("cached" or "naive"), in eval mode and without gradients."""
    samplers = {"cached": sample_cached, "naive": sample_naive}
    if method not in samplers:
        raise ValueError(f"method={method!r}: must be one of {', '.join(samplers)}")
    was_training = model.training
    model.eval()
    try:
        return samplers[method](model, u, y, x_known, visible)
    finally:
        model.train(was_training)


# ---------------------------------------------------------------------------- completion


def visible_mask(hide: str, size: int = 28) -> torch.Tensor:
    """Bool mask (1, 1, size, size) of the pixels left visible when `hide` is covered.

    bottom-half: rows size//2 and below hidden; right-half: columns size//2 and right;
    box: the centre square [size//4, 3*size//4) hidden.
    """
    visible = torch.ones(1, 1, size, size, dtype=torch.bool)
    half, quarter = size // 2, size // 4
    if hide == "bottom-half":
        visible[..., half:, :] = False
    elif hide == "right-half":
        visible[..., :, half:] = False
    elif hide == "box":
        visible[..., quarter : size - quarter, quarter : size - quarter] = False
    else:
        raise ConfigError(f"--hide {hide!r}: must be one of {', '.join(HIDE_KINDS)}")
    return visible


@torch.no_grad()
def complete(
    model: PixelModel,
    x: torch.Tensor,
    hide: str,
    n_completions: int = 4,
    y: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    method: str = "cached",
) -> torch.Tensor:
    """Fill in the hidden part of binary digits, several times each; visible pixels are kept.

    The model conditions each hidden pixel on all pixels before it in raster order, visible
    or filled in; visible pixels after it (e.g. the lower left when the right half is hidden)
    cannot inform it.

    Args:
        x: (N, 1, H, W) binary digits.
        hide: "bottom-half", "right-half" or "box".
        n_completions: completions per digit.
        y: (N,) labels for a conditional model.
    Returns:
        (n_completions, N, 1, H, W) completed digits.
    """
    model.check_input(x)
    n = len(x)
    visible = visible_mask(hide, model.image_size).to(model.device).expand(n * n_completions, -1, -1, -1)
    x_known = x.to(model.device).float().repeat(n_completions, 1, 1, 1)  # (K*N, 1, H, W)
    labels = model.labels(n, y)
    labels = labels.repeat(n_completions) if labels is not None else None
    u = model.rand(n * n_completions, 1, model.image_size, model.image_size, generator=generator)
    out = generate(model, u, labels, x_known, visible, method=method)
    return out.float().view(n_completions, n, *x.shape[1:])  # (K, N, 1, H, W)


def completion_rows(model: PixelModel, x: torch.Tensor, hide: str, n_completions: int = 4,
                    y: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Rows for a picture: originals / visible part (hidden pixels grey) / one row per completion.

    Returns:
        (2 + n_completions, N, 1, H, W) images in [0, 1], on the CPU.
    """
    completions = complete(model, x, hide, n_completions, y, generator)  # (K, N, 1, H, W)
    visible = visible_mask(hide, model.image_size).to(x.device)
    shown = torch.where(visible, x.float(), torch.full_like(x.float(), 0.5))
    return torch.cat([torch.stack([x.float(), shown]).cpu(), completions.cpu()])


@torch.no_grad()
def pixel_probabilities(model: PixelModel, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """p(x_ij = 1 | x_<ij) for each pixel of binary digits x (N, 1, H, W) -> (N, 1, H, W)."""
    model.check_input(x)
    was_training = model.training
    model.eval()
    try:
        dtype = next(model.parameters()).dtype
        return torch.sigmoid(model.logits(x.to(model.device, dtype), model.labels(len(x), y)).float())
    finally:
        model.train(was_training)


def pixel_probability_rows(model: PixelModel, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """Rows for a picture: digits / p(pixel = 1 | pixels before) / p(the observed value | pixels before).

    Returns:
        (3, N, 1, H, W) in [0, 1], on the CPU.
    """
    p_one = pixel_probabilities(model, x, y).cpu()
    x = x.float().cpu()
    p_observed = torch.where(x > 0.5, p_one, 1 - p_one)
    return torch.stack([x, p_one, p_observed])
