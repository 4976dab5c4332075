"""Sample quality of a model or of a set of samples, scored in the pinned evaluator's feature space.

What `genzoo evaluate`, `genzoo bench` and the demo score: `sample_quality` puts every figure of
`genzoo.metrics` (FID-style score, precision and recall, class coverage, conditional accuracy, the confident
share) together for one set of samples; `real_features` caches the real side of every score on disk;
`model_sample_quality` draws a model's samples and scores them, with the units and settings that
metrics.json records. The figures themselves are the plain functions of tensors in `genzoo.metrics`, which
models import too; this module loads the evaluator, samples models and writes the cache.

Numbers depend on the evaluator version and on the sample count: both are in the results.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable

import torch
from safetensors.torch import load_file, save_file

from ..constants import N_CLASSES
from ..data import cache_dir
from ..metrics import (
    CONFIDENT,
    check_images,
    class_coverage,
    conditional_accuracy,
    confident_share,
    coverage_entropy,
    frechet_distance,
    precision_recall,
)
from ..sampling import sample_in_batches
from .evaluator import EVALUATOR_SHA256, EVALUATOR_VERSION, load_evaluator


def sample_quality(samples: torch.Tensor, real_images: torch.Tensor, evaluator: torch.nn.Module,
                   labels: torch.Tensor | None = None, k: int = 3,
                   real_features: torch.Tensor | None = None) -> dict:
    """Every sample-quality metric that applies, in the evaluator's feature space.

    Args:
        samples: (N, 1, 28, 28) generated images in [0, 1].
        real_images: (M, 1, 28, 28) real test images in [0, 1] (10,000 for reported numbers).
        evaluator: a `genzoo.evaluation.evaluator.Evaluator` (from `load_evaluator`).
        labels: (N,) requested digits for conditional samples, or None.
        k: neighbourhood size of precision/recall.
        real_features: (M, D) evaluator features of `real_images` when already computed.
    Returns:
        dict with "fid", "precision", "recall", "class_coverage" (10 shares),
        "class_entropy", "n_samples", "n_real", "k", and "conditional_accuracy"
        when labels are given.
    """
    check_images(samples, "samples")
    fake_feats, fake_pred = evaluator.features_and_predictions(samples)
    if real_features is None:
        check_images(real_images, "real images")
        real_features, _ = evaluator.features_and_predictions(real_images)
    shares = class_coverage(fake_pred)
    precision, recall = precision_recall(real_features, fake_feats, k=k)
    result = {
        "fid": frechet_distance(fake_feats, real_features),
        "precision": precision,
        "recall": recall,
        "class_coverage": [round(s, 4) for s in shares],
        "class_entropy": coverage_entropy(shares),
        "class_entropy_bits": coverage_entropy(shares) / math.log(2),
        "n_samples": len(samples),
        "n_real": len(real_features),
        "k": k,
    }
    if labels is not None:
        result["conditional_accuracy"] = conditional_accuracy(fake_pred, labels.cpu())
    # the pinned evaluator gives probabilities; a stand-in network in tests may give only features and labels
    if hasattr(evaluator, "class_probabilities"):
        result["confident_share"] = confident_share(evaluator.class_probabilities(fake_feats))
    return result


def describe_quality(scores: dict) -> str:
    """Two lines for a log: the scores of `sample_quality`, then the digit shares."""
    line = f"FID-style {scores['fid']:.3f}  precision {scores['precision']:.3f}  recall {scores['recall']:.3f}"
    if "conditional_accuracy" in scores:
        line += f"  conditional accuracy {scores['conditional_accuracy']:.2%}"
    return f"{line}\ndigit shares {[round(s, 3) for s in scores['class_coverage']]}"


# ---------------------------------------------------------------------------- a model's samples

_REAL_FEATURES: dict[str, torch.Tensor] = {}


def real_features(evaluator: torch.nn.Module, real_images: torch.Tensor, cache: bool = True) -> torch.Tensor:
    """Evaluator features (M, D) of real images, cached by content in memory and in the user cache.

    The real side of every score is the same test set, so `genzoo evaluate` and
    `genzoo bench` compute its features once per evaluator version (as FID tools ship
    precomputed Inception statistics). The key is the SHA-256 of the images' bytes and
    of the evaluator asset; the cache file is safetensors in ~/.cache/genzoo.
    """
    check_images(real_images, "real images")
    if not cache:
        return evaluator.features_and_predictions(real_images)[0]
    digest = hashlib.sha256(real_images.detach().float().cpu().contiguous().numpy().tobytes()).hexdigest()
    key = f"{EVALUATOR_VERSION}-{EVALUATOR_SHA256[:12]}-{digest[:16]}"
    if key in _REAL_FEATURES:
        return _REAL_FEATURES[key]
    path = cache_dir() / "features" / f"{key}.safetensors"
    if path.exists():
        feats = load_file(str(path))["features"]
    else:
        feats = evaluator.features_and_predictions(real_images)[0]
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        save_file({"features": feats.contiguous()}, str(tmp))
        tmp.replace(path)
    _REAL_FEATURES[key] = feats
    return feats




@torch.no_grad()
def model_sample_quality(model: torch.nn.Module, real_images: torch.Tensor, n_samples: int = 10_000, seed: int = 0,
                         batch_size: int = 1000, evaluator: torch.nn.Module | None = None,
                         sample_options: dict | None = None, on_batch: Callable[[int], None] | None = None) -> dict:
    """Sample a model and score the samples: the sample-quality part of `genzoo evaluate`.

    Conditional models are asked for the digits 0..9 in equal shares (`arange(n) % 10`)
    and also get conditional accuracy. Sampling time is measured separately from scoring.

    Args:
        model: a trained `GenerativeModel` (its `sample(n, y=, generator=)` is used).
        real_images: (M, 1, 28, 28) real test images in [0, 1].
        n_samples: how many samples to draw and score.
        seed: seeds the sampling generator (a CPU torch.Generator, the same samples on any device).
        batch_size: samples drawn per `sample` call.
        evaluator: the feature network; the pinned one on the model's device by default.
        sample_options: options of the model's `sample` (diffusion: guidance, steps, eta, sampler); the
            settings in force are recorded beside every metric as "sampling".
        on_batch: called with the number of samples after each batch is drawn (a caller's progress bar).
    Returns:
        metrics.json entries {"value", "unit", "n", ...}: fid, precision, recall, class_coverage,
        conditional_accuracy (conditional models), sample_seconds_per_image, and evaluator_version.
    """
    device = model.device  # GenerativeModel: where its parameters or buffers are
    evaluator_is_pinned = evaluator is None  # only the pinned network's features may be cached by version
    evaluator = evaluator if evaluator is not None else load_evaluator(device)
    conditional = bool(getattr(model, "conditional", False))
    labels = torch.arange(n_samples) % N_CLASSES if conditional else None
    samples, sample_seconds = draw_timed(model, n_samples, labels, seed, batch_size, sample_options, on_batch)
    start = time.perf_counter()
    real = real_features(evaluator, real_images.cpu()) if evaluator_is_pinned else None
    q = sample_quality(samples, real_images, evaluator, labels=labels, real_features=real)
    score_seconds = time.perf_counter() - start
    note = {"n": n_samples, "n_real": q["n_real"], "evaluator_version": EVALUATOR_VERSION, "seed": seed}
    if getattr(model, "sample_options", ()):  # how the samples were drawn matters as much as how many
        note["sampling"] = model.sample_settings(**(sample_options or {}))
    out = score_entries(q, note)
    out |= {
        "sample_seconds_per_image": {
            "value": sample_seconds / n_samples,
            "unit": "s/image",
            "batch_size": batch_size,
            "n": n_samples,
            **({"sampling": note["sampling"]} if "sampling" in note else {}),
        },
        "sample_quality_seconds": {"value": round(score_seconds, 2), "unit": "s (scoring only, no sampling)"},
        "evaluator_version": EVALUATOR_VERSION,
    }
    if "confident_share" in q:
        out["confident_share"] = {"value": q["confident_share"],
                                  "unit": f"share of samples the evaluator classifies with probability >= {CONFIDENT}",
                                  **note}
    if conditional:
        out["conditional_accuracy"] = {"value": q["conditional_accuracy"],
                                       "unit": "share classified as the requested digit (0..9, equal shares)", **note}
    return out


def draw_timed(model, n: int, labels: torch.Tensor | None, seed: int, batch_size: int,
               sample_options: dict | None, on_batch: Callable[[int], None] | None) -> tuple[torch.Tensor, float]:
    """n samples of `model` in eval mode, float32 on the CPU (n, 1, 28, 28), and the seconds their drawing took
    (GPU work waited for); the model's training mode is put back after."""
    device = model.device
    generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    start = time.perf_counter()
    chunks = []
    for batch in sample_in_batches(model, n, labels=labels, generator=generator, batch_size=batch_size,
                                   options=sample_options):
        chunks.append(batch.float().cpu())
        if on_batch is not None:
            on_batch(len(chunks[-1]))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    model.train(was_training)
    return torch.cat(chunks), seconds


def score_entries(q: dict, note: dict) -> dict:
    """metrics.json entries of `sample_quality`'s scores `q`, each with the `note` of how they were measured."""
    pr_unit = f"share, k={q['k']} (Kynkäänniemi et al. 2019)"
    return {
        "fid": {"value": q["fid"], "unit": f"FID-style, evaluator {EVALUATOR_VERSION} features (lower is better)",
                **note},
        "precision": {"value": q["precision"], "unit": pr_unit, **note},
        "recall": {"value": q["recall"], "unit": pr_unit, **note},
        "class_coverage": {"value": q["class_coverage"], "unit": "share of digits 0..9 by the evaluator",
                           "entropy_nats": q["class_entropy"], **note},
        "class_entropy_bits": {
            "value": q["class_entropy_bits"],
            "unit": f"bits, entropy of the evaluator's labels over the samples; log2 10 = {math.log2(N_CLASSES):.3f} "
                    "when every digit is equally common",
            **note,
        },
    }
