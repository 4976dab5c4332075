"""The fast paths of EM, each a kernel object chosen once per fit (`choose_kernel`) for the fit's data and
covariance type: the estimator calls its `em_step`, `weighted_log_prob` and `m_step` and never asks which it has.

- `DenseKernel`: the plain steps of `em` on any device, with what does not change during a fit computed once
  (X * X for diag on a GPU, the row norms for spherical, X^T X for tied).
- `FusedKernel` (diag and spherical on the CPU): one pass over X per iteration for the E- and the M-step.
- `SparseDiagKernel` (diag on the CPU, X mostly exact zeros, as MNIST's pixels): the products read only the
  nonzero entries, through CSR copies of X and X * X made once per fit.
- `ActiveFullKernel` (full, features that are 0 in every sample, as MNIST's border pixels): products and
  factorisations on the other features only; exact, not approximate.

Each gives the same sums as `DenseKernel` (in another order); docs/results/classical.md has what each saves.
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import numpy as np
import torch

from .em import (
    compute_precision_cholesky,
    estimate_gaussian_parameters,
    estimate_log_gaussian_prob,
    responsibilities,
    torch_one_thread,
)
from .products import as_numpy, csr_rows, gram_matrix, matmul, row_sq_norms, scipy_sparse

BLOCK_ROWS = 2048  # rows of X per block of the fused step: a few MB, so that the block stays in cache
SPARSE_ZERO_SHARE = 0.5  # diag on the CPU: X with at least this share of exact zeros takes the sparse step
MIN_INACTIVE_SHARE = 0.05  # full on any device: at least this share of features 0 in every sample

Parameters = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # nk, means, covariances, precisions_chol
Step = tuple[float, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # the lower bound, then Parameters


# ---------------------------------------------------------------------------- the kernels


class DenseKernel:
    """The plain E- and M-steps of `em`, for any covariance type on any device; the base of the others.

    `X_sq`, `sq_norms`, `gram`: X * X (N, D), its row sums (N,) and X^T X (D, D), when a fit computes them once.
    `X_csr`: X as a CSR tensor where the kernel made one, which the fit's k-means start reuses.
    Without them (a new X in predict or score) each step computes what it needs.
    """

    def __init__(self, X: torch.Tensor, covariance_type: str, reg_covar: float, *, X_sq: torch.Tensor | None = None,
                 sq_norms: torch.Tensor | None = None, gram: torch.Tensor | None = None):
        self.X, self.covariance_type, self.reg_covar = X, covariance_type, reg_covar
        self.X_sq, self.sq_norms, self.gram = X_sq, sq_norms, gram
        self.X_csr: torch.Tensor | None = None  # X as a CSR tensor, where a kernel made one (for the k-means start)

    def weighted_log_prob(self, weights: torch.Tensor, means: torch.Tensor,
                          precisions_chol: torch.Tensor) -> torch.Tensor:
        """log w_k + log N(x_n | k): (N, K)."""
        with torch_one_thread(self.X, self.covariance_type):
            return self.log_prob(means, precisions_chol) + weights.log()

    def log_prob(self, means: torch.Tensor, precisions_chol: torch.Tensor) -> torch.Tensor:
        """log N(x_n | k): (N, K)."""
        return estimate_log_gaussian_prob(self.X, means, precisions_chol, self.covariance_type, X_sq=self.X_sq,
                                          sq_norms=self.sq_norms)

    def m_step(self, resp: torch.Tensor) -> Parameters:
        """From responsibilities (N, K): nk (K,), means (K, D), covariances and their precisions' Cholesky factors."""
        nk, means, covariances = estimate_gaussian_parameters(self.X, resp, self.reg_covar, self.covariance_type,
                                                              X_sq=self.X_sq, sq_norms=self.sq_norms, gram=self.gram)
        return nk, means, covariances, compute_precision_cholesky(covariances, self.covariance_type, self.reg_covar)

    def em_step(self, weights: torch.Tensor, means: torch.Tensor,
                precisions_chol: torch.Tensor) -> Step:
        """One E-step and M-step: the lower bound under the parameters given, then the new parameters."""
        with torch_one_thread(self.X, self.covariance_type):
            log_prob_norm, resp = responsibilities(self.weighted_log_prob(weights, means, precisions_chol))
            return (float(log_prob_norm.mean()), *self.m_step(resp))


class FusedKernel(DenseKernel):
    """Diag or spherical on the CPU: the E-step and the M-step in one pass over X (`fused_em_step`)."""

    def em_step(self, weights: torch.Tensor, means: torch.Tensor,
                precisions_chol: torch.Tensor) -> Step:
        bound, nk, means, covariances = fused_em_step(self.X, weights, means, precisions_chol, self.covariance_type,
                                                      self.reg_covar, self.sq_norms)
        return bound, nk, means, covariances, compute_precision_cholesky(covariances, self.covariance_type,
                                                                         self.reg_covar)


class SparseDiagKernel(DenseKernel):
    """Diag on the CPU with X mostly exact zeros: products through the CSR copies of `sparse_copies`."""

    def __init__(self, X: torch.Tensor, reg_covar: float, sparse: SparseCopies):
        super().__init__(X, "diag", reg_covar)
        self.sparse = sparse
        self.X_csr = sparse.X

    def log_prob(self, means: torch.Tensor, precisions_chol: torch.Tensor) -> torch.Tensor:
        return _sparse_diag_weighted_log_prob(self.sparse, None, means, precisions_chol)

    def em_step(self, weights: torch.Tensor, means: torch.Tensor,
                precisions_chol: torch.Tensor) -> Step:
        bound, nk, means, covariances = _sparse_diag_em_step(self.sparse, weights, means, precisions_chol,
                                                             self.reg_covar)
        return bound, nk, means, covariances, compute_precision_cholesky(covariances, "diag", self.reg_covar)


class ActiveFullKernel(DenseKernel):
    """Full with features that are 0 in every sample: the products on the others (`active_features`)."""

    def __init__(self, X: torch.Tensor, reg_covar: float, active: tuple[torch.Tensor, torch.Tensor, torch.Tensor]):
        super().__init__(X, "full", reg_covar)
        self.active = active

    def log_prob(self, means: torch.Tensor, precisions_chol: torch.Tensor) -> torch.Tensor:
        # a user's precisions_init may couple the inactive features to the others: then every feature counts
        if separates(precisions_chol, self.active[1]):
            return _active_full_log_prob(self.active, means, precisions_chol)
        return super().log_prob(means, precisions_chol)

    def m_step(self, resp: torch.Tensor) -> Parameters:
        return _active_full_m_step(self.active, resp, self.reg_covar, self.X.shape[1])


def choose_kernel(X: torch.Tensor, covariance_type: str, reg_covar: float) -> DenseKernel:
    """The kernel of a fit on X (N, D): the fastest that gives the plain steps' sums for this data and device."""
    cpu = X.device.type == "cpu"
    if covariance_type == "diag":
        if not cpu:
            return DenseKernel(X, covariance_type, reg_covar, X_sq=X * X)
        sparse = sparse_copies(X)
        return FusedKernel(X, covariance_type, reg_covar) if sparse is None else SparseDiagKernel(X, reg_covar, sparse)
    if covariance_type == "spherical":
        kind = FusedKernel if cpu else DenseKernel
        return kind(X, covariance_type, reg_covar, sq_norms=row_sq_norms(X))
    if covariance_type == "tied":
        return DenseKernel(X, covariance_type, reg_covar, gram=gram_matrix(X))
    active = active_features(X) if reg_covar > 0 else None  # reg_covar = 0 must meet the singular error
    return DenseKernel(X, covariance_type, reg_covar) if active is None else ActiveFullKernel(X, reg_covar, active)


# ---------------------------------------------------------------------------- what they compute


class SparseCopies(NamedTuple):
    """A mostly-zero X (N, D) as CSR tensors, made once per fit by `sparse_copies`."""

    X: torch.Tensor  # (N, D)
    X_sq: torch.Tensor  # (N, D) X * X
    X_t: list[tuple[int, torch.Tensor]]  # X^T by blocks of samples: (first sample, (D, B) CSR), see `transposed_times`
    X_sq_t: list[tuple[int, torch.Tensor]]  # the same of X * X


def sparse_copies(X: torch.Tensor) -> SparseCopies | None:
    """X, X * X and their transposes as CSR tensors, when most of X is exactly zero (as MNIST's pixels), else None.

    The diag step's four products (X and X * X times the parameters, their transposes times the
    responsibilities) then read only the nonzero pixels, the same sums in another order. Built once per fit.
    """
    if scipy_sparse is None:
        return None
    by_row = csr_rows(X, SPARSE_ZERO_SHARE)
    if by_row is None:
        return None
    crow, cols, values = by_row.crow_indices(), by_row.col_indices(), by_row.values()
    rows = scipy_sparse.csr_matrix((as_numpy(values), as_numpy(cols), as_numpy(crow)), shape=X.shape)
    n, d = X.shape
    X_t, X_sq_t = [], []
    with warnings.catch_warnings():  # torch calls its sparse CSR support beta: a UserWarning on construction
        warnings.simplefilter("ignore", UserWarning)
        for start in range(0, n, BLOCK_ROWS):
            block = rows[start : start + BLOCK_ROWS].tocsc()  # its transpose's CSR
            shape = (d, block.shape[0])
            t_crow, t_cols, t_values = (torch.from_numpy(a) for a in (block.indptr, block.indices, block.data))
            X_t.append((start, torch.sparse_csr_tensor(t_crow, t_cols, t_values, shape)))
            X_sq_t.append((start, torch.sparse_csr_tensor(t_crow, t_cols, t_values * t_values, shape)))
        return SparseCopies(by_row, torch.sparse_csr_tensor(crow, cols, values * values, (n, d)), X_t, X_sq_t)


def transposed_times(blocks: list[tuple[int, torch.Tensor]], R: torch.Tensor) -> torch.Tensor:
    """X^T (D, N) @ R (N, K) from X^T's blocks of samples (`SparseCopies.X_t`): (D, K).

    Block by block, so that the rows of R that a block gathers stay in cache: one product over all N
    samples gathers from all of R for every feature and runs slower by about a third.
    """
    out = None
    for start, block in blocks:
        part = block @ R[start : start + block.shape[1]]  # (D, K)
        out = part if out is None else out.add_(part)
    return out


def _sparse_diag_weighted_log_prob(sparse: SparseCopies, weights: torch.Tensor | None,
                                   means: torch.Tensor, precisions_chol: torch.Tensor) -> torch.Tensor:
    """`estimate_log_gaussian_prob` for diag covariances from `sparse_copies`, plus log w_k (weights None: without):
    (N, K) as X @ linear + (X * X) @ quadratic + const (`_fused_terms`), the factors folded into the (D, K)
    matrices so that the (N, K) result is built in place."""
    weights = torch.ones_like(precisions_chol[:, 0]) if weights is None else weights  # log 1 = 0
    _, linear, quadratic, const = _fused_terms(weights, means, precisions_chol, diag=True)
    weighted = sparse.X @ linear  # (N, K)
    weighted += sparse.X_sq @ quadratic
    weighted += const
    return weighted


def _sparse_diag_em_step(
    sparse: SparseCopies, weights: torch.Tensor, means: torch.Tensor, precisions_chol: torch.Tensor,
    reg_covar: float,
) -> tuple[float, torch.Tensor, torch.Tensor, torch.Tensor]:
    """`fused_em_step` for diag covariances on `sparse_copies`: the same bound, nk, means and covariances."""
    log_norm, resp = responsibilities(_sparse_diag_weighted_log_prob(sparse, weights, means, precisions_chol))
    nk = resp.sum(0) + 10 * torch.finfo(resp.dtype).eps  # as in estimate_gaussian_parameters
    new_means = transposed_times(sparse.X_t, resp).T / nk[:, None]  # (K, D)
    covariances = transposed_times(sparse.X_sq_t, resp).T / nk[:, None] - new_means**2 + reg_covar
    return float(log_norm.sum()) / len(log_norm), nk, new_means, covariances


def active_features(X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """Indices of the features nonzero in some sample (A,), of the others (I,), and X's columns of the first
    (N, A), when at least 5% of the features are 0 in every sample (MNIST's border pixels); else None.

    In a full-covariance fit such a feature has, after every M-step, mean exactly 0 and covariance reg_covar
    on the diagonal and exactly 0 elsewhere (its centred values are all exact zeros), so its precision's
    Cholesky factor is diagonal there too: the E-step's triangular products, the M-step's Gram matrices and
    the factorisations need only the active features, the others adding a constant per component. Costs one
    copy of those columns of X per fit.
    """
    active = (X != 0).any(0)  # (D,)
    if int(active.sum()) > (1 - MIN_INACTIVE_SHARE) * X.shape[1]:
        return None
    idx = active.nonzero().squeeze(1)
    return idx, (~active).nonzero().squeeze(1), X[:, idx].contiguous()


def separates(precisions_chol: torch.Tensor, inactive: torch.Tensor) -> bool:
    """Whether (K, D, D) P has only its diagonal in the rows and columns of `inactive`: true after every
    M-step on the fit's data (see `active_features`); a user's `precisions_init` need not be."""
    on_diag = torch.arange(len(inactive), device=inactive.device)
    rows = precisions_chol[:, inactive, :].clone()  # (K, I, D)
    cols = precisions_chol[:, :, inactive].clone()  # (K, D, I)
    rows[:, on_diag, inactive] = 0
    cols[:, inactive, on_diag] = 0
    return not (bool(rows.any()) or bool(cols.any()))


def _block(mats: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """(K, D, D) -> (K, A, A): the rows and columns `idx` of each matrix (NumPy on the CPU: see
    `em._full_covariances_numpy`)."""
    if mats.device.type == "cpu":
        i = as_numpy(idx)
        return torch.from_numpy(as_numpy(mats)[:, i[:, None], i])
    return mats[:, idx[:, None], idx]


def _embed(block: torch.Tensor, idx: torch.Tensor, n_features: int, diagonal: float) -> torch.Tensor:
    """(K, A, A) -> (K, D, D): `block` in the rows and columns `idx`, `diagonal` on the rest of the
    diagonal, 0 elsewhere."""
    k = len(block)
    if block.device.type == "cpu":
        i = as_numpy(idx)
        out = np.zeros((k, n_features, n_features), dtype=as_numpy(block).dtype)
        out.reshape(k, -1)[:, :: n_features + 1] = diagonal
        out[:, i[:, None], i] = as_numpy(block)
        return torch.from_numpy(out)
    out = torch.zeros(k, n_features, n_features, dtype=block.dtype, device=block.device)
    out.diagonal(dim1=-2, dim2=-1).fill_(diagonal)
    out[:, idx[:, None], idx] = block
    return out


def _active_full_log_prob(active: tuple[torch.Tensor, ...], means: torch.Tensor,
                          precisions_chol: torch.Tensor) -> torch.Tensor:
    """`estimate_log_gaussian_prob` for full covariances from `active_features` when `separates`: (N, K)."""
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
    """The full-covariance M-step and precision factors from `active_features` (reg_covar > 0):
    nk (K,), means (K, D), covariances (K, D, D) and their precisions' Cholesky factors (K, D, D)."""
    idx, _, X_active = active
    nk, means_a, cov_a = estimate_gaussian_parameters(X_active, resp, reg_covar, "full")
    chol_a = compute_precision_cholesky(cov_a, "full", reg_covar)
    means = torch.zeros(len(nk), n_features, dtype=means_a.dtype, device=means_a.device)
    means[:, idx] = means_a
    return (nk, means, _embed(cov_a, idx, n_features, reg_covar),
            _embed(chol_a, idx, n_features, 1.0 / math.sqrt(reg_covar)))  # as LAPACK's 1 / sqrt(reg_covar)


def fused_em_step(
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
    through torch's otherwise (its thread pool copes better than OpenBLAS's with a busy machine).

    Args:
        X: (N, D) CPU tensor; weights (K,), means (K, D), precisions_chol (K, D) or (K,): the current
        parameters; sq_norms: (N,) row sums of X * X (spherical).

    Returns:
        The average log-likelihood under the current parameters (the lower bound), then nk (K,),
        means (K, D) and covariances of the M-step.
    """
    mm = matmul if torch.get_num_threads() == 1 else torch.matmul
    n, d = X.shape
    diag = covariance_type == "diag"
    prec, linear, quadratic, const = _fused_terms(weights, means, precisions_chol, diag)
    if not diag:
        sq_norms = sq_norms if sq_norms is not None else row_sq_norms(X)
    first = torch.zeros_like(means)  # (K, D) sums of resp * x
    second = torch.zeros_like(means if diag else prec)  # (K, D) sums of resp * x^2, or (K,) of resp * |x|^2
    nk = torch.zeros_like(const)
    total = 0.0
    for start in range(0, n, BLOCK_ROWS):
        xb = X[start : start + BLOCK_ROWS]  # (B, D)
        sqb = None if diag else sq_norms[start : start + BLOCK_ROWS]
        total += _fused_block(mm, xb, sqb, linear, quadratic, const, prec, nk, first, second)
    nk += 10 * torch.finfo(nk.dtype).eps  # as in estimate_gaussian_parameters
    new_means = first / nk[:, None]
    if diag:
        covariances = second / nk[:, None] - new_means**2 + reg_covar
    else:
        covariances = (second / nk - (new_means**2).sum(1)) / d + reg_covar
    return total / n, nk, new_means, covariances


def _fused_terms(weights: torch.Tensor, means: torch.Tensor, precisions_chol: torch.Tensor,
                 diag: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """The parts of log w_k N(x | k) for the fused step: prec (K, D) or (K,), then x @ linear (D, K),
    + x^2 @ quadratic (D, K) (diag) or - |x|^2 prec / 2 (spherical), + const (K,)."""
    d = means.shape[1]
    prec = precisions_chol * precisions_chol  # (K, D) diag, (K,) spherical
    log_w = weights.log()  # a weight of 0 gives -inf, as in the unfused step
    if diag:
        linear = (means * prec).T.contiguous()  # (D, K)
        quadratic = (-0.5 * prec.T).contiguous()  # (D, K)
        const = -0.5 * (d * math.log(2 * math.pi) + (means * means * prec).sum(1)) + precisions_chol.log().sum(1)
    else:
        linear = (means.T * prec).contiguous()  # (D, K)
        quadratic = None
        const = -0.5 * (d * math.log(2 * math.pi) + (means * means).sum(1) * prec) + d * precisions_chol.log()
    return prec, linear, quadratic, const + log_w


def _fused_block(mm, xb: torch.Tensor, sqb: torch.Tensor | None, linear: torch.Tensor,
                 quadratic: torch.Tensor | None, const: torch.Tensor, prec: torch.Tensor, nk: torch.Tensor,
                 first: torch.Tensor, second: torch.Tensor) -> float:
    """One block of rows xb (B, D) (sqb (B,) its row norms, spherical): the E-step, its sums added in place to
    nk, first and second; returns the block's sum of log p(x)."""
    weighted = mm(xb, linear)  # (B, K) log w_k N(x | k), built up in place
    if quadratic is not None:
        xb2 = xb * xb
        weighted += mm(xb2, quadratic)
    else:
        weighted -= 0.5 * sqb[:, None] * prec
    weighted += const
    log_norm, resp = responsibilities(weighted)  # (B,), (B, K)
    nk += resp.sum(0)
    if quadratic is None:
        second += mm(sqb[None], resp)[0]
    resp_np = as_numpy(resp)
    if scipy_sparse is not None and np.count_nonzero(resp_np) < resp_np.size // 4:
        # Most responsibilities underflowed to exactly 0 (typical in high dimension): a sparse product
        # does the M-step's sums with the nonzero ones alone, the same sums without the zero terms.
        resp_t = scipy_sparse.csr_matrix(resp_np.T)  # (K, B)
        first += torch.from_numpy(resp_t @ as_numpy(xb))
        if quadratic is not None:
            second += torch.from_numpy(resp_t @ as_numpy(xb2))
    else:
        first += mm(resp.T, xb)
        if quadratic is not None:
            second += mm(resp.T, xb2)
    return float(log_norm.sum())
