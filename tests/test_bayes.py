"""The Bayes-classifier sampler: closed-form class Gaussians, Bayes' rule, labelled samples, K components."""

from __future__ import annotations

import pytest
import torch

from genzoo.data import load_data
from genzoo.images import save_pictures
from genzoo.models.bayes import BayesClassifier
from genzoo.models.gmm import dequantize


@pytest.fixture(scope="module")
def digits():
    data = load_data("embedded")
    keep = torch.randperm(len(data.train_x), generator=torch.Generator().manual_seed(0))[
        :2500
    ]  # the embedded set is sorted by digit
    data.train_x, data.train_y = data.train_x[keep], data.train_y[keep]
    return data


@pytest.fixture(scope="module")
def one_gaussian(digits):
    torch.manual_seed(0)
    model = BayesClassifier(reg_covar=0.01)
    metrics = model.fit(digits.train_x, digits.train_y)
    return model, metrics


def test_one_gaussian_per_class_is_the_class_mean_and_covariance(digits, one_gaussian):
    model, metrics = one_gaussian
    assert 0.9 < metrics["train_accuracy"] <= 1.0
    # the same dequantization noise as fit: it drew its seed from the global RNG seeded 0
    torch.manual_seed(0)
    X = dequantize(
        digits.train_x.reshape(len(digits.train_x), -1), torch.Generator().manual_seed(int(torch.randint(2**31, ())))
    )
    label = 3
    Xc = X[digits.train_y == label]
    mean = Xc.mean(0)
    cov = torch.cov(Xc.T, correction=0) + 0.01 * torch.eye(784, dtype=torch.float64)
    torch.testing.assert_close(model.classes[label].means[0], mean)
    x = digits.test_x[:5]
    expected = torch.distributions.MultivariateNormal(mean, cov).log_prob(dequantize(x.reshape(5, -1)))
    torch.testing.assert_close(model.log_prob(x, y=torch.full((5,), label)), expected.float(), rtol=1e-5, atol=1e-2)
    counts = torch.bincount(digits.train_y, minlength=10).double()
    torch.testing.assert_close(model.log_prior, (counts / counts.sum()).log())


def test_bayes_rule(digits, one_gaussian):
    model, _ = one_gaussian
    x = digits.test_x[:40]
    per_class = (
        torch.stack([model.log_prob(x, y=torch.full((40,), c)) for c in range(10)], 1).double() + model.log_prior
    )
    assert torch.equal(model.predict(x), per_class.argmax(1))
    torch.testing.assert_close(torch.logsumexp(model.predict_log_proba(x), 1), torch.zeros(40), atol=1e-5, rtol=0)
    torch.testing.assert_close(model.log_prob(x), torch.logsumexp(per_class, 1).float(), rtol=1e-6, atol=1e-3)
    assert model.accuracy(digits.test_x, digits.test_y) > 0.75


def test_samples_are_the_chosen_digit(one_gaussian):
    model, _ = one_gaussian
    samples = model.sample(60, y=torch.full((60,), 7), generator=torch.Generator().manual_seed(0))
    assert samples.shape == (60, 1, 28, 28) and samples.min() >= 0 and samples.max() <= 1
    assert float((model.predict(samples) == 7).double().mean()) > 0.9
    grid = model.sample(20, generator=torch.Generator().manual_seed(0))  # default labels: 0,0,1,1,...,9,9
    assert float((model.predict(grid) == model.default_labels(20)).double().mean()) > 0.8


def test_mixture_per_class_fits_better_and_reloads(digits, tmp_path):
    torch.manual_seed(0)
    x, y = digits.train_x[:1500], digits.train_y[:1500]
    one = BayesClassifier(components_per_class=1, pca_dim=20, covariance_type="full").fit(x, y)
    torch.manual_seed(0)
    model = BayesClassifier(components_per_class=3, pca_dim=20, covariance_type="full")
    three = model.fit(x, y)
    assert three["train_log_likelihood"] > one["train_log_likelihood"]
    clone = BayesClassifier(model.config)
    clone.load_state_dict(model.state_dict())
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    assert torch.equal(clone.sample(10, generator=g()), model.sample(10, generator=g()))
    pictures = model.pictures()
    assert pictures["means_and_samples.png"].shape == (6, 10, 1, 28, 28)  # the means, then 5 rows of samples
    torch.testing.assert_close(pictures["means_and_samples.png"][0], model.class_means())
    (path,) = save_pictures(pictures, tmp_path)
    assert path == tmp_path / "means_and_samples.png" and path.exists()


def test_errors_name_the_problem(digits):
    with pytest.raises(ValueError, match=r"needs the labels y"):
        BayesClassifier().fit(digits.train_x[:20])
    with pytest.raises(ValueError, match=r"has 0 digits for components_per_class=2"):
        BayesClassifier(components_per_class=2).fit(digits.train_x[:20], torch.zeros(20, dtype=torch.long))
    with pytest.raises(ValueError, match=r"bayes: labels must be digits 0..9, got values in \[0, 11\]"):
        BayesClassifier().sample(3, y=torch.tensor([11, 0, 0]))


def test_pca_larger_than_a_class_is_a_clear_error(tiny):
    from genzoo.config import ConfigError
    from genzoo.models.bayes import BayesClassifier

    per_class = int(torch.bincount(tiny.train_y).min())
    with pytest.raises(
        ConfigError, match=r"pca_dim=40: PCA needs more than 40 images, this fit has \d+; lower pca_dim"
    ):
        BayesClassifier(pca_dim=40).fit(tiny.train_x, tiny.train_y)
    assert per_class <= 40
