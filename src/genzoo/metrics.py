"""Sample-quality and likelihood figures: plain functions of tensors, low enough for models to import.

- FID-style score: the Fréchet distance between Gaussians fitted to features
  of generated and of real images (Heusel et al. 2017, "GANs Trained by a Two
  Time-Scale Update Rule Converge to a Local Nash Equilibrium"), here with
  genzoo's own MNIST evaluator (`genzoo.evaluation.evaluator`) instead of Inception-v3.
- Precision and recall of a sample set with k-nearest-neighbour manifolds
  (Kynkäänniemi et al. 2019, "Improved Precision and Recall Metric for
  Assessing Generative Models"): precision is the share of generated points
  inside the real manifold, recall the share of real points inside the
  generated one; a manifold is the union of balls around each point with the
  radius of its k-th nearest neighbour in the same set.
- Class coverage (share of each digit among unconditional samples, by the
  evaluator's labels) and conditional accuracy (share classified as the
  requested digit); a quick check of a generator's coverage during training (`coverage_check`).
- Bits per dimension of a likelihood, PSNR of an image against its reference.

Numbers depend on the evaluator version and on the sample count: report both
(`genzoo.evaluation.scoring.sample_quality`, which scores a set of samples with all of these, puts them in its
result).
"""

from __future__ import annotations

import math

import torch

from .constants import N_CLASSES, N_PIXELS


def psnr(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image, for images in [0, 1]. Returns (B,)."""
    mse = (x - reference).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return -10 * torch.log10(mse)


def bits_per_dim(nll_nats: torch.Tensor | float, *, dequantized: bool, n_dims: int = N_PIXELS) -> torch.Tensor | float:
    """Bits per dimension of an image's negative log-likelihood in nats.

    Args:
        nll_nats: -log p(x) per image in nats (a tensor or a float).
        dequantized: True for a density on [0, 1]^D of uniformly dequantized 8-bit pixels; the figure is
            then that of the 256-level image, (nll / D + log 256) / log 2 (Theis et al. 2016). False for a
            probability of binary pixels: nll / (D log 2).
        n_dims: D, the pixels of one image.
    """
    if dequantized:
        return (nll_nats / n_dims + math.log(256)) / math.log(2)
    return nll_nats / (n_dims * math.log(2))


def _as_2d(feats: torch.Tensor, name: str) -> torch.Tensor:
    feats = torch.as_tensor(feats)
    if feats.dim() != 2 or len(feats) < 2:
        raise ValueError(f"{name} must be (N, D) features with N >= 2, got shape {tuple(feats.shape)}")
    return feats


def gaussian_stats(feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (D,) and unbiased covariance (D, D) of features (N, D), in float64."""
    feats = _as_2d(feats, "feats").double()
    mu = feats.mean(0)
    centred = feats - mu
    return mu, centred.T @ centred / (len(feats) - 1)


def frechet_distance_from_stats(mu_a: torch.Tensor, cov_a: torch.Tensor,
                                mu_b: torch.Tensor, cov_b: torch.Tensor) -> float:
    """||mu_a - mu_b||^2 + tr(cov_a + cov_b - 2 (cov_a cov_b)^(1/2)), float64.

    tr((A B)^(1/2)) equals tr((A^(1/2) B A^(1/2))^(1/2)), and the latter matrix is
    symmetric positive semi-definite, so two symmetric eigendecompositions give it
    without the complex round-off of a general matrix square root.
    """
    mu_a, cov_a, mu_b, cov_b = (t.double() for t in (mu_a, cov_a, mu_b, cov_b))
    evals_a, evecs_a = torch.linalg.eigh(cov_a)
    sqrt_a = (evecs_a * evals_a.clamp(min=0).sqrt()) @ evecs_a.T  # (D, D)
    middle = sqrt_a @ cov_b @ sqrt_a
    middle = (middle + middle.T) / 2  # symmetric up to round-off; make it exactly so
    tr_sqrt = torch.linalg.eigvalsh(middle).clamp(min=0).sqrt().sum()
    diff = mu_a - mu_b
    return float(diff @ diff + torch.trace(cov_a) + torch.trace(cov_b) - 2 * tr_sqrt)


def frechet_distance(feats_a: torch.Tensor, feats_b: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets.

    Args:
        feats_a: (N, D) features, e.g. of generated images.
        feats_b: (M, D) features, e.g. of real test images.
    Returns:
        The distance (float, >= 0 up to round-off), computed in float64.
    """
    feats_a, feats_b = _as_2d(feats_a, "feats_a"), _as_2d(feats_b, "feats_b")
    if feats_a.shape[1] != feats_b.shape[1]:
        raise ValueError(f"feature sizes differ: {tuple(feats_a.shape)} vs {tuple(feats_b.shape)}")
    return frechet_distance_from_stats(*gaussian_stats(feats_a), *gaussian_stats(feats_b))


def knn_radii(feats: torch.Tensor, k: int = 3, batch_size: int = 2048) -> torch.Tensor:
    """Distance of each point to its k-th nearest neighbour in the same set (itself excluded).

    Args:
        feats: (N, D) features, N > k.
    Returns:
        (N,) float32 radii.
    """
    feats = _as_2d(feats, "feats").float()
    if len(feats) <= k:
        raise ValueError(f"need more than k={k} points for k-nearest-neighbour radii, got {len(feats)}")
    radii = []
    for block in feats.split(batch_size):
        d = torch.cdist(block, feats)  # (B, N)
        radii.append(d.topk(k + 1, dim=1, largest=False).values[:, k])  # index 0 is the point itself
    return torch.cat(radii)


def precision_recall(real_feats: torch.Tensor, fake_feats: torch.Tensor, k: int = 3,
                     batch_size: int = 2048) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019).

    Args:
        real_feats: (N, D) features of real images.
        fake_feats: (M, D) features of generated images.
        k: neighbourhood size defining each manifold's ball radii (3 in the paper).
    Returns:
        (precision, recall): the share of fake points within some real ball
        (distance <= that real point's k-NN radius), and the share of real
        points within some fake ball.
    """
    real_feats, fake_feats = _as_2d(real_feats, "real_feats").float(), _as_2d(fake_feats, "fake_feats").float()
    if real_feats.shape[1] != fake_feats.shape[1]:
        raise ValueError(f"feature sizes differ: {tuple(real_feats.shape)} vs {tuple(fake_feats.shape)}")
    real_radii = knn_radii(real_feats, k, batch_size)  # (N,)
    fake_radii = knn_radii(fake_feats, k, batch_size)  # (M,)
    fake_in_real = torch.zeros(len(fake_feats), dtype=torch.bool)
    real_in_fake = torch.zeros(len(real_feats), dtype=torch.bool)
    for start in range(0, len(fake_feats), batch_size):
        block, radii = fake_feats[start:start + batch_size], fake_radii[start:start + batch_size]
        d = torch.cdist(block, real_feats)  # (B, N)
        fake_in_real[start:start + len(block)] = (d <= real_radii[None, :]).any(1)
        real_in_fake |= (d <= radii[:, None]).any(0)
    return float(fake_in_real.float().mean()), float(real_in_fake.float().mean())


def class_coverage(pred_labels: torch.Tensor, n_classes: int = N_CLASSES) -> list[float]:
    """Share of each class among predicted labels.

    Args:
        pred_labels: (N,) int labels in [0, n_classes).
    Returns:
        n_classes shares summing to 1 (uniform would be 0.1 each for digits).
    """
    pred_labels = torch.as_tensor(pred_labels).long().flatten()
    if len(pred_labels) == 0:
        raise ValueError("class_coverage needs at least one label, got none")
    bad = pred_labels[(pred_labels < 0) | (pred_labels >= n_classes)]
    if len(bad):
        raise ValueError(f"predicted labels must lie in 0..{n_classes - 1}, got {int(bad[0])}")
    counts = torch.bincount(pred_labels, minlength=n_classes).double()
    return (counts / counts.sum()).tolist()


def coverage_entropy(shares: list[float]) -> float:
    """Entropy in nats of class shares; log(10) = 2.303 when every digit is equally common."""
    return max(0.0, -sum(p * math.log(p) for p in shares if p > 0))  # max: no "-0.0"


CONFIDENT = 0.9  # a sample counts as a recognisable digit when the evaluator gives its class at least this probability


def confident_share(probabilities: torch.Tensor, threshold: float = CONFIDENT) -> float:
    """Share of images whose most probable class has probability >= threshold.

    Args:
        probabilities: (N, n_classes) class probabilities of the evaluator.
    """
    probabilities = torch.as_tensor(probabilities)
    if probabilities.dim() != 2 or len(probabilities) == 0:
        raise ValueError(f"probabilities must be (N, n_classes) with N >= 1, got shape {tuple(probabilities.shape)}")
    return float((probabilities.max(1).values >= threshold).double().mean())


def conditional_accuracy(pred: torch.Tensor, requested: torch.Tensor) -> float:
    """Share of samples whose predicted class equals the requested one.

    Args:
        pred: (N,) labels the evaluator gave the samples.
        requested: (N,) labels the samples were generated for.
    Returns:
        Accuracy in [0, 1].
    """
    pred, requested = torch.as_tensor(pred).flatten(), torch.as_tensor(requested).flatten()
    if pred.shape != requested.shape or len(pred) == 0:
        raise ValueError(f"pred and requested must be equal-length non-empty label vectors, "
                         f"got {tuple(pred.shape)} and {tuple(requested.shape)}")
    return float((pred.long() == requested.long().to(pred.device)).double().mean())


def check_images(images: torch.Tensor, name: str) -> torch.Tensor:
    """Refuse anything but (N, 1, 28, 28) images with finite values in [0, 1]."""
    if images.dim() != 4 or tuple(images.shape[1:]) != (1, 28, 28):
        raise ValueError(f"{name} must have shape (N, 1, 28, 28), got {tuple(images.shape)}")
    if not torch.isfinite(images).all():
        raise ValueError(f"{name} contain NaN or infinite values; the model diverged or sampled badly")
    lo, hi = float(images.min()), float(images.max())
    if lo < -1e-4 or hi > 1 + 1e-4:
        raise ValueError(f"{name} must lie in [0, 1], got range [{lo:.4g}, {hi:.4g}]; "
                         "rescale in the model's sample()")
    return images


# A quick check of a generator's samples during training (a GAN's epoch ends): thresholds and size.
COVERAGE_SAMPLES = 1000  # samples classified by the evaluator
COVERAGE_SEED = 1234
COVERAGE_MIN_SHARE = 0.025  # a digit counts as covered with at least a quarter of its fair 10%
COVERAGE_MIN_DIGITS = 8  # fewer covered digits than this: "collapsed onto a few digits"
COND_ACCURACY_WARN = 0.5  # conditional samples below this accuracy do not follow their labels


@torch.no_grad()
def coverage_check(model: torch.nn.Module, evaluator: torch.nn.Module, n: int = COVERAGE_SAMPLES,
                   seed: int = COVERAGE_SEED) -> tuple[dict, str | None]:
    """Classify n samples of `model` with `evaluator`: do they cover the digits, or follow their labels?

    Args:
        model: a `GenerativeModel`; a conditional one is asked for `default_labels(n)`.
        evaluator: any network with `predict(images) -> (n,) labels` (the pinned evaluator, handed in).
        n: samples to classify; seed: seeds them (a CPU generator: the same samples on any device).
    Returns:
        (metrics, warning or None). Metrics: "coverage_check": "done", then "class_coverage" (digits with at
        least COVERAGE_MIN_SHARE of the samples) and "max_class_share", or "cond_accuracy" for conditional
        models. The warning says the samples collapsed onto fewer than COVERAGE_MIN_DIGITS digits, or that
        fewer than COND_ACCURACY_WARN of conditional samples show their digit.
    """
    labels = model.default_labels(n) if model.conditional else None
    pred = evaluator.predict(model.sample(n, y=labels, generator=torch.Generator().manual_seed(seed))).cpu()
    if labels is not None:
        acc = float((pred == labels.cpu()).float().mean())
        warning = (f"conditional samples do not follow their labels (evaluator accuracy {acc:.1%} "
                   f"on {n} samples)") if acc < COND_ACCURACY_WARN else None
        return {"coverage_check": "done", "cond_accuracy": acc}, warning
    shares = torch.tensor(class_coverage(pred))
    covered = int((shares >= COVERAGE_MIN_SHARE).sum())
    warning = None
    if covered < COVERAGE_MIN_DIGITS:
        warning = (f"samples collapsed onto few digits: only {covered} of 10 digits have >= "
                   f"{COVERAGE_MIN_SHARE:.1%} of {n} samples (shares {[round(v, 3) for v in shares.tolist()]})")
    return {"coverage_check": "done", "class_coverage": covered, "max_class_share": float(shares.max())}, warning
