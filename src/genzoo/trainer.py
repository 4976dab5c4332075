"""The one trainer every model goes through: `train` a model into a run folder.

It chooses how to train from the model's `training_mode`: gradient steps on the model's loss
(Adam, an optional warm-up/cosine schedule, bf16 autocast on CUDA), the model's own
`train_step` (adversarial, CD-k), or one closed-form `fit` on the whole training set.

The run folder holds config.json, metrics.jsonl (with, for gradient-trained models, the loss
on the test set after each epoch), a sample grid per epoch and `samples/progress.gif`,
`model.safetensors`, and an atomic `checkpoint.pt` (weights, optimizer states, step, RNG) every
few minutes and at each epoch end. `resume=True` continues a killed run exactly where its last
checkpoint left it. The whole data set is kept on the device and batches are cut from a seeded
per-epoch permutation, so there is no DataLoader and no worker process.

Under `torchrun` (WORLD_SIZE > 1) gradient-trained models run data-parallel with PyTorch's
DistributedDataParallel: every rank takes its slice of each global batch, and only rank 0
writes to the run folder. The parts live in `genzoo.training` (loop, checkpoint, log window,
signals, devices, schedule).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import torch

from . import runs
from .config import build
from .data import Dataset, load_data
from .pretrained import run_path
from .runlock import empty_run_folder, locks_run
from .train_config import TrainConfig, check_train_keys
from .training import TrainingError
from .training.devices import Distributed, resolve_device
from .training.loop import Loop
from .training.schedule import lr_factor, total_steps

__all__ = ["LENGTH_KEYS", "train", "train_or_resume"]

# The trainer settings that --resume may change: the run's length, in steps or epochs, and its time budget
# (training seconds summed over sessions: `genzoo demo` gives a continued run another slice this way).
LENGTH_KEYS = ("epochs", "steps", "time_budget")


@locks_run  # one process writes a run folder: held before the folder is looked at, until training ends
def train(
    model: Any,
    data: str | Dataset = "auto",
    out: str | Path | None = None,
    *,
    device: str | torch.device = "auto",
    seed: int = 0,
    resume: bool = False,
    train_overrides: dict[str, Any] | None = None,
    model_overrides: dict[str, Any] | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """Train a model into a run folder and return the folder.

    Args:
        model: a CLI name (e.g. "vae") or a model instance.
        data: a `--data` value (folder, "mnist", "embedded", "fashion-mnist", "auto") or a Dataset.
        out: the run folder (default runs/<model>); with `resume=True`, the run to continue.
        device: "auto" (GPU when there is one), "cpu" or "cuda".
        seed: seeds weights, batches, noise and the fixed sample grid.
        resume: continue the run in `out` from its checkpoint, with its own config.
        train_overrides: TrainConfig values (epochs, steps, batch_size, lr, ...). With `resume`, only
            epochs or steps: a finished (or killed) run then trains on to that new length.
        model_overrides: model hyper-parameters, typed (e.g. {"widths": (128, 64)}; --set parses strings).
        progress: show a progress bar.
        overwrite: a new run in a folder that holds one deletes that run first; without it (and without
            `resume`) such a folder is an error, so that no run is lost by a repeated command.
    """
    device = resolve_device(device)
    name = model if isinstance(model, str) else model.name
    run_dir = Path(out) if out is not None else Path("runs") / name
    if not resume and not overwrite and (run_dir / runs.CONFIG).exists():
        held = runs.read_config(run_dir)["model"]
        raise TrainingError(f"{run_dir}: holds a {held} run already; continue it with `genzoo train {held} --out "
                            f"{run_dir} --resume`, or start afresh with --overwrite (which deletes that run)")
    if resume:
        config, model_obj, train_cfg, data_spec, seed = _resumed(name, run_dir, train_overrides, model_overrides)
    else:
        model_obj, train_cfg, data_spec = _fresh(model, data, seed, train_overrides, model_overrides)
    dataset = data if isinstance(data, Dataset) else load_data(data_spec)
    lengthened = None
    if resume and train_overrides:
        lengthened = _lengthen(run_dir, train_cfg, train_overrides, len(dataset.train_x))
    train_cfg = lengthened or train_cfg

    ddp = Distributed(device)
    if ddp.enabled and model_obj.training_mode != "gradient":
        raise TrainingError(
            f"{name}: data-parallel training (torchrun) needs a gradient-trained model; "
            f"{name} trains with '{model_obj.training_mode}'. Run it as a single process."
        )
    if ddp.main:
        _prepare_run_dir(run_dir, model_obj, train_cfg, data_spec, seed, config if lengthened else None, resume)
    ddp.barrier()
    return Loop(model_obj, train_cfg, dataset, run_dir, ddp.device, seed, ddp, progress).run(resume)


def _resumed(name: str, run_dir: Path, train_overrides: dict | None, model_overrides: dict | None):
    """The config, model, trainer settings, data and seed of the run to continue."""
    config = runs.read_config(run_dir)
    if name != config["model"]:
        raise TrainingError(f"{run_dir}: a {config['model']} run, not {name}; "
                            f"continue it with: genzoo train {config['model']} --out {run_dir} --resume")
    changed = sorted(set(model_overrides or {}) | (set(train_overrides or {}) - set(LENGTH_KEYS)))
    if changed:
        raise TrainingError(f"{run_dir}: --resume continues a run with its own config.json; drop {', '.join(changed)} "
                            "(only --epochs or --steps may go with it, to train the run for longer)")
    torch.manual_seed(config["seed"])
    model = runs.build_model(config)
    return config, model, build(TrainConfig, config["train"], owner="trainer"), config["data"], config["seed"]


def _fresh(model: Any, data: str | Dataset, seed: int, train_overrides: dict | None, model_overrides: dict | None):
    """The model, trainer settings and data spec of a new run."""
    if model_overrides and not isinstance(model, str):
        raise TrainingError("model_overrides apply to a model given by name; configure the instance instead")
    torch.manual_seed(seed)  # the initial weights come from the seed (DDP then broadcasts rank 0's copy)
    init_from = (train_overrides or {}).get("init_from")
    if init_from:
        model_obj = _initialised(model, init_from, model_overrides)
    else:
        model_obj = runs.create(model, **(model_overrides or {})) if isinstance(model, str) else model
    check_train_keys(model_obj, train_overrides or {})
    train_cfg = build(TrainConfig, {**model_obj.train_defaults, **(train_overrides or {})}, owner="trainer")
    return model_obj, train_cfg, data if isinstance(data, str) else data.spec


def _initialised(model: Any, source: str, model_overrides: dict | None):
    """A new run's model that starts from the weights and settings of the run `source` (a fresh optimizer)."""
    if model_overrides or not isinstance(model, str):
        raise TrainingError(f"--from {source}: the new run takes {source}'s model settings; drop --set for them")
    model_obj = runs.load(source).train()
    if model_obj.name != model:
        raise TrainingError(f"--from {source}: a {model_obj.name} run, not {model}; "
                            f"use: genzoo train {model_obj.name} --from {source} --out RUN")
    if model_obj.training_only_weights and "shipped" in runs.read_config(run_path(source)):
        print(f"genzoo: {source} ships without its training-only weights "
              f"({', '.join(model_obj.training_only_weights)}): they start afresh", file=sys.stderr)
    return model_obj


def _prepare_run_dir(run_dir: Path, model, train_cfg: TrainConfig, data_spec: str, seed: int,
                     lengthened_config: dict | None, resume: bool) -> None:
    if not resume and (run_dir / runs.CONFIG).exists():  # --overwrite: nothing of the earlier run may linger
        empty_run_folder(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "samples").mkdir(exist_ok=True)
    if not resume:
        for stale in (runs.CHECKPOINT, runs.METRICS_LOG):
            (run_dir / stale).unlink(missing_ok=True)
        runs.write_config(run_dir, model, train_cfg, data_spec, seed)
    elif lengthened_config is not None:  # the new length is the run's own from now on: a later plain --resume keeps it
        lengthened_config["train"] = dataclasses.asdict(train_cfg)
        runs.atomic_write_text(run_dir / runs.CONFIG, json.dumps(lengthened_config, indent=2) + "\n")


def _lengthen(run_dir: Path, cfg: TrainConfig, lengths: dict[str, Any], n_train: int) -> TrainConfig | None:
    """The run's trainer settings with a new number of epochs or steps or a new time budget, or None when
    nothing changes.

    The learning-rate schedule is recomputed over the new length from the checkpoint's step on; a
    cosine schedule that had reached its end thus rises again, and this says by how much.
    """
    path = run_dir / runs.CHECKPOINT
    if not path.exists():
        raise TrainingError(f"{path}: no checkpoint to resume from; start the run again without --resume")
    new = build(TrainConfig, {**dataclasses.asdict(cfg), **lengths}, owner="trainer")
    step = runs.load_checkpoint(path, "cpu", mmap=True)["step"]
    before, after = total_steps(cfg, n_train), total_steps(new, n_train)
    if after < step:
        raise TrainingError(f"{run_dir}: the run is at step {step}, past the {after} steps that "
                            f"{', '.join(f'{k}={v}' for k, v in lengths.items())} make; ask for more, or drop them")
    if after == before:
        return new if new.time_budget != cfg.time_budget else None
    note = f"genzoo: {run_dir}: training to step {after} instead of {before} (now at step {step})"
    lr_now, lr_new = cfg.lr * lr_factor(cfg, before)(step), new.lr * lr_factor(new, after)(step)
    if lr_new != lr_now:
        note += (f"; the {new.schedule} schedule now spans {after} steps: the learning rate goes from {lr_now:.3g} "
                 f"to {lr_new:.3g}")
    print(note, file=sys.stderr)
    return new


def train_or_resume(model: Any, data: str | Dataset, out: str | Path, *, resume: bool = True,
                    train_overrides: dict[str, Any] | None = None, model_overrides: dict[str, Any] | None = None,
                    **kwargs: Any) -> Path:
    """`train`, except that with `resume` a run folder holding a checkpoint is continued with its
    own config (the overrides are then not used; a finished run is left as it is).

    For scripts that a time limit may cut off (the benchmarks): the same command, run again,
    goes on where the last one stopped.
    """
    resume = resume and (Path(out) / runs.CHECKPOINT).exists()
    return train(model, data, out, resume=resume, train_overrides=None if resume else train_overrides,
                 model_overrides=None if resume else model_overrides, overwrite=not resume, **kwargs)
