"""Evaluation against plain computations: a conditional model's NLL (given its labels and marginal over
them), the AIS spread beside the RBM's NLL, and each metric's unit conversion (bits/dim, PSNR, Fréchet)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch

import genzoo
from genzoo.data import fixed_binarization, load_data
from genzoo.evaluation.evaluate import (
    class_conditional_likelihood_metrics,
    evaluate_run,
    likelihood_metrics,
    subset_indices,
)
from genzoo.metrics import frechet_distance, frechet_distance_from_stats, gaussian_stats, psnr
from genzoo.models.base import CapabilityError
from genzoo.models.pixelcnn import PixelCNN
from genzoo.models.rbm import RBM, ais_log_partition

pytestmark = pytest.mark.usefixtures("one_thread")


def conditional_pixelcnn(size: int = 5, gated: bool = True) -> PixelCNN:
    torch.manual_seed(0)
    model = PixelCNN(image_size=size, channels=6, n_layers=1, head_channels=6, gated=gated, conditional=True).double()
    torch.nn.init.normal_(model.class_bias.weight, std=3.0)  # zero at initialisation: make the labels matter
    return model.eval()


def shuffled_digits(n: int = 40, size: int = 5):
    g = torch.Generator().manual_seed(1)
    x = torch.bernoulli(torch.full((n, 1, size, size), 0.4, dtype=torch.float64), generator=g)
    y = torch.randperm(n, generator=g) % 10  # every class, in no particular order (unlike the sorted test split)
    return x, y


# ---------------------------------------------------------------------------- defect 1: conditional NLL


def test_a_conditional_models_log_prob_needs_labels():
    model = conditional_pixelcnn()
    x, y = shuffled_digits(4)
    with pytest.raises(CapabilityError, match=r"pixelcnn: is class-conditional, log_prob gives log p\(x \| y\) "
                                              r"and needs the labels; pass them as log_prob\(x, y\)"):
        model.log_prob(x)
    with pytest.raises(CapabilityError, match="needs the labels"):
        model.loss(x)
    assert model.log_prob(x, y[:4]).shape == (4,)


@pytest.mark.parametrize("gated", [True, False])
def test_conditional_and_marginal_nll_on_shuffled_labels(gated):
    model = conditional_pixelcnn(gated=gated)
    x, y = shuffled_digits()
    train_y = torch.tensor([0] * 30 + [1] * 10 + [3] * 20 + list(range(10)) * 4)  # uneven: the prior matters
    with torch.no_grad():
        out = class_conditional_likelihood_metrics(model, x, y, train_y, batch=16)
        # conditional: the mean of -log p(x | true y), image by image
        by_image = torch.stack([model.log_prob(x[i : i + 1], y[i : i + 1])[0] for i in range(len(x))]).double()
        assert out["nll_nats_conditional"]["value"] == pytest.approx(float(-by_image.mean()), rel=1e-10)
        # the default labels (0..9 by position) are other labels on shuffled data, and score other numbers
        default = model.log_prob(x, model.default_labels(len(x))).double()
        assert (default - by_image).abs().max() > 0.5
        # marginal: -log sum_y p(y) p(x | y), the sum written out in NumPy
        counts = np.bincount(train_y.numpy(), minlength=10).astype(float)
        prior = counts / counts.sum()
        per_class = np.array([[model.log_prob(x[i : i + 1], torch.tensor([c]))[0].item() for c in range(10)]
                              for i in range(len(x))])  # (N, 10)
    marginal = []
    for row in per_class:
        terms = [math.log(p) + lp for p, lp in zip(prior, row) if p > 0]
        top = max(terms)
        marginal.append(top + math.log(sum(math.exp(t - top) for t in terms)))
    assert out["nll_nats"]["value"] == pytest.approx(-np.mean(marginal), rel=1e-10)
    # the marginal mixes the labels: never better than the best label, never worse than the true one's prior share
    assert out["nll_nats"]["value"] >= -np.mean(per_class.max(1)) - 1e-9
    assert "marginal" in out["nll_nats"]["method"] and "training" in out["nll_nats"]["method"]
    for key in ("nll_nats", "nll_nats_conditional"):
        bits = out[key.replace("nll_nats", "bits_per_dim")]["value"]
        assert bits == pytest.approx(out[key]["value"] / (784 * math.log(2)), rel=1e-12)
        assert out[key]["n"] == len(x)


def test_evaluate_run_reports_both_nlls_of_a_conditional_pixelcnn(tiny, tmp_path):
    run = genzoo.train("pixelcnn", data=tiny, out=tmp_path / "run", device="cpu", seed=0, progress=False,
                       train_overrides={"steps": 2, "epochs": 0, "batch_size": 8, "sample_every": 0, "test_every": 0,
                                        "n_grid": 4},
                       model_overrides={"channels": 4, "n_layers": 1, "head_channels": 4, "gated": True,
                                        "conditional": True})
    metrics = evaluate_run(run, device="cpu", seed=0, max_test=30, random_subset=True, n_samples=0)
    model = genzoo.load(run)
    test = load_data("embedded", verbose=False)
    idx = subset_indices(len(test.test_x), 30, 0, True)
    with torch.no_grad():
        log_p = model.log_prob(fixed_binarization(test.test_x)[idx], test.test_y[idx]).double()
    assert metrics["nll_nats_conditional"]["value"] == pytest.approx(float(-log_p.mean()), rel=1e-5)
    assert metrics["nll_nats"]["value"] > 0 and "bits_per_dim_conditional" in metrics


# ---------------------------------------------------------------------------- the RBM's AIS spread


def test_rbm_log_z_se_matches_the_spread_of_repeated_ais_estimates():
    torch.manual_seed(0)
    model = RBM(n_hidden=6, ais_betas=60, ais_runs=30, init_std=0.05)
    with torch.no_grad():  # a base-rate model near the RBM's visible marginals, as after training
        model.b.normal_(-1, 0.5)
        model.pixel_sum.copy_(torch.sigmoid(model.b).double() * 1000)
        model.pixel_count.fill_(1000)
    estimates, ses = [], []
    for seed in range(30):
        model.estimate_log_z(seed=seed)
        unc = model.log_z_uncertainty()
        estimates.append(unc["value"])
        ses.append(unc["se"])
        assert unc["low"] < unc["value"] < unc["high"]
    spread = float(np.std(estimates, ddof=1))
    assert 0 < spread and np.mean(ses) == pytest.approx(spread, rel=0.5)  # a stated se that is the real spread
    # the se read back from the stored interval is se(weights) / mean(weights), from the same run's interval
    with torch.no_grad():
        out = ais_log_partition(model.W, model.b, model.c, model.base_bias(), 60, 30, torch.Generator().manual_seed(3))
    model.estimate_log_z(seed=3)
    unc = model.log_z_uncertainty()
    assert unc["value"] == pytest.approx(out["log_z"]) and unc["high"] == pytest.approx(out["log_z_high"])
    assert unc["se"] == pytest.approx(math.expm1(out["log_z_high"] - out["log_z"]) / 3, rel=1e-4)


def test_evaluate_run_records_the_ais_spread_beside_the_rbm_nll(tiny, tmp_path):
    run = genzoo.train("rbm", data=tiny, out=tmp_path / "rbm", device="cpu", seed=0, progress=False,
                       train_overrides={"steps": 3, "epochs": 0, "batch_size": 16, "sample_every": 0, "n_grid": 4,
                                        "test_every": 0},
                       model_overrides={"n_hidden": 8, "ais_betas": 50, "ais_runs": 16, "gibbs_steps": 3,
                                        "persistent_chains": 16})
    metrics = evaluate_run(run, device="cpu", seed=0, max_test=20, n_samples=0)
    log_z = metrics["log_z"]
    assert log_z["se"] > 0 and log_z["low"] < log_z["value"] < log_z["high"]
    assert metrics["nll_nats"]["se_log_z"] == log_z["se"]
    assert math.isfinite(metrics["nll_nats"]["value"])


# ---------------------------------------------------------------------------- unit conversions


class _Kind:
    def __init__(self, binary: bool):
        self.binary_data, self.log_prob_kind = binary, "exact"


def test_bits_per_dim_of_binary_images_is_nats_over_784_ln2():
    log_p = torch.tensor([-80.0, -100.0, -90.0])
    out = likelihood_metrics(_Kind(binary=True), log_p)
    assert out["nll_nats"]["value"] == pytest.approx(90.0)
    assert out["bits_per_dim"]["value"] == pytest.approx(90.0 / 784 / 0.6931471805599453, rel=1e-12)
    assert out["nll_nats"]["se"] == pytest.approx(np.std([80, 100, 90], ddof=1) / math.sqrt(3))


def test_bits_per_dim_of_dequantized_8bit_images():
    """A density on [0, 1]^784 is 256^784 times one on the 8-bit grid's unit cells: add 784 ln 256 nats."""
    log_p = torch.tensor([1000.0, 1200.0])  # densities on [0, 1] can exceed 1
    out = likelihood_metrics(_Kind(binary=False), log_p)
    nats_on_grid = -1100.0 + 784 * math.log(256)
    assert out["bits_per_dim"]["value"] == pytest.approx(nats_on_grid / 784 / math.log(2), rel=1e-12)


def test_psnr_is_10_log10_of_one_over_mse():
    g = torch.Generator().manual_seed(0)
    ref = torch.rand(3, 1, 4, 4, generator=g)
    noisy = (ref + 0.1 * torch.randn(3, 1, 4, 4, generator=g)).clamp(0, 1)
    expected = [10 * math.log10(1.0 / float(((noisy[i] - ref[i]) ** 2).mean())) for i in range(3)]
    torch.testing.assert_close(psnr(noisy, ref), torch.tensor(expected), rtol=1e-5, atol=1e-5)


def test_frechet_distance_matches_scipy_sqrtm():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 5)) @ rng.normal(size=(5, 5))
    b = rng.normal(0.5, 1.0, size=(150, 5)) @ rng.normal(size=(5, 5))
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(cov_a @ cov_b).real
    expected = float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))
    assert frechet_distance(torch.tensor(a), torch.tensor(b)) == pytest.approx(expected, rel=1e-8)
    mu, cov = gaussian_stats(torch.tensor(a))
    np.testing.assert_allclose(cov.numpy(), cov_a, rtol=1e-10)
    np.testing.assert_allclose(mu.numpy(), mu_a, rtol=1e-10)
    assert frechet_distance_from_stats(mu, cov, mu, cov) == pytest.approx(0.0, abs=1e-8)
