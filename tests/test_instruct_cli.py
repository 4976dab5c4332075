"""`genzoo edit`: image files of any size and mode become MNIST-like digits; the command writes its grid and its
guidance sweep; bad files, empty instructions and a run that is not an editor are one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import genzoo
from genzoo import commands
from genzoo.cli import main
from genzoo.data import DataError

TINY = {"widths": (8, 16), "res_blocks": 1, "attn_heads": 2, "timesteps": 50, "sample_steps": 2, "text_dim": 16,
        "text_layers": 1, "text_heads": 2, "trigram_buckets": 64}


@pytest.fixture(scope="module")
def editor_run(tiny, tmp_path_factory, one_thread):
    train = {"steps": 2, "epochs": 0, "batch_size": 8, "log_every": 1, "n_grid": 4, "sample_every": 0,
             "test_every": 0}
    return genzoo.train("instruct", data=tiny, out=tmp_path_factory.mktemp("edit") / "run", device="cpu", seed=0,
                        train_overrides=train, model_overrides=TINY, progress=False)


def write_digit(path, size=(90, 60), mode="RGB", light_background=True):
    """A dark bar on light paper (or the reverse), off-centre, as a user's photo might be."""
    ink, paper = (0, 255) if light_background else (255, 0)
    a = np.full(size[::-1], paper, np.uint8)
    a[10:50, 12:20] = ink  # (rows 10..49, columns 12..19): a 40 x 8 stroke
    Image.fromarray(a).convert(mode).save(path)
    return path


@pytest.mark.parametrize("suffix, mode, light", [(".png", "RGB", True), (".jpg", "L", True), (".png", "RGBA", False)])
def test_any_image_becomes_a_centred_white_on_black_digit(tmp_path, suffix, mode, light):
    digit = commands.load_digit(write_digit(tmp_path / f"d{suffix}", mode=mode, light_background=light))
    assert digit.shape == (1, 1, 28, 28) and digit.dtype == torch.float32
    assert digit.min() >= 0 and digit.max() <= 1 and digit.max() > 0.9
    a = digit[0, 0].numpy()
    rows, cols = np.nonzero(a > 0.5)
    assert rows.max() - rows.min() + 1 in (19, 20, 21)  # the long side scaled to 20 pixels
    mass = a.sum()
    cy, cx = (a.sum(1) @ np.arange(28)) / mass, (a.sum(0) @ np.arange(28)) / mass
    assert abs(cy - 13.5) <= 0.75 and abs(cx - 13.5) <= 0.75  # centred by mass, as MNIST
    assert a[0].max() < 0.05 and a[:, 0].max() < 0.05  # dark background


def test_files_that_are_not_digits_are_clear_errors(tmp_path):
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(DataError, match=r"notes.png: not an image Pillow can read"):
        commands.load_digit(tmp_path / "notes.png")
    with pytest.raises(DataError, match=r"missing.png: no such image file"):
        commands.load_digit(tmp_path / "missing.png")
    Image.fromarray(np.full((30, 30), 255, np.uint8)).save(tmp_path / "blank.png")
    with pytest.raises(DataError, match=r"blank.png: the image is blank"):
        commands.load_digit(tmp_path / "blank.png")


def test_edit_writes_a_grid_and_a_sweep(editor_run, tmp_path, capsys):
    image = write_digit(tmp_path / "mine.png")
    out = tmp_path / "grid.png"
    assert main(["edit", str(editor_run), "--image", str(image), "--test-index", "3", "--instruction", "mirror it",
                 "--instruction", "make it bold", "--steps", "2", "--device", "cpu", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out) and Image.open(out).size[0] > 200
    assert main(["edit", str(editor_run), "--digit-from-test", "0", "--instruction", "zoom out", "--sweep",
                 "--steps", "1", "--device", "cpu"]) == 0
    assert (editor_run / "edits" / "sweep_seed0.png").exists()
    a = commands.edit(editor_run, ["mirror it"], test_indices=[1], steps=2, out=tmp_path / "a.png", device="cpu")
    b = commands.edit(editor_run, ["mirror it"], test_indices=[1], steps=2, out=tmp_path / "b.png", device="cpu")
    assert a.read_bytes() == b.read_bytes()  # the same seed, the same picture


def test_edit_errors_are_one_line(editor_run, tmp_path, capsys):
    (tmp_path / "x.png").write_text("text")
    cases = [
        (["--image", str(tmp_path / "x.png"), "--instruction", "mirror it"], "x.png: not an image Pillow can read"),
        (["--test-index", "0", "--instruction", "  "], "--instruction '  ' is empty"),
        (["--instruction", "mirror it"], "give the digit(s) to edit: --image FILE or --test-index I"),
        (["--test-index", "100000", "--instruction", "mirror it"], "--test-index 100000: the run's test set has"),
        (["--test-index", "0", "--test-index", "1", "--instruction", "a", "--sweep"],
         "--sweep takes one digit (--image or --test-index) and one --instruction; got 2 and 1"),
    ]
    for extra, message in cases:
        assert main(["edit", str(editor_run), "--device", "cpu", *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("genzoo edit: error:") and message in err and "Traceback" not in err, (extra, err)


def test_semantic_pairs_share_their_noise_and_keep_what_the_evaluator_reads(tiny, tmp_path, editor_run, capsys):
    from safetensors.torch import load_file

    from genzoo.evaluation.evaluator import load_evaluator

    run = genzoo.train("ddpm", data=tiny, out=tmp_path / "ddpm", device="cpu", seed=0, progress=False,
                       train_overrides={"steps": 2, "epochs": 0, "batch_size": 8, "sample_every": 0, "test_every": 0},
                       model_overrides={"widths": (8, 16), "res_blocks": 1, "attn_heads": 2, "timesteps": 20,
                                        "sample_steps": 2})
    line = commands.semantic_pairs(run, tmp_path / "pairs", 12, threshold=0.2, steps=2, seed=3, batch=12,
                                   device="cpu")
    record = __import__("json").loads((tmp_path / "pairs" / "pairs.json").read_text())
    # an independent recomputation: the same seeds, the same x_T for both digits of each pair, the same filter
    model, evaluator = genzoo.load(run), load_evaluator("cpu")
    g = torch.Generator().manual_seed(3)
    sources = torch.randint(0, 10, (12,), generator=g)
    targets = (sources + torch.randint(1, 10, (12,), generator=g)) % 10
    options = {"sampler": "ddim", "eta": 0.0, "steps": 2, "guidance": 2.0}
    a = model.sample(12, y=sources, generator=torch.Generator().manual_seed(3 * 1_000_003), **options)
    b = model.sample(12, y=targets, generator=torch.Generator().manual_seed(3 * 1_000_003), **options)
    with torch.no_grad():
        pa, pb = torch.softmax(evaluator.logits(a), 1), torch.softmax(evaluator.logits(b), 1)
    keep = (pa[torch.arange(12), sources] >= 0.2) & (pb[torch.arange(12), targets] >= 0.2)
    assert record["made"] == 12 and record["kept"] == int(keep.sum()) and f"kept {int(keep.sum())}" in line
    saved = load_file(str(tmp_path / "pairs" / "pairs.safetensors"))
    assert torch.equal(saved["sources"], sources[keep]) and torch.equal(saved["targets"], targets[keep])
    torch.testing.assert_close(saved["inputs"], a[keep])
    torch.testing.assert_close(saved["outputs"], b[keep])
    assert (sources != targets).all() and len(record["instructions"]) == record["kept"]
    with pytest.raises(genzoo.models.base.CapabilityError, match="instruct: semantic pairs need a class-conditional"):
        commands.semantic_pairs(editor_run, tmp_path / "no", 2, device="cpu")
    # without guidance the label is ignored: both images of a pair come from one x_T, so they are the same image
    capsys.readouterr()
    commands.semantic_pairs(run, tmp_path / "same", 6, threshold=0.0, steps=2, guidance=0.0, seed=1, batch=4,
                            device="cpu")
    assert "semantic pairs: 100% 6/6 pair" in capsys.readouterr().err  # the progress counts every candidate drawn
    same = load_file(str(tmp_path / "same" / "pairs.safetensors"))
    assert len(same["inputs"]) == 6 and torch.equal(same["inputs"], same["outputs"])
