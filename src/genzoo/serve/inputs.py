"""What `genzoo serve` accepts from the outside, checked before anything runs.

- Runs are the shipped models, named `pretrained:NAME` (read from the installed package, never
  written), and the run folders found by walking RUN_ROOT when one is given (symlinks are never
  followed), named by their folder relative to it; a request names one of those names or gets a
  404. No path a client sends is ever joined to a folder before that look-up, so `..`, absolute
  paths, symlinks that point out and URL-encoded variants of them cannot reach another file.
- Uploaded images: PNG or JPEG only, at most `MAX_IMAGE_BYTES` bytes and `MAX_IMAGE_SIDE` pixels a
  side (read from the header before the pixels are decoded), decoded in memory and never written.
- An image becomes a digit by `image_input.digit_from_image`, as in `genzoo edit --image`.
- A digit is handed to the models as 784 values in [0, 1] (28 x 28, row by row).
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError

from .. import pretrained, runs
from ..image_input import SIDE, BlankImageError, digit_from_image

MAX_IMAGE_BYTES = 2 * 1024 * 1024
MAX_IMAGE_SIDE = 2048
MIN_IMAGE_SIDE = 8
IMAGE_FORMATS = ("PNG", "JPEG")
RUN_DEPTH = 3  # RUN_ROOT/a/b/c/config.json is the deepest run found
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


class Catalog:
    """The runs the app serves, by name: the shipped models as `pretrained:NAME` (the manifest is read at every
    call, so a model shipped while the server runs appears), then the run folders under `root` when one is given.
    A folder under root named like a shipped model (`pretrained:...`) is left out: that name is the shipped one's."""

    def __init__(self, root: Path | None, *, shipped: bool = True):
        self.root = root
        self.shipped = shipped

    def describe(self) -> str:
        """What the page says it serves, e.g. "the shipped zoo (read-only) and genzoo-demo"."""
        zoo = "the shipped zoo (read-only)" if self.shipped else ""
        return " and ".join(part for part in (zoo, str(self.root) if self.root is not None else "") if part)

    def runs(self) -> dict[str, Path]:
        found = {pretrained.PREFIX + name: pretrained.ROOT / name for name in pretrained.names()} \
            if self.shipped else {}
        if self.root is not None:
            found.update({name: folder for name, folder in find_runs(self.root).items()
                          if not name.startswith(pretrained.PREFIX)})
        return found

    def folder(self, name: str) -> Path:
        """The folder of the run called `name`; a name that is not one of `runs()` is a 404."""
        folder = self.runs().get(name)
        if folder is None:
            raise InputError(f"no run named {name!r} in {self.describe()}; the names are the runs GET /api/runs "
                             "lists", 404)
        return folder

    def is_shipped(self, name: str) -> bool:
        return self.shipped and pretrained.is_pretrained(name)


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


def decode_image(data: bytes) -> Image.Image:
    """Bytes of a PNG or JPEG -> the decoded Pillow image, after checking its size and type."""
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
    return image


def upload_digit(data: bytes) -> torch.Tensor:
    """Bytes of a PNG or JPEG (an upload, or the page's canvas) -> the (1, 1, 28, 28) digit the models get, made
    by `image_input.digit_from_image` as for `genzoo edit --image`."""
    try:
        return digit_from_image(decode_image(data))
    except BlankImageError as e:
        raise InputError(f"{e}; draw one on the canvas or drop a picture of one") from None


def pixels_tensor(pixels: list[float]) -> torch.Tensor:
    """784 values in [0, 1], row by row -> (1, 1, 28, 28) float32."""
    if len(pixels) != SIDE * SIDE:
        raise InputError(f"pixels: {len(pixels)} values; a digit is {SIDE}x{SIDE} = {SIDE * SIDE} values in [0, 1]")
    bad = [i for i, v in enumerate(pixels) if not (math.isfinite(v) and 0.0 <= v <= 1.0)]
    if bad:
        raise InputError(f"pixels: value {pixels[bad[0]]!r} at index {bad[0]} ({len(bad)} in all) outside [0, 1]")
    return torch.tensor(pixels, dtype=torch.float32).view(1, 1, SIDE, SIDE)
