"""genzoo.mixture.GaussianMixture against scikit-learn's: E-step, M-step, whole fits, initialisations,
the estimator API (clone, grid search, pipelines, warm start), input checks, errors, sampling, types."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning as SklearnConvergenceWarning
from sklearn.exceptions import NotFittedError as SklearnNotFittedError
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import GaussianMixture as SklearnGM
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted

from genzoo.commands import anisotropic_clusters
from genzoo.mixture import (
    ConvergenceWarning,
    GaussianMixture,
    NotFittedError,
    SingularCovarianceError,
    kmeans,
)

TYPES = ("full", "tied", "diag", "spherical")
SRC = Path(__file__).resolve().parents[1] / "src"


def fitted_sklearn(X, covariance_type):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return SklearnGM(3, covariance_type=covariance_type, max_iter=3, random_state=0).fit(X)


def ours_with_params_of(sk):
    ours = GaussianMixture(sk.n_components, covariance_type=sk.covariance_type, reg_covar=sk.reg_covar)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        setattr(ours, name, getattr(sk, name))
    return ours


def same_init(sk):
    return {"weights_init": sk.weights_, "means_init": sk.means_, "precisions_init": sk.precisions_}


# ---------------------------------------------------------------------------- against scikit-learn


@pytest.mark.parametrize("covariance_type", TYPES)
def test_e_step_matches_sklearn(data, covariance_type):
    sk = fitted_sklearn(data, covariance_type)
    ours = ours_with_params_of(sk)
    norm_sk, resp_sk = sk._estimate_log_prob_resp(data)
    norm, resp = ours._estimate_log_prob_resp(torch.as_tensor(data))
    np.testing.assert_allclose(norm.numpy(), norm_sk, rtol=1e-10)
    np.testing.assert_allclose(resp.numpy(), resp_sk, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(ours.score_samples(data), sk.score_samples(data), rtol=1e-10)
    np.testing.assert_array_equal(ours.predict(data), sk.predict(data))
    np.testing.assert_allclose(ours.predict_proba(data), sk.predict_proba(data), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(ours.bic(data), sk.bic(data), rtol=1e-10)
    np.testing.assert_allclose(ours.aic(data), sk.aic(data), rtol=1e-10)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_m_step_matches_sklearn(data, covariance_type):
    sk = fitted_sklearn(data, covariance_type)
    ours = ours_with_params_of(sk)
    log_resp = np.log(np.random.default_rng(1).dirichlet(np.ones(3), size=len(data)))
    sk._m_step(data, log_resp)
    ours._m_step(torch.as_tensor(data), torch.as_tensor(log_resp))
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):  # sklearn sets precisions_ in fit
        np.testing.assert_allclose(getattr(ours, name), getattr(sk, name), rtol=1e-9, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_one_em_iteration_matches_sklearn_with_sparse_responsibilities(covariance_type):
    """Two overlapping clusters and three far ones: most responsibilities underflow to exactly 0 (which the
    full M-step skips), the overlapping pair's are fractional (which it must not skip)."""
    rng = np.random.default_rng(2)
    X = np.concatenate([rng.standard_normal((60, 8)) + shift for shift in (0.0, 1.5, 40.0, 80.0, 120.0)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk = SklearnGM(5, covariance_type=covariance_type, max_iter=3, random_state=0).fit(X)
    for iters in (1, 2):
        init = same_init(sk)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = SklearnGM(5, covariance_type=covariance_type, tol=0, max_iter=iters, **init).fit(X)
            ours = GaussianMixture(5, covariance_type=covariance_type, tol=0, max_iter=iters, **init).fit(X)
        assert ours.lower_bound_ == pytest.approx(ref.lower_bound_, rel=1e-10)
        for name in ("weights_", "means_", "covariances_"):
            np.testing.assert_allclose(getattr(ours, name), getattr(ref, name), rtol=1e-10, atol=1e-13, err_msg=name)


def test_diag_fit_on_mostly_zero_data_takes_the_sparse_step_and_matches_sklearn():
    """MNIST-like data (most entries exactly 0) goes through sparse products; the fit must not change."""
    from genzoo.mixture import kernels

    rng = np.random.default_rng(3)
    X = rng.random((400, 30)) * (rng.random((400, 30)) < 0.2)  # 80% exact zeros
    X[:200, :10] += rng.random((200, 10)) * (rng.random((200, 10)) < 0.1)
    assert kernels.sparse_copies(torch.as_tensor(X)) is not None
    assert kernels.sparse_copies(torch.as_tensor(X + 1.0)) is None  # dense data keeps the blocked step
    assert type(kernels.choose_kernel(torch.as_tensor(X), "diag", 1e-6)) is kernels.SparseDiagKernel
    assert type(kernels.choose_kernel(torch.as_tensor(X + 1.0), "diag", 1e-6)) is kernels.FusedKernel
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        init = same_init(SklearnGM(4, covariance_type="diag", max_iter=2, random_state=0).fit(X))
        ref = SklearnGM(4, covariance_type="diag", tol=0, max_iter=5, **init).fit(X)
        ours = GaussianMixture(4, covariance_type="diag", tol=0, max_iter=5, **init)
        labels = ours.fit_predict(X)
    np.testing.assert_array_equal(labels, ref.predict(X))
    assert ours.lower_bound_ == pytest.approx(ref.lower_bound_, rel=1e-12)
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_allclose(getattr(ours, name), getattr(ref, name), rtol=1e-10, atol=1e-13, err_msg=name)


def test_sparse_products_match_the_dense_ones():
    """The CSR copies and the blocked transposed product against plain dense products (several blocks of samples)."""
    from genzoo.mixture import kernels, products

    rng = np.random.default_rng(5)
    n = 2 * kernels.BLOCK_ROWS + 123  # three blocks, the last one short
    X = torch.as_tensor(rng.standard_normal((n, 12)) * (rng.random((n, 12)) < 0.3))  # about 70% exact zeros
    X[:, 4] = 0  # a feature that is 0 in every sample
    M, R = torch.as_tensor(rng.standard_normal((12, 5))), torch.as_tensor(rng.random((n, 5)))
    csr = products.csr_rows(X)
    torch.testing.assert_close(csr.to_dense(), X, rtol=0, atol=0)
    torch.testing.assert_close(products.times(X, csr, M), X @ M, rtol=1e-13, atol=1e-13)
    copies = kernels.sparse_copies(X)
    assert len(copies.X_t) == 3
    torch.testing.assert_close(copies.X_sq.to_dense(), X * X, rtol=0, atol=0)
    torch.testing.assert_close(kernels.transposed_times(copies.X_t, R), X.T @ R, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(kernels.transposed_times(copies.X_sq_t, R), (X * X).T @ R, rtol=1e-12, atol=1e-12)
    assert products.csr_rows(X + 1.0) is None


def test_responsibilities_match_logsumexp():
    from genzoo.mixture.em import responsibilities

    rng = np.random.default_rng(6)
    weighted = torch.as_tensor(rng.standard_normal((50, 4)) * 300 - 1000)  # far below exp's range
    weighted[:, 2] = -math.inf  # a component of weight 0
    weighted[7] = -math.inf  # a sample no component can have made
    log_norm, resp = responsibilities(weighted.clone())
    expected = torch.logsumexp(weighted, 1)
    torch.testing.assert_close(log_norm, expected, rtol=1e-14, atol=0)
    keep = torch.arange(50) != 7
    torch.testing.assert_close(resp[keep], (weighted - expected[:, None]).exp()[keep], rtol=1e-10, atol=1e-300)
    torch.testing.assert_close(resp[keep].sum(1), torch.ones(49, dtype=torch.float64), rtol=1e-14, atol=0)
    assert log_norm[7] == -math.inf and bool(resp[7].isnan().all())  # as log p - log p of -inf rows


@pytest.mark.parametrize("zeros", [False, True])
def test_kmeans_matches_plain_lloyd_from_the_same_seeds(zeros):
    """Labels against Lloyd's iteration written plainly (all distances, all sums, every iteration) from the
    same k-means++ seeds, with scikit-learn's stopping rule; also on mostly-zero data (the CSR products)."""
    from genzoo.mixture import kmeans_plusplus
    from genzoo.mixture.kmeans import mean_variance

    rng = np.random.default_rng(7)
    X = rng.standard_normal((3000, 8)) + np.repeat(rng.standard_normal((6, 8)) * 2, 500, axis=0)
    if zeros:
        X = np.abs(X) * (rng.random(X.shape) < 0.3)
    X = torch.as_tensor(X)
    assert math.isclose(mean_variance(X), float(X.var(0, correction=0).mean()), rel_tol=1e-12)
    for seed in range(3):
        labels = kmeans(X, 6, torch.Generator().manual_seed(seed), tol=1e-6).numpy()
        centres = X[kmeans_plusplus(X, 6, torch.Generator().manual_seed(seed))].numpy()
        x, threshold, expected = X.numpy(), 1e-6 * float(X.var(0, correction=0).mean()), None
        for _ in range(300):
            new = ((x[:, None] - centres) ** 2).sum(-1).argmin(1)
            if expected is not None and (new == expected).all():
                break
            expected = new
            moved = np.stack([x[expected == k].mean(0) for k in range(6)])
            shift, centres = ((moved - centres) ** 2).sum(), moved
            if shift <= threshold:
                expected = ((x[:, None] - centres) ** 2).sum(-1).argmin(1)
                break
        np.testing.assert_array_equal(labels, expected, err_msg=f"seed {seed}")


@pytest.mark.parametrize("start", ["fitted", "coupled precision", "nonzero mean", "coupled precision, nonzero mean"])
def test_full_fit_with_features_zero_in_every_sample_takes_the_active_step_and_matches_sklearn(start):
    """Features that are 0 in every sample (MNIST's borders) are left out of the full step's products;
    the fit must not change, also from a precisions_init that links them to the others (then the first
    E-step must use every feature) or a means_init that is not 0 there."""
    from genzoo import mixture
    from genzoo.mixture import kernels

    rng = np.random.default_rng(4)
    X = rng.random((400, 30)) * (rng.random((400, 30)) < 0.4)
    X[:200, :10] += rng.random((200, 10)) * (rng.random((200, 10)) < 0.3)
    dead = [0, 5, 6, 29]
    X[:, dead] = 0
    idx, inactive, _ = kernels.active_features(torch.as_tensor(X))
    assert inactive.tolist() == dead and len(idx) == 26
    assert type(kernels.choose_kernel(torch.as_tensor(X), "full", 1e-6)) is kernels.ActiveFullKernel
    assert type(kernels.choose_kernel(torch.as_tensor(X), "full", 0.0)) is kernels.DenseKernel  # must meet the error
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        init = same_init(SklearnGM(4, covariance_type="full", max_iter=2, random_state=0).fit(X))
        if start.startswith("coupled precision"):  # a precision coupling a dead feature to a live one
            init["precisions_init"] = init["precisions_init"].copy()
            init["precisions_init"][:, 0, 1] = init["precisions_init"][:, 1, 0] = 0.5
        if start.endswith("nonzero mean"):  # the dead features' terms then depend on the means
            init["means_init"] = init["means_init"].copy()
            init["means_init"][:, dead] = 1e-3 * np.arange(4)[:, None]  # (mu_j P_jj)^2 = 0, 1, 4, 9 nats
        first = mixture.precision_cholesky_from_precisions(torch.as_tensor(init["precisions_init"]), "full")
        assert kernels.separates(first, inactive) == (not start.startswith("coupled precision"))
        ours = GaussianMixture(4, covariance_type="full", tol=0, max_iter=5, **init)
        ref = SklearnGM(4, covariance_type="full", tol=0, max_iter=5, **init).fit(X)
        labels = ours.fit_predict(X)
    np.testing.assert_array_equal(labels, ref.predict(X))
    assert ours.lower_bound_ == pytest.approx(ref.lower_bound_, rel=1e-12)
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_allclose(getattr(ours, name), getattr(ref, name), rtol=1e-10, atol=1e-12, err_msg=name)
    # the factors of small, nearly singular components amplify rounding: agreement to 1e-8 there
    np.testing.assert_allclose(ours.precisions_cholesky_, ref.precisions_cholesky_, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(ours.score_samples(X), ref.score_samples(X), rtol=1e-10)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_fit_from_same_initial_parameters_matches_sklearn(data, covariance_type):
    init = same_init(fitted_sklearn(data, covariance_type))
    sk = SklearnGM(3, covariance_type=covariance_type, tol=1e-8, max_iter=200, **init).fit(data)
    ours = GaussianMixture(3, covariance_type=covariance_type, tol=1e-8, max_iter=200, **init).fit(data)
    assert ours.n_iter_ == sk.n_iter_
    assert abs(ours.score(data) - sk.score(data)) <= 1e-10 * abs(sk.score(data))
    np.testing.assert_allclose(ours.means_, sk.means_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(ours.precisions_, sk.precisions_, rtol=1e-6, atol=1e-8)
    np.testing.assert_array_equal(ours.fit_predict(data), sk.fit_predict(data))


@pytest.mark.parametrize("covariance_type", TYPES)
def test_em_never_lowers_the_likelihood(data, covariance_type):
    gm = GaussianMixture(4, covariance_type=covariance_type, tol=0, max_iter=40, init_params="random", random_state=0)
    with pytest.warns(ConvergenceWarning, match="max_iter=40"):
        gm.fit(data)
    bounds = np.array(gm.lower_bounds_)
    assert len(bounds) == 40
    assert (np.diff(bounds) >= -1e-10).all(), bounds


@pytest.mark.parametrize("covariance_type", TYPES)
def test_warm_start_continues_like_sklearn_and_never_lowers_the_likelihood(data, covariance_type):
    init = same_init(fitted_sklearn(data, covariance_type))
    kw = {"covariance_type": covariance_type, "tol": 0, "max_iter": 2, "warm_start": True, **init}
    ours, sk = GaussianMixture(3, n_init=5, **kw), SklearnGM(3, **kw)
    bounds = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(4):
            ours.fit(data)
            sk.fit(data)
            bounds += ours.lower_bounds_
            assert ours.lower_bound_ == pytest.approx(sk.lower_bound_, rel=1e-10)
    assert len(bounds) == 8  # n_init is ignored when continuing: one run of max_iter per fit
    assert (np.diff(bounds) >= -1e-12).all(), bounds
    np.testing.assert_allclose(ours.means_, sk.means_, rtol=1e-8, atol=1e-10)


def test_warm_start_detects_convergence_across_fits(data):
    """scikit-learn's test_convergence_detected_with_warm_start: repeated warm fits of even one EM
    iteration each must report convergence once the bound stops moving, with n_iter_ <= max_iter."""
    for max_iter in (1, 2, 50):
        gm = GaussianMixture(3, warm_start=True, max_iter=max_iter, random_state=np.random.RandomState(0))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            for _ in range(100):
                gm.fit(data)
                if gm.converged_:
                    break
        assert gm.converged_, max_iter
        assert 1 <= gm.n_iter_ <= max_iter


def test_warm_start_first_change_is_against_the_previous_fits_bound(data):
    gm = GaussianMixture(3, warm_start=True, max_iter=1, tol=1e-3, random_state=0)
    seen = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm.fit(data)
        assert not gm.converged_  # a fresh start has nothing to compare its one bound with
        for _ in range(100):
            previous = gm.lower_bound_
            gm.fit(data)
            # with max_iter=1 the only change a fit can measure is against the previous fit's bound
            expected = abs(gm.lower_bound_ - previous) < 1e-3
            assert gm.converged_ == expected
            seen.append(expected)
            if expected:
                break
    assert seen[-1] and not seen[0], seen


def test_n_init_keeps_the_best_run(data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        single = [GaussianMixture(3, random_state=s, init_params="random", max_iter=5, tol=0).fit(data).lower_bound_
                  for s in range(3)]
        best = GaussianMixture(3, random_state=0, init_params="random", max_iter=5, tol=0, n_init=3).fit(data)
    assert best.lower_bound_ >= single[0]


# ---------------------------------------------------------------------------- initialisations


def blobs():
    rng = np.random.default_rng(3)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    return np.concatenate([rng.standard_normal((50, 2)) + c for c in centres]), np.repeat(np.arange(3), 50)


def test_kmeans_init_is_an_m_step_on_a_kmeans_labelling():
    X, truth = blobs()
    labels = kmeans(torch.as_tensor(X), 3, torch.Generator().manual_seed(0)).numpy()
    assert adjusted_rand_score(truth, labels) == 1.0
    sk_labels = KMeans(3, n_init=1, random_state=0).fit(X).labels_
    assert adjusted_rand_score(sk_labels, labels) == 1.0
    gm = GaussianMixture(3, init_params="kmeans", max_iter=0, random_state=0).fit(X)
    for k in range(3):  # parameters of the initialisation: one M-step on the one-hot labels
        members = X[labels == k]
        assert gm.weights_[k] == pytest.approx(len(members) / len(X))
        np.testing.assert_allclose(gm.means_[k], members.mean(0), rtol=1e-12)
        np.testing.assert_allclose(gm.covariances_[k], np.cov(members.T, bias=True) + 1e-6 * np.eye(2), rtol=1e-10)
    sk = SklearnGM(3, init_params="kmeans", max_iter=0, random_state=0).fit(X)
    order, sk_order = np.argsort(gm.means_ @ [1, 3]), np.argsort(sk.means_ @ [1, 3])
    np.testing.assert_allclose(gm.means_[order], sk.means_[sk_order], rtol=1e-10)


@pytest.mark.parametrize("init_params", ["k-means++", "random_from_data"])
def test_seed_inits_mean_what_sklearn_means(init_params):
    """Each seed alone is responsible for its component: means are samples, covariances reg_covar * I."""
    X, _ = blobs()
    ours = GaussianMixture(3, init_params=init_params, max_iter=0, random_state=0, reg_covar=1e-4).fit(X)
    sk = SklearnGM(3, init_params=init_params, max_iter=0, random_state=0, reg_covar=1e-4).fit(X)
    for gm in (ours, sk):
        dist = ((X[:, None] - gm.means_) ** 2).sum(-1)  # (N, K): each mean is a sample (to rounding)
        assert dist.min(0).max() < 1e-20 and len(set(dist.argmin(0).tolist())) == 3
        np.testing.assert_allclose(gm.covariances_, np.broadcast_to(1e-4 * np.eye(2), (3, 2, 2)), rtol=1e-6, atol=1e-20)
    np.testing.assert_allclose(ours.weights_, sk.weights_, rtol=1e-12)  # both n_k / N, n_k = 1 (the seed)


def test_nearest_inits_give_the_seeds_voronoi_cells():
    X, truth = blobs()
    gm = GaussianMixture(3, init_params="k-means++_nearest", max_iter=0, random_state=0).fit(X)
    seeds = GaussianMixture(3, init_params="k-means++", max_iter=0, random_state=0).fit(X).means_  # the same seeds
    cells = ((X[:, None] - seeds) ** 2).sum(-1).argmin(1)
    for k in range(3):
        np.testing.assert_allclose(gm.means_[k], X[cells == k].mean(0), rtol=1e-12)
    gm = GaussianMixture(3, init_params="random_from_data_nearest", max_iter=0, random_state=0).fit(X)
    assert gm.weights_.sum() == pytest.approx(1.0) and (gm.weights_ > 0).all()


# ---------------------------------------------------------------------------- the estimator API


def test_get_set_params_clone_and_repr():
    gm = GaussianMixture(3, covariance_type="diag", random_state=1)
    params = gm.get_params()
    assert params["n_components"] == 3 and params["covariance_type"] == "diag" and params["dtype"] is torch.float64
    assert gm.set_params(n_components=4, tol=1e-4) is gm and gm.n_components == 4
    with pytest.raises(ValueError, match=r"'n_comps' is not a parameter of GaussianMixture; valid parameters:"):
        gm.set_params(n_comps=2)
    copy = clone(gm)
    assert copy is not gm and copy.get_params() == gm.get_params()
    assert repr(gm) == "GaussianMixture(n_components=4, covariance_type='diag', tol=0.0001, random_state=1)"


def test_grid_search_and_pipeline_work(data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        cv = KFold(3, shuffle=True, random_state=0)
        grid = {"n_components": [1, 3, 6]}
        search = GridSearchCV(GaussianMixture(random_state=0, max_iter=20), grid, cv=cv).fit(data)
        reference = GridSearchCV(SklearnGM(random_state=0, max_iter=20), grid, cv=cv).fit(data)
    assert search.best_params_ == reference.best_params_
    scores, reference_scores = search.cv_results_["mean_test_score"], reference.cv_results_["mean_test_score"]
    np.testing.assert_allclose(scores, reference_scores, rtol=0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        pipe = make_pipeline(StandardScaler(), GaussianMixture(3, covariance_type="diag", random_state=0)).fit(data)
    labels = pipe.predict(data)
    assert labels.shape == (300,) and isinstance(labels, np.ndarray)
    assert np.isfinite(pipe.score(data))


def test_fitted_attributes_and_fit_predict(data):
    gm = GaussianMixture(3, covariance_type="full", random_state=0)
    labels = gm.fit_predict(data)
    np.testing.assert_array_equal(labels, gm.predict(data))
    assert gm.n_features_in_ == 5
    check_is_fitted(gm)
    P = gm.precisions_
    np.testing.assert_allclose(P @ gm.covariances_, np.broadcast_to(np.eye(5), (3, 5, 5)), atol=1e-9)


def test_not_fitted_error_is_sklearns_and_a_value_and_attribute_error():
    gm = GaussianMixture(2)
    assert issubclass(NotFittedError, SklearnNotFittedError)
    assert issubclass(NotFittedError, ValueError) and issubclass(NotFittedError, AttributeError)
    for call in (lambda: gm.predict(np.zeros((3, 2))), lambda: gm.score(np.zeros((3, 2))), lambda: gm.sample(2),
                 lambda: gm.means_, lambda: gm.precisions_):
        with pytest.raises(SklearnNotFittedError, match="not fitted yet; call fit"):
            call()
    assert not hasattr(gm, "means_")
    with pytest.raises(SklearnNotFittedError):
        check_is_fitted(gm)


def test_convergence_warning_is_sklearns(data):
    assert issubclass(ConvergenceWarning, SklearnConvergenceWarning)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SklearnConvergenceWarning)  # a filter written for scikit-learn
        with pytest.raises(SklearnConvergenceWarning, match=r"max_iter=2 iterations \(tol=0\)"):
            GaussianMixture(3, max_iter=2, tol=0, random_state=0).fit(data)


# ---------------------------------------------------------------------------- input checks


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"n_components": 2.5}, r"n_components=2\.5: expected an integer >= 1, got float 2\.5"),
    ({"n_components": 0}, r"n_components=0: expected an integer >= 1, got int 0"),
    ({"max_iter": -1}, r"max_iter=-1: expected an integer >= 0"),
    ({"tol": -1.0}, r"tol=-1\.0: expected a number >= 0"),
    ({"covariance_type": "banana"}, r"covariance_type='banana': must be one of full, tied, diag, spherical"),
    ({"init_params": "kmeans++"}, r"init_params='kmeans\+\+': must be one of kmeans, k-means\+\+"),
    ({"weights_init": [0.5, 0.7, -0.2]}, r"weights_init: expected values in \[0, 1\], got min -0\.2 and max 0\.7"),
    ({"weights_init": [0.5, 0.3, 0.3]}, r"weights_init: expected weights summing to 1, got sum 1\.1; divide"),
    ({"weights_init": [0.5, 0.5]}, r"weights_init: expected shape \(n_components,\) = \(3,\), got \(2,\)"),
    ({"means_init": np.zeros((4, 5))},
     r"means_init: expected shape \(n_components, n_features\) = \(3, 5\), got \(4, 5\)"),
    ({"means_init": np.zeros((3, 2))}, r"means_init: expected shape .* = \(3, 5\), got \(3, 2\)"),
    ({"precisions_init": np.ones((3, 5))},
     r"precisions_init: expected shape \(n_components, n_features, n_features\) = \(3, 5, 5\) for "
     r"covariance_type='full', got \(3, 5\)"),
    ({"precisions_init": np.stack([np.eye(5), np.eye(5) + np.triu(np.ones((5, 5)), 1), np.eye(5)])},
     r"precisions_init: expected symmetric matrices, component\(s\) \[1\] are not \(largest \|P - P\^T\| = 1\)"),
    ({"precisions_init": np.stack([np.eye(5), np.eye(5), -np.eye(5)])},
     r"precisions_init: expected positive-definite matrices, component\(s\) \[2\] are not"),
    ({"covariance_type": "tied", "precisions_init": np.eye(4)},
     r"precisions_init: expected shape \(n_features, n_features\) = \(5, 5\) for covariance_type='tied', got \(4, 4\)"),
    ({"covariance_type": "tied", "precisions_init": np.diag([1.0, 1, 1, 1, -1])},
     r"precisions_init: expected positive-definite matrices, the matrix is not"),
    ({"covariance_type": "diag", "precisions_init": np.full((3, 5), -1.0)},
     r"precisions_init: expected values > 0 \(inverse variances\), got min -1"),
    ({"covariance_type": "spherical", "precisions_init": np.ones(2)},
     r"precisions_init: expected shape \(n_components,\) = \(3,\) for covariance_type='spherical', got \(2,\)"),
    ({"dtype": torch.int64}, r"dtype=torch\.int64: expected float32 or float64"),
    ({"random_state": "seed"}, r"random_state='seed': expected None, an int, a numpy RandomState or Generator"),
])
def test_bad_parameters_name_the_parameter_and_both_values(data, kwargs, message):
    with pytest.raises(ValueError, match=message):
        GaussianMixture(**{"n_components": 3, **kwargs}).fit(data)


def test_bad_data_messages():
    with pytest.raises(ValueError, match=r"got shape \(5,\)"):
        GaussianMixture(2).fit(np.zeros(5))
    with pytest.raises(ValueError, match=r"^X: 3 samples for n_components=4; need at least as many samples as "
                                         r"components$"):
        GaussianMixture(4).fit(np.zeros((3, 2)))
    four = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0], [4.0, 4.0]])  # as many samples as components, fewer features
    np.testing.assert_array_equal(np.sort(GaussianMixture(4, random_state=0).fit_predict(four)), np.arange(4))
    with pytest.raises(ValueError, match="X: contains NaN or infinity"):
        GaussianMixture(1).fit(np.array([[0.0, np.nan], [1.0, 2.0]]))
    with pytest.raises(ValueError, match="X: contains NaN or infinity"):
        GaussianMixture(1).fit(np.array([[1e308, 1e308], [1e308, 2.0]]) * np.array([1, np.inf]))
    gm = GaussianMixture(1).fit(np.array([[1e308, 1e308], [1e308, 2.0], [-1e308, 0.0]]))  # a sum overflows, no value
    with pytest.raises(ValueError, match=r"X: has 3 features, but this GaussianMixture was fitted on 2"):
        gm.predict(np.zeros((2, 3)))


def test_singular_covariance_names_reg_covar():
    X = np.random.default_rng(0).standard_normal((50, 3))
    X[:, 2] = 1.0  # a feature that never varies
    with pytest.raises(SingularCovarianceError, match=r"increase reg_covar=0\.0"):
        GaussianMixture(2, reg_covar=0.0, random_state=0).fit(X)
    GaussianMixture(2, reg_covar=1e-6, random_state=0).fit(X)  # the fix works


def test_full_and_tied_fits_leave_torchs_thread_count_as_they_found_it(data):
    """The full and tied CPU steps run torch on one thread (see _torch_one_thread): restored after a fit,
    after a failed one, and after scoring."""
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        for covariance_type in ("full", "tied"):
            model = GaussianMixture(3, covariance_type=covariance_type, max_iter=2, random_state=0).fit(data)
            assert torch.get_num_threads() == 2
            model.score(data)
            assert torch.get_num_threads() == 2
        bad = np.random.default_rng(0).standard_normal((50, 3))
        bad[:, 2] = 1.0
        with pytest.raises(SingularCovarianceError):
            GaussianMixture(2, reg_covar=0.0, random_state=0).fit(bad)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


# ---------------------------------------------------------------------------- sampling, types, devices


def test_samples_recover_the_fitted_means_and_covariances():
    X, _ = anisotropic_clusters(n_per_cluster=200, seed=0)
    gm = GaussianMixture(4, covariance_type="full", random_state=0, n_init=2).fit(X)
    samples, labels = gm.sample(40_000)
    assert samples.shape == (40_000, 2) and isinstance(samples, np.ndarray)
    counts = np.bincount(labels, minlength=4) / len(labels)
    np.testing.assert_allclose(counts, gm.weights_, atol=0.01)
    for k in range(4):
        s = samples[labels == k]
        np.testing.assert_allclose(s.mean(0), gm.means_[k], atol=0.05)
        np.testing.assert_allclose(np.cov(s.T), gm.covariances_[k], rtol=0.05, atol=0.03)  # ~10,000 draws each
    centres = np.array([[0.0, 0.0], [6.0, 1.0], [2.0, 6.0], [8.0, 7.0]])  # and the fit found the true centres
    found = gm.means_
    assert np.abs(found[np.argmin(((found[:, None] - centres) ** 2).sum(-1), 0)] - centres).max() < 0.3


def test_sample_random_state_kinds(data):
    def draws(random_state, calls=2):
        gm = GaussianMixture(3, random_state=0).fit(data)
        gm.random_state = random_state
        return [gm.sample(5)[0] for _ in range(calls)]

    a, b = draws(None)
    assert not np.array_equal(a, b)  # None: fresh draws on every call, as in scikit-learn
    a, b = draws(7)
    assert np.array_equal(a, b)  # an int: the same draws on every call
    for make in (np.random.RandomState, np.random.default_rng, lambda s: torch.Generator().manual_seed(s)):
        a, b = draws(make(3))
        c, _ = draws(make(3))
        assert not np.array_equal(a, b) and np.array_equal(a, c)  # a generator advances, and repeats from its seed


def test_numpy_in_numpy_out_torch_in_torch_out_and_float32(data):
    Xt = torch.as_tensor(data)
    gt = GaussianMixture(3, random_state=0).fit(Xt)
    gn = GaussianMixture(3, random_state=0).fit(data)
    assert isinstance(gt.means_, torch.Tensor) and isinstance(gn.means_, np.ndarray)
    assert isinstance(gt.sample(3)[0], torch.Tensor) and isinstance(gn.sample(3)[0], np.ndarray)
    assert isinstance(gn.predict(Xt), torch.Tensor) and isinstance(gt.predict(data), np.ndarray)
    assert isinstance(gn.score_samples(data), np.ndarray) and isinstance(gn.predict_proba(Xt), torch.Tensor)
    labels_n, labels_t = GaussianMixture(3, random_state=0).fit_predict(data), \
        GaussianMixture(3, random_state=0).fit_predict(Xt)
    assert isinstance(labels_n, np.ndarray) and isinstance(labels_t, torch.Tensor)
    np.testing.assert_array_equal(labels_n, labels_t.numpy())
    np.testing.assert_allclose(gt.means_.numpy(), gn.means_)
    for dtype in (np.float32, "float32", torch.float32, None):
        g32 = GaussianMixture(3, random_state=0, dtype=dtype).fit(data.astype(np.float32))
        assert g32.means_.dtype == np.float32 and g32.score_samples(data).dtype == np.float32
        assert g32.sample(4)[0].dtype == np.float32
        np.testing.assert_allclose(g32.means_, gn.means_, rtol=1e-3, atol=1e-3)
    assert GaussianMixture(3, random_state=0, dtype=None).fit(Xt.float()).means_.dtype == torch.float32
    assert GaussianMixture(3, random_state=0).fit(data.astype(np.float32)).means_.dtype == np.float64  # default


def test_precisions_init_does_not_hang_with_two_threads():
    """Batched float64 torch.linalg.inv on 200 x 200 matrices hangs or fails with MKL on 2 threads (torch 2.13 CPU);
    the fit from full or tied precisions_init must not call it."""
    script = textwrap.dedent("""
        import numpy as np, torch, warnings
        from genzoo.mixture import GaussianMixture
        torch.set_num_threads(2)
        rng = np.random.default_rng(0)
        X = rng.standard_normal((400, 200))
        A = rng.standard_normal((3, 200, 200))
        P = A @ A.transpose(0, 2, 1) / 200 + np.eye(200)
        warnings.simplefilter("ignore")
        for ct, prec in (("full", P), ("tied", P[0])):
            gm = GaussianMixture(3, covariance_type=ct, precisions_init=prec, max_iter=1, random_state=0).fit(X)
            assert np.isfinite(gm.lower_bound_)
        print("ok")
    """)
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    try:
        out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("a fit from precisions_init hung for 120 s with 2 threads (batched torch.linalg.inv?)")
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
