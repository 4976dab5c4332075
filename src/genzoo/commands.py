"""Run-level commands: what each `genzoo` verb does, as library functions the CLI calls in one line.

Each function takes typed arguments (the CLI parses strings), opens the run folder it is given,
asks the model for tensors or figures, and writes the files; it returns what the CLI prints
(a path, or a text). Models never import this module: they compute, this module writes.
"""

from __future__ import annotations

import io
import json
import os
import re
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import pretrained, recipes, registry, runs
from .config import ConfigError, field_types, parse_sets, parse_value
from .data import DataError, fixed_binarization, load_data, spread
from .defaults import EVALUATE_BUDGET
from .evaluate import evaluate_run
from .image_input import BlankImageError, digit_from_image
from .images import save_grid, save_pictures
from .mixture import GaussianMixture
from .models.autoregressive import completion_rows, visible_mask
from .models.base import CapabilityError, GenerativeModel
from .models.dae import parse_noise
from .models.ddpm import reverse_process_rows
from .train_config import TrainConfig
from .trainer import train as train_model
from .trainer import train_or_resume
from .training import TrainingError, progress
from .training.devices import resolve_device


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


def _finished(run_dir: Path) -> bool:
    """Whether a run folder holds a run that ended on its own length (not cut by a budget or a signal)."""
    ends = [r for r in runs.read_metrics_log(run_dir) if r.get("event") == "end"] if run_dir.exists() else []
    return bool(ends) and not ends[-1].get("stopped")


def output_name(stem: str, suffix: str = ".png", **settings: Any) -> str:
    """A default output file name that carries the settings that make its content differ.

    `output_name("sample", n=64, seed=0, label=3)` -> "sample_n64_seed0_label3.png"; settings that are
    None are left out, so two commands that draw different pictures never write the same file.
    """
    parts = [stem]
    for key, value in settings.items():
        if value is None:
            continue
        text = format(value, "g") if isinstance(value, float) else str(value)
        parts.append(f"{key}{re.sub(r'[^A-Za-z0-9.+-]+', '-', text)}")
    return "_".join(parts) + suffix


def sample(run: str | Path, n: int = 64, *, label: int | None = None, seed: int = 0, out: str | Path | None = None,
           device: str = "auto", chain: bool = False, **sampling: Any) -> Path:
    """`genzoo sample RUN`: a grid of n samples, of one digit with `label` (conditional models).

    A conditional model without `label` draws the default layout, one digit per row of 10. The images
    are drawn SAMPLE_BATCH at a time, so memory stays bounded whatever n is; a grid holds at most
    MAX_GRID images, and an `out` ending in .npz gets any number of them as uint8 arrays instead.
    Writes `out` (default RUN/samples/sample_n<N>_seed<S>[_label<L>][_<option><value>...].png: every setting
    that changes the picture is in its name) and returns its path. With `chain` (a dae run): min(n, 16)
    Markov chains from noise, one a row, at the steps of `chain_snapshots` (Bengio et al. 2013), written to
    RUN/samples/chain_n<N>_seed<S>.png by default.
    """
    to_npz = out is not None and str(out).endswith((".npz", ".npy"))
    if not chain and not to_npz and n > MAX_GRID:
        raise ConfigError(f"-n {n}: a PNG grid holds at most {MAX_GRID:,} images; for more, write them as arrays "
                          f"with --out FILE.npz (drawn {SAMPLE_BATCH:,} at a time, {n * 784 / 1e6:,.0f} MB as uint8)")
    model = runs.load(run, resolve_device(device))
    if chain:
        if not model.can_denoise:
            raise CapabilityError(f"{model.name}: --chain alternates corruption and denoising; it needs a dae run")
        if label is not None:
            raise CapabilityError(f"{model.name}: is unconditional, --chain draws no chosen digit; drop --label")
        frames = model.markov_chain(min(n, 16), model.chain_snapshots(), torch.Generator().manual_seed(seed))
        return _write_rows(frames, out or Path(run) / "samples" / output_name("chain", n=min(n, 16), seed=seed))
    options = given(sampling)
    if to_npz:
        return stream_arrays(model, n, label, torch.Generator().manual_seed(seed), options, Path(out))
    images, labels = draw_in_batches(model, n, label, torch.Generator().manual_seed(seed), options)
    path = Path(out or Path(run) / "samples" / output_name("sample", n=n, seed=seed, label=label, **options))
    return save_grid(images, path, nrow=10 if model.conditional and label is None else None)


MAX_COLUMNS = 100  # digits in a row of a row picture (reconstructions, denoising, completions, paths)


def check_picture(**counts: int) -> None:
    """Row pictures hold every image at once: refuse sizes beyond MAX_COLUMNS before any work, naming the flag."""
    for flag, count in counts.items():
        if count > MAX_COLUMNS:
            option = "-n" if flag == "n" else f"--{flag.replace('_', '-')}"
            raise ConfigError(f"{option} {count}: a row picture shows at most {MAX_COLUMNS} images "
                              f"a row or column; give {MAX_COLUMNS} or fewer (`genzoo sample -n N --out FILE.npz` "
                              "writes any number of samples)")


SAMPLE_BATCH = 1000  # images per `model.sample` call of the commands: memory bounded whatever -n is
MAX_GRID = 10_000  # images in one PNG grid (100 x 100 digits, about 6,000 px square); more go to .npz


def draw_in_batches(model, n: int, label: int | None, generator: torch.Generator,
                    options: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """n samples drawn SAMPLE_BATCH at a time from one generator, kept as uint8 on the CPU (784 bytes each).

    Returns images (n, 1, 28, 28) uint8 in 0..255 and, for a conditional model, the digits drawn (n,).
    The model checks the label, n and the options (diffusion: guidance, steps, ...) on the first call.
    """
    labels = sample_labels(model, n, label)
    parts = []
    with torch.no_grad(), progress.bar(n, f"{model.name}: sampling", "image", enabled=True, delay=2.0) as bar:
        for first in range(0, n, SAMPLE_BATCH):
            size = min(SAMPLE_BATCH, n - first)
            y = labels[first:first + size].to(model.device) if labels is not None else None
            batch = model.sample(size, y=y, generator=generator, **options)
            parts.append((batch.float().clamp(0, 1) * 255).round().to(torch.uint8).cpu())
            bar.update(size)
    return torch.cat(parts), labels


def sample_labels(model, n: int, label: int | None) -> torch.Tensor | None:
    """The digits a conditional model is asked for: `label` n times, or its default layout; None if unconditional."""
    if model.conditional:
        return torch.full((n,), label, dtype=torch.long) if label is not None else model.default_labels(n).cpu()
    if label is not None:
        model.check_labels(n, label)  # the model's own message: it cannot draw a chosen digit
    return None


def stream_arrays(model, n: int, label: int | None, generator: torch.Generator, options: dict[str, Any],
                  path: Path) -> Path:
    """n samples written as they are drawn, SAMPLE_BATCH at a time, so that memory does not grow with n.

    FILE.npz: "images" (n, 28, 28) uint8 and, for a conditional model, "labels" (n,) int64, deflated.
    FILE.npy: the images alone; a conditional model's labels go beside it to FILE.labels.npy.
    The same draws as `draw_in_batches`. Written under a hidden name and renamed at the end (a kill leaves no
    half file); a full disk ends in one line that names the file and the space it needed.
    """
    labels = sample_labels(model, n, label)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    done = []
    try:
        if path.suffix == ".npz":
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
                if labels is not None:
                    with archive.open("labels.npy", "w", force_zip64=True) as f:
                        np.lib.format.write_array_header_1_0(f, npy_header(labels.numpy().dtype, (n,)))
                        f.write(labels.numpy().tobytes())
                with archive.open("images.npy", "w", force_zip64=True) as f:
                    _stream_images(model, n, labels, generator, options, f)
        else:
            with open(tmp, "wb") as f:
                _stream_images(model, n, labels, generator, options, f)
            if labels is not None:
                side = path.with_name(f"{path.stem}.labels.npy")
                runs.write_atomic(side, npy_bytes(labels.numpy()))
                done.append(side)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if runs.is_disk_full(e):
            raise runs.disk_full(path, n * 784 + (n * 8 if labels is not None else 0)) from None
        raise
    return path


def npy_header(dtype: np.dtype, shape: tuple[int, ...]) -> dict[str, Any]:
    return {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _stream_images(model, n: int, labels: torch.Tensor | None, generator: torch.Generator,
                   options: dict[str, Any], f) -> None:
    """The .npy of n images (n, 28, 28) uint8 into the open binary file f, a batch at a time."""
    np.lib.format.write_array_header_1_0(f, npy_header(np.uint8, (n, 28, 28)))
    with torch.no_grad(), progress.bar(n, f"{model.name}: sampling", "image", enabled=True, delay=2.0) as bar:
        for first in range(0, n, SAMPLE_BATCH):
            size = min(SAMPLE_BATCH, n - first)
            y = labels[first:first + size].to(model.device) if labels is not None else None
            batch = model.sample(size, y=y, generator=generator, **options)
            f.write((batch.float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy().tobytes())
            bar.update(size)


def reverse_process(run: str | Path, n: int = 4, *, columns: int = 10, label: int | None = None, seed: int = 0,
                    out: str | Path | None = None, device: str = "auto", **sampling: Any) -> Path:
    """`genzoo reverse-process RUN`: rows of x_T ... x_0 (`columns` states), one digit per row, of a diffusion run.

    Writes `out` (default RUN/samples/reverse_process_n<N>_columns<C>_seed<S>[...].png) and returns its path.
    """
    check_picture(n=n, columns=columns)
    model = runs.load(run, resolve_device(device))
    if not model.has_reverse_process:
        raise CapabilityError(f"{model.name}: has no reverse process to draw; use a ddpm run")
    y = None if label is None else model.check_labels(n, label)
    rows = reverse_process_rows(model, n, columns, y, torch.Generator().manual_seed(seed), **given(sampling))
    name = output_name("reverse_process", n=n, columns=columns, seed=seed, label=label, **given(sampling))
    return _write_rows(rows, out or Path(run) / "samples" / name)


def given(options: dict[str, Any]) -> dict[str, Any]:
    """The sampling options a caller set (the CLI passes None for a flag left out); the model checks them."""
    return {key: value for key, value in options.items() if value is not None}


def _test_images(run: str | Path, n: int) -> torch.Tensor:
    """n test digits spread evenly over the run's test set (so a set stored class by class shows every digit)."""
    return spread(load_data(runs.read_config(run)["data"], verbose=False).test_x, n)


def reconstruct(run: str | Path, n: int = 16, *, out: str | Path | None = None, device: str = "auto") -> Path:
    """`genzoo reconstruct RUN`: n test digits (top row) above their reconstructions; RUN/reconstructions_n<N>.png
    by default (training's own reconstructions.png is kept)."""
    check_picture(n=n)
    model = runs.load(run, resolve_device(device))
    if not model.can_reconstruct:
        raise CapabilityError(f"{model.name}: is not an autoencoder, it cannot reconstruct; use an ae, dae or vae run")
    rows = model.reconstruction_rows(_test_images(run, n))
    return _write_rows(rows, out or Path(run) / output_name("reconstructions", n=n))


def denoise(run: str | Path, noises: list[str] | None = None, n: int = 12, *, seed: int = 0,
            out: str | Path | None = None, device: str = "auto") -> Path:
    """`genzoo denoise RUN`: rows clean / noisy / denoised for each noise ("gaussian:0.5", ...; default three).

    Writes `out` (default RUN/denoising_<kind><level>..._n<N>_seed<S>.png, so training's denoising.png and
    other noises' pictures are kept) and returns its path.
    """
    check_picture(n=n)
    model = runs.load(run, resolve_device(device))
    if not model.can_denoise:
        raise CapabilityError(f"{model.name}: is not a denoising autoencoder; train a `dae` run")
    parsed = [parse_noise(text) for text in noises] if noises else None
    rows = model.denoising_rows(_test_images(run, n), parsed, torch.Generator().manual_seed(seed))
    noise_names = "+".join(f"{kind}{level:g}" for kind, level in parsed) if parsed else "default"
    return _write_rows(rows, out or Path(run) / output_name("denoising", noise=noise_names, n=n, seed=seed))


def interpolate(run: str | Path, out: str | Path | None = None, *, steps: int = 10, label: int | None = None,
                rows: int = 4, seed: int = 0, device: str = "auto") -> Path:
    """`genzoo interpolate RUN`: rows of images along straight latent paths of a gan, cgan, dcgan or vae.

    Args:
        out: PNG path; RUN/samples/interpolation_steps<S>_rows<R>_seed<S>[_label<L>].png by default.
        steps: images per row, end points included; label: the digit of every row (conditional models;
            default one row per digit); rows: independent paths; seed: seeds the end points.
    Raises:
        ConfigError: steps < 2, rows < 1 or a label outside 0..9.
        CapabilityError: the run's model has no latent space to walk, or a label for an unconditional one.
    """
    if steps < 2 or rows < 1:
        raise ConfigError(f"--steps {steps} --rows {rows}: need at least 2 steps and 1 row")
    if label is not None and not 0 <= label <= 9:
        raise ConfigError(f"--label {label}: must be a digit 0..9")
    check_picture(steps=steps, rows=rows)
    model = runs.load(run, resolve_device(device))
    if not model.can_interpolate:
        raise CapabilityError(f"{model.name}: has no latent space to walk; use a vae, gan, cgan or dcgan run")
    images = model.interpolation(steps, label=label, rows=rows, generator=torch.Generator().manual_seed(seed))
    name = output_name("interpolation", steps=steps, rows=rows, seed=seed, label=label)
    return _write_rows(images, out or Path(run) / "samples" / name)


def complete(run: str | Path, hide: str = "bottom-half", n: int = 10, *, completions: int = 4, seed: int = 0,
             out: str | Path | None = None, data: str | None = None, device: str = "auto") -> Path:
    """`genzoo complete RUN --hide ...`: complete the first n test digits of the run's data (pixel models).

    The digits are binarized with the fixed evaluation draw (`data.FIXED_BINARIZATION`). Writes
    `out` (default RUN/completions-<hide>_n<N>_completions<C>_seed<S>.png; training's completions-<hide>.png
    is kept): rows original / visible / one per completion.
    """
    visible_mask(hide)  # check --hide before loading anything
    check_picture(n=n, completions=completions)
    model = runs.load(run, resolve_device(device))
    if not model.can_complete:
        raise CapabilityError(f"{model.name}: cannot complete digits; use a pixelcnn or pixelrnn run")
    dataset = load_data(data or runs.read_config(run)["data"], verbose=False)
    x = fixed_binarization(dataset.test_x[:n]).to(model.device)
    y = dataset.test_y[:n].to(model.device) if model.conditional else None
    rows = completion_rows(model, x, hide, completions, y, torch.Generator().manual_seed(seed))
    name = output_name(f"completions-{hide}", n=n, completions=completions, seed=seed)
    return _write_rows(rows, out or Path(run) / name)


# ---------------------------------------------------------------------------- the editor


def load_digit(path: str | Path) -> torch.Tensor:
    """A PNG, JPEG or any image Pillow reads, of any size and mode, as a (1, 1, 28, 28) MNIST-like digit in [0, 1].

    `image_input.digit_from_image` makes it, as it does for the web app's uploads: white ink on black, the ink's
    box scaled to fit 20 x 20, its centre of mass at the frame's centre. A file that is not an image, or a
    blank one, is a DataError naming the file.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such image file")
    try:
        with Image.open(path) as image:
            image.load()
            return digit_from_image(image)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: not an image Pillow can read ({e}); give a PNG or JPEG of a digit") from None
    except BlankImageError as e:
        raise DataError(f"{path}: {e}; give a PNG or JPEG of a digit") from None


def _editor(run: str | Path, device: str) -> GenerativeModel:
    model = runs.load(run, resolve_device(device))
    if not model.can_edit:
        raise CapabilityError(f"{model.name}: is not an editor; `genzoo edit` needs an instruct run")
    return model


def _edit_inputs(run: str | Path, images: list[str] | None, test_indices: list[int] | None) -> torch.Tensor:
    if not images and not test_indices:
        raise ConfigError("give the digit(s) to edit: --image FILE or --test-index I (repeatable)")
    loaded = [load_digit(path) for path in images or []]
    if test_indices:
        test_x = load_data(runs.read_config(run)["data"], verbose=False).test_x
        for i in test_indices:
            if not 0 <= i < len(test_x):
                raise ConfigError(f"--test-index {i}: the run's test set has digits 0..{len(test_x) - 1}")
            loaded.append(test_x[i:i + 1])
    return torch.cat(loaded)


def edit(run: str | Path, instructions: list[str], *, images: list[str] | None = None,
         test_indices: list[int] | None = None, image_guidance: float | None = None,
         text_guidance: float | None = None, steps: int | None = None, sweep: bool = False, seed: int = 0,
         out: str | Path | None = None, device: str = "auto") -> Path:
    """`genzoo edit RUN --instruction T`: edit each digit (image files, then test digits) by each instruction.

    Writes `out` (default RUN/edits/edit_seedS.png): one row per input digit, the input then one edit per
    instruction, the instructions over the columns; returns its path. With `sweep`: `edit_sweep` of the one
    digit and the one instruction given.
    """
    if not instructions:
        raise ConfigError("give at least one --instruction, e.g. --instruction 'mirror it'")
    if sweep:
        if len(instructions) != 1 or len(images or []) + len(test_indices or []) != 1:
            raise ConfigError("--sweep takes one digit (--image or --test-index) and one --instruction; got "
                              f"{len(images or []) + len(test_indices or [])} and {len(instructions)}")
        return edit_sweep(run, instructions[0], image=(images or [None])[0],
                          test_index=(test_indices or [None])[0], steps=steps, seed=seed, out=out, device=device)
    for text in instructions:
        if not text.strip():
            raise ConfigError(f"--instruction {text!r} is empty; say what to do, e.g. 'make it thicker'")
    model = _editor(run, device)
    x = _edit_inputs(run, images, test_indices).to(model.device)  # (N, 1, 28, 28)
    n, m = len(x), len(instructions)
    edited = model.edit(x.repeat_interleave(m, 0), instructions * n, image_guidance=image_guidance,
                        text_guidance=text_guidance, steps=steps, generator=torch.Generator().manual_seed(seed))
    cells = torch.cat([x[:, None], edited.view(n, m, *x.shape[1:])], dim=1)  # (N, 1 + M, 1, 28, 28)
    settings = model.edit_settings(image_guidance, text_guidance, steps)
    title = f"s_I {settings['image_guidance']:g}, s_T {settings['text_guidance']:g}, DDIM {settings['steps']} steps"
    figure = grid_figure(cells, ["input", *instructions], title)
    (path,) = save_pictures({Path(out).name if out else f"edit_seed{seed}.png": figure},
                            Path(out).parent if out else Path(run) / "edits")
    return path


def edit_sweep(run: str | Path, instruction: str, *, image: str | None = None, test_index: int | None = None,
               image_scales: list[float] | None = None, text_scales: list[float] | None = None,
               steps: int | None = None, seed: int = 0, out: str | Path | None = None, device: str = "auto") -> Path:
    """`genzoo edit RUN --sweep`: one digit and one instruction under a grid of guidance scales, the image scale
    s_I down and the text scale s_T across, as in Brooks et al.'s figure 4, from the same noise.

    Writes `out` (default RUN/edits/sweep_seedS.png) and returns its path.
    """
    if not instruction.strip():
        raise ConfigError(f"--instruction {instruction!r} is empty; say what to do, e.g. 'make it thicker'")
    image_scales = image_scales or [0.0, 1.0, 1.5, 2.0, 3.0]
    text_scales = text_scales or [0.0, 1.0, 3.0, 5.0, 7.5]
    model = _editor(run, device)
    x = _edit_inputs(run, [image] if image else None, [test_index] if test_index is not None else None)[:1]
    rows = []
    for s_i in image_scales:
        row = [model.edit(x, [instruction], image_guidance=s_i, text_guidance=s_t, steps=steps,
                          generator=torch.Generator().manual_seed(seed)) for s_t in text_scales]
        rows.append(torch.cat([x.to(model.device), *row])[:, None])  # (1 + T, 1, 1, 28, 28)
    cells = torch.cat(rows, dim=1).transpose(0, 1)  # (I, 1 + T, 1, 28, 28)
    headers = ["input", *(f"s_T {s:g}" for s in text_scales)]
    figure = grid_figure(cells, headers, f"{instruction!r}: image guidance s_I down, text guidance s_T across",
                         [f"s_I {s:g}" for s in image_scales])
    (path,) = save_pictures({Path(out).name if out else f"sweep_seed{seed}.png": figure},
                            Path(out).parent if out else Path(run) / "edits")
    return path


def semantic_pairs(ddpm_run: str | Path, out: str | Path, n: int = 1000, *, threshold: float = 0.9,
                   steps: int = 50, guidance: float = 2.0, seed: int = 0, batch: int = 250,
                   device: str = "auto") -> str:
    """`genzoo semantic-pairs DDPM_RUN --out DIR`: candidate semantic edits ("turn this 3 into an 8") from a
    class-conditional diffusion run, filtered by the evaluator (`genzoo.models.instruct.pairs`: a pair is kept
    when the evaluator reads the source digit in the first image and the target digit in the second, each with
    probability >= threshold). Writes DIR/pairs.safetensors (inputs, outputs, sources, targets), DIR/pairs.json
    (counts, settings, instructions) and DIR/pairs.png (the first 16 kept pairs); returns a line with how many
    were made and kept.
    """
    from safetensors.torch import save_file

    from .evaluator import load_evaluator
    from .models.instruct.pairs import check_request, make_semantic_pairs

    model = runs.load(ddpm_run, resolve_device(device))
    check_request(model, n, threshold)
    made = make_semantic_pairs(model, load_evaluator(model.device), n, threshold=threshold, steps=steps,
                               guidance=guidance, seed=seed, batch=batch)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file(made.tensors, str(out / "pairs.safetensors"))
    record = {"ddpm_run": str(ddpm_run), "made": n, "kept": made.kept, "threshold": threshold,
              "sampling": made.sampling, "seed": seed, "instructions": made.instructions}
    runs.atomic_write_text(out / "pairs.json", json.dumps(record, indent=2) + "\n")
    if made.kept:
        shown = min(16, made.kept)
        _write_rows(torch.stack([made.tensors["inputs"][:shown], made.tensors["outputs"][:shown]]),
                    out / "pairs.png")
    return f"made {n} candidate pairs, kept {made.kept} (evaluator probability >= {threshold:g} for both)" \
           f"; written to {out}"


def grid_figure(cells: torch.Tensor, headers: list[str], title: str, row_labels: list[str] | None = None):
    """A Figure of (R, C, 1, 28, 28) images, `headers` over the columns (wrapped), `row_labels` to the left,
    `title` above."""
    import textwrap

    from matplotlib.figure import Figure  # optional heavy dependency, only for this picture

    r, c = cells.shape[:2]
    left = 0.8 if row_labels else 0.0  # inches for the row labels
    fig = Figure(figsize=(1.3 * c + left, 1.3 * r + 0.7), dpi=100)
    canvas = torch.ones(r * 30 + 2, c * 30 + 2)
    for i in range(r):
        for j in range(c):
            canvas[2 + 30 * i:30 * (i + 1), 2 + 30 * j:30 * (j + 1)] = cells[i, j, 0].detach().float().cpu()
    share = left / (1.3 * c + left)
    ax = fig.add_axes((share, 0, 1 - share, r / (r + 0.55)))
    ax.imshow(canvas.numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    for j, header in enumerate(headers):
        lines = textwrap.wrap(header, 16)
        lines = lines[:3] + (["..."] if len(lines) > 3 else [])
        ax.text(16 + 30 * j, -1, "\n".join(lines), fontsize=7, ha="center", va="bottom")
    for i, label in enumerate(row_labels or []):
        ax.text(0, 16 + 30 * i, label + " ", fontsize=7, ha="right", va="center")
    fig.suptitle(title, fontsize=8, y=0.995)
    return fig


def _write_rows(rows: torch.Tensor, path: str | Path) -> Path:
    """Rows (R, C, 1, H, W) as one PNG at `path`, enlarged like every picture."""
    path = Path(path)
    (written,) = save_pictures({path.name: rows}, path.parent)
    return written


def evaluate(run: str | Path, *, as_json: bool = False, device: str = "auto", seed: int = 0,
             max_test: int | None = None, random_subset: bool | None = None, iwae_k: int | None = None,
             n_samples: int | None = None, guidance_sweep: list[float] | None = None, sweep_samples: int = 0,
             ais_betas: int | None = None, ais_runs: int | None = None, n_edits: int | None = None,
             budget: float | None = None, protocol: str | None = None, **sampling: Any) -> str:
    """`genzoo evaluate RUN`: every metric that applies, written to RUN/metrics.json; returns them as text
    (one line each, with standard errors and units) or as JSON. Each evaluation is kept in
    RUN/evaluations/<settings>.json, and metrics.json is the most complete of them (a quick look with
    --max-test never replaces a full evaluation). `sampling`: the model's sampling options
    (diffusion: guidance, steps, eta, sampler; None: the model's default); `guidance_sweep` scores each
    guidance weight too. `budget` (seconds) or `protocol="paper"` choose the settings not given
    (`evaluate.choose_settings`)."""
    if budget is None and protocol is None:
        budget = EVALUATE_BUDGET
    metrics = evaluate_run(run, device=device, seed=seed, max_test=max_test, random_subset=random_subset,
                           iwae_k=iwae_k, n_samples=n_samples, sample_options=given(sampling),
                           guidance_sweep=guidance_sweep, sweep_samples=sweep_samples, ais_betas=ais_betas,
                           ais_runs=ais_runs, n_edits=n_edits, budget=budget, protocol=protocol)
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


# ---------------------------------------------------------------------------- the 2-D mixture demo


def anisotropic_clusters(n_per_cluster: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Four stretched and rotated 2-D Gaussian clusters. Returns X (4n, 2) and labels (4n,)."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [6.0, 1.0], [2.0, 6.0], [8.0, 7.0]])
    transforms = [np.array([[2.0, 0.0], [1.2, 0.4]]), np.array([[0.5, -0.9], [0.2, 1.5]]),
                  np.array([[1.8, 0.6], [0.0, 0.3]]), np.eye(2) * 0.7]
    X = np.concatenate([rng.standard_normal((n_per_cluster, 2)) @ t + c for c, t in zip(centres, transforms)])
    return X, np.repeat(np.arange(len(centres)), n_per_cluster)


def mixture_figure(X: np.ndarray, gm: GaussianMixture, samples: np.ndarray):
    """A matplotlib Figure of 2-D data, each component's ellipses at 1 and 2 standard deviations, its mean,
    and samples from the fitted mixture `gm` (full covariances)."""
    import math

    from matplotlib.figure import Figure  # optional heavy dependency, only for this picture
    from matplotlib.patches import Ellipse

    fig = Figure(figsize=(7, 6), dpi=120)
    ax = fig.subplots()
    ax.scatter(X[:, 0], X[:, 1], s=6, c="0.6", label="data")
    ax.scatter(samples[:, 0], samples[:, 1], s=6, c="tab:red", marker="x", label="samples from the fit")
    for k, (mean, cov) in enumerate(zip(np.asarray(gm.means_), np.asarray(gm.covariances_))):
        eigvals, eigvecs = np.linalg.eigh(cov)
        angle = math.degrees(math.atan2(eigvecs[1, 1], eigvecs[0, 1]))
        for n_std, style in ((1, "-"), (2, "--")):
            w, h = 2 * n_std * np.sqrt(eigvals[::-1])
            ax.add_patch(Ellipse(mean, w, h, angle=angle, fill=False, lw=1.5, ls=style, color=f"C{k}"))
        ax.plot(*mean, "k+", ms=10)
    ax.set_title(f"Gaussian mixture by EM: {gm.n_components} components, {gm.n_iter_} iterations, "
                 f"log-lik {gm.lower_bound_:.3f}/point\nellipses at 1 (solid) and 2 (dashed) standard deviations")
    ax.set_aspect("equal")
    ax.legend(loc="upper left")
    return fig


def gmm_demo(out: str | Path = "gmm-demo", n_components: int = 4, seed: int = 0) -> Path:
    """`genzoo gmm-demo`: fit a full-covariance mixture to 2-D anisotropic clusters and plot it.

    Draws the data, each component's ellipses at 1 and 2 standard deviations, its mean, and
    400 fresh samples from the fit, in one figure `OUT/gmm_demo.png`; returns its path.
    """
    X, _ = anisotropic_clusters(seed=seed)
    gm = GaussianMixture(n_components, covariance_type="full", random_state=seed, n_init=3).fit(X)
    samples, _ = gm.sample(400, generator=torch.Generator().manual_seed(seed + 1))
    # the mixture answers in the type it was given (numpy here); np.asarray also takes a CPU tensor
    (path,) = save_pictures({"gmm_demo.png": mixture_figure(X, gm, np.asarray(samples))}, out)
    return path
