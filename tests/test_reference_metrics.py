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

from genzoo.evaluation.evaluator import load_evaluator
from genzoo.evaluation.scoring import model_sample_quality, sample_quality
from genzoo.metrics import (
    class_coverage,
    conditional_accuracy,
    confident_share,
    coverage_entropy,
    frechet_distance,
    gaussian_stats,
    knn_radii,
    precision_recall,
    psnr,
)


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


# The figures' small functions on inputs chosen so a slip in a guard, a batch boundary or a constant shows;
# none needs the evaluator.

def test_psnr_is_ten_log10_of_one_over_each_images_mse():
    g = torch.Generator().manual_seed(1)
    reference = torch.rand(3, 1, 5, 7, generator=g)
    x = (reference + torch.tensor([0.01, 0.1, 0.3])[:, None, None, None] * torch.randn(3, 1, 5, 7, generator=g))
    got = psnr(x, reference)
    for i in range(3):
        diff = (x[i] - reference[i]).double().numpy().ravel()
        mse = float((diff ** 2).sum() / diff.size)
        assert float(got[i]) == pytest.approx(10 * math.log10(1 / mse), rel=1e-5)
    # an exact copy: the MSE floor of 1e-10 gives 100 dB, not infinity
    assert psnr(reference, reference).tolist() == pytest.approx([100.0] * 3, rel=1e-6)


@pytest.mark.parametrize("batch_size", [1, 4, 7, 2048])
def test_precision_recall_and_radii_across_batch_boundaries(batch_size):
    rng = np.random.default_rng(3)
    real_f = rng.normal(size=(23, 4))
    fake_f = rng.normal(loc=0.7, size=(17, 4))
    precision, recall = precision_recall(torch.tensor(real_f), torch.tensor(fake_f), k=3, batch_size=batch_size)
    hand = hand_precision_recall(real_f.astype(np.float32).astype(np.float64),
                                 fake_f.astype(np.float32).astype(np.float64), k=3)
    assert (precision, recall) == pytest.approx(hand, abs=1e-6)
    assert 0 < precision < 1 and 0 < recall < 1  # neither figure is trivially 0 or 1 on this case
    d = np.sqrt(((real_f[:, None] - real_f[None]) ** 2).sum(-1))
    np.testing.assert_allclose(knn_radii(torch.tensor(real_f), k=2, batch_size=batch_size).numpy(),
                               np.sort(d, axis=1)[:, 2], rtol=1e-5)


def test_precision_recall_and_radii_refuse_what_they_cannot_compute():
    with pytest.raises(ValueError, match=r"more than k=3 points.*got 3"):
        knn_radii(torch.zeros(3, 2), k=3)
    assert knn_radii(torch.tensor([[0.0], [1.0], [3.0], [6.0]]), k=3).tolist() == [6.0, 5.0, 3.0, 6.0]
    assert knn_radii(torch.tensor([[0.0], [1.0], [3.0], [6.0], [10.0]])).tolist() == [6.0, 5.0, 3.0, 5.0, 9.0]  # k=3
    with pytest.raises(ValueError, match=r"^feats must be \(N, D\) features with N >= 2, got shape \(5,\)$"):
        knn_radii(torch.zeros(5))
    for real_f, fake_f, name in ((torch.zeros(5), torch.zeros(5, 2), "real_feats"),
                                 (torch.zeros(5, 2), torch.zeros(1, 2), "fake_feats")):
        with pytest.raises(ValueError, match=rf"^{name} must be \(N, D\) features with N >= 2"):
            precision_recall(real_f, fake_f)
    line = torch.tensor([[0.0], [1.0], [3.0], [6.0], [10.0]])  # k=3 radii 6, 5, 3, 5, 9; k=4 radii 10, 9, 7, 6, 10
    assert precision_recall(line, line + 0.5) == pytest.approx((1.0, 1.0))
    # fake 20 lies in no real ball; reals 0, 1, 3 lie in no fake ball (k=4's wider balls would give 1.0, 1.0)
    assert precision_recall(line, line + 10) == pytest.approx((0.8, 0.4))
    # fake 19 lies exactly on real 10's ball (radius 9), real 10 exactly on fake 16's (radius 6): both count
    assert precision_recall(line, line + 16) == pytest.approx((0.6, 0.2))
    with pytest.raises(ValueError, match=r"^feats must be \(N, D\) features"):
        gaussian_stats(torch.zeros(4))
    for a, b, name in ((torch.zeros(4), torch.zeros(4, 2), "feats_a"),
                       (torch.zeros(4, 2), torch.zeros(1, 2), "feats_b")):
        with pytest.raises(ValueError, match=rf"^{name} must be \(N, D\) features"):
            frechet_distance(a, b)
    with pytest.raises(ValueError, match=r"feature sizes differ: \(5, 2\) vs \(5, 3\)"):
        precision_recall(torch.zeros(5, 2), torch.zeros(5, 3))
    with pytest.raises(ValueError, match=r"feature sizes differ: \(5, 2\) vs \(6, 3\)"):
        frechet_distance(torch.zeros(5, 2), torch.zeros(6, 3))


def test_the_digit_share_figures_by_counting():
    labels = [3, 3, 0, 9, 3, 1]
    assert class_coverage(torch.tensor(labels)) == pytest.approx([labels.count(c) / 6 for c in range(10)])
    assert class_coverage(torch.tensor([2]), n_classes=3) == [0.0, 0.0, 1.0]
    for bad in ([0, 10], [-1, 2]):
        with pytest.raises(ValueError, match=rf"must lie in 0\.\.9, got {bad[0] if bad[0] < 0 else bad[1]}$"):
            class_coverage(torch.tensor(bad))
    assert class_coverage(torch.tensor([0, 1, 1])) == pytest.approx([1 / 3, 2 / 3] + [0.0] * 8)  # all 10 shares
    with pytest.raises(ValueError, match="^class_coverage needs at least one label, got none$"):
        class_coverage(torch.tensor([], dtype=torch.long))
    shares = [0.5, 0.25, 0.25, 0.0]
    assert coverage_entropy(shares) == pytest.approx(-(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25)))
    assert coverage_entropy([1.0, 0.0]) == 0.0 and str(coverage_entropy([1.0])) == "0.0"  # not "-0.0"
    probabilities = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.05, 0.95], [0.5, 0.5]])
    assert confident_share(probabilities) == pytest.approx(2 / 4)  # exactly 0.9 counts
    assert confident_share(probabilities, threshold=0.8) == pytest.approx(3 / 4)
    assert confident_share(probabilities[:1]) == 1.0
    for bad in (torch.zeros(0, 10), torch.zeros(10)):
        with pytest.raises(ValueError, match=r"probabilities must be \(N, n_classes\) with N >= 1, got shape"):
            confident_share(bad)
    assert conditional_accuracy(torch.tensor([4]), torch.tensor([4])) == 1.0
    assert conditional_accuracy(torch.tensor([4, 1, 2]), torch.tensor([4, 1, 7])) == pytest.approx(2 / 3)
    for pred, requested in (([1, 2], [1]), ([], [])):
        with pytest.raises(ValueError, match=r"equal-length non-empty label vectors, got \(\d,\) and \(\d,\)"):
            conditional_accuracy(torch.tensor(pred), torch.tensor(requested))


class StandIn(torch.nn.Module):
    """An evaluator small enough for many runs: features a fixed projection of the pixels, classes a fixed linear
    read-out of them (probabilities sharp enough that some samples pass the 0.9 bar and some do not)."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(7)
        self.project = torch.randn(784, 6, generator=g) / 28
        self.read_out = 3 * torch.randn(6, 10, generator=g)

    def features_and_predictions(self, images):
        feats = images.flatten(1) @ self.project
        return feats, self.class_probabilities(feats).argmax(1)

    def class_probabilities(self, feats):
        return torch.softmax(feats @ self.read_out, dim=1)


def test_sample_quality_with_a_stand_in_evaluator_and_its_defaults():
    g = torch.Generator().manual_seed(5)
    real = torch.rand(70, 1, 28, 28, generator=g)
    samples = torch.rand(50, 1, 28, 28, generator=g) ** 3  # darker than the real digits: every figure differs
    labels = torch.arange(50) % 10
    evaluator = StandIn()
    got = sample_quality(samples, real, evaluator, labels=labels)  # k left at its default, 3
    expected = by_hand(evaluator, samples, real, labels)
    compare(got, expected)
    assert got["k"] == 3 and 0 < expected["confident_share"] < 1 and 0 < expected["recall"] < 1
    real_f, _ = evaluator.features_and_predictions(real)
    compare(sample_quality(samples, real[:1], evaluator, labels=labels, real_features=real_f), expected)
    odd = sample_quality(samples[:47], real, evaluator)  # shares k/47: rounding to 4 places shows
    assert odd["class_coverage"] == [round(c, 4) for c in by_hand(evaluator, samples[:47], real)["class_coverage"]]
    fake_f, _ = evaluator.features_and_predictions(samples)
    wider = sample_quality(samples, real, evaluator, k=5)
    assert wider["k"] == 5 and (wider["precision"], wider["recall"]) == pytest.approx(
        hand_precision_recall(real_f.double().numpy(), fake_f.double().numpy(), k=5), abs=1e-6)
    assert wider["recall"] != expected["recall"]
    for images, name in ((samples, "samples"), (real, "real images")):
        bad = images.clone()
        bad[0, 0, 0, 0] = float("nan")
        with pytest.raises(ValueError, match=f"^{name} contain NaN"):
            sample_quality(bad, real, evaluator) if name == "samples" else sample_quality(samples, bad, evaluator)
