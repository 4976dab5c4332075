"""`rbm`: a binary restricted Boltzmann machine trained by contrastive divergence.

Papers:
- Hinton (2002), "Training products of experts by minimizing contrastive divergence" (CD-k);
- Tieleman (2008), "Training restricted Boltzmann machines using approximations to the
  likelihood gradient" (persistent CD);
- Hinton (2010), "A practical guide to training restricted Boltzmann machines"
  (momentum, weight decay, sampling the hidden units but using probabilities for statistics);
- Salakhutdinov & Murray (2008), "On the quantitative analysis of deep belief networks"
  (annealed importance sampling of the partition function, Neal 2001; the base-rate model).

Energy E(v, h) = -b.v - c.h - v^T W h over v in {0,1}^784, h in {0,1}^H; the free energy
F(v) = -b.v - sum_j softplus(c_j + (v^T W)_j) gives log p(v) = -F(v) - log Z. Z is
intractable, so `log_prob` uses an AIS estimate of log Z (`log_prob_kind = "estimate"`);
AIS is unbiased for Z, so its log tends to underestimate log Z and the log-likelihood it
gives tends to be optimistic; the spread over runs is reported beside it.

Training is the model's own step: the trainer calls `train_step`, which writes the
negative CD estimate of the log-likelihood gradient into `.grad` and steps the SGD
optimizer from `configure_optimizers` (momentum, weight decay on W only), so the
trainer checkpoints it like any other.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ConfigError, in_range, non_negative, positive
from ..constants import N_PIXELS
from ..data import fixed_binarization
from .base import GenerativeModel, image_rows

# ---------------------------------------------------------------------------- partition function


def free_energy(v: torch.Tensor, W: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """F(v) = -b.v - sum_j softplus(c_j + (v W)_j).

    Args:
        v: (N, V) visible states; W: (V, H); b: (V,); c: (H,).

    Returns:
        (N,) free energies in nats.
    """
    return -(v @ b) - F.softplus(v @ W + c).sum(1)


def exact_log_partition(W: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> float:
    """log Z by enumerating every state of the smaller layer (at most 2^22 states), in float64.

    Args:
        W: (V, H); b: (V,); c: (H,).

    Returns:
        log Z in nats.
    """
    W, b, c = W.double(), b.double(), c.double()
    n_vis, n_hid = W.shape
    if min(n_vis, n_hid) > 22:
        raise ValueError(
            f"exact_log_partition: {n_vis} visible x {n_hid} hidden units; one layer must have at most 22 to enumerate"
        )
    if n_hid <= n_vis:  # sum over h of exp(c.h) prod_i (1 + exp(b_i + (W h)_i))
        h = _all_states(n_hid, W.device)
        return float(torch.logsumexp(h @ c + F.softplus(h @ W.T + b).sum(1), 0))
    v = _all_states(n_vis, W.device)
    return float(torch.logsumexp(-free_energy(v, W, b, c), 0))


def _all_states(n: int, device: torch.device) -> torch.Tensor:
    codes = torch.arange(2**n, device=device)
    return ((codes[:, None] >> torch.arange(n, device=device)) & 1).double()  # (2^n, n)


def ais_betas(n_betas: int) -> torch.Tensor:
    """Inverse temperatures from 0 to 1 spaced as in Salakhutdinov & Murray (2008).

    Their 14,500: 500 evenly in [0, 0.5), 4,000 in [0.5, 0.9), 10,000 in [0.9, 1]; other counts
    keep those proportions. Returns (n_betas,) float64 from 0.0 to 1.0.
    """
    n1, n2 = max(1, round(n_betas * 500 / 14500)), max(1, round(n_betas * 4000 / 14500))
    n3 = max(2, n_betas - n1 - n2)
    return torch.cat([torch.linspace(0, 0.5, n1 + 1, dtype=torch.float64)[:-1],
                      torch.linspace(0.5, 0.9, n2 + 1, dtype=torch.float64)[:-1],
                      torch.linspace(0.9, 1.0, n3, dtype=torch.float64)])


def ais_log_partition(W: torch.Tensor, b: torch.Tensor, c: torch.Tensor, base_bias: torch.Tensor, n_betas: int = 14500,
                      n_runs: int = 100, generator: torch.Generator | None = None,
                      on_step: Callable[[int], None] | None = None, state: dict | None = None) -> dict[str, float]:
    """Estimate log Z of an RBM by annealed importance sampling (Salakhutdinov & Murray 2008).

    The path runs from a base-rate model p_0(v) with visible biases `base_bias` (logits of the
    data's pixel means) and no weights, to the RBM, through
    log p*_beta(v) = (1 - beta) a.v + beta b.v + sum_j softplus(beta (c_j + (v W)_j)),
    each step a Gibbs sweep that leaves p_beta invariant.

    Args:
        W: (V, H); b: (V,); c: (H,); base_bias: (V,) the base model's visible logits a.
        n_betas: intermediate distributions; n_runs: independent AIS chains.
        generator: on W's device, for reproducible estimates.
        on_step: called with 1 after each intermediate distribution (a caller's progress bar).
        state: a dict kept up to date after each step ("step", the chains "v", "log_w", the generator's state),
            before `on_step`; given with a "step", the estimate goes on from there (a resumed evaluation).

    Returns:
        dict: "log_z" (log of the mean importance weight), "log_z_low"/"log_z_high" (log of
        mean -/+ 3 standard errors, low is -inf when the interval reaches 0), "log_z_base".
    """
    betas = ais_betas(n_betas).tolist()
    n_hid = W.shape[1]
    log_z_base = float(F.softplus(base_bias.double()).sum() + n_hid * math.log(2))
    v = torch.bernoulli(torch.sigmoid(base_bias).expand(n_runs, -1), generator=generator)
    log_w = torch.zeros(n_runs, dtype=torch.float64, device=W.device)
    first = 0
    if state is not None and "step" in state:
        first, v, log_w = state["step"], state["v"].to(W.device), state["log_w"].to(W.device)
        generator.set_state(state["generator"])
    for i in range(first, len(betas) - 1):
        previous, beta = betas[i], betas[i + 1]
        act = v @ W + c  # (R, H)
        log_w += (
            (beta - previous) * (v @ (b - base_bias)) + (F.softplus(beta * act) - F.softplus(previous * act)).sum(1)
        ).double()
        h = torch.bernoulli(torch.sigmoid(beta * act), generator=generator)
        v = torch.bernoulli(torch.sigmoid((1 - beta) * base_bias + beta * (h @ W.T + b)), generator=generator)
        if state is not None:
            state.update(step=i + 1, v=v, log_w=log_w, generator=generator.get_state())
        if on_step is not None:
            on_step(1)
    log_mean = float(torch.logsumexp(log_w, 0) - math.log(n_runs))
    weights = (log_w - log_w.max()).exp()
    mean, stderr = weights.mean(), weights.std() / math.sqrt(n_runs)
    shift = float(log_w.max())
    low = float(torch.log(mean - 3 * stderr)) + shift if mean > 3 * stderr else -math.inf
    return {
        "log_z": log_z_base + log_mean,
        "log_z_low": log_z_base + low,
        "log_z_high": log_z_base + float(torch.log(mean + 3 * stderr)) + shift,
        "log_z_base": log_z_base,
    }


# ---------------------------------------------------------------------------- model


@dataclass
class RBMConfig:
    n_hidden: int = 500
    method: Literal["cd", "pcd"] = "pcd"  # contrastive divergence, or persistent CD (Tieleman 2008)
    k: int = 1  # Gibbs sweeps per update (CD-k / PCD-k)
    persistent_chains: int = 100  # fantasy particles kept between updates (pcd)
    momentum: float = 0.5
    weight_cost: float = 2e-4  # L2 on W only, Hinton 2010's "weight-cost" (the trainer's weight_decay is not used)
    init_std: float = 0.01
    gibbs_steps: int = 1000  # sweeps from base-rate noise to a sample
    ais_betas: int = 14500  # intermediate distributions (Salakhutdinov & Murray 2008)
    ais_runs: int = 100

    def __post_init__(self):
        positive(
            n_hidden=self.n_hidden,
            k=self.k,
            persistent_chains=self.persistent_chains,
            gibbs_steps=self.gibbs_steps,
            ais_runs=self.ais_runs,
            init_std=self.init_std,
        )
        in_range("momentum", self.momentum, 0.0, 0.999)
        non_negative(weight_cost=self.weight_cost)
        if self.ais_betas < 10:
            raise ConfigError(f"ais_betas={self.ais_betas!r}: must be >= 10 (Salakhutdinov & Murray use 14500)")


class RBM(GenerativeModel):
    """`rbm`: binary RBM over the 784 pixels of binarized digits."""

    name = "rbm"
    Config = RBMConfig
    training_mode = "step"
    binary_data = True
    log_prob_kind = "estimate"
    estimates_log_z = True  # log Z by AIS: log_z_uncertainty() gives its spread
    # PCD-1 with the lr annealed to 0: PCD needs a small final rate. Its AIS log-likelihoods after 100 and 200
    # epochs: docs/results/classical.md (benchmarks/rbm_ais.py).
    train_defaults = {"lr": 0.05, "batch_size": 100, "epochs": 100, "schedule": "cosine"}
    amp_safe = False

    def __init__(self, config: Any = None, **overrides: Any):
        super().__init__(config, **overrides)
        c = self.config
        self.W = nn.Parameter(torch.randn(N_PIXELS, c.n_hidden) * c.init_std)  # (V, H)
        self.b = nn.Parameter(torch.zeros(N_PIXELS))  # visible biases
        self.c = nn.Parameter(torch.zeros(c.n_hidden))  # hidden biases
        self.register_buffer(
            "chains", torch.bernoulli(torch.full((c.persistent_chains, N_PIXELS), 0.5))
        )  # PCD fantasy particles
        self.register_buffer(
            "pixel_sum", torch.zeros(N_PIXELS, dtype=torch.float64)
        )  # data marginals, for the AIS base model
        self.register_buffer("pixel_count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("log_z", torch.tensor(float("nan"), dtype=torch.float64))  # AIS estimate; NaN: stale
        self.register_buffer("log_z_spread", torch.full((2,), float("nan"), dtype=torch.float64))  # (low, high)

    # ------------------------------------------------------------ conditionals

    def hidden_probs(self, v: torch.Tensor) -> torch.Tensor:
        """p(h = 1 | v): (N, 784) -> (N, H)."""
        return torch.sigmoid(v @ self.W + self.c)

    def visible_probs(self, h: torch.Tensor) -> torch.Tensor:
        """p(v = 1 | h): (N, H) -> (N, 784)."""
        return torch.sigmoid(h @ self.W.T + self.b)

    def gibbs(
        self, v: torch.Tensor, steps: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`steps` sweeps v -> h -> v. Returns the last binary v (N, 784) and its p(v | h) (N, 784)."""
        probs = v
        for _ in range(steps):
            h = torch.bernoulli(self.hidden_probs(v), generator=generator)
            probs = self.visible_probs(h)
            v = torch.bernoulli(probs, generator=generator)
        return v, probs

    @torch.no_grad()
    def free_energy(self, x: torch.Tensor) -> torch.Tensor:
        """F(v) in nats. Args: x (N, 1, 28, 28) or (N, 784). Returns: (N,)."""
        return free_energy(x.reshape(len(x), -1).to(self.W.dtype), self.W, self.b, self.c)

    # ------------------------------------------------------------ training

    unused_train_keys: ClassVar[dict[str, str]] = {
        "beta1": "SGD with the config's momentum (set momentum)",
        "beta2": "SGD with the config's momentum (set momentum)",
        "weight_decay": "set weight_cost, the L2 penalty on W only",
        "grad_clip": "its contrastive-divergence update is not a loss's gradient and is not clipped; lower lr instead",
    }

    def configure_optimizers(self, train: Any) -> dict[str, torch.optim.Optimizer]:
        """SGD with the config's momentum; weight decay (the config's weight_cost) on W only."""
        groups = [
            {"params": [self.W], "weight_decay": self.config.weight_cost},
            {"params": [self.b, self.c], "weight_decay": 0.0},
        ]
        return {"model": torch.optim.SGD(groups, lr=train.lr, momentum=self.config.momentum)}

    @torch.no_grad()
    def train_step(self, x: torch.Tensor, y: torch.Tensor | None, optimizers: dict[str, torch.optim.Optimizer], *,
                   step: int, autocast) -> dict[str, torch.Tensor]:
        """One CD-k or PCD-k update on a batch of binary digits (B, 1, 28, 28). `step` and `autocast` go
        unused: the update is the same at every step, and `amp_safe` is False (no bf16 sampling).

        Returns reconstruction error (mean squared, one sweep from the data) and the free
        energy gap F(data) - F(negative samples) averaged per image.
        """
        v0 = x.reshape(len(x), -1).to(self.W.dtype)  # (B, 784)
        ph0 = self.hidden_probs(v0)  # (B, H)
        if self.config.method == "pcd":
            vk, _ = self.gibbs(self.chains, self.config.k)
            self.chains.copy_(vk)
        else:
            vk, _ = self.gibbs(v0, self.config.k)
        phk = self.hidden_probs(vk)
        # gradient of the average log-likelihood: positive (data) minus negative (model) statistics
        self.W.grad = -(v0.T @ ph0 / len(v0) - vk.T @ phk / len(vk))
        self.b.grad = -(v0.mean(0) - vk.mean(0))
        self.c.grad = -(ph0.mean(0) - phk.mean(0))
        optimizers["model"].step()
        self.pixel_sum += v0.sum(0).double()
        self.pixel_count += len(v0)
        self.log_z.fill_(float("nan"))
        recon = self.visible_probs(torch.bernoulli(ph0))
        return {"recon_error": ((recon - v0) ** 2).sum(1).mean(),  # 0-d tensors: the trainer reads them in batches
                "free_energy_gap": self.free_energy(v0).mean() - self.free_energy(vk).mean()}

    # ------------------------------------------------------------ likelihood

    def base_bias(self) -> torch.Tensor:
        """Logits of the training pixels' means, smoothed (the AIS base-rate model); zeros before training."""
        if float(self.pixel_count) == 0:
            return torch.zeros_like(self.b)
        p = ((self.pixel_sum + 0.5) / (self.pixel_count + 1.0)).to(self.b.dtype)  # avoids +-inf for never-inked pixels
        return torch.log(p) - torch.log1p(-p)

    @torch.no_grad()
    def estimate_log_z(self, n_betas: int | None = None, n_runs: int | None = None, seed: int = 0,
                       on_step: Callable[[int], None] | None = None, state: dict | None = None
                       ) -> dict[str, float]:
        """AIS estimate of log Z with the config's settings (or those given); stored in the `log_z` buffer.
        `on_step` is called after each of the n_betas - 1 steps (progress); `state` as `ais_log_partition`'s."""
        n_betas, n_runs = n_betas or self.config.ais_betas, n_runs or self.config.ais_runs
        generator = torch.Generator(device=self.W.device).manual_seed(seed)
        out = ais_log_partition(self.W, self.b, self.c, self.base_bias(), n_betas, n_runs, generator, on_step, state)
        self.log_z.fill_(out["log_z"])
        self.log_z_spread.copy_(torch.tensor([out["log_z_low"], out["log_z_high"]], dtype=torch.float64))
        return {**out, "ais_betas": n_betas, "ais_runs": n_runs}

    def log_z_uncertainty(self) -> dict[str, float]:
        """The stored AIS estimate of log Z with its spread over the AIS runs (NaN before an estimate).

        "low"/"high" are log(mean weight -/+ 3 standard errors) as `ais_log_partition` gives them; "se" is
        the standard error of log Z by the delta method, se(mean weight) / mean weight, read back from
        "high". Every image's log p(x) = -F(x) - log Z shares this error, so it is also the NLL's error
        from log Z (the NLL's "se" over test images leaves it out).
        """
        log_z, (low, high) = float(self.log_z), self.log_z_spread.tolist()
        return {"value": log_z, "se": math.expm1(high - log_z) / 3, "low": low, "high": high}

    @torch.no_grad()
    def log_prob(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """-F(x) - log Z, with log Z the stored AIS estimate (computed now if stale). (N,) nats.

        Args:
            x: (N, 1, 28, 28) binary digits (e.g. `genzoo.data.fixed_binarization(test_x)`).
        """
        v = x.reshape(len(x), -1)
        if not bool(((v == 0) | (v == 1)).all()):
            raise ValueError(
                f"{self.name}.log_prob: pixels must be 0 or 1; binarize first, e.g. genzoo.data.fixed_binarization(x)"
            )
        if torch.isnan(self.log_z):
            self.estimate_log_z()
        return -self.free_energy(v) - self.log_z.to(self.W.dtype)

    # ------------------------------------------------------------ sampling and pictures

    @torch.no_grad()
    def _sample(self, n: int, y: None, generator: torch.Generator | None) -> torch.Tensor:
        """`gibbs_steps` sweeps from base-rate noise; returns the last p(v | h), (n, 1, 28, 28) in [0, 1]."""
        v = (self.rand(n, N_PIXELS, generator=generator) < torch.sigmoid(self.base_bias())).to(self.W.dtype)
        probs = v
        for _ in range(self.config.gibbs_steps):  # noise drawn like `rand`: same samples on any device
            h = (self.rand(n, self.config.n_hidden, generator=generator) < self.hidden_probs(v)).to(self.W.dtype)
            probs = self.visible_probs(h)
            v = (self.rand(n, N_PIXELS, generator=generator) < probs).to(self.W.dtype)
        return probs.reshape(n, 1, 28, 28)

    @torch.no_grad()
    def chain(
        self, start: torch.Tensor, snapshots: list[int], generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """A Gibbs chain over time: p(v | h) after each number of sweeps in `snapshots`.

        Args:
            start: (C, 1, 28, 28) binary starting states.

        Returns:
            (C, len(snapshots), 1, 28, 28).
        """
        v = start.reshape(len(start), -1).to(self.W.dtype)
        frames, done, probs = [], 0, v
        for target in snapshots:
            if target > done:
                v, probs = self.gibbs(v, target - done, generator)
                done = target
            frames.append(probs.reshape(-1, 1, 28, 28))
        return torch.stack(frames, 1)

    def filters(self, n: int = 100) -> torch.Tensor:
        """The first n hidden units' weights as images, each scaled to [0, 1]. (n, 1, 28, 28)."""
        w = self.W.detach()[:, :n].T  # (n, 784)
        lo, hi = w.min(1, keepdim=True).values, w.max(1, keepdim=True).values
        return ((w - lo) / (hi - lo).clamp_min(1e-12)).reshape(-1, 1, 28, 28)

    def pictures(self, data: Any = None) -> dict[str, torch.Tensor]:
        """filters.png (weights of up to 100 hidden units, 10 a row) and gibbs_chain.png (rows: chains; columns:
        sweeps 0, 1, 2, 5, ..., 1000 up to `gibbs_steps`, starting from binarized test digits when `data` is given)."""
        snapshots = [s for s in (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000) if s <= self.config.gibbs_steps]
        generator = torch.Generator(device=self.W.device).manual_seed(0)
        if data is not None:
            spread = torch.linspace(0, len(data.test_x) - 1, 8).long()  # test sets may be sorted by digit
            start = fixed_binarization(data.test_x[spread]).to(self.W.device)
        else:
            start = torch.bernoulli(torch.sigmoid(self.base_bias()).expand(8, -1), generator=generator).reshape(
                8, 1, 28, 28
            )
        frames = self.chain(start, snapshots, generator)  # (8, T, 1, 28, 28)
        return {"filters.png": image_rows(self.filters(min(100, self.config.n_hidden)), 10),
                "gibbs_chain.png": frames}
