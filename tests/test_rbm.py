"""The RBM: AIS against brute-force enumeration, free energy against its definition, CD lowers F(data)."""

from __future__ import annotations

import math
from contextlib import nullcontext

import pytest
import torch

from genzoo.data import binarize, load_data
from genzoo.images import save_pictures
from genzoo.models.rbm import RBM, ais_betas, ais_log_partition, exact_log_partition, free_energy
from genzoo.train_config import TrainConfig


def tiny_rbm(n_vis=10, n_hid=6, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(n_vis, n_hid, generator=g) * scale,
        torch.randn(n_vis, generator=g) * 0.5,
        torch.randn(n_hid, generator=g) * 0.5,
    )


def brute_force_log_z(W, b, c):
    """Sum exp(-E(v, h)) over every joint state, float64."""
    W, b, c = W.double(), b.double(), c.double()
    n_vis, n_hid = W.shape
    codes = torch.arange(2 ** (n_vis + n_hid))
    states = ((codes[:, None] >> torch.arange(n_vis + n_hid)) & 1).double()
    v, h = states[:, :n_vis], states[:, n_vis:]
    return float(torch.logsumexp(v @ b + h @ c + ((v @ W) * h).sum(1), 0))


def test_exact_log_partition_matches_the_joint_sum():
    W, b, c = tiny_rbm()
    expected = brute_force_log_z(W, b, c)
    assert exact_log_partition(W, b, c) == pytest.approx(expected, abs=1e-9)  # enumerates h (6 < 10)
    assert exact_log_partition(W.T, c, b) == pytest.approx(
        expected, abs=1e-9
    )  # the same RBM, layers swapped: enumerates v


def test_free_energy_is_minus_log_of_the_hidden_sum():
    W, b, c = tiny_rbm()
    v = torch.bernoulli(torch.full((5, 10), 0.5), generator=torch.Generator().manual_seed(1))
    h = ((torch.arange(64)[:, None] >> torch.arange(6)) & 1).float()  # (64, 6)
    joint = v @ b[:, None] + (h @ c)[None] + (v @ W) @ h.T  # (5, 64) = -E(v, h)
    torch.testing.assert_close(free_energy(v, W, b, c), -torch.logsumexp(joint, 1))


@pytest.mark.parametrize("base", ["uniform", "data-like"])
def test_ais_log_z_matches_enumeration(base):
    W, b, c = tiny_rbm(scale=1.0)
    base_bias = torch.zeros(10) if base == "uniform" else b.clone() + 0.3
    exact = exact_log_partition(W, b, c)
    out = ais_log_partition(W, b, c, base_bias, n_betas=1000, n_runs=100, generator=torch.Generator().manual_seed(0))
    assert out["log_z"] == pytest.approx(exact, abs=0.04), (out, exact)
    assert out["log_z_low"] <= exact <= out["log_z_high"]


def test_ais_betas_follow_salakhutdinov_murray():
    betas = ais_betas(14500)
    assert len(betas) == 14500 and betas[0] == 0 and betas[-1] == 1
    assert int((betas < 0.5).sum()) == 500 and int(((betas >= 0.5) & (betas < 0.9)).sum()) == 4000
    assert (betas.diff() > 0).all()


@pytest.fixture(scope="module")
def digits():
    torch.manual_seed(0)
    return binarize(load_data("embedded").train_x[:200], torch.Generator().manual_seed(0))


@pytest.mark.parametrize("method", ["cd", "pcd"])
def test_cd_lowers_free_energy_of_data_relative_to_noise(digits, method):
    torch.manual_seed(0)
    model = RBM(n_hidden=32, method=method, k=1, persistent_chains=50)
    opt = model.configure_optimizers(TrainConfig(lr=0.05))
    noise = torch.bernoulli(
        torch.full((200, 1, 28, 28), float(digits.mean())), generator=torch.Generator().manual_seed(2)
    )

    def gap():
        return float(model.free_energy(digits).mean() - model.free_energy(noise).mean())

    before = gap()
    for step in range(60):
        batch = digits[(step * 50) % 200 : (step * 50) % 200 + 50]
        out = model.train_step(batch, None, opt, step=step, autocast=nullcontext)
    after = gap()
    assert abs(before) < 5
    assert after < before - 50, (before, after)
    assert math.isfinite(out["recon_error"]) and math.isfinite(out["free_energy_gap"])


def test_weight_cost_applies_to_weights_only():
    model = RBM(n_hidden=8, weight_cost=0.01, momentum=0.9)
    (opt,) = model.configure_optimizers(TrainConfig(lr=0.1)).values()
    decay = {tuple(p.shape): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    assert decay == {(784, 8): 0.01, (784,): 0.0, (8,): 0.0}
    assert all(g["momentum"] == 0.9 for g in opt.param_groups)


def test_log_prob_sample_pictures_and_reload(digits, tmp_path):
    torch.manual_seed(0)
    model = RBM(n_hidden=16, gibbs_steps=5, ais_betas=200, ais_runs=10)
    opt = model.configure_optimizers(TrainConfig(lr=0.05))
    model.train_step(digits[:50], None, opt, step=0, autocast=nullcontext)
    assert torch.isnan(model.log_z)
    lp = model.log_prob(digits[:20])
    assert lp.shape == (20,) and torch.isfinite(lp).all() and (lp < 0).all()
    torch.testing.assert_close(lp, -model.free_energy(digits[:20]) - model.log_z.float())
    with pytest.raises(ValueError, match=r"pixels must be 0 or 1; binarize first, e.g. genzoo.data.fixed_binarization"):
        model.log_prob(torch.full((2, 1, 28, 28), 0.5))
    samples = model.sample(4, generator=torch.Generator().manual_seed(3))
    assert samples.shape == (4, 1, 28, 28) and 0 <= samples.min() and samples.max() <= 1
    clone = RBM(model.config)
    clone.load_state_dict(model.state_dict())
    assert torch.equal(clone.sample(4, generator=torch.Generator().manual_seed(3)), samples)
    assert float(clone.log_z) == float(model.log_z)
    pictures = model.pictures()
    assert pictures["filters.png"].shape == (2, 10, 1, 28, 28)  # 16 filters, 10 a row, the short row padded grey
    assert (pictures["filters.png"][1, 6:] == 0.5).all()
    assert pictures["gibbs_chain.png"].shape == (8, 4, 1, 28, 28)  # chains x sweeps 0, 1, 2, 5
    paths = save_pictures(pictures, tmp_path)
    assert all(p.exists() for p in paths)


def test_gibbs_chains_reach_the_distribution_of_a_small_rbm():
    """Block Gibbs sampling has p(v) = sum_h exp(b.v + c.h + v.W.h) / Z as its stationary distribution. Only three
    visible pixels are wired (to three hidden units), so p of those pixels' 8 joint states is enumerated exactly:
    p(v) proportional to exp(b.v) prod_j (1 + exp(c_j + (v W)_j)). 4,000 chains of 30 sweeps against it."""
    torch.manual_seed(0)
    model = RBM(n_hidden=3).double()
    with torch.no_grad():
        model.W.zero_()
        model.W[:3] = torch.tensor([[2.5, -2.0, 1.5], [-2.0, 2.5, 1.0], [1.5, 1.0, -3.0]], dtype=torch.float64)
        model.b[:3] = torch.tensor([-1.0, 0.5, 0.0], dtype=torch.float64)
        model.c.copy_(torch.tensor([-0.5, -1.0, 0.5], dtype=torch.float64))
    states = torch.tensor([[(s >> k) & 1 for k in range(3)] for s in range(8)], dtype=torch.float64)  # (8, 3)
    weight = (states @ model.b[:3]).exp() * (1 + (states @ model.W[:3] + model.c).exp()).prod(1)
    exact = (weight / weight.sum()).detach()
    start = torch.bernoulli(torch.full((4000, 784), 0.5, dtype=torch.float64),
                            generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        v, _ = model.gibbs(start, 30, torch.Generator().manual_seed(2))
    index = (v[:, :3] * torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64)).sum(1).long()
    drawn = torch.bincount(index, minlength=8).double() / len(v)
    assert (drawn - exact).abs().sum().item() < 0.06  # total variation x 2; sampling noise gives about 0.03
