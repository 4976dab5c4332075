"""The demo's first phase: the trained zoo that ships with genzoo, drawn in seconds instead of trained for hours.

For each shipped model (`genzoo pretrained`), loaded read-only from the installed package, `draw_shipped` writes
into the demo folder `OUT/shipped/NAME/`: a grid of samples (conditional models: the digits 0-9 in turn), the
model's own pictures (reconstructions, denoising, completions, the reverse process, edits, Gibbs chains: what its
`pictures(data)` draws after training), and `shipped.json`: the recipe, its CPU-hours of training and the
figures of its evaluation on the full test set, each with the sample count and reference set it rests on.
`OUT/shipped/zoo.png` holds one row of samples per family: the report's first picture.

Every file is written whole (an interrupted phase leaves finished models whole, and the next run draws the rest);
nothing is written into the installed package.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .. import pretrained, runs
from ..constants import N_CLASSES
from ..data import Dataset
from ..images import save_figure, save_grid, save_pictures

FOLDER = "shipped"
ZOO_PICTURE = "zoo.png"
ANIMATION = "progress.gif"  # shipped beside a model whose samples were drawn at every epoch (the cGAN)
SUMMARY = "shipped.json"
N_SAMPLES = 64
ZOO_COLUMNS = 10
# Each evaluation figure with what it rests on: (key in evaluation.json, label, how to show the value).
FIGURES = (
    ("nll_nats", "NLL", "{:.2f} nats"),
    ("bits_per_dim", "bits/dim", "{:.3f}"),
    ("fid", "FID-style", "{:.2f}"),
    ("conditional_accuracy", "conditional accuracy", "{:.2%}"),
    ("precision", "precision", "{:.3f}"),
    ("recall", "recall", "{:.3f}"),
    ("class_entropy_bits", "class entropy", "{:.2f} bits"),
    ("recon_psnr", "reconstruction PSNR", "{:.2f} dB"),
    ("edit_psnr", "edit PSNR", "{:.2f} dB"),
    ("edit_kinds_at_18db", "edit kinds at >= 18 dB", "{:.0f} of 23"),
    ("semantic_edit_accuracy", "semantic edits read as the digit asked for", "{:.2%}"),
)


def samples_of(model: Any, n: int, seed: int) -> torch.Tensor:
    """n samples (n, 1, 28, 28); a conditional model draws the digits 0, 1, ..., 9 in turn."""
    labels = torch.arange(n) % N_CLASSES if model.conditional else None
    with torch.no_grad():
        return model.sample(n, y=labels, generator=torch.Generator().manual_seed(seed)).float().clamp(0, 1).cpu()


def figures_of(evaluation: dict[str, Any]) -> list[dict[str, str]]:
    """The evaluation's figures as {key, label, value, rests_on}: a sample score says how many samples against how
    many test digits (FID-style's floor moves with both), a likelihood how many test digits and how binarized."""
    shown = []
    for key, label, form in FIGURES:
        entry = evaluation.get(key)
        if not isinstance(entry, dict) or not isinstance(entry.get("value"), (int, float)):
            continue
        if "n_real" in entry:
            rests_on = f"{entry['n']:,} samples against {entry['n_real']:,} test digits"
        elif "n" in entry:
            rests_on = f"{entry['n']:,} test digits" + (f", {entry['data']}" if entry.get("data") else "")
        else:
            rests_on = ""
        kind = f" ({entry['kind']})" if entry.get("kind") else ""
        shown.append({"key": key, "label": label + kind, "value": form.format(entry["value"]), "rests_on": rests_on})
    return shown


def draw_shipped(out: str | Path, data: Dataset, *, models: list[str] | None = None, seed: int = 0,
                 deadline: float | None = None,
                 say: Callable[[str], None] = lambda text: print(text, file=sys.stderr, flush=True)) -> dict:
    """Draw every shipped model (or those of `models` that ship) into OUT/shipped/; returns the summary written
    to OUT/shipped/shipped.json: {"models": {name: {...}}, "zoo": "zoo.png" or None, "seconds": the phase's wall
    clock, zoo picture included}.

    Args:
        data: the digits the pictures start from (reconstructions, completions, edits).
        deadline: a `time.perf_counter()` time; a model whose samples end after it gets no other pictures, and
            one reached after it only the ZOO_COLUMNS samples of its zoo row (an autoregressive model's 64
            samples are most of a minute on a busy 2-core CPU); both said so.
    """
    folder = Path(out) / FOLDER
    manifest = pretrained.manifest()["models"]
    names = [n for n in manifest if models is None or manifest[n]["model"] in models or n in models]
    summary: dict[str, Any] = {"models": {}, "zoo": None, "seconds": 0.0}
    rows: dict[str, torch.Tensor] = {}
    phase_began = time.perf_counter()

    def past_deadline() -> bool:
        return deadline is not None and time.perf_counter() > deadline

    for i, name in enumerate(names):
        entry = manifest[name]
        began = time.perf_counter()
        model = runs.load(pretrained.PREFIX + name, "cpu")
        target = folder / name
        late = past_deadline()  # reached late: its zoo row only
        samples = samples_of(model, ZOO_COLUMNS if late else N_SAMPLES, seed)
        save_grid(samples, target / "samples.png", nrow=ZOO_COLUMNS if late else 8)
        rows[name] = samples[:ZOO_COLUMNS]
        late = late or past_deadline()
        pictures = [] if late else save_pictures(model.pictures(data), target)
        animation = pretrained.ROOT / name / ANIMATION  # its samples across the training's epochs, where shipped
        if animation.exists():
            shutil.copyfile(animation, target / ANIMATION)
            pictures.append(target / ANIMATION)
        evaluation = json.loads((pretrained.ROOT / name / "evaluation.json").read_text())
        summary["models"][name] = {
            "model": entry["model"], "recipe": entry["recipe"], "command": entry["command"],
            "cpu_hours": round(entry["cpu_seconds"] / 3600, 2), "headline": entry.get("headline", {}),
            "figures": figures_of(evaluation), "data": evaluation.get("data", ""),
            "pictures": ["samples.png", *(str(p.relative_to(target)) for p in pictures)],
            "pictures_left_out": late, "seconds": round(time.perf_counter() - began, 1)}
        say(f"genzoo demo [shipped {i + 1}/{len(names)}] {pretrained.PREFIX + name}: "
            f"{len(summary['models'][name]['pictures'])} pictures in {summary['models'][name]['seconds']:.0f} s"
            f"{' (past the phase deadline: samples only)' if late else ''}")
        runs.atomic_write_text(folder / SUMMARY, json.dumps(summary, indent=2) + "\n")
    if rows:
        save_figure(zoo_figure(rows), folder / ZOO_PICTURE, dpi=100, bbox_inches="tight")
        summary["zoo"] = ZOO_PICTURE
        summary["seconds"] = round(time.perf_counter() - phase_began, 1)
        runs.atomic_write_text(folder / SUMMARY, json.dumps(summary, indent=2) + "\n")
    return summary


def write_zoo_picture(path: str | Path, seed: int = 0) -> Path:
    """The zoo picture on its own (README's): ZOO_COLUMNS samples of every shipped model, one row each."""
    rows = {name: samples_of(runs.load(pretrained.PREFIX + name, "cpu"), ZOO_COLUMNS, seed)
            for name in pretrained.names()}
    save_figure(zoo_figure(rows), Path(path), dpi=100, bbox_inches="tight")
    return Path(path)


def zoo_figure(rows: dict[str, torch.Tensor]):
    """A matplotlib Figure: one row of samples per family, its name on the left (conditional ones: 0-9)."""
    from matplotlib.figure import Figure

    from ..images import grid

    figure = Figure(figsize=(ZOO_COLUMNS * 0.5 + 1.2, len(rows) * 0.55 + 0.2))
    for i, (name, images) in enumerate(rows.items()):
        axes = figure.add_subplot(len(rows), 1, i + 1)
        axes.imshow(grid(images, nrow=ZOO_COLUMNS, padding=1), cmap="gray", vmin=0, vmax=255,
                    interpolation="nearest")
        axes.set_xticks([])
        axes.set_yticks([])
        axes.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    figure.subplots_adjust(left=0.2, right=0.99, top=0.99, bottom=0.01, hspace=0.08)
    return figure
