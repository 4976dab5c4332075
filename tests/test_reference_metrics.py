"""Each sample-quality figure where samples and real digits differ (a sampler that draws only ones, one that draws
noise), against values computed here from the evaluator's features with numpy and scipy: Fréchet distance by
scipy's matrix square root, precision and recall by brute-force k-NN balls, digit shares, entropy, confident share
and conditional accuracy by counting. A figure computed from the wrong tensors (the real side twice, the two sides
swapped, the real digits' classes) differs from these."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from scipy import linalg

from genzoo.evaluator import load_evaluator
from genzoo.metrics import model_sample_quality, sample_quality


@pytest.fixture(scope="module")
def evaluator():
    return load_evaluator("cpu")


@pytest.fixture(scope="module")
def real(embedded):
    return embedded.test_x[:400]


def only_ones(embedded, n=300):
    ones = embedded.train_x[embedded.train_y == 1]
    return ones[:n]


def noise(n=300):
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(0))


def hand_fid(a: np.ndarray, b: np.ndarray) -> float:
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    with warnings.catch_warnings():  # some evaluator features are 0 on every digit: singular, still exact enough
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        root = linalg.sqrtm(cov_a @ cov_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))


def hand_precision_recall(real_f: np.ndarray, fake_f: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Kynkäänniemi et al.: a point is inside a set's manifold when it lies within some member's distance to that
    member's k-th nearest other member."""
    def radii(f):
        d = np.sqrt(((f[:, None, :] - f[None, :, :]) ** 2).sum(-1))
        return np.sort(d, axis=1)[:, k]  # column 0 is the point itself

    r_real, r_fake = radii(real_f), radii(fake_f)
    d = np.sqrt(((fake_f[:, None, :] - real_f[None, :, :]) ** 2).sum(-1))  # (fake, real)
    precision = np.mean([(d[i] <= r_real).any() for i in range(len(fake_f))])
    recall = np.mean([(d[:, j] <= r_fake).any() for j in range(len(real_f))])
    return float(precision), float(recall)


def by_hand(evaluator, samples, real, labels=None) -> dict:
    fake_f, fake_pred = evaluator.features_and_predictions(samples)
    real_f, _ = evaluator.features_and_predictions(real)
    fake_np, real_np = fake_f.double().numpy(), real_f.double().numpy()
    counts = np.bincount(fake_pred.numpy(), minlength=10)
    shares = counts / counts.sum()
    entropy = -sum(p * math.log(p) for p in shares if p > 0)
    probabilities = evaluator.class_probabilities(fake_f).numpy()
    precision, recall = hand_precision_recall(real_np, fake_np)
    out = {"fid": hand_fid(fake_np, real_np), "precision": precision, "recall": recall,
           "class_coverage": shares.tolist(), "class_entropy": max(entropy, 0.0),
           "class_entropy_bits": max(entropy, 0.0) / math.log(2), "n_samples": len(samples), "n_real": len(real),
           "confident_share": float((probabilities.max(1) >= 0.9).mean())}
    if labels is not None:
        out["conditional_accuracy"] = float((fake_pred.numpy() == labels.numpy()).mean())
    return out


def compare(got: dict, expected: dict) -> None:
    assert set(expected) <= set(got), set(expected) - set(got)
    for key, value in expected.items():
        if key == "class_coverage":
            np.testing.assert_allclose(got[key], value, atol=1e-4, err_msg=key)
        elif key == "fid":
            assert got[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
        else:
            assert got[key] == pytest.approx(value, rel=1e-6, abs=1e-6), key


@pytest.mark.parametrize("which", ["ones", "noise"])
def test_sample_quality_of_samples_unlike_the_real_digits(embedded, evaluator, real, which):
    samples = only_ones(embedded) if which == "ones" else noise()
    labels = torch.full((len(samples),), 1) if which == "ones" else torch.arange(len(samples)) % 10
    got = sample_quality(samples, real, evaluator, labels=labels)
    expected = by_hand(evaluator, samples, real, labels)
    compare(got, expected)
    # the case is not degenerate: the figures are far from those of samples like the real digits
    if which == "ones":
        assert expected["class_coverage"][1] > 0.9 and expected["recall"] < 0.5 < expected["precision"]
        assert expected["conditional_accuracy"] > 0.9 and expected["confident_share"] > 0.8
    else:
        assert expected["precision"] < 0.2 and expected["fid"] > 10 * hand_fid(
            *(f.double().numpy() for f in (evaluator.features_and_predictions(real[:200])[0],
                                           evaluator.features_and_predictions(real[200:])[0])))


def test_precomputed_real_features_give_the_same_figures(embedded, evaluator, real):
    samples = only_ones(embedded)
    real_f, _ = evaluator.features_and_predictions(real)
    compare(sample_quality(samples, real[:2], evaluator, real_features=real_f), by_hand(evaluator, samples, real))


class OnlyOnes(torch.nn.Module):
    """A 'model' that draws only ones (from a fixed pool, in order, whatever the labels); records what it was asked."""

    conditional = False
    sample_options = ()

    def __init__(self, pool: torch.Tensor, conditional: bool = False):
        super().__init__()
        self.pool, self.conditional, self.asked, self.at = pool, conditional, [], 0
        self.w = torch.nn.Parameter(torch.zeros(1))

    @property
    def device(self):
        return torch.device("cpu")

    def sample(self, n, *, y=None, generator=None):
        self.asked.append(None if y is None else y.clone())
        out = self.pool[self.at:self.at + n]
        self.at += n
        return out


@pytest.mark.parametrize("conditional", [False, True])
def test_model_sample_quality_scores_the_models_own_samples(embedded, evaluator, real, conditional):
    pool = only_ones(embedded, 120)
    model = OnlyOnes(pool, conditional)
    got = model_sample_quality(model, real, n_samples=120, batch_size=50, evaluator=evaluator)
    labels = torch.arange(120) % 10 if conditional else None
    expected = by_hand(evaluator, pool, real, labels)
    for key in ("fid", "precision", "recall"):
        assert got[key]["value"] == pytest.approx(expected[key], rel=1e-4, abs=1e-6), key
        assert got[key]["n"] == 120 and got[key]["n_real"] == len(real)
    np.testing.assert_allclose(got["class_coverage"]["value"], expected["class_coverage"], atol=1e-4)
    assert got["class_coverage"]["entropy_nats"] == pytest.approx(expected["class_entropy"], abs=1e-6)
    assert got["class_entropy_bits"]["value"] == pytest.approx(expected["class_entropy_bits"], abs=1e-6)
    assert got["confident_share"]["value"] == pytest.approx(expected["confident_share"], abs=1e-6)
    assert [len(a) if a is not None else None for a in model.asked] == ([50, 50, 20] if conditional else [None] * 3)
    if conditional:  # asked for 0..9 in equal shares, in order; only about a tenth of the ones are "correct"
        torch.testing.assert_close(torch.cat(model.asked), labels)
        assert got["conditional_accuracy"]["value"] == pytest.approx(expected["conditional_accuracy"], abs=1e-6)
        assert expected["conditional_accuracy"] < 0.2
    else:
        assert "conditional_accuracy" not in got
