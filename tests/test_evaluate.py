"""`genzoo evaluate`: test subsets, standard errors, and the whole test set's NLL from a random subset."""

from __future__ import annotations

import json
import math
import time

import pytest
import torch

import genzoo
from genzoo.cli import main
from genzoo.data import fixed_binarization, load_data
from genzoo.evaluation.evaluate import (
    evaluate_run,
    iwae_gap_metrics,
    mean_and_se,
    mean_elbo,
    per_image_log_prob,
    subset_indices,
)


def test_subset_indices_first_random_and_all():
    assert torch.equal(subset_indices(10, 0, seed=0, random_subset=True), torch.arange(10))  # 0: all
    assert torch.equal(subset_indices(10, 4, seed=0, random_subset=False), torch.arange(4))
    assert torch.equal(subset_indices(10, 50, seed=0, random_subset=True), torch.arange(10))  # more than there are
    drawn = subset_indices(10_000, 300, seed=3, random_subset=True)
    assert len(drawn.unique()) == 300 and torch.equal(drawn, drawn.sort().values)
    assert torch.equal(drawn, subset_indices(10_000, 300, seed=3, random_subset=True))  # seeded
    assert not torch.equal(drawn, subset_indices(10_000, 300, seed=4, random_subset=True))
    assert drawn.float().mean() > 3_000 and drawn.max() > 9_000  # from the whole set, not its start


def test_mean_and_se():
    values = torch.tensor([1.0, 2.0, 3.0, 6.0])
    out = mean_and_se(values)
    assert out["value"] == 3.0
    assert out["se"] == pytest.approx(math.sqrt(((4 + 1 + 0 + 9) / 3) / 4))
    assert mean_and_se(torch.tensor([2.0]))["se"] is None


def test_whole_set_estimate_is_unbiased_and_its_se_is_its_spread():
    """Over many random subsets, the difference estimator centres on the whole set's NLL, and the
    standard error it states matches the spread of its estimates (with the finite-population factor)."""
    g = torch.Generator().manual_seed(0)
    n_total, n = 2_000, 800  # a large share, so that the finite-population factor matters (sqrt(0.6))
    elbo_all = -90 - 15 * torch.rand(n_total, generator=g, dtype=torch.float64)  # varies a lot
    gap_all = 4 + 0.1 * (elbo_all + 90) + torch.randn(n_total, generator=g, dtype=torch.float64)  # varies little
    log_p_all = elbo_all + gap_all
    truth = float(-log_p_all.mean())
    estimates, ses = [], []
    for seed in range(400):
        idx = subset_indices(n_total, n, seed=seed, random_subset=True)
        out = iwae_gap_metrics(elbo_all[idx], log_p_all[idx], elbo_all)["nll_nats_whole_test"]
        estimates.append(out["value"])
        ses.append(out["se"])
        assert out["n"] == n_total and out["kind"] == "estimate"
    estimates = torch.tensor(estimates, dtype=torch.float64)
    spread, se = float(estimates.std()), float(torch.tensor(ses).mean())
    assert abs(float(estimates.mean()) - truth) < 4 * spread / math.sqrt(len(estimates))
    assert se == pytest.approx(spread, rel=0.1)
    # the NLL's own standard error over the subset is many times wider: what the difference estimator saves
    assert mean_and_se(-log_p_all[idx])["se"] > 3 * se
    # without the whole set's ELBO, or scoring the whole set, there is only the gap
    assert set(iwae_gap_metrics(elbo_all[idx], log_p_all[idx])) == {"iwae_gap_nats"}
    assert set(iwae_gap_metrics(elbo_all, log_p_all, elbo_all)) == {"iwae_gap_nats"}


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    return genzoo.train("vae", data="embedded", out=tmp_path_factory.mktemp("eval") / "vae", device="cpu", seed=0,
                        progress=False, model_overrides={"arch": "mlp", "hidden": 200, "latent_dim": 8},
                        train_overrides={"epochs": 6, "batch_size": 64, "lr": 3e-3, "n_grid": 16, "test_every": 0})


def test_random_subset_estimates_the_whole_sets_iwae_nll(vae_run):
    """On the 500 embedded test digits: the estimate from a random 150 lands within its error of the
    NLL measured on all 500."""
    whole = evaluate_run(vae_run, device="cpu", seed=0, iwae_k=20, n_samples=0)
    assert whole["nll_nats"]["n"] == 500 and whole["nll_nats"]["k"] == 20 and "nll_nats_whole_test" not in whole
    assert whole["iwae_gap_nats"]["value"] > 0 and whole["nll_nats"]["se"] > 0
    sub = evaluate_run(vae_run, device="cpu", seed=1, max_test=150, random_subset=True, iwae_k=20, n_samples=0)
    assert sub["nll_nats"]["n"] == sub["elbo_nats"]["n"] == 150
    estimate = sub["nll_nats_whole_test"]
    assert estimate["n"] == 500 and 0 < estimate["se"] < sub["nll_nats"]["se"] / 3
    # both sides are random (IWAE draws, the subset): allow the estimate's error and the measurement's
    assert abs(estimate["value"] - whole["nll_nats"]["value"]) < 4 * estimate["se"] + 0.3
    # the subset's evaluation is kept beside the whole set's; metrics.json shows the more complete (all 500)
    kept = [json.loads(f.read_text()) for f in sorted((vae_run / "evaluations").glob("*.json"))]
    assert [e["nll_nats_whole_test"] for e in kept if "nll_nats_whole_test" in e] == [estimate]
    assert json.loads((vae_run / "metrics.json").read_text())["nll_nats"]["n"] == 500


def test_first_n_is_the_start_of_the_whole_sets_binarization(vae_run):
    """--max-test N without --random-subset scores the first N digits, the same draws as in the whole set."""
    first = evaluate_run(vae_run, device="cpu", seed=0, max_test=40, iwae_k=20, n_samples=0)
    model = genzoo.load(vae_run)
    binary = fixed_binarization(load_data("embedded", verbose=False).test_x)[:40]
    torch.manual_seed(0)
    elbo = model.elbo(binary)
    log_p = per_image_log_prob(model, binary, k=20)
    assert first["elbo_nats"]["value"] == pytest.approx(float(elbo.double().mean()), abs=1e-9)
    assert first["nll_nats"]["value"] == pytest.approx(float(-log_p.double().mean()), abs=1e-9)
    gap = log_p.double() - mean_elbo(model, binary, seed=0)
    assert first["iwae_gap_nats"]["value"] == pytest.approx(float(gap.mean()), abs=1e-9)
    assert "nll_nats_whole_test" not in first


def test_random_subset_without_max_test_is_an_error(vae_run, capsys):
    assert main(["evaluate", str(vae_run), "--random-subset", "--samples", "0", "--device", "cpu"]) == 2
    assert "give max_test too (e.g. genzoo evaluate RUN --max-test 300 --random-subset)" in capsys.readouterr().err


@pytest.fixture(scope="module")
def gmm_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("eval") / "gmm"
    assert main(["train", "gmm", "--data", "embedded", "--device", "cpu", "--set", "n_components=2",
                 "--set", "pca_dim=8", "--set", "max_iter=3", "--out", str(run)]) == 0
    return run


def test_sample_quality_compares_with_every_test_digit_whatever_max_test(gmm_run, capsys):
    """The issue's `evaluate runs/gmm --max-test 2 --samples 50`: the likelihood pass takes 2 digits, the
    sample-quality reference all 500 of the embedded test set; fewer samples than reported figures are said."""
    assert main(["evaluate", str(gmm_run), "--max-test", "2", "--samples", "50", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    metrics = json.loads((gmm_run / "metrics.json").read_text())
    assert metrics["nll_nats"]["n"] == 2 and metrics["nll_nats"]["likelihood_data"] == "dequantized"
    assert metrics["fid"]["n"] == 50 and metrics["fid"]["n_real"] == metrics["precision"]["n_real"] == 500
    assert "from 50 samples, fewer than the 10,000 of the reported figures" in metrics["precision"]["note"]
    assert "from 50 samples, fewer than the 10,000" in out
    assert main(["evaluate", str(gmm_run), "--max-test", "2", "--samples", "3", "--device", "cpu"]) == 2
    assert ("--samples 3: precision and recall compare each sample with its 3 nearest neighbours, so they need "
            "at least 4 samples; give --samples 4 or more") in capsys.readouterr().err


def test_the_rbm_ais_cost_is_a_knob_stated_beside_the_number(tiny, tmp_path, capsys):
    from genzoo import commands

    run = genzoo.train("rbm", data=tiny, out=tmp_path / "rbm", device="cpu", progress=False,
                       model_overrides={"n_hidden": 16, "persistent_chains": 16, "gibbs_steps": 5, "ais_betas": 20,
                                        "ais_runs": 4},
                       train_overrides={"steps": 2, "epochs": 0, "batch_size": 32, "sample_every": 0})
    text = commands.evaluate(run, device="cpu", max_test=20, n_samples=0, ais_betas=30, ais_runs=3)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["nll_nats"]["ais_betas"] == metrics["log_z"]["ais_betas"] == 30
    assert metrics["nll_nats"]["ais_runs"] == metrics["log_z"]["ais_runs"] == 3
    assert (run / "evaluations" / "test20_samples0_seed0_ais-betas30-runs3.json").exists()
    assert "(AIS: 30 betas, 3 runs; --ais-betas/--ais-runs)" in text
    with pytest.raises(genzoo.config.ConfigError, match=r"--ais-betas 5: AIS needs at least 10"):
        commands.evaluate(run, device="cpu", max_test=20, n_samples=0, ais_betas=5)


def test_a_long_iwae_pass_says_its_time_and_how_to_shorten_it(monkeypatch, capsys):
    from genzoo.evaluation import evaluate

    class Slow:
        name = "vae"

        def log_prob(self, x, k):
            time.sleep(0.01)
            return torch.zeros(len(x))

    monkeypatch.setattr(evaluate, "SAY_ESTIMATE_ABOVE", 0.0)
    monkeypatch.setattr(evaluate, "DECODED_PER_CALL", 500)  # 10 images a call with K = 50
    per_image_log_prob(Slow(), torch.zeros(40, 1, 28, 28), k=50)
    err = capsys.readouterr().err
    assert "genzoo evaluate: vae: IWAE log p(x) with K=50 importance samples on 40 test digits: about " in err
    assert "Shorter: --iwae-k 5 (a looser estimate), or --max-test 1000 --random-subset" in err
    monkeypatch.setattr(evaluate, "SAY_ESTIMATE_ABOVE", 3600.0)
    per_image_log_prob(Slow(), torch.zeros(40, 1, 28, 28), k=50)
    assert "IWAE" not in capsys.readouterr().err  # a short pass says nothing


def test_a_model_that_asks_for_few_images_per_call_gets_them_and_the_same_log_p():
    """Pixel models ask for 16 test images per log_prob call (their cost per image grows with the batch on a
    CPU); every image is scored once, in order."""
    from genzoo.models.autoregressive import PixelModel

    class Counting:
        name = "pixelcnn"
        log_prob_batch = PixelModel.log_prob_batch

        def __init__(self):
            self.calls = []

        def log_prob(self, x):
            self.calls.append(len(x))
            return -x.flatten(1).sum(1)

    x = torch.rand(40, 1, 28, 28)
    model = Counting()
    log_p = per_image_log_prob(model, x)
    assert PixelModel.log_prob_batch == 16 and model.calls == [16, 16, 8]
    assert torch.equal(log_p, -x.flatten(1).sum(1))
    Counting.log_prob_batch = None  # a model that does not ask: the evaluation's own batches
    model = Counting()
    per_image_log_prob(model, x, batch=25)
    assert model.calls == [25, 15]
