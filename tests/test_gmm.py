"""The gmm model: fit, sample, save and load on digits; the PCA density in pixel space; the 2-D demo.

The estimator itself (genzoo.mixture.GaussianMixture against scikit-learn) is tested in test_mixture.py.
"""

from __future__ import annotations

import numpy as np
import torch

from genzoo.commands import gmm_demo
from genzoo.images import save_pictures
from genzoo.metrics import bits_per_dim
from genzoo.models.gmm import GMM


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
    assert float(bits_per_dim(-lp.double(), dequantized=True).mean()) > 0
    samples = model.sample(6, generator=torch.Generator().manual_seed(1))
    assert samples.shape == (6, 1, 28, 28) and samples.min() >= 0 and samples.max() <= 1
    # rebuild from the config and the buffers alone (what genzoo.load does)
    clone = GMM(model.config)
    clone.load_state_dict(model.state_dict())
    assert torch.equal(clone.sample(6, generator=torch.Generator().manual_seed(1)), samples)
    assert torch.allclose(clone.log_prob(data.test_x[:50]), lp)
    pictures = model.pictures()
    assert pictures["components.png"].shape == (1, 3, 1, 28, 28)  # three means in one row
    assert pictures["component_samples.png"].shape == (3, 8, 1, 28, 28)  # a row of samples per component
    paths = save_pictures(pictures, tmp_path)
    assert [p.name for p in paths] == ["components.png", "component_samples.png"] and all(p.exists() for p in paths)


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
