"""Seeding and k-means for the mixture's initialisation: k-means++ (Arthur & Vassilvitskii 2007) with
scikit-learn's greedy local trials, and Lloyd's k-means (Lloyd 1982) with scikit-learn's `KMeans` stopping rule."""

from __future__ import annotations

import math

import torch

from .products import matmul, row_sq_norms


def sq_distances(X: torch.Tensor, sq_norms: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """(N, K) squared Euclidean distances, clamped at 0 against rounding."""
    return (sq_norms[:, None] - 2 * matmul(X, centres.T) + (centres * centres).sum(1)).clamp_min(0)


def kmeans_plusplus(X: torch.Tensor, n_clusters: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii 2007) with greedy local trials, as in scikit-learn.

    Args:
        X: (N, D) data; n_clusters: K; generator: CPU generator for the random draws.

    Returns:
        (K,) indices of the chosen seeds into X.
    """
    n_samples = X.shape[0]
    n_trials = 2 + int(math.log(n_clusters))
    sq_norms = row_sq_norms(X)

    def sq_dist(idx: torch.Tensor) -> torch.Tensor:  # (len(idx), N)
        return sq_distances(X, sq_norms, X[idx]).T

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
    sq_norms = row_sq_norms(X)
    centres = X[kmeans_plusplus(X, n_clusters, generator)].clone()  # (K, D)
    threshold = tol * float(X.var(0, correction=0).mean())
    labels = None
    for _ in range(max_iter):
        dist = sq_distances(X, sq_norms, centres)  # (N, K)
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
            labels = sq_distances(X, sq_norms, centres).argmin(1)
            break
    return labels
