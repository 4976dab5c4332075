"""`genzoo edit RUN`: the editor's verb, its inputs (image files or test digits) and its figure of edits."""

from __future__ import annotations

from pathlib import Path

import torch

from .. import runs
from ..config import ConfigError
from ..data import load_data
from ..images import save_pictures
from ..models.base import CapabilityError, GenerativeModel
from ..training.devices import resolve_device
from .digits import load_digit


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
