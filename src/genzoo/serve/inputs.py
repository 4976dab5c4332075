"""What `genzoo serve` accepts from the outside, checked before anything runs.

- Runs are found by walking RUN_ROOT (symlinks are never followed) and named by their folder
  relative to it; a request names one of those names or gets a 404. No path a client sends is
  ever joined to RUN_ROOT before that look-up, so `..`, absolute paths, symlinks that point out
  and URL-encoded variants of them cannot reach a file outside RUN_ROOT.
- Uploaded images: PNG or JPEG only, at most `MAX_IMAGE_BYTES` bytes and `MAX_IMAGE_SIDE` pixels a
  side (read from the header before the pixels are decoded), decoded in memory and never written.
- A digit is handed to the models as 784 values in [0, 1] (28 x 28, row by row).
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .. import runs

MAX_IMAGE_BYTES = 2 * 1024 * 1024
MAX_IMAGE_SIDE = 2048
MIN_IMAGE_SIDE = 8
IMAGE_FORMATS = ("PNG", "JPEG")
RUN_DEPTH = 3  # RUN_ROOT/a/b/c/config.json is the deepest run found
SIDE = 28
# Report pictures a client may fetch from a run folder (never config, weights or checkpoints).
PICTURE_SUFFIXES = (".png", ".gif", ".jpg", ".jpeg")


class InputError(ValueError):
    """A request the server refuses; `status` is the HTTP status it answers with."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


# ---------------------------------------------------------------------------- runs under RUN_ROOT


def find_runs(root: Path) -> dict[str, Path]:
    """Every run folder under `root` (a folder holding config.json), by its name relative to root ("vae",
    "runs/vae"). Symlinked folders are not entered, hidden folders are skipped, and a folder whose real
    path leaves root is left out."""
    real_root = root.resolve()
    found: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(real_root, followlinks=False):
        here = Path(dirpath)
        depth = len(here.relative_to(real_root).parts)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and depth < RUN_DEPTH)
        if runs.CONFIG in filenames and here != real_root and here.resolve().is_relative_to(real_root):
            config = here / runs.CONFIG
            if not config.is_symlink():
                found[here.relative_to(real_root).as_posix()] = here
    return found


def run_folder(root: Path, name: str) -> Path:
    """The folder of the run called `name` under root; a name that is not one of `find_runs(root)` is a 404."""
    folder = find_runs(root).get(name)
    if folder is None:
        raise InputError(f"no run named {name!r} under {root}; the names are the folders GET /api/runs lists", 404)
    return folder


def run_picture(folder: Path, relative: str) -> Path:
    """A picture file inside a run folder, by its path relative to it (what the report lists)."""
    parts = Path(relative).parts
    if not relative or Path(relative).is_absolute() or ".." in parts or any(p.startswith(".") for p in parts):
        raise InputError(f"picture {relative!r}: give a path relative to the run folder, without '..'", 404)
    path = folder / relative
    real = path.resolve()
    if not real.is_relative_to(folder.resolve()) or path.is_symlink() or not real.is_file():
        raise InputError(f"no picture {relative!r} in this run", 404)
    if real.suffix.lower() not in PICTURE_SUFFIXES:
        raise InputError(f"{relative!r}: only pictures ({', '.join(PICTURE_SUFFIXES)}) are served from a run", 404)
    return real


# ---------------------------------------------------------------------------- images


def decode_image(data: bytes) -> np.ndarray:
    """Bytes of a PNG or JPEG -> a grey image (H, W) float32 in [0, 1], after checking size and type."""
    if len(data) == 0:
        raise InputError("the image is empty (0 bytes); send a PNG or JPEG file")
    if len(data) > MAX_IMAGE_BYTES:
        raise InputError(f"the image has {len(data):,} bytes, more than the {MAX_IMAGE_BYTES:,} allowed; "
                         "send a smaller PNG or JPEG", 413)
    try:
        image = Image.open(io.BytesIO(data))  # reads the header only
    except UnidentifiedImageError:
        raise InputError("the upload is not an image PIL can read; send a PNG or JPEG file") from None
    except Image.DecompressionBombError:
        raise InputError(f"the image header claims too many pixels; each side must be at most {MAX_IMAGE_SIDE}",
                         413) from None
    if image.format not in IMAGE_FORMATS:
        raise InputError(f"the image is {image.format}; send {' or '.join(IMAGE_FORMATS)}")
    width, height = image.size
    if max(width, height) > MAX_IMAGE_SIDE or min(width, height) < MIN_IMAGE_SIDE:
        raise InputError(f"the image is {width}x{height} pixels; each side must lie in "
                         f"{MIN_IMAGE_SIDE}..{MAX_IMAGE_SIDE}", 413 if max(width, height) > MAX_IMAGE_SIDE else 422)
    try:
        image.load()
    except (OSError, ValueError, Image.DecompressionBombError) as e:  # truncated or malformed pixel data
        raise InputError(f"the {image.format} image is truncated or malformed ({e}); send the whole file") from None
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        # A transparent drawing: ink is where alpha is; the page's canvas is drawn opaque, a dropped PNG may not be.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return np.asarray(image.convert("L"), dtype=np.float32) / 255.0


def to_mnist(grey: np.ndarray) -> torch.Tensor:
    """A grey picture of one digit (H, W) in [0, 1] -> the (1, 1, 28, 28) input the models get.

    MNIST's own recipe (LeCun et al. 1998): ink is white on black (a light background is inverted),
    the digit's bounding box is scaled to fit 20 x 20 keeping its aspect ratio, and placed in a
    28 x 28 frame with its centre of mass at the centre. A blank picture stays blank.
    """
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    ink = 1.0 - grey if border.mean() > 0.5 else grey
    ink = np.clip((ink - 0.1) / 0.9, 0, 1)  # JPEG ringing and paper grain below 10% are background
    rows, cols = np.nonzero(ink > 0.05)
    out = np.zeros((SIDE, SIDE), dtype=np.float32)
    if len(rows) == 0:
        return torch.from_numpy(out)[None, None]
    box = ink[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    scale = 20.0 / max(box.shape)
    h, w = max(1, round(box.shape[0] * scale)), max(1, round(box.shape[1] * scale))
    small = np.asarray(Image.fromarray((box * 255).astype(np.uint8)).resize((w, h), Image.LANCZOS),
                       dtype=np.float32) / 255.0
    total = small.sum()
    if total <= 0:
        return torch.from_numpy(out)[None, None]
    cy = (small.sum(1) * np.arange(h)).sum() / total
    cx = (small.sum(0) * np.arange(w)).sum() / total
    top, left = round(SIDE / 2 - 0.5 - cy), round(SIDE / 2 - 0.5 - cx)
    top, left = min(max(top, 0), SIDE - h), min(max(left, 0), SIDE - w)
    out[top:top + h, left:left + w] = small
    return torch.from_numpy(np.clip(out, 0, 1))[None, None]


def pixels_tensor(pixels: list[float]) -> torch.Tensor:
    """784 values in [0, 1], row by row -> (1, 1, 28, 28) float32."""
    if len(pixels) != SIDE * SIDE:
        raise InputError(f"pixels: {len(pixels)} values; a digit is {SIDE}x{SIDE} = {SIDE * SIDE} values in [0, 1]")
    bad = [i for i, v in enumerate(pixels) if not (math.isfinite(v) and 0.0 <= v <= 1.0)]
    if bad:
        raise InputError(f"pixels: value {pixels[bad[0]]!r} at index {bad[0]} ({len(bad)} in all) outside [0, 1]")
    return torch.tensor(pixels, dtype=torch.float32).view(1, 1, SIDE, SIDE)
