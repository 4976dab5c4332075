"""Named training recipes, run by `genzoo train MODEL --recipe NAME` and listed by `genzoo recipes`: for every
model, `cpu` (the best a 2-core CPU reaches in at most 3 CPU-hours of training) and `paper` (the paper's settings,
sized for a GPU). Each model's recipes are written in its row of the model table (`genzoo.catalog`).

A recipe may need the run of another model first: the editor's `cpu` recipe starts from the latent first stage
of diffusion's `cpu` run and learns from semantic pairs that run draws; `genzoo train instruct --recipe cpu` runs
every stage into sub-folders of its run, each stage resumable like any run.

This module imports no torch: `genzoo recipes` answers at once. The figures a recipe reached are read from
the manifest of the shipped weights (`genzoo.pretrained`), never written here.
"""

from __future__ import annotations

import json
from typing import Any

from .catalog import MODELS, Recipe


class RecipeError(ValueError):
    """An unknown model or recipe name: the message lists the known ones."""


# Model -> recipe name -> recipe: a view of the table's rows (the same dicts), in the table's order.
RECIPES: dict[str, dict[str, Recipe]] = {name: entry.recipes for name, entry in MODELS.items()}


def get(model: str, name: str) -> Recipe:
    """The recipe `name` of `model`; an unknown one is an error listing the known ones."""
    if model not in RECIPES:
        raise RecipeError(f"no recipes for model {model!r}; models with recipes: {', '.join(RECIPES)}")
    if name not in RECIPES[model]:
        raise RecipeError(f"{model}: no recipe {name!r}; its recipes: {', '.join(RECIPES[model])} "
                          f"(`genzoo recipes {model}` describes them)")
    return RECIPES[model][name]


def drift(model: str, name: str, config: dict[str, Any]) -> list[str]:
    """How a run's config.json differs from the recipe `name` of `model` as it is now: "KEY RUN'S in the run,
    RECIPE'S in the recipe" for each model or training setting the recipe sets that the run does not have; [] for
    a run of the recipe as it stands (a shipped model that its rebuild command would make again)."""
    recipe = get(model, name)
    wanted = json.loads(json.dumps({"hparams": recipe.model, "train": recipe.train}))  # tuples as config's lists
    return [f"{key} {config.get(part, {}).get(key)!r} in the run, {value!r} in the recipe"
            for part in ("hparams", "train") for key, value in wanted[part].items()
            if config.get(part, {}).get(key) != value]


def command(model: str, name: str) -> str:
    """The command that trains a recipe on full MNIST."""
    return f"genzoo train {model} --recipe {name} --data mnist --out runs/{model}-{name}"


def listing(model: str | None = None) -> str:
    """`genzoo recipes [MODEL]`: each recipe of each model (or of one), what it is, the command, the time on a
    2-core CPU and the figures its shipped weights reached."""
    from . import pretrained  # a manifest reader: no torch

    shipped = pretrained.manifest()["models"]
    lines = []
    for name in [model] if model else RECIPES:
        if name not in RECIPES:
            raise RecipeError(f"no recipes for model {name!r}; models with recipes: {', '.join(RECIPES)}")
        lines.append(name)
        for key, recipe in RECIPES[name].items():
            entry = shipped.get(name) if shipped.get(name, {}).get("recipe") == key else None
            hours = ("sized for a GPU" if recipe.device == "gpu" else
                     f"{entry['cpu_seconds'] / 3600:.2f} CPU-hours on a 2-core CPU, one thread" if entry else
                     "for a 2-core CPU; its time is not measured yet")
            lines.append(f"  {key:6s} {recipe.about} ({hours})")
            lines.append(f"         {command(name, key)}")
            if entry:
                config = json.loads((pretrained.ROOT / name / "config.json").read_text())
                moved = drift(name, key, config)
                since = f"; trained before the recipe changed: {', '.join(moved)}" if moved else ""
                lines.append(f"         reached (shipped as pretrained:{name}{since}): {pretrained.headline(entry)}")
    return "\n".join(lines)
