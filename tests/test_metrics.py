"""Metrics against direct NumPy/SciPy computations and point sets with known answers."""

import numpy as np
import pytest
import scipy.linalg
import torch

from genzoo.evaluation.scoring import sample_quality
from genzoo.metrics import (
    bits_per_dim,
    class_coverage,
    conditional_accuracy,
    frechet_distance,
    knn_radii,
    precision_recall,
)


def scipy_frechet(a: np.ndarray, b: np.ndarray) -> float:
    """The textbook FID formula with scipy's general matrix square root."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    covmean = scipy.linalg.sqrtm(s_a @ s_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a + s_b - 2 * covmean))


@pytest.mark.parametrize("dim", [1, 5, 32])
def test_frechet_distance_matches_scipy(dim):
    rng = np.random.default_rng(dim)
    a = rng.normal(size=(400, dim)) @ rng.normal(size=(dim, dim))
    b = rng.normal(size=(300, dim)) @ rng.normal(size=(dim, dim)) + 0.7
    ours = frechet_distance(torch.from_numpy(a).float(), torch.from_numpy(b).float())
    ref = scipy_frechet(a.astype(np.float32).astype(np.float64), b.astype(np.float32).astype(np.float64))
    assert ours == pytest.approx(ref, rel=1e-6, abs=1e-8)


def test_frechet_distance_closed_form_and_identity():
    # Two isotropic Gaussians N(0, I) and N(m, 4 I): distance = |m|^2 + D (1 + 4 - 2*2) = |m|^2 + D.
    gen = torch.Generator().manual_seed(0)
    d, n = 4, 200_000
    a = torch.randn(n, d, generator=gen, dtype=torch.float64)
    b = 2 * torch.randn(n, d, generator=gen, dtype=torch.float64) + torch.tensor(
        [1.0, 2.0, 0.0, 0.0], dtype=torch.float64
    )
    assert frechet_distance(a, b) == pytest.approx(5.0 + d, rel=0.02)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_rejects_mismatched_features():
    with pytest.raises(ValueError, match=r"feature sizes differ: \(10, 3\) vs \(10, 4\)"):
        frechet_distance(torch.zeros(10, 3), torch.zeros(10, 4))


def brute_force_precision_recall(real: np.ndarray, fake: np.ndarray, k: int) -> tuple[float, float]:
    def radii(x):
        d = np.linalg.norm(x[:, None] - x[None], axis=-1)
        return np.sort(d, axis=1)[:, k]  # column 0 is the point itself

    def inside(manifold, r, q):
        d = np.linalg.norm(q[:, None] - manifold[None], axis=-1)
        return float((d <= r[None]).any(1).mean())

    return inside(real, radii(real), fake), inside(fake, radii(fake), real)


def test_precision_recall_matches_brute_force():
    rng = np.random.default_rng(1)
    real = rng.normal(size=(150, 6))
    fake = rng.normal(size=(120, 6)) * 1.5 + 0.5
    ours = precision_recall(torch.from_numpy(real).float(), torch.from_numpy(fake).float(), k=3, batch_size=37)
    ref = brute_force_precision_recall(real.astype(np.float32).astype(np.float64),
                                       fake.astype(np.float32).astype(np.float64), 3)
    assert ours == pytest.approx(ref)
    assert 0 < ours[0] < 1 and 0 < ours[1] < 1


def test_precision_recall_known_answers():
    # Real points on a unit-spaced line 0..9: k=3 radii are 3 at both ends and 2 inside.
    real = torch.arange(10.0)[:, None].repeat(1, 2) * torch.tensor([1.0, 0.0])
    assert knn_radii(real, k=3).tolist() == [3, 2, 2, 2, 2, 2, 2, 2, 2, 3]
    # Fake: 4 points near the line (inside), 6 far away (outside): precision 0.4.
    # The fake set is two tight clusters far from most real points; its radii are
    # small, so only the real points within them count for recall.
    fake = torch.tensor([[0.5, 0.0], [0.5, 0.1], [0.6, 0.0], [0.4, 0.1],
                         [50.0, 0.0], [50.1, 0.0], [50.0, 0.1], [50.1, 0.1], [50.2, 0.0], [50.0, 0.2]])
    precision, recall = precision_recall(real, fake, k=3)
    assert precision == pytest.approx(0.4)
    # Fake radii near x=0.5 are ~0.1-0.14: real points 0 and 1 are 0.4-0.5 away, outside.
    assert recall == 0.0
    # Identical sets: everything is covered.
    assert precision_recall(real, real, k=3) == (1.0, 1.0)
    # A dense fake cloud covering the whole line gives recall 1.
    dense = torch.stack([torch.linspace(-1, 10, 200), torch.zeros(200)], 1)
    assert precision_recall(real, dense, k=3)[1] == 1.0


def test_class_coverage_and_conditional_accuracy():
    pred = torch.tensor([0, 0, 1, 9, 9, 9, 3, 3])
    cov = class_coverage(pred)
    assert cov == pytest.approx([2 / 8, 1 / 8, 0, 2 / 8, 0, 0, 0, 0, 0, 3 / 8])
    assert sum(cov) == pytest.approx(1.0)
    assert conditional_accuracy(pred, torch.tensor([0, 1, 1, 9, 9, 2, 3, 4])) == pytest.approx(5 / 8)
    with pytest.raises(ValueError, match=r"predicted labels must lie in 0..9, got 12"):
        class_coverage(torch.tensor([1, 12]))


class FakeEvaluator:
    """Features = mean intensity of four quadrants; label = index of the brightest quadrant."""

    def features_and_predictions(self, x):
        q = x[:, 0].reshape(len(x), 2, 14, 2, 14).mean((2, 4)).reshape(len(x), 4)  # (N, 4)
        return q, q.argmax(1)


def test_sample_quality_on_fake_evaluator():
    gen = torch.Generator().manual_seed(0)
    real = torch.rand(300, 1, 28, 28, generator=gen)
    same = torch.rand(300, 1, 28, 28, generator=gen)
    result = sample_quality(same, real, FakeEvaluator(), labels=FakeEvaluator().features_and_predictions(same)[1])
    assert result["conditional_accuracy"] == 1.0
    assert result["n_samples"] == 300 and result["n_real"] == 300
    bad = torch.zeros(300, 1, 28, 28)
    bad[:, :, :14, :14] = 1.0
    worse = sample_quality(bad + 0 * torch.rand(300, 1, 28, 28), real, FakeEvaluator())
    assert worse["fid"] > 100 * result["fid"]
    assert worse["class_coverage"][0] == 1.0
    assert worse["precision"] == 0.0
    assert worse["class_entropy_bits"] == 0.0  # one class
    shares = torch.tensor(result["class_coverage"], dtype=torch.float64)  # the entropy in bits from its definition
    expected_bits = float(-(shares[shares > 0] * shares[shares > 0].log2()).sum())
    assert result["class_entropy_bits"] == pytest.approx(expected_bits, abs=1e-3) and expected_bits > 0.5
    with pytest.raises(ValueError, match=r"samples must lie in \[0, 1\], got range \[-1, 1\]"):
        sample_quality(bad * 2 - 1, real, FakeEvaluator())


def test_real_features_are_cached_by_content(tmp_path, monkeypatch):
    from genzoo.evaluation import scoring

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(scoring, "_REAL_FEATURES", {})
    calls = []

    class Counting(FakeEvaluator):
        def features_and_predictions(self, x):
            calls.append(len(x))
            return super().features_and_predictions(x)

    real = torch.rand(50, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    first = scoring.real_features(Counting(), real)
    assert calls == [50] and len(list((tmp_path / "genzoo" / "features").glob("v1-*.safetensors"))) == 1
    assert scoring.real_features(Counting(), real.clone()) is first and calls == [50]  # same content: memory
    monkeypatch.setattr(scoring, "_REAL_FEATURES", {})
    assert torch.equal(scoring.real_features(Counting(), real), first) and calls == [50]  # from disk
    scoring.real_features(Counting(), real[:40])  # other images: computed
    assert calls == [50, 40]


def test_bits_per_dim_of_images_with_known_code_lengths():
    # 784 fair coin flips: 784 ln 2 nats, one bit a pixel; 10 of them at p = 1/4: 2 bits a pixel.
    assert bits_per_dim(784 * np.log(2), dequantized=False) == pytest.approx(1.0)
    assert bits_per_dim(10 * np.log(4), dequantized=False, n_dims=10) == pytest.approx(2.0)
    # The uniform density on [0, 1]^784 (log p = 0) is the uniform law over 256 levels: 8 bits a pixel;
    # a density 2^784 times higher saves one bit a pixel.
    assert bits_per_dim(0.0, dequantized=True) == pytest.approx(8.0)
    assert bits_per_dim(-784 * np.log(2), dequantized=True) == pytest.approx(7.0)
    nll = torch.tensor([784 * float(np.log(2)), 0.0])
    torch.testing.assert_close(bits_per_dim(nll, dequantized=False), torch.tensor([1.0, 0.0]))
