"""Gaussian mixtures fitted by expectation-maximisation, in PyTorch, with scikit-learn's habits.

Follows Dempster, Laird & Rubin (1977), "Maximum likelihood from incomplete data
via the EM algorithm", in the form of Bishop (2006), *Pattern Recognition and
Machine Learning*, section 9.2, and mirrors scikit-learn's
`sklearn.mixture.GaussianMixture` step for step (same parametrisation by
Cholesky factors of the precisions, same regularisation, same stopping rule), so
that both give the same fit from the same initial parameters. Seeding is
k-means++ (Arthur & Vassilvitskii 2007); the "kmeans" initialisation runs Lloyd's
k-means (Lloyd 1982) from it.

Two layers, top to bottom:

1. functions for one EM step on (N, D) tensors: `estimate_gaussian_parameters`
   (M-step), `compute_precision_cholesky`, `estimate_log_gaussian_prob` (E-step);
2. `GaussianMixture`, an estimator with scikit-learn's API (`__init__` stores
   hyper-parameters, learned attributes end in `_`, `get_params`/`set_params`, so
   `sklearn.base.clone`, `GridSearchCV` and pipelines take it), on CPU or GPU.

On the CPU the large matrix products go through NumPy's BLAS (zero-copy views of the
tensors), with symmetric (`syrk`) and triangular (`trmm`) products where the matrices
allow: at the shapes of MNIST mixtures these measured faster than torch's products on
the CPUs we run on (benchmarks/mixture_vs_sklearn.py). Quantities that do not change
during a fit (X*X for diag, the row norms for spherical, X^T X for tied) are computed
once per fit, and the full-covariance M-step skips the samples whose responsibility
underflowed to exactly zero (most of them in 784 dimensions), which changes no value.
The diag and spherical steps make one pass over X per iteration (`_fused_em_step`); on data that
is mostly exact zeros (MNIST pixels) the diag step reads only the nonzero entries, through CSR
copies of X and X*X made once per fit (`_sparse_copies`).
A full-covariance fit on data with features that are 0 in every sample (MNIST's border pixels) runs
its products and factorisations on the other features only (`_active_features`): exact, not approximate.
NumPy's BLAS threads are NumPy's to set (threadpoolctl), not `torch.set_num_threads`.

The genzoo model `gmm` (a mixture over MNIST pixels) lives in `genzoo.models.gmm`.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import numbers
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

try:  # triangular products and Cholesky on the CPU; without SciPy torch does the same job
    from scipy import sparse as _scipy_sparse
    from scipy.linalg import blas as _scipy_blas
    from scipy.linalg import lapack as _scipy_lapack
except ImportError:  # pragma: no cover - SciPy comes with scikit-learn
    _scipy_blas = _scipy_lapack = _scipy_sparse = None

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
# scikit-learn's four, then two of our own (see GaussianMixture's docstring)
INIT_PARAMS = ("kmeans", "k-means++", "random_from_data", "random", "k-means++_nearest", "random_from_data_nearest")


class SingularCovarianceError(ValueError):
    """A component's covariance is not positive definite."""


# The not-fitted error and the convergence warning subclass scikit-learn's when it is installed, so
# that `except NotFittedError` and warning filters written for scikit-learn catch ours. Importing
# scikit-learn takes seconds, too long for every `genzoo` start, so both classes are made on first
# use (PEP 562 module __getattr__) and cached: `from genzoo.mixture import NotFittedError` works.
_LAZY_DOCS = {
    "NotFittedError": "A fitted attribute or method was used before `fit` (a ValueError and an AttributeError).",
    "ConvergenceWarning": "EM stopped at `max_iter` before the lower bound changed by less than `tol`.",
}
_LAZY_FALLBACK_BASES = {"NotFittedError": (ValueError, AttributeError), "ConvergenceWarning": (UserWarning,)}
_lazy_classes: dict[str, type] = {}


def _lazy_class(name: str) -> type:
    if name not in _lazy_classes:
        try:
            from sklearn import exceptions

            bases: tuple[type, ...] = (getattr(exceptions, name),)
        except ImportError:
            bases = _LAZY_FALLBACK_BASES[name]
        _lazy_classes[name] = type(name, bases, {"__module__": __name__, "__doc__": _LAZY_DOCS[name]})
    return _lazy_classes[name]


def __getattr__(name: str) -> Any:
    if name in _LAZY_DOCS:
        return _lazy_class(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _singular_message(where: str, reg_covar: float | None) -> str:
    reg = f"reg_covar={reg_covar!r}" if reg_covar is not None else "reg_covar"
    return (
        f"covariance of {where} is singular or not positive definite (collapsed or duplicate samples, "
        f"or a pixel that never varies); increase {reg} (e.g. 1e-3 for pixels in [0, 1]), "
        "use fewer components, or rescale the data"
    )


# ---------------------------------------------------------------------------- matrix products


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy()  # a view, no copy


def _matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b; through NumPy's BLAS on the CPU (faster than torch's here, see the module docstring)."""
    if a.device.type == "cpu":
        return torch.from_numpy(np.matmul(_np(a), _np(b)))
    return a @ b


def _gram(a: torch.Tensor) -> torch.Tensor:
    """a^T a for a (N, D): NumPy calls syrk for `a.T @ a`, half the multiplications of a general product."""
    if a.device.type == "cpu":
        x = _np(a)
        return torch.from_numpy(x.T @ x)
    return a.mT @ a


def _row_sq_norms(y: torch.Tensor) -> torch.Tensor:
    """(N, D) -> (N,) sum of squares of each row, without an (N, D) temporary on the CPU."""
    if y.device.type == "cpu":
        x = _np(y)
        return torch.from_numpy(np.einsum("ij,ij->i", x, x))
    return (y * y).sum(1)


def _routine(module: Any, name: str, dtype: np.dtype) -> Callable:
    """SciPy's BLAS or LAPACK routine `name` for float64 ("d" + name) or float32 ("s" + name) arrays."""
    return getattr(module, ("d" if dtype == np.float64 else "s") + name)


def _times_upper(X: torch.Tensor, upper: torch.Tensor, out: np.ndarray | None = None) -> torch.Tensor:
    """X (N, D) @ upper (D, D) upper triangular; on the CPU by BLAS trmm (half a general product).

    `out`, a C-ordered (N, D) array of X's dtype, is reused as the result's memory (saves allocating
    N x D per component).
    """
    if X.device.type != "cpu" or _scipy_blas is None:
        return X @ upper
    x = _np(X)
    trmm = _routine(_scipy_blas, "trmm", x.dtype)
    if out is None:
        out = np.empty_like(x, order="C")
    np.copyto(out, x)
    # X @ U = (U^T X^T)^T, and the transpose of a C-ordered (N, D) array is a Fortran-ordered (D, N)
    # one, which BLAS overwrites in place: no copy in or out.
    result = trmm(1.0, _np(upper), out.T, side=0, lower=0, trans_a=1, overwrite_b=1)
    return torch.from_numpy(result.T)


# ---------------------------------------------------------------------------- one EM step


@contextlib.contextmanager
def _torch_one_thread(X: torch.Tensor, covariance_type: str) -> Iterator[None]:
    """torch on one thread while a full or tied step runs on the CPU, restored after.

    Those steps spend their time in OpenBLAS; torch only does (N, K) elementwise work between the
    calls. With both on 2 threads, each library's idle threads spin for a while after its parallel
    sections and the two took the cores from each other: a tied iteration measured 0.33 s at 2 threads
    against 0.16 s at 1, most of the difference in torch's (N, K) operations.
    """
    if X.device.type != "cpu" or covariance_type not in ("full", "tied") or torch.get_num_threads() == 1:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)




def estimate_gaussian_parameters(
    X: torch.Tensor,
    resp: torch.Tensor,
    reg_covar: float,
    covariance_type: str,
    *,
    X_sq: torch.Tensor | None = None,
    sq_norms: torch.Tensor | None = None,
    gram: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """M-step: weighted counts, means and covariances from responsibilities.

    Args:
        X: (N, D) data.
        resp: (N, K) responsibilities (rows sum to 1).
        reg_covar: added to every variance (the diagonal of each covariance).
        covariance_type: "full" | "tied" | "diag" | "spherical".
        X_sq, sq_norms, gram: X * X (N, D), its row sums (N,) and X^T X (D, D), if already
            computed (they do not change during a fit); computed here when needed and not given.

    Returns:
        nk: (K,) soft counts; means: (K, D); covariances: (K, D, D) full, (D, D) tied,
        (K, D) diag, (K,) spherical.
    """
    nk = resp.sum(0) + 10 * torch.finfo(resp.dtype).eps  # (K,) no empty component divides by 0
    means = _matmul(resp.T, X) / nk[:, None]  # (K, D)
    n_samples, n_features = X.shape
    if covariance_type == "full" and X.device.type == "cpu":
        covariances = torch.from_numpy(_full_covariances_numpy(_np(X), _np(resp), _np(means), _np(nk), reg_covar))
    elif covariance_type == "full":
        covariances = torch.empty(len(nk), n_features, n_features, dtype=X.dtype, device=X.device)
        for k in range(len(nk)):
            r = resp[:, k]
            rows = torch.nonzero(r).flatten()
            # Samples whose responsibility underflowed to exactly 0 add exactly 0 (see _full_covariances_numpy)
            weighted = (X[rows] - means[k]) * r[rows].sqrt()[:, None]  # (n_k, D)
            covariances[k] = weighted.mT @ weighted / nk[k]
            covariances[k].diagonal().add_(reg_covar)
    elif covariance_type == "tied":
        gram = _gram(X) if gram is None else gram
        covariances = (gram - _matmul((nk[:, None] * means).T, means)) / nk.sum()
        covariances.diagonal().add_(reg_covar)
    elif covariance_type == "diag":
        X_sq = X * X if X_sq is None else X_sq
        covariances = _matmul(resp.T, X_sq) / nk[:, None] - means**2 + reg_covar  # (K, D)
    elif covariance_type == "spherical":
        # the mean over features of the diagonal covariances: only the row sums of X * X are needed
        sq_norms = _row_sq_norms(X) if sq_norms is None else sq_norms
        covariances = (_matmul(sq_norms[None], resp)[0] / nk - (means**2).sum(1)) / n_features + reg_covar  # (K,)
    else:
        raise ValueError(f"covariance_type={covariance_type!r}: must be one of {', '.join(COVARIANCE_TYPES)}")
    return nk, means, covariances


def _full_covariances_numpy(X: np.ndarray, resp: np.ndarray, means: np.ndarray, nk: np.ndarray,
                            reg_covar: float) -> np.ndarray:
    """The full-covariance M-step's (K, D, D) covariances on the CPU, in NumPy.

    Samples whose responsibility underflowed to exactly 0 add exactly 0: in high dimension that is most
    of them, so gathering the others saves most of the product. Each component's weighted, centred rows
    are formed in place and multiplied by BLAS syrk. NumPy, not torch, for the elementwise steps: torch's
    OpenMP threads keep spinning after each of its parallel operations and took the second core from the
    BLAS call that followed (measured 1.6x slower for the step at 2 threads).
    """
    covariances = np.empty((len(nk), X.shape[1], X.shape[1]), dtype=X.dtype)
    for k in range(len(nk)):
        r = resp[:, k]
        rows = np.flatnonzero(r)
        weighted = X[rows]  # (n_k, D) a copy, made in place below
        weighted -= means[k]
        weighted *= np.sqrt(r[rows])[:, None]
        np.matmul(weighted.T, weighted, out=covariances[k])  # syrk
        covariances[k] /= nk[k]
        covariances[k].flat[:: X.shape[1] + 1] += reg_covar
    return covariances


def compute_precision_cholesky(
    covariances: torch.Tensor, covariance_type: str, reg_covar: float | None = None
) -> torch.Tensor:
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
    if covariance_type in ("full", "tied") and covariances.device.type == "cpu" and _scipy_lapack is not None:
        return _precision_cholesky_lapack(covariances, covariance_type, reg_covar)
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


def _precision_cholesky_lapack(
    covariances: torch.Tensor, covariance_type: str, reg_covar: float | None
) -> torch.Tensor:
    """`compute_precision_cholesky` for full and tied on the CPU: LAPACK potrf and trtri, one matrix at a time.

    Measured faster than torch's batched cholesky and triangular solve here, and, being unbatched,
    clear of the batched-MKL failures described at `covariances_from_precision_cholesky`.
    """
    cov = _np(covariances)
    mats = cov if covariance_type == "full" else cov[None]
    potrf = _routine(_scipy_lapack, "potrf", cov.dtype)
    trtri = _routine(_scipy_lapack, "trtri", cov.dtype)
    out = np.empty_like(mats)
    bad = []
    for k, mat in enumerate(mats):
        chol, info = potrf(mat, lower=1, clean=1)  # lower L, L L^T = cov
        if info != 0:
            bad.append(k)
            continue
        inv, info = trtri(chol, lower=1)  # L^-1, lower
        out[k] = inv.T  # inv(L)^T, upper
    if bad:
        where = f"component(s) {bad}" if covariance_type == "full" else "the tied covariance"
        raise SingularCovarianceError(_singular_message(where, reg_covar))
    return torch.from_numpy(out if covariance_type == "full" else out[0])


def precision_cholesky_from_precisions(precisions: torch.Tensor, covariance_type: str) -> torch.Tensor:
    """Upper-triangular P with P P^T = precisions (for a user-given `precisions_init`).

    Raises:
        ValueError: a matrix is not positive definite; the message names the component(s).
    """
    if covariance_type in ("full", "tied"):
        # Cholesky of the flipped matrix, flipped back, is upper triangular with U U^T = precision.
        flipped = precisions.flip(-1, -2)
        if precisions.device.type == "cpu" and _scipy_lapack is not None:  # one matrix at a time: see below
            mats = _np(flipped.reshape(-1, *precisions.shape[-2:]))
            potrf = _routine(_scipy_lapack, "potrf", mats.dtype)
            factors = [potrf(mat, lower=1, clean=1) for mat in mats]
            chol = torch.from_numpy(np.stack([f for f, _ in factors])).reshape(precisions.shape)
            bad = [k for k, (_, info) in enumerate(factors) if info != 0]
        else:
            chol, info = torch.linalg.cholesky_ex(flipped)
            bad = torch.nonzero(info.reshape(-1)).flatten().tolist()
        if bad:
            which = f"component(s) {bad} are" if covariance_type == "full" else "the matrix is"
            raise ValueError(f"precisions_init: expected positive-definite matrices, {which} not; "
                             "precisions are inverse covariances")
        return chol.flip(-1, -2)
    return precisions.sqrt()


def covariances_from_precision_cholesky(precisions_chol: torch.Tensor, covariance_type: str) -> torch.Tensor:
    """Sigma = P^-T P^-1 from upper-triangular P (P P^T = Sigma^-1); 1 / P^2 for diag and spherical."""
    if covariance_type in ("full", "tied"):
        # A triangular solve, not torch.linalg.inv: besides doing a third of the work, it avoids
        # batched float64 `inv` on the CPU, which with MKL and 2 threads (torch 2.13) fails with
        # "oneMKL ERROR ... DLASWP" or hangs for batches of 200 x 200 matrices and up.
        if precisions_chol.device.type == "cpu" and _scipy_lapack is not None:  # LAPACK trtri, NumPy's syrk
            mats = _np(precisions_chol.reshape(-1, *precisions_chol.shape[-2:]))
            trtri = _routine(_scipy_lapack, "trtri", mats.dtype)
            covs = [inv.T @ inv for inv, _ in (trtri(mat, lower=0) for mat in mats)]  # P^-T P^-1
            return torch.from_numpy(np.stack(covs)).reshape(precisions_chol.shape)
        eye = torch.eye(precisions_chol.shape[-1], dtype=precisions_chol.dtype, device=precisions_chol.device)
        inv = torch.linalg.solve_triangular(precisions_chol, eye.expand_as(precisions_chol), upper=True)  # P^-1
        return inv.mT @ inv
    return 1.0 / precisions_chol**2


def estimate_log_gaussian_prob(
    X: torch.Tensor,
    means: torch.Tensor,
    precisions_chol: torch.Tensor,
    covariance_type: str,
    *,
    X_sq: torch.Tensor | None = None,
    sq_norms: torch.Tensor | None = None,
) -> torch.Tensor:
    """E-step kernel: log N(x_n | mu_k, Sigma_k) for every sample and component.

    Args:
        X: (N, D); means: (K, D); precisions_chol: from `compute_precision_cholesky`.
        X_sq, sq_norms: X * X (N, D) and its row sums (N,) if already computed (diag, spherical).

    Returns:
        (N, K) log densities in nats.
    """
    n_components, n_features = means.shape
    if covariance_type == "full":
        log_det = precisions_chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)  # (K,)
        maha = torch.empty(X.shape[0], n_components, dtype=X.dtype, device=X.device)
        out = np.empty(X.shape, dtype=_np(X).dtype) if X.device.type == "cpu" else None  # reused by every component
        for k in range(n_components):
            y = _times_upper(X, precisions_chol[k], out)  # (N, D)
            shift = means[k] @ precisions_chol[k]  # (D,)
            if out is not None:  # NumPy in place: see _full_covariances_numpy for why not torch
                y_np = _np(y)
                y_np -= _np(shift)
            else:
                y -= shift
            maha[:, k] = _row_sq_norms(y)
    elif covariance_type == "tied":
        log_det = precisions_chol.diagonal().log().sum()
        y = _times_upper(X, precisions_chol)  # (N, D)
        mu = means @ precisions_chol  # (K, D)
        maha = _row_sq_norms(y)[:, None] - 2 * _matmul(y, mu.T) + (mu * mu).sum(1)
    elif covariance_type == "diag":
        log_det = precisions_chol.log().sum(1)
        prec = precisions_chol**2  # (K, D)
        X_sq = X * X if X_sq is None else X_sq
        maha = (means**2 * prec).sum(1) - 2 * _matmul(X, (means * prec).T) + _matmul(X_sq, prec.T)
    elif covariance_type == "spherical":
        log_det = n_features * precisions_chol.log()
        prec = precisions_chol**2  # (K,)
        sq_norms = _row_sq_norms(X) if sq_norms is None else sq_norms
        maha = ((means**2).sum(1) - 2 * _matmul(X, means.T) + sq_norms[:, None]) * prec
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


_BLOCK_ROWS = 2048  # rows of X per block of the fused step: a few MB, so that the block stays in cache


_SPARSE_ZERO_SHARE = 0.5  # diag on the CPU: X with at least this share of exact zeros takes the sparse step


def _sparse_copies(X: torch.Tensor) -> tuple[torch.Tensor, ...] | None:
    """X, X * X and their transposes as CSR tensors, when most of X is exactly zero (MNIST: 81%), else None.

    The diag step's four products (X and X * X times the parameters, their transposes times the
    responsibilities) then read only the nonzero pixels: at 20,000 x 784 MNIST digits they measured about
    twice as fast as the dense blocked step on one thread, the same sums in another order. Built once per fit.
    """
    if _scipy_sparse is None or X.device.type != "cpu" or X.numel() == 0:
        return None
    flat = X.reshape(-1)
    nonzero = flat.nonzero().squeeze(1)  # (nnz,) positions in row-major order: CSR's order
    if len(nonzero) > (1 - _SPARSE_ZERO_SHARE) * len(flat):
        return None
    n, d = X.shape
    values, cols = flat[nonzero], (nonzero % d).to(torch.int32)
    crow = torch.searchsorted(nonzero, torch.arange(0, n * d + 1, d)).to(torch.int32)  # (N + 1,)
    by_column = _scipy_sparse.csr_matrix((_np(values), _np(cols), _np(crow)), shape=(n, d)).tocsc()  # X^T's CSR
    t_crow, t_cols = torch.from_numpy(by_column.indptr), torch.from_numpy(by_column.indices)
    t_values = torch.from_numpy(by_column.data)
    with warnings.catch_warnings():  # torch calls its sparse CSR support beta: a UserWarning on construction
        warnings.simplefilter("ignore", UserWarning)
        return (torch.sparse_csr_tensor(crow, cols, values, (n, d)),
                torch.sparse_csr_tensor(crow, cols, values * values, (n, d)),
                torch.sparse_csr_tensor(t_crow, t_cols, t_values, (d, n)),
                torch.sparse_csr_tensor(t_crow, t_cols, t_values * t_values, (d, n)))


def _sparse_diag_log_prob(sparse: tuple[torch.Tensor, ...], means: torch.Tensor,
                          precisions_chol: torch.Tensor) -> torch.Tensor:
    """`estimate_log_gaussian_prob` for diag covariances from `_sparse_copies`: (N, K) log densities."""
    X, X_sq = sparse[:2]
    n_features = means.shape[1]
    prec = precisions_chol * precisions_chol  # (K, D)
    maha = (means**2 * prec).sum(1) - 2 * (X @ (means * prec).T) + X_sq @ prec.T  # (N, K)
    return -0.5 * (n_features * math.log(2 * math.pi) + maha) + precisions_chol.log().sum(1)


def _sparse_diag_em_step(
    sparse: tuple[torch.Tensor, ...], weights: torch.Tensor, means: torch.Tensor, precisions_chol: torch.Tensor,
    reg_covar: float,
) -> tuple[float, torch.Tensor, torch.Tensor, torch.Tensor]:
    """`_fused_em_step` for diag covariances on `_sparse_copies`: the same bound, nk, means and covariances."""
    X_t, X_sq_t = sparse[2:]
    weighted = _sparse_diag_log_prob(sparse, means, precisions_chol) + weights.log()  # (N, K)
    log_norm = torch.logsumexp(weighted, 1)  # (N,)
    resp = (weighted - log_norm[:, None]).exp_()  # (N, K)
    nk = resp.sum(0) + 10 * torch.finfo(resp.dtype).eps  # as in estimate_gaussian_parameters
    new_means = (X_t @ resp).T / nk[:, None]  # (K, D)
    covariances = (X_sq_t @ resp).T / nk[:, None] - new_means**2 + reg_covar
    return float(log_norm.sum()) / len(log_norm), nk, new_means, covariances


_MIN_INACTIVE_SHARE = 0.05  # full on any device: at least this share of features 0 in every sample


def _active_features(X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """Indices of the features nonzero in some sample (A,), of the others (I,), and X's columns of the first
    (N, A), when at least 5% of the features are 0 in every sample (MNIST's border pixels); else None.

    In a full-covariance fit such a feature has, after every M-step, mean exactly 0 and covariance reg_covar
    on the diagonal and exactly 0 elsewhere (its centred values are all exact zeros), so its precision's
    Cholesky factor is diagonal there too: the E-step's triangular products, the M-step's Gram matrices and
    the factorisations need only the active features, the others adding a constant per component. At the
    first 5,000 / 20,000 / 60,000 MNIST digits 663 / 696 / 717 of the 784 pixels are active: 0.72 / 0.79 /
    0.84 of the products. Costs one copy of those columns of X per fit.
    """
    active = (X != 0).any(0)  # (D,)
    if int(active.sum()) > (1 - _MIN_INACTIVE_SHARE) * X.shape[1]:
        return None
    idx = active.nonzero().squeeze(1)
    return idx, (~active).nonzero().squeeze(1), X[:, idx].contiguous()


def _separates(precisions_chol: torch.Tensor, inactive: torch.Tensor) -> bool:
    """Whether (K, D, D) P has only its diagonal in the rows and columns of `inactive`: true after every
    M-step on the fit's data (see `_active_features`); a user's `precisions_init` need not be."""
    on_diag = torch.arange(len(inactive), device=inactive.device)
    rows = precisions_chol[:, inactive, :].clone()  # (K, I, D)
    cols = precisions_chol[:, :, inactive].clone()  # (K, D, I)
    rows[:, on_diag, inactive] = 0
    cols[:, inactive, on_diag] = 0
    return not (bool(rows.any()) or bool(cols.any()))


def _block(mats: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """(K, D, D) -> (K, A, A): the rows and columns `idx` of each matrix (NumPy on the CPU: see
    `_full_covariances_numpy`)."""
    if mats.device.type == "cpu":
        i = _np(idx)
        return torch.from_numpy(_np(mats)[:, i[:, None], i])
    return mats[:, idx[:, None], idx]


def _embed(block: torch.Tensor, idx: torch.Tensor, n_features: int, diagonal: float) -> torch.Tensor:
    """(K, A, A) -> (K, D, D): `block` in the rows and columns `idx`, `diagonal` on the rest of the
    diagonal, 0 elsewhere."""
    k = len(block)
    if block.device.type == "cpu":
        i = _np(idx)
        out = np.zeros((k, n_features, n_features), dtype=_np(block).dtype)
        out.reshape(k, -1)[:, :: n_features + 1] = diagonal
        out[:, i[:, None], i] = _np(block)
        return torch.from_numpy(out)
    out = torch.zeros(k, n_features, n_features, dtype=block.dtype, device=block.device)
    out.diagonal(dim1=-2, dim2=-1).fill_(diagonal)
    out[:, idx[:, None], idx] = block
    return out


def _active_full_log_prob(active: tuple[torch.Tensor, ...], means: torch.Tensor,
                          precisions_chol: torch.Tensor) -> torch.Tensor:
    """`estimate_log_gaussian_prob` for full covariances from `_active_features` when `_separates`: (N, K)."""
    idx, inactive, X_active = active
    sub = _block(precisions_chol, idx)  # (K, A, A), upper triangular
    log_prob = estimate_log_gaussian_prob(X_active, means[:, idx], sub, "full")  # (N, K) over the A features
    # An inactive feature j has x_j = 0 and only P_jj in its row and column: its Mahalanobis term is
    # (mu_j P_jj)^2 for every sample, and it adds log P_jj to the log-determinant.
    p_jj = precisions_chol.diagonal(dim1=-2, dim2=-1)[:, inactive]  # (K, I)
    rest = (-0.5 * (math.log(2 * math.pi) + (means[:, inactive] * p_jj) ** 2) + p_jj.log()).sum(1)  # (K,)
    return log_prob + rest


def _active_full_m_step(
    active: tuple[torch.Tensor, ...], resp: torch.Tensor, reg_covar: float, n_features: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The full-covariance M-step and precision factors from `_active_features` (reg_covar > 0):
    nk (K,), means (K, D), covariances (K, D, D) and their precisions' Cholesky factors (K, D, D)."""
    idx, _, X_active = active
    nk, means_a, cov_a = estimate_gaussian_parameters(X_active, resp, reg_covar, "full")
    chol_a = compute_precision_cholesky(cov_a, "full", reg_covar)
    means = torch.zeros(len(nk), n_features, dtype=means_a.dtype, device=means_a.device)
    means[:, idx] = means_a
    return (nk, means, _embed(cov_a, idx, n_features, reg_covar),
            _embed(chol_a, idx, n_features, 1.0 / math.sqrt(reg_covar)))  # as LAPACK's 1 / sqrt(reg_covar)


def _fused_em_step(
    X: torch.Tensor,
    weights: torch.Tensor,
    means: torch.Tensor,
    precisions_chol: torch.Tensor,
    covariance_type: str,
    reg_covar: float,
    sq_norms: torch.Tensor | None = None,
) -> tuple[float, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One E-step and the following M-step for diag or spherical covariances, in one pass over X (CPU).

    The same sums as `estimate_log_gaussian_prob`, then `estimate_gaussian_parameters`, but each block
    of rows is used for both while it is in cache, and X * X is formed per block, never for all of X:
    at these shapes the steps are limited by reading X, so this reads it once per iteration, not four
    times. The block products go through NumPy's BLAS when torch runs on one thread (faster there) and
    through torch's otherwise (its thread pool measured much faster than OpenBLAS's on a busy machine).

    Args:
        X: (N, D) CPU tensor; weights (K,), means (K, D), precisions_chol (K, D) or (K,): the current
        parameters; sq_norms: (N,) row sums of X * X (spherical).

    Returns:
        The average log-likelihood under the current parameters (the lower bound), then nk (K,),
        means (K, D) and covariances of the M-step.
    """
    mm = _matmul if torch.get_num_threads() == 1 else torch.matmul
    n, d = X.shape
    prec = precisions_chol * precisions_chol  # (K, D) diag, (K,) spherical
    log_w = weights.log()  # a weight of 0 gives -inf, as in the unfused step
    if covariance_type == "diag":
        linear = (means * prec).T.contiguous()  # (D, K)
        quadratic = (-0.5 * prec.T).contiguous()  # (D, K)
        const = -0.5 * (d * math.log(2 * math.pi) + (means * means * prec).sum(1)) + precisions_chol.log().sum(1)
        second = torch.zeros_like(means)  # (K, D) sums of resp * x^2
    else:
        linear = (means.T * prec).contiguous()  # (D, K)
        const = -0.5 * (d * math.log(2 * math.pi) + (means * means).sum(1) * prec) + d * precisions_chol.log()
        sq_norms = sq_norms if sq_norms is not None else _row_sq_norms(X)
        second = torch.zeros_like(prec)  # (K,) sums of resp * |x|^2
    const = const + log_w  # (K,)
    first = torch.zeros_like(means)  # (K, D) sums of resp * x
    nk = torch.zeros_like(log_w)
    total = 0.0
    for start in range(0, n, _BLOCK_ROWS):
        xb = X[start : start + _BLOCK_ROWS]  # (B, D)
        weighted = mm(xb, linear)  # (B, K) log w_k N(x | k), built up in place
        if covariance_type == "diag":
            xb2 = xb * xb
            weighted += mm(xb2, quadratic)
        else:
            sqb = sq_norms[start : start + _BLOCK_ROWS]
            weighted -= 0.5 * sqb[:, None] * prec
        weighted += const
        log_norm = torch.logsumexp(weighted, 1)  # (B,)
        resp = (weighted - log_norm[:, None]).exp_()  # (B, K)
        total += float(log_norm.sum())
        nk += resp.sum(0)
        if covariance_type == "spherical":
            second += mm(sqb[None], resp)[0]
        resp_np = _np(resp)
        if _scipy_sparse is not None and np.count_nonzero(resp_np) < resp_np.size // 4:
            # Most responsibilities underflowed to exactly 0 (typical in high dimension): a sparse product
            # does the M-step's sums with the nonzero ones alone, the same sums without the zero terms.
            resp_t = _scipy_sparse.csr_matrix(resp_np.T)  # (K, B)
            first += torch.from_numpy(resp_t @ _np(xb))
            if covariance_type == "diag":
                second += torch.from_numpy(resp_t @ _np(xb2))
        else:
            first += mm(resp.T, xb)
            if covariance_type == "diag":
                second += mm(resp.T, xb2)
    nk += 10 * torch.finfo(nk.dtype).eps  # as in estimate_gaussian_parameters
    new_means = first / nk[:, None]
    if covariance_type == "diag":
        covariances = second / nk[:, None] - new_means**2 + reg_covar
    else:
        covariances = (second / nk - (new_means**2).sum(1)) / d + reg_covar
    return total / n, nk, new_means, covariances


# ---------------------------------------------------------------------------- seeding and k-means


def _sq_distances(X: torch.Tensor, sq_norms: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """(N, K) squared Euclidean distances, clamped at 0 against rounding."""
    return (sq_norms[:, None] - 2 * _matmul(X, centres.T) + (centres * centres).sum(1)).clamp_min(0)


def kmeans_plusplus(X: torch.Tensor, n_clusters: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii 2007) with greedy local trials, as in scikit-learn.

    Args:
        X: (N, D) data; n_clusters: K; generator: CPU generator for the random draws.

    Returns:
        (K,) indices of the chosen seeds into X.
    """
    n_samples = X.shape[0]
    n_trials = 2 + int(math.log(n_clusters))
    sq_norms = _row_sq_norms(X)

    def sq_dist(idx: torch.Tensor) -> torch.Tensor:  # (len(idx), N)
        return _sq_distances(X, sq_norms, X[idx]).T

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


def kmeans(
    X: torch.Tensor, n_clusters: int, generator: torch.Generator, max_iter: int = 300, tol: float = 1e-4
) -> torch.Tensor:
    """Lloyd's k-means from k-means++ seeds, with scikit-learn's `KMeans` stopping rule.

    Stops when no label changes or when the centres moved by at most `tol` times the mean
    per-feature variance of X (squared distance, summed over centres). An emptied cluster is
    moved to the sample farthest from its centre, as scikit-learn does.

    Args:
        X: (N, D); n_clusters: K; generator: CPU generator for the seeding.

    Returns:
        (N,) int64 labels in [0, K).
    """
    n_samples = X.shape[0]
    sq_norms = _row_sq_norms(X)
    centres = X[kmeans_plusplus(X, n_clusters, generator)].clone()  # (K, D)
    threshold = tol * float(X.var(0, correction=0).mean())
    labels = None
    for _ in range(max_iter):
        dist = _sq_distances(X, sq_norms, centres)  # (N, K)
        new_labels = dist.argmin(1)
        if labels is not None and bool((new_labels == labels).all()):
            break
        labels = new_labels
        counts = torch.bincount(labels, minlength=n_clusters)
        sums = torch.zeros_like(centres).index_add_(0, labels, X)
        new_centres = sums / counts.clamp_min(1)[:, None].to(X.dtype)
        empty = torch.nonzero(counts == 0).flatten()
        if len(empty):
            far = dist[torch.arange(n_samples, device=X.device), labels].argsort(descending=True)[: len(empty)]
            new_centres[empty] = X[far]
        shift = float(((new_centres - centres) ** 2).sum())
        centres = new_centres
        if shift <= threshold:
            labels = _sq_distances(X, sq_norms, centres).argmin(1)
            break
    return labels


# ---------------------------------------------------------------------------- input handling


def _is_torch(X: Any) -> bool:
    return isinstance(X, torch.Tensor)


def _resolve_dtype(dtype: Any, X: Any = None) -> torch.dtype:
    """float32 or float64 from a torch dtype, a NumPy dtype or its name; None: X's float type (else float64)."""
    if dtype is None:
        given = X.dtype if X is not None and hasattr(X, "dtype") else None
        resolved = torch.float64
        if given is not None:
            resolved = given if isinstance(given, torch.dtype) else torch.from_numpy(np.empty(0, dtype=given)).dtype
        return resolved if resolved in (torch.float32, torch.float64) else torch.float64
    if isinstance(dtype, torch.dtype):
        resolved = dtype
    else:
        try:
            resolved = torch.from_numpy(np.empty(0, dtype=np.dtype(dtype))).dtype
        except TypeError as e:
            raise ValueError(f"dtype={dtype!r}: expected float32 or float64 (torch, NumPy or its name) or None") from e
    if resolved not in (torch.float32, torch.float64):
        raise ValueError(f"dtype={dtype!r}: expected float32 or float64 (torch, NumPy or its name) or None")
    return resolved


def _torch_generator(random_state: Any) -> torch.Generator:
    """A CPU torch generator from scikit-learn's `random_state` kinds, plus torch.Generator.

    None: fresh, seeded from torch's global RNG (so `torch.manual_seed` makes it repeatable); int: seeded
    with it (the same draws every time); numpy RandomState / Generator: seeded by a draw from it (which
    advances it); torch.Generator: used as it is.
    """
    if isinstance(random_state, torch.Generator):
        if random_state.device.type != "cpu":
            raise ValueError(f"random_state: expected a CPU torch.Generator, got one on {random_state.device}")
        return random_state
    if random_state is None:
        seed = int(torch.randint(2**62, ()))
    elif isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        seed = int(random_state)
    elif isinstance(random_state, np.random.RandomState):
        seed = int(random_state.randint(np.iinfo(np.int32).max))
    elif isinstance(random_state, np.random.Generator):
        seed = int(random_state.integers(2**62))
    else:
        raise ValueError(f"random_state={random_state!r}: expected None, an int, a numpy RandomState or Generator, "
                         "or a CPU torch.Generator")
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------- estimator


class GaussianMixture:
    """A Gaussian mixture fitted by EM; scikit-learn's `GaussianMixture`, in PyTorch.

    The parameters and their defaults are scikit-learn's, plus `device` and `dtype`. Computes in
    `dtype` (float64 by default: in 784 dimensions float32 loses the log-likelihood; None keeps the
    data's float type) on `device` (default: the device of the data given to `fit`).
    NumPy in, NumPy out: fitted attributes are NumPy arrays when `fit` got a NumPy array (or a list),
    torch tensors when it got a tensor; `predict` and friends return the kind they are given.

    `random_state` takes None, an int, a numpy `RandomState` or `Generator`, or a CPU `torch.Generator`.
    With None every `fit` and `sample` draws afresh (from torch's global RNG); with an int each call
    draws the same; with a generator each call advances it.

    Initialisations (`init_params`), as in scikit-learn: "kmeans" (default): responsibilities from a
    k-means labelling (Lloyd's algorithm from k-means++ seeds); "k-means++": K seeds by k-means++, each
    seed alone responsible for its component (so every covariance starts at reg_covar times the identity);
    "random_from_data": the same with K seeds drawn uniformly from the data; "random": uniform random
    responsibilities. Two of our own: "k-means++_nearest" and "random_from_data_nearest" take the same
    seeds and assign every sample to its nearest seed, so that the first covariances are those of the
    seeds' Voronoi cells rather than reg_covar * I: a start about one EM iteration ahead of scikit-learn's
    of the same seeds, without k-means' cost; the `gmm` model uses "k-means++_nearest".
    `weights_init`, `means_init`, `precisions_init` override the initialisation (with all three given it
    is skipped). `warm_start=True` makes each `fit` continue from the previous fit's parameters (one
    run, whatever `n_init`), so the lower bound never decreases from fit to fit.

    Learned attributes: `weights_` (K,), `means_` (K, D), `covariances_`, `precisions_`,
    `precisions_cholesky_` (shapes by covariance type, as in scikit-learn), `converged_`, `n_iter_`,
    `lower_bound_` (average log-likelihood of the best run), `lower_bounds_` (its value after each
    iteration), `n_features_in_`.
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
        init_params: str = "kmeans",
        weights_init: Any = None,
        means_init: Any = None,
        precisions_init: Any = None,
        random_state: Any = None,
        warm_start: bool = False,
        verbose: int = 0,
        verbose_interval: int = 10,
        device: str | torch.device | None = None,
        dtype: Any = torch.float64,
        on_iteration: Callable[[float], None] | None = None,
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
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.device = device
        self.dtype = dtype
        self.on_iteration = on_iteration  # genzoo's addition: called with the lower bound after each EM iteration

    # ------------------------------------------------------------ scikit-learn's estimator protocol

    @classmethod
    def _get_param_names(cls) -> list[str]:
        return sorted(name for name in inspect.signature(cls.__init__).parameters if name != "self")

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's parameters by name (what `sklearn.base.clone` and grid searches read)."""
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params: Any) -> GaussianMixture:
        """Set constructor parameters by name; an unknown name is an error. Returns self."""
        valid = self._get_param_names()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(f"set_params: {name!r} is not a parameter of GaussianMixture; "
                                 f"valid parameters: {', '.join(valid)}")
            setattr(self, name, value)
        return self

    def __sklearn_tags__(self) -> Any:
        # Called by scikit-learn's meta-estimators only, so scikit-learn is importable here.
        from sklearn.utils import InputTags, Tags, TargetTags

        return Tags(estimator_type="density_estimator", target_tags=TargetTags(required=False),
                    input_tags=InputTags(two_d_array=True))

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "_means")

    def __repr__(self) -> str:
        defaults = {n: p.default for n, p in inspect.signature(type(self).__init__).parameters.items() if n != "self"}
        changed = [f"{n}={getattr(self, n)!r}" for n in defaults
                   if not (getattr(self, n) is defaults[n] or (isinstance(getattr(self, n), (int, float, str))
                                                              and getattr(self, n) == defaults[n]))]
        return f"{type(self).__name__}({', '.join(changed)})"

    # ------------------------------------------------------------ fitted attributes

    def _out(self, t: torch.Tensor, numpy_out: bool | None = None) -> Any:
        numpy_out = getattr(self, "_numpy_io", False) if numpy_out is None else numpy_out
        return t.detach().cpu().numpy() if numpy_out else t

    def _fitted(self, name: str) -> torch.Tensor:
        try:
            return self.__dict__[name]
        except KeyError:
            raise self._not_fitted() from None

    def _not_fitted(self) -> Exception:
        return _lazy_class("NotFittedError")(
            "This GaussianMixture instance is not fitted yet; call fit(X) with appropriate arguments first"
        )

    def _set_fitted(self, name: str, value: Any) -> None:
        if value is None:
            self.__dict__.pop(name, None)
            return
        dtype = _resolve_dtype(self.dtype, value)
        self.__dict__[name] = torch.as_tensor(value).to(dtype=dtype)

    weights_ = property(lambda self: self._out(self._fitted("_weights")),
                        lambda self, v: self._set_fitted("_weights", v), doc="(K,) mixing weights.")
    means_ = property(lambda self: self._out(self._fitted("_means")),
                      lambda self, v: self._set_fitted("_means", v), doc="(K, D) component means.")
    covariances_ = property(lambda self: self._out(self._fitted("_covariances")),
                            lambda self, v: self._set_fitted("_covariances", v),
                            doc="(K, D, D) full, (D, D) tied, (K, D) diag, (K,) spherical.")
    precisions_cholesky_ = property(lambda self: self._out(self._fitted("_precisions_cholesky")),
                                    lambda self, v: self._set_fitted("_precisions_cholesky", v),
                                    doc="Upper-triangular P, P P^T = inverse covariance (1/std for diag, spherical).")

    @property
    def precisions_(self) -> Any:
        """Inverse covariances, shaped as `covariances_`."""
        pc = self._fitted("_precisions_cholesky")
        return self._out(pc @ pc.mT if self.covariance_type in ("full", "tied") else pc**2)

    # ------------------------------------------------------------ checks

    def _check_parameters(self) -> None:
        if self.covariance_type not in COVARIANCE_TYPES:
            raise ValueError(f"covariance_type={self.covariance_type!r}: must be one of {', '.join(COVARIANCE_TYPES)}")
        if self.init_params not in INIT_PARAMS:
            raise ValueError(f"init_params={self.init_params!r}: must be one of {', '.join(INIT_PARAMS)}")
        for key, low in (("n_components", 1), ("n_init", 1), ("max_iter", 0), ("verbose", 0), ("verbose_interval", 1)):
            value = getattr(self, key)
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < low:
                raise ValueError(f"{key}={value!r}: expected an integer >= {low}, got {type(value).__name__} {value!r}")
        for key in ("tol", "reg_covar"):
            value = getattr(self, key)
            if not isinstance(value, numbers.Real) or isinstance(value, bool) or not value >= 0:
                raise ValueError(f"{key}={value!r}: expected a number >= 0, got {type(value).__name__} {value!r}")
        if not isinstance(self.warm_start, (bool, np.bool_)):
            raise ValueError(f"warm_start={self.warm_start!r}: expected True or False")
        _resolve_dtype(self.dtype)

    def _as_tensor(
        self, X: Any, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> torch.Tensor:
        if not _is_torch(X):
            X = np.asarray(X)
            if X.dtype == object or not (np.issubdtype(X.dtype, np.number) or X.dtype == bool):
                raise ValueError(f"X: expected numbers, got an array of dtype {X.dtype}")
        X = torch.as_tensor(X)
        device = device if device is not None else (self.device if self.device is not None else X.device)
        X = X.to(device=device, dtype=dtype if dtype is not None else _resolve_dtype(self.dtype, X))
        if X.ndim != 2:
            raise ValueError(f"X: expected a 2-D array (n_samples, n_features), got shape {tuple(X.shape)}; "
                             "reshape it, e.g. X.reshape(len(X), -1)")
        # the sum is finite when every value is (one pass, no (N, D) mask); only an overflow needs the full check
        if not bool(torch.isfinite(X.sum())) and not bool(torch.isfinite(X).all()):
            raise ValueError("X: contains NaN or infinity; remove or impute those values")
        return X.contiguous()

    def _check_X(self, X: Any) -> torch.Tensor:
        means = self._fitted("_means")
        X = self._as_tensor(X, means.device, means.dtype)
        if X.shape[1] != means.shape[1]:
            raise ValueError(f"X: has {X.shape[1]} features, but this GaussianMixture was fitted on {means.shape[1]}")
        return X

    def _check_initial_parameters(self, n_features: int, device: torch.device, dtype: torch.dtype) -> None:
        """Check the shapes and values of weights_init, means_init, precisions_init; store them as tensors."""
        k, d, ct = self.n_components, n_features, self.covariance_type
        self._weights_init = self._means_init = self._precisions_init = None
        if self.weights_init is not None:
            w = self.weights_init
            w = torch.as_tensor(np.asarray(w) if not _is_torch(w) else w)
            w = w.to(device=device, dtype=dtype)
            if tuple(w.shape) != (k,):
                raise ValueError(f"weights_init: expected shape (n_components,) = ({k},), got {tuple(w.shape)}")
            if not bool(torch.isfinite(w).all()) or float(w.min()) < 0 or float(w.max()) > 1:
                raise ValueError(f"weights_init: expected values in [0, 1], got min {float(w.min()):.6g} and max "
                                 f"{float(w.max()):.6g}")
            if abs(float(w.sum()) - 1) > 1e-8:
                raise ValueError(f"weights_init: expected weights summing to 1, got sum {float(w.sum()):.10g}; "
                                 "divide them by their sum")
            self._weights_init = w
        if self.means_init is not None:
            m = torch.as_tensor(np.asarray(self.means_init) if not _is_torch(self.means_init) else self.means_init)
            m = m.to(device=device, dtype=dtype)
            if tuple(m.shape) != (k, d):
                raise ValueError(f"means_init: expected shape (n_components, n_features) = ({k}, {d}), "
                                 f"got {tuple(m.shape)}")
            if not bool(torch.isfinite(m).all()):
                raise ValueError("means_init: contains NaN or infinity")
            self._means_init = m
        if self.precisions_init is not None:
            p = self.precisions_init
            p = torch.as_tensor(np.asarray(p) if not _is_torch(p) else p).to(device=device, dtype=dtype)
            shape = {"full": (k, d, d), "tied": (d, d), "diag": (k, d), "spherical": (k,)}[ct]
            names = {"full": "(n_components, n_features, n_features)", "tied": "(n_features, n_features)",
                     "diag": "(n_components, n_features)", "spherical": "(n_components,)"}[ct]
            if tuple(p.shape) != shape:
                raise ValueError(f"precisions_init: expected shape {names} = {shape} for covariance_type={ct!r}, "
                                 f"got {tuple(p.shape)}")
            if not bool(torch.isfinite(p).all()):
                raise ValueError("precisions_init: contains NaN or infinity")
            if ct in ("full", "tied"):
                mats = p if ct == "full" else p[None]
                asym = (mats - mats.mT).abs().amax((-2, -1))  # (K,)
                scale = mats.abs().amax((-2, -1)).clamp_min(torch.finfo(dtype).tiny)
                bad = torch.nonzero(asym > 1e-8 * scale + 1e-12).flatten().tolist()
                if bad:
                    which = f"component(s) {bad} are" if ct == "full" else "the matrix is"
                    raise ValueError(f"precisions_init: expected symmetric matrices, {which} not "
                                     f"(largest |P - P^T| = {float(asym.max()):.3g}); pass (P + P^T) / 2 if that "
                                     "is what you meant")
            elif float(p.min()) <= 0:
                raise ValueError(
                    f"precisions_init: expected values > 0 (inverse variances), got min {float(p.min()):.6g}")
            self._precisions_init = p
            self._precisions_init_chol = precision_cholesky_from_precisions(p, ct)  # checks positive definiteness

    # ------------------------------------------------------------ initialisation

    def _initial_resp(self, X: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """(N, K) initial responsibilities by `init_params`."""
        n_samples, k = X.shape[0], self.n_components
        resp = torch.zeros(n_samples, k, dtype=X.dtype, device=X.device)
        if self.init_params == "random":
            resp = torch.rand(n_samples, k, generator=generator, dtype=X.dtype).to(X.device)
            return resp / resp.sum(1, keepdim=True)
        if self.init_params == "kmeans":
            labels = kmeans(X, k, generator)
            resp[torch.arange(n_samples, device=X.device), labels] = 1
            return resp
        if self.init_params.startswith("k-means++"):
            seeds = kmeans_plusplus(X, k, generator)
        else:
            seeds = torch.randperm(n_samples, generator=generator)[:k].to(X.device)
        if self.init_params.endswith("_nearest"):
            nearest = _sq_distances(X, _row_sq_norms(X), X[seeds]).argmin(1)  # (N,)
            resp[torch.arange(n_samples, device=X.device), nearest] = 1
        else:  # scikit-learn's: each seed alone is responsible for its component
            resp[seeds, torch.arange(k, device=X.device)] = 1
        return resp

    def _initialize(self, X: torch.Tensor, generator: torch.Generator) -> None:
        if any(v is None for v in (self._weights_init, self._means_init, self._precisions_init)):
            resp = self._initial_resp(X, generator)
            nk, means, covariances = estimate_gaussian_parameters(X, resp, self.reg_covar, self.covariance_type)
            self._weights, self._means, self._covariances = nk / X.shape[0], means, covariances
        if self._weights_init is not None:
            self._weights = self._weights_init.clone()
        if self._means_init is not None:
            self._means = self._means_init.clone()
        if self._precisions_init is not None:
            self._precisions_cholesky = self._precisions_init_chol.clone()
            self._covariances = covariances_from_precision_cholesky(self._precisions_cholesky, self.covariance_type)
        else:
            self._precisions_cholesky = compute_precision_cholesky(self._covariances, self.covariance_type,
                                                                   self.reg_covar)

    # ------------------------------------------------------------ EM

    def _fit_cache(self, X: torch.Tensor) -> dict[str, torch.Tensor]:
        """What the E- and M-steps need of X that does not change during a fit."""
        if self.covariance_type == "diag":
            if X.device.type != "cpu":
                return {"X_sq": X * X}
            sparse = _sparse_copies(X)
            return {} if sparse is None else {"sparse": sparse}
        if self.covariance_type == "spherical":
            return {"sq_norms": _row_sq_norms(X)}
        if self.covariance_type == "tied":
            return {"gram": _gram(X)}
        active = _active_features(X) if self.reg_covar > 0 else None  # reg_covar = 0 must meet the singular error
        return {} if active is None else {"active": active}

    def _estimate_weighted_log_prob(self, X: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        with _torch_one_thread(X, self.covariance_type):
            return self._weighted_log_prob(X, cache or {})

    def _weighted_log_prob(self, X: torch.Tensor, cache: dict) -> torch.Tensor:
        """log w_k + log N(x_n | k): (N, K)."""
        if "sparse" in cache:
            return _sparse_diag_log_prob(cache["sparse"], self._means, self._precisions_cholesky) + self._weights.log()
        if "active" in cache and _separates(self._precisions_cholesky, cache["active"][1]):
            return _active_full_log_prob(cache["active"], self._means, self._precisions_cholesky) + self._weights.log()
        log_prob = estimate_log_gaussian_prob(X, self._means, self._precisions_cholesky, self.covariance_type,
                                              X_sq=cache.get("X_sq"), sq_norms=cache.get("sq_norms"))
        return log_prob + self._weights.log()

    def _estimate_log_prob_resp(self, X: torch.Tensor, cache: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """E-step. Returns log p(x_n) (N,) and log responsibilities (N, K)."""
        weighted = self._estimate_weighted_log_prob(X, cache)
        log_prob_norm = torch.logsumexp(weighted, 1)
        return log_prob_norm, weighted - log_prob_norm[:, None]

    def _e_step(self, X: torch.Tensor, cache: dict | None = None) -> tuple[float, torch.Tensor]:
        log_prob_norm, log_resp = self._estimate_log_prob_resp(X, cache)
        return float(log_prob_norm.mean()), log_resp

    def _m_step(self, X: torch.Tensor, log_resp: torch.Tensor, cache: dict | None = None) -> None:
        if cache and "active" in cache:
            nk, self._means, self._covariances, self._precisions_cholesky = _active_full_m_step(
                cache["active"], log_resp.exp(), self.reg_covar, X.shape[1])
            self._weights = nk / nk.sum()
            return
        nk, self._means, self._covariances = estimate_gaussian_parameters(
            X, log_resp.exp(), self.reg_covar, self.covariance_type, **(cache or {}))
        self._weights = nk / nk.sum()
        self._precisions_cholesky = compute_precision_cholesky(self._covariances, self.covariance_type, self.reg_covar)

    def _em_step(self, X: torch.Tensor, cache: dict) -> float:
        """One E-step and M-step; returns the lower bound under the parameters before the step."""
        if "sparse" in cache:
            bound, nk, self._means, self._covariances = _sparse_diag_em_step(
                cache["sparse"], self._weights, self._means, self._precisions_cholesky, self.reg_covar)
            self._weights = nk / nk.sum()
            self._precisions_cholesky = compute_precision_cholesky(self._covariances, self.covariance_type,
                                                                   self.reg_covar)
            return bound
        if X.device.type == "cpu" and self.covariance_type in ("diag", "spherical"):
            bound, nk, self._means, self._covariances = _fused_em_step(
                X, self._weights, self._means, self._precisions_cholesky, self.covariance_type, self.reg_covar,
                cache.get("sq_norms"))
            self._weights = nk / nk.sum()
            self._precisions_cholesky = compute_precision_cholesky(self._covariances, self.covariance_type,
                                                                   self.reg_covar)
            return bound
        with _torch_one_thread(X, self.covariance_type):
            bound, log_resp = self._e_step(X, cache)
            self._m_step(X, log_resp, cache)
        return bound

    def _get_parameters(self) -> tuple:
        return (self._weights, self._means, self._covariances, self._precisions_cholesky)

    def _set_parameters(self, params: tuple) -> None:
        self._weights, self._means, self._covariances, self._precisions_cholesky = params

    def fit(self, X: Any, y: Any = None) -> GaussianMixture:
        """Fit by EM, `n_init` times from different initialisations, keeping the best lower bound.

        Args:
            X: (N, D) array or tensor; y: ignored (scikit-learn's signature).

        Returns:
            self. Warns `ConvergenceWarning` when the best run stopped at `max_iter`.
        """
        self._fit(X)
        return self

    def fit_predict(self, X: Any, y: Any = None) -> Any:
        """Fit, then the most responsible component of each sample of X under the fit: (N,) int64."""
        X_checked, cache = self._fit(X)
        return self._out(self._estimate_weighted_log_prob(X_checked, cache).argmax(1), not _is_torch(X))

    def _fit(self, X: Any) -> tuple[torch.Tensor, dict]:
        """`fit`; returns X as the checked tensor it fitted, and the fit's cache (see `_fit_cache`)."""
        self._check_parameters()
        numpy_io = not _is_torch(X)
        continuing = self.warm_start and hasattr(self, "_means")
        if continuing:  # compute where the previous fit did
            X = self._check_X(X)
        else:
            X = self._as_tensor(X)
        if X.shape[0] < self.n_components:
            raise ValueError(f"X: {X.shape[0]} samples for n_components={self.n_components}; "
                             "need at least as many samples as components")
        self._check_initial_parameters(X.shape[1], X.device, X.dtype)
        self._numpy_io = numpy_io
        generator = _torch_generator(self.random_state)
        cache = self._fit_cache(X)
        best_bound, best_params, best_bounds = -math.inf, None, []
        self.converged_, best_iter = False, 0
        for init in range(1 if continuing else self.n_init):
            if not continuing:
                self._initialize(X, generator)
            # A continued fit measures its first change against the previous fit's last bound (as
            # scikit-learn does), so repeated one-iteration fits can detect convergence.
            start = getattr(self, "lower_bound_", -math.inf) if continuing else -math.inf
            bound, bounds, converged, n_iter = start, [], False, 0
            for n_iter in range(1, self.max_iter + 1):
                previous = bound
                bound = self._em_step(X, cache)
                bounds.append(bound)
                if self.on_iteration is not None:  # a caller's progress bar
                    self.on_iteration(bound)
                if self.verbose and (n_iter % self.verbose_interval == 0 or n_iter == 1):
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
                _lazy_class("ConvergenceWarning"),
                stacklevel=3,
            )
        self._set_parameters(best_params)
        self.n_iter_, self.lower_bound_, self.lower_bounds_ = best_iter, best_bound, best_bounds
        self.n_features_in_ = X.shape[1]
        return X, cache

    # ------------------------------------------------------------ use

    def score_samples(self, X: Any) -> Any:
        """Log-likelihood of each sample. Args: X (N, D). Returns: (N,) nats."""
        return self._out(torch.logsumexp(self._estimate_weighted_log_prob(self._check_X(X)), 1), not _is_torch(X))

    def score(self, X: Any, y: Any = None) -> float:
        """Average log-likelihood per sample, in nats."""
        return float(torch.logsumexp(self._estimate_weighted_log_prob(self._check_X(X)), 1).mean())

    def predict_proba(self, X: Any) -> Any:
        """Responsibilities. Args: X (N, D). Returns: (N, K), rows summing to 1."""
        return self._out(self._estimate_log_prob_resp(self._check_X(X))[1].exp(), not _is_torch(X))

    def predict(self, X: Any) -> Any:
        """Most responsible component. Args: X (N, D). Returns: (N,) int64."""
        return self._out(self._estimate_weighted_log_prob(self._check_X(X)).argmax(1), not _is_torch(X))

    def sample(self, n_samples: int = 1, generator: torch.Generator | None = None) -> tuple[Any, Any]:
        """Draw from the fitted mixture.

        Args:
            n_samples: how many.
            generator: a CPU torch generator; default: from `random_state` (None: fresh draws on every
                call; an int: the same draws on every call, as in scikit-learn).

        Returns:
            X (n, D) ordered by component, and labels (n,) int64; NumPy arrays if `fit` got NumPy.
        """
        means = self._fitted("_means")
        if not isinstance(n_samples, numbers.Integral) or isinstance(n_samples, bool) or n_samples < 1:
            raise ValueError(f"n_samples={n_samples!r}: expected an integer >= 1")
        generator = generator if generator is not None else _torch_generator(self.random_state)
        labels = torch.multinomial(self._weights.cpu().double(), n_samples, replacement=True, generator=generator)
        labels = labels.sort().values
        noise = torch.randn(n_samples, means.shape[1], generator=generator, dtype=means.dtype)
        labels, noise = labels.to(means.device), noise.to(means.device)
        X = sample_gaussians(means, self._precisions_cholesky, self.covariance_type, labels, noise)
        return self._out(X), self._out(labels)

    def _n_parameters(self) -> int:
        k, d = self._fitted("_means").shape
        n_cov = {"full": k * d * (d + 1) // 2, "tied": d * (d + 1) // 2, "diag": k * d, "spherical": k}
        cov = n_cov[self.covariance_type]
        return cov + k * d + k - 1

    def bic(self, X: Any) -> float:
        """Bayesian information criterion on X (lower is better)."""
        X = self._check_X(X)
        return -2 * self.score(X) * X.shape[0] + self._n_parameters() * math.log(X.shape[0])

    def aic(self, X: Any) -> float:
        """Akaike information criterion on X (lower is better)."""
        X = self._check_X(X)
        return -2 * self.score(X) * X.shape[0] + 2 * self._n_parameters()
