import gzip
import struct

import pytest
import torch

from genzoo.data import (
    DataError,
    binarize,
    fixed_binarization,
    load_data,
    load_idx_folder,
    read_idx_images,
    read_idx_labels,
)


def write_idx(folder, n_train=20, n_test=10, gz=False, **overrides):
    """Write the four MNIST files; overrides replace a file's bytes by name stem."""
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    files = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        pixels = torch.randint(0, 256, (n, 28, 28), generator=g, dtype=torch.uint8)
        labels = torch.randint(0, 10, (n,), generator=g, dtype=torch.uint8)
        files[f"{prefix}-images-idx3-ubyte"] = struct.pack(">iiii", 2051, n, 28, 28) + pixels.numpy().tobytes()
        files[f"{prefix}-labels-idx1-ubyte"] = struct.pack(">ii", 2049, n) + labels.numpy().tobytes()
    files.update(overrides)
    for stem, payload in files.items():
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(payload))
        else:
            (folder / stem).write_bytes(payload)
    return files


@pytest.mark.parametrize("gz", [False, True])
def test_idx_folder_round_trip(tmp_path, gz):
    files = write_idx(tmp_path, gz=gz)
    data = load_idx_folder(tmp_path)
    assert data.train_x.shape == (20, 1, 28, 28) and data.test_x.shape == (10, 1, 28, 28)
    assert data.train_x.dtype == torch.float32 and data.train_y.dtype == torch.int64
    raw = torch.frombuffer(bytearray(files["train-images-idx3-ubyte"][16:]), dtype=torch.uint8).float() / 255
    assert torch.equal(data.train_x.flatten(), raw)
    assert list(data.test_y) == list(files["t10k-labels-idx1-ubyte"][8:])


def test_bad_magic_names_file(tmp_path):
    write_idx(tmp_path, **{"train-images-idx3-ubyte": struct.pack(">iiii", 1234, 1, 28, 28) + bytes(784)})
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte: bad magic number 1234, expected 2051"):
        load_idx_folder(tmp_path)


def test_truncated_file(tmp_path):
    write_idx(tmp_path, **{"t10k-images-idx3-ubyte": struct.pack(">iiii", 2051, 10, 28, 28) + bytes(784 * 9)})
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte: wrong length: header says 10 images"):
        load_idx_folder(tmp_path)


def test_truncated_gzip(tmp_path):
    write_idx(tmp_path, gz=True)
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte.gz: cannot be read as gzip"):
        load_idx_folder(tmp_path)


def test_count_mismatch(tmp_path):
    write_idx(tmp_path, **{"train-labels-idx1-ubyte": struct.pack(">ii", 2049, 19) + bytes(19)})
    with pytest.raises(DataError, match=r"20 images but train-labels-idx1-ubyte has 19 labels"):
        load_idx_folder(tmp_path)


def test_label_out_of_range(tmp_path):
    write_idx(tmp_path, **{"t10k-labels-idx1-ubyte": struct.pack(">ii", 2049, 10) + bytes([1] * 9 + [12])})
    with pytest.raises(DataError, match=r"label 12 at index 9 is out of range 0..9"):
        read_idx_labels(tmp_path / "t10k-labels-idx1-ubyte")


def test_missing_file_and_unknown_name(tmp_path):
    with pytest.raises(DataError, match=r"no train-images-idx3-ubyte or train-images-idx3-ubyte.gz"):
        load_idx_folder(tmp_path)
    with pytest.raises(DataError, match=r"--data 'nosuch': no such folder, and not one of mnist, embedded"):
        load_data("nosuch")
    with pytest.raises(DataError, match="file not found"):
        read_idx_images(tmp_path / "absent")


def test_embedded_subset(embedded):
    assert embedded.train_x.shape == (4500, 1, 28, 28) and embedded.test_x.shape == (500, 1, 28, 28)
    assert 0 <= embedded.train_x.min() and embedded.train_x.max() <= 1
    assert torch.bincount(embedded.test_y).tolist() == [50] * 10
    # the classes in turn, so that the first digits of either split (pictures, --max-test) show every class
    assert embedded.test_y[:20].tolist() == list(range(10)) * 2 and embedded.train_y[:10].tolist() == list(range(10))
    # real digits: mostly dark background, a bright stroke
    assert 0.08 < embedded.train_x.mean() < 0.2 and embedded.train_x.max() == 1


def test_auto_falls_back_to_embedded_with_notice(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("GENZOO_DATA", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data = load_data("auto")
    assert data.name == "embedded" and data.spec == "embedded"
    assert "using the embedded 5,000-digit subset" in capsys.readouterr().err


def test_auto_finds_genzoo_data(monkeypatch, tmp_path):
    write_idx(tmp_path / "mnist", gz=True)
    monkeypatch.setenv("GENZOO_DATA", str(tmp_path))
    assert load_data("auto").name == "mnist" and len(load_data("mnist").train_x) == 20


def test_binarize_draws_bernoulli_pixels_of_the_intensities():
    # Each pixel is 1 with probability its intensity: over 20,000 draws of each of five intensities the
    # frequencies are within 5 standard errors of p; 0 and 1 stay 0 and 1; a seeded generator repeats its draws.
    p = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0])
    x = p.repeat(20_000, 1)  # (20000, 5)
    a = binarize(x, torch.Generator().manual_seed(0))
    assert a.dtype == x.dtype and set(a.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(a[:, 0], torch.zeros(20_000)) and torch.equal(a[:, 4], torch.ones(20_000))
    tolerance = 5 * (p * (1 - p) / 20_000).sqrt() + 1e-9
    assert ((a.mean(0) - p).abs() <= tolerance).all(), (a.mean(0), p)
    assert torch.equal(a, binarize(x, torch.Generator().manual_seed(0)))
    assert not torch.equal(a, binarize(x, torch.Generator().manual_seed(1)))


def test_fixed_binarization_is_seeded(embedded):
    x = embedded.test_x[:100]
    a, b = fixed_binarization(x), fixed_binarization(x)
    assert torch.equal(a, b) and set(a.unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(a, fixed_binarization(x, seed=1))
    assert abs(a.mean() - x.mean()) < 0.01  # Bernoulli(intensity) keeps the mean
