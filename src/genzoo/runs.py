"""Run folders: config.json, model.safetensors, checkpoint.pt, metrics.jsonl, samples/.

A run folder alone rebuilds its model (`load`): config.json names the model and
holds every hyper-parameter; the weights are safetensors, never a pickle.
"""

from __future__ import annotations

import dataclasses
import errno
import io
import json
import os
import pickle
import platform
import shutil
import zipfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as save_safetensors

from . import registry
from ._version import __version__
from .config import ConfigError

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
CHECKPOINT = "checkpoint.pt"
METRICS_LOG = "metrics.jsonl"
METRICS = "metrics.json"
EVALUATIONS = "evaluations"  # one JSON file per evaluation, named by its settings; metrics.json is the most complete


class RunError(ValueError):
    """A run folder that is missing, incomplete or inconsistent."""


def create(name: str, **hparams: Any):
    """Build a fresh model by CLI name with typed hyper-parameter overrides (e.g. widths=(128, 64)).

    The model is first built without memory (on the meta device) to count its numbers: one that would not
    fit in the machine's free memory is refused with the estimate, before anything is allocated.
    """
    check_fits(name, hparams)
    return registry.get(name)(**hparams)


TRAINING_COPIES = 4  # weights, gradients and Adam's two moments: what training holds per parameter, at least


def available_memory_bytes() -> int | None:
    """The memory this process may still take: MemAvailable of /proc/meminfo (Linux), None elsewhere."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


GROWTH_CHECKED = 4  # a size setting above this many times its default is checked on the meta device
# The scale of a setting whose default holds no number (ddpm's `widths=()`: the space's own widths, at most
# 128): without it any explicit widths counted as growth, and the first ddpm a server loaded took seconds more.
EMPTY_DEFAULT_SCALE = 128


def _numbers(value: Any) -> list[float]:
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        return [value]
    if isinstance(value, (tuple, list)):
        return [v for item in value for v in _numbers(item)]
    return []


def _grows(name: str, hparams: dict[str, Any]) -> bool:
    """Whether a setting is far above its default: only then is the model built on the meta device to size it
    (that costs seconds the first time, the import of torch's meta kernels; the defaults are known to fit)."""
    defaults = dataclasses.asdict(registry.get(name).Config())
    for key, value in hparams.items():
        given, default = _numbers(value), _numbers(defaults.get(key))
        if given and max(given) > GROWTH_CHECKED * (max(default + [1]) if default else EMPTY_DEFAULT_SCALE):
            return True
    return False


def check_fits(name: str, hparams: dict[str, Any]) -> None:
    """Refuse a model whose weights (times TRAINING_COPIES for training) exceed the free memory, naming
    the estimate and the settings; models that cannot be built on the meta device are not checked."""
    available = available_memory_bytes()
    if available is None or not _grows(name, hparams):
        return
    try:
        with torch.device("meta"):
            shapes = registry.get(name)(**hparams)
    except (NotImplementedError, RuntimeError):  # an __init__ that computes values (not only shapes) on meta
        return
    size = sum(t.numel() * t.element_size() for t in [*shapes.parameters(), *shapes.buffers()])
    if size * TRAINING_COPIES > available:
        given = ", ".join(f"{k}={v}" for k, v in hparams.items()) or "its defaults"
        raise ConfigError(f"{name} with {given}: {size / 2**30:,.1f} GiB of weights, about "
                          f"{size * TRAINING_COPIES / 2**30:,.1f} GiB to train (weights, gradients, Adam's moments), "
                          f"more than the {available / 2**30:,.1f} GiB of memory free on this machine; "
                          "choose smaller sizes")


class DiskFullError(RunError):
    """A write that found no space left: names the file and the space it needed; the file as it was is kept."""


def _size(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def free_bytes(path: Path) -> int | None:
    """Free space on the file system that holds `path` (its nearest existing parent); None if unknown."""
    for folder in [path, *path.parents]:
        if folder.exists():
            try:
                return shutil.disk_usage(folder).free
            except OSError:
                return None
    return None


def disk_full(path: Path, needed: int | None) -> DiskFullError:
    """The one-line error of a write to `path` that ran out of space, `needed` bytes in all."""
    free = free_bytes(path.parent)
    need = f"about {_size(needed)}" if needed is not None else "more space"
    have = f", {_size(free)} free" if free is not None else ""
    return DiskFullError(f"{path}: no space left on the device to write it (the write needs {need}{have}); the "
                         "file as it was before is kept. Free some space and run the command again (a training run "
                         "continues from its last checkpoint with --resume)")


def is_disk_full(e: OSError) -> bool:
    return e.errno in (errno.ENOSPC, errno.EDQUOT)


def write_atomic(path: Path, data: bytes | memoryview, mode: int = 0o666) -> None:
    """Write `data` to `path` whole or not at all: into a hidden temporary file beside it, synced, then renamed
    over it, so that a kill or a full disk leaves the old file (or none), never half of one.

    A full disk raises DiskFullError naming the path and the size of the write; the temporary file is removed.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    view = memoryview(data).cast("B")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)  # some file systems report a full disk only when the data reaches it
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if is_disk_full(e):
            raise disk_full(path, len(memoryview(data).cast("B"))) from None
        raise


def atomic_write_text(path: Path, text: str) -> None:
    write_atomic(path, text.encode())


def atomic_torch_save(obj: Any, path: Path) -> None:
    buffer = io.BytesIO()  # serialized first, so that the write is one atomic step of a known size
    torch.save(obj, buffer)
    write_atomic(path, buffer.getbuffer())


def save_weights(model: torch.nn.Module, path: Path) -> None:
    # clone: safetensors refuses tensors that share storage (tied weights, views).
    state = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    write_atomic(path, save_safetensors(state))  # 0666 less the umask, as every other run file


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
    from .pretrained import run_path
    from .pretrained.weights import complete_state

    run_dir = run_path(run_dir)
    config = read_config(run_dir)
    model = build_model(config)
    weights = run_dir / WEIGHTS
    if not weights.exists():
        raise RunError(f"{run_dir}: no {WEIGHTS} yet; the run has not saved weights (resume it with --resume)")
    try:
        state = load_file(str(weights))
    except SafetensorError as e:
        raise RunError(f"{weights}: not a readable safetensors file ({e}): it is truncated, damaged or not "
                       "genzoo's weights; restore it from a copy, or train the run again with --overwrite") from None
    if "shipped" in config:  # weights packed for sampling: the training-only ones left out
        state = complete_state(model, state)
    mismatched = {k: (tuple(v.shape), tuple(state[k].shape)) for k, v in model.state_dict().items()
                  if k in state and v.shape != state[k].shape}
    if mismatched:
        raise RunError(_shape_mismatch(run_dir, weights, model, mismatched))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise RunError(
            f"{weights}: weights do not fit the model in config.json (missing {missing}, unexpected {unexpected})"
        )
    return model.to(device).eval()


def evaluation_name(settings: dict[str, Any]) -> str:
    """The file name of an evaluation under RUN/evaluations/, from the settings that change its numbers.

    e.g. {"test_images": 10000, "n_samples": 10000, "seed": 0} -> "test10000_samples10000_seed0.json";
    a random subset, an IWAE K and sampling options add their own parts.
    """
    parts = [f"test{settings['test_images']}", f"samples{settings['n_samples']}", f"seed{settings['seed']}"]
    if settings.get("random_subset"):
        parts.append("random")
    if settings.get("iwae_k"):
        parts.append(f"k{settings['iwae_k']}")
    if settings.get("ais"):
        parts.append("ais-" + "-".join(f"{k}{v}" for k, v in sorted(settings["ais"].items())))
    for key, value in sorted((settings.get("sampling") or {}).items()):
        parts.append(f"{key}{format(value, 'g') if isinstance(value, float) else value}")
    if settings.get("n_edits") is not None:  # an editor's scored edits
        parts.append(f"edits{settings['n_edits']}")
    if settings.get("guidance_sweep"):
        parts.append("sweep" + "-".join(format(w, "g") for w in settings["guidance_sweep"]))
    return "_".join(parts).replace("/", "-") + ".json"


def completeness(metrics: dict[str, Any]) -> tuple:
    """How complete an evaluation is, for choosing among several of a run: evaluations of the latest
    weights first, then more test images, more samples, a larger IWAE K, then the later one."""
    s = metrics.get("settings") or {}
    return (metrics.get("trained_step", -1), s.get("test_images", 0), s.get("n_samples", 0), s.get("iwae_k") or 0,
            metrics.get("evaluated_at", ""))


def read_evaluations(run_dir: str | Path) -> list[tuple[Path, dict]]:
    """Every evaluation of a run, (path, metrics), most complete first: RUN/evaluations/*.json, and a
    metrics.json written before evaluations were kept side by side (it has no "settings")."""
    run_dir = Path(run_dir)
    found = []
    for path in sorted((run_dir / EVALUATIONS).glob("*.json")):
        try:
            found.append((path, json.loads(path.read_text())))
        except json.JSONDecodeError as e:
            raise RunError(f"{path}: not valid JSON ({e}); delete it or evaluate again") from e
    legacy = run_dir / METRICS
    if not found and legacy.exists():
        try:
            found.append((legacy, json.loads(legacy.read_text())))
        except json.JSONDecodeError as e:
            raise RunError(f"{legacy}: not valid JSON ({e}); rerun `genzoo evaluate` or delete the file") from e
    return sorted(found, key=lambda item: completeness(item[1]), reverse=True)


def write_evaluation(run_dir: str | Path, metrics: dict[str, Any]) -> tuple[Path, bool]:
    """Keep an evaluation beside the run's others: RUN/evaluations/<settings>.json (the same settings replace
    their earlier file), and metrics.json rewritten as the most complete of them.

    Returns the file written and whether it is now metrics.json (False: a more complete one was kept).
    """
    run_dir = Path(run_dir)
    path = run_dir / EVALUATIONS / evaluation_name(metrics["settings"])
    path.parent.mkdir(exist_ok=True)
    atomic_write_text(path, json.dumps(metrics, indent=2) + "\n")
    chosen_path, chosen = read_evaluations(run_dir)[0]
    atomic_write_text(run_dir / METRICS, json.dumps(chosen, indent=2) + "\n")
    return path, chosen_path == path


def trained_step(run_dir: str | Path) -> int:
    """The step of the run's last finished training session (-1: none), to tell which weights an evaluation saw."""
    ends = [r for r in read_metrics_log(run_dir) if r.get("event") == "end"]
    return int(ends[-1]["step"]) if ends else -1


def _shape_mismatch(run_dir: Path, weights: Path, model, mismatched: dict[str, tuple[tuple, tuple]]) -> str:
    """Which config.json hyper-parameter gives the model other shapes than the weights have, where it can be told:
    a setting whose value is a size the model has and the weights have not."""
    name, (built, saved) = next(iter(mismatched.items()))
    suspects = []
    for key, value in dataclasses.asdict(model.config).items():
        if isinstance(value, int) and not isinstance(value, bool) and any(
                value in b and value not in w for b, w in mismatched.values()):
            suspects.append(f"{key}={value}")
    blame = (f"config.json's {', '.join(suspects)} does not match the weights; was it edited? " if suspects
             else "config.json does not describe the model these weights belong to; was it edited? ")
    return (f"{run_dir / CONFIG} and {weights} disagree: {name} is {list(saved)} in the weights but "
            f"{list(built)} in the model that config.json builds ({len(mismatched)} tensor(s) differ). {blame}"
            "Restore config.json as training wrote it")


def load_checkpoint(path: Path, device: str | torch.device = "cpu", mmap: bool = False) -> dict:
    """checkpoint.pt as a dict of tensors and plain values. A file holding anything else (a pickle of other
    objects, a damaged file) is refused without running any of it, with a message that says so."""
    if path.exists() and not zipfile.is_zipfile(path):  # torch.save writes zip archives; a bare pickle is foreign
        raise RunError(f"{path}: not a genzoo checkpoint: it is not a torch archive of tensors, which is all genzoo "
                       "writes (nothing in it was run). Delete it and train the run again with --overwrite, or "
                       "restore the file from a copy")
    try:
        state = torch.load(path, map_location=device, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError:
        raise RunError(f"{path}: not a genzoo checkpoint: it holds objects other than tensors and plain values, "
                       "which genzoo never writes (nothing in it was run). Delete it and train the run again with "
                       "--overwrite, or restore the file from a copy") from None
    except (RuntimeError, EOFError) as e:  # a truncated or damaged zip archive
        raise RunError(f"{path}: not a readable genzoo checkpoint ({str(e).splitlines()[0]}): it is truncated or "
                       "damaged; delete it and train the run again with --overwrite, or restore it from a copy"
                       ) from None
    if not isinstance(state, dict) or "step" not in state or "model" not in state:
        raise RunError(f"{path}: not a genzoo checkpoint (no model state and step in it); delete it and train the "
                       "run again with --overwrite")
    return state


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
    line = json.dumps(record) + "\n"
    path = Path(run_dir) / METRICS_LOG
    try:
        with open(path, "a") as f:
            f.write(line)
    except OSError as e:
        if is_disk_full(e):
            raise disk_full(path, len(line.encode())) from None
        raise


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
