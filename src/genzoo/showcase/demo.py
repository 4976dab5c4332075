"""`genzoo demo`: train, sample, evaluate and report every model family of the zoo within a time budget.

The data is MNIST when it is found ($GENZOO_DATA or the cache), else the embedded 4,500-digit subset.
`budget` is the demo's whole wall clock (training, pictures, evaluation, report). Each model gets a slice
of what is left, in proportion to its share in `genzoo.showcase.zoo.RECIPES`, and everything it does runs inside
that slice: training stops at the slice less the time its recipe keeps for the pictures and the evaluation
(`eval_seconds`), and the evaluation draws as many samples as the rest of the slice allows (timed on a
small probe batch first: the pixel models draw 784 sequential network steps per image). An overrun of one
model shortens the later ones, and END_RESERVE is kept for the last page, so the total stays within the budget.

On a CPU each model has CPU-sized hyper-parameters and a light evaluation (the first 1,000 test digits at
most, up to `cpu_samples` samples, 50 importance samples for the VAE); on a GPU the model's own full-size
defaults and the full evaluation. metrics.json records the settings beside each number, demo.json each
model's slice, its wall clock and CPU seconds per phase and the load average (a busy machine is visible).

Run again in the same folder, the demo continues every run from its checkpoint with another slice of
budget (closed-form models, already fitted, are kept), so the quality grows with the time given; the report
says how long each model has trained in all. The page is rewritten after each model, so it can be opened
from the start.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .. import commands, registry, runs
from ..config import ConfigError
from ..constants import N_CLASSES
from ..data import Dataset, load_data
from ..defaults import DEMO_BUDGET
from ..evaluation.evaluate import evaluate_run
from ..trainer import train
from ..training.devices import resolve_device
from ..training.schedule import total_steps
from .shipped import draw_shipped
from .zoo import CPU_TRAIN, RECIPES

MIN_TRAIN_SECONDS = 5.0  # a model whose slice is used up still trains this long
END_RESERVE = 5.0  # seconds kept after the last model for the last page and the summary
MIN_SAMPLES = 100  # the fewest samples scored when the slice is short: fewer say little about digits and coverage
PROBE_SAMPLES = 8  # samples timed before the evaluation to size it, and four times as many (sampling_cost)
SAMPLING_SHARE = 0.6  # of the slice's time left after training: for sampling; the rest for the other metrics
SESSIONS = "demo.json"  # in the demo folder: every session of every model (the report's "trained in all")
REAL_DATA = "real_data.json"  # the real-data floor of the sample scores, with the same settings
SCALES = ("cpu", "gpu", "tiny")
PHASES = ("both", "shipped", "scratch")  # the shipped zoo then training from scratch, or either alone
SHIPPED_SECONDS = 180.0  # the shipped phase's deadline: the trained zoo on the page within three minutes
# kept per demo run (the edit scores: an editor's)
SESSION_SCORES = ("confident_share", "class_entropy_bits", "fid", "conditional_accuracy", "edit_psnr",
                  "edit_psnr_input", "edit_label_agreement")


def eval_settings(name: str, scale: str, n_test: int) -> dict[str, int]:
    """The evaluation of a model at a scale: max_test, n_samples, iwae_k, n_edits (`evaluate_run`'s arguments)."""
    recipe = RECIPES[name]
    # an editor's edits scored against their exact outputs: ten per kind, a few CPU seconds with the latent recipe
    edits = {"n_edits": {"gpu": 2300, "tiny": 23}.get(scale, 230)} if registry.get(name).can_edit else {}
    if scale == "gpu":
        return {"max_test": 0, "n_samples": 10_000, "iwae_k": 1000, **edits}
    if scale == "tiny":
        return {"max_test": min(64, n_test), "n_samples": 64, "iwae_k": 2, **edits}
    # IWAE with K = 20 (the VAE's NLL, a looser bound than K = 5000 and stated beside it): a larger K does not fit
    # the VAE's evaluation reserve on a CPU (docs/results/demo-recipes.md)
    return {"max_test": min(1000, n_test), "n_samples": recipe.cpu_samples, "iwae_k": 20, **edits}


def model_settings(name: str, scale: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model hyper-parameters, trainer settings) of a model's recipe at a scale."""
    recipe = RECIPES[name]
    if scale == "gpu":
        return dict(recipe.gpu), {"checkpoint_minutes": 1.0, **recipe.gpu_train}
    unused = registry.get(name).unused_train_keys  # e.g. no schedule for a model fitted in closed form
    train_cfg = {**{k: v for k, v in CPU_TRAIN.items() if k not in unused}, **recipe.cpu_train}
    if scale == "tiny":
        tiny = {"epochs": 0, "steps": 3, "batch_size": 16, "n_grid": 4, "test_images": 16, "log_every": 1,
                "sample_every": 0}
        return {**recipe.cpu, **recipe.tiny}, {**train_cfg, **{k: v for k, v in tiny.items() if k not in unused}}
    return dict(recipe.cpu), train_cfg


def plan_slice(left: float, share: float, shares_left: float, eval_seconds: float) -> tuple[float, float]:
    """(the model's whole slice, its training seconds) out of `left` seconds of the budget.

    The slice is the model's share of what is left after END_RESERVE, among the models still to run;
    training gets the slice less the evaluation's `eval_seconds` (at most half of the slice), and at
    least MIN_TRAIN_SECONDS however little is left.
    """
    whole = max(0.0, left - END_RESERVE) * share / shares_left
    return whole, max(MIN_TRAIN_SECONDS, whole - min(eval_seconds, whole / 2))


def samples_within(seconds: float, cost: tuple[float, float], wanted: int) -> int:
    """How many samples to score: `wanted`, or as many as `seconds` of sampling allow at `cost` (fixed seconds of
    the call, seconds per sample), but never fewer than MIN_SAMPLES (or `wanted`, if that is smaller)."""
    fixed, per_image = cost
    affordable = int(max(0.0, seconds - fixed) / per_image) if per_image > 0 else wanted
    return max(min(MIN_SAMPLES, wanted), min(wanted, affordable))


def sampling_cost(run_dir: Path, device: torch.device, seed: int) -> tuple[float, float]:
    """(fixed seconds, seconds per sample) of a trained run's sampler: one call timed at PROBE_SAMPLES and at
    4 x PROBE_SAMPLES samples (labels 0, 1, ... if conditional) and a line through the two. A sequential sampler
    (784 network steps whatever the batch) costs much per call, which the small batch alone would charge to its
    few samples. The per-sample cost is kept at a tenth of the larger batch's average or more, so that timing
    noise cannot make it vanish."""
    model = runs.load(run_dir, device)
    seconds = []
    for n in (PROBE_SAMPLES, 4 * PROBE_SAMPLES):
        labels = torch.arange(n, device=device) % N_CLASSES if model.conditional else None
        began = time.perf_counter()
        model.sample(n, y=labels, generator=torch.Generator().manual_seed(seed))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds.append(time.perf_counter() - began)
    per_image = max((seconds[1] - seconds[0]) / (3 * PROBE_SAMPLES), seconds[1] / (40 * PROBE_SAMPLES))
    return max(0.0, seconds[0] - PROBE_SAMPLES * per_image), per_image


def check_models(models: list[str] | None) -> list[str]:
    """The models to run, in the registry's order; by default every registered model with a demo recipe."""
    if not models:
        return [m for m in registry.MODELS if m in RECIPES]
    unknown = [m for m in models if m not in registry.MODELS]
    if unknown:
        raise ConfigError(f"--models {' '.join(unknown)}: unknown; known models: {', '.join(registry.MODELS)}")
    missing = [m for m in models if m not in RECIPES]
    if missing:  # a model is in the demo once it has its recipe and section
        raise ConfigError(f"--models {' '.join(missing)}: no demo recipe yet; give its row of genzoo.catalog.MODELS "
                          "a demo (docs/CONTRIBUTING.md) or leave it out of --models")
    return [m for m in registry.MODELS if m in models]


def run_slice(name: str, label: str, dataset: Dataset, run_dir: Path, whole: float, seconds: float, *, seed: int,
              device: torch.device, scale: str, progress: bool, say: Callable[[str], None]) -> dict[str, Any]:
    """One model's slice of the demo: train it for `seconds` (its extras drawn), evaluate it with as many samples
    as the rest of its `whole` slice allows; returns the session's record for demo.json."""
    recipe = RECIPES[name]
    began, cpu_began = time.perf_counter(), time.process_time()
    deadline = began + whole
    what = train_slice(name, dataset, run_dir, seed, device, scale, seconds, progress)
    for extra in recipe.extras:  # pictures a command draws from the run (e.g. the 2-D mixture)
        getattr(commands, extra)(run_dir)
    trained, cpu_trained = time.perf_counter() - began, time.process_time() - cpu_began
    settings = eval_settings(name, scale, len(dataset.test_x))
    wanted = settings["n_samples"]
    if scale == "cpu" and wanted and registry.get(name).can_sample:  # as many samples as the slice allows
        cost = sampling_cost(run_dir, device, seed)
        sampling = (deadline - time.perf_counter()) * SAMPLING_SHARE
        settings["n_samples"] = samples_within(sampling, cost, wanted)
    say(f"genzoo demo {label} {name}: {what}; evaluating ({settings['n_samples']} samples"
        f"{f' of {wanted}, what the slice allows' if settings['n_samples'] < wanted else ''}, "
        f"{settings['max_test'] or 'all'} test digits)")
    metrics = evaluate_run(run_dir, device=str(device), seed=seed, **settings)
    wall = time.perf_counter() - began
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()), "slice_seconds": round(whole, 1),
        "train_budget_seconds": round(seconds, 1), "train_wall_seconds": round(trained, 1),
        "eval_wall_seconds": round(wall - trained, 1), "wall_seconds": round(wall, 1),
        "cpu_seconds": round(time.process_time() - cpu_began, 1), "train_cpu_seconds": round(cpu_trained, 1),
        "load_average": round(os.getloadavg()[0], 2), "what": what, "scale": scale,
        "device": runs.hardware(device), "samples_wanted": wanted, **settings,
        "train_seconds_in_all": metrics.get("train_seconds"),
        **{key: metrics[key]["value"] for key in SESSION_SCORES if key in metrics}}  # how each demo run moved it


def _sessions(out: Path) -> dict[str, list[dict]]:
    path = out / SESSIONS
    return json.loads(path.read_text()) if path.exists() else {}


def fit_subset(name: str, dataset: Dataset, scale: str, seed: int) -> tuple[Dataset, str]:
    """The training digits a closed-form model is fitted on: on a CPU, a seeded random `cpu_fit_images` of them
    when there are more (EM's rounds grow with the images; full MNIST would overrun the model's slice).
    Returns the data and what to say about it (empty when it is the whole set)."""
    n = RECIPES[name].cpu_fit_images
    if scale != "cpu" or registry.get(name).training_mode != "fit" or not n or len(dataset.train_x) <= n:
        return dataset, ""
    keep = torch.randperm(len(dataset.train_x), generator=torch.Generator().manual_seed(seed))[:n].sort().values
    subset = Dataset(dataset.name, dataset.source, dataset.train_x[keep], dataset.train_y[keep], dataset.test_x,
                     dataset.test_y)
    return subset, f", fitted on a random {n:,} of the {len(dataset.train_x):,} training digits (seed {seed})"


def first_stage_source(name: str, hparams: dict[str, Any], out: Path) -> tuple[dict[str, Any], str]:
    """A latent model whose recipe names `first_stage_from`: that model's run in the demo folder `out`, when it has
    weights and a latent first stage, starts this one's, fine-tuned for the recipe's `first_stage_steps` (at most the
    model's own). Returns the hyper-parameters and what to say about it (empty when the recipe's own first stage
    is trained)."""
    recipe = RECIPES[name]
    source = out / recipe.first_stage_from
    if not recipe.first_stage_from or hparams.get("space") != "latent" or not (source / runs.WEIGHTS).exists():
        return hparams, ""
    if runs.read_config(source)["hparams"].get("space") != "latent":
        return hparams, ""
    steps = min(recipe.first_stage_steps, hparams.get("first_stage_steps", recipe.first_stage_steps))
    return ({**hparams, "first_stage_from": str(source.resolve()), "first_stage_steps": steps},
            f", its first stage from the {recipe.first_stage_from} run's, fine-tuned for {steps} steps")


def train_slice(name: str, dataset: Dataset, run_dir: Path, seed: int, device: torch.device, scale: str,
                seconds: float, progress: bool) -> str:
    """Train a model for `seconds` more: a new run, or its checkpoint continued with a longer time budget.

    Returns what was done, for the progress line ("new run", "continued from step N", "already fitted").
    """
    hparams, train_cfg = model_settings(name, scale)
    checkpoint = run_dir / runs.CHECKPOINT
    if not checkpoint.exists():
        hparams, started = first_stage_source(name, hparams, run_dir.parent)
        dataset, fitted_on = fit_subset(name, dataset, scale, seed)
        train(name, data=dataset, out=run_dir, device=device, seed=seed, model_overrides=hparams,
              train_overrides={**train_cfg, "time_budget": seconds}, progress=progress,
              overwrite=True)  # no checkpoint: at most a run killed before its first one, started afresh
        return f"new run{fitted_on}{started}"
    if registry.get(name).training_mode == "fit":
        return "already fitted (closed form: nothing to continue)"
    state = runs.load_checkpoint(checkpoint, "cpu", mmap=True)  # checked: a foreign or damaged file is refused
    config = runs.read_config(run_dir)
    lengths: dict[str, Any] = {"time_budget": state["elapsed"] + seconds}
    run_train = config["train"]
    if state["step"] >= total_steps(_train_config(run_train), len(dataset.train_x)):  # finished: twice as long
        lengths = {**lengths, **({"steps": 2 * run_train["steps"]} if run_train.get("steps")
                                 else {"epochs": 2 * run_train["epochs"]})}
    train(name, data=dataset, out=run_dir, device=device, resume=True, train_overrides=lengths, progress=progress)
    return f"continued from step {state['step']} ({state['elapsed']:.0f} s trained before)"


def _train_config(values: dict):
    from ..config import build
    from ..train_config import TrainConfig

    return build(TrainConfig, values, owner="trainer")


def real_data_floor(out: Path, dataset: Dataset, settings: dict[str, int], seed: int, device: torch.device) -> dict:
    """Sample scores of real training digits against the same test digits: the floor each model is read
    against (FID-style is not 0 for two finite samples of one distribution). Written to REAL_DATA once per settings."""
    path = out / REAL_DATA
    n, max_test = settings["n_samples"], settings["max_test"]
    test_x = dataset.test_x[:max_test] if max_test else dataset.test_x
    if path.exists():
        floor = json.loads(path.read_text())
        if floor.get("n") == n and floor.get("n_real") == len(test_x) and floor.get("data") == dataset.describe():
            return floor
    from ..evaluation.evaluator import EVALUATOR_VERSION, load_evaluator
    from ..evaluation.scoring import real_features, sample_quality

    evaluator = load_evaluator(device)
    generator = torch.Generator().manual_seed(seed)
    real = dataset.train_x[torch.randperm(len(dataset.train_x), generator=generator)[:n]]
    q = sample_quality(real, test_x, evaluator, real_features=real_features(evaluator, test_x))
    floor = {"fid": q["fid"], "precision": q["precision"], "recall": q["recall"],
             "confident_share": q.get("confident_share"), "class_entropy_bits": q["class_entropy_bits"],
             "n": n, "n_real": len(test_x), "data": dataset.describe(), "evaluator_version": EVALUATOR_VERSION,
             "what": f"{n} real training digits (drawn at random, seed {seed}) against the {len(test_x)} test digits "
                     "every model is scored against"}
    out.mkdir(parents=True, exist_ok=True)
    runs.atomic_write_text(path, json.dumps(floor, indent=2) + "\n")
    return floor


def opening_line(phases: str, names: list[str], dataset: Dataset, device: torch.device, scale: str, budget: float,
                 out: Path) -> str:
    """What the demo says first: what it will do, and where its report is."""
    report = out / "report" / "index.html"
    if phases == "shipped":
        return f"genzoo demo: the shipped models, drawn on {dataset.describe()}; the report is {report}"
    return (f"genzoo demo: {len(names)} models on {dataset.describe()}, {device} ({scale} recipes), "
            f"{budget:.0f} s in all; the report is {report}, rewritten after each model")


def run_demo(out: str | Path = "genzoo-demo", data: str | Dataset = "auto", budget: float = DEMO_BUDGET,
             models: list[str] | None = None, device: str = "auto", seed: int = 0, scale: str | None = None,
             progress: bool = True, phases: str = "both") -> Path:
    """Train, evaluate and report every model family (or `models`) within `budget` seconds of wall clock.

    Args:
        out: the demo folder: one run folder per model, demo.json, real_data.json and report/index.html.
        data: a `--data` value or a Dataset.
        budget: seconds for the whole demo; a rerun in the same folder continues each run for another budget.
        models: CLI names (default: every registered model).
        device: "auto", "cpu" or "cuda".
        scale: "cpu" (small networks, light evaluation), "gpu" (full-size) or "tiny" (tests); default by device.
        phases: "both" (the shipped models drawn first, within SHIPPED_SECONDS, then every model trained from
            scratch for the rest of the budget), "shipped" or "scratch" alone.
    Returns:
        The report's index.html.
    """
    from .demo_report import write_demo_report

    start = time.perf_counter()
    if budget <= 0:
        raise ConfigError(f"--budget {budget}: give the demo's seconds, > 0 (default {DEMO_BUDGET:.0f})")
    names = check_models(models)
    out = Path(out)
    device = resolve_device(device)
    scale = scale or ("cpu" if device.type == "cpu" else "gpu")
    if scale not in SCALES:
        raise ConfigError(f"scale={scale!r}: must be one of {', '.join(SCALES)}")
    if phases not in PHASES:
        raise ConfigError(f"phases={phases!r}: must be one of {', '.join(PHASES)}")
    dataset = data if isinstance(data, Dataset) else load_data(data)
    say = (lambda text: print(text, file=sys.stderr, flush=True)) if progress else (lambda text: None)
    say(opening_line(phases, names, dataset, device, scale, budget, out))
    if phases != "scratch":
        shipped = draw_shipped(out, dataset, models=names, seed=seed, deadline=start + SHIPPED_SECONDS, say=say)
        say(f"genzoo demo: the shipped zoo ({len(shipped['models'])} models) drawn in "
            f"{time.perf_counter() - start:.0f} s")
    floor = real_data_floor(out, dataset, eval_settings("vae", scale, len(dataset.test_x)), seed, device)
    sessions = _sessions(out)
    index = write_demo_report(out, names, floor, phases=phases)
    for i, name in enumerate(names if phases != "shipped" else []):
        recipe = RECIPES[name]
        left = budget - (time.perf_counter() - start)
        shares = sum(RECIPES[m].share for m in names[i:])
        eval_seconds = recipe.eval_seconds if scale == "cpu" else 0.0
        whole, seconds = plan_slice(left, recipe.share, shares, eval_seconds)
        say(f"genzoo demo [{i + 1}/{len(names)}] {name}: a {whole:.0f} s slice, {seconds:.0f} s of it training; "
            f"{max(left, 0):.0f} s left in the budget")
        sessions.setdefault(name, []).append(run_slice(name, f"[{i + 1}/{len(names)}]", dataset, out / name, whole,
                                                       seconds, seed=seed, device=device, scale=scale,
                                                       progress=progress, say=say))
        runs.atomic_write_text(out / SESSIONS, json.dumps(sessions, indent=2) + "\n")
        index = write_demo_report(out, names, floor, phases=phases)
    took = time.perf_counter() - start
    again = (f"`genzoo demo --out {out}` trains every model from scratch beside the shipped ones" if phases == "shipped"
             else f"run it again in {out} to train every model for another {budget:.0f} s")
    say(f"genzoo demo: done in {took:.0f} s ({'within' if took <= budget else 'over'} the budget of {budget:.0f} s); "
        f"{again}")
    return index
