"""Gaussian mixtures fitted by expectation-maximisation, in PyTorch, with scikit-learn's habits.

Follows Dempster, Laird & Rubin (1977), "Maximum likelihood from incomplete data
via the EM algorithm", in the form of Bishop (2006), *Pattern Recognition and
Machine Learning*, section 9.2, and mirrors scikit-learn's
`sklearn.mixture.GaussianMixture` step for step (same parametrisation by
Cholesky factors of the precisions, same regularisation, same stopping rule), so
that both give the same fit from the same initial parameters. Seeding is
k-means++ (Arthur & Vassilvitskii 2007); the "kmeans" initialisation runs Lloyd's
k-means (Lloyd 1982) from it.

One module a job, bottom to top:

- `products`: the matrix products, through NumPy's BLAS on the CPU;
- `em`: one EM step's mathematics on (N, D) tensors: `estimate_gaussian_parameters` (M-step),
  `compute_precision_cholesky`, `estimate_log_gaussian_prob` (E-step), `sample_gaussians`;
- `kernels`: the faster steps for one fit's data (one pass over X, sparse data, features 0 in every sample),
  each an object chosen once per fit;
- `kmeans`: k-means++ seeding and Lloyd's k-means, for the initialisation;
- `errors`: SingularCovarianceError, and NotFittedError and ConvergenceWarning, which subclass scikit-learn's;
- `estimator`: `GaussianMixture`, an estimator with scikit-learn's API, on CPU or GPU.

The genzoo model `gmm` (a mixture over MNIST pixels) lives in `genzoo.models.gmm`.
"""

from typing import Any

from .em import (
    COVARIANCE_TYPES,
    compute_precision_cholesky,
    covariances_from_precision_cholesky,
    estimate_gaussian_parameters,
    estimate_log_gaussian_prob,
    precision_cholesky_from_precisions,
    sample_gaussians,
)
from .errors import LAZY_NAMES, SingularCovarianceError, lazy_class
from .estimator import INIT_PARAMS, GaussianMixture
from .kmeans import kmeans, kmeans_plusplus

__all__ = [
    "COVARIANCE_TYPES", "INIT_PARAMS", "ConvergenceWarning", "GaussianMixture", "NotFittedError",
    "SingularCovarianceError", "compute_precision_cholesky", "covariances_from_precision_cholesky",
    "estimate_gaussian_parameters", "estimate_log_gaussian_prob", "kmeans", "kmeans_plusplus",
    "precision_cholesky_from_precisions", "sample_gaussians",
]


def __getattr__(name: str) -> Any:
    """NotFittedError and ConvergenceWarning, made on first use: importing scikit-learn takes seconds."""
    if name in LAZY_NAMES:
        return lazy_class(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
