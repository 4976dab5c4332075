"""Matrix products of the EM steps: through NumPy's BLAS on the CPU (zero-copy views of the tensors), with
symmetric (`syrk`) and triangular (`trmm`) products where the matrices allow, which measured faster than torch's
products at the shapes of MNIST mixtures on the CPUs we run on (docs/results/classical.md); torch's elsewhere.
NumPy's BLAS threads are NumPy's to set (threadpoolctl), not `torch.set_num_threads`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

try:  # triangular products and Cholesky on the CPU; without SciPy torch does the same job
    from scipy import sparse as scipy_sparse
    from scipy.linalg import blas as scipy_blas
    from scipy.linalg import lapack as scipy_lapack
except ImportError:  # pragma: no cover - SciPy comes with scikit-learn
    scipy_blas = scipy_lapack = scipy_sparse = None


def as_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy()  # a view, no copy


def matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b; through NumPy's BLAS on the CPU (faster than torch's here, see the module docstring)."""
    if a.device.type == "cpu":
        return torch.from_numpy(np.matmul(as_numpy(a), as_numpy(b)))
    return a @ b


def gram_matrix(a: torch.Tensor) -> torch.Tensor:
    """a^T a for a (N, D): NumPy calls syrk for `a.T @ a`, half the multiplications of a general product."""
    if a.device.type == "cpu":
        x = as_numpy(a)
        return torch.from_numpy(x.T @ x)
    return a.mT @ a


def csr_rows(X: torch.Tensor, zero_share: float = 0.5) -> torch.Tensor | None:
    """X (N, D) as a CSR tensor when at least `zero_share` of its entries are exactly 0 (as MNIST's pixels) and
    it is on the CPU, else None: products with it then read the nonzero entries only."""
    if X.device.type != "cpu" or X.ndim != 2 or X.numel() == 0:
        return None
    x = as_numpy(X.contiguous())
    n, d = x.shape
    if np.count_nonzero(x) > (1 - zero_share) * x.size:
        return None
    flat = np.flatnonzero(x)  # (nnz,) positions in row-major order: CSR's order
    crow = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.count_nonzero(x, axis=1), out=crow[1:])
    index = np.int32 if len(flat) < 2**31 else np.int64  # torch takes one index type for both
    cols = (flat % d).astype(index)
    with warnings.catch_warnings():  # torch calls its sparse CSR support beta: a UserWarning on construction
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(torch.from_numpy(crow.astype(index)), torch.from_numpy(cols),
                                       torch.from_numpy(x.reshape(-1)[flat]), (n, d))


def times(X: torch.Tensor, X_csr: torch.Tensor | None, M: torch.Tensor) -> torch.Tensor:
    """X (N, D) @ M (D, K): through `X_csr` (X's `csr_rows`) where there is one, else `matmul`."""
    return X_csr @ M if X_csr is not None else matmul(X, M)


def row_sq_norms(y: torch.Tensor) -> torch.Tensor:
    """(N, D) -> (N,) sum of squares of each row, without an (N, D) temporary on the CPU."""
    if y.device.type == "cpu":
        x = as_numpy(y)
        return torch.from_numpy(np.einsum("ij,ij->i", x, x))
    return (y * y).sum(1)


def routine(module: Any, name: str, dtype: np.dtype) -> Callable:
    """SciPy's BLAS or LAPACK routine `name` for float64 ("d" + name) or float32 ("s" + name) arrays."""
    return getattr(module, ("d" if dtype == np.float64 else "s") + name)


def times_upper(X: torch.Tensor, upper: torch.Tensor, out: np.ndarray | None = None) -> torch.Tensor:
    """X (N, D) @ upper (D, D) upper triangular; on the CPU by BLAS trmm (half a general product).

    `out`, a C-ordered (N, D) array of X's dtype, is reused as the result's memory (saves allocating
    N x D per component).
    """
    if X.device.type != "cpu" or scipy_blas is None:
        return X @ upper
    x = as_numpy(X)
    trmm = routine(scipy_blas, "trmm", x.dtype)
    if out is None:
        out = np.empty_like(x, order="C")
    np.copyto(out, x)
    # X @ U = (U^T X^T)^T, and the transpose of a C-ordered (N, D) array is a Fortran-ordered (D, N)
    # one, which BLAS overwrites in place: no copy in or out.
    result = trmm(1.0, as_numpy(upper), out.T, side=0, lower=0, trans_a=1, overwrite_b=1)
    return torch.from_numpy(result.T)
