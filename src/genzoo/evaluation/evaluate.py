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
import hashlib
import json
import math
import pickle
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .. import runlock, runs
from ..config import ConfigError, non_negative
from ..constants import N_CLASSES
from ..data import FIXED_BINARIZATION, fixed_binarization, load_data
from ..defaults import DEFAULT_EDITS
from ..metrics import bits_per_dim, psnr
from ..training import progress
from ..training.devices import resolve_device
from .leaderboard import BINARIZED, DEQUANTIZED

SAY_ESTIMATE_ABOVE = 60.0  # seconds: a longer IWAE pass says its estimated time and how to shorten it
DECODED_PER_CALL = 65_536  # IWAE: images decoded per log_prob call (test images x K), so progress shows
REFERENCE_SAMPLES = 10_000  # samples of the reported sample-quality figures (FID-style is biased by the count)
SAMPLE_SCORES = ("fid", "precision", "recall")
PR_NEIGHBOURS = 3  # k of precision/recall's k-nearest-neighbour balls (Kynkäänniemi et al. 2019)
ELBO_DRAWS = 10  # ELBO draws averaged per image for the IWAE gap: the one-sample ELBO's noise is most of its spread


BUDGET_RESERVE = 0.15  # share of a budget left for loading, the evaluator's features, reconstructions and scoring
PAPER_PROTOCOL = {"max_test": 0, "iwae_k": 5000, "ais_betas": 14500, "ais_runs": 100, "n_samples": REFERENCE_SAMPLES}
BUDGET_SUBSETS = (2000, 1000, 500, 200, 100)  # test images a budget scores at random when all cannot be
BUDGET_MIN_K = 1000  # IWAE: the budget keeps K at least this (its bias falls with K) and scores fewer images
BUDGET_MIN_SAMPLES = 200
PROBE_ONCE_ABOVE = 2.0  # seconds: a probe call slower than this is not repeated
SAVE_EVERY = 30.0  # seconds between saves of an evaluation's partial sums: a kill loses at most this much work


class PassState:
    """One long pass of an evaluation as far as it got, kept in its `PartialState`: the images (or samples) done,
    their values, and the state of the pass's random generator after them."""

    def __init__(self, partial: PartialState, store: dict[str, Any], total: int,
                 generator: torch.Generator | None = None):
        self.partial, self.store, self.generator = partial, store, generator
        store["total"] = total

    @property
    def done(self) -> int:
        return int(self.store.get("done", 0))

    @property
    def values(self) -> torch.Tensor:
        return self.store["values"]

    def restore_generator(self) -> None:
        if self.generator is not None:
            self.generator.set_state(self.store["generator"])

    def keep(self, done: int, values: Callable[[], torch.Tensor]) -> None:
        self.store.update(done=done, values=values().cpu())
        if self.generator is not None:
            self.store["generator"] = self.generator.get_state()
        self.partial.tick()


class PartialState:
    """RUN/evaluations/.partial_<request>.pt: the long passes of an unfinished evaluation (IWAE, AIS, samples), so
    that the same command, run again after Ctrl-C or a kill, goes on from there and ends with the numbers of an
    uninterrupted run. Saved atomically every `every` seconds and on Ctrl-C; removed when the evaluation is
    written. `request` (the command's settings, the weights' size and time) must match, or it starts afresh."""

    def __init__(self, run_dir: Path, request: dict[str, Any], every: float = SAVE_EVERY, enabled: bool = True):
        key = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()[:16]
        self.path = run_dir / runs.EVALUATIONS / f".partial_{key}.pt"
        self.every, self.enabled = every, enabled
        self.store: dict[str, Any] = {"request": request, "passes": {}, "plan": None}
        self.saved_at = time.monotonic()
        self.resumed = False
        if enabled and self.path.exists():
            try:
                state = torch.load(self.path, map_location="cpu", weights_only=True)
            except (RuntimeError, EOFError, pickle.UnpicklingError) as e:
                print(f"genzoo evaluate: {self.path}: unreadable partial state ({str(e).splitlines()[0]}); "
                      "starting afresh", file=sys.stderr)
                return
            if isinstance(state, dict) and state.get("request") == request:
                self.store, self.resumed = state, True

    @property
    def plan(self) -> dict[str, Any] | None:
        return self.store["plan"]

    @plan.setter
    def plan(self, plan: dict[str, Any]) -> None:
        self.store["plan"] = plan

    def pass_state(self, name: str, total: int, generator: torch.Generator | None = None) -> PassState | None:
        if not self.enabled:
            return None
        return PassState(self, self.store["passes"].setdefault(name, {}), total, generator)

    def describe(self) -> str:
        """What is done and what is left, e.g. "log p(x) 3,000 of 10,000; samples 0 of 10,000"."""
        return "; ".join(f"{name} {p.get('done', 0):,} of {p['total']:,}" for name, p in self.store["passes"].items()
                         if "total" in p) or "nothing yet"

    def tick(self) -> None:
        if time.monotonic() - self.saved_at >= self.every:
            self.save()

    def save(self) -> None:
        if not self.enabled:
            return
        self.path.parent.mkdir(exist_ok=True)
        runs.atomic_torch_save(self.store, self.path)
        self.saved_at = time.monotonic()

    def finish(self) -> None:
        self.path.unlink(missing_ok=True)


def _batched(fn, x: torch.Tensor, batch: int, desc: str | None = None, first: Callable | None = None,
             resume: PassState | None = None) -> torch.Tensor:
    """fn over x in batches, concatenated; with `desc`, progress in images after 2 s (a bar on a terminal, a
    line per 5 % elsewhere). `first(seconds, batch)` is called after the first batch (a time estimate).

    With `resume` (a pass of an evaluation's partial state), the batches it holds are not computed again, its
    random stream goes on from where they ended, and each new batch is kept in it (saved now and then)."""
    parts, done = [], 0
    if resume is not None and resume.done:
        parts, done = [resume.values], resume.done
        resume.restore_generator()
    with progress.bar(len(x), desc or "", "image", enabled=desc is not None, delay=2.0) as bar:
        bar.update(done)
        for i in range(done, len(x), batch):
            start = time.perf_counter()
            parts.append(fn(x[i : i + batch]))
            bar.update(len(parts[-1]))
            if first is not None and i == done:
                first(time.perf_counter() - start, len(parts[-1]), len(x) - done)
            if resume is not None:
                resume.keep(i + len(parts[-1]), lambda: torch.cat(parts))
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


def per_image_log_prob(model, test_x: torch.Tensor, batch: int = 500, resume: PassState | None = None,
                       **log_prob_kwargs) -> torch.Tensor:
    """The model's log p(x) in nats of each test image (already binarized if needed), (N,), with progress.

    With importance samples (IWAE, K decoder passes per image), the time the whole pass will take is said
    after its first batch, with the ways to shorten it, when it is more than SAY_ESTIMATE_ABOVE seconds."""
    first = None
    batch = min(batch, getattr(model, "log_prob_batch", None) or batch)
    if "k" in log_prob_kwargs:  # K decoder passes per image: fewer images per call keep the progress bar moving
        k = log_prob_kwargs["k"]
        batch = max(1, min(batch, DECODED_PER_CALL // k))

        def first(seconds: float, images: int, left: int) -> None:
            total = seconds / images * left
            if total > SAY_ESTIMATE_ABOVE:
                print(f"genzoo evaluate: {model.name}: IWAE log p(x) with K={k} importance samples on "
                      f"{left:,} test digits: about {total / 60:.1f} min at this pace. Shorter: --iwae-k "
                      f"{max(1, k // 10)} (a looser estimate), or --max-test 1000 --random-subset (the whole set's "
                      "NLL estimated from a random 1,000, with its standard error)", file=sys.stderr, flush=True)

    return _batched(lambda b: model.log_prob(b, **log_prob_kwargs), test_x, batch, desc=f"{model.name}: log p(x)",
                    first=first, resume=resume)


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
                                         train_y: torch.Tensor, batch: int = 500,
                                         partial: PartialState | None = None) -> dict[str, Any]:
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
                 desc=f"{model.name}: log p(x | y={c})",
                 resume=partial and partial.pass_state(f"log p(x | y={c})", len(index))).double()
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


def mean_elbo(model, x: torch.Tensor, seed: int, partial: PartialState | None = None) -> torch.Tensor:
    """The ELBO of each image averaged over ELBO_DRAWS draws, (N,) float64.

    Drawn from a generator of its own, so the other metrics' random draws are the same with or without it.
    """
    generator = torch.Generator(x.device).manual_seed(seed)
    elbo = functools.partial(model.elbo, generator=generator)
    return torch.stack([_batched(elbo, x, 500, desc=f"{model.name}: ELBO, draw {i + 1} of {ELBO_DRAWS}",
                                 resume=partial and partial.pass_state(f"ELBO draw {i + 1}", len(x), generator))
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
    from ..models.dae import NOISE_KINDS, corrupt

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


def editing_metrics(model, test_x: torch.Tensor, n_edits: int, seed: int,
                    test_y: torch.Tensor | None = None) -> dict[str, Any]:
    """An editor's edits of `n_edits` test digits, the edit kinds in turn (`edits.KINDS`, trained phrasings,
    seeded), with the run's guidance scales and steps, scored against their exact outputs (`edits.score_edits`):
    mean PSNR beside that of doing nothing (the input as the edit), the share at 18 dB or more, the share the
    evaluator reads as the digit of the exact output, and how many kinds reach 18 dB on average (each kind's mean
    PSNR beside it). Given the digits' labels `test_y`, also semantic edits ("turn this 3 into an 8") of one test
    digit per 23 edits (`semantic_edit_metrics`)."""
    from ..models.instruct import edits
    from .evaluator import load_evaluator

    names = list(edits.KINDS)
    digits = test_x[torch.arange(n_edits) % len(test_x)]
    g = torch.Generator().manual_seed(seed)
    kinds = [names[i % len(names)] for i in range(n_edits)]
    triples = edits.make_triples(digits.cpu(), g, kinds=kinds)
    settings = model.edit_settings()
    edited = _batched(lambda index: model.edit(triples.inputs[index].to(test_x.device),
                                               [triples.instructions[i] for i in index.tolist()], generator=g).cpu(),
                      torch.arange(n_edits), 256, desc=f"{model.name}: edits")
    evaluator = load_evaluator("cpu")
    scored, nothing = edits.score_edits(edited, triples.outputs, evaluator), \
        edits.score_edits(triples.inputs, triples.outputs, evaluator)
    note = {"n": n_edits, "kinds": len(names), **settings, "what": "edits of test digits, each kind in turn, "
            "against the exact output"}
    per_edit = psnr(edited, triples.outputs)
    by_kind = {kind: per_edit[k::len(names)].mean().item() for k, kind in enumerate(names[:n_edits])}  # in turn
    out = {"edit_psnr": {"value": scored["psnr"], "unit": "dB", **note},
           "edit_psnr_input": {"value": nothing["psnr"], "unit": "dB", **note,
                               "what": "doing nothing: the input itself against the exact output"},
           "edit_success": {"value": scored["success"], "unit": f"share of edits at >= {edits.SUCCESS_PSNR:g} dB",
                            **note},
           "edit_label_agreement": {"value": scored["label_agreement"], **note,
                                    "unit": "share of edits the evaluator reads as the exact output's digit"},
           "edit_kinds_at_18db": {"value": sum(v >= edits.SUCCESS_PSNR for v in by_kind.values()), **note,
                                  "unit": f"kinds (of {len(by_kind)}) whose mean PSNR is >= {edits.SUCCESS_PSNR:g} dB",
                                  "by_kind": by_kind}}
    if test_y is not None:
        out.update(semantic_edit_metrics(model, test_x, test_y, max(1, n_edits // len(names)), seed, evaluator))
    return out


def semantic_edit_metrics(model, test_x: torch.Tensor, test_y: torch.Tensor, n: int, seed: int,
                          evaluator) -> dict[str, Any]:
    """Semantic edits of the first `n` test digits, each to another digit drawn at random ("turn this 3 into an
    8", trained phrasings, seeded): the share the evaluator reads as the digit asked for."""
    from ..models.instruct import edits

    n = min(n, len(test_x))
    g = torch.Generator().manual_seed(seed + 1)
    sources = test_y[:n].cpu()
    targets = (sources + torch.randint(1, N_CLASSES, (n,), generator=g)) % N_CLASSES  # a different digit
    instructions = edits.semantic_instructions(sources.tolist(), targets.tolist(), g)
    edited = _batched(lambda index: model.edit(test_x[index], [instructions[i] for i in index.tolist()],
                                               generator=g).cpu(),
                      torch.arange(n), 256, desc=f"{model.name}: semantic edits")
    read = evaluator.predict(edited)
    return {"semantic_edit_accuracy": {"value": (read == targets).float().mean().item(), "n": n,
                                       **model.edit_settings(), "what": "semantic edits of test digits to another "
                                       "digit drawn at random, read by the evaluator as the digit asked for"}}


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
                                     generator: torch.Generator, device: torch.device,
                                     partial: PartialState | None = None, whole_test: bool = True
                                     ) -> tuple[dict[str, Any], dict[str, Any], dict[str, int] | None]:
    """log p(x) of an unconditional model on the scored test images, with what its kind adds: the AIS estimate
    of log Z first (the RBM), the IWAE gap after (the VAE), and from a random subset, unless `whole_test` is
    False (a budget too small for the ELBO of every test image), the whole test set's NLL.

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
        # the chains, their weights and their random stream are kept as they go: a resumed AIS goes on
        state = partial.pass_state("AIS steps", ais["ais_betas"] - 1) if partial is not None else None

        def step(k: int) -> None:
            bar.update(k)
            if state is not None:
                state.store["done"] = state.store["step"]
                partial.tick()

        with progress.bar(ais["ais_betas"] - 1, f"{model.name}: AIS log Z, {ais['ais_runs']} chains", "beta",
                          enabled=True, delay=2.0) as bar:
            bar.update(state.done if state is not None else 0)
            model.estimate_log_z(ais["ais_betas"], ais["ais_runs"], seed=0, on_step=step,
                                 state=state.store if state is not None else None)
    resume = partial and partial.pass_state("log p(x)", len(binary_x), draws.get("generator"))
    log_p = per_image_log_prob(model, binary_x, resume=resume, **kwargs, **draws)
    metrics.update(likelihood_metrics(model, log_p, **kwargs))
    if model.estimates_log_z:  # log p(x) through an AIS estimate of log Z: its spread and its cost
        metrics.update(log_z_metrics(model, metrics, ais))
    if model.has_elbo and takes_k:
        if random_subset and whole_test:  # the ELBO of every test image turns the subset's gap into the whole
            # set's NLL
            elbo_all = mean_elbo(model, binary_all.to(device), seed, partial)
            metrics.update(iwae_gap_metrics(elbo_all[subset], log_p, elbo_all, elbo_draws=ELBO_DRAWS))
        else:
            metrics.update(iwae_gap_metrics(mean_elbo(model, binary_x, seed, partial), log_p, elbo_draws=ELBO_DRAWS))
    return metrics, kwargs, ais


def density_metrics(model, data, subset: torch.Tensor, *, seed: int, iwae_k: int, ais_betas: int, ais_runs: int,
                    random_subset: bool, device: torch.device, partial: PartialState | None = None,
                    whole_test: bool = True) -> tuple[dict[str, Any], dict[str, Any], dict[str, int] | None]:
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
        elbo = _batched(functools.partial(model.elbo, generator=generator), binary_x, 500, desc=f"{model.name}: ELBO",
                        resume=partial and partial.pass_state("ELBO", len(binary_x), generator))
        metrics["elbo_nats"] = {**mean_and_se(elbo), "unit": "nats/image (higher is better)", "n": len(elbo),
                                "data": FIXED_BINARIZATION}
    if model.log_prob_kind is not None and model.conditional:  # log p(x | y) and the marginal log p(x)
        metrics.update(class_conditional_likelihood_metrics(model, binary_x, data.test_y[subset], data.train_y,
                                                            partial=partial))
    if model.log_prob_kind is None or model.conditional:
        return metrics, {}, None
    more, kwargs, ais = unconditional_likelihood_metrics(
        model, binary_x, binary_all, subset, seed=seed, iwae_k=iwae_k, ais_betas=ais_betas, ais_runs=ais_runs,
        random_subset=random_subset, generator=generator, device=device, partial=partial, whole_test=whole_test)
    return {**metrics, **more}, kwargs, ais


class DrawnSamples:
    """Stands in for a model in `scoring.model_sample_quality`: its `sample` hands back samples drawn already, in
    order, so that the drawing (long, resumable) and the scoring (one pass) stay apart."""

    def __init__(self, model, samples: torch.Tensor):
        self.model, self.samples, self.given = model, samples, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def sample(self, n: int, *, y: torch.Tensor | None = None, generator: torch.Generator | None = None,
               **options: Any) -> torch.Tensor:
        out = self.samples[self.given:self.given + n]
        self.given += n
        return out


def draw_samples(model, n_samples: int, seed: int, sample_options: dict[str, Any], resume: PassState | None = None,
                 batch_size: int = 1000) -> tuple[torch.Tensor, float]:
    """The samples `scoring.model_sample_quality` draws (the same labels, generator and batches), with progress,
    kept in `resume` as they come. Returns them (n, 1, 28, 28) float32 on the CPU and the seconds of drawing."""
    labels = torch.arange(n_samples) % N_CLASSES if model.conditional else None
    generator = torch.Generator().manual_seed(seed)
    if resume is not None:
        resume.generator = generator
    seconds = float(resume.store.get("seconds", 0.0)) if resume is not None else 0.0

    def draw(index: torch.Tensor) -> torch.Tensor:
        nonlocal seconds
        start = time.perf_counter()
        y = labels[index].to(model.device) if labels is not None else None
        out = model.sample(len(index), y=y, generator=generator, **sample_options).float().cpu()
        seconds += time.perf_counter() - start
        if resume is not None:
            resume.store["seconds"] = seconds
        return out

    samples = _batched(draw, torch.arange(n_samples), batch_size, desc=f"{model.name}: samples", resume=resume)
    return samples, seconds


def sample_metrics(model, reference: torch.Tensor, n_samples: int, seed: int, sample_options: dict[str, Any],
                   partial: PartialState | None = None) -> dict[str, Any]:
    """Sample quality of `n_samples` samples against every real digit of `reference`, with progress; the
    scores that depend on the count say so when it is under REFERENCE_SAMPLES."""
    from .scoring import model_sample_quality

    model.eval()
    resume = partial and partial.pass_state("samples", n_samples)
    samples, seconds = draw_samples(model, n_samples, seed, sample_options, resume)
    metrics = model_sample_quality(DrawnSamples(model, samples), reference, n_samples, seed,
                                   sample_options=sample_options)
    metrics["sample_seconds_per_image"]["value"] = seconds / n_samples  # the drawing's, over every session
    for key in SAMPLE_SCORES:
        if key in metrics and n_samples < REFERENCE_SAMPLES:
            metrics[key]["note"] = (f"from {n_samples:,} samples, fewer than the {REFERENCE_SAMPLES:,} of the "
                                    "reported figures: compare only with scores from as many samples")
    return metrics


def _timed(fn: Callable[[], Any]) -> float:
    """Seconds of one call of fn. A first call pays for allocations and lazy set-up, so a quick one is timed again;
    one slower than PROBE_ONCE_ABOVE (an RBM's Gibbs chain on a busy machine) is its own estimate: a second call
    would spend the budget on the probe."""
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    if first > PROBE_ONCE_ABOVE:
        return first
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def probe_costs(model, binary_x: torch.Tensor, device: torch.device, ais_runs: int,
                reference: torch.Tensor | None = None) -> dict[str, float]:
    """Seconds per unit of each long pass, timed on this machine with generators of their own (the evaluation's
    draws are not moved): "decode" (one IWAE importance sample of one image), "elbo" (one image's ELBO),
    "image" (one image's log p(x), every label for a class-conditional model), "ais_step" (one AIS step of
    `ais_runs` chains), "sample" (drawing one sample, and scoring it against every image of `reference`), and
    "scoring" (what scoring costs whatever the count), "edit" (one of an editor's scored edits), "scored" (one
    test image's reconstruction and denoising, every noise kind)."""
    costs: dict[str, float] = {}
    g = torch.Generator(device).manual_seed(12345)
    x = binary_x[:16]
    if model.can_reconstruct or model.can_denoise:  # a conv net's passes over 10,000 digits take minutes when busy
        def scored() -> None:
            if model.can_denoise:
                denoising_metrics(model, binary_x[:100], seed=1)
            if model.can_reconstruct:
                reconstruction_metrics(model, binary_x[:100])

        costs["scored"] = _timed(scored) / len(binary_x[:100])
    if model.log_prob_kind is not None:
        if "k" in model.log_prob_options:
            draws = {"generator": g} if "generator" in model.log_prob_options else {}
            costs["decode"] = _timed(lambda: model.log_prob(x, k=64, **draws)) / (len(x) * 64)
        elif model.estimates_log_z:
            costs["ais_step"] = _timed(lambda: model.estimate_log_z(12, ais_runs, seed=1)) / 11
            costs["image"] = _timed(lambda: model.log_prob(x)) / len(x)
        elif model.conditional:
            y = torch.zeros(len(x), dtype=torch.long, device=x.device)
            costs["image"] = _timed(lambda: model.log_prob(x, y)) / len(x) * int(getattr(model.config, "n_classes", 10))
        else:
            costs["image"] = _timed(lambda: model.log_prob(x)) / len(x)
    if model.has_elbo:
        costs["elbo"] = _timed(lambda: model.elbo(binary_x[:200], generator=g)) / len(binary_x[:200])
    if model.can_edit:
        from ..models.instruct import edits

        triples = edits.make_triples(binary_x[:8].cpu(), torch.Generator().manual_seed(1))
        costs["edit"] = _timed(lambda: model.edit(triples.inputs.to(device), triples.instructions,
                                                  generator=torch.Generator().manual_seed(1))) / len(triples.inputs)
    if model.can_sample:
        costs.update(sampling_costs(model, device, reference))
    return costs


def sampling_costs(model, device: torch.device, reference: torch.Tensor | None) -> dict[str, float]:
    """`probe_costs`' "sample" (drawing one sample, and scoring it against every image of `reference`) and
    "scoring" (what scoring costs whatever the count)."""
    def draw(n: int) -> None:
        y = (torch.arange(n) % N_CLASSES).to(device) if model.conditional else None
        model.sample(n, y=y, generator=torch.Generator().manual_seed(1))

    costs = {"sample": _timed(lambda: draw(8)) / 8}
    # a slow first call is a slow sampler or a one-time set-up (a GAN's averaged generator sets its batch norms on
    # its first draw): one sample more, timed, tells them apart at the cost of a call at most as long
    if costs["sample"] * 8 > PROBE_ONCE_ABOVE:
        costs["sample"] = min(costs["sample"], _timed(lambda: draw(1)))
    if reference is not None:  # the evaluator's features and the nearest-neighbour balls grow with the count
        from .evaluator import load_evaluator
        from .scoring import real_features, sample_quality

        evaluator = load_evaluator(device)
        real = real_features(evaluator, reference.cpu())
        fake = reference[:200].cpu().flip(-1)
        few, many = (_timed(lambda n=n: sample_quality(fake[:n], reference, evaluator, real_features=real))
                     for n in (50, 200))
        costs["sample"] += max(0.0, many - few) / 150
        costs["scoring"] = max(0.0, few - 50 * max(0.0, many - few) / 150)  # the real digits' own balls
    return costs


def estimated_seconds(costs: dict[str, float], settings: dict[str, Any], n_total: int) -> float:
    """The long passes' seconds under `settings` (max_test, iwae_k, ais_betas, ais_runs, n_samples, n_edits)."""
    n = min(settings["max_test"] or n_total, n_total)
    seconds = (costs.get("image", 0.0) + costs.get("scored", 0.0)) * n
    seconds += costs.get("decode", 0.0) * n * (settings.get("iwae_k") or 0)
    if "elbo" in costs:  # the scored images once, and every one ELBO_DRAWS times for the whole set's NLL
        seconds += costs["elbo"] * (n + ELBO_DRAWS * (n_total if n < n_total and settings.get("whole_test", True)
                                                      else n))
    seconds += costs.get("ais_step", 0.0) * (settings.get("ais_betas") or 0)
    seconds += costs.get("edit", 0.0) * (settings.get("n_edits") or 0)
    if settings.get("n_samples"):
        seconds += costs.get("scoring", 0.0) + costs.get("sample", 0.0) * settings["n_samples"]
    return seconds


def plan_budget(costs: dict[str, float], budget: float, n_total: int, given: dict[str, Any],
                defaults: dict[str, Any]) -> dict[str, Any]:
    """Settings whose long passes fit `budget` seconds at the measured `costs`; settings in `given` (not None) are
    kept. The likelihood gets half the budget when there are samples to draw too and that half holds
    BUDGET_MIN_SAMPLES of them, else the whole; the samples what is left.

    IWAE: K as large as fits (at most the paper's 5,000) on all test images, else on a random subset, the largest
    of BUDGET_SUBSETS that still allows K >= BUDGET_MIN_K (the whole set's NLL is then estimated from it, with the
    ELBO of every test image); where none does, the subset's NLL alone ("whole_test": False), the largest subset
    with K >= BUDGET_MIN_K, else the smallest with the K that fits. AIS:
    as many intermediate distributions as fit (at most the paper's 14,500), with the run's chains. Exact
    likelihoods, reconstructions and denoising: as many test images as fit, at random. An editor's edits: as many
    as fit in that half, a whole number of rounds of the edit kinds, one round to DEFAULT_EDITS. Samples: as many
    as fit, up to 10,000; none when fewer than BUDGET_MIN_SAMPLES fit.
    """
    plan = dict(defaults)
    plan.update({k: v for k, v in given.items() if v is not None})
    usable = budget * (1 - BUDGET_RESERVE)
    # the samples' half stays idle when it cannot hold BUDGET_MIN_SAMPLES (a slow Gibbs chain): the likelihood takes it
    samples_fit = "sample" in costs and given.get("n_samples") is None and \
        usable / 2 - costs.get("scoring", 0.0) >= BUDGET_MIN_SAMPLES * costs["sample"]
    share = usable / 2 if samples_fit else usable
    if "decode" in costs and (given.get("iwae_k") is None or given.get("max_test") is None):
        sizes = [min(n or n_total, n_total) for n in
                 ([given["max_test"]] if given.get("max_test") is not None else [n_total, *BUDGET_SUBSETS])]
        # the whole set's NLL from a subset needs the ELBO of every test image; without it, the subset's own
        for n, whole in [(n, True) for n in sizes] + [(n, False) for n in sizes if n < n_total]:
            elbo = costs.get("elbo", 0.0) * (n + ELBO_DRAWS * (n_total if whole else n))
            k = plan["iwae_k"] if given.get("iwae_k") is not None else \
                int(min(PAPER_PROTOCOL["iwae_k"], max(1, (share - elbo) / (costs["decode"] * n))))
            plan.update(max_test=0 if n == n_total else n, iwae_k=k, whole_test=whole)
            if k >= BUDGET_MIN_K or given.get("iwae_k") is not None and estimated_seconds(
                    costs, {**plan, "n_samples": 0}, n_total) <= share:
                break
    elif "ais_step" in costs and given.get("ais_betas") is None:
        steps = (share - costs["image"] * n_total) / costs["ais_step"]
        plan["ais_betas"] = int(min(PAPER_PROTOCOL["ais_betas"], max(10, steps)))
    elif ("image" in costs or "scored" in costs) and given.get("max_test") is None:
        n = int(share / (costs.get("image", 0.0) + costs.get("scored", 0.0)))
        plan["max_test"] = 0 if n >= n_total else max(min(BUDGET_SUBSETS), n)
    if "edit" in costs and given.get("n_edits") is None:
        from ..models.instruct.edits import KINDS

        rounds = int(share / (costs["edit"] * len(KINDS)))
        plan["n_edits"] = len(KINDS) * min(DEFAULT_EDITS // len(KINDS), max(1, rounds))
    if plan.get("max_test") and given.get("max_test") is None:
        plan["random_subset"] = True
    if "sample" in costs and given.get("n_samples") is None:
        left = usable - estimated_seconds(costs, {**plan, "n_samples": 0}, n_total)
        fit = left / costs["sample"]
        # fewer than BUDGET_MIN_SAMPLES would give scores too noisy to read: then none ("0 samples" in its line)
        plan["n_samples"] = int(min(REFERENCE_SAMPLES, fit)) if fit >= BUDGET_MIN_SAMPLES else 0
    return plan


def _describe_settings(model, settings: dict[str, Any], n_total: int) -> str:
    n = min(settings["max_test"] or n_total, n_total)
    scored = f"all {n_total:,} test digits" if n == n_total else f"a random {n:,} of the {n_total:,} test digits"
    parts = []
    if model.log_prob_kind is not None and "k" in model.log_prob_options:
        parts.append(f"IWAE K={settings['iwae_k']:,} on {scored}" + (
            "" if settings.get("whole_test", True) or n == n_total else " (their NLL only: the ELBO of every test "
            "digit, for the whole set's, does not fit)"))
    elif model.estimates_log_z:
        parts.append(f"AIS {settings['ais_betas']:,} betas x {settings['ais_runs']} runs, log p(x) on {scored}")
    elif model.log_prob_kind is not None:
        parts.append(f"log p(x) on {scored}")
    else:
        parts.append(f"{scored} scored")
    if model.can_edit:
        parts.append(f"{settings['n_edits']:,} edits")
    if model.can_sample:
        parts.append(f"{settings['n_samples']:,} samples")
    return ", ".join(parts)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min" if seconds < 7200 else \
        f"{seconds / 3600:.1f} h"


def choose_settings(model, binary_x: torch.Tensor, n_total: int, device: torch.device, *, budget: float | None,
                    protocol: str | None, given: dict[str, Any], reference: torch.Tensor | None = None,
                    started: float | None = None) -> tuple[dict[str, Any], str | None]:
    """The settings of an evaluation and the line that says them (None when every setting was given).

    `protocol="paper"`: the paper's protocol (PAPER_PROTOCOL, what was given kept), with its time here.
    `budget`: `plan_budget`'s settings for that many seconds, less those gone since `started` (a
    `time.perf_counter()`: loading and the probe), beside the paper protocol's time.
    Neither: the given settings, the others at the model's own (IWAE K, AIS) and all test images."""
    own = {"max_test": 0, "random_subset": False, "iwae_k": int(getattr(model.config, "iwae_k", 0) or 0),
           "ais_betas": int(getattr(model.config, "ais_betas", 0) or 0),
           "ais_runs": int(getattr(model.config, "ais_runs", 0) or 0), "n_samples": REFERENCE_SAMPLES,
           "n_edits": DEFAULT_EDITS}
    needed = ["max_test", "n_samples"] + (["iwae_k"] if "k" in model.log_prob_options else []) + \
        (["ais_betas"] if model.estimates_log_z else []) + (["n_edits"] if model.can_edit else [])
    if budget is None and protocol is None or protocol is None and all(given[k] is not None for k in needed):
        return {**own, **{k: v for k, v in given.items() if v is not None}}, None
    costs = probe_costs(model, binary_x, device, given.get("ais_runs") or own["ais_runs"] or 100, reference)
    paper = {**own, **PAPER_PROTOCOL, **{k: v for k, v in given.items() if v is not None}}
    paper_line = (f"the paper's protocol (--protocol paper): {_describe_settings(model, paper, n_total)}, about "
                  f"{_duration(estimated_seconds(costs, paper, n_total))} here")
    if protocol == "paper":
        return paper, f"{model.name}: {paper_line}"
    spent = time.perf_counter() - started if started is not None else 0.0  # on a busy machine, not negligible
    plan = plan_budget(costs, max(0.0, budget - spent), n_total, given, own)
    return plan, (f"{model.name}: settings for a {budget:g} s budget on this machine (--budget): "
                  f"{_describe_settings(model, plan, n_total)}, about "
                  f"{_duration(estimated_seconds(costs, plan, n_total))} of long passes after {spent:.0f} s of "
                  f"loading and timing; {paper_line}")


@torch.no_grad()
def evaluate_run(run_dir: str | Path, *, device: str = "auto", seed: int = 0, max_test: int | None = None,
                 random_subset: bool | None = None, iwae_k: int | None = None, n_samples: int | None = None,
                 sample_options: dict[str, Any] | None = None, guidance_sweep: list[float] | None = None,
                 sweep_samples: int = 0, ais_betas: int | None = None, ais_runs: int | None = None,
                 n_edits: int | None = None, budget: float | None = None, protocol: str | None = None,
                 save_every: float = SAVE_EVERY, started: float | None = None) -> dict[str, Any]:
    """Evaluate a run folder and write RUN/metrics.json; returns what it wrote.

    The long passes (IWAE, AIS, drawing samples) keep their partial sums in RUN/evaluations/.partial_*.pt every
    `save_every` seconds and on Ctrl-C: the same call again goes on from there and gives the numbers of an
    uninterrupted evaluation. The run's lock is held meanwhile (`genzoo.runlock`).

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
            class coverage, conditional accuracy; `genzoo.evaluation.scoring.model_sample_quality`); 0: none.
        sample_options: options of the model's `sample` (diffusion: guidance, steps, eta, sampler).
        guidance_sweep: classifier-free guidance weights: FID-style score and conditional accuracy at each,
            written to RUN/guidance_sweep.json and drawn in RUN/guidance_sweep.png.
        sweep_samples: samples per guidance weight (0: n_samples).
        ais_betas, ais_runs: the cost of an AIS estimate of log Z (the RBM; 0: the model's own settings):
            intermediate distributions and chains. Fewer cost less and give a wider spread; both are
            recorded beside the NLL.
        n_edits: an editor's (instruct) edits of test digits scored against their exact outputs (0: none; None:
            DEFAULT_EDITS, or what a budget allows).
        budget: seconds: the settings not given (None) are chosen to fit it (`plan_budget`), from a timed probe.
        protocol: "paper": the paper's protocol for the settings not given (`PAPER_PROTOCOL`), its time said first.
        save_every: seconds between the long passes' saves of their partial sums.
        started: the `time.perf_counter()` at which the budget began (None: the call; `genzoo evaluate`: the
            process's start, so that Python's start and torch's import count).
        Settings left None without either: all test images, the model's own K and AIS, 10,000 samples,
        DEFAULT_EDITS edits.
    """
    if protocol not in (None, "paper"):
        raise ConfigError(f"--protocol {protocol}: the one protocol is 'paper' (leave it out for a --budget)")
    if budget is not None and budget <= 0:
        raise ConfigError(f"--budget {budget:g}: give the seconds the evaluation may take, e.g. --budget 300")
    given = {"max_test": max_test, "iwae_k": iwae_k or None, "ais_betas": ais_betas or None,
             "ais_runs": ais_runs or None, "n_samples": n_samples, "n_edits": n_edits}
    check_evaluation_arguments(max_test=max_test or 0, random_subset=bool(random_subset), iwae_k=iwae_k or 0,
                               n_samples=REFERENCE_SAMPLES if n_samples is None else n_samples,
                               sweep_samples=sweep_samples, ais_betas=ais_betas or 0, ais_runs=ais_runs or 0)
    non_negative(n_edits=n_edits or 0)
    run_dir = Path(run_dir)
    with runlock.hold(run_dir, "evaluation"):
        return _evaluate_locked(run_dir, device=device, seed=seed, given=given, random_subset=random_subset,
                                sample_options=sample_options, guidance_sweep=guidance_sweep,
                                sweep_samples=sweep_samples, budget=budget, protocol=protocol, save_every=save_every,
                                start=time.perf_counter() if started is None else started)


def _evaluate_locked(run_dir: Path, *, device: str, seed: int, given: dict[str, Any], random_subset: bool | None,
                     sample_options: dict[str, Any] | None, guidance_sweep: list[float] | None, sweep_samples: int,
                     budget: float | None, protocol: str | None, save_every: float, start: float) -> dict[str, Any]:
    device = resolve_device(device)
    config = runs.read_config(run_dir)
    model = runs.load(run_dir, device)
    sample_options = check_sample_options(model, sample_options, guidance_sweep)
    data = load_data(config["data"], verbose=False)
    request = {"budget": budget, "protocol": protocol, "given": given, "random_subset": random_subset, "seed": seed,
               "sampling": sample_options, "device": device.type, **trained_weights(run_dir)}
    partial = PartialState(run_dir, request, every=save_every)
    settings = planned_settings(partial, model, data, device, budget=budget, protocol=protocol, given=given,
                                random_subset=random_subset, started=start)
    max_test, random_subset, n_samples = settings["max_test"], settings["random_subset"], settings["n_samples"]
    if n_samples and len(data.test_x) <= PR_NEIGHBOURS:
        raise ConfigError(f"{config['data']}: {len(data.test_x)} test digits; precision and recall need at least "
                          f"{PR_NEIGHBOURS + 1} real digits as their reference; use other data or --samples 0")
    subset = subset_indices(len(data.test_x), max_test, seed, random_subset)
    test_x = data.test_x[subset].to(device)
    torch.manual_seed(seed)

    try:
        metrics = training_record(model, run_dir)
        if model.can_denoise:
            metrics.update(denoising_metrics(model, test_x, seed))
        if model.can_reconstruct:
            metrics.update(reconstruction_metrics(model, test_x))
        if model.can_edit and settings["n_edits"]:
            metrics.update(editing_metrics(model, test_x, settings["n_edits"], seed, data.test_y[subset]))
        density, kwargs, ais = density_metrics(model, data, subset, seed=seed, iwae_k=settings["iwae_k"],
                                               ais_betas=settings["ais_betas"], ais_runs=settings["ais_runs"],
                                               random_subset=random_subset, device=device, partial=partial,
                                               whole_test=settings.get("whole_test", True))
        metrics.update(density)
        # Sample quality against a fixed reference: every test digit of the data (features cached by content),
        # whatever max_test says, so that FID-style, precision and recall of two evaluations compare.
        reference = data.test_x
        if n_samples and model.can_sample:
            metrics.update(sample_metrics(model, reference, n_samples, seed, sample_options, partial))
    except KeyboardInterrupt:
        partial.save()
        print(f"\ngenzoo evaluate: stopped; done so far kept in {partial.path} ({partial.describe()}); the same "
              "command goes on from there", file=sys.stderr, flush=True)
        raise
    if guidance_sweep:
        metrics["guidance_sweep"] = guidance_sweep_metrics(model, reference, guidance_sweep,
                                                           sweep_samples or n_samples, seed, sample_options, run_dir)
    metrics.update(seed=seed, hardware=runs.hardware(device), seconds=round(time.perf_counter() - start, 2),
                   data=data.describe())
    metrics["settings"] = settings_record(model, settings, n_test=len(subset), n_total=len(data.test_x),
                                          random_subset=random_subset, seed=seed, iwae_k=kwargs.get("k"),
                                          sample_options=sample_options, guidance_sweep=guidance_sweep,
                                          budget=budget, protocol=protocol, ais=ais)
    metrics["trained_step"] = runs.trained_step(run_dir)
    metrics["evaluated_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    runs.write_evaluation(run_dir, metrics)
    partial.finish()
    return metrics


def trained_weights(run_dir: Path) -> dict[str, Any]:
    """Which weights an evaluation scores (their file's size and time, the step trained): a partial evaluation of
    other weights is not gone on from."""
    weights = (run_dir / runs.WEIGHTS).stat()
    return {"weights": [weights.st_size, weights.st_mtime_ns], "trained_step": runs.trained_step(run_dir)}


def planned_settings(partial: PartialState, model, data, device: torch.device, *, budget: float | None,
                     protocol: str | None, given: dict[str, Any], random_subset: bool | None,
                     started: float) -> dict[str, Any]:
    """The evaluation's settings: those an interrupted run of the same request planned (`partial`), else
    `choose_settings`' (probed on the first 200 test digits), kept in `partial`; the line that says them is printed."""
    if partial.plan is None:
        probe_x = (fixed_binarization(data.test_x[:200]) if model.binary_data else data.test_x[:200]).to(device)
        settings, said = choose_settings(model, probe_x, len(data.test_x), device, budget=budget, protocol=protocol,
                                         given=given, reference=data.test_x, started=started)
        if random_subset is not None:
            settings["random_subset"] = random_subset
        partial.plan = {"settings": settings, "said": said}
    else:
        settings, said = partial.plan["settings"], partial.plan["said"]
        print(f"genzoo evaluate: {model.name}: going on from {partial.path} (done: {partial.describe()})",
              file=sys.stderr, flush=True)
    if said:
        print(f"genzoo evaluate: {said}", file=sys.stderr, flush=True)
    return settings


def settings_record(model, settings: dict[str, Any], *, n_test: int, n_total: int, random_subset: bool, seed: int,
                    iwae_k: int | None, sample_options: dict[str, Any], guidance_sweep: list[float] | None,
                    budget: float | None, protocol: str | None, ais: dict[str, int] | None) -> dict[str, Any]:
    """metrics.json's "settings": what was measured and how, so that two evaluations are compared only alike."""
    record = {"test_images": n_test, "test_total": n_total, "random_subset": random_subset,
              "n_samples": settings["n_samples"] if model.can_sample else 0, "seed": seed,
              "iwae_k": iwae_k if model.log_prob_kind is not None else None,
              "sampling": sample_options, "guidance_sweep": guidance_sweep,
              "protocol": protocol or ("budget" if budget is not None else "given"),
              **({"budget_seconds": budget} if budget is not None and protocol is None else {}),
              **({"whole_test": False} if not settings.get("whole_test", True) else {}),
              **({"n_edits": settings["n_edits"]} if model.can_edit else {})}
    if ais is not None:
        record["ais"] = {"betas": ais["ais_betas"], "runs": ais["ais_runs"]}
    return record


def guidance_sweep_metrics(model, test_x: torch.Tensor, weights: list[float], n_samples: int, seed: int,
                           sample_options: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """FID-style score and conditional accuracy at each guidance weight (the fidelity/diversity trade-off of
    classifier-free guidance); writes RUN/guidance_sweep.json and RUN/guidance_sweep.png."""
    from .scoring import model_sample_quality

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

    from ..images import save_figure

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
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return path
