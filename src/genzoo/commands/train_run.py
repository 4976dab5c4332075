"""`genzoo train MODEL`: the trainer behind the command line's settings and named recipes.

`--set key=value` strings become typed model or trainer settings here (`split_sets`), a recipe's values are laid
under what the command line gives, and the runs a recipe starts from (its stages, an editor's semantic pairs)
are trained first, each going on where a killed command left it.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

from .. import pretrained, recipes, registry, runs
from ..catalog import Stage
from ..config import ConfigError, field_types, parse_sets, parse_value
from ..data import load_data
from ..train_config import TrainConfig
from ..trainer import train as train_model
from ..trainer import train_or_resume
from ..training import TrainingError
from .pairs import semantic_pairs


def split_sets(model_name: str, pairs: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Parse each --set value by its field's type and send it to the model's Config or to the TrainConfig.

    The one place where strings become typed values; unknown keys are errors.
    """
    model_keys = field_types(registry.get(model_name).Config)
    train_keys = field_types(TrainConfig)
    model_part, train_part = {}, {}
    for key, value in pairs.items():
        if key in model_keys:
            model_part[key] = parse_value(key, value, model_keys[key])
        elif key in train_keys:
            train_part[key] = parse_value(key, value, train_keys[key])
        else:
            raise ConfigError(
                f"--set {key}={value}: unknown key {key!r}. {model_name} keys: {', '.join(model_keys)}; "
                f"trainer keys: {', '.join(train_keys)}"
            )
    return model_part, train_part


def train(model: str, *, data: str = "auto", out: str | None = None, device: str = "auto", seed: int = 0,
          resume: bool = False, sets: list[str] | None = None, epochs: int | None = None, steps: int | None = None,
          batch_size: int | None = None, lr: float | None = None, overwrite: bool = False,
          time_budget: float | None = None, recipe: str | None = None, init_from: str | None = None) -> Path:
    """`genzoo train MODEL`: train into a run folder (or continue one with `resume`) and return the folder.

    Args:
        sets: "key=value" strings for the model's or the trainer's config (not with `resume`).
        epochs, steps, batch_size, lr: the trainer settings the CLI names; `steps` alone means no epochs.
        time_budget: seconds of training (summed over resumed sessions); with `resume`, a new budget.
        recipe: a named recipe of `genzoo.recipes` (e.g. "cpu"); `sets` and the named settings override its
            values. Its stages (runs of other models it starts from) train first, into RUN/stages/.
        init_from: a run folder or pretrained:NAME whose weights and model settings the new run starts from
            (with a fresh optimizer; recorded in its config.json).
    """
    if out is not None and pretrained.is_pretrained(out):
        raise TrainingError(f"{out}: a shipped model is read-only; train on from it in a run folder of your own: "
                            f"genzoo train {model} --from {out} --out runs/{model}")
    if resume:
        if out is None:
            raise TrainingError("--resume needs --out RUN, the run folder to continue")
        if sets or recipe:
            raise TrainingError(f"{out}: --resume continues a run with its own config.json; drop "
                                f"{'--set' if sets else '--recipe'} (only --epochs, --steps or --time-budget may go "
                                "with it, to train the run for longer)")
        model_part, train_part = {}, {}
    else:
        model_part, train_part = split_sets(model, parse_sets(sets))
    given = {"epochs": epochs, "steps": steps, "batch_size": batch_size, "lr": lr, "time_budget": time_budget,
             "init_from": init_from}
    train_part.update({key: value for key, value in given.items() if value is not None})
    if steps and "epochs" not in train_part:
        train_part["epochs"] = 0
    if recipe:
        run_dir = Path(out) if out is not None else Path("runs") / model
        staged = recipe_stages(model, recipe, run_dir, data=data, device=device, seed=seed)
        chosen = recipes.get(model, recipe)
        model_part = {**chosen.model, **staged, **model_part}
        lengths = {"epochs", "steps"} & set(train_part)  # a length given on the command line replaces the recipe's
        train_part = {**{k: v for k, v in chosen.train.items() if not (lengths and k in ("epochs", "steps"))},
                      **train_part, "recipe": recipe}
        if "steps" in train_part and "epochs" not in train_part:
            train_part["epochs"] = 0
        out = str(run_dir)
    return train_model(model, data=data, out=out, device=device, seed=seed, resume=resume,
                       train_overrides=train_part, model_overrides=model_part, overwrite=overwrite)


def recipe_stages(model: str, name: str, run_dir: Path, *, data: str, device: str, seed: int) -> dict[str, Any]:
    """Train (or finish, or find finished) the runs a recipe starts from, in `run_dir/stages/`, and return the
    model settings that point at them. Each stage goes on where a killed command left it."""
    chosen = recipes.get(model, name)
    settings: dict[str, Any] = {}
    for stage in chosen.stages:
        stage_dir = run_dir / "stages" / stage.name
        if not stage_dir.exists() and copy_shipped_stage(stage, stage_dir, data):
            print(f"genzoo: {model} --recipe {name}: stage {stage.name!r} is the shipped {pretrained.PREFIX}"
                  f"{stage.model} (its --recipe {stage.recipe}, trained on the same data), copied into {stage_dir}",
                  file=sys.stderr)
        if not _finished(stage_dir):
            print(f"genzoo: {model} --recipe {name}: stage {stage.name!r}: {stage.model} --recipe {stage.recipe} "
                  f"into {stage_dir}", file=sys.stderr)
            stage_recipe = recipes.get(stage.model, stage.recipe)
            train_part = {**stage_recipe.train, "recipe": stage.recipe}
            train_or_resume(stage.model, data, stage_dir, device=device, seed=seed, train_overrides=train_part,
                            model_overrides={**stage_recipe.model, **recipe_stages(stage.model, stage.recipe,
                                                                                   stage_dir, data=data,
                                                                                   device=device, seed=seed)})
        settings["first_stage_from"] = str(stage_dir.resolve())
    if chosen.pairs:
        pairs_dir = run_dir / "stages" / "pairs"
        if not (pairs_dir / "pairs.safetensors").exists():
            print(f"genzoo: {model} --recipe {name}: {chosen.pairs} semantic pairs into {pairs_dir}", file=sys.stderr)
            ddpm_dir = run_dir / "stages" / "ddpm"  # drawn with that run's own number of DDIM steps
            steps = runs.read_config(ddpm_dir)["hparams"]["sample_steps"]
            semantic_pairs(ddpm_dir, pairs_dir, chosen.pairs, threshold=chosen.pairs_threshold, steps=steps,
                           seed=seed, device=device)
        settings["semantic_pairs"] = str((pairs_dir / "pairs.safetensors").resolve())
    return settings


def copy_shipped_stage(stage: Stage, stage_dir: Path, data: str) -> bool:
    """Copy the shipped model of a stage's model into `stage_dir` when it is that stage's run already: made by the
    stage's recipe, with that recipe's model and training settings as they are now, on the dataset `data` names. Returns
    whether it did (a stage trained from scratch otherwise)."""
    entry = pretrained.manifest()["models"].get(stage.model)
    if entry is None or entry["model"] != stage.model or entry["recipe"] != stage.recipe:
        return False
    folder = pretrained.ROOT / stage.model
    trained_on = json.loads((folder / "evaluation.json").read_text()).get("data", "")
    if recipes.drift(stage.model, stage.recipe, runs.read_config(folder)) or \
            trained_on.split(" ")[0] != load_data(data, verbose=False).name:
        return False
    shutil.copytree(folder, stage_dir)
    return True


def _finished(run_dir: Path) -> bool:
    """Whether a run folder holds a run that ended on its own length (not cut by a budget or a signal), or a
    shipped model's copy."""
    if (run_dir / runs.CONFIG).exists() and "shipped" in runs.read_config(run_dir):
        return True
    ends = [r for r in runs.read_metrics_log(run_dir) if r.get("event") == "end"] if run_dir.exists() else []
    return bool(ends) and not ends[-1].get("stopped")
