"""`bayes`: sampling from a Bayes classifier, i.e. a class-conditional Gaussian (mixture) model.

One density p(x | y) per digit, and the class frequencies p(y): a single Gaussian per
class (the mean and covariance of that digit: Gaussian discriminant analysis, e.g.
Murphy (2012), *Machine Learning: a Probabilistic Perspective*, section 4.2; its samples
are blurry because one Gaussian cannot hold the several ways of writing a digit), or
with `components_per_class=K` a Gaussian mixture fitted by EM per class (Dempster,
Laird & Rubin 1977), whose samples are sharper. The same model classifies by Bayes'
rule, argmax_y log p(y) + log p(x | y).

The per-class densities are `gmm.MixtureDensity`: in pixel space, or in each class's
first `pca_dim` principal components with an isotropic Gaussian on the rest. Pixels are
dequantized as in `gmm` ((round(255 x) + u) / 256, noise seeded 0 when scoring), so
`log_prob` is an exact density on [0, 1]^784 in nats.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..config import positive
from ..constants import N_CLASSES, N_PIXELS
from ..metrics import bits_per_dim
from .base import NO_OPTIMIZER, GenerativeModel
from .gmm import MixtureDensity, MixtureFitConfig, dequantize, to_images


@dataclass
class BayesConfig(MixtureFitConfig):
    components_per_class: int = 1
    reg_covar: float = 0.01  # added to every pixel variance; also what keeps never-inked pixels from vetoing a class

    @property
    def conditional(self) -> bool:
        return True  # p(x | y) for each digit y: always conditional

    def __post_init__(self):
        super().__post_init__()
        positive(components_per_class=self.components_per_class)


class BayesClassifier(GenerativeModel):
    """`bayes`: p(y) p(x | y) with a Gaussian, or a Gaussian mixture, per digit."""

    name = "bayes"
    Config = BayesConfig
    training_mode = "fit"
    unused_train_keys = {**NO_OPTIMIZER, "steps": "it is fitted in one pass over the training set (EM per class: "
                         "--set max_iter=N)", "epochs": "it is fitted in one pass over the training set"}
    log_prob_kind = "exact"
    train_defaults = {"epochs": 1}

    def __init__(self, config: Any = None, **overrides: Any):
        super().__init__(config, **overrides)
        c = self.config
        self.classes = nn.ModuleList(
            [MixtureDensity(c.components_per_class, c.covariance_type, c.pca_dim) for _ in range(N_CLASSES)]
        )
        self.register_buffer(
            "log_prior",
            torch.full((N_CLASSES,), -torch.log(torch.tensor(float(N_CLASSES))).item(), dtype=torch.float64),
        )

    # ------------------------------------------------------------ fitting

    def fit_iterations(self) -> int | None:
        """At most this many EM iterations over the classes (None: one Gaussian per class, in closed form)."""
        c = self.config
        return c.max_iter * c.n_init * N_CLASSES if c.components_per_class > 1 else None

    def fit(self, x: torch.Tensor, y: torch.Tensor | None = None,
            on_iteration: Callable[[float], None] | None = None) -> dict[str, float]:
        """Fit p(y) by counting and each p(x | y) by EM (closed form for one component).

        Args:
            x: (N, 1, 28, 28) training digits; y: (N,) labels 0..9.

        Returns:
            metrics: train log-likelihood log p(x, y) per image, bits/dim, accuracy on up to
            10,000 training digits, mean EM iterations.
        """
        if y is None:
            raise ValueError(f"{self.name}.fit: needs the labels y of the training digits")
        c = self.config
        X = dequantize(x.reshape(len(x), -1), torch.Generator().manual_seed(int(torch.randint(2**31, ()))))
        counts = torch.bincount(y.to(X.device), minlength=N_CLASSES)
        if int(counts.min()) < c.components_per_class:
            raise ValueError(f"{self.name}.fit: class {int(counts.argmin())} has {int(counts.min())} digits for "
                             f"components_per_class={c.components_per_class}; need at least one digit per component")
        self.log_prior.copy_((counts.double() / counts.sum()).log())
        n_iter = []
        for label, density in enumerate(self.classes):
            estimator = density.fit(
                X[y == label],
                tol=c.tol,
                reg_covar=c.reg_covar,
                max_iter=c.max_iter,
                n_init=c.n_init,
                init_params=c.init_params,
                random_state=int(torch.randint(2**31, ())),
                on_iteration=on_iteration,
            )
            n_iter.append(estimator.n_iter_)
        joint = self.joint_log_prob(X[:10_000])  # (n, 10)
        log_xy = joint.gather(1, y[:10_000, None].to(X.device))[:, 0]
        return {
            "train_log_likelihood": float(log_xy.mean()),
            "train_bits_per_dim": float(bits_per_dim(-log_xy.mean(), dequantized=True)),
            "train_accuracy": float((joint.argmax(1) == y[:10_000].to(X.device)).double().mean()),
            "mean_em_iterations": sum(n_iter) / len(n_iter),
        }

    # ------------------------------------------------------------ densities and classification

    def joint_log_prob(self, X: torch.Tensor) -> torch.Tensor:
        """log p(y) + log p(x | y) for every class. Args: X (N, 784) float64 dequantized. Returns: (N, 10)."""
        return torch.stack([density.log_prob(X) for density in self.classes], 1) + self.log_prior

    def log_prob(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """log p(x | y) when y is given, else log p(x) = log sum_y p(y) p(x | y); of dequantized pixels. (N,) nats."""
        X = dequantize(x.reshape(len(x), -1))
        if y is not None:
            y = torch.as_tensor(y, device=X.device).reshape(-1)
            out = torch.empty(len(X), dtype=torch.float64, device=X.device)
            for label in y.unique().tolist():
                out[y == label] = self.classes[label].log_prob(X[y == label])
            return out.float()
        return torch.logsumexp(self.joint_log_prob(X), 1).float()

    def predict_log_proba(self, x: torch.Tensor) -> torch.Tensor:
        """log p(y | x) by Bayes' rule. Args: x (N, 1, 28, 28). Returns: (N, 10)."""
        joint = self.joint_log_prob(dequantize(x.reshape(len(x), -1)))
        return (joint - torch.logsumexp(joint, 1, keepdim=True)).float()

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """The most probable digit. Args: x (N, 1, 28, 28). Returns: (N,) int64."""
        return self.predict_log_proba(x).argmax(1)

    def accuracy(self, x: torch.Tensor, y: torch.Tensor, batch_size: int = 2000) -> float:
        """Fraction of digits x (N, 1, 28, 28) classified as their labels y (N,)."""
        correct = sum(
            int((self.predict(x[i : i + batch_size]) == y[i : i + batch_size].to(self.log_prior.device)).sum())
            for i in range(0, len(x), batch_size)
        )
        return correct / len(x)

    # ------------------------------------------------------------ sampling and pictures

    def _sample(self, n: int, y: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Draw digits of the labels y (n,). Returns (n, 1, 28, 28) in [0, 1]."""
        generator = generator if generator is not None else torch.Generator().manual_seed(0)
        out = torch.empty(n, N_PIXELS, dtype=torch.float64, device=self.log_prior.device)
        for label in range(N_CLASSES):
            where = (y == label).nonzero().flatten()
            if len(where):
                out[where.to(out.device)] = self.classes[label].sample(len(where), generator)
        return to_images(out)

    def class_means(self) -> torch.Tensor:
        """Mean image of each digit under the model (the weighted mean of its components). (10, 1, 28, 28)."""
        means = [(d.weights[:, None] * d.unproject(d.means)).sum(0) for d in self.classes]
        return to_images(torch.stack(means))

    def pictures(self, data: Any = None, n_rows: int = 5) -> dict[str, torch.Tensor]:
        """means_and_samples.png: first row the per-class means, then `n_rows` rows of samples
        (columns: digits 0..9)."""
        generator = torch.Generator().manual_seed(0)
        labels = torch.arange(N_CLASSES)
        rows = [self.class_means()] + [self.sample(N_CLASSES, y=labels, generator=generator) for _ in range(n_rows)]
        return {"means_and_samples.png": torch.stack(rows)}
