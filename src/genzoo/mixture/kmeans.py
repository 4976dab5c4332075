"""Seeding and k-means for the mixture's initialisation: k-means++ (Arthur & Vassilvitskii 2007) with
scikit-learn's greedy local trials, and Lloyd's k-means (Lloyd 1982) with scikit-learn's `KMeans` stopping rule."""

from __future__ import annotations

import math

import torch

from .products import csr_rows, row_sq_norms, times

BLOCK_ROWS = 2048  # rows per block of the variance's pass: a few MB, so that the block stays in cache


def sq_distances(X: torch.Tensor, sq_norms: torch.Tensor, centres: torch.Tensor,
                 X_csr: torch.Tensor | None = None) -> torch.Tensor:
    """(N, K) squared Euclidean distances, clamped at 0 against rounding; `X_csr`: X's `csr_rows`, if any."""
    return (sq_norms[:, None] - 2 * times(X, X_csr, centres.T) + (centres * centres).sum(1)).clamp_min(0)


def mean_variance(X: torch.Tensor) -> float:
    """The per-feature variance of X (N, D), averaged over features: two passes, the second by blocks of rows
    (the same sum as `X.var(0).mean()` in another order, without its slow column-wise reduction)."""
    mean = X.mean(0)
    total = 0.0
    for start in range(0, X.shape[0], BLOCK_ROWS):
        centred = X[start : start + BLOCK_ROWS] - mean  # (B, D)
        total += float(torch.tensordot(centred, centred, 2))
    return total / X.numel()


def kmeans_plusplus(X: torch.Tensor, n_clusters: int, generator: torch.Generator, *,
                    sq_norms: torch.Tensor | None = None, X_csr: torch.Tensor | None = None) -> torch.Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii 2007) with greedy local trials, as in scikit-learn.

    Args:
        X: (N, D) data; n_clusters: K; generator: CPU generator for the random draws.
        sq_norms: (N,) row sums of X * X, if already computed; X_csr: X's `csr_rows`, if any.

    Returns:
        (K,) indices of the chosen seeds into X.
    """
    n_samples = X.shape[0]
    n_trials = 2 + int(math.log(n_clusters))
    sq_norms = row_sq_norms(X) if sq_norms is None else sq_norms

    def sq_dist(idx: torch.Tensor) -> torch.Tensor:  # (len(idx), N)
        return sq_distances(X, sq_norms, X[idx], X_csr).T

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
    X: torch.Tensor, n_clusters: int, generator: torch.Generator, max_iter: int = 300, tol: float = 1e-4, *,
    X_csr: torch.Tensor | None = None,
) -> torch.Tensor:
    """Lloyd's k-means from k-means++ seeds, with scikit-learn's `KMeans` stopping rule.

    Stops when no label changes or when the centres moved by at most `tol` times the mean
    per-feature variance of X (squared distance, summed over centres). An emptied cluster is
    moved to the sample farthest from its centre, as scikit-learn does.

    Each iteration reads X once, for the products with the centres: a sample's nearest centre is the
    one of least |c|^2 - 2 x.c (its own |x|^2 is common to all), as in scikit-learn's Lloyd step, and
    the clusters' sums are updated by the samples that changed cluster only (few, after the first
    iterations) rather than summed again.

    Args:
        X: (N, D); n_clusters: K; generator: CPU generator for the seeding.
        X_csr: X's `products.csr_rows`, if already made; made here (or found dense) if not.

    Returns:
        (N,) int64 labels in [0, K).
    """
    X_csr = csr_rows(X) if X_csr is None else X_csr
    sq_norms = row_sq_norms(X)
    centres = X[kmeans_plusplus(X, n_clusters, generator, sq_norms=sq_norms, X_csr=X_csr)].clone()  # (K, D)
    threshold = tol * mean_variance(X)
    labels = sums = None
    for _ in range(max_iter):
        scores = (centres * centres).sum(1) - 2 * times(X, X_csr, centres.T)  # (N, K) |x - c|^2 - |x|^2
        new_labels = scores.argmin(1)
        if labels is None:
            sums = torch.zeros_like(centres).index_add_(0, new_labels, X)  # (K, D)
        else:
            moved = torch.nonzero(new_labels != labels).flatten()
            if len(moved) == 0:
                break
            rows = X[moved]  # (M, D)
            sums.index_add_(0, labels[moved], rows, alpha=-1).index_add_(0, new_labels[moved], rows)
        labels = new_labels
        counts = torch.bincount(labels, minlength=n_clusters)
        new_centres = sums / counts.clamp_min(1)[:, None].to(X.dtype)
        empty = torch.nonzero(counts == 0).flatten()
        if len(empty):
            to_own = (sq_norms + scores.gather(1, labels[:, None])[:, 0]).clamp_min(0)  # (N,) to its centre
            far = to_own.argsort(descending=True)[: len(empty)]
            new_centres[empty] = X[far]
        shift = float(((new_centres - centres) ** 2).sum())
        centres = new_centres
        if shift <= threshold:
            labels = ((centres * centres).sum(1) - 2 * times(X, X_csr, centres.T)).argmin(1)
            break
    return labels
