"""`genzoo bench`: every chosen model on the same data with the same seed, one leaderboard.

Each model is trained with the shared trainer (`genzoo.train`, capped by a time
budget) or taken from an existing run folder, evaluated with `evaluate_run`
(likelihood where tractable, the FID-style score, precision and recall of
Kynkäänniemi et al. 2019 in the fixed evaluator's feature space), and the
results go to `leaderboard.md` and `leaderboard.json` next to the runs, with an
HTML report of all runs (`genzoo.showcase.report`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from .. import pretrained, registry, runs
from ..config import ConfigError
from ..evaluation.leaderboard import leaderboard_row, row_label, table
from .report import write_report


def leaderboard_markdown(rows: list[dict], meta: dict) -> str:
    """A markdown table, best FID-style score first; models without one go last, and budgeted evaluations after
    the others (never ranked against them). Bold and marks as in the report (`leaderboard.table`): every column
    is shown, so tables of several benches line up."""
    rows = sorted(rows, key=lambda r: (r.get("protocol") == "budget", r["fid"] is None,
                                       r["fid"] if r["fid"] is not None else 0.0))
    columns, cells, notes = table(rows, all_columns=True)
    head = "| model | " + " | ".join(c.label for c in columns) + " |"
    lines = ["# genzoo leaderboard", "",
             f"Data: {meta['data']}; seed {meta['seed']}; training budget {meta['budget']}; "
             f"FID-style score, precision and recall on {meta['n_samples']:,} samples against the fixed reference "
             f"of real test digits in evaluator {meta['evaluator_version']} features; likelihoods on "
             f"{meta.get('max_test', 'all')} test images (kind per model: exact, bound or estimate). "
             f"Hardware: {meta['hardware']}. {meta['date']}.", "",
             head, "|" + "---|" * (len(columns) + 1)]
    for r, line in zip(rows, cells):
        lines.append(f"| {row_label(r)} | " + " | ".join(f"**{c.text}**{c.mark}" if c.best else c.text + c.mark
                                                  for c in line) + " |")
    if notes:
        lines += [""] + [f"{note}  " for note in notes]
    return "\n".join(lines) + "\n"


def run_bench(models: list[str] | None = None, data: str = "auto", budget_seconds: float = 120.0, device: str = "auto",
              out_dir: str | Path = "bench", seed: int = 0, n_samples: int = 10_000, reuse: bool = True,
              train_overrides: dict[str, Any] | None = None, progress: bool = True, max_test: int = 0,
              iwae_k: int = 0) -> list[dict]:
    """Train (or reuse), evaluate and rank models; write leaderboard.md, leaderboard.json and report/.

    Args:
        models: CLI names (default: every registered model), or `pretrained:NAME` for a shipped model, which
            is evaluated (in ./genzoo-pretrained/NAME, a copy the user owns) and ranked, not trained.
        data: a `--data` value shared by every model.
        budget_seconds: training time cap per model (0: the model's own epochs).
        device: "auto", "cpu" or "cuda".
        out_dir: gets runs/<model>/, leaderboard.md, leaderboard.json and report/index.html.
        seed: one seed for training and evaluation of every model.
        n_samples: samples for the FID-style score, precision and recall.
        reuse: take an existing finished run in out_dir/runs/<model> instead of training again.
        train_overrides: extra TrainConfig values for every model (e.g. {"epochs": 1}).
        progress: show training progress bars.
        max_test: score likelihoods and sample quality on the first N test images only (0: all 10,000).
        iwae_k: importance samples for IWAE likelihoods (0: each model's own, e.g. 5,000 for the VAE,
            slow on a CPU).
    Returns:
        The leaderboard rows (also in leaderboard.json).
    """
    from ..evaluation.evaluate import evaluate_run
    from ..trainer import train
    from ..training.devices import resolve_device

    models = checked_models(models)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    overrides = dict(train_overrides or {})
    if budget_seconds:
        overrides["time_budget"] = float(budget_seconds)
    rows, run_dirs = [], []
    for name in models:
        run_dir = out_dir / "runs" / name
        if pretrained.is_pretrained(name):  # evaluated as shipped, in the user's copy of it; never trained here
            run_dir = pretrained.workspace(name)
        elif reuse and finished_run_of(run_dir, name):
            print(f"genzoo bench: {name}: reusing {run_dir}", flush=True)
        else:
            print(f"genzoo bench: {name}: training (budget {budget_seconds or 'none'} s) -> {run_dir}", flush=True)
            train(name, data=data, out=run_dir, device=device, seed=seed, train_overrides=overrides,
                  progress=progress, overwrite=True)  # an unfinished or unwanted earlier run is replaced
        print(f"genzoo bench: {name}: evaluating on {n_samples:,} samples", flush=True)
        metrics = evaluate_run(run_dir, device=device, seed=seed, n_samples=n_samples, max_test=max_test,
                               iwae_k=iwae_k)
        row = leaderboard_row(run_dir, metrics)  # a shipped model as "pretrained:gan", apart from a "gan" trained now
        rows.append({**row, "model": name} if pretrained.is_pretrained(name) else row)
        run_dirs.append(run_dir)
    meta = {"data": data, "seed": seed, "max_test": max_test or "all", "iwae_k": iwae_k or "model default",
            "budget": f"{budget_seconds:g} s per model" if budget_seconds else "none", "n_samples": n_samples,
            "evaluator_version": rows[0]["evaluator_version"] if rows else None,
            "hardware": runs.hardware(resolve_device(device)), "date": time.strftime("%Y-%m-%d")}
    (out_dir / "leaderboard.json").write_text(json.dumps({**meta, "rows": rows}, indent=2) + "\n")
    (out_dir / "leaderboard.md").write_text(leaderboard_markdown(rows, meta))
    write_report(run_dirs, out_dir / "report", title="genzoo bench")
    print(leaderboard_markdown(rows, meta))
    return rows


def checked_models(models: list[str] | None) -> list[str]:
    """The models to bench (every registered one by default); an unknown name, or an unknown shipped one, is an
    error before anything trains."""
    models = list(models or registry.MODELS)
    unknown = [m for m in models if m not in registry.MODELS and not pretrained.is_pretrained(m)]
    if unknown:
        raise ConfigError(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(registry.MODELS)}, or "
                          "pretrained:NAME for a shipped model (`genzoo pretrained` lists them)")
    for name in filter(pretrained.is_pretrained, models):
        pretrained.resolve(name)
    return models


def finished_run_of(run_dir: Path, name: str) -> bool:
    """Whether `run_dir` holds a run of model `name` that ended on its own length or its time budget."""
    finished = (run_dir / runs.WEIGHTS).exists() and any(
        r.get("event") == "end" and not r.get("stopped") or r.get("stopped") == "time budget reached"
        for r in runs.read_metrics_log(run_dir))
    return finished and runs.read_config(run_dir)["model"] == name
