"""The Bayes classifier's densities, posterior and labelled sampler against Bayes' rule written out in NumPy.

p(x, y) = p(y) p(x | y), here with one diagonal Gaussian per digit set by hand: log p(x | y) for each image's own
label, log p(x) = log sum_y p(y) p(x | y), log p(y | x) = log p(x, y) - log p(x); pixels dequantized as
(round(255 x) + u) / 256 with u ~ U[0, 1) drawn from a generator seeded 0. A labelled sample draws each digit
from its class's Gaussian.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from scipy.special import logsumexp

from genzoo.models.bayes import BayesClassifier

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def hand_model():
    """Ten diagonal Gaussians over the 784 pixels and an uneven prior, set by hand."""
    rng = np.random.default_rng(0)
    means, variances = rng.uniform(0, 1, (10, 784)), rng.uniform(0.05, 0.3, (10, 784))
    prior = rng.uniform(0.5, 2.0, 10)
    prior /= prior.sum()
    model = BayesClassifier(covariance_type="diag")
    for k, density in enumerate(model.classes):
        density.means.copy_(torch.from_numpy(means[k : k + 1]))
        density.precisions_cholesky.copy_(torch.from_numpy(1 / np.sqrt(variances[k : k + 1])))
    model.log_prior.copy_(torch.from_numpy(np.log(prior)))
    return model, means, variances, np.log(prior)


def digits(n: int, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, 256, (n, 1, 28, 28)) / 255).float()


def class_log_densities(x: torch.Tensor, means: np.ndarray, variances: np.ndarray) -> np.ndarray:
    """log p(x | y) for every class (N, 10), of x dequantized with the noise a generator seeded 0 draws."""
    u = torch.rand(x.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64).numpy()
    X = ((np.round(x.double().numpy() * 255) + u) / 256).reshape(len(x), 784)
    return np.stack([-0.5 * (np.log(2 * np.pi * v) + (X - mu) ** 2 / v).sum(1) for mu, v in zip(means, variances)], 1)


def test_log_prob_given_labels_scores_each_image_under_its_own_class(hand_model):
    model, means, variances, _ = hand_model
    x = digits(6, seed=1)
    labels = [3, 0, 3, 9, 1, 0]
    want = class_log_densities(x, means, variances)[np.arange(6), labels]
    for y in (torch.tensor(labels), labels, torch.tensor(labels)[:, None]):
        got = model.log_prob(x, y=y)
        assert got.shape == (6,) and got.dtype == torch.float32
        np.testing.assert_allclose(got.double().numpy(), want, rtol=1e-6)


def test_log_prob_without_labels_sums_the_classes_under_the_prior(hand_model):
    model, means, variances, log_prior = hand_model
    x = digits(5, seed=2)
    want = logsumexp(class_log_densities(x, means, variances) + log_prior, 1)
    got = model.log_prob(x)
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.double().numpy(), want, rtol=1e-6)


def test_the_posterior_is_bayes_rule(hand_model):
    model, means, variances, log_prior = hand_model
    # images near class means, so that the posterior is not one-hot
    rng = np.random.default_rng(3)
    x = torch.from_numpy(np.clip(means[[2, 7, 7, 4]] + rng.normal(0, 0.25, (4, 784)), 0, 1)).float()
    x = x.reshape(4, 1, 28, 28)
    joint = class_log_densities(x, means, variances) + log_prior
    got = model.predict_log_proba(x)
    assert got.shape == (4, 10) and got.dtype == torch.float32
    np.testing.assert_allclose(got.double().numpy(), joint - logsumexp(joint, 1, keepdims=True), rtol=1e-5,
                               atol=1e-4)
    assert np.array_equal(model.predict(x).numpy(), joint.argmax(1))


def test_a_labelled_sample_draws_each_digit_from_its_class_in_label_order(hand_model):
    """The classes draw in turn, 0 to 9, from one generator: each its count of standard normal rows, after
    choosing among its one component; draws clipped to [0, 1]."""
    model, means, variances, _ = hand_model
    y = torch.tensor([5, 2, 5, 0, 2, 5])
    got = model.sample(6, y=y, generator=torch.Generator().manual_seed(4))
    g = torch.Generator().manual_seed(4)
    want = np.zeros((6, 784))
    for label in (0, 2, 5):
        rows = np.flatnonzero(y.numpy() == label)
        torch.multinomial(torch.ones(1), len(rows), replacement=True, generator=g)
        noise = torch.randn(len(rows), 784, generator=g, dtype=torch.float64).numpy()
        want[rows] = means[label] + noise * np.sqrt(variances[label])
    assert got.shape == (6, 1, 28, 28) and got.dtype == torch.float32
    np.testing.assert_allclose(got.double().numpy().reshape(6, 784), np.clip(want, 0, 1), rtol=1e-6, atol=1e-6)
    assert torch.equal(model._sample(6, y, None), model._sample(6, y, torch.Generator().manual_seed(0)))


def labelled_digits(per_class: list[int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images in [0, 1], each class's pixels brighter around its own mean, shuffled."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0.1, 0.9, (10, 784))
    y = np.concatenate([np.full(n, k) for k, n in enumerate(per_class)])
    rng.shuffle(y)
    x = np.clip(centres[y] + rng.normal(0, 0.15, (len(y), 784)), 0, 1)
    return torch.from_numpy(np.round(x * 255) / 255).float().reshape(-1, 1, 28, 28), torch.from_numpy(y)


def test_a_fit_counts_the_prior_and_fits_each_class_to_its_own_dequantized_digits():
    """One diagonal Gaussian per digit: its mean and variance (+ reg_covar) those of the class's dequantized pixels,
    with the noise seeded from the global stream; p(y) the class frequencies; the metrics from log p(x, y)."""
    per_class = [3, 5, 4, 6, 3, 4, 5, 3, 7, 4]
    x, y = labelled_digits(per_class, seed=5)
    model = BayesClassifier(covariance_type="diag", reg_covar=0.01)
    torch.manual_seed(6)
    metrics = model.fit(x, y)
    torch.manual_seed(6)
    g = torch.Generator().manual_seed(int(torch.randint(2**31, ())))
    u = torch.rand(len(x), 784, generator=g, dtype=torch.float64).numpy()
    X = (np.round(x.reshape(len(x), -1).double().numpy() * 255) + u) / 256
    yn = y.numpy()
    np.testing.assert_allclose(model.log_prior.numpy(), np.log(np.array(per_class) / sum(per_class)), rtol=1e-12)
    means = np.stack([X[yn == k].mean(0) for k in range(10)])
    variances = np.stack([X[yn == k].var(0) for k in range(10)]) + 0.01
    for k, density in enumerate(model.classes):
        np.testing.assert_allclose(density.means.numpy()[0], means[k], atol=1e-10)
        np.testing.assert_allclose(density.precisions_cholesky.numpy()[0], 1 / np.sqrt(variances[k]), rtol=1e-6)
    joint = np.stack([-0.5 * (np.log(2 * np.pi * v) + (X - mu) ** 2 / v).sum(1) for mu, v in zip(means, variances)],
                     1) + np.log(np.array(per_class) / sum(per_class))
    log_xy = joint[np.arange(len(yn)), yn]
    assert metrics["train_log_likelihood"] == pytest.approx(log_xy.mean(), rel=1e-6)
    assert metrics["train_bits_per_dim"] == pytest.approx((-log_xy.mean() / 784 + np.log(256)) / np.log(2), rel=1e-6)
    assert metrics["train_accuracy"] == pytest.approx((joint.argmax(1) == yn).mean())
    assert metrics["mean_em_iterations"] == 2.0  # one component: the second EM iteration leaves the bound as it was
    assert set(metrics) == {"train_log_likelihood", "train_bits_per_dim", "train_accuracy", "mean_em_iterations"}


def test_a_fit_is_refused_without_labels_or_with_fewer_digits_than_components_in_a_class():
    x, y = labelled_digits([2] * 10, seed=7)
    with pytest.raises(ValueError) as caught:
        BayesClassifier(covariance_type="diag").fit(x)
    assert str(caught.value) == "bayes.fit: needs the labels y of the training digits"
    with pytest.raises(ValueError) as caught:
        BayesClassifier(covariance_type="diag", components_per_class=3).fit(x, y)
    assert str(caught.value) == ("bayes.fit: class 0 has 2 digits for components_per_class=3; need at least one "
                                 "digit per component")


def test_accuracy_counts_the_digits_predicted_as_their_labels_in_batches(hand_model):
    model = hand_model[0]
    x = digits(7, seed=8)
    predicted = model.predict(x)
    y = predicted.clone()
    y[[1, 4]] = (y[[1, 4]] + 1) % 10  # two wrong labels
    for batch_size in (1, 3, 7, 2000):
        assert model.accuracy(x, y, batch_size=batch_size) == 5 / 7


def test_each_class_is_fitted_by_em_with_the_configs_settings_and_a_seed_from_the_global_stream():
    """Two components per digit: each class's mixture is genzoo.mixture.GaussianMixture's fit of that class's
    dequantized digits with the config's settings, its random_state the next draw of the global stream; progress
    is reported after every EM iteration of every class and start."""
    from genzoo.mixture import ConvergenceWarning, GaussianMixture

    x, y = labelled_digits([4] * 10, seed=11)
    settings = dict(tol=1e-12, reg_covar=0.02, max_iter=3, n_init=2, init_params="random")  # stopped by max_iter
    model = BayesClassifier(covariance_type="diag", components_per_class=2, **settings)
    assert model.fit_iterations() == 3 * 2 * 10
    assert BayesClassifier(covariance_type="diag").fit_iterations() is None  # one Gaussian: no EM iterations
    calls = []
    not_converged = r"EM did not converge in max_iter=3 iterations \(tol=1e-12\)"
    torch.manual_seed(12)
    with pytest.warns(ConvergenceWarning, match=not_converged):
        model.fit(x, y, on_iteration=calls.append)
    torch.manual_seed(12)
    g = torch.Generator().manual_seed(int(torch.randint(2**31, ())))
    u = torch.rand(len(x), 784, generator=g, dtype=torch.float64)
    X = ((x.reshape(len(x), -1).double() * 255).round() + u) / 256
    want_calls = []
    for k, density in enumerate(model.classes):
        em = GaussianMixture(2, covariance_type="diag", random_state=int(torch.randint(2**31, ())),
                             on_iteration=want_calls.append, **settings)
        with warnings.catch_warnings():  # (the same warning, for the classes that stop at max_iter)
            warnings.simplefilter("ignore", ConvergenceWarning)
            em.fit(X[y == k])
        np.testing.assert_allclose(density.weights.numpy(), em.weights_.numpy(), rtol=1e-12)
        np.testing.assert_allclose(density.means.numpy(), em.means_.numpy(), rtol=1e-12)
        np.testing.assert_allclose(density.precisions_cholesky.numpy(), em.precisions_cholesky_.numpy(), rtol=1e-12)
    assert len(calls) == len(want_calls) > 20 and calls == want_calls


def test_a_class_with_as_many_digits_as_components_is_fitted_and_a_missing_class_refused():
    x, y = labelled_digits([2] * 10, seed=13)
    BayesClassifier(covariance_type="diag", components_per_class=2).fit(x, y)
    keep = y != 9
    with pytest.raises(ValueError) as caught:
        BayesClassifier(covariance_type="diag").fit(x[keep], y[keep])
    assert str(caught.value) == ("bayes.fit: class 9 has 0 digits for components_per_class=1; need at least one "
                                 "digit per component")


def test_the_training_metrics_score_the_first_10000_digits():
    """Of 10,001 training digits, the figures are those of the first 10,000: the last one, far from its class,
    would move them."""
    x, y = labelled_digits([1001] + [1000] * 9, seed=14)
    x[-1] = 1 - x[-1]  # a negative image
    model = BayesClassifier(covariance_type="diag", reg_covar=0.01)
    torch.manual_seed(15)
    metrics = model.fit(x, y)
    torch.manual_seed(15)
    g = torch.Generator().manual_seed(int(torch.randint(2**31, ())))
    u = torch.rand(len(x), 784, generator=g, dtype=torch.float64)
    X = ((x.reshape(len(x), -1).double() * 255).round() + u) / 256
    with torch.no_grad():
        joint = model.joint_log_prob(X[:10_000]).numpy()
    yn = y[:10_000].numpy()
    assert metrics["train_log_likelihood"] == pytest.approx(joint[np.arange(10_000), yn].mean(), rel=1e-9)
    assert metrics["train_accuracy"] == pytest.approx((joint.argmax(1) == yn).mean(), rel=1e-12)
    assert int(model.predict(x[-1:])) != int(y[-1])  # so that counting it would lower the accuracy
