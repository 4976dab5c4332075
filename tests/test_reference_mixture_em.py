"""The EM kernels of `genzoo.mixture.em` against the textbook formulas written out here in NumPy with plain loops
(Bishop, PRML 9.2.2): the M-step's soft counts, means and covariances of each kind, the precision's Cholesky
factor, log N(x | mu, Sigma) from the inverse and the determinant, draws x = mu + P^-T z, and the normalised
responsibilities. Both routes of the Cholesky factor (LAPACK and torch) are checked."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from genzoo.mixture import SingularCovarianceError, em

TYPES = ["full", "tied", "diag", "spherical"]
N, D, K = 23, 3, 4
REG = 1e-3


@pytest.fixture(scope="module")
def case():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((N, D)) @ np.array([[2.0, 0.3, 0.0], [0.0, 1.0, -0.4], [0.0, 0.0, 0.5]]) + [1, -2, 3]
    resp = rng.dirichlet(np.ones(K), size=N)
    resp[:5] = np.eye(K)[[0, 1, 1, 3, 0]]  # exact zeros, as underflowed responsibilities are
    return X, resp


def plain_m_step(X, resp, covariance_type):
    nk = resp.sum(0)
    means = np.array([sum(resp[n, k] * X[n] for n in range(N)) / nk[k] for k in range(K)])
    full = np.array([sum(resp[n, k] * np.outer(X[n] - means[k], X[n] - means[k]) for n in range(N)) / nk[k]
                     for k in range(K)])
    if covariance_type == "full":
        cov = full + REG * np.eye(D)
    elif covariance_type == "tied":
        cov = sum(nk[k] * full[k] for k in range(K)) / nk.sum() + REG * np.eye(D)
    elif covariance_type == "diag":
        cov = np.array([np.diag(full[k]) for k in range(K)]) + REG
    else:
        cov = np.array([np.trace(full[k]) / D for k in range(K)]) + REG
    return nk, means, cov


@pytest.mark.parametrize("given", [False, True])
@pytest.mark.parametrize("covariance_type", TYPES)
def test_m_step_is_the_weighted_counts_means_and_covariances(case, covariance_type, given):
    X, resp = case
    extra = ({"X_sq": torch.as_tensor(X * X), "sq_norms": torch.as_tensor((X * X).sum(1)),
              "gram": torch.as_tensor(X.T @ X)} if given else {})
    nk, means, cov = em.estimate_gaussian_parameters(torch.as_tensor(X), torch.as_tensor(resp), REG,
                                                     covariance_type, **extra)
    want = plain_m_step(X, resp, covariance_type)
    for name, got, expected in zip(("nk", "means", "covariances"), (nk, means, cov), want):
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-13, err_msg=name)


def test_m_step_refuses_an_unknown_kind(case):
    X, resp = case
    with pytest.raises(ValueError, match=r"^covariance_type='round': must be one of full, tied, diag, spherical$"):
        em.estimate_gaussian_parameters(torch.as_tensor(X), torch.as_tensor(resp), REG, "round")


def dense(cov, covariance_type):
    """Every kind's covariances as (K, D, D) matrices."""
    if covariance_type == "full":
        return cov
    if covariance_type == "tied":
        return np.stack([cov] * K)
    if covariance_type == "diag":
        return np.stack([np.diag(c) for c in cov])
    return np.stack([c * np.eye(D) for c in cov])


@pytest.fixture(params=["lapack", "torch"])
def route(request, monkeypatch):
    if request.param == "torch":
        monkeypatch.setattr(em, "scipy_lapack", None)
    return request.param


@pytest.mark.parametrize("covariance_type", TYPES)
def test_precision_cholesky_is_upper_with_p_pt_the_inverse_covariance(case, covariance_type, route):
    X, resp = case
    cov = plain_m_step(X, resp, covariance_type)[2]
    P = em.compute_precision_cholesky(torch.as_tensor(cov), covariance_type, REG).numpy()
    assert P.shape == cov.shape
    if covariance_type in ("full", "tied"):
        for p, c in zip(P.reshape(-1, D, D), cov.reshape(-1, D, D)):
            assert np.array_equal(p, np.triu(p)) and (np.diag(p) > 0).all()
            np.testing.assert_allclose(p @ p.T, np.linalg.inv(c), rtol=1e-10, atol=1e-12)
    else:
        np.testing.assert_allclose(P, 1 / np.sqrt(cov), rtol=1e-14)


@pytest.mark.parametrize(("covariance_type", "where"), [("full", "component(s) [1]"), ("tied", "the tied covariance"),
                                                        ("diag", "component(s) [1, 2]"),
                                                        ("spherical", "component(s) [2]")])
def test_a_covariance_that_is_not_positive_definite_is_named(covariance_type, where, route):
    if covariance_type == "full":
        cov = np.stack([np.eye(2), [[1.0, 2.0], [2.0, 1.0]], np.eye(2)])
    elif covariance_type == "tied":
        cov = np.array([[1.0, 2.0], [2.0, 1.0]])
    elif covariance_type == "diag":
        cov = np.array([[1.0, 1.0], [1.0, 0.0], [-1.0, 2.0]])  # a variance of exactly 0 is refused too
    else:
        cov = np.array([1.0, 2.0, 0.0])
    with pytest.raises(SingularCovarianceError) as caught:
        em.compute_precision_cholesky(torch.as_tensor(cov), covariance_type, 0.125)
    assert str(caught.value).startswith(f"covariance of {where} is singular or not positive definite")
    assert "increase reg_covar=0.125 " in str(caught.value)


@pytest.mark.parametrize("given", [False, True])
@pytest.mark.parametrize("covariance_type", TYPES)
def test_log_density_is_the_gaussians_formula(case, covariance_type, given):
    X, resp = case
    _, means, cov = plain_m_step(X, resp, covariance_type)
    P = em.compute_precision_cholesky(torch.as_tensor(cov), covariance_type)
    extra = {"X_sq": torch.as_tensor(X * X), "sq_norms": torch.as_tensor((X * X).sum(1))} if given else {}
    got = em.estimate_log_gaussian_prob(torch.as_tensor(X), torch.as_tensor(means), P, covariance_type, **extra)
    sigmas = dense(cov, covariance_type)
    want = np.empty((N, K))
    for n in range(N):
        for k in range(K):
            d = X[n] - means[k]
            want[n, k] = -0.5 * (D * math.log(2 * math.pi) + np.linalg.slogdet(sigmas[k])[1]
                                 + d @ np.linalg.solve(sigmas[k], d))
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_draws_are_the_mean_plus_the_noise_through_the_inverse_transposed_factor(case, covariance_type):
    X, resp = case
    _, means, cov = plain_m_step(X, resp, covariance_type)
    P = em.compute_precision_cholesky(torch.as_tensor(cov), covariance_type)
    labels = torch.tensor([3, 0, 0, 2, 3, 1, 3])
    noise = torch.as_tensor(np.random.default_rng(4).standard_normal((len(labels), D)))
    got = em.sample_gaussians(torch.as_tensor(means), P, covariance_type, labels, noise).numpy()
    Pd = P.numpy()
    for i, k in enumerate(labels.tolist()):
        if covariance_type in ("full", "tied"):
            p = Pd[k] if covariance_type == "full" else Pd
            want = means[k] + np.linalg.solve(p.T, noise[i].numpy())
        else:
            want = means[k] + noise[i].numpy() / Pd[k]
        np.testing.assert_allclose(got[i], want, rtol=1e-12, atol=1e-12, err_msg=str(i))


def test_responsibilities_are_the_normalised_exponentials():
    rng = np.random.default_rng(5)
    weighted = rng.standard_normal((9, K)) * 20 - 700
    weighted[2, 1] = -math.inf
    weighted[4] = -math.inf
    for fn in (em.log_responsibilities, em.responsibilities):
        log_norm, out = fn(torch.as_tensor(weighted.copy()))
        for n in range(9):
            if n == 4:
                assert log_norm[n] == -math.inf
                continue
            m = weighted[n].max()
            lp = m + math.log(sum(math.exp(w - m) for w in weighted[n]))
            assert log_norm[n].item() == pytest.approx(lp, rel=1e-14)
            want = np.exp(weighted[n] - lp)
            got = out[n].exp().numpy() if fn is em.log_responsibilities else out[n].numpy()
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)


def test_an_empty_component_keeps_sklearns_tiny_positive_count(case):
    from sklearn.mixture._gaussian_mixture import _estimate_gaussian_parameters

    X, resp = case
    resp = resp.copy()
    resp[:, 2] = 0.0  # a component no sample belongs to
    resp /= resp.sum(1, keepdims=True)
    for covariance_type in TYPES:
        nk, means, cov = em.estimate_gaussian_parameters(torch.as_tensor(X), torch.as_tensor(resp), REG,
                                                         covariance_type)
        nk_sk, means_sk, cov_sk = _estimate_gaussian_parameters(X, resp, REG, covariance_type)
        np.testing.assert_allclose(nk.numpy(), nk_sk, rtol=1e-14, atol=0)  # 10 float64 eps added to every count
        assert nk[2].item() == nk_sk[2] == 10 * np.finfo(np.float64).eps
        np.testing.assert_allclose(means.numpy(), means_sk, rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(cov.numpy(), cov_sk, rtol=1e-10, atol=1e-12)


def test_log_density_refuses_an_unknown_kind(case):
    X, _ = case
    with pytest.raises(ValueError, match=r"^covariance_type='round': must be one of full, tied, diag, spherical$"):
        em.estimate_log_gaussian_prob(torch.as_tensor(X), torch.zeros(K, D), torch.ones(K), "round")
