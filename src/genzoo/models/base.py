"""The one protocol every genzoo model follows.

A model is an `nn.Module` with a `Config` dataclass of hyper-parameters and:

- `loss(x, y=None) -> dict` with a "loss" entry (plus any scalars worth logging),
  for models trained by gradient steps;
- `sample(n, *, y=None, generator=None) -> (n, 1, 28, 28)` in [0, 1];
- `log_prob(x, y=None) -> (N,)` in nats, only where it is defined; `log_prob_kind`
  says whether it is exact, a bound or an estimate;
- `reconstruct(x)` for autoencoders.

The trainer picks how to train from `training_mode`: "gradient" (it owns the
optimizer and calls `loss`), "step" (the model's own `train_step`, e.g. an
adversarial or contrastive-divergence update, with optimizers it asked for in
`configure_optimizers`), or "fit" (a closed-form `fit` on the whole training set).
Inputs are always float32 in [0, 1], (N, 1, 28, 28); models rescale inside.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from ..config import build


class CapabilityError(NotImplementedError):
    """Raised when a model is asked for something it cannot do (e.g. log_prob of a GAN)."""


class GenerativeModel(nn.Module):
    name: ClassVar[str] = ""
    Config: ClassVar[type]
    training_mode: ClassVar[str] = "gradient"  # "gradient" | "step" | "fit"
    binary_data: ClassVar[bool] = False  # trained on dynamically binarized digits, evaluated on the fixed draw
    log_prob_kind: ClassVar[str | None] = None  # "exact" | "bound" | "estimate" where log_prob exists
    train_defaults: ClassVar[dict[str, Any]] = {}  # TrainConfig values this model is best trained with
    amp_safe: ClassVar[bool] = True  # bf16 autocast on GPU is safe for its loss
    sample_options: ClassVar[tuple[str, ...]] = ()  # extra keyword options of `sample` (ddpm: guidance, steps, ...)

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
        """True when the model takes a digit label (sampling and training)."""
        return bool(getattr(self.config, "conditional", False))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, step: int | None = None) -> dict[str, torch.Tensor]:
        # forward is the loss so that DistributedDataParallel sees the computation it must sync.
        return self.loss(x, y, step=step)

    def loss(self, x: torch.Tensor, y: torch.Tensor | None = None, *, step: int | None = None) -> dict[str, torch.Tensor]:
        """The training loss; `step` is the trainer's step count (None: the fully trained behaviour, evaluation)."""
        raise CapabilityError(f"{self.name}: trains with '{self.training_mode}', it has no gradient loss")

    def after_optimizer_step(self, step: int) -> None:
        """Called by the trainer after each gradient-mode optimizer step (e.g. an EMA update); no-op by default."""

    def sample_settings(self, **options) -> dict:
        """The sampling options a `sample(**options)` call would use, defaults filled in (for the record)."""
        return dict(options)

    def sample(self, n: int, *, y: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        raise CapabilityError(f"{self.name}: cannot sample")

    def log_prob(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        raise CapabilityError(f"{self.name}: has no tractable log-likelihood (log_prob)")

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        raise CapabilityError(f"{self.name}: is not an autoencoder, it cannot reconstruct")

    def configure_optimizers(self, train: Any) -> dict[str, torch.optim.Optimizer]:
        """The optimizers the trainer steps (and checkpoints); override for several networks."""
        params = [p for p in self.parameters() if p.requires_grad]
        return {"model": torch.optim.Adam(params, lr=train.lr, betas=(train.beta1, train.beta2), weight_decay=train.weight_decay)}

    def train_step(self, x: torch.Tensor, y: torch.Tensor | None,
                   optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, float | torch.Tensor]:
        """One update of a "step" model; returns scalars for the log, as floats or 0-d tensors.

        Returning tensors left on the device spares a GPU a wait for the host at every step:
        the trainer reads them in one go at its log points and stops on a non-finite one.
        """
        raise CapabilityError(f"{self.name}: has no own training step (training_mode={self.training_mode!r})")

    def fit(self, x: torch.Tensor, y: torch.Tensor | None = None) -> dict[str, float]:
        raise CapabilityError(f"{self.name}: has no closed-form fit (training_mode={self.training_mode!r})")

    def epoch_end(self, epoch: int) -> dict[str, Any]:
        """Called by the trainer after each epoch; the scalars returned go to metrics.jsonl.

        A "warning" entry (a string) is also printed: e.g. a GAN whose samples collapsed.
        """
        return {}

    def write_pictures(self, run_dir, data) -> None:
        """Called once after training with the run folder and the Dataset: model-specific pictures
        (reconstructions, latent plots, filters) go into the run folder for the report."""

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
