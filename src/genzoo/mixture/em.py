"""The EM mathematics of a Gaussian mixture on (N, D) tensors, as Bishop (2006), section 9.2, and scikit-learn
write it: the M-step (`estimate_gaussian_parameters`), the precisions' Cholesky factors
(`compute_precision_cholesky` and the conversions), the E-step's log densities (`estimate_log_gaussian_prob`,
`log_responsibilities`, `responsibilities`) and drawing from the components (`sample_gaussians`). Any device; on
the CPU the products go through `products` (NumPy's BLAS, LAPACK). The faster steps that reuse what does not
change in a fit are in `kernels`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import numpy as np
import torch

from .errors import SingularCovarianceError, singular_message
from .products import as_numpy, gram_matrix, matmul, routine, row_sq_norms, scipy_lapack, times_upper

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


@contextlib.contextmanager
def torch_one_thread(X: torch.Tensor, covariance_type: str) -> Iterator[None]:
    """torch on one thread while a full or tied step runs on the CPU, restored after.

    Those steps spend their time in OpenBLAS; torch only does (N, K) elementwise work between the
    calls. With both on 2 threads, each library's idle threads spin for a while after its parallel
    sections and the two take the cores from each other (benchmarks/mixture_kernels.py --threads 2 times a
    step with and without this).
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
    means = matmul(resp.T, X) / nk[:, None]  # (K, D)
    n_samples, n_features = X.shape
    if covariance_type == "full" and X.device.type == "cpu":
        covariances = torch.from_numpy(_full_covariances_numpy(as_numpy(X), as_numpy(resp), as_numpy(means),
                                                               as_numpy(nk), reg_covar))
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
        gram = gram_matrix(X) if gram is None else gram
        covariances = (gram - matmul((nk[:, None] * means).T, means)) / nk.sum()
        covariances.diagonal().add_(reg_covar)
    elif covariance_type == "diag":
        X_sq = X * X if X_sq is None else X_sq
        covariances = matmul(resp.T, X_sq) / nk[:, None] - means**2 + reg_covar  # (K, D)
    elif covariance_type == "spherical":
        # the mean over features of the diagonal covariances: only the row sums of X * X are needed
        sq_norms = row_sq_norms(X) if sq_norms is None else sq_norms
        covariances = (matmul(sq_norms[None], resp)[0] / nk - (means**2).sum(1)) / n_features + reg_covar  # (K,)
    else:
        raise ValueError(f"covariance_type={covariance_type!r}: must be one of {', '.join(COVARIANCE_TYPES)}")
    return nk, means, covariances


def _full_covariances_numpy(X: np.ndarray, resp: np.ndarray, means: np.ndarray, nk: np.ndarray,
                            reg_covar: float) -> np.ndarray:
    """The full-covariance M-step's (K, D, D) covariances on the CPU, in NumPy.

    Samples whose responsibility underflowed to exactly 0 add exactly 0: in high dimension that is most
    of them, so gathering the others saves most of the product. Each component's weighted, centred rows
    are formed in place and multiplied by BLAS syrk. NumPy, not torch, for the elementwise steps: torch's
    OpenMP threads keep spinning after each of its parallel operations and take the second core from the
    BLAS call that follows.
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
    if covariance_type in ("full", "tied") and covariances.device.type == "cpu" and scipy_lapack is not None:
        return _precision_cholesky_lapack(covariances, covariance_type, reg_covar)
    if covariance_type in ("full", "tied"):
        cov_chol, info = torch.linalg.cholesky_ex(covariances)  # lower L, L L^T = cov
        if bool((info != 0).any()):
            bad = torch.nonzero(info.reshape(-1)).flatten().tolist()
            where = f"component(s) {bad}" if covariance_type == "full" else "the tied covariance"
            raise SingularCovarianceError(singular_message(where, reg_covar))
        eye = torch.eye(covariances.shape[-1], dtype=covariances.dtype, device=covariances.device)
        eye = eye.expand_as(covariances)
        return torch.linalg.solve_triangular(cov_chol, eye, upper=False).mT  # inv(L)^T, upper
    if bool((covariances <= 0).any()):
        bad = torch.nonzero((covariances <= 0).reshape(len(covariances), -1).any(1)).flatten().tolist()
        raise SingularCovarianceError(singular_message(f"component(s) {bad}", reg_covar))
    return covariances.rsqrt()


def _precision_cholesky_lapack(
    covariances: torch.Tensor, covariance_type: str, reg_covar: float | None
) -> torch.Tensor:
    """`compute_precision_cholesky` for full and tied on the CPU: LAPACK potrf and trtri, one matrix at a time.

    Faster than torch's batched cholesky and triangular solve at these shapes, and, being unbatched,
    clear of the batched-MKL failures described at `covariances_from_precision_cholesky`.
    """
    cov = as_numpy(covariances)
    mats = cov if covariance_type == "full" else cov[None]
    potrf = routine(scipy_lapack, "potrf", cov.dtype)
    trtri = routine(scipy_lapack, "trtri", cov.dtype)
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
        raise SingularCovarianceError(singular_message(where, reg_covar))
    return torch.from_numpy(out if covariance_type == "full" else out[0])


def precision_cholesky_from_precisions(precisions: torch.Tensor, covariance_type: str) -> torch.Tensor:
    """Upper-triangular P with P P^T = precisions (for a user-given `precisions_init`).

    Raises:
        ValueError: a matrix is not positive definite; the message names the component(s).
    """
    if covariance_type in ("full", "tied"):
        # Cholesky of the flipped matrix, flipped back, is upper triangular with U U^T = precision.
        flipped = precisions.flip(-1, -2)
        if precisions.device.type == "cpu" and scipy_lapack is not None:  # one matrix at a time: see below
            mats = as_numpy(flipped.reshape(-1, *precisions.shape[-2:]))
            potrf = routine(scipy_lapack, "potrf", mats.dtype)
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
        if precisions_chol.device.type == "cpu" and scipy_lapack is not None:  # LAPACK trtri, NumPy's syrk
            mats = as_numpy(precisions_chol.reshape(-1, *precisions_chol.shape[-2:]))
            trtri = routine(scipy_lapack, "trtri", mats.dtype)
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
        # one (N, D) array reused by every component
        out = np.empty(X.shape, dtype=as_numpy(X).dtype) if X.device.type == "cpu" else None
        for k in range(n_components):
            y = times_upper(X, precisions_chol[k], out)  # (N, D)
            shift = means[k] @ precisions_chol[k]  # (D,)
            if out is not None:  # NumPy in place: see _full_covariances_numpy for why not torch
                y_np = as_numpy(y)
                y_np -= as_numpy(shift)
            else:
                y -= shift
            maha[:, k] = row_sq_norms(y)
    elif covariance_type == "tied":
        log_det = precisions_chol.diagonal().log().sum()
        y = times_upper(X, precisions_chol)  # (N, D)
        mu = means @ precisions_chol  # (K, D)
        maha = row_sq_norms(y)[:, None] - 2 * matmul(y, mu.T) + (mu * mu).sum(1)
    elif covariance_type == "diag":
        log_det = precisions_chol.log().sum(1)
        prec = precisions_chol**2  # (K, D)
        X_sq = X * X if X_sq is None else X_sq
        maha = (means**2 * prec).sum(1) - 2 * matmul(X, (means * prec).T) + matmul(X_sq, prec.T)
    elif covariance_type == "spherical":
        log_det = n_features * precisions_chol.log()
        prec = precisions_chol**2  # (K,)
        sq_norms = row_sq_norms(X) if sq_norms is None else sq_norms
        maha = ((means**2).sum(1) - 2 * matmul(X, means.T) + sq_norms[:, None]) * prec
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


def log_responsibilities(weighted: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """E-step: from log w_k + log N(x_n | k) (N, K), log p(x_n) (N,) and the log responsibilities (N, K)."""
    log_prob_norm = torch.logsumexp(weighted, 1)
    return log_prob_norm, weighted - log_prob_norm[:, None]


def responsibilities(weighted: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """E-step for the M-step: from log w_k + log N(x_n | k) (N, K), log p(x_n) (N,) and the responsibilities (N, K).

    One exponential per entry: with m_n the row's largest entry, p(k | x_n) = exp(w_nk - m_n) / s_n and
    log p(x_n) = m_n + log s_n, s_n = sum_k exp(w_nk - m_n); `torch.logsumexp` followed by `exp` takes two.
    """
    top = weighted.amax(1, keepdim=True)  # (N, 1)
    top.masked_fill_(top.abs() == math.inf, 0)  # as logsumexp: a row of -inf gives log p = -inf
    resp = (weighted - top).exp_()
    total = resp.sum(1, keepdim=True)  # (N, 1)
    resp /= total
    return (top + total.log()).squeeze(1), resp
