"""`gmm`: a Gaussian mixture over MNIST pixels, fitted by EM (`genzoo.mixture.GaussianMixture`).

The mixture lives over the pixels or, with `pca_dim`, in a PCA subspace, with a proper
density in pixel space (the discarded directions get an isotropic Gaussian, as in
probabilistic PCA, Tipping & Bishop 1999). EM follows Dempster, Laird & Rubin (1977);
the estimator is `genzoo.mixture`.

Pixels are dequantized uniformly before fitting and scoring: a pixel value x in
[0, 1] is read as the 8-bit level k = round(255 x) and replaced by (k + u) / 256 with
u ~ U[0, 1). `log_prob` is then a density on [0, 1]^784 in nats, and
bits/dim = (-log_prob / 784 + log 256) / log 2 is the usual 8-bit figure (an upper
bound on the discrete code length).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from ..config import ConfigError, non_negative, positive
from ..constants import N_PIXELS
from ..metrics import bits_per_dim
from ..mixture import GaussianMixture, estimate_log_gaussian_prob, sample_gaussians
from .base import NO_OPTIMIZER, GenerativeModel, image_rows

# ---------------------------------------------------------------------------- pixels


def dequantize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform dequantization of 8-bit pixels: (round(255 x) + u) / 256, u ~ U[0, 1), in float64.

    Args:
        x: any shape, values in [0, 1]; generator: a CPU generator (default: seed 0, so scores are repeatable).

    Returns:
        Same shape, float64, in [0, 1).
    """
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    u = torch.rand(x.shape, generator=generator, dtype=torch.float64).to(x.device)
    return ((x.double() * 255).round() + u) / 256


class MixtureDensity(nn.Module):
    """A Gaussian mixture over flattened pixels, optionally inside a PCA subspace.

    Holds float64 buffers whose shapes come from the arguments alone, so that a model
    made from its config can load its weights from safetensors. With `pca_dim` = d > 0,
    x = mean + C^T z + r: z (d-dim) follows the mixture and the residual r, in the
    orthogonal complement, an isotropic Gaussian of variance the mean discarded
    eigenvalue; the density is then exact in pixel space (the change of basis is orthonormal).
    """

    def __init__(self, n_components: int, covariance_type: str, pca_dim: int, n_features: int = N_PIXELS):
        super().__init__()
        self.n_components, self.covariance_type = n_components, covariance_type
        self.pca_dim, self.n_features = pca_dim, n_features
        d = pca_dim or n_features
        shapes = {"full": (n_components, d, d), "tied": (d, d), "diag": (n_components, d), "spherical": (n_components,)}
        shape = shapes[covariance_type]
        f64 = torch.float64
        self.register_buffer("weights", torch.full((n_components,), 1.0 / n_components, dtype=f64))
        self.register_buffer("means", torch.zeros(n_components, d, dtype=f64))
        self.register_buffer(
            "precisions_cholesky",
            torch.ones(shape, dtype=f64)
            if covariance_type in ("diag", "spherical")
            else torch.eye(d, dtype=f64).expand(shape).clone(),
        )
        if pca_dim:
            self.register_buffer("pca_mean", torch.zeros(n_features, dtype=f64))
            self.register_buffer("pca_components", torch.eye(pca_dim, n_features, dtype=f64))  # (d, D) orthonormal rows
            self.register_buffer("pca_noise_var", torch.ones((), dtype=f64))

    def fit(self, X: torch.Tensor, **estimator_args: Any) -> GaussianMixture:
        """Fit PCA (if any) then EM on X (N, D) float64; copies the result into the buffers."""
        if self.pca_dim:
            if self.pca_dim >= self.n_features:
                raise ConfigError(f"pca_dim={self.pca_dim}: must be < {self.n_features} (0 for no PCA)")
            if len(X) <= self.pca_dim:
                raise ConfigError(
                    f"pca_dim={self.pca_dim}: PCA needs more than {self.pca_dim} images, "
                    f"this fit has {len(X)}; lower pca_dim or give more data"
                )
            mean = X.mean(0)
            centred = X - mean
            if len(X) < self.n_features:  # fewer samples than pixels: the thin SVD is much cheaper
                _, svals, vt = torch.linalg.svd(centred, full_matrices=False)
                eigvals, components = svals**2 / len(X), vt[: self.pca_dim]
            else:
                eigvals, eigvecs = torch.linalg.eigh(centred.T @ centred / len(X))  # ascending
                eigvals, components = eigvals.flip(0), eigvecs.flip(1)[:, : self.pca_dim].T
            # mean of the discarded eigenvalues, zeros included: (total variance - kept) / (D - d)
            noise_var = ((centred * centred).sum() / len(X) - eigvals[: self.pca_dim].sum()) / (
                self.n_features - self.pca_dim
            )
            self.pca_mean.copy_(mean)
            self.pca_components.copy_(components)
            self.pca_noise_var.copy_(noise_var.clamp_min(estimator_args.get("reg_covar", 1e-6)))
        estimator = GaussianMixture(self.n_components, covariance_type=self.covariance_type, **estimator_args).fit(
            self.project(X)
        )
        self.weights.copy_(estimator.weights_)
        self.means.copy_(estimator.means_)
        self.precisions_cholesky.copy_(estimator.precisions_cholesky_)
        return estimator

    def project(self, X: torch.Tensor) -> torch.Tensor:
        """(N, D) pixels -> (N, d) PCA coordinates (identity without PCA)."""
        return (X - self.pca_mean) @ self.pca_components.T if self.pca_dim else X

    def unproject(self, Z: torch.Tensor) -> torch.Tensor:
        """(N, d) PCA coordinates -> (N, D) pixels (the mean of the residual, i.e. none added)."""
        return Z @ self.pca_components + self.pca_mean if self.pca_dim else Z

    def component_log_prob(self, X: torch.Tensor) -> torch.Tensor:
        """(N, D) float64 -> (N, K) log(w_k N(x | k)) in pixel space, nats."""
        Z = self.project(X)
        out = (
            estimate_log_gaussian_prob(Z, self.means, self.precisions_cholesky, self.covariance_type)
            + self.weights.log()
        )
        if self.pca_dim:
            resid = X - self.unproject(Z)
            n_rest = self.n_features - self.pca_dim
            out = out + (
                -0.5 * n_rest * torch.log(2 * math.pi * self.pca_noise_var)
                - 0.5 * (resid * resid).sum(1, keepdim=True) / self.pca_noise_var
            )
        return out

    def log_prob(self, X: torch.Tensor) -> torch.Tensor:
        """(N, D) float64 -> (N,) log density in nats."""
        return torch.logsumexp(self.component_log_prob(X), 1)

    def sample(self, n: int, generator: torch.Generator | None, component: int | None = None) -> torch.Tensor:
        """(n, D) float64 draws (the PCA residual left out: its mean), from one component if given."""
        generator = generator if generator is not None else torch.Generator().manual_seed(0)
        if component is None:
            labels = torch.multinomial(self.weights.cpu().float(), n, replacement=True, generator=generator)
        else:
            labels = torch.full((n,), component, dtype=torch.long)
        noise = torch.randn(n, self.means.shape[1], generator=generator, dtype=torch.float64)
        Z = sample_gaussians(
            self.means,
            self.precisions_cholesky,
            self.covariance_type,
            labels.to(self.means.device),
            noise.to(self.means.device),
        )
        return self.unproject(Z)


def to_images(flat: torch.Tensor) -> torch.Tensor:
    """Flat pixel vectors (N, 784) as images (N, 1, 28, 28) in [0, 1] (a Gaussian's draw clipped)."""
    return flat.float().clamp(0, 1).reshape(-1, 1, 28, 28)


# ---------------------------------------------------------------------------- genzoo model


@dataclass
class MixtureFitConfig:
    """The EM settings shared by `gmm` and `bayes` (which fits one mixture per digit)."""

    covariance_type: Literal["full", "tied", "diag", "spherical"] = "full"
    pca_dim: int = 0  # 0: mixture on the 784 pixels; d > 0: on the first d principal components
    reg_covar: float = 1e-3  # added to every variance; dequantization noise alone (~1e-6) overfits the empty border
    tol: float = 1e-3
    max_iter: int = 100
    n_init: int = 1
    # "k-means++_nearest": k-means++ seeds, every image to its nearest seed (genzoo.mixture explains the names)
    init_params: Literal[
        "k-means++_nearest", "random_from_data_nearest", "kmeans", "k-means++", "random_from_data", "random"
    ] = "k-means++_nearest"

    def __post_init__(self):
        positive(max_iter=self.max_iter, n_init=self.n_init, reg_covar=self.reg_covar)
        if not 0 <= self.pca_dim < N_PIXELS:
            raise ConfigError(f"pca_dim={self.pca_dim!r}: must lie in [0, {N_PIXELS - 1}] (0: no PCA)")
        non_negative(tol=self.tol)


@dataclass
class GMMConfig(MixtureFitConfig):
    n_components: int = 10

    def __post_init__(self):
        super().__post_init__()
        positive(n_components=self.n_components)


class GMM(GenerativeModel):
    """`gmm`: a Gaussian mixture over MNIST pixels (or their first `pca_dim` principal components)."""

    name = "gmm"
    Config = GMMConfig
    training_mode = "fit"
    log_prob_kind = "exact"
    train_defaults = {"epochs": 1}
    unused_train_keys = {**NO_OPTIMIZER,
                         "steps": "EM counts iterations, not steps: --set max_iter=N (at most N iterations)",
                         "epochs": "EM runs to convergence over the whole training set: --set max_iter=N"}

    def __init__(self, config: Any = None, **overrides: Any):
        super().__init__(config, **overrides)
        c = self.config
        self.density = MixtureDensity(c.n_components, c.covariance_type, c.pca_dim)

    def estimator_args(self) -> dict[str, Any]:
        c = self.config
        seed = int(torch.randint(2**31, ()))  # from the trainer's seeded global RNG
        return dict(
            tol=c.tol,
            reg_covar=c.reg_covar,
            max_iter=c.max_iter,
            n_init=c.n_init,
            init_params=c.init_params,
            random_state=seed,
        )

    def fit_iterations(self) -> int:
        """At most this many EM iterations (`max_iter` per initialisation): the trainer's progress total."""
        return self.config.max_iter * self.config.n_init

    def fit(self, x: torch.Tensor, y: torch.Tensor | None = None,
            on_iteration: Callable[[float], None] | None = None) -> dict[str, float]:
        """EM on dequantized training pixels (N, 1, 28, 28). Returns train log-likelihood, bits/dim, iterations.
        `on_iteration` is called after each EM iteration (progress)."""
        X = dequantize(x.reshape(len(x), -1), torch.Generator().manual_seed(int(torch.randint(2**31, ()))))
        estimator = self.density.fit(X, **self.estimator_args(), on_iteration=on_iteration)
        ll = self.density.log_prob(X).mean()
        return {
            "train_log_likelihood": float(ll),
            "train_bits_per_dim": float(bits_per_dim(-ll, dequantized=True)),
            "n_iter": estimator.n_iter_,
            "converged": float(estimator.converged_),
        }

    def log_prob(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Log density of the uniformly dequantized pixels (noise seeded 0), nats on [0, 1]^784. (N,)"""
        return self.density.log_prob(dequantize(x.reshape(len(x), -1))).float()

    def _sample(self, n: int, y: None, generator: torch.Generator | None) -> torch.Tensor:
        """(n, 1, 28, 28) draws, clamped to [0, 1]."""
        return to_images(self.density.sample(n, generator))

    def component_means(self) -> torch.Tensor:
        """(K, 1, 28, 28) component means as images."""
        return to_images(self.density.unproject(self.density.means))

    def pictures(self, data: Any = None, per_component: int = 8) -> dict[str, torch.Tensor]:
        """components.png (the means, 10 a row) and component_samples.png (one row of samples per component).

        `data` (the Dataset) is not needed here.
        """
        generator = torch.Generator().manual_seed(0)
        rows = [
            to_images(self.density.sample(per_component, generator, component=k))
            for k in range(self.config.n_components)
        ]
        return {
            "components.png": image_rows(self.component_means(), min(10, self.config.n_components)),
            "component_samples.png": torch.stack(rows),
        }
