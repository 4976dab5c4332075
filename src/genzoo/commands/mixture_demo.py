"""`genzoo gmm-demo`: a Gaussian mixture fitted by EM to 2-D clusters, drawn with its ellipses and samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..images import save_pictures
from ..mixture import GaussianMixture


def anisotropic_clusters(n_per_cluster: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Four stretched and rotated 2-D Gaussian clusters. Returns X (4n, 2) and labels (4n,)."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [6.0, 1.0], [2.0, 6.0], [8.0, 7.0]])
    transforms = [np.array([[2.0, 0.0], [1.2, 0.4]]), np.array([[0.5, -0.9], [0.2, 1.5]]),
                  np.array([[1.8, 0.6], [0.0, 0.3]]), np.eye(2) * 0.7]
    X = np.concatenate([rng.standard_normal((n_per_cluster, 2)) @ t + c for c, t in zip(centres, transforms)])
    return X, np.repeat(np.arange(len(centres)), n_per_cluster)


def mixture_figure(X: np.ndarray, gm: GaussianMixture, samples: np.ndarray):
    """A matplotlib Figure of 2-D data, each component's ellipses at 1 and 2 standard deviations, its mean,
    and samples from the fitted mixture `gm` (full covariances)."""
    import math

    from matplotlib.figure import Figure  # optional heavy dependency, only for this picture
    from matplotlib.patches import Ellipse

    fig = Figure(figsize=(7, 6), dpi=120)
    ax = fig.subplots()
    ax.scatter(X[:, 0], X[:, 1], s=6, c="0.6", label="data")
    ax.scatter(samples[:, 0], samples[:, 1], s=6, c="tab:red", marker="x", label="samples from the fit")
    for k, (mean, cov) in enumerate(zip(np.asarray(gm.means_), np.asarray(gm.covariances_))):
        eigvals, eigvecs = np.linalg.eigh(cov)
        angle = math.degrees(math.atan2(eigvecs[1, 1], eigvecs[0, 1]))
        for n_std, style in ((1, "-"), (2, "--")):
            w, h = 2 * n_std * np.sqrt(eigvals[::-1])
            ax.add_patch(Ellipse(mean, w, h, angle=angle, fill=False, lw=1.5, ls=style, color=f"C{k}"))
        ax.plot(*mean, "k+", ms=10)
    ax.set_title(f"Gaussian mixture by EM: {gm.n_components} components, {gm.n_iter_} iterations, "
                 f"log-lik {gm.lower_bound_:.3f}/point\nellipses at 1 (solid) and 2 (dashed) standard deviations")
    ax.set_aspect("equal")
    ax.legend(loc="upper left")
    return fig


def gmm_demo(out: str | Path = "gmm-demo", n_components: int = 4, seed: int = 0) -> Path:
    """`genzoo gmm-demo`: fit a full-covariance mixture to 2-D anisotropic clusters and plot it.

    Draws the data, each component's ellipses at 1 and 2 standard deviations, its mean, and
    400 fresh samples from the fit, in one figure `OUT/gmm_demo.png`; returns its path.
    """
    X, _ = anisotropic_clusters(seed=seed)
    gm = GaussianMixture(n_components, covariance_type="full", random_state=seed, n_init=3).fit(X)
    samples, _ = gm.sample(400, generator=torch.Generator().manual_seed(seed + 1))
    # the mixture answers in the type it was given (numpy here); np.asarray also takes a CPU tensor
    (path,) = save_pictures({"gmm_demo.png": mixture_figure(X, gm, np.asarray(samples))}, out)
    return path
