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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from . import runs
from .config import ConfigError, non_negative
from .data import FIXED_BINARIZATION, fixed_binarization, load_data
from .leaderboard import BINARIZED, DEQUANTIZED
from .metrics import bits_per_dim
from .trainer import resolve_device
from .training import progress

SAY_ESTIMATE_ABOVE = 60.0  # seconds: a longer IWAE pass says its estimated time and how to shorten it
DECODED_PER_CALL = 65_536  # IWAE: images decoded per log_prob call (test images x K), so progress shows
REFERENCE_SAMPLES = 10_000  # samples of the reported sample-quality figures (FID-style is biased by the count)
SAMPLE_SCORES = ("fid", "precision", "recall")
PR_NEIGHBOURS = 3  # k of precision/recall's k-nearest-neighbour balls (Kynkäänniemi et al. 2019)
DEFAULT_EDITS = 230  # an editor's scored edits: ten of each of the 23 kinds of genzoo.edits
ELBO_DRAWS = 10  # ELBO draws averaged per image for the IWAE gap: the one-sample ELBO's noise is most of its spread


def _batched(fn, x: torch.Tensor, batch: int, desc: str | None = None, first: Callable | None = None) -> torch.Tensor:
    """fn over x in batches, concatenated; with `desc`, progress in images after 2 s (a bar on a terminal, a
    line per 5 % elsewhere). `first(seconds, batch)` is called after the first batch (a time estimate)."""
    parts = []
    with progress.bar(len(x), desc or "", "image", enabled=desc is not None, delay=2.0) as bar:
        for i in range(0, len(x), batch):
            start = time.perf_counter()
            parts.append(fn(x[i : i + batch]))
            bar.update(len(parts[-1]))
            if first is not None and i == 0:
                first(time.perf_counter() - start, len(parts[-1]))
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
    """The model's log p(x) in nats of each test image (already binarized if needed), (N,), with progress.

    With importance samples (IWAE, K decoder passes per image), the time the whole pass will take is said
    after its first batch, with the ways to shorten it, when it is more than SAY_ESTIMATE_ABOVE seconds."""
    first = None
    if "k" in log_prob_kwargs:  # K decoder passes per image: fewer images per call keep the progress bar moving
        k = log_prob_kwargs["k"]
        batch = max(1, min(batch, DECODED_PER_CALL // k))

        def first(seconds: float, images: int) -> None:
            total = seconds / images * len(test_x)
            if total > SAY_ESTIMATE_ABOVE:
                print(f"genzoo evaluate: {model.name}: IWAE log p(x) with K={k} importance samples on "
                      f"{len(test_x):,} test digits: about {total / 60:.1f} min at this pace. Shorter: --iwae-k "
                      f"{max(1, k // 10)} (a looser estimate), or --max-test 1000 --random-subset (the whole set's "
                      "NLL estimated from a random 1,000, with its standard error)", file=sys.stderr, flush=True)

    return _batched(lambda b: model.log_prob(b, **log_prob_kwargs), test_x, batch, desc=f"{model.name}: log p(x)",
                    first=first)


def likelihood_metrics(model, log_p: torch.Tensor, **log_prob_kwargs) -> dict[str, Any]:
    """NLL in nats (with its standard error) and bits/dim from per-image log p(x) of test images."""
    nll = mean_and_se(-log_p)
    note = {"kind": model.log_prob_kind, "n": len(log_p), **log_prob_kwargs}
    if model.binary_data:
        note.update(data=FIXED_BINARIZATION, likelihood_data=BINARIZED)
        bits = bits_per_dim(nll["value"], dequantized=False)
    else:  # a density on [0, 1]^784 of dequantized pixels: bits/dim of the 256-level image, as usual
        note.update(data="dequantized 8-bit test pixels, density on [0, 1]^784 (see the model's log_prob)",
                    likelihood_data=DEQUANTIZED)
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


def log_z_metrics(model, metrics: dict[str, Any], ais: dict[str, int] | None = None) -> dict[str, Any]:
    """For a model whose log p(x) uses an estimated log partition function (the RBM's AIS): that estimate
    with its spread over the AIS runs, and its standard error beside the NLL, which it shifts as a whole.
    `ais`: the estimate's cost ({"ais_betas", "ais_runs"}), recorded beside both numbers."""
    log_z = model.log_z_uncertainty()
    cost = dict(ais or {})
    out = {"log_z": {**log_z, "unit": "nats", **cost, "method": "AIS (Salakhutdinov & Murray 2008); se by the delta "
                     "method over the AIS runs, low/high = log(mean weight -/+ 3 se); fewer betas or runs "
                     "(--ais-betas, --ais-runs) cost less and spread more"}}
    if "nll_nats" in metrics:
        out["nll_nats"] = {**metrics["nll_nats"], "se_log_z": log_z["se"], **cost}
    return out


def mean_elbo(model, x: torch.Tensor, seed: int) -> torch.Tensor:
    """The ELBO of each image averaged over ELBO_DRAWS draws, (N,) float64.

    Drawn from a generator of its own, so the other metrics' random draws are the same with or without it.
    """
    elbo = functools.partial(model.elbo, generator=torch.Generator(x.device).manual_seed(seed))
    return torch.stack([_batched(elbo, x, 500, desc=f"{model.name}: ELBO, draw {i + 1} of {ELBO_DRAWS}")
                        for i in range(ELBO_DRAWS)]).double().mean(0)


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
    recon = _batched(model.reconstruct, test_x, batch, desc=f"{model.name}: reconstructions")
    mse = float((recon - test_x).pow(2).mean())
    return {"reconstruction_mse": {"value": mse, "unit": "per pixel", "n": len(test_x)}}


def denoising_metrics(model, test_x: torch.Tensor, seed: int, batch: int = 500) -> dict[str, Any]:
    from .metrics import psnr
    from .models.dae import NOISE_KINDS, corrupt

    out = {}
    level = {"gaussian": 0.5, "salt-and-pepper": 0.3, "masking": 0.5}
    trained = (model.config.noise, model.config.noise_level)
    for kind, strength in [trained] + [(k, level[k]) for k in NOISE_KINDS if k != trained[0]]:
        noisy = corrupt(test_x, kind, strength, torch.Generator(device=test_x.device).manual_seed(seed))
        denoised = _batched(model.denoise, noisy, batch, desc=f"{model.name}: denoising {kind}")
        suffix = kind.replace("-", "_")
        note = {"unit": "dB", "n": len(test_x), "noise": f"{kind}:{strength}"}
        out[f"psnr_noisy_{suffix}"] = {"value": float(psnr(noisy, test_x).mean()), **note}
        out[f"psnr_denoised_{suffix}"] = {"value": float(psnr(denoised, test_x).mean()), **note}
    return out


def editing_metrics(model, test_x: torch.Tensor, n_edits: int, seed: int) -> dict[str, Any]:
    """An editor's edits of `n_edits` test digits, the edit kinds in turn (`genzoo.edits.KINDS`, trained phrasings,
    seeded), with the run's guidance scales and steps, scored against their exact outputs (`edits.score_edits`):
    mean PSNR beside that of doing nothing (the input as the edit), the share at 18 dB or more, and the share the
    evaluator reads as the digit of the exact output."""
    from . import edits
    from .evaluator import load_evaluator

    names = list(edits.KINDS)
    digits = test_x[torch.arange(n_edits) % len(test_x)]
    g = torch.Generator().manual_seed(seed)
    triples = edits.make_triples(digits.cpu(), g, kinds=[names[i % len(names)] for i in range(n_edits)])
    settings = model.edit_settings()
    edited = torch.cat([model.edit(triples.inputs[i:i + 256].to(test_x.device), triples.instructions[i:i + 256],
                                   generator=g).cpu() for i in range(0, n_edits, 256)])
    evaluator = load_evaluator("cpu")
    scored, nothing = edits.score_edits(edited, triples.outputs, evaluator), \
        edits.score_edits(triples.inputs, triples.outputs, evaluator)
    note = {"n": n_edits, "kinds": len(names), **settings, "what": "edits of test digits, each kind in turn, "
            "against the exact output"}
    return {"edit_psnr": {"value": scored["psnr"], "unit": "dB", **note},
            "edit_psnr_input": {"value": nothing["psnr"], "unit": "dB", **note,
                                "what": "doing nothing: the input itself against the exact output"},
            "edit_success": {"value": scored["success"], "unit": f"share of edits at >= {edits.SUCCESS_PSNR:g} dB",
                             **note},
            "edit_label_agreement": {"value": scored["label_agreement"], **note,
                                     "unit": "share of edits the evaluator reads as the exact output's digit"}}


def check_evaluation_arguments(*, max_test: int, random_subset: bool, iwae_k: int, n_samples: int,
                               sweep_samples: int, ais_betas: int, ais_runs: int) -> None:
    """`evaluate_run`'s counts, checked before anything is loaded: each error names the value and the fix."""
    non_negative(max_test=max_test, iwae_k=iwae_k, n_samples=n_samples, ais_betas=ais_betas, ais_runs=ais_runs)
    if 0 < ais_betas < 10:
        raise ConfigError(f"--ais-betas {ais_betas}: AIS needs at least 10 intermediate distributions "
                          "(Salakhutdinov & Murray use 14500)")
    for what, count in (("--samples", n_samples), ("--sweep-samples", sweep_samples)):
        if 0 < count <= PR_NEIGHBOURS:
            raise ConfigError(f"{what} {count}: precision and recall compare each sample with its {PR_NEIGHBOURS} "
                              f"nearest neighbours, so they need at least {PR_NEIGHBOURS + 1} samples; give "
                              f"{what} {PR_NEIGHBOURS + 1} or more (10000 for the reported figures), or 0 for none")
    if random_subset and not max_test:
        raise ConfigError("random_subset draws max_test test images at random; give max_test too "
                         "(e.g. genzoo evaluate RUN --max-test 300 --random-subset)")


def check_sample_options(model, sample_options: dict[str, Any] | None, guidance_sweep: list[float] | None
                         ) -> dict[str, Any]:
    """The sampling options given (None values dropped), each one the model's `sample` takes."""
    sample_options = {k: v for k, v in (sample_options or {}).items() if v is not None}
    wanted = set(sample_options) | ({"guidance"} if guidance_sweep else set())
    if wanted - set(model.sample_options):
        raise ConfigError(f"{model.name}: no sampling option {', '.join(sorted(wanted - set(model.sample_options)))}; "
                          f"its options: {', '.join(model.sample_options) or 'none'}")
    return sample_options


def training_record(model, run_dir: Path) -> dict[str, Any]:
    """The model, its parameter count, and the training seconds and images/s of its last session."""
    metrics: dict[str, Any] = {"model": model.name, "parameters": model.n_parameters()}
    end = [r for r in runs.read_metrics_log(run_dir) if r.get("event") == "end"]
    if end:
        metrics["train_seconds"] = end[-1]["train_seconds"]
        metrics["train_images_per_s"] = end[-1]["images_per_s"]
    return metrics


def unconditional_likelihood_metrics(model, binary_x: torch.Tensor, binary_all: torch.Tensor, subset: torch.Tensor,
                                     *, seed: int, iwae_k: int, ais_betas: int, ais_runs: int, random_subset: bool,
                                     generator: torch.Generator, device: torch.device
                                     ) -> tuple[dict[str, Any], dict[str, Any], dict[str, int] | None]:
    """log p(x) of an unconditional model on the scored test images, with what its kind adds: the AIS estimate
    of log Z first (the RBM), the IWAE gap after (the VAE).

    Returns:
        (metrics, the log_prob arguments used ({"k": K} for importance-sampled estimates), the AIS cost or None).
    """
    metrics: dict[str, Any] = {}
    takes_k = "k" in model.log_prob_options  # importance-sampled estimates
    kwargs = {"k": iwae_k or model.config.iwae_k} if takes_k else {}
    draws = {"generator": generator} if "generator" in model.log_prob_options else {}
    ais = None
    if model.estimates_log_z:  # AIS of log Z first, its cost stated beside the number, with progress
        ais = {"ais_betas": ais_betas or model.config.ais_betas, "ais_runs": ais_runs or model.config.ais_runs}
        with progress.bar(ais["ais_betas"] - 1, f"{model.name}: AIS log Z, {ais['ais_runs']} chains", "beta",
                          enabled=True, delay=2.0) as bar:
            model.estimate_log_z(ais["ais_betas"], ais["ais_runs"], seed=0, on_step=bar.update)
    log_p = per_image_log_prob(model, binary_x, **kwargs, **draws)
    metrics.update(likelihood_metrics(model, log_p, **kwargs))
    if model.estimates_log_z:  # log p(x) through an AIS estimate of log Z: its spread and its cost
        metrics.update(log_z_metrics(model, metrics, ais))
    if model.has_elbo and takes_k:
        if random_subset:  # the ELBO of every test image turns the subset's gap into the whole set's NLL
            elbo_all = mean_elbo(model, binary_all.to(device), seed)
            metrics.update(iwae_gap_metrics(elbo_all[subset], log_p, elbo_all, elbo_draws=ELBO_DRAWS))
        else:
            metrics.update(iwae_gap_metrics(mean_elbo(model, binary_x, seed), log_p, elbo_draws=ELBO_DRAWS))
    return metrics, kwargs, ais


def density_metrics(model, data, subset: torch.Tensor, *, seed: int, iwae_k: int, ais_betas: int, ais_runs: int,
                    random_subset: bool, device: torch.device
                    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, int] | None]:
    """The ELBO and the NLL (marginal and given the label for a class-conditional model) on the scored test
    images, binarized by the fixed binarization for Bernoulli models.

    Returns:
        (metrics, the log_prob arguments used, the AIS cost or None), as `unconditional_likelihood_metrics`.
    """
    metrics: dict[str, Any] = {}
    # the fixed binarization is drawn for the whole test set, so a subset's images are the same draws
    binary_all = fixed_binarization(data.test_x) if model.binary_data else data.test_x
    binary_x = binary_all[subset].to(device)
    # one stream for the ELBO's and the importance samples' draws, seeded like the rest of the evaluation
    generator = torch.Generator(device).manual_seed(seed)
    if model.has_elbo:
        elbo = _batched(functools.partial(model.elbo, generator=generator), binary_x, 500, desc=f"{model.name}: ELBO")
        metrics["elbo_nats"] = {**mean_and_se(elbo), "unit": "nats/image (higher is better)", "n": len(elbo),
                                "data": FIXED_BINARIZATION}
    if model.log_prob_kind is not None and model.conditional:  # log p(x | y) and the marginal log p(x)
        metrics.update(class_conditional_likelihood_metrics(model, binary_x, data.test_y[subset], data.train_y))
    if model.log_prob_kind is None or model.conditional:
        return metrics, {}, None
    more, kwargs, ais = unconditional_likelihood_metrics(
        model, binary_x, binary_all, subset, seed=seed, iwae_k=iwae_k, ais_betas=ais_betas, ais_runs=ais_runs,
        random_subset=random_subset, generator=generator, device=device)
    return {**metrics, **more}, kwargs, ais


def sample_metrics(model, reference: torch.Tensor, n_samples: int, seed: int, sample_options: dict[str, Any]
                   ) -> dict[str, Any]:
    """Sample quality of `n_samples` samples against every real digit of `reference`, with progress; the
    scores that depend on the count say so when it is under REFERENCE_SAMPLES."""
    from .metrics import model_sample_quality

    with progress.bar(n_samples, f"{model.name}: samples", "image", enabled=True, delay=2.0) as bar:
        metrics = model_sample_quality(model, reference, n_samples, seed, sample_options=sample_options,
                                       on_batch=bar.update)
    for key in SAMPLE_SCORES:
        if key in metrics and n_samples < REFERENCE_SAMPLES:
            metrics[key]["note"] = (f"from {n_samples:,} samples, fewer than the {REFERENCE_SAMPLES:,} of the "
                                    "reported figures: compare only with scores from as many samples")
    return metrics


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
    ais_betas: int = 0,
    ais_runs: int = 0,
    n_edits: int = DEFAULT_EDITS,
) -> dict[str, Any]:
    """Evaluate a run folder and write RUN/metrics.json; returns what it wrote.

    Args:
        run_dir: a folder written by `genzoo train`.
        device: "auto", "cpu" or "cuda".
        seed: seeds every random draw of the evaluation (samples, noise, importance samples).
        max_test: score likelihoods, reconstructions and denoising on N test images only (0: all), e.g. for a
            quick look on a CPU. Sample quality always takes every test digit as its real reference.
        random_subset: take those N at random (seeded by `seed`) instead of the first N; with a model
            that has both an ELBO and an IWAE log_prob, this also estimates the whole test set's NLL.
        iwae_k: importance samples for models with an IWAE log_prob (0: the model's own setting).
        n_samples: samples scored in the evaluator's feature space (FID-style, precision, recall,
            class coverage, conditional accuracy; `genzoo.metrics.model_sample_quality`); 0: none.
        sample_options: options of the model's `sample` (diffusion: guidance, steps, eta, sampler).
        guidance_sweep: classifier-free guidance weights: FID-style score and conditional accuracy at each,
            written to RUN/guidance_sweep.json and drawn in RUN/guidance_sweep.png.
        sweep_samples: samples per guidance weight (0: n_samples).
        ais_betas, ais_runs: the cost of an AIS estimate of log Z (the RBM; 0: the model's own settings):
            intermediate distributions and chains. Fewer cost less and give a wider spread; both are
            recorded beside the NLL.
        n_edits: an editor's (instruct) edits of test digits scored against their exact outputs (0: none).
    """
    check_evaluation_arguments(max_test=max_test, random_subset=random_subset, iwae_k=iwae_k, n_samples=n_samples,
                               sweep_samples=sweep_samples, ais_betas=ais_betas, ais_runs=ais_runs)
    non_negative(n_edits=n_edits)
    start = time.perf_counter()
    run_dir = Path(run_dir)
    device = resolve_device(device)
    config = runs.read_config(run_dir)
    model = runs.load(run_dir, device)
    sample_options = check_sample_options(model, sample_options, guidance_sweep)
    data = load_data(config["data"], verbose=False)
    if n_samples and len(data.test_x) <= PR_NEIGHBOURS:
        raise ConfigError(f"{config['data']}: {len(data.test_x)} test digits; precision and recall need at least "
                          f"{PR_NEIGHBOURS + 1} real digits as their reference; use other data or --samples 0")
    subset = subset_indices(len(data.test_x), max_test, seed, random_subset)
    test_x = data.test_x[subset].to(device)
    torch.manual_seed(seed)

    metrics = training_record(model, run_dir)
    if model.can_denoise:
        metrics.update(denoising_metrics(model, test_x, seed))
    if model.can_reconstruct:
        metrics.update(reconstruction_metrics(model, test_x))
    if model.can_edit and n_edits:
        metrics.update(editing_metrics(model, test_x, n_edits, seed))
    density, kwargs, ais = density_metrics(model, data, subset, seed=seed, iwae_k=iwae_k, ais_betas=ais_betas,
                                           ais_runs=ais_runs, random_subset=random_subset, device=device)
    metrics.update(density)
    # Sample quality against a fixed reference: every test digit of the data (10,000 for MNIST; features cached
    # by content), whatever max_test says, so that FID-style, precision and recall of two evaluations compare.
    reference = data.test_x
    if n_samples and model.can_sample:
        metrics.update(sample_metrics(model, reference, n_samples, seed, sample_options))
    if guidance_sweep:
        metrics["guidance_sweep"] = guidance_sweep_metrics(model, reference, guidance_sweep,
                                                           sweep_samples or n_samples, seed, sample_options, run_dir)
    metrics.update(seed=seed, hardware=runs.hardware(device), seconds=round(time.perf_counter() - start, 2),
                   data=data.describe())
    metrics["settings"] = {"test_images": len(subset), "test_total": len(data.test_x), "random_subset": random_subset,
                           "n_samples": n_samples if model.can_sample else 0, "seed": seed,
                           "iwae_k": kwargs.get("k") if model.log_prob_kind is not None else None,
                           "sampling": sample_options, "guidance_sweep": guidance_sweep,
                           **({"n_edits": n_edits} if model.can_edit else {})}
    if ais is not None:
        metrics["settings"]["ais"] = {"betas": ais["ais_betas"], "runs": ais["ais_runs"]}
    metrics["trained_step"] = runs.trained_step(run_dir)
    metrics["evaluated_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    runs.write_evaluation(run_dir, metrics)
    return metrics


def guidance_sweep_metrics(model, test_x: torch.Tensor, weights: list[float], n_samples: int, seed: int,
                           sample_options: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """FID-style score and conditional accuracy at each guidance weight (the fidelity/diversity trade-off of
    classifier-free guidance); writes RUN/guidance_sweep.json and RUN/guidance_sweep.png."""
    from .metrics import model_sample_quality

    if not model.conditional:
        raise ConfigError(f"{model.name}: an unconditional model has no guidance to sweep; train it conditional")
    rows = []
    bar = progress.bar(len(weights), "guidance sweep", "weight", enabled=True)
    for w in weights:
        q = model_sample_quality(model, test_x, n_samples, seed, sample_options={**sample_options, "guidance": w})
        rows.append({"guidance": w, "fid": q["fid"]["value"],
                     "conditional_accuracy": q["conditional_accuracy"]["value"],
                     "precision": q["precision"]["value"], "recall": q["recall"]["value"],
                     "sample_seconds_per_image": q["sample_seconds_per_image"]["value"]})
        bar.update(1)
    bar.close()
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
