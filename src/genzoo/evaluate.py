"""`genzoo evaluate RUN`: every metric that applies to a run's model, written to RUN/metrics.json.

Metrics are chosen by what the model can do, never by its name:

- `reconstruct`: mean squared error per pixel on the test set;
- `denoise`: PSNR of noisy and of denoised test digits against the clean ones, per noise kind;
- `elbo`: the one-sample ELBO in nats on the binarized test set;
- `log_prob`: NLL in nats and bits/dim, with its kind (exact, bound, estimate) and,
  for Bernoulli models, the fixed binarization of the test set it was measured on.

Each entry of metrics.json is {"value", "unit", "n", ...}; the file also records the
seed, the hardware and the seconds taken.
"""

from __future__ import annotations

import inspect
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from . import runs
from .data import FIXED_BINARIZATION, fixed_binarization, load_data
from .models.base import CapabilityError
from .trainer import resolve_device

PIXELS = 784


def _batched(fn, x: torch.Tensor, batch: int, desc: str | None = None) -> torch.Tensor:
    """fn over x in batches, concatenated; with `desc`, a progress bar on a terminal (long work: IWAE)."""
    starts = range(0, len(x), batch)
    if desc:
        starts = tqdm(starts, desc=desc, unit="batch", disable=None, leave=False, file=sys.stderr)
    return torch.cat([fn(x[i : i + batch]) for i in starts])


def likelihood_metrics(model, test_x: torch.Tensor, batch: int = 500, **log_prob_kwargs) -> dict[str, Any]:
    """NLL in nats and bits/dim of a model with log_prob on test images (already binarized if needed)."""
    log_p = _batched(lambda b: model.log_prob(b, **log_prob_kwargs), test_x, batch, desc=f"{model.name}: log p(x)")
    nll = float(-log_p.double().mean())
    note = {"kind": model.log_prob_kind, "n": len(test_x), **log_prob_kwargs}
    if model.binary_data:
        note["data"] = FIXED_BINARIZATION
        bits = nll / (PIXELS * math.log(2))
    else:  # a density on [0, 1]^784 of dequantized pixels: bits/dim of the 256-level image, as usual
        note["data"] = "dequantized 8-bit test pixels, density on [0, 1]^784 (see the model's log_prob)"
        bits = (nll / PIXELS + math.log(256)) / math.log(2)
    return {"nll_nats": {"value": nll, "unit": "nats/image", **note},
            "bits_per_dim": {"value": bits, "unit": "bits/dim", **note}}


def reconstruction_metrics(model, test_x: torch.Tensor, batch: int = 500) -> dict[str, Any]:
    recon = _batched(model.reconstruct, test_x, batch)
    mse = float((recon - test_x).pow(2).mean())
    return {"reconstruction_mse": {"value": mse, "unit": "per pixel", "n": len(test_x)}}


def denoising_metrics(model, test_x: torch.Tensor, seed: int, batch: int = 500) -> dict[str, Any]:
    from .models.dae import NOISE_KINDS, corrupt, psnr

    out = {}
    level = {"gaussian": 0.5, "salt-and-pepper": 0.3, "masking": 0.5}
    trained = (model.config.noise, model.config.noise_level)
    for kind, strength in [trained] + [(k, level[k]) for k in NOISE_KINDS if k != trained[0]]:
        noisy = corrupt(test_x, kind, strength, torch.Generator(device=test_x.device).manual_seed(seed))
        denoised = _batched(model.denoise, noisy, batch)
        suffix = kind.replace("-", "_")
        note = {"unit": "dB", "n": len(test_x), "noise": f"{kind}:{strength}"}
        out[f"psnr_noisy_{suffix}"] = {"value": float(psnr(noisy, test_x).mean()), **note}
        out[f"psnr_denoised_{suffix}"] = {"value": float(psnr(denoised, test_x).mean()), **note}
    return out


@torch.no_grad()
def evaluate_run(
    run_dir: str | Path,
    *,
    device: str = "auto",
    seed: int = 0,
    max_test: int = 0,
    iwae_k: int = 0,
    n_samples: int = 10_000,
) -> dict[str, Any]:
    """Evaluate a run folder and write RUN/metrics.json; returns what it wrote.

    Args:
        run_dir: a folder written by `genzoo train`.
        device: "auto", "cpu" or "cuda".
        seed: seeds every random draw of the evaluation (samples, noise, importance samples).
        max_test: evaluate on the first N test images only (0: all), e.g. for a quick look on a CPU.
        iwae_k: importance samples for models with an IWAE log_prob (0: the model's own setting).
        n_samples: samples scored in the evaluator's feature space (FID-style, precision, recall,
            class coverage, conditional accuracy; `genzoo.metrics.model_sample_quality`); 0: none.
    """
    start = time.perf_counter()
    run_dir = Path(run_dir)
    device = resolve_device(device)
    config = runs.read_config(run_dir)
    model = runs.load(run_dir, device)
    data = load_data(config["data"], verbose=False)
    test_x = data.test_x[: max_test or None].to(device)
    torch.manual_seed(seed)

    metrics: dict[str, Any] = {"model": model.name, "parameters": model.n_parameters()}
    end = [r for r in runs.read_metrics_log(run_dir) if r.get("event") == "end"]
    if end:
        metrics["train_seconds"] = end[-1]["train_seconds"]
        metrics["train_images_per_s"] = end[-1]["images_per_s"]
    if hasattr(model, "denoise"):
        metrics.update(denoising_metrics(model, test_x, seed))
    try:
        metrics.update(reconstruction_metrics(model, test_x))
    except CapabilityError:
        pass
    binary_x = fixed_binarization(test_x) if model.binary_data else test_x
    if hasattr(model, "elbo"):
        elbo = float(_batched(model.elbo, binary_x, 500).double().mean())
        metrics["elbo_nats"] = {"value": elbo, "unit": "nats/image (higher is better)", "n": len(binary_x),
                                "data": FIXED_BINARIZATION}
    if model.log_prob_kind is not None:
        takes_k = "k" in inspect.signature(model.log_prob).parameters  # importance-sampled estimates
        kwargs = {"k": iwae_k} if iwae_k and takes_k else {}
        metrics.update(likelihood_metrics(model, binary_x, **kwargs))
    if n_samples:  # sample quality against the (first max_test) real test digits, evaluator version recorded
        from .metrics import model_sample_quality

        try:
            metrics.update(model_sample_quality(model, test_x, n_samples, seed))
        except CapabilityError:  # a model that cannot sample has no sample quality
            pass
    metrics.update(seed=seed, hardware=runs.hardware(device), seconds=round(time.perf_counter() - start, 2),
                   data=data.describe())
    runs.atomic_write_text(run_dir / runs.METRICS, json.dumps(metrics, indent=2) + "\n")
    return metrics
