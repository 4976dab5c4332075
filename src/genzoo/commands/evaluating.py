"""`genzoo evaluate RUN`: `evaluation.evaluate.evaluate_run` with the command line's defaults, its metrics as text."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .. import runs
from ..defaults import EVALUATE_BUDGET
from ..evaluation.evaluate import evaluate_run
from .drawing import given


def evaluate(run: str | Path, *, as_json: bool = False, device: str = "auto", seed: int = 0,
             max_test: int | None = None, random_subset: bool | None = None, iwae_k: int | None = None,
             n_samples: int | None = None, guidance_sweep: list[float] | None = None, sweep_samples: int = 0,
             ais_betas: int | None = None, ais_runs: int | None = None, n_edits: int | None = None,
             budget: float | None = None, protocol: str | None = None, started: float | None = None,
             **sampling: Any) -> str:
    """`genzoo evaluate RUN`: every metric that applies, written to RUN/metrics.json; returns them as text
    (one line each, with standard errors and units) or as JSON. Each evaluation is kept in
    RUN/evaluations/<settings>.json, and metrics.json is the most complete of them (a quick look with
    --max-test never replaces a full evaluation). `sampling`: the model's sampling options
    (diffusion: guidance, steps, eta, sampler; None: the model's default); `guidance_sweep` scores each
    guidance weight too. `budget` (seconds) or `protocol="paper"` choose the settings not given
    (`evaluate.choose_settings`); `started`: the `time.perf_counter()` at which the budget began (the
    command's start)."""
    if budget is None and protocol is None:
        budget = EVALUATE_BUDGET
    metrics = evaluate_run(run, device=device, seed=seed, max_test=max_test, random_subset=random_subset,
                           iwae_k=iwae_k, n_samples=n_samples, sample_options=given(sampling),
                           guidance_sweep=guidance_sweep, sweep_samples=sweep_samples, ais_betas=ais_betas,
                           ais_runs=ais_runs, n_edits=n_edits, budget=budget, protocol=protocol, started=started)
    if as_json:
        return json.dumps(metrics, indent=2)
    lines = []
    for key, value in metrics.items():
        if key == "guidance_sweep":
            lines += [f"{'  guidance ' + format(row['guidance'], 'g'):28s} FID-style {row['fid']:.4g}  "
                      f"conditional accuracy {row['conditional_accuracy']:.4f}" for row in value["value"]]
            continue
        shown = value["value"] if isinstance(value, dict) and "value" in value else value
        unit = value.get("unit", "") if isinstance(value, dict) else ""
        se = f" ± {value['se']:.2g}" if isinstance(value, dict) and value.get("se") is not None else ""
        if isinstance(value, dict) and value.get("note"):  # e.g. fewer samples than the reported figures
            unit += f" ({value['note']})"
        if isinstance(value, dict) and value.get("ais_betas"):  # the AIS estimate's cost, beside its number
            unit += f" (AIS: {value['ais_betas']:,} betas, {value['ais_runs']} runs; --ais-betas/--ais-runs)"
        lines.append(f"{key:28s} {shown:.6g}{se} {unit}" if isinstance(shown, float) else f"{key:28s} {shown}")
    written = Path(run) / runs.EVALUATIONS / runs.evaluation_name(metrics["settings"])
    chosen, _ = runs.read_evaluations(run)[0]
    lines.append(f"written to {written}" + (f" and {Path(run) / runs.METRICS}" if chosen == written else
                                            f"; {Path(run) / runs.METRICS} keeps the more complete {chosen.name}"))
    return "\n".join(lines)
