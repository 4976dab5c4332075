"""The RBM's contrastive-divergence update against its definition and against the exact gradient.

Hinton 2002: d/dtheta mean log p(v) = E_data[dE-stats] - E_model[dE-stats]; for E(v, h) = -b.v - c.h - v^T W h
the statistics are v h^T (W), v (b) and h (c), with p(h | v) in place of h on the data side. CD-k replaces
the model expectation by the states k Gibbs sweeps from the data. With hidden units few enough to enumerate,
the model expectation and so the exact gradient are computed here in NumPy, in float64.
"""

from __future__ import annotations

import contextlib
import itertools
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from genzoo.models.rbm import RBM

pytestmark = pytest.mark.usefixtures("one_thread")


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def softplus(a):
    return np.logaddexp(0, a)


def params(model: RBM) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return tuple(p.detach().double().numpy().copy() for p in (model.W, model.b, model.c))


def plain_sgd(model: RBM, lr: float) -> dict:
    """SGD with no momentum and no weight decay: one step moves each parameter by lr * (its CD estimate)."""
    return model.configure_optimizers(SimpleNamespace(lr=lr))


def small_rbm(n_hidden: int, seed: int, scale: float, **config) -> RBM:
    torch.manual_seed(seed)
    model = RBM(n_hidden=n_hidden, momentum=0.0, weight_cost=0.0, **config)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.W.copy_(torch.randn(model.W.shape, generator=g) * scale)
        model.b.copy_(torch.randn(model.b.shape, generator=g) * 0.5 - 0.5)
        model.c.copy_(torch.randn(model.c.shape, generator=g) * 0.5)
    return model


def data(n: int, seed: int) -> torch.Tensor:
    """n binary 'digits': copies of 8 random patterns, so the data differ clearly from the model."""
    g = torch.Generator().manual_seed(seed)
    patterns = torch.bernoulli(torch.full((8, 784), 0.3), generator=g)
    return patterns[torch.arange(n) % 8].reshape(n, 1, 28, 28)


def test_cd_update_is_positive_minus_negative_statistics(monkeypatch):
    """Given the negative states the chain returned, each parameter moves by lr * (data - model statistics)."""
    model = small_rbm(5, seed=0, scale=0.05, method="cd", k=1)
    x = data(12, seed=1)
    g = torch.Generator().manual_seed(2)
    vk = torch.bernoulli(torch.full((12, 784), 0.4), generator=g)
    monkeypatch.setattr(model, "gibbs", lambda v, steps, generator=None: (vk, vk))
    W, b, c = params(model)
    lr = 0.1
    model.train_step(x, None, plain_sgd(model, lr), step=0, autocast=contextlib.nullcontext)
    v0, vn = x.reshape(12, -1).double().numpy(), vk.double().numpy()
    ph0, phk = sigmoid(v0 @ W + c), sigmoid(vn @ W + c)
    expected = {
        "W": W + lr * (v0.T @ ph0 - vn.T @ phk) / 12,
        "b": b + lr * (v0.mean(0) - vn.mean(0)),  # visible bias: up where the data are on more than the model
        "c": c + lr * (ph0.mean(0) - phk.mean(0)),
    }
    for name, new in zip("Wbc", params(model)):
        np.testing.assert_allclose(new, expected[name], rtol=1e-5, atol=1e-6, err_msg=name)


def exact_gradient(W: np.ndarray, b: np.ndarray, c: np.ndarray, v0: np.ndarray):
    """d mean log p(v0) / d (W, b, c), the model side enumerated over every hidden state."""
    n_hid = W.shape[1]
    hs = np.array(list(itertools.product([0, 1], repeat=n_hid)), dtype=float)  # (2^H, H)
    log_weight = hs @ c + softplus(hs @ W.T + b).sum(1)  # log sum_v exp(-E(v, h)) for each h
    p_h = np.exp(log_weight - log_weight.max())
    p_h /= p_h.sum()
    ev_given_h = sigmoid(hs @ W.T + b)  # (2^H, V): E[v | h]
    model_vh = np.einsum("s,sv,sh->vh", p_h, ev_given_h, hs)
    model_v, model_h = p_h @ ev_given_h, p_h @ hs
    ph0 = sigmoid(v0 @ W + c)
    return (v0.T @ ph0 / len(v0) - model_vh, v0.mean(0) - model_v, ph0.mean(0) - model_h)


def test_cd_with_many_gibbs_steps_approaches_the_exact_gradient():
    """CD-15 from 2,000 data states: its update equals the enumerated log-likelihood gradient up to the
    Monte Carlo error of the negative statistics (a few thousandths), far below the gradient itself."""
    model = small_rbm(4, seed=3, scale=0.04, method="cd", k=15)
    x = data(2000, seed=4)
    W, b, c = params(model)
    torch.manual_seed(5)
    model.train_step(x, None, plain_sgd(model, 1.0), step=0, autocast=contextlib.nullcontext)
    W1, b1, c1 = params(model)
    exact = exact_gradient(W, b, c, x.reshape(len(x), -1).double().numpy())
    for name, got, want in zip("Wbc", (W1 - W, b1 - b, c1 - c), exact):
        se = 0.5 / np.sqrt(len(x))  # the largest standard error of a mean of values in [0, 1]
        assert np.abs(got - want).max() < 5 * se, (name, np.abs(got - want).max())
        assert np.abs(want).max() > 10 * se, name  # the gradient itself is far from zero
