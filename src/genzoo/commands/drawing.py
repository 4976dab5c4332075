"""The drawing verbs: `genzoo sample`, `reverse-process`, `reconstruct`, `denoise`, `interpolate`, `complete`.

Each opens a run, asks the model what it can do (a capability flag, never its class), draws its pictures and
writes them into the run folder under a name that carries every setting that changes the picture. Samples are
drawn through `genzoo.sampling.sample_in_batches`, so memory stays bounded whatever -n is.
"""

from __future__ import annotations

import io
import os
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import runs
from ..config import ConfigError
from ..data import fixed_binarization, load_data, spread
from ..images import save_grid, save_pictures
from ..models.autoregressive import completion_rows, visible_mask
from ..models.base import CapabilityError
from ..models.dae import parse_noise
from ..models.ddpm import reverse_process_rows
from ..sampling import SAMPLE_BATCH, sample_in_batches
from ..training import progress
from ..training.devices import resolve_device


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
        return write_rows(frames, out or Path(run) / "samples" / output_name("chain", n=min(n, 16), seed=seed))
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


MAX_GRID = 10_000  # images in one PNG grid (100 x 100 digits, about 6,000 px square); more go to .npz


def draw_in_batches(model, n: int, label: int | None, generator: torch.Generator,
                    options: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """n samples drawn SAMPLE_BATCH at a time from one generator, kept as uint8 on the CPU (784 bytes each).

    Returns images (n, 1, 28, 28) uint8 in 0..255 and, for a conditional model, the digits drawn (n,).
    The model checks the label, n and the options (diffusion: guidance, steps, ...) on the first call.
    """
    labels = sample_labels(model, n, label)
    parts = []
    with progress.bar(n, f"{model.name}: sampling", "image", enabled=True, delay=2.0) as bar:
        for batch in sample_in_batches(model, n, labels=labels, generator=generator, options=options):
            parts.append(as_uint8(batch))
            bar.update(len(batch))
    return torch.cat(parts), labels


def as_uint8(images: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] as uint8 0..255 on the CPU, rounded: 784 bytes a digit."""
    return (images.float().clamp(0, 1) * 255).round().to(torch.uint8).cpu()


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
    with progress.bar(n, f"{model.name}: sampling", "image", enabled=True, delay=2.0) as bar:
        for batch in sample_in_batches(model, n, labels=labels, generator=generator, options=options):
            f.write(as_uint8(batch).numpy().tobytes())
            bar.update(len(batch))


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
    return write_rows(rows, out or Path(run) / "samples" / name)


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
    return write_rows(rows, out or Path(run) / output_name("reconstructions", n=n))


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
    return write_rows(rows, out or Path(run) / output_name("denoising", noise=noise_names, n=n, seed=seed))


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
    return write_rows(images, out or Path(run) / "samples" / name)


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
    return write_rows(rows, out or Path(run) / name)


def write_rows(rows: torch.Tensor, path: str | Path) -> Path:
    """Rows (R, C, 1, H, W) as one PNG at `path`, enlarged like every picture."""
    path = Path(path)
    (written,) = save_pictures({path.name: rows}, path.parent)
    return written
