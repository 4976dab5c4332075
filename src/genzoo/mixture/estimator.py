"""`GaussianMixture`: the estimator, with scikit-learn's API (`__init__` stores hyper-parameters, learned
attributes end in `_`, `get_params`/`set_params`, so `sklearn.base.clone`, `GridSearchCV` and pipelines take it),
on CPU or GPU. It checks its inputs, initialises, and runs EM through the kernel chosen for the fit's data."""

from __future__ import annotations

import inspect
import math
import numbers
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .em import (
    COVARIANCE_TYPES,
    compute_precision_cholesky,
    covariances_from_precision_cholesky,
    estimate_gaussian_parameters,
    log_responsibilities,
    precision_cholesky_from_precisions,
    sample_gaussians,
)
from .errors import lazy_class
from .kernels import DenseKernel, choose_kernel
from .kmeans import kmeans, kmeans_plusplus, sq_distances
from .products import row_sq_norms

# scikit-learn's four, then two of our own (see GaussianMixture's docstring)
INIT_PARAMS = ("kmeans", "k-means++", "random_from_data", "random", "k-means++_nearest", "random_from_data_nearest")


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
        return lazy_class("NotFittedError")(
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

    def _initial_resp(self, X: torch.Tensor, generator: torch.Generator, X_csr: torch.Tensor | None = None,
                      ) -> torch.Tensor:
        """(N, K) initial responsibilities by `init_params`; `X_csr`: X as a CSR tensor, if the fit made one."""
        n_samples, k = X.shape[0], self.n_components
        resp = torch.zeros(n_samples, k, dtype=X.dtype, device=X.device)
        if self.init_params == "random":
            resp = torch.rand(n_samples, k, generator=generator, dtype=X.dtype).to(X.device)
            return resp / resp.sum(1, keepdim=True)
        if self.init_params == "kmeans":
            labels = kmeans(X, k, generator, X_csr=X_csr)
            resp[torch.arange(n_samples, device=X.device), labels] = 1
            return resp
        if self.init_params.startswith("k-means++"):
            seeds = kmeans_plusplus(X, k, generator, X_csr=X_csr)
        else:
            seeds = torch.randperm(n_samples, generator=generator)[:k].to(X.device)
        if self.init_params.endswith("_nearest"):
            nearest = sq_distances(X, row_sq_norms(X), X[seeds], X_csr).argmin(1)  # (N,)
            resp[torch.arange(n_samples, device=X.device), nearest] = 1
        else:  # scikit-learn's: each seed alone is responsible for its component
            resp[seeds, torch.arange(k, device=X.device)] = 1
        return resp

    def _initialize(self, X: torch.Tensor, generator: torch.Generator, kernel: DenseKernel) -> None:
        if any(v is None for v in (self._weights_init, self._means_init, self._precisions_init)):
            resp = self._initial_resp(X, generator, kernel.X_csr)
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

    def _estimate_weighted_log_prob(self, X: torch.Tensor, kernel: DenseKernel | None = None) -> torch.Tensor:
        """log w_k + log N(x_n | k): (N, K), through the fit's kernel when X is the fit's data."""
        kernel = kernel if kernel is not None else DenseKernel(X, self.covariance_type, self.reg_covar)
        return kernel.weighted_log_prob(self._weights, self._means, self._precisions_cholesky)

    def _estimate_log_prob_resp(self, X: torch.Tensor,
                                kernel: DenseKernel | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """E-step. Returns log p(x_n) (N,) and log responsibilities (N, K)."""
        return log_responsibilities(self._estimate_weighted_log_prob(X, kernel))

    def _e_step(self, X: torch.Tensor, kernel: DenseKernel | None = None) -> tuple[float, torch.Tensor]:
        log_prob_norm, log_resp = self._estimate_log_prob_resp(X, kernel)
        return float(log_prob_norm.mean()), log_resp

    def _m_step(self, X: torch.Tensor, log_resp: torch.Tensor, kernel: DenseKernel | None = None) -> None:
        kernel = kernel if kernel is not None else DenseKernel(X, self.covariance_type, self.reg_covar)
        nk, self._means, self._covariances, self._precisions_cholesky = kernel.m_step(log_resp.exp())
        self._weights = nk / nk.sum()

    def _em_step(self, kernel: DenseKernel) -> float:
        """One E-step and M-step on the fit's data; returns the lower bound under the parameters before the step."""
        bound, nk, self._means, self._covariances, self._precisions_cholesky = kernel.em_step(
            self._weights, self._means, self._precisions_cholesky)
        self._weights = nk / nk.sum()
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
        X_checked, kernel = self._fit(X)
        return self._out(self._estimate_weighted_log_prob(X_checked, kernel).argmax(1), not _is_torch(X))

    def _fit(self, X: Any) -> tuple[torch.Tensor, DenseKernel]:
        """`fit`; returns X as the checked tensor it fitted, and the fit's kernel (`kernels.choose_kernel`)."""
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
        kernel = choose_kernel(X, self.covariance_type, self.reg_covar)  # once per fit
        best_bound, best_params, best_bounds = -math.inf, None, []
        self.converged_, best_iter = False, 0
        for init in range(1 if continuing else self.n_init):
            if not continuing:
                self._initialize(X, generator, kernel)
            # A continued fit measures its first change against the previous fit's last bound (as
            # scikit-learn does), so repeated one-iteration fits can detect convergence.
            start = getattr(self, "lower_bound_", -math.inf) if continuing else -math.inf
            bound, bounds, converged, n_iter = start, [], False, 0
            for n_iter in range(1, self.max_iter + 1):
                previous = bound
                bound = self._em_step(kernel)
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
                lazy_class("ConvergenceWarning"),
                stacklevel=3,
            )
        self._set_parameters(best_params)
        self.n_iter_, self.lower_bound_, self.lower_bounds_ = best_iter, best_bound, best_bounds
        self.n_features_in_ = X.shape[1]
        return X, kernel

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
