"""Gaussian mixtures fitted by expectation-maximisation, in PyTorch, with scikit-learn's habits.

Follows Dempster, Laird & Rubin (1977), "Maximum likelihood from incomplete data
via the EM algorithm", in the form of Bishop (2006), *Pattern Recognition and
Machine Learning*, section 9.2, and mirrors scikit-learn's
`sklearn.mixture.GaussianMixture` step for step (same parametrisation by
Cholesky factors of the precisions, same regularisation, same stopping rule), so
that both give the same fit from the same initial parameters. Seeding is
k-means++ (Arthur & Vassilvitskii 2007).

Two layers, top to bottom:

1. functions for one EM step on (N, D) float64 tensors: `estimate_gaussian_parameters`
   (M-step), `compute_precision_cholesky`, `estimate_log_gaussian_prob` (E-step);
2. `GaussianMixture`, an estimator with scikit-learn's habits (`__init__` stores
   hyper-parameters, learned attributes end in `_`), on CPU or GPU.

The genzoo model `gmm` (a mixture over MNIST pixels) lives in `genzoo.models.gmm`.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
INIT_PARAMS = ("k-means++", "random_from_data", "random")


class ConvergenceWarning(UserWarning):
    """EM stopped at `max_iter` before the lower bound changed by less than `tol`."""


class SingularCovarianceError(ValueError):
    """A component's covariance is not positive definite."""


def _singular_message(where: str, reg_covar: float | None) -> str:
    reg = f"reg_covar={reg_covar!r}" if reg_covar is not None else "reg_covar"
    return (
        f"covariance of {where} is singular or not positive definite (collapsed or duplicate samples, "
        f"or a pixel that never varies); increase {reg} (e.g. 1e-3 for pixels in [0, 1]), "
        "use fewer components, or rescale the data"
    )


# ---------------------------------------------------------------------------- one EM step


def estimate_gaussian_parameters(
    X: torch.Tensor, resp: torch.Tensor, reg_covar: float, covariance_type: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """M-step: weighted counts, means and covariances from responsibilities.

    Args:
        X: (N, D) data.
        resp: (N, K) responsibilities (rows sum to 1).
        reg_covar: added to every variance (the diagonal of each covariance).
        covariance_type: "full" | "tied" | "diag" | "spherical".

    Returns:
        nk: (K,) soft counts; means: (K, D); covariances: (K, D, D) full, (D, D) tied,
        (K, D) diag, (K,) spherical.
    """
    nk = resp.sum(0) + 10 * torch.finfo(resp.dtype).eps  # (K,) no empty component divides by 0
    means = resp.T @ X / nk[:, None]  # (K, D)
    n_features = X.shape[1]
    if covariance_type == "full":
        covariances = torch.empty(len(nk), n_features, n_features, dtype=X.dtype, device=X.device)
        for k in range(len(nk)):
            diff = X - means[k]  # (N, D)
            covariances[k] = (resp[:, k, None] * diff).T @ diff / nk[k]
            covariances[k].diagonal().add_(reg_covar)
    elif covariance_type == "tied":
        covariances = (X.T @ X - (nk[:, None] * means).T @ means) / nk.sum()
        covariances.diagonal().add_(reg_covar)
    elif covariance_type in ("diag", "spherical"):
        covariances = resp.T @ (X * X) / nk[:, None] - means**2 + reg_covar  # (K, D)
        if covariance_type == "spherical":
            covariances = covariances.mean(1)
    else:
        raise ValueError(f"covariance_type={covariance_type!r}: must be one of {', '.join(COVARIANCE_TYPES)}")
    return nk, means, covariances


def compute_precision_cholesky(covariances: torch.Tensor, covariance_type: str, reg_covar: float | None = None) -> torch.Tensor:
    """Upper-triangular P with P P^T = inverse covariance (1 / std for diag and spherical).

    Args:
        covariances: as returned by `estimate_gaussian_parameters`.
        covariance_type: "full" | "tied" | "diag" | "spherical".
        reg_covar: only used to name the value to raise in the error message.

    Returns:
        Same shape as `covariances`.

    Raises:
        SingularCovarianceError: a covariance is not positive definite; the message names reg_covar.
    """
    if covariance_type in ("full", "tied"):
        cov_chol, info = torch.linalg.cholesky_ex(covariances)  # lower L, L L^T = cov
        if bool((info != 0).any()):
            bad = torch.nonzero(info.reshape(-1)).flatten().tolist()
            where = f"component(s) {bad}" if covariance_type == "full" else "the tied covariance"
            raise SingularCovarianceError(_singular_message(where, reg_covar))
        eye = torch.eye(covariances.shape[-1], dtype=covariances.dtype, device=covariances.device)
        eye = eye.expand_as(covariances)
        return torch.linalg.solve_triangular(cov_chol, eye, upper=False).mT  # inv(L)^T, upper
    if bool((covariances <= 0).any()):
        bad = torch.nonzero((covariances <= 0).reshape(len(covariances), -1).any(1)).flatten().tolist()
        raise SingularCovarianceError(_singular_message(f"component(s) {bad}", reg_covar))
    return covariances.rsqrt()


def precision_cholesky_from_precisions(precisions: torch.Tensor, covariance_type: str) -> torch.Tensor:
    """Upper-triangular P with P P^T = precisions (for user-given `precisions_init`)."""
    if covariance_type in ("full", "tied"):
        # Cholesky of the flipped matrix, flipped back, is upper triangular with U U^T = precision.
        flipped = precisions.flip(-1, -2)
        chol, info = torch.linalg.cholesky_ex(flipped)
        if bool((info != 0).any()):
            raise SingularCovarianceError("precisions_init: not positive definite; pass symmetric positive-definite precisions")
        return chol.flip(-1, -2)
    if bool((precisions <= 0).any()):
        raise SingularCovarianceError("precisions_init: not positive; pass variances' inverses > 0")
    return precisions.sqrt()


def estimate_log_gaussian_prob(X: torch.Tensor, means: torch.Tensor, precisions_chol: torch.Tensor, covariance_type: str) -> torch.Tensor:
    """E-step kernel: log N(x_n | mu_k, Sigma_k) for every sample and component.

    Args:
        X: (N, D); means: (K, D); precisions_chol: from `compute_precision_cholesky`.

    Returns:
        (N, K) log densities in nats.
    """
    n_components, n_features = means.shape
    if covariance_type == "full":
        log_det = precisions_chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)  # (K,)
        maha = torch.empty(X.shape[0], n_components, dtype=X.dtype, device=X.device)
        for k in range(n_components):
            y = X @ precisions_chol[k] - means[k] @ precisions_chol[k]  # (N, D)
            maha[:, k] = (y * y).sum(1)
    elif covariance_type == "tied":
        log_det = precisions_chol.diagonal().log().sum()
        y = X @ precisions_chol  # (N, D)
        mu = means @ precisions_chol  # (K, D)
        maha = (y * y).sum(1, keepdim=True) - 2 * y @ mu.T + (mu * mu).sum(1)
    elif covariance_type == "diag":
        log_det = precisions_chol.log().sum(1)
        prec = precisions_chol**2  # (K, D)
        maha = (means**2 * prec).sum(1) - 2 * X @ (means * prec).T + (X**2) @ prec.T
    elif covariance_type == "spherical":
        log_det = n_features * precisions_chol.log()
        prec = precisions_chol**2  # (K,)
        maha = (means**2).sum(1) * prec - 2 * X @ means.T * prec + (X**2).sum(1, keepdim=True) * prec
    else:
        raise ValueError(f"covariance_type={covariance_type!r}: must be one of {', '.join(COVARIANCE_TYPES)}")
    return -0.5 * (n_features * math.log(2 * math.pi) + maha) + log_det


def sample_gaussians(
    means: torch.Tensor, precisions_chol: torch.Tensor, covariance_type: str, labels: torch.Tensor, noise: torch.Tensor
) -> torch.Tensor:
    """Turn standard normal `noise` (n, D) into draws from the components `labels` (n,).

    With P P^T = Sigma^-1 (P upper), x = mu + P^-T z has covariance P^-T P^-1 = Sigma.
    """
    if covariance_type == "full":
        offset = torch.empty_like(noise)
        for k in labels.unique().tolist():  # one triangular solve per component, not a (n, D, D) gather
            where = labels == k
            offset[where] = torch.linalg.solve_triangular(precisions_chol[k].mT, noise[where].T, upper=False).T
    elif covariance_type == "tied":
        offset = torch.linalg.solve_triangular(precisions_chol.mT, noise.T, upper=False).T
    elif covariance_type == "diag":
        offset = noise / precisions_chol[labels]
    else:
        offset = noise / precisions_chol[labels, None]
    return means[labels] + offset


def kmeans_plusplus(X: torch.Tensor, n_clusters: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii 2007) with greedy local trials, as in scikit-learn.

    Args:
        X: (N, D) data; n_clusters: K; generator: CPU generator for the random draws.

    Returns:
        (K,) indices of the chosen seeds into X.
    """
    n_samples = X.shape[0]
    n_trials = 2 + int(math.log(n_clusters))
    sq_norms = (X * X).sum(1)

    def sq_dist(idx: torch.Tensor) -> torch.Tensor:  # (len(idx), N)
        return (sq_norms[idx, None] - 2 * X[idx] @ X.T + sq_norms[None]).clamp_min(0)

    first = torch.randint(n_samples, (1,), generator=generator).to(X.device)
    indices = [first]
    closest = sq_dist(first)[0]  # (N,)
    for _ in range(1, n_clusters):
        probs = (closest / closest.sum()).cpu() if closest.sum() > 0 else torch.full((n_samples,), 1.0 / n_samples)
        candidates = torch.multinomial(probs, n_trials, replacement=True, generator=generator).to(X.device)
        trial = torch.minimum(closest[None], sq_dist(candidates))  # (n_trials, N)
        best = int(trial.sum(1).argmin())
        closest = trial[best]
        indices.append(candidates[best : best + 1])
    return torch.cat(indices)


# ---------------------------------------------------------------------------- estimator


class GaussianMixture:
    """A Gaussian mixture fitted by EM; scikit-learn's `GaussianMixture`, in PyTorch.

    Computes in `dtype` (float64 by default: in 784 dimensions float32 loses the
    log-likelihood) on `device` (default: the device of the data given to `fit`).
    Randomness comes from `random_state` (an int seed) through a CPU generator, so
    the same seed gives the same fit on CPU and GPU.

    Initialisation "k-means++" picks K seeds by k-means++ and assigns every sample to its
    nearest seed (scikit-learn's "k-means++" gives the seeds alone all the responsibility);
    "random_from_data" takes K random samples as seeds the same way; "random" draws
    random responsibilities. `weights_init`, `means_init`, `precisions_init` override it.

    Learned attributes: `weights_` (K,), `means_` (K, D), `covariances_`,
    `precisions_cholesky_` (shapes by covariance type, as in scikit-learn),
    `converged_`, `n_iter_`, `lower_bound_` (average log-likelihood of the best run),
    `lower_bounds_` (its value after each iteration).
    """

    def __init__(
        self,
        n_components: int = 1,
        *,
        covariance_type: str = "full",
        tol: float = 1e-3,
        reg_covar: float = 1e-6,
        max_iter: int = 100,
        n_init: int = 1,
        init_params: str = "k-means++",
        weights_init: Any = None,
        means_init: Any = None,
        precisions_init: Any = None,
        random_state: int | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float64,
        verbose: int = 0,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.device = device
        self.dtype = dtype
        self.verbose = verbose

    # ------------------------------------------------------------ checks

    def _check_parameters(self) -> None:
        if self.covariance_type not in COVARIANCE_TYPES:
            raise ValueError(f"covariance_type={self.covariance_type!r}: must be one of {', '.join(COVARIANCE_TYPES)}")
        if self.init_params not in INIT_PARAMS:
            raise ValueError(f"init_params={self.init_params!r}: must be one of {', '.join(INIT_PARAMS)}")
        for key in ("n_components", "n_init"):
            if int(getattr(self, key)) < 1:
                raise ValueError(f"{key}={getattr(self, key)!r}: must be >= 1")
        if self.max_iter < 0:
            raise ValueError(f"max_iter={self.max_iter!r}: must be >= 0")
        if self.tol < 0 or self.reg_covar < 0:
            raise ValueError(f"tol={self.tol!r}, reg_covar={self.reg_covar!r}: must be >= 0")

    def _as_tensor(self, X: Any, device: torch.device | str | None = None) -> torch.Tensor:
        X = torch.as_tensor(X)
        device = device if device is not None else (self.device if self.device is not None else X.device)
        X = X.to(device=device, dtype=self.dtype)
        if X.ndim != 2:
            raise ValueError(f"X: expected a 2-D array (n_samples, n_features), got shape {tuple(X.shape)}; reshape it, e.g. X.reshape(len(X), -1)")
        if not bool(torch.isfinite(X).all()):
            raise ValueError("X: contains NaN or infinity; remove or impute those values")
        return X

    def _check_fitted(self) -> None:
        if not hasattr(self, "means_"):
            raise RuntimeError("GaussianMixture: not fitted yet; call fit(X) first")

    def _check_X(self, X: Any) -> torch.Tensor:
        self._check_fitted()
        X = self._as_tensor(X, self.means_.device)
        if X.shape[1] != self.means_.shape[1]:
            raise ValueError(f"X: has {X.shape[1]} features, the mixture was fitted on {self.means_.shape[1]}")
        return X

    # ------------------------------------------------------------ initialisation

    def _initialize(self, X: torch.Tensor, generator: torch.Generator) -> None:
        n_samples, _ = X.shape
        given = [self.weights_init, self.means_init, self.precisions_init]
        if any(v is None for v in given):
            if self.init_params == "random":
                resp = torch.rand(n_samples, self.n_components, generator=generator, dtype=self.dtype).to(X.device)
                resp /= resp.sum(1, keepdim=True)
            else:
                if self.init_params == "k-means++":
                    seeds = kmeans_plusplus(X, self.n_components, generator)
                else:
                    seeds = torch.randperm(n_samples, generator=generator)[: self.n_components].to(X.device)
                sq = (X * X).sum(1, keepdim=True) - 2 * X @ X[seeds].T + (X[seeds] ** 2).sum(1)  # (N, K)
                resp = torch.zeros(n_samples, self.n_components, dtype=self.dtype, device=X.device)
                resp[torch.arange(n_samples, device=X.device), sq.argmin(1)] = 1
            nk, means, covariances = estimate_gaussian_parameters(X, resp, self.reg_covar, self.covariance_type)
            self.weights_, self.means_, self.covariances_ = nk / n_samples, means, covariances
        if self.weights_init is not None:
            self.weights_ = self._as_tensor(torch.as_tensor(self.weights_init)[None], X.device)[0]
        if self.means_init is not None:
            self.means_ = self._as_tensor(self.means_init, X.device)
        if self.precisions_init is not None:
            precisions = torch.as_tensor(self.precisions_init).to(device=X.device, dtype=self.dtype)
            self.precisions_cholesky_ = precision_cholesky_from_precisions(precisions, self.covariance_type)
            self.covariances_ = self._covariances_from_precision_cholesky(self.precisions_cholesky_)
        else:
            self.precisions_cholesky_ = compute_precision_cholesky(self.covariances_, self.covariance_type, self.reg_covar)

    def _covariances_from_precision_cholesky(self, pc: torch.Tensor) -> torch.Tensor:
        if self.covariance_type in ("full", "tied"):
            inv = torch.linalg.inv(pc)  # Sigma = P^-T P^-1
            return inv.mT @ inv
        return 1.0 / pc**2

    # ------------------------------------------------------------ EM

    def _estimate_weighted_log_prob(self, X: torch.Tensor) -> torch.Tensor:
        return estimate_log_gaussian_prob(X, self.means_, self.precisions_cholesky_, self.covariance_type) + self.weights_.log()

    def _estimate_log_prob_resp(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """E-step. Returns log p(x_n) (N,) and log responsibilities (N, K)."""
        weighted = self._estimate_weighted_log_prob(X)
        log_prob_norm = torch.logsumexp(weighted, 1)
        return log_prob_norm, weighted - log_prob_norm[:, None]

    def _e_step(self, X: torch.Tensor) -> tuple[float, torch.Tensor]:
        log_prob_norm, log_resp = self._estimate_log_prob_resp(X)
        return float(log_prob_norm.mean()), log_resp

    def _m_step(self, X: torch.Tensor, log_resp: torch.Tensor) -> None:
        nk, self.means_, self.covariances_ = estimate_gaussian_parameters(X, log_resp.exp(), self.reg_covar, self.covariance_type)
        self.weights_ = nk / nk.sum()
        self.precisions_cholesky_ = compute_precision_cholesky(self.covariances_, self.covariance_type, self.reg_covar)

    def _get_parameters(self) -> tuple:
        return (self.weights_, self.means_, self.covariances_, self.precisions_cholesky_)

    def _set_parameters(self, params: tuple) -> None:
        self.weights_, self.means_, self.covariances_, self.precisions_cholesky_ = params

    def fit(self, X: Any, y: Any = None) -> "GaussianMixture":
        """Fit by EM, `n_init` times from different initialisations, keeping the best lower bound.

        Args:
            X: (N, D) array or tensor.

        Returns:
            self. Warns `ConvergenceWarning` when the best run stopped at `max_iter`.
        """
        self._check_parameters()
        X = self._as_tensor(X)
        if X.shape[0] < self.n_components:
            raise ValueError(f"X: {X.shape[0]} samples for n_components={self.n_components}; need at least as many samples as components")
        generator = torch.Generator().manual_seed(self.random_state if self.random_state is not None else int(torch.randint(2**31, ())))
        best_bound, best_params, best_bounds = -math.inf, None, []
        self.converged_, best_iter = False, 0
        for init in range(self.n_init):
            self._initialize(X, generator)
            bound, bounds, converged, n_iter = -math.inf, [], False, 0
            for n_iter in range(1, self.max_iter + 1):
                previous = bound
                bound, log_resp = self._e_step(X)
                self._m_step(X, log_resp)
                bounds.append(bound)
                if self.verbose:
                    print(f"init {init} iteration {n_iter}: lower bound {bound:.6f} (change {bound - previous:.3g})")
                if abs(bound - previous) < self.tol:
                    converged = True
                    break
            if bound > best_bound or best_params is None:
                best_bound, best_params, best_bounds = bound, self._get_parameters(), bounds
                best_iter, self.converged_ = n_iter, converged
        if not self.converged_ and self.max_iter > 0:
            warnings.warn(
                f"GaussianMixture: EM did not converge in max_iter={self.max_iter} iterations (tol={self.tol}); "
                "increase max_iter or tol, or check for degenerate data",
                ConvergenceWarning,
                stacklevel=2,
            )
        self._set_parameters(best_params)
        self.n_iter_, self.lower_bound_, self.lower_bounds_ = best_iter, best_bound, best_bounds
        return self

    # ------------------------------------------------------------ use

    def score_samples(self, X: Any) -> torch.Tensor:
        """Log-likelihood of each sample. Args: X (N, D). Returns: (N,) nats."""
        return torch.logsumexp(self._estimate_weighted_log_prob(self._check_X(X)), 1)

    def score(self, X: Any, y: Any = None) -> float:
        """Average log-likelihood per sample, in nats."""
        return float(self.score_samples(X).mean())

    def predict_proba(self, X: Any) -> torch.Tensor:
        """Responsibilities. Args: X (N, D). Returns: (N, K), rows summing to 1."""
        return self._estimate_log_prob_resp(self._check_X(X))[1].exp()

    def predict(self, X: Any) -> torch.Tensor:
        """Most responsible component. Args: X (N, D). Returns: (N,) int64."""
        return self._estimate_weighted_log_prob(self._check_X(X)).argmax(1)

    def sample(self, n_samples: int = 1, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw from the fitted mixture.

        Args:
            n_samples: how many; generator: a CPU generator (default: seeded by `random_state`).

        Returns:
            X (n, D) ordered by component, and labels (n,) int64.
        """
        self._check_fitted()
        if n_samples < 1:
            raise ValueError(f"n_samples={n_samples!r}: must be >= 1")
        if generator is None:
            generator = torch.Generator().manual_seed(self.random_state or 0)
        labels = torch.multinomial(self.weights_.cpu(), n_samples, replacement=True, generator=generator).sort().values
        noise = torch.randn(n_samples, self.means_.shape[1], generator=generator, dtype=self.dtype)
        labels, noise = labels.to(self.means_.device), noise.to(self.means_.device)
        return sample_gaussians(self.means_, self.precisions_cholesky_, self.covariance_type, labels, noise), labels

    def _n_parameters(self) -> int:
        k, d = self.means_.shape
        cov = {"full": k * d * (d + 1) // 2, "tied": d * (d + 1) // 2, "diag": k * d, "spherical": k}[self.covariance_type]
        return cov + k * d + k - 1

    def bic(self, X: Any) -> float:
        """Bayesian information criterion on X (lower is better)."""
        X = self._check_X(X)
        return -2 * self.score(X) * X.shape[0] + self._n_parameters() * math.log(X.shape[0])

    def aic(self, X: Any) -> float:
        """Akaike information criterion on X (lower is better)."""
        X = self._check_X(X)
        return -2 * self.score(X) * X.shape[0] + 2 * self._n_parameters()
