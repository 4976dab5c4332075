"""The triple generator: each operation against a plain re-computation, seeded reproducibility, held-out phrasings."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from genzoo.config import ConfigError
from genzoo.models.instruct import edits


@pytest.fixture(scope="module")
def digits(embedded):
    return embedded.train_x[::97][:24]  # a spread of classes


def test_quarter_turns_compose_and_flips_undo(digits):
    x = digits
    torch.testing.assert_close(edits.rotate90(edits.rotate90(x)), edits.rotate90(x, 2), rtol=0, atol=0)
    torch.testing.assert_close(edits.rotate90(x, 2), x.flip(-1).flip(-2), rtol=0, atol=0)  # 180 = both flips
    torch.testing.assert_close(edits.rotate90(edits.rotate90(x, -1)), x, rtol=0, atol=0)
    for axis in ("horizontal", "vertical"):
        torch.testing.assert_close(edits.flip(edits.flip(x, axis), axis), x, rtol=0, atol=0)
    a = np.asarray(x[3, 0])
    np.testing.assert_array_equal(edits.flip(x, "horizontal")[3, 0].numpy(), a[:, ::-1])
    np.testing.assert_array_equal(edits.flip(x, "vertical")[3, 0].numpy(), a[::-1, :])
    # counter-clockwise on screen: the top row becomes the left column, read bottom to top
    np.testing.assert_array_equal(edits.rotate90(x)[3, 0, :, 0].numpy(), a[0, ::-1])


def test_bilinear_rotation_by_90_degrees_is_the_quarter_turn_and_small_angles_match_scipy(digits):
    # at 90 degrees the sampling points land on pixel centres: bilinear interpolation is exact
    torch.testing.assert_close(edits.rotate(digits, 90.0), edits.rotate90(digits), rtol=0, atol=1e-5)
    torch.testing.assert_close(edits.rotate(digits, -90.0), edits.rotate90(digits, -1), rtol=0, atol=1e-5)
    # scipy's rotate (order 1, about the centre, zeros outside) turns the array counter-clockwise as shown
    expected = ndimage.rotate(digits[:, 0].numpy(), 15.0, axes=(2, 1), reshape=False, order=1, mode="constant")
    got = edits.rotate(digits, 15.0)[:, 0].numpy()
    assert np.abs(got - expected).mean() < 0.01 and np.abs(got - expected).max() < 0.2


def test_shift_is_a_roll_with_zero_fill(digits):
    x = digits[:4]
    for direction, (dy, dx) in {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}.items():
        for k in (1, 3):
            expected = np.zeros((4, 1, 28, 28), np.float32)
            a = x.numpy()
            for r in range(28):
                for c in range(28):
                    rr, cc = r - dy * k, c - dx * k
                    if 0 <= rr < 28 and 0 <= cc < 28:
                        expected[..., r, c] = a[..., rr, cc]
            np.testing.assert_array_equal(edits.shift(x, k, direction).numpy(), expected, err_msg=(direction, k))


def test_morphology_against_a_plain_neighbourhood_loop(digits):
    a = np.pad(digits[:2, 0].numpy(), ((0, 0), (1, 1), (1, 1)))
    dil, ero, plus = (np.zeros((2, 28, 28), np.float32) for _ in range(3))
    for r in range(28):
        for c in range(28):
            window = a[:, r:r + 3, c:c + 3]
            dil[:, r, c] = window.max(axis=(1, 2))
            ero[:, r, c] = window.min(axis=(1, 2))
            plus[:, r, c] = np.min([window[:, 1, 1], window[:, 0, 1], window[:, 2, 1], window[:, 1, 0],
                                    window[:, 1, 2]], axis=0)
    np.testing.assert_array_equal(edits.dilate(digits[:2])[:, 0].numpy(), dil)
    np.testing.assert_array_equal(edits.erode(digits[:2])[:, 0].numpy(), ero)
    np.testing.assert_array_equal(edits.thin(digits[:2])[:, 0].numpy(), plus)
    assert (edits.dilate(digits) >= digits).all() and (edits.thin(digits) <= digits).all()


def test_outline_and_skeleton_of_a_square():
    x = torch.zeros(1, 1, 28, 28)
    x[..., 8:15, 8:15] = 1  # a 7x7 square
    expected_outline = np.zeros((28, 28), np.float32)
    expected_outline[7:16, 7:16] = 1
    expected_outline[8:15, 8:15] = 0  # the 9x9 dilation minus the square
    np.testing.assert_array_equal(edits.outline(x)[0, 0].numpy(), expected_outline)
    # the skeleton of an odd square under a square element is its centre pixel
    skel = edits.skeleton(x)[0, 0]
    assert skel.sum() == 1 and skel[11, 11] == 1
    assert (edits.skeleton(torch.rand(3, 1, 28, 28)) <= 1).all()


def test_scale_and_downsample(digits):
    torch.testing.assert_close(edits.scale(digits, 1.0), digits, rtol=0, atol=1e-5)
    x = torch.zeros(1, 1, 28, 28)
    x[..., 10:18, 10:18] = 1
    assert edits.scale(x, 0.5).sum().item() == pytest.approx(16, rel=0.15)  # the area shrinks by 4
    assert edits.scale(x, 1.5).sum().item() == pytest.approx(64 * 2.25, rel=0.15)
    for size in (14, 7):  # the input keeps only the block means: moving mass inside a block changes nothing
        block = 28 // size
        means = digits.numpy().reshape(len(digits), 1, size, block, size, block).mean(axis=(3, 5))
        same_means = torch.from_numpy(np.repeat(np.repeat(means, block, axis=2), block, axis=3))
        torch.testing.assert_close(edits.downsample(digits, size), edits.downsample(same_means, size),
                                   rtol=0, atol=1e-6)
        assert not torch.allclose(edits.downsample(digits, size), digits, atol=0.05)


def test_degradations_hide_what_they_say(digits):
    g = torch.Generator().manual_seed(0)
    boxed = edits.hide_box(digits, g)
    hidden = (boxed != digits)
    assert ((boxed == 0) | ~hidden).all() and hidden.any()
    for i in range(len(digits)):  # the changed pixels lie in one 12x12 square
        rows, cols = hidden[i, 0].nonzero(as_tuple=True)
        if len(rows):
            assert rows.max() - rows.min() < 12 and cols.max() - cols.min() < 12
    half = edits.hide_half(digits, g)
    for i in range(len(digits)):
        zero_halves = [(half[i, 0, :14] == 0).all(), (half[i, 0, 14:] == 0).all(),
                       (half[i, 0, :, :14] == 0).all(), (half[i, 0, :, 14:] == 0).all()]
        assert any(zero_halves)
    dotted = edits.hide_pixels(digits, g)  # each pixel hidden with probability 0.6
    ink = digits > 0
    assert ((dotted == digits) | (dotted == 0)).all()
    assert (dotted[ink] == 0).float().mean().item() == pytest.approx(0.6, abs=0.03)
    sp = edits.salt_and_pepper(digits, g, 0.2)
    changed = (sp != digits).float().mean().item()
    assert 0.05 < changed < 0.2 and set(sp[sp != digits].unique().tolist()) <= {0.0, 1.0}
    assert edits.gaussian_noise(digits, g).min() >= 0 and edits.gaussian_noise(digits, g).max() <= 1


@pytest.mark.parametrize("hide", [edits.hide_box, edits.hide_half, edits.hide_pixels])
def test_hidden_pixels_show_the_value_asked_for_under_the_same_mask(digits, hide):
    """`value` (0.5: the fills' inputs marked grey, the A/B of docs/results/instruct.md) changes what the hidden
    pixels show, not which pixels are hidden: the same draws hide the same pixels as the default's."""
    hidden = hide(torch.ones_like(digits), torch.Generator().manual_seed(3)) == 0
    grey = hide(digits, torch.Generator().manual_seed(3), value=0.5)
    assert hidden.any() and not hidden.all()
    torch.testing.assert_close(grey, torch.where(hidden, 0.5, digits), rtol=0, atol=0)
    torch.testing.assert_close(hide(digits, torch.Generator().manual_seed(3)), torch.where(hidden, 0.0, digits),
                               rtol=0, atol=0)


def test_triples_are_reproducible_and_exact(digits):
    a = edits.make_triples(digits, torch.Generator().manual_seed(5))
    b = edits.make_triples(digits, torch.Generator().manual_seed(5))
    c = edits.make_triples(digits, torch.Generator().manual_seed(6))
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.outputs, b.outputs) and a.instructions == b.instructions
    assert a.instructions != c.instructions
    names = list(edits.KINDS)
    t = edits.make_triples(digits[:len(names)], torch.Generator().manual_seed(0), kinds=names)
    by = dict(zip(names, range(len(names))))
    x = digits[:len(names)]
    torch.testing.assert_close(t.outputs[by["invert"]], 1 - x[by["invert"]], rtol=0, atol=0)
    torch.testing.assert_close(t.outputs[by["upscale-7"]], x[by["upscale-7"]], rtol=0, atol=0)  # output = the digit
    i = by["shift"]
    k, direction = (int(w) for w in t.instructions[i].split() if w.isdigit()), None
    direction = next(d for d in edits.DIRECTIONS if d in t.instructions[i].split())
    torch.testing.assert_close(t.outputs[i], edits.shift(x[i], next(k), direction), rtol=0, atol=0)
    i = by["combo"]
    assert " then " in t.instructions[i] or " after that " in t.instructions[i]


def test_held_out_phrasings_never_appear_in_training(digits):
    train = {s for _ in range(3) for s in edits.make_triples(digits.repeat(6, 1, 1, 1)).instructions}
    held = edits.make_triples(digits.repeat(4, 1, 1, 1), torch.Generator().manual_seed(0), split="held-out")
    assert not train & set(held.instructions)
    for kind in edits.KINDS.values():
        assert kind.held_out and not set(kind.held_out) & set(kind.phrasings), kind.name
    with pytest.raises(ConfigError, match=r"unknown edit kind\(s\) melt"):
        edits.make_triples(digits[:1], kinds=["melt"])
    with pytest.raises(ConfigError, match=r"split='test': must be train or held-out"):
        edits.make_triples(digits[:1], split="test")
