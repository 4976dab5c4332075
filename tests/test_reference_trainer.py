"""The trainer's order of operations over a few steps, against a plain loop that applies the recurrences
written out here: the learning rate of step k (linear warm-up, then cosine), the gradient of the loss, the
gradient clipped to a global norm, Adam's update (Kingma & Ba, algorithm 1, with bias correction), and then the
weights' moving average (decay min(d, (1 + n) / (10 + n)) after n updates). Swapping any two of these, or
reading the rate of the wrong step, changes the weights after a few steps."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import pytest
import torch

import genzoo
from genzoo.models.base import GenerativeModel
from genzoo.models.ddpm import ema_update


@dataclass
class LinearConfig:
    ema_decay: float = 0.8


class LinearRegression(GenerativeModel):
    """A deterministic loss with large gradients (clipping acts at every step), and an EMA copy updated after each
    optimizer step, as the diffusion models keep theirs."""

    name = "linear-reference"
    Config = LinearConfig

    def __init__(self, config=None, **overrides):
        super().__init__(config, **overrides)
        g = torch.Generator().manual_seed(0)
        self.w = torch.nn.Parameter(torch.randn(784, 3, generator=g) * 0.01)
        self.b = torch.nn.Parameter(torch.zeros(3))
        self.ema = copy.deepcopy(torch.nn.ParameterDict({"w": self.w, "b": self.b})).requires_grad_(False)

    def trained_parameters(self):
        return [self.w, self.b]

    def configure_optimizers(self, train):
        from genzoo.models.base import adam

        return {"model": adam(self.trained_parameters(), train)}

    def loss(self, x, y=None, *, step=None):
        out = x.flatten(1) @ self.w + self.b  # (B, 3)
        target = torch.stack([x.flatten(1).mean(1) * 40, torch.full((len(x),), 5.0), -x.flatten(1).std(1) * 30], 1)
        return {"loss": (out - target).pow(2).mean()}

    @torch.no_grad()
    def after_optimizer_step(self, step: int) -> None:
        ema_update(self.ema, torch.nn.ParameterDict({"w": self.w, "b": self.b}), step, self.config.ema_decay)

    def sample(self, n, *, y=None, generator=None):
        return self.rand(n, 1, 28, 28, generator=generator)


def rate(k: int, base: float, warmup: int, total: int) -> float:
    if k < warmup:
        return base * (k + 1) / warmup
    return base * 0.5 * (1 + math.cos(math.pi * min(1.0, (k - warmup) / max(1, total - warmup))))


def plain_loop(x, y, steps, lr, warmup, clip, beta1, beta2, decay):
    """Full-batch steps in float64 with every recurrence spelled out."""
    model = LinearRegression()
    params = {"w": model.w.detach().double().clone(), "b": model.b.detach().double().clone()}
    ema = {k: v.clone() for k, v in params.items()}
    m = {k: torch.zeros_like(v) for k, v in params.items()}
    v2 = {k: torch.zeros_like(v) for k, v in params.items()}
    xf = x.flatten(1).double()
    target = torch.stack([xf.mean(1) * 40, torch.full((len(x),), 5.0, dtype=torch.float64), -xf.std(1) * 30], 1)
    clipped = 0
    for k in range(steps):
        p = {name: t.clone().requires_grad_(True) for name, t in params.items()}
        loss = (xf @ p["w"] + p["b"] - target).pow(2).mean()
        grads = dict(zip(p, torch.autograd.grad(loss, list(p.values()))))
        norm = math.sqrt(sum(float((g**2).sum()) for g in grads.values()))
        if clip and norm > clip:  # clip_grad_norm_: scale by clip / (norm + 1e-6)
            grads = {name: g * (clip / (norm + 1e-6)) for name, g in grads.items()}
            clipped += 1
        lr_k = rate(k, lr, warmup, steps)
        for name in params:
            m[name] = beta1 * m[name] + (1 - beta1) * grads[name]
            v2[name] = beta2 * v2[name] + (1 - beta2) * grads[name] ** 2
            m_hat, v_hat = m[name] / (1 - beta1 ** (k + 1)), v2[name] / (1 - beta2 ** (k + 1))
            params[name] = params[name] - lr_k * m_hat / (v_hat.sqrt() + 1e-8)
        d = min(decay, (1 + k) / (10 + k))
        for name in params:
            ema[name] = d * ema[name] + (1 - d) * params[name]
    return params, ema, clipped


@pytest.mark.parametrize("clip", [0.0, 0.5])
def test_clip_step_ema_and_schedule_in_order_match_a_plain_loop(tiny, tmp_path, clip):
    x, y = tiny.train_x[:64], tiny.train_y[:64]
    data = genzoo.data.Dataset("embedded", tiny.source, x, y, tiny.test_x[:16], tiny.test_y[:16])
    steps, lr, warmup = 7, 0.05, 3
    model = LinearRegression()
    genzoo.train(model, data=data, out=tmp_path / "run", device="cpu", progress=False,
                 train_overrides={"steps": steps, "epochs": 0, "batch_size": 64, "lr": lr, "warmup_steps": warmup,
                                  "schedule": "cosine", "grad_clip": clip, "sample_every": 0, "test_every": 0})
    params, ema, clipped = plain_loop(x, y, steps, lr, warmup, clip, 0.9, 0.999, 0.8)
    if clip:
        assert clipped == steps  # clipping acts at every step: its place in the order shows
    for name in ("w", "b"):
        torch.testing.assert_close(getattr(model, name).detach().double(), params[name], rtol=1e-4, atol=1e-5,
                                   msg=f"weights {name}")
        torch.testing.assert_close(model.ema[name].double(), ema[name], rtol=1e-4, atol=1e-5, msg=f"EMA {name}")
    # the case is not degenerate: a different order or rate gives different weights
    other, _, _ = plain_loop(x, y, steps, lr, 0, clip, 0.9, 0.999, 0.8)
    assert not torch.allclose(other["b"], params["b"], atol=1e-3)
