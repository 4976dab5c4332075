"""The mixture's errors: a singular covariance, and scikit-learn's not-fitted error and convergence warning."""

from __future__ import annotations

PUBLIC_MODULE = "genzoo.mixture"  # where users import these from


class SingularCovarianceError(ValueError):
    """A component's covariance is not positive definite."""


# The not-fitted error and the convergence warning subclass scikit-learn's when it is installed, so
# that `except NotFittedError` and warning filters written for scikit-learn catch ours. Importing
# scikit-learn takes seconds, too long for every `genzoo` start, so both classes are made on first
# use (PEP 562 module __getattr__ of the package) and cached: `from genzoo.mixture import NotFittedError` works.
_LAZY_DOCS = {
    "NotFittedError": "A fitted attribute or method was used before `fit` (a ValueError and an AttributeError).",
    "ConvergenceWarning": "EM stopped at `max_iter` before the lower bound changed by less than `tol`.",
}
_LAZY_FALLBACK_BASES = {"NotFittedError": (ValueError, AttributeError), "ConvergenceWarning": (UserWarning,)}
_lazy_classes: dict[str, type] = {}


def lazy_class(name: str) -> type:
    """NotFittedError or ConvergenceWarning, made on first use."""
    if name not in _lazy_classes:
        try:
            from sklearn import exceptions

            bases: tuple[type, ...] = (getattr(exceptions, name),)
        except ImportError:
            bases = _LAZY_FALLBACK_BASES[name]
        _lazy_classes[name] = type(name, bases, {"__module__": PUBLIC_MODULE, "__doc__": _LAZY_DOCS[name]})
    return _lazy_classes[name]


LAZY_NAMES = tuple(_LAZY_DOCS)


def singular_message(where: str, reg_covar: float | None) -> str:
    """What SingularCovarianceError says: which covariance, and what to change."""
    reg = f"reg_covar={reg_covar!r}" if reg_covar is not None else "reg_covar"
    return (
        f"covariance of {where} is singular or not positive definite (collapsed or duplicate samples, "
        f"or a pixel that never varies); increase {reg} (e.g. 1e-3 for pixels in [0, 1]), "
        "use fewer components, or rescale the data"
    )
