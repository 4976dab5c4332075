"""The trained zoo that ships inside the package: each family's `cpu` recipe trained on full MNIST.

Each shipped model is a folder `genzoo/pretrained/<name>/` holding what a run folder holds for sampling
(config.json, model.safetensors with only the weights that sampling, scoring and editing need) and its
evaluation on the full test set; `manifest.json` lists, per model, the recipe, the commit that trained it, the
CPU-seconds it took, its headline figures, the figures of a small fixed re-score (tests/test_pretrained.py
recomputes them) and the sha256 of every file. `pretrained:NAME` names one wherever a run folder is taken.

This module reads the manifest without importing torch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parent
MANIFEST = ROOT / "manifest.json"
PREFIX = "pretrained:"
README_LEAVES = ("bits/dim", "precision", "recall")  # headline figures that README's table leaves to the docs


class PretrainedError(ValueError):
    """An unknown shipped model, or a shipped file that does not match the manifest."""


def manifest() -> dict[str, Any]:
    """The manifest: {"models": {name: entry}}; no models when none ships."""
    if not MANIFEST.exists():
        return {"models": {}}
    return json.loads(MANIFEST.read_text())


def names() -> list[str]:
    return list(manifest()["models"])


def is_pretrained(spec: str | Path) -> bool:
    return isinstance(spec, str) and spec.startswith(PREFIX)


def resolve(spec: str) -> Path:
    """The installed folder of `pretrained:NAME`; an unknown name is an error listing the shipped ones."""
    name = spec[len(PREFIX):]
    known = names()
    if name not in known:
        raise PretrainedError(f"{spec}: no shipped model {name!r}; shipped: "
                              f"{', '.join(PREFIX + n for n in known) or 'none'} (`genzoo pretrained` lists them)")
    return ROOT / name


def headline(entry: dict[str, Any]) -> str:
    """The shipped figures of one manifest entry, in one line: "IWAE NLL 84.1 nats (10,000 test digits), ..."."""
    return "; ".join(f"{label} {value}" for label, value in entry.get("headline", {}).items())


def run_path(spec: str | Path) -> Path:
    """The folder to read a run from: the installed folder of `pretrained:NAME`, else the path itself."""
    return resolve(spec) if is_pretrained(spec) else Path(spec)


def workspace(spec: str, parent: str | Path = ".") -> Path:
    """A folder the user owns for what commands write about `pretrained:NAME` (samples, evaluations, pictures):
    `./genzoo-pretrained/NAME`, holding a copy of the shipped config and weights, so that every command works on
    it as on a run folder while the installed package is never written. Says where on first use."""
    source = resolve(spec)
    target = Path(parent) / "genzoo-pretrained" / source.name
    config = json.loads((source / "config.json").read_text())
    if not (target / "config.json").exists() or json.loads((target / "config.json").read_text()) != config:
        import shutil
        import sys

        target.mkdir(parents=True, exist_ok=True)
        for name in ("model.safetensors", "config.json"):  # weights first: config.json marks a complete copy
            shutil.copyfile(source / name, target / name)
        print(f"genzoo: {spec} is read-only (installed with genzoo); results for it go to {target}",
              file=sys.stderr)
    return target


def listing() -> str:
    """`genzoo pretrained`: each shipped model, its recipe, training time and headline figures."""
    entries = manifest()["models"]
    if not entries:
        return "no trained models ship with this copy of genzoo"
    lines = []
    for name, entry in entries.items():
        hours = entry["cpu_seconds"] / 3600
        lines.append(f"{PREFIX + name:22s} --recipe {entry['recipe']}, {hours:.2f} CPU-hours of training: "
                     f"{headline(entry)}")
    lines.append(f"use one wherever a run folder goes, e.g. genzoo sample {PREFIX + next(iter(entries))} -n 64")
    return "\n".join(lines)


def table_cells(name: str) -> tuple[str, str, str]:
    """README's family-table cells of a shipped model: how to sample it, its training time, its headline."""
    entry = manifest()["models"][name]
    sample = f"`genzoo sample {PREFIX + name} -n 64`"
    if entry["model"] == "instruct":  # an editor is shown by its edits
        sample = f"`genzoo edit {PREFIX + name} --test-index 0 --instruction \"turn it into a 3\"`"
    figures = {label: value for label, value in entry["headline"].items() if not label.startswith(README_LEAVES)}
    return sample, f"{entry['cpu_seconds'] / 3600:.2f} CPU-hours", "; ".join(
        f"{label}: {value}" for label, value in figures.items())
