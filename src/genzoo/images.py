"""Image files: sample grids as PNG, and animations as GIF (Pillow only, no torchvision).

Every picture is encoded in memory first and written by `runs.write_atomic`: whole or not at all (a reader such as
the app never sees half a PNG while a run trains), and a full disk ends in one line naming the file and its size.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .runs import write_atomic


def grid(images: torch.Tensor, nrow: int | None = None, padding: int = 2, pad_value: float = 0.5) -> np.ndarray:
    """Tile (N, 1, H, W) images in [0, 1] into one uint8 (rows*H', cols*W') array, `nrow` per row."""
    images = images.detach().float().cpu().clamp(0, 1)
    n, _, h, w = images.shape
    ncol = nrow or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncol)
    canvas = np.full((nrows * (h + padding) + padding, ncol * (w + padding) + padding), pad_value, np.float32)
    for i in range(n):
        r, c = divmod(i, ncol)
        top, left = padding + r * (h + padding), padding + c * (w + padding)
        canvas[top : top + h, left : left + w] = images[i, 0].numpy()
    return (canvas * 255).round().astype(np.uint8)


def _atomic_save(image: Image.Image, path: Path, **kwargs) -> None:
    buffer = io.BytesIO()
    image.save(buffer, format=path.suffix.lstrip(".").upper() or "PNG", **kwargs)
    write_atomic(path, buffer.getbuffer())


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None, scale: int = 2) -> Path:
    """Write images (N, 1, H, W) in [0, 1] as a PNG grid, enlarged `scale` times (nearest)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(grid(images, nrow))
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    _atomic_save(image, path)
    return path


def save_rows(rows: list[torch.Tensor], path: str | Path, scale: int = 2) -> Path:
    """Write several equal-length rows of images (e.g. clean / noisy / denoised) one above the other."""
    ncol = len(rows[0])
    return save_grid(torch.cat(rows), path, nrow=ncol, scale=scale)


# Pictures at most this many images wide are enlarged twice (nearest) so that digits are visible; wider ones,
# such as a 20 x 20 latent manifold, are already large and keep their own size.
ENLARGE_UP_TO_COLUMNS = 16


def save_pictures(pictures: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """Write a model's `pictures(data)` into `out_dir`: the one place where pictures become files.

    Args:
        pictures: {file name relative to out_dir: (rows, columns, 1, H, W) images in [0, 1], or a matplotlib
            Figure (saved at its own dpi)}.
        out_dir: the run folder (or any folder).
    Returns:
        The paths written, in the dict's order.
    """
    paths = []
    for name, picture in pictures.items():
        path = Path(out_dir) / name
        if isinstance(picture, torch.Tensor):
            if picture.dim() != 5:
                raise ValueError(
                    f"{name}: a picture is (rows, columns, 1, H, W) images, got shape {tuple(picture.shape)}"
                )
            scale = 2 if picture.shape[1] <= ENLARGE_UP_TO_COLUMNS else 1
            paths.append(save_rows(list(picture), path, scale=scale))
        else:  # a matplotlib Figure
            paths.append(save_figure(picture, path, bbox_inches="tight"))
    return paths


def save_figure(figure: Any, path: str | Path, **savefig: Any) -> Path:
    """Write a matplotlib Figure (`savefig`'s options, e.g. dpi) in the format of `path`'s suffix, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    figure.savefig(buffer, format=path.suffix.lstrip(".") or "png", **savefig)
    write_atomic(path, buffer.getbuffer())
    return path


def save_gif(frames: list[str | Path], path: str | Path, ms_per_frame: int = 400) -> Path:
    """Combine PNG files (same size) into a looping GIF, the last frame held longer."""
    path = Path(path)
    images = [Image.open(f).convert("L") for f in frames]
    if not images:
        raise ValueError(f"{path}: no frames to animate")
    durations = [ms_per_frame] * (len(images) - 1) + [ms_per_frame * 4]
    _atomic_save(images[0], path, save_all=True, append_images=images[1:], duration=durations, loop=0)
    return path
