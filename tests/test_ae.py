"""The plain autoencoder as a generative model: a Gaussian fitted to its codes in training, decoded.

Checked against the plain computation: the running mean and covariance of the codes (an exponential moving
average of each batch's mean and unbiased covariance), and prior samples whose codes have that mean and
covariance (a covariance with off-diagonal terms, so that L L^T and L^T L differ).
"""

from __future__ import annotations

import torch

from genzoo.models.ae import Autoencoder


def test_codes_are_tracked_by_a_moving_mean_and_covariance():
    model = Autoencoder(channels=4, latent_dim=3, code_momentum=0.25)
    batches = [torch.randn(16, 3) * torch.tensor([1.0, 2.0, 0.5]) + 3 for _ in range(4)]
    mean, cov = torch.zeros(3), torch.eye(3)
    for z in batches:
        model._track_codes(z)
        mean, cov = 0.75 * mean + 0.25 * z.mean(0), 0.75 * cov + 0.25 * torch.cov(z.T)
    torch.testing.assert_close(model.code_mean, mean, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model.code_cov, cov, atol=1e-5, rtol=1e-5)


def test_prior_samples_decode_codes_with_the_tracked_mean_and_covariance():
    model = Autoencoder(channels=4, latent_dim=3)
    a = torch.tensor([[1.0, 0.0, 0.0], [0.9, 0.5, 0.0], [-0.6, 0.8, 0.3]])
    model.code_cov.copy_(a @ a.T)  # strongly correlated codes
    model.code_mean.copy_(torch.tensor([1.0, -2.0, 0.5]))
    model.decode = lambda z: z  # look at the codes themselves
    z = model._sample(40_000, None, torch.Generator().manual_seed(0))
    torch.testing.assert_close(z.mean(0), model.code_mean, atol=0.03, rtol=0)
    torch.testing.assert_close(torch.cov(z.T), model.code_cov, atol=0.04, rtol=0)
