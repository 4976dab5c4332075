"""The gmm model's density and sampler against the Gaussians they stand for, written out with NumPy and SciPy.

A mixture density over D pixels, optionally in a d-dimensional PCA subspace with orthonormal rows C (d, D) and
mean m: x = m + C^T z + r, z from the mixture, r an isotropic Gaussian of variance s2 in the complement, so that
component k is N(m + C^T mu_k, C^T Sigma_k C + s2 (I - C^T C)) in pixel space. The precisions are stored as
scikit-learn does: P with P P^T = Sigma^-1 (upper triangular for full and tied covariances; 1 / standard
deviation for diagonal and spherical ones). A draw is mu_k + P_k^-T e with e standard normal. Pixels are
dequantized as (round(255 x) + u) / 256, u ~ U[0, 1).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from genzoo.models.gmm import GMM, MixtureDensity, dequantize

pytestmark = pytest.mark.usefixtures("one_thread")

D, K = 6, 3


def random_covariance(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.standard_normal((d, d))
    return a @ a.T / d + 0.3 * np.eye(d)


def hand_density(covariance_type: str, pca_dim: int, seed: int = 0) -> tuple[MixtureDensity, dict]:
    """A mixture with every buffer set by hand, and the pixel-space Gaussians it should be."""
    rng = np.random.default_rng(seed)
    d = pca_dim or D
    weights = np.array([0.5, 0.3, 0.2])
    means = rng.standard_normal((K, d))
    if covariance_type == "full":
        covs = [random_covariance(rng, d) for _ in range(K)]
        stored = np.stack([np.linalg.inv(np.linalg.cholesky(c)).T for c in covs])
    elif covariance_type == "tied":
        covs = [random_covariance(rng, d)] * K
        stored = np.linalg.inv(np.linalg.cholesky(covs[0])).T
    elif covariance_type == "diag":
        variances = rng.uniform(0.3, 2.0, (K, d))
        covs = [np.diag(v) for v in variances]
        stored = 1 / np.sqrt(variances)
    else:
        variances = np.array([0.4, 1.0, 2.5])
        covs = [v * np.eye(d) for v in variances]
        stored = 1 / np.sqrt(variances)
    density = MixtureDensity(K, covariance_type, pca_dim, n_features=D)
    density.weights.copy_(torch.from_numpy(weights))
    density.means.copy_(torch.from_numpy(means))
    density.precisions_cholesky.copy_(torch.from_numpy(stored))
    C, m, s2 = np.eye(D), np.zeros(D), 0.0
    if pca_dim:
        C = np.linalg.qr(rng.standard_normal((D, pca_dim)))[0].T  # (d, D) orthonormal rows
        m, s2 = rng.standard_normal(D), 0.7
        density.pca_components.copy_(torch.from_numpy(C))
        density.pca_mean.copy_(torch.from_numpy(m))
        density.pca_noise_var.fill_(s2)
    pixel = [(m + C.T @ mu, C.T @ cov @ C + s2 * (np.eye(D) - C.T @ C)) for mu, cov in zip(means, covs)]
    return density, {"weights": weights, "means": means, "stored": stored, "C": C, "m": m, "pixel": pixel}


CASES = [(t, p) for t in ("full", "tied", "diag", "spherical") for p in (0, 2)]


@pytest.mark.parametrize("covariance_type, pca_dim", CASES)
def test_component_log_prob_is_the_weighted_pixel_space_gaussian(covariance_type, pca_dim):
    density, ref = hand_density(covariance_type, pca_dim)
    X = np.random.default_rng(1).standard_normal((7, D)) * 1.5
    want = np.stack([np.log(w) + multivariate_normal(mean, cov).logpdf(X)
                     for w, (mean, cov) in zip(ref["weights"], ref["pixel"])], 1)
    got = density.component_log_prob(torch.from_numpy(X))
    assert got.shape == (7, K) and got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(density.log_prob(torch.from_numpy(X)).numpy(), logsumexp(want, 1), rtol=1e-9)


def plain_draws(ref: dict, covariance_type: str, labels: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """mu_k + P_k^-T e in the mixture's space, then back to pixels: m + C^T z."""
    stored = ref["stored"]
    rows = []
    for k, e in zip(labels, noise):
        if covariance_type in ("full", "tied"):
            P = stored[k] if covariance_type == "full" else stored
            offset = np.linalg.solve(P.T, e)
        else:
            offset = e / stored[k]
        rows.append(ref["means"][k] + offset)
    return ref["m"] + np.stack(rows) @ ref["C"]


@pytest.mark.parametrize("covariance_type, pca_dim", CASES)
def test_a_draw_picks_a_component_by_weight_then_adds_its_scaled_noise(covariance_type, pca_dim):
    density, ref = hand_density(covariance_type, pca_dim)
    got = density.sample(40, torch.Generator().manual_seed(2))
    g = torch.Generator().manual_seed(2)
    labels = torch.multinomial(torch.tensor(ref["weights"], dtype=torch.float32), 40, replacement=True, generator=g)
    noise = torch.randn(40, pca_dim or D, generator=g, dtype=torch.float64)
    assert len(set(labels.tolist())) == K
    assert got.shape == (40, D) and got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), plain_draws(ref, covariance_type, labels.numpy(), noise.numpy()),
                               rtol=1e-9, atol=1e-9)


def test_a_draw_from_one_component_draws_only_its_noise_and_no_generator_means_seed_0():
    density, ref = hand_density("full", 2)
    got = density.sample(5, torch.Generator().manual_seed(3), component=1)
    noise = torch.randn(5, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    np.testing.assert_allclose(got.numpy(), plain_draws(ref, "full", np.full(5, 1), noise.numpy()), rtol=1e-9)
    assert torch.equal(density.sample(9, None), density.sample(9, torch.Generator().manual_seed(0)))


def test_dequantize_adds_uniform_noise_to_the_8_bit_level():
    levels = torch.tensor([0, 1, 17, 128, 254, 255], dtype=torch.float32) / 255
    x = torch.cat([levels, levels + 0.3 / 255]).clamp(0, 1).reshape(2, 1, 2, 3)  # off-grid pixels round back
    got = dequantize(x, torch.Generator().manual_seed(4))
    u = torch.rand(x.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64).numpy()
    k = np.concatenate([[0, 1, 17, 128, 254, 255], [0, 1, 17, 128, 254, 255]]).reshape(2, 1, 2, 3)
    assert got.dtype == torch.float64 and got.shape == x.shape
    np.testing.assert_array_equal(got.numpy(), (k + u) / 256)
    assert float(got.max()) < 1 and float(got.min()) >= 0
    assert torch.equal(dequantize(x), dequantize(x, torch.Generator().manual_seed(0)))


def test_the_gmm_scores_dequantized_pixels_and_draws_clipped_images():
    """log p(x) of the dequantized 784 pixels (noise seeded 0) under a two-component diagonal mixture."""
    model = GMM(n_components=2, covariance_type="diag")
    rng = np.random.default_rng(5)
    means, variances = rng.uniform(0, 1, (2, 784)), rng.uniform(0.05, 0.2, (2, 784))
    model.density.weights.copy_(torch.tensor([0.25, 0.75], dtype=torch.float64))
    model.density.means.copy_(torch.from_numpy(means))
    model.density.precisions_cholesky.copy_(torch.from_numpy(1 / np.sqrt(variances)))
    x = torch.from_numpy(rng.integers(0, 256, (3, 1, 28, 28)) / 255).float()
    u = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0), dtype=torch.float64).numpy()
    X = ((np.round(x.double().numpy() * 255) + u) / 256).reshape(3, 784)
    per = np.stack([np.log(w) - 0.5 * (np.log(2 * np.pi * v) + (X - mu) ** 2 / v).sum(1)
                    for w, mu, v in zip((0.25, 0.75), means, variances)], 1)
    got = model.log_prob(x)
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.double().numpy(), logsumexp(per, 1), rtol=1e-6)
    samples = model.sample(4, generator=torch.Generator().manual_seed(6))
    flat = model.density.sample(4, torch.Generator().manual_seed(6))
    assert samples.shape == (4, 1, 28, 28) and samples.dtype == torch.float32
    assert torch.equal(samples, flat.float().clamp(0, 1).reshape(4, 1, 28, 28))
    assert 0 < float((flat < 0).double().mean()) and 0 < float((flat > 1).double().mean())  # clipping happened


@pytest.mark.parametrize("n", [5, 40], ids=["fewer-samples-than-pixels", "more-samples"])
def test_the_pca_fit_keeps_the_top_eigenvectors_and_the_mean_discarded_variance(n):
    """PCA of the (biased) covariance: the rows of C span its top d eigenvectors, m is the data mean, s2 the mean
    of the other D - d eigenvalues (zeros included); the mixture is then fitted to the projections."""
    rng = np.random.default_rng(7)
    X = rng.standard_normal((n, D)) @ np.diag([3.0, 2.0, 1.5, 1.0, 0.5, 0.25]) @ np.linalg.qr(
        rng.standard_normal((D, D)))[0]
    density = MixtureDensity(1, "full", pca_dim=2, n_features=D)
    estimator = density.fit(torch.from_numpy(X), reg_covar=1e-6, random_state=0)
    mean = X.mean(0)
    eigvals, eigvecs = np.linalg.eigh((X - mean).T @ (X - mean) / n)  # ascending
    top = eigvecs[:, ::-1][:, :2]  # (D, 2)
    C = density.pca_components.numpy()
    np.testing.assert_allclose(density.pca_mean.numpy(), mean, atol=1e-12)
    np.testing.assert_allclose(C @ C.T, np.eye(2), atol=1e-10)
    np.testing.assert_allclose(C.T @ C, top @ top.T, atol=1e-8)  # the same subspace, whatever the signs
    np.testing.assert_allclose(np.abs(C @ top), np.eye(2), atol=1e-8)  # in order: first component first
    assert float(density.pca_noise_var) == pytest.approx(eigvals[:-2].sum() / (D - 2), rel=1e-9)
    Z = (X - mean) @ C.T
    np.testing.assert_allclose(density.means.numpy(), Z.mean(0, keepdims=True), atol=1e-10)
    np.testing.assert_allclose(density.means.numpy(), estimator.means_.numpy(), atol=0)
    np.testing.assert_allclose(density.weights.numpy(), estimator.weights_.numpy(), atol=0)
    np.testing.assert_allclose(density.precisions_cholesky.numpy(), estimator.precisions_cholesky_.numpy(), atol=0)


def test_the_pca_noise_variance_is_floored_at_reg_covar_and_bad_sizes_are_refused():
    X = np.zeros((8, D))
    X[:, :2] = np.random.default_rng(8).standard_normal((8, 2))  # all variance in the first two pixels
    density = MixtureDensity(1, "diag", pca_dim=2, n_features=D)
    density.fit(torch.from_numpy(X), reg_covar=0.003, random_state=0)
    assert float(density.pca_noise_var) == pytest.approx(0.003)
    from genzoo.config import ConfigError

    with pytest.raises(ConfigError) as caught:
        MixtureDensity(1, "diag", pca_dim=D, n_features=D).fit(torch.from_numpy(X))
    assert str(caught.value) == "pca_dim=6: must be < 6 (0 for no PCA)"
    with pytest.raises(ConfigError) as caught:
        MixtureDensity(1, "diag", pca_dim=3, n_features=D).fit(torch.from_numpy(X[:3]))
    assert str(caught.value) == ("pca_dim=3: PCA needs more than 3 images, this fit has 3; lower pca_dim or give "
                                 "more data")


def test_a_fit_hands_its_components_and_settings_to_em():
    """Two far-apart clusters, two diagonal components: each component is one cluster's mean and variance plus the
    reg_covar given (EM's responsibilities are 0 or 1 to rounding), weighted by its share of the points."""
    rng = np.random.default_rng(9)
    a, b = rng.normal(0, 1, (30, D)), rng.normal(50, 2, (10, D))
    X = np.concatenate([a, b])
    density = MixtureDensity(2, "diag", pca_dim=0, n_features=D)
    density.fit(torch.from_numpy(X), reg_covar=0.05, random_state=0, tol=1e-8)
    order = np.argsort(density.means.numpy()[:, 0])
    np.testing.assert_allclose(density.weights.numpy()[order], [0.75, 0.25], atol=1e-12)
    np.testing.assert_allclose(density.means.numpy()[order], np.stack([a.mean(0), b.mean(0)]), atol=1e-9)
    want = 1 / np.sqrt(np.stack([a.var(0), b.var(0)]) + 0.05)
    np.testing.assert_allclose(density.precisions_cholesky.numpy()[order], want, rtol=1e-9)


def test_without_reg_covar_the_pca_noise_variance_is_floored_at_em_default():
    X = np.zeros((8, D))
    X[:, :2] = np.random.default_rng(10).standard_normal((8, 2))  # nothing left outside the first two pixels
    density = MixtureDensity(1, "diag", pca_dim=2, n_features=D)
    density.fit(torch.from_numpy(X), random_state=0)
    assert float(density.pca_noise_var) == 1e-6
