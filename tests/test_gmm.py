"""The Gaussian mixture against scikit-learn's (E-step, M-step, whole fits), EM monotonicity, sampling, errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.mixture import GaussianMixture as SklearnGM

from genzoo.mixture import ConvergenceWarning, GaussianMixture, SingularCovarianceError
from genzoo.models.gmm import GMM, anisotropic_clusters, bits_per_dim, gmm_demo

TYPES = ("full", "tied", "diag", "spherical")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 5)) @ rng.standard_normal((5, 5))
    X[:100] += 4.0
    X[100:200] -= 3.0
    return X


def fitted_sklearn(X, covariance_type):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return SklearnGM(3, covariance_type=covariance_type, max_iter=3, random_state=0).fit(X)


def ours_with_params_of(sk):
    ours = GaussianMixture(sk.n_components, covariance_type=sk.covariance_type, reg_covar=sk.reg_covar)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        setattr(ours, name, torch.as_tensor(getattr(sk, name), dtype=torch.float64))
    return ours


@pytest.mark.parametrize("covariance_type", TYPES)
def test_e_step_matches_sklearn(data, covariance_type):
    sk = fitted_sklearn(data, covariance_type)
    ours = ours_with_params_of(sk)
    norm_sk, resp_sk = sk._estimate_log_prob_resp(data)
    norm, resp = ours._estimate_log_prob_resp(torch.as_tensor(data))
    np.testing.assert_allclose(norm.numpy(), norm_sk, rtol=1e-10)
    np.testing.assert_allclose(resp.numpy(), resp_sk, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(ours.score_samples(data).numpy(), sk.score_samples(data), rtol=1e-10)
    np.testing.assert_array_equal(ours.predict(data).numpy(), sk.predict(data))
    np.testing.assert_allclose(ours.bic(data), sk.bic(data), rtol=1e-10)
    np.testing.assert_allclose(ours.aic(data), sk.aic(data), rtol=1e-10)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_m_step_matches_sklearn(data, covariance_type):
    sk = fitted_sklearn(data, covariance_type)
    ours = ours_with_params_of(sk)
    log_resp = np.log(np.random.default_rng(1).dirichlet(np.ones(3), size=len(data)))
    sk._m_step(data, log_resp)
    ours._m_step(torch.as_tensor(data), torch.as_tensor(log_resp))
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        np.testing.assert_allclose(getattr(ours, name).numpy(), getattr(sk, name), rtol=1e-9, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_fit_from_same_initial_parameters_matches_sklearn(data, covariance_type):
    start = fitted_sklearn(data, covariance_type)
    init = dict(weights_init=start.weights_, means_init=start.means_, precisions_init=start.precisions_)
    sk = SklearnGM(3, covariance_type=covariance_type, tol=1e-8, max_iter=200, **init).fit(data)
    ours = GaussianMixture(3, covariance_type=covariance_type, tol=1e-8, max_iter=200, **init).fit(data)
    assert ours.n_iter_ == sk.n_iter_
    assert abs(ours.score(data) - sk.score(data)) <= 1e-6 * abs(sk.score(data))
    np.testing.assert_allclose(ours.means_.numpy(), sk.means_, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_em_never_lowers_the_likelihood(data, covariance_type):
    gm = GaussianMixture(4, covariance_type=covariance_type, tol=0, max_iter=40, init_params="random", random_state=0)
    with pytest.warns(ConvergenceWarning, match="max_iter=40"):
        gm.fit(data)
    bounds = np.array(gm.lower_bounds_)
    assert len(bounds) == 40
    assert (np.diff(bounds) >= -1e-10).all(), bounds


def test_n_init_keeps_the_best_run(data):
    runs = [GaussianMixture(3, random_state=s, init_params="random", max_iter=5, tol=0) for s in range(3)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        single = max(gm.fit(data).lower_bound_ for gm in runs[:1])
        best = GaussianMixture(3, random_state=0, init_params="random", max_iter=5, tol=0, n_init=3).fit(data)
    assert best.lower_bound_ >= single


def test_samples_recover_the_fitted_means_and_covariances():
    X, _ = anisotropic_clusters(n_per_cluster=200, seed=0)
    gm = GaussianMixture(4, covariance_type="full", random_state=0, n_init=2).fit(X)
    samples, labels = gm.sample(40_000, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (40_000, 2)
    counts = torch.bincount(labels, minlength=4).double() / len(labels)
    np.testing.assert_allclose(counts.numpy(), gm.weights_.numpy(), atol=0.01)
    for k in range(4):
        s = samples[labels == k]
        np.testing.assert_allclose(s.mean(0).numpy(), gm.means_[k].numpy(), atol=0.05)
        np.testing.assert_allclose(torch.cov(s.T).numpy(), gm.covariances_[k].numpy(), rtol=0.05, atol=0.03)  # ~10,000 draws each
    # and the fit found the true cluster centres
    centres = np.array([[0.0, 0.0], [6.0, 1.0], [2.0, 6.0], [8.0, 7.0]])
    found = gm.means_.numpy()
    assert np.abs(found[np.argmin(((found[:, None] - centres) ** 2).sum(-1), 0)] - centres).max() < 0.3


def test_singular_covariance_names_reg_covar():
    X = np.random.default_rng(0).standard_normal((50, 3))
    X[:, 2] = 1.0  # a feature that never varies
    with pytest.raises(SingularCovarianceError, match=r"increase reg_covar=0\.0"):
        GaussianMixture(2, reg_covar=0.0, random_state=0).fit(X)
    GaussianMixture(2, reg_covar=1e-6, random_state=0).fit(X)  # the fix works


def test_bad_input_messages():
    with pytest.raises(ValueError, match=r"covariance_type='banana': must be one of full, tied, diag, spherical"):
        GaussianMixture(2, covariance_type="banana").fit(np.zeros((5, 2)))
    with pytest.raises(ValueError, match=r"got shape \(5,\)"):
        GaussianMixture(2).fit(np.zeros(5))
    with pytest.raises(ValueError, match=r"3 samples for n_components=4"):
        GaussianMixture(4).fit(np.zeros((3, 2)))
    with pytest.raises(RuntimeError, match="not fitted yet"):
        GaussianMixture(2).score(np.zeros((3, 2)))


def test_gmm_model_on_digits_fit_sample_load(tmp_path):
    from genzoo.data import load_data

    torch.manual_seed(0)
    data = load_data("embedded")
    x = data.train_x[:600]
    model = GMM(n_components=3, pca_dim=16, covariance_type="full")
    out = model.fit(x)
    assert out["train_log_likelihood"] > 0 and np.isfinite(out["train_bits_per_dim"])
    lp = model.log_prob(data.test_x[:50])
    assert lp.shape == (50,) and torch.isfinite(lp).all()
    assert float(bits_per_dim(lp.double()).mean()) > 0
    samples = model.sample(6, generator=torch.Generator().manual_seed(1))
    assert samples.shape == (6, 1, 28, 28) and samples.min() >= 0 and samples.max() <= 1
    # rebuild from the config and the buffers alone (what genzoo.load does)
    clone = GMM(model.config)
    clone.load_state_dict(model.state_dict())
    assert torch.equal(clone.sample(6, generator=torch.Generator().manual_seed(1)), samples)
    assert torch.allclose(clone.log_prob(data.test_x[:50]), lp)
    paths = model.write_pictures(tmp_path)
    assert all(p.exists() for p in paths)


def test_pca_density_matches_a_gaussian_in_pixel_space():
    """With one component and PCA, the pixel-space density is that of N(mean, C^T S C + s2 (I - C^T C))."""
    from genzoo.models.gmm import MixtureDensity

    rng = np.random.default_rng(0)
    X = torch.as_tensor(rng.standard_normal((400, 12)) @ rng.standard_normal((12, 12)))
    density = MixtureDensity(1, "full", pca_dim=4, n_features=12)
    density.fit(X, reg_covar=1e-6, random_state=0)
    C, s2 = density.pca_components, density.pca_noise_var
    pc = density.precisions_cholesky[0]
    inner = torch.linalg.inv(pc @ pc.T)
    cov = C.T @ inner @ C + s2 * (torch.eye(12, dtype=torch.float64) - C.T @ C)
    mean = density.unproject(density.means)[0]
    expected = torch.distributions.MultivariateNormal(mean, cov).log_prob(X)
    torch.testing.assert_close(density.log_prob(X), expected)


def test_gmm_demo_writes_a_figure(tmp_path):
    path = gmm_demo(tmp_path)
    assert path.exists() and path.stat().st_size > 10_000
