"""Run folders: config.json, model.safetensors, checkpoint.pt, metrics.jsonl, samples/.

A run folder alone rebuilds its model (`load`): config.json names the model and
holds every hyper-parameter; the weights are safetensors, never a pickle.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from . import registry
from ._version import __version__
from .config import ConfigError

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
CHECKPOINT = "checkpoint.pt"
METRICS_LOG = "metrics.jsonl"
METRICS = "metrics.json"


class RunError(ValueError):
    """A run folder that is missing, incomplete or inconsistent."""


def create(name: str, **hparams: Any):
    """Build a fresh model by CLI name with typed hyper-parameter overrides (e.g. widths=(128, 64))."""
    return registry.get(name)(**hparams)


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def save_weights(model: torch.nn.Module, path: Path) -> None:
    # clone: safetensors refuses tensors that share storage (tied weights, views).
    state = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(state, str(tmp))
    os.replace(tmp, path)


def hardware(device: torch.device | str) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return (
        f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads)"
    )


def write_config(run_dir: Path, model, train_cfg, data: str, seed: int) -> dict:
    config = {
        "model": model.name,
        "hparams": dataclasses.asdict(model.config),
        "train": dataclasses.asdict(train_cfg),
        "data": data,
        "seed": seed,
        "genzoo_version": __version__,
        "torch_version": torch.__version__,
    }
    atomic_write_text(run_dir / CONFIG, json.dumps(config, indent=2) + "\n")
    return config


def read_config(run_dir: str | Path) -> dict:
    path = Path(run_dir) / CONFIG
    if not path.exists():
        raise RunError(f"{run_dir}: not a genzoo run folder (no {CONFIG}); give the --out folder of `genzoo train`")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise RunError(f"{path}: not valid JSON ({e})") from e
    for key in ("model", "hparams", "train", "data", "seed"):
        if key not in config:
            raise RunError(f"{path}: missing key {key!r}")
    return config


def build_model(config: dict):
    """The untrained model that a run's config.json describes."""
    try:
        return create(config["model"], **config["hparams"])
    except ConfigError as e:
        raise RunError(f"config.json does not describe a buildable model: {e}") from e


def load(run_dir: str | Path, device: str | torch.device = "cpu"):
    """Rebuild the trained model of a run folder from config.json and model.safetensors.

    Returns the model in eval mode on `device`.
    """
    run_dir = Path(run_dir)
    model = build_model(read_config(run_dir))
    weights = run_dir / WEIGHTS
    if not weights.exists():
        raise RunError(f"{run_dir}: no {WEIGHTS} yet; the run has not saved weights (resume it with --resume)")
    missing, unexpected = model.load_state_dict(load_file(str(weights)), strict=False)
    if missing or unexpected:
        raise RunError(
            f"{weights}: weights do not fit the model in config.json (missing {missing}, unexpected {unexpected})"
        )
    return model.to(device).eval()


def read_metrics_log(run_dir: str | Path) -> list[dict]:
    """The records of a run's metrics.jsonl, in order; [] when there is none.

    A run killed mid-write leaves a torn last line: it is left out (everything before it is
    whole, and --resume rewrites the file without it). A bad line anywhere else is an error.
    """
    path = Path(run_dir) / METRICS_LOG
    if not path.exists():
        return []
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    records = []
    for number, line in enumerate(lines, 1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines):
                break
            raise RunError(f"{path}: line {number} is not valid JSON; the file was edited or damaged") from None
    return [r for r in records if isinstance(r, dict)]


def append_metrics_log(run_dir: Path, record: dict) -> None:
    """One record as one line, written whole: a kill can tear only the last line."""
    with open(Path(run_dir) / METRICS_LOG, "a") as f:
        f.write(json.dumps(record) + "\n")


def write_metrics_log(run_dir: Path, records: list[dict]) -> None:
    """Replace metrics.jsonl atomically (e.g. with the records a resume keeps)."""
    atomic_write_text(Path(run_dir) / METRICS_LOG, "".join(json.dumps(r) + "\n" for r in records))


def steady_images_per_s(run_dir: str | Path, skip: int = 1) -> float:
    """Mean training images/s of a run's logged windows, leaving out the first `skip` (warm-up:
    allocator, cudnn autotuning). For speed benchmarks: train with log_every=N, then read this."""
    windows = [r["images_per_s"] for r in read_metrics_log(run_dir) if "images_per_s" in r and "event" not in r]
    if len(windows) <= skip:
        raise RunError(f"{run_dir}: {len(windows)} logged windows; a speed reading needs more than {skip}")
    return sum(windows[skip:]) / len(windows[skip:])
