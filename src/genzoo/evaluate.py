"""`genzoo evaluate RUN`: every metric that applies to a run's model, written to RUN/metrics.json.

Metrics are chosen by what the model can do, never by its name:

- `reconstruct`: mean squared error per pixel on the test set;
- `denoise`: PSNR of noisy and of denoised test digits against the clean ones, per noise kind;
- `elbo`: the one-sample ELBO in nats on the binarized test set;
- `log_prob`: NLL in nats and bits/dim, with its kind (exact, bound, estimate) and,
  for Bernoulli models, the fixed binarization of the test set it was measured on; for a
  class-conditional model, the marginal NLL over the labels and the NLL given the true labels;
- an AIS estimate of log Z inside log_prob (the RBM): that estimate with its standard error over the
  AIS runs, also written beside the NLL as `se_log_z`;
- both (the VAE): the IWAE gap, log p(x) minus the ELBO per image, and, when a random subset of
  the test set was scored, an estimate of the whole test set's NLL with its standard error.

Means over test images carry their standard error, `se` (sd / sqrt(n)).

Each entry of metrics.json is {"value", "unit", "n", ...}; the file also records the
seed, the hardware and the seconds taken.
"""

from __future__ import annotations

import functools
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from . import runs
from .config import ConfigError, non_negative
from .data import FIXED_BINARIZATION, fixed_binarization, load_data
from .metrics import bits_per_dim
from .trainer import resolve_device

DECODED_PER_CALL = 65_536  # IWAE: images decoded per log_prob call (test images x K), so progress shows
ELBO_DRAWS = 10  # ELBO draws averaged per image for the IWAE gap: the one-sample ELBO's noise is most of its spread


def _batched(fn, x: torch.Tensor, batch: int, desc: str | None = None) -> torch.Tensor:
    """fn over x in batches, concatenated; with `desc`, a progress bar in images on a terminal (long work: IWAE)."""
    parts = []
    with tqdm(total=len(x), desc=desc, unit="image", disable=None if desc else True, leave=False,
              file=sys.stderr) as bar:
        for i in range(0, len(x), batch):
            parts.append(fn(x[i : i + batch]))
            bar.update(len(parts[-1]))
    return torch.cat(parts)


def mean_and_se(values: torch.Tensor) -> dict[str, float | None]:
    """{"value": mean, "se": standard error of the mean, sd / sqrt(n)} of per-image values (None for one)."""
    values = values.double()
    se = float(values.std() / math.sqrt(len(values))) if len(values) > 1 else None
    return {"value": float(values.mean()), "se": se}


def subset_indices(n_total: int, max_test: int, seed: int, random_subset: bool) -> torch.Tensor:
    """Indices of the test images to score: all, the first `max_test`, or a seeded random `max_test` (sorted).

    The first images of a data set need not be typical (MNIST's first 5,000 test digits are the cleaner
    half); a random subset's mean estimates the whole set's, with the standard error that goes with it.
    """
    n = min(max_test or n_total, n_total)
    if not random_subset or n == n_total:
        return torch.arange(n)
    return torch.randperm(n_total, generator=torch.Generator().manual_seed(seed))[:n].sort().values


def per_image_log_prob(model, test_x: torch.Tensor, batch: int = 500, **log_prob_kwargs) -> torch.Tensor:
    """The model's log p(x) in nats of each test image (already binarized if needed), (N,), with progress."""
    if "k" in log_prob_kwargs:  # K decoder passes per image: fewer images per call keep the progress bar moving
        batch = max(1, min(batch, DECODED_PER_CALL // log_prob_kwargs["k"]))
    return _batched(lambda b: model.log_prob(b, **log_prob_kwargs), test_x, batch, desc=f"{model.name}: log p(x)")


def likelihood_metrics(model, log_p: torch.Tensor, **log_prob_kwargs) -> dict[str, Any]:
    """NLL in nats (with its standard error) and bits/dim from per-image log p(x) of test images."""
    nll = mean_and_se(-log_p)
    note = {"kind": model.log_prob_kind, "n": len(log_p), **log_prob_kwargs}
    if model.binary_data:
        note["data"] = FIXED_BINARIZATION
        bits = bits_per_dim(nll["value"], dequantized=False)
    else:  # a density on [0, 1]^784 of dequantized pixels: bits/dim of the 256-level image, as usual
        note["data"] = "dequantized 8-bit test pixels, density on [0, 1]^784 (see the model's log_prob)"
        bits = bits_per_dim(nll["value"], dequantized=True)
    return {"nll_nats": {**nll, "unit": "nats/image", **note},
            "bits_per_dim": {"value": bits, "unit": "bits/dim", **note}}


def class_conditional_likelihood_metrics(model, test_x: torch.Tensor, test_y: torch.Tensor,
                                         train_y: torch.Tensor, batch: int = 500) -> dict[str, Any]:
    """A class-conditional model's NLL two ways: given the true test labels, and marginal over the labels.

    log p(x | y) is scored under every label (n_classes passes over the test images); then
    - conditional: -log p(x | y_true), the test digit's own label;
    - marginal: -log sum_y p(y) p(x | y) (log-sum-exp over the labels), with p(y) the training set's
      label frequencies; this is log p(x), comparable with unconditional models' NLL.

    Args:
        test_x: (N, 1, H, W) test images as the model scores them (binarized for Bernoulli models).
        test_y: (N,) their labels. train_y: the training labels, for the prior p(y).
    Returns:
        "nll_nats"/"bits_per_dim" (marginal) and "nll_nats_conditional"/"bits_per_dim_conditional".
    """
    n_classes = int(getattr(model.config, "n_classes", 10))
    index = torch.arange(len(test_x), device=test_x.device)
    test_y = test_y.to(test_x.device).long()
    log_p_given = torch.stack([  # (n_classes, N): log p(x_i | y = c)
        _batched(lambda i, c=c: model.log_prob(test_x[i], torch.full_like(i, c)), index, batch,
                 desc=f"{model.name}: log p(x | y={c})").double()
        for c in range(n_classes)])
    counts = torch.bincount(train_y.long().cpu(), minlength=n_classes).double()
    log_prior = (counts / counts.sum()).log().to(log_p_given.device)  # (n_classes,)
    log_p_marginal = torch.logsumexp(log_prior[:, None] + log_p_given, dim=0)  # (N,)
    log_p_conditional = log_p_given[test_y, index]  # (N,)
    prior = f"p(y) = the label frequencies of the {len(train_y)} training digits"
    out = {key: {**entry, "method": f"marginal over the labels, -log sum_y p(y) p(x | y); {prior}"}
           for key, entry in likelihood_metrics(model, log_p_marginal).items()}
    for key, entry in likelihood_metrics(model, log_p_conditional).items():
        out[f"{key}_conditional"] = {**entry, "method": "given the true test label, -log p(x | y)"}
    return out


def log_z_metrics(model, metrics: dict[str, Any]) -> dict[str, Any]:
    """For a model whose log p(x) uses an estimated log partition function (the RBM's AIS): that estimate
    with its spread over the AIS runs, and its standard error beside the NLL, which it shifts as a whole."""
    log_z = model.log_z_uncertainty()
    out = {"log_z": {**log_z, "unit": "nats", "method": "AIS (Salakhutdinov & Murray 2008); se by the delta method "
                     "over the AIS runs, low/high = log(mean weight -/+ 3 se)"}}
    if "nll_nats" in metrics:
        out["nll_nats"] = {**metrics["nll_nats"], "se_log_z": log_z["se"]}
    return out


def mean_elbo(model, x: torch.Tensor, seed: int) -> torch.Tensor:
    """The ELBO of each image averaged over ELBO_DRAWS draws, (N,) float64.

    Drawn from a generator of its own, so the other metrics' random draws are the same with or without it.
    """
    elbo = functools.partial(model.elbo, generator=torch.Generator(x.device).manual_seed(seed))
    return torch.stack([_batched(elbo, x, 500) for _ in range(ELBO_DRAWS)]).double().mean(0)


def iwae_gap_metrics(elbo: torch.Tensor, log_p: torch.Tensor, elbo_all: torch.Tensor | None = None,
                     elbo_draws: int = 1) -> dict[str, Any]:
    """The IWAE gap, log p(x) - ELBO per scored image, and, from a random subset, the whole set's NLL.

    Args:
        elbo: the ELBO of the scored images, (n,) (any unbiased estimate; `mean_elbo`'s has little noise).
        log_p: IWAE log p(x) of the same images, (n,).
        elbo_all: the same ELBO estimate of every test image, (N,), when the scored images are a simple
            random sample of the test set; then the whole set's NLL is estimated too.
        elbo_draws: how many draws each ELBO value averages (recorded with the figures).

    The whole set's NLL is the mean of -ELBO over all N images, which is known, minus the mean gap,
    estimated from the n scored images (a difference estimator). The gap varies much less from image
    to image than the NLL does, so a few hundred images pin the whole set's NLL to a fraction of a nat:
    se = sd(gap) / sqrt(n) * sqrt(1 - n / N), the last factor for sampling without replacement.
    """
    gap = log_p.double() - elbo.double()
    out = {"iwae_gap_nats": {**mean_and_se(gap), "unit": "nats/image, log p(x) (IWAE) - ELBO", "n": len(gap),
                             "elbo_draws": elbo_draws}}
    n = len(gap)
    if elbo_all is not None and 1 < n < len(elbo_all):
        n_total = len(elbo_all)
        out["nll_nats_whole_test"] = {
            "value": float(-elbo_all.double().mean() - gap.mean()),
            "se": float(gap.std() / math.sqrt(n) * math.sqrt(1 - n / n_total)),
            "unit": "nats/image", "n": n_total, "kind": "estimate",
            "method": f"-ELBO of all {n_total} test images ({elbo_draws} draws each) minus the IWAE gap "
                      f"of a random {n} of them"}
    return out


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
    random_subset: bool = False,
    iwae_k: int = 0,
    n_samples: int = 10_000,
    sample_options: dict[str, Any] | None = None,
    guidance_sweep: list[float] | None = None,
    sweep_samples: int = 0,
) -> dict[str, Any]:
    """Evaluate a run folder and write RUN/metrics.json; returns what it wrote.

    Args:
        run_dir: a folder written by `genzoo train`.
        device: "auto", "cpu" or "cuda".
        seed: seeds every random draw of the evaluation (samples, noise, importance samples).
        max_test: evaluate on N test images only (0: all), e.g. for a quick look on a CPU.
        random_subset: take those N at random (seeded by `seed`) instead of the first N; with a model
            that has both an ELBO and an IWAE log_prob, this also estimates the whole test set's NLL.
        iwae_k: importance samples for models with an IWAE log_prob (0: the model's own setting).
        n_samples: samples scored in the evaluator's feature space (FID-style, precision, recall,
            class coverage, conditional accuracy; `genzoo.metrics.model_sample_quality`); 0: none.
        sample_options: options of the model's `sample` (diffusion: guidance, steps, eta, sampler).
        guidance_sweep: classifier-free guidance weights: FID-style score and conditional accuracy at each,
            written to RUN/guidance_sweep.json and drawn in RUN/guidance_sweep.png.
        sweep_samples: samples per guidance weight (0: n_samples).
    """
    non_negative(max_test=max_test, iwae_k=iwae_k, n_samples=n_samples)
    if random_subset and not max_test:
        raise ConfigError("random_subset draws max_test test images at random; give max_test too "
                         "(e.g. genzoo evaluate RUN --max-test 300 --random-subset)")
    start = time.perf_counter()
    run_dir = Path(run_dir)
    device = resolve_device(device)
    config = runs.read_config(run_dir)
    model = runs.load(run_dir, device)
    sample_options = {k: v for k, v in (sample_options or {}).items() if v is not None}
    wanted = set(sample_options) | ({"guidance"} if guidance_sweep else set())
    if wanted - set(model.sample_options):
        raise ConfigError(f"{model.name}: no sampling option {', '.join(sorted(wanted - set(model.sample_options)))}; "
                          f"its options: {', '.join(model.sample_options) or 'none'}")
    data = load_data(config["data"], verbose=False)
    subset = subset_indices(len(data.test_x), max_test, seed, random_subset)
    test_x = data.test_x[subset].to(device)
    torch.manual_seed(seed)

    metrics: dict[str, Any] = {"model": model.name, "parameters": model.n_parameters()}
    end = [r for r in runs.read_metrics_log(run_dir) if r.get("event") == "end"]
    if end:
        metrics["train_seconds"] = end[-1]["train_seconds"]
        metrics["train_images_per_s"] = end[-1]["images_per_s"]
    if model.can_denoise:
        metrics.update(denoising_metrics(model, test_x, seed))
    if model.can_reconstruct:
        metrics.update(reconstruction_metrics(model, test_x))
    # the fixed binarization is drawn for the whole test set, so a subset's images are the same draws
    binary_all = fixed_binarization(data.test_x) if model.binary_data else data.test_x
    binary_x = binary_all[subset].to(device)
    # one stream for the ELBO's and the importance samples' draws, seeded like the rest of the evaluation
    generator = torch.Generator(device).manual_seed(seed)
    if model.has_elbo:
        elbo = _batched(functools.partial(model.elbo, generator=generator), binary_x, 500)
        metrics["elbo_nats"] = {**mean_and_se(elbo), "unit": "nats/image (higher is better)", "n": len(elbo),
                                "data": FIXED_BINARIZATION}
    if model.log_prob_kind is not None and model.conditional:  # log p(x | y) and the marginal log p(x)
        metrics.update(class_conditional_likelihood_metrics(model, binary_x, data.test_y[subset], data.train_y))
    elif model.log_prob_kind is not None:
        takes_k = "k" in model.log_prob_options  # importance-sampled estimates
        kwargs = {"k": iwae_k or model.config.iwae_k} if takes_k else {}
        draws = {"generator": generator} if "generator" in model.log_prob_options else {}
        log_p = per_image_log_prob(model, binary_x, **kwargs, **draws)
        metrics.update(likelihood_metrics(model, log_p, **kwargs))
        if model.estimates_log_z:  # log p(x) through an AIS estimate of log Z: its spread
            metrics.update(log_z_metrics(model, metrics))
        if model.has_elbo and takes_k:
            if random_subset:  # the ELBO of every test image turns the subset's gap into the whole set's NLL
                elbo_all = mean_elbo(model, binary_all.to(device), seed)
                metrics.update(iwae_gap_metrics(elbo_all[subset], log_p, elbo_all, elbo_draws=ELBO_DRAWS))
            else:
                metrics.update(iwae_gap_metrics(mean_elbo(model, binary_x, seed), log_p, elbo_draws=ELBO_DRAWS))
    if n_samples and model.can_sample:  # sample quality against the scored real test digits, evaluator version recorded
        from .metrics import model_sample_quality

        metrics.update(model_sample_quality(model, test_x, n_samples, seed, sample_options=sample_options))
    if guidance_sweep:
        metrics["guidance_sweep"] = guidance_sweep_metrics(model, test_x, guidance_sweep, sweep_samples or n_samples,
                                                           seed, sample_options, run_dir)
    metrics.update(seed=seed, hardware=runs.hardware(device), seconds=round(time.perf_counter() - start, 2),
                   data=data.describe())
    runs.atomic_write_text(run_dir / runs.METRICS, json.dumps(metrics, indent=2) + "\n")
    return metrics


def guidance_sweep_metrics(model, test_x: torch.Tensor, weights: list[float], n_samples: int, seed: int,
                           sample_options: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """FID-style score and conditional accuracy at each guidance weight (the fidelity/diversity trade-off of
    classifier-free guidance); writes RUN/guidance_sweep.json and RUN/guidance_sweep.png."""
    from .metrics import model_sample_quality

    if not model.conditional:
        raise ConfigError(f"{model.name}: an unconditional model has no guidance to sweep; train it conditional")
    rows = []
    for w in tqdm(weights, desc="guidance sweep", unit="weight", disable=None, file=sys.stderr):
        q = model_sample_quality(model, test_x, n_samples, seed, sample_options={**sample_options, "guidance": w})
        rows.append({"guidance": w, "fid": q["fid"]["value"],
                     "conditional_accuracy": q["conditional_accuracy"]["value"],
                     "precision": q["precision"]["value"], "recall": q["recall"]["value"],
                     "sample_seconds_per_image": q["sample_seconds_per_image"]["value"]})
    settings = {k: v for k, v in model.sample_settings(**sample_options).items() if k != "guidance"}
    result = {"value": rows, "unit": "FID-style (evaluator features) and conditional accuracy per guidance weight",
              "n": n_samples, "seed": seed, "sampling": settings}
    runs.atomic_write_text(run_dir / "guidance_sweep.json", json.dumps(result, indent=2) + "\n")
    plot_guidance_sweep(result, run_dir / "guidance_sweep.png")
    return result


def plot_guidance_sweep(result: dict[str, Any], path: Path) -> Path:
    """FID-style score (left axis) and conditional accuracy (right axis) against the guidance weight."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["value"]
    w = [r["guidance"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(w, [r["fid"] for r in rows], "o-", color="tab:blue")
    ax.set_xlabel("guidance weight w (0 unconditional, 1 conditional)")
    ax.set_ylabel("FID-style score (lower is better)", color="tab:blue")
    acc = ax.twinx()
    acc.plot(w, [100 * r["conditional_accuracy"] for r in rows], "s--", color="tab:red")
    acc.set_ylabel("conditional accuracy %", color="tab:red")
    s = result["sampling"]
    ax.set_title(f"Classifier-free guidance: {s['sampler']} {s['steps']} steps, eta {s['eta']:g}, "
                 f"{result['n']} samples each", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
