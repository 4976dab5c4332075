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

from genzoo.models import rbm as rbm_module
from genzoo.models.rbm import RBM, ais_betas, exact_log_partition

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


def free_energy_np(v: np.ndarray, W: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """F(v) = -b.v - sum_j log(1 + exp(c_j + (v W)_j)), per row of v."""
    return -(v @ b) - softplus(v @ W + c).sum(1)


@pytest.mark.parametrize("method", ["cd", "pcd"])
def test_an_update_reads_k_sweeps_from_the_data_or_the_persistent_chains(monkeypatch, method):
    """CD starts its k sweeps at the batch; PCD at its fantasy particles, which keep where the sweeps ended. With 7
    particles for a batch of 12 the two averages have different counts. The step also returns the reconstruction
    error of one sweep from the data (hidden states drawn from the global stream) and the free-energy gap, both
    after the update, and records the batch's pixel counts for the AIS base model and marks log Z stale."""
    model = small_rbm(5, seed=6, scale=0.05, method=method, k=3, persistent_chains=7)
    x = data(12, seed=7)
    v0 = x.reshape(12, -1)
    n_neg = 7 if method == "pcd" else 12
    vk = torch.bernoulli(torch.full((n_neg, 784), 0.4), generator=torch.Generator().manual_seed(8))
    chains = model.chains.clone()
    calls = []

    def gibbs(v, steps, generator=None):
        calls.append((v.clone(), steps))
        return vk, vk * 0.5

    monkeypatch.setattr(model, "gibbs", gibbs)
    with torch.no_grad():
        model.log_z.fill_(3.0)
        model.pixel_sum.fill_(2.0)
        model.pixel_count.fill_(5.0)
    W, b, c = params(model)
    ph0_32 = torch.sigmoid(v0 @ model.W.detach() + model.c.detach())  # the hidden draw's probabilities, float32
    lr = 0.1
    torch.manual_seed(9)
    out = model.train_step(x, None, plain_sgd(model, lr), step=0, autocast=contextlib.nullcontext)
    torch.manual_seed(9)
    h = torch.bernoulli(ph0_32).double().numpy()

    assert len(calls) == 1 and calls[0][1] == 3
    assert torch.equal(calls[0][0], chains if method == "pcd" else v0)
    if method == "pcd":
        assert torch.equal(model.chains, vk)
    else:
        assert torch.equal(model.chains, chains)
    v0n, vn = v0.double().numpy(), vk.double().numpy()
    ph0, phk = sigmoid(v0n @ W + c), sigmoid(vn @ W + c)
    W1, b1, c1 = params(model)
    np.testing.assert_allclose(W1, W + lr * (v0n.T @ ph0 / 12 - vn.T @ phk / n_neg), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b1, b + lr * (v0n.mean(0) - vn.mean(0)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(c1, c + lr * (ph0.mean(0) - phk.mean(0)), rtol=1e-5, atol=1e-6)
    recon = sigmoid(h @ W1.T + b1)
    assert float(out["recon_error"]) == pytest.approx(((recon - v0n) ** 2).sum(1).mean(), rel=1e-4)
    gap = free_energy_np(v0n, W1, b1, c1).mean() - free_energy_np(vn, W1, b1, c1).mean()
    assert float(out["free_energy_gap"]) == pytest.approx(gap, rel=1e-4, abs=1e-3)
    np.testing.assert_array_equal(model.pixel_sum.numpy(), 2.0 + v0n.sum(0))
    assert float(model.pixel_count) == 17.0 and model.pixel_sum.dtype == torch.float64
    assert torch.isnan(model.log_z)


def test_gibbs_sweeps_draw_the_hiddens_then_the_visibles_from_the_generator():
    """Each sweep draws h ~ p(h | v) = sigmoid(c + v W), then v ~ p(v | h) = sigmoid(b + W h), both from the
    generator given (the global stream untouched); it returns the last v and its p(v | h). No sweep: v twice."""
    model = small_rbm(6, seed=10, scale=0.3)
    W, b, c = params(model)
    v = torch.bernoulli(torch.full((3, 784), 0.3), generator=torch.Generator().manual_seed(11))
    torch.manual_seed(12)
    before = torch.get_rng_state()
    with torch.no_grad():
        got_v, got_p = model.gibbs(v, 2, torch.Generator().manual_seed(13))
    assert torch.equal(torch.get_rng_state(), before)
    g = torch.Generator().manual_seed(13)
    want = v.clone()
    for _ in range(2):
        h = torch.bernoulli(torch.from_numpy(sigmoid(want.double().numpy() @ W + c)).float(), generator=g)
        p = sigmoid(h.double().numpy() @ W.T + b)
        want = torch.bernoulli(torch.from_numpy(p).float(), generator=g)
    torch.testing.assert_close(got_p.double(), torch.from_numpy(p), rtol=1e-5, atol=1e-6)
    assert torch.equal(got_v, want)
    same_v, same_p = model.gibbs(v, 0)
    assert same_v is v and same_p is v


def test_log_prob_is_minus_free_energy_minus_the_stored_log_z():
    """log p(v) = -F(v) - log Z with the log Z estimate already stored (no new estimate); any pixel that is not
    0 or 1 is refused, in whole."""
    model = small_rbm(6, seed=14, scale=0.2, ais_betas=10, ais_runs=2)
    with torch.no_grad():
        model.log_z.fill_(123.25)
    x = data(5, seed=15)
    W, b, c = params(model)
    want = -free_energy_np(x.reshape(5, -1).double().numpy(), W, b, c) - 123.25
    got = model.log_prob(x)
    assert got.dtype == torch.float32 and float(model.log_z) == 123.25
    np.testing.assert_allclose(got.double().numpy(), want, rtol=1e-5)
    for bad in (0.5, 2.0, -1.0):
        y = x.clone()
        y[1, 0, 3, 4] = bad
        message = ("rbm.log_prob: pixels must be 0 or 1; binarize first, e.g. "
                   "genzoo.data.fixed_binarization(x)")
        with pytest.raises(ValueError) as caught:
            model.log_prob(y)
        assert str(caught.value) == message


@pytest.mark.parametrize("n, want", [
    # 500 / 14500 of the count in [0, 0.5), 4000 / 14500 in [0.5, 0.9), the rest in [0.9, 1], each evenly spaced,
    # at least one in each of the first two and two in the last
    (10, [0.0, 0.5, 0.5 + 0.4 / 3, 0.5 + 0.8 / 3, 0.9, 0.92, 0.94, 0.96, 0.98, 1.0]),
    (2, [0.0, 0.5, 0.9, 1.0]),
    (58, [0.0, 0.25] + [0.5 + 0.4 * i / 16 for i in range(16)] + [0.9 + 0.1 * i / 39 for i in range(40)]),
])
def test_ais_betas_for_a_few_counts(n, want):
    betas = ais_betas(n)
    assert betas.dtype == torch.float64
    np.testing.assert_allclose(betas.numpy(), want, rtol=0, atol=1e-12)


def test_exact_log_partition_enumerates_up_to_22_units_and_refuses_more(monkeypatch):
    """The smaller layer must have at most 22 units; the refusal comes before any state is enumerated."""

    class Enumerated(Exception):
        pass

    def enumerate_states(n, device):
        raise Enumerated(n)

    monkeypatch.setattr(rbm_module, "_all_states", enumerate_states)
    with pytest.raises(Enumerated) as caught:
        exact_log_partition(torch.zeros(30, 22), torch.zeros(30), torch.zeros(22))
    assert caught.value.args == (22,)
    with pytest.raises(Enumerated) as caught:
        exact_log_partition(torch.zeros(22, 30), torch.zeros(22), torch.zeros(30))
    assert caught.value.args == (22,)
    with pytest.raises(ValueError) as refused:
        exact_log_partition(torch.zeros(24, 23), torch.zeros(24), torch.zeros(23))
    assert str(refused.value) == (
        "exact_log_partition: 24 visible x 23 hidden units; one layer must have at most 22 to enumerate")


def test_exact_log_partition_of_a_tiny_rbm_by_hand():
    """Two visible units, one hidden: Z = sum over the 8 joint states of exp(b.v + c h + v.W h), in float64
    even for float32 parameters; enumerated over either layer (1 hidden < 2 visible; transposed, 1 visible)."""
    W = np.array([[0.7], [-1.3]])
    b, c = np.array([0.2, -0.4]), np.array([0.9])
    z = sum(np.exp(b @ v + c[0] * h + (v @ W)[0] * h)
            for v in itertools.product([0.0, 1.0], repeat=2) for v in [np.array(v)] for h in (0.0, 1.0))
    t = [torch.tensor(a, dtype=torch.float32) for a in (W, b, c)]
    got = exact_log_partition(*t)
    assert isinstance(got, float)
    assert got == pytest.approx(np.log(z), abs=1e-6)
    assert exact_log_partition(t[0].T, t[2], t[1]) == pytest.approx(np.log(z), abs=1e-6)


@pytest.mark.parametrize("n, counts", [
    # n * 500 / 14500 and n * 4000 / 14500 rounded: 919 -> 31.69 and 253.52; 7265 -> 250.52 and 2004.14
    (919, (32, 254, 633)), (7265, (251, 2004, 5010)), (14500, (500, 4000, 10000)),
])
def test_ais_betas_keep_the_papers_proportions_and_even_float64_spacing(n, counts):
    betas = ais_betas(n).numpy()
    n1, n2, n3 = counts
    assert len(betas) == n
    np.testing.assert_allclose(betas[:n1], np.linspace(0, 0.5, n1 + 1)[:-1], rtol=0, atol=1e-14)
    np.testing.assert_allclose(betas[n1 : n1 + n2], np.linspace(0.5, 0.9, n2 + 1)[:-1], rtol=0, atol=1e-14)
    np.testing.assert_allclose(betas[n1 + n2 :], np.linspace(0.9, 1.0, n3), rtol=0, atol=1e-14)


def test_a_float64_rbm_trains_on_float32_digits(monkeypatch):
    """The batch is cast to the model's dtype: a float64 RBM's CD update on float32 digits is the float64 one."""
    model = small_rbm(4, seed=16, scale=0.05, method="cd", k=1).double()
    x = data(6, seed=17)
    vk = torch.bernoulli(torch.full((6, 784), 0.4, dtype=torch.float64), generator=torch.Generator().manual_seed(18))
    monkeypatch.setattr(model, "gibbs", lambda v, steps, generator=None: (vk, vk))
    W, b, c = params(model)
    model.train_step(x, None, plain_sgd(model, 0.5), step=0, autocast=contextlib.nullcontext)
    v0, vn = x.reshape(6, -1).double().numpy(), vk.numpy()
    ph0, phk = sigmoid(v0 @ W + c), sigmoid(vn @ W + c)
    np.testing.assert_allclose(params(model)[0], W + 0.5 * (v0.T @ ph0 - vn.T @ phk) / 6, rtol=1e-12, atol=1e-14)
    assert model.W.dtype == torch.float64


def trained_counts(model: RBM, seed: int) -> np.ndarray:
    """Pixel counts as if some digits had been seen; returns the base rate's logits, (sum + 1/2) / (count + 1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.pixel_sum.copy_(torch.randint(0, 41, (784,), generator=g).double())
        model.pixel_count.fill_(40.0)
    p = (model.pixel_sum.numpy() + 0.5) / 41.0
    return np.log(p) - np.log1p(-p)


def test_the_base_rate_is_the_smoothed_logit_of_the_pixel_means_and_zero_before_training():
    model = small_rbm(3, seed=19, scale=0.1)
    assert torch.equal(model.base_bias(), torch.zeros(784))
    want = trained_counts(model, seed=20)
    got = model.base_bias()
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.double().numpy(), want, rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # after one image: p = (x + 1/2) / 2, 3/4 or 1/4
        model.pixel_sum.copy_(data(1, seed=21)[0].reshape(-1).double())
        model.pixel_count.fill_(1.0)
    want = np.where(model.pixel_sum.numpy() == 1, np.log(3), -np.log(3))
    np.testing.assert_allclose(model.base_bias().double().numpy(), want, rtol=1e-6)


def test_a_sample_is_the_last_visible_probability_of_gibbs_steps_from_base_rate_noise():
    """v ~ Bernoulli(sigmoid(base rate)), then `gibbs_steps` sweeps, each unit on when its uniform draw (from the
    generator, in that order) is below its probability; the sample is the last p(v | h)."""
    model = small_rbm(5, seed=21, scale=0.3, gibbs_steps=3)
    base = trained_counts(model, seed=22)
    W, b, c = params(model)
    got = model.sample(4, generator=torch.Generator().manual_seed(23))
    g = torch.Generator().manual_seed(23)
    v = (torch.rand(4, 784, generator=g).double().numpy() < sigmoid(base)).astype(float)
    for _ in range(3):
        h = (torch.rand(4, 5, generator=g).double().numpy() < sigmoid(v @ W + c)).astype(float)
        p = sigmoid(h @ W.T + b)
        v = (torch.rand(4, 784, generator=g).double().numpy() < p).astype(float)
    assert got.shape == (4, 1, 28, 28) and got.dtype == torch.float32
    np.testing.assert_allclose(got.double().numpy().reshape(4, 784), p, rtol=1e-5, atol=1e-6)


def test_a_chain_shows_the_visible_probabilities_after_each_number_of_sweeps():
    """Snapshots 0 (the start itself), 1, 1 again (no sweep), 3: the frames are p(v | h) of one continuing chain."""
    model = small_rbm(8, seed=24, scale=0.05)  # weights small enough that the hidden units do not saturate
    start = data(2, seed=25)
    got = model.chain(start, [0, 1, 1, 3], torch.Generator().manual_seed(26))
    g = torch.Generator().manual_seed(26)
    v = start.reshape(2, -1)
    v1, p1 = model.gibbs(v, 1, g)
    _, p3 = model.gibbs(v1, 2, g)
    assert got.shape == (2, 4, 1, 28, 28)
    want = torch.stack([v, p1, p1, p3], 1).reshape(2, 4, 1, 28, 28)
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_the_stored_log_z_is_the_ais_estimate_with_the_configured_or_given_settings():
    """estimate_log_z runs AIS from the base rate with a generator seeded `seed` and stores log Z and its spread;
    log_z_uncertainty reads them back, se = (exp(high - log Z) - 1) / 3."""
    from genzoo.models.rbm import ais_log_partition

    model = small_rbm(4, seed=27, scale=0.2, ais_betas=30, ais_runs=6)
    trained_counts(model, seed=28)
    steps = []
    out = model.estimate_log_z(seed=5, on_step=steps.append)
    with torch.no_grad():
        want = ais_log_partition(model.W, model.b, model.c, model.base_bias(), 30, 6,
                                 torch.Generator().manual_seed(5))
    assert out == {**want, "ais_betas": 30, "ais_runs": 6}
    assert steps == [1] * 29
    assert float(model.log_z) == want["log_z"]
    assert model.log_z_spread.tolist() == [want["log_z_low"], want["log_z_high"]]  # float64, not rounded
    spread = model.log_z_uncertainty()
    assert spread["value"] == want["log_z"]
    assert [spread["low"], spread["high"]] == model.log_z_spread.tolist()
    assert spread["se"] == np.expm1(spread["high"] - want["log_z"]) / 3
    assert spread["se"] > 0
    other = model.estimate_log_z(n_betas=12, n_runs=3)
    with torch.no_grad():
        want = ais_log_partition(model.W, model.b, model.c, model.base_bias(), 12, 3,
                                 torch.Generator().manual_seed(0))
    assert other == {**want, "ais_betas": 12, "ais_runs": 3}


def test_a_sampled_unit_is_on_only_for_a_draw_below_its_probability(monkeypatch):
    """Every draw at exactly 1/2 and every bias 0: each probability is then 1/2 as long as every unit stays off
    (u < p is false), so the sample is 1/2 everywhere; a unit turned on by u = p would bring in the weights."""
    model = small_rbm(6, seed=29, scale=0.5, gibbs_steps=2)
    with torch.no_grad():
        model.b.zero_()
        model.c.zero_()
    monkeypatch.setattr(model, "rand", lambda *shape, generator=None: torch.full(shape, 0.5))
    got = model.sample(3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(got, torch.full((3, 1, 28, 28), 0.5))


def test_a_float64_rbm_runs_a_chain_from_float32_digits():
    model = small_rbm(8, seed=30, scale=0.05).double()
    start = data(2, seed=31)
    got = model.chain(start, [0, 2], torch.Generator().manual_seed(32))
    _, p2 = model.gibbs(start.reshape(2, -1).double(), 2, torch.Generator().manual_seed(32))
    assert got.dtype == torch.float64
    torch.testing.assert_close(got[:, 1].reshape(2, -1), p2, rtol=0, atol=0)


def test_an_interrupted_log_z_estimate_goes_on_from_its_state():
    """The state dict estimate_log_z is given is kept up to date; an estimate given a state from part way goes on
    from there, to the figure an uninterrupted run gives."""
    model = small_rbm(4, seed=33, scale=0.2, ais_betas=20, ais_runs=5)
    trained_counts(model, seed=34)
    whole = model.estimate_log_z(seed=3)
    state, steps = {}, []

    class Interrupted(Exception):
        pass

    def stop_after_8(n):
        steps.append(n)
        if len(steps) == 8:
            raise Interrupted

    with pytest.raises(Interrupted):
        model.estimate_log_z(seed=3, on_step=stop_after_8, state=state)
    assert state["step"] == 8
    more = []
    resumed = model.estimate_log_z(seed=3, state=state, on_step=more.append)
    assert state["step"] == 19 and len(more) == 19 - 8  # only the steps left, not a fresh start
    assert resumed == whole


def test_ais_replayed_step_by_step():
    """Salakhutdinov & Murray's AIS, replayed in NumPy with the same Bernoulli draws: chains start at the base-rate
    model, each intermediate distribution adds log p*_beta(v) - log p*_beta'(v) with
    log p*_beta(v) = (1 - beta) a.v + beta b.v + sum_j softplus(beta (c_j + (v W)_j)), then a Gibbs sweep at beta;
    log Z = log Z_base + log mean w, the spread log(mean -/+ 3 standard errors of w) (the std with n - 1)."""
    from genzoo.models.rbm import ais_log_partition

    W, b, c = (torch.from_numpy(a).float() for a in (np.random.default_rng(35).standard_normal((10, 4)) * 0.3,
                                                       np.random.default_rng(36).standard_normal(10) * 0.5,
                                                       np.random.default_rng(37).standard_normal(4) * 0.5))
    base = torch.linspace(-1.0, 1.0, 10)
    steps, state = [], {}
    got = ais_log_partition(W, b, c, base, n_betas=15, n_runs=8, generator=torch.Generator().manual_seed(38),
                            on_step=steps.append, state=state)
    g = torch.Generator().manual_seed(38)
    Wn, bn, cn, an = (t.double().numpy() for t in (W, b, c, base))
    betas = ais_betas(15).numpy()
    v = torch.bernoulli(torch.sigmoid(base).expand(8, -1), generator=g)
    log_w = np.zeros(8)
    for previous, beta in zip(betas[:-1], betas[1:]):
        vn = v.double().numpy()
        act = vn @ Wn + cn
        log_w += (beta - previous) * vn @ (bn - an) + (softplus(beta * act) - softplus(previous * act)).sum(1)
        h = torch.bernoulli(torch.sigmoid(torch.from_numpy(beta * act).float()), generator=g)
        p = sigmoid((1 - beta) * an + beta * (h.double().numpy() @ Wn.T + bn))
        v = torch.bernoulli(torch.from_numpy(p).float(), generator=g)
    log_z_base = softplus(an).sum() + 4 * np.log(2)
    w = np.exp(log_w - log_w.max())
    mean, se = w.mean(), w.std(ddof=1) / np.sqrt(8)
    assert mean > 3 * se  # a finite lower end
    want = {"log_z": log_z_base + np.log(np.exp(log_w).mean()),
            "log_z_low": log_z_base + np.log(mean - 3 * se) + log_w.max(),
            "log_z_high": log_z_base + np.log(mean + 3 * se) + log_w.max(), "log_z_base": log_z_base}
    assert set(got) == set(want)
    for key in want:
        assert got[key] == pytest.approx(want[key], rel=1e-6, abs=1e-6), key
    assert steps == [1] * 14
    assert state["step"] == 14 and state["log_w"].dtype == torch.float64  # weights summed in float64
    np.testing.assert_allclose(state["log_w"].numpy(), log_w, rtol=1e-6, atol=1e-6)
    assert exact_log_partition(W, b, c) == pytest.approx(got["log_z"], abs=0.5)  # and near the truth
    steps, state = [], {}  # by default, the paper's 14,500 distributions and 100 runs (a 3 x 2 RBM: 2 s)
    ais_log_partition(torch.zeros(3, 2), torch.zeros(3), torch.zeros(2), torch.zeros(3),
                      generator=torch.Generator().manual_seed(0), on_step=steps.append, state=state)
    assert len(steps) == 14499 and state["log_w"].shape == (100,)


def test_ais_reports_no_lower_end_when_the_weights_spread_past_three_standard_errors():
    from genzoo.models.rbm import ais_log_partition

    g = torch.Generator().manual_seed(39)
    W = torch.randn(10, 4, generator=g) * 3  # far from the base model: a few chains carry the weight
    got = ais_log_partition(W, torch.zeros(10), torch.zeros(4), torch.zeros(10), n_betas=10, n_runs=3, generator=g)
    assert got["log_z_low"] == -np.inf and got["log_z_low"] < got["log_z"] < got["log_z_high"]


def test_ais_has_a_lower_end_whenever_the_mean_weight_exceeds_three_standard_errors():
    """Two runs whose weights' mean is 3.5 standard errors: the interval's lower end is log(mean - 3 se), finite."""
    from genzoo.models.rbm import ais_log_partition

    W = torch.randn(10, 4, generator=torch.Generator().manual_seed(40)) * 0.5
    state = {}
    got = ais_log_partition(W, torch.zeros(10), torch.zeros(4), torch.zeros(10), n_betas=10, n_runs=2,
                            generator=torch.Generator().manual_seed(50), state=state)
    log_w = state["log_w"].numpy()
    w = np.exp(log_w - log_w.max())
    mean, se = w.mean(), w.std(ddof=1) / np.sqrt(2)
    assert 3 < mean / se < 4
    assert got["log_z_low"] == pytest.approx(got["log_z_base"] + np.log(mean - 3 * se) + log_w.max(), rel=1e-9)
