"""Packing a trained run as a shipped model: the weights sampling needs, float16 where the re-score allows,
the config that rebuilds the model, its evaluation, the animation of its samples across epochs where it has
one, and its manifest entry with every file's sha256.

benchmarks/pretrained.py trains and evaluates; this module writes. Tests pack tiny runs into a folder of
their own with the same code.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from .. import pretrained, recipes, runs
from ..data import Dataset
from ..images import save_gif
from .check import subset_figures
from .weights import shipped_state

# What float16 weights may change in the re-score: a likelihood by 0.05 nats (far under its standard error on
# the subset), any other figure by 0.2%.
FP16_NLL_TOLERANCE = 0.05
FP16_TOLERANCE = 2e-3
FP16_MAX = 6e4  # tensors with larger magnitudes keep their precision (float16 ends at 65,504)
# the evaluation's figures a manifest headline quotes, in this order, where the evaluation has them
HEADLINE = {"nll_nats": ("NLL", "{:.2f} nats"), "bits_per_dim": ("bits/dim", "{:.3f}"), "fid": ("FID-style", "{:.2f}"),
            "conditional_accuracy": ("conditional accuracy", "{:.2%}"), "precision": ("precision", "{:.3f}"),
            "recall": ("recall", "{:.3f}"), "class_entropy_bits": ("class entropy", "{:.2f} bits"),
            "reconstruction_mse": ("reconstruction MSE", "{:.4f}"),
            "psnr_denoised_gaussian": ("denoised PSNR, Gaussian noise 0.5", "{:.2f} dB"),
            "edit_psnr": ("edit PSNR", "{:.2f} dB"), "edit_kinds_at_18db": ("edit kinds at >= 18 dB", "{:.0f} of 23"),
            "semantic_edit_accuracy": ("semantic edits read as the digit asked for", "{:.2%}")}
# the shipped animation shows at most this many of the run's epoch grids, evenly spaced, first and last kept
# (the rbm's 200 epochs as 200 frames took 11 MB, six times its weights)
ANIMATION_FRAMES = 20


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def headline(evaluation: dict[str, Any]) -> dict[str, str]:
    """The evaluation's headline figures, each labelled with the count it rests on (and, for a likelihood,
    whether it is of binarized digits or of dequantized pixels)."""
    out = {}
    for key, (label, fmt) in HEADLINE.items():
        entry = evaluation.get(key)
        if isinstance(entry, dict) and entry.get("value") is not None:
            if key in ("nll_nats", "bits_per_dim"):
                label += ", binarized" if entry.get("likelihood_data", "").startswith("binar") else ", dequantized"
            n = entry.get("n")
            out[f"{label} ({n:,})" if n else label] = fmt.format(entry["value"])
    return out


def to_half(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Floating-point tensors that float16 holds as float16; the rest as they are."""
    return {k: v.half() if v.is_floating_point() and (v.numel() == 0 or float(v.abs().max()) < FP16_MAX) else v
            for k, v in state.items()}


def evenly_spaced(items: list, most: int) -> list:
    """At most `most` of `items`, evenly spaced, the first and the last among them."""
    if len(items) <= most:
        return list(items)
    return [items[round(i * (len(items) - 1) / (most - 1))] for i in range(most)]


def close(a: dict[str, float], b: dict[str, float]) -> bool:
    """Whether two re-scores agree within what float16 weights may change."""
    return a.keys() == b.keys() and all(
        abs(a[k] - b[k]) <= FP16_NLL_TOLERANCE if k == "nll_nats" else
        math.isclose(a[k], b[k], rel_tol=FP16_TOLERANCE, abs_tol=1e-6) for k in a)


def pack_run(run: str | Path, name: str, data: Dataset, *, evaluation: dict[str, Any], cpu_seconds: float,
             commit: str, root: Path | None = None) -> dict[str, Any]:
    """Write `root/name/` (config.json, model.safetensors, evaluation.json) from a trained run and put its entry
    in `root/manifest.json`; returns the entry. `data` gives the re-score's test digits."""
    root = Path(root or pretrained.ROOT)
    config = runs.read_config(run)
    model = runs.load(run, "cpu")
    exact = subset_figures(model, data)
    state = shipped_state(model)
    half = to_half(state)
    model.load_state_dict({**model.state_dict(), **half})  # float16 values, cast back into the float32 model
    halved = subset_figures(model, data)
    kept = sorted({str(v.dtype).removeprefix("torch.") for v in state.values() if v.is_floating_point()})
    chosen, dtype, figures = (half, "float16", halved) if close(exact, halved) else (state, "/".join(kept), exact)
    target = root / name
    target.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in chosen.items()}, str(target / "model.safetensors"))
    shipped = {"dtype": dtype, "left_out": sorted(set(model.state_dict()) - set(chosen))}
    # data "auto": MNIST where the user has it, else the embedded digits
    (target / "config.json").write_text(json.dumps({**config, "data": "auto", "shipped": shipped}, indent=2) + "\n")
    (target / "evaluation.json").write_text(json.dumps(evaluation, indent=2) + "\n")
    frames = sorted((Path(run) / "samples").glob("epoch_*.png"))
    if len(frames) > 1:  # the animation of generation across epochs (the cGAN's)
        save_gif(evenly_spaced(frames, ANIMATION_FRAMES), target / "progress.gif")
    for path in target.iterdir():
        path.chmod(0o644)  # package data: readable by every user (safetensors writes 0600)
    recipe = config["train"].get("recipe", "")
    entry = {"model": config["model"], "recipe": recipe,
             "command": recipes.command(config["model"], recipe) if recipe else "",
             "commit": commit, "cpu_seconds": round(cpu_seconds, 1), "trained_step": runs.trained_step(run),
             "dtype": dtype, "headline": headline(evaluation), "subset": figures,
             "packed_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
             "files": {p.name: sha256(p) for p in sorted(target.iterdir()) if p.is_file()}}
    manifest_path = root / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"models": {}}
    manifest["models"][name] = entry
    manifest["models"] = dict(sorted(manifest["models"].items()))
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return entry
