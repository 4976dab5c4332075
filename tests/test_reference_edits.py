"""Every edit kind against a plain recomputation: the instruction's words are read here, mapped to operations
written out with index arithmetic and loops (numpy), and applied in the order the instruction states, on
asymmetric digits (where a turn, a mirror and their order all show). Composite edits cover every ordered pair
of steps and every phrasing."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from genzoo.models.instruct import edits

N = 28


def asymmetric_digits(embedded) -> torch.Tensor:
    """Real 2s, 4s and 7s (no mirror or turn symmetry), and an 'L' whose strokes have different grey levels."""
    picks = [int((embedded.train_y == d).nonzero()[k]) for d in (2, 4, 7) for k in range(2)]
    ell = torch.zeros(1, 1, N, N)
    ell[0, 0, 5:22, 8:11] = 1.0
    ell[0, 0, 19:22, 11:20] = 0.6
    ell[0, 0, 5, 8:14] = 0.3
    return torch.cat([embedded.train_x[picks], ell])


# ---------------------------------------------------------------------------- plain operations on (28, 28) arrays


def rot_ccw(a):  # a quarter turn counter-clockwise on screen: the top row becomes the left column, bottom to top
    return np.array([[a[j, N - 1 - i] for j in range(N)] for i in range(N)])


def rot_cw(a):
    return np.array([[a[N - 1 - j, i] for j in range(N)] for i in range(N)])


def rot_180(a):
    return np.array([[a[N - 1 - i, N - 1 - j] for j in range(N)] for i in range(N)])


def mirror(a):
    return np.array([[a[i, N - 1 - j] for j in range(N)] for i in range(N)])


def upside(a):
    return np.array([[a[N - 1 - i, j] for j in range(N)] for i in range(N)])


def neighbourhood(a, offsets, reduce):
    p = np.pad(a, 1)
    return np.array([[reduce([p[i + 1 + di, j + 1 + dj] for di, dj in offsets]) for j in range(N)]
                     for i in range(N)])


SQUARE = [(di, dj) for di in (-1, 0, 1) for dj in (-1, 0, 1)]
PLUS = [(0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)]


def thicken(a):
    return neighbourhood(a, SQUARE, max)


def thin(a):
    return neighbourhood(a, PLUS, min)


def erode_square(a):
    return neighbourhood(a, SQUARE, min)


def invert(a):
    return 1 - a


def move(a, k, direction):
    dy, dx = {"left": (0, -k), "right": (0, k), "up": (-k, 0), "down": (k, 0)}[direction]
    out = np.zeros_like(a)
    for i in range(N):
        for j in range(N):
            if 0 <= i - dy < N and 0 <= j - dx < N:
                out[i, j] = a[i - dy, j - dx]
    return out


def bilinear_zero_outside(a, y, x):
    """a sampled at (fractional) pixel coordinates y, x (pixel centres at integers), 0 outside the image."""
    y0, x0 = math.floor(y), math.floor(x)
    total = 0.0
    for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
        for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
            if 0 <= yy < N and 0 <= xx < N:
                total += wy * wx * a[yy, xx]
    return total


def turn_and_zoom(a, degrees, zoom):
    """Counter-clockwise on screen by `degrees` and `zoom` times bigger, about the image centre. In coordinates
    (u right, w up) about the centre, the output at p shows the input at R(-degrees) p / zoom."""
    r = math.radians(degrees)
    c = (N - 1) / 2
    out = np.zeros_like(a)
    for i in range(N):
        for j in range(N):
            u, w = j - c, c - i  # right, up
            u_in, w_in = (math.cos(r) * u + math.sin(r) * w) / zoom, (-math.sin(r) * u + math.cos(r) * w) / zoom
            out[i, j] = bilinear_zero_outside(a, c - w_in, c + u_in)
    return np.clip(out, 0, 1)


def blocky(a, size):
    """Area-average to size x size, then bilinear back up to 28 (half-pixel centres, edges held)."""
    f = N // size
    small = a.reshape(size, f, size, f).mean(axis=(1, 3))
    out = np.zeros_like(a)
    for i in range(N):
        for j in range(N):
            y, x = max((i + 0.5) / f - 0.5, 0.0), max((j + 0.5) / f - 0.5, 0.0)
            y0, x0 = min(int(y), size - 1), min(int(x), size - 1)
            y1, x1 = min(y0 + 1, size - 1), min(x0 + 1, size - 1)
            dy, dx = y - y0, x - x0
            out[i, j] = ((1 - dy) * (1 - dx) * small[y0, x0] + (1 - dy) * dx * small[y0, x1]
                         + dy * (1 - dx) * small[y1, x0] + dy * dx * small[y1, x1])
    return np.clip(out, 0, 1)


def outline(a):
    b = (a > 0.5).astype(np.float32)
    return thicken(b) - b


def skeleton(a):
    """Lantuejoul: the union over k of E^k(X) minus the opening of E^k(X), erosion and dilation by the 3x3 square."""
    b = (a > 0.5).astype(np.float32)
    out = np.zeros_like(b)
    while b.any():
        out = np.maximum(out, b - thicken(erode_square(b)))
        b = erode_square(b)
    return out


# The instruction's words -> the operation (every phrasing, training and held-out).
WORDS = {
    rot_ccw: ["rotate it 90 degrees to the left", "turn it a quarter to the left", "rotate it counterclockwise",
              "give it a quarter turn anticlockwise"],
    rot_cw: ["rotate it 90 degrees to the right", "turn it a quarter to the right", "rotate it clockwise",
             "give it a quarter turn clockwise"],
    rot_180: ["rotate it 180 degrees", "turn it upside down", "spin it half a turn", "give it a half turn"],
    (lambda a: turn_and_zoom(a, 15, 1.0)): ["tilt it slightly to the left", "rotate it a little counterclockwise",
                                           "lean it to the left", "slant it a bit to the left"],
    (lambda a: turn_and_zoom(a, -15, 1.0)): ["tilt it slightly to the right", "rotate it a little clockwise",
                                            "lean it to the right", "slant it a bit to the right"],
    mirror: ["mirror it", "flip it horizontally", "flip it left to right", "reflect it left right"],
    upside: ["flip it vertically", "flip it top to bottom", "mirror it top to bottom", "reflect it top bottom"],
    (lambda a: turn_and_zoom(a, 0, 1.3)): ["make it bigger", "enlarge it", "scale it up", "zoom in"],
    (lambda a: turn_and_zoom(a, 0, 0.7)): ["make it smaller", "shrink it", "scale it down", "zoom out"],
    thicken: ["make the strokes thicker", "make it bold", "thicken it", "use a heavier pen"],
    thin: ["make the strokes thinner", "thin it", "make it less bold", "use a finer pen"],
    invert: ["invert it", "invert the colours", "make it a negative", "swap black and white"],
}
OPERATION = {phrase: op for op, phrases in WORDS.items() for phrase in phrases}
SHIFT = [re.compile(p) for p in (r"^move it (\d) pixels (\w+)$", r"^shift it (\w+) by (\d) pixels$",
                                 r"^translate it (\d) px (\w+)$", r"^push it (\d) pixels (\w+)$")]
COMBO = re.compile(r"^(?:first )?(.+?)(?:,| and) then (.+)$|^(.+) and after that (.+)$")
APPROXIMATE = {"tilt-left", "tilt-right", "scale-up", "scale-down"}  # bilinear in float32 vs float64 here


def read_instruction(text: str):
    """The instruction's operations, in the order it states them."""
    if text in OPERATION:
        return [OPERATION[text]]
    for pattern in SHIFT:
        found = pattern.match(text)
        if found:
            k, direction = sorted(found.groups(), key=lambda g: not g.isdigit())
            return [lambda a, k=int(k), d=direction: move(a, k, d)]
    found = COMBO.match(text)
    assert found, f"an instruction this test cannot read: {text!r}"
    first, second = [g for g in found.groups() if g is not None]
    assert first in OPERATION and second in OPERATION, text
    return [OPERATION[first], OPERATION[second]]


TRANSFORMS = [name for name, kind in edits.KINDS.items() if kind.group == "transform"]


@pytest.mark.parametrize("split", ["train", "held-out"])
@pytest.mark.parametrize("kind", TRANSFORMS)
def test_each_transform_is_the_instruction_applied_plainly(embedded, kind, split):
    x = asymmetric_digits(embedded)
    repeats = 12 if kind == "combo" else 2  # combos: many draws of the pair and of its phrasings
    x = x.repeat(repeats, 1, 1, 1)
    t = edits.make_triples(x, torch.Generator().manual_seed(11), kinds=[kind] * len(x), split=split)
    torch.testing.assert_close(t.inputs, x, rtol=0, atol=0)  # a transform edits the digit as it is
    for i, text in enumerate(t.instructions):
        a = x[i, 0].double().numpy()
        for op in read_instruction(text):
            a = op(a)
        atol = 2e-4 if kind in APPROXIMATE else 1e-6
        np.testing.assert_allclose(t.outputs[i, 0].numpy(), a, rtol=0, atol=atol, err_msg=f"{kind}: {text!r}")


def test_composite_edits_cover_every_ordered_pair_and_order_matters(embedded):
    x = asymmetric_digits(embedded).repeat(40, 1, 1, 1)
    t = edits.make_triples(x, torch.Generator().manual_seed(2), kinds=["combo"] * len(x))
    pairs, order_shows = set(), set()
    for i, text in enumerate(t.instructions):
        first, second = read_instruction(text)
        pairs.add((first, second))
        a = x[i, 0].double().numpy()
        in_order, reversed_order = second(first(a)), first(second(a))
        np.testing.assert_allclose(t.outputs[i, 0].numpy(), in_order, rtol=0, atol=1e-6, err_msg=text)
        if not np.allclose(in_order, reversed_order, atol=1e-3):
            order_shows.add((first, second))
    assert len(pairs) == 6 * 5  # every ordered pair of two different steps
    # the pairs that do not commute (a quarter turn and a mirror, inverting and either morphology, thickening and
    # thinning) show their order on these digits: a combo applied the other way round fails above
    assert len(order_shows) == 8, len(order_shows)


@pytest.mark.parametrize("kind", ["upscale-14", "upscale-7", "outline", "skeleton"])
def test_deterministic_image_to_image_inputs_are_the_plain_degradation(embedded, kind):
    x = asymmetric_digits(embedded)
    t = edits.make_triples(x, torch.Generator().manual_seed(0), kinds=[kind] * len(x))
    torch.testing.assert_close(t.outputs, x, rtol=0, atol=0)  # the output is the digit itself
    plain = {"upscale-14": lambda a: blocky(a, 14), "upscale-7": lambda a: blocky(a, 7), "outline": outline,
             "skeleton": skeleton}[kind]
    for i in range(len(x)):
        np.testing.assert_allclose(t.inputs[i, 0].numpy(), plain(x[i, 0].double().numpy()), rtol=0, atol=1e-5,
                                   err_msg=kind)


@pytest.mark.parametrize("kind", ["fill-box", "fill-half", "fill-pixels", "denoise-gaussian",
                                  "denoise-salt-and-pepper"])
def test_random_image_to_image_inputs_hide_or_noise_only_what_they_say(embedded, kind):
    x = asymmetric_digits(embedded).repeat(8, 1, 1, 1)
    t = edits.make_triples(x, torch.Generator().manual_seed(4), kinds=[kind] * len(x))
    torch.testing.assert_close(t.outputs, x, rtol=0, atol=0)
    for i in range(len(x)):
        a, b = x[i, 0].numpy(), t.inputs[i, 0].numpy()
        changed = a != b
        if kind == "fill-box":  # hidden: a 12 x 12 square inside the middle 20 x 20, set to 0
            squares = [(top, left) for top in range(4, 13) for left in range(4, 13)
                       if np.array_equal(np.where(_mask((slice(top, top + 12), slice(left, left + 12))), 0, a), b)]
            assert squares, "no 12 x 12 square in the middle explains the hidden pixels"
        elif kind == "fill-half":
            halves = [(slice(0, 14), slice(None)), (slice(14, 28), slice(None)), (slice(None), slice(0, 14)),
                      (slice(None), slice(14, 28))]
            assert any((b[h] == 0).all() and np.array_equal(np.where(_mask(h), 0, a), b) for h in halves)
        elif kind == "fill-pixels":
            assert ((b == a) | (b == 0)).all()
        elif kind == "denoise-gaussian":
            assert ((b >= 0) & (b <= 1)).all() and changed[a == 0].mean() > 0.4
        else:
            assert (b[changed] == 0).sum() + (b[changed] == 1).sum() == changed.sum()
    if kind == "denoise-gaussian":  # x + 0.4 z clipped to [0, 1]: on the background P(input > 0.4) = P(z > 1)
        background, inputs = x == 0, t.inputs
        assert abs((inputs[background] == 0).float().mean().item() - 0.5) < 0.02
        assert abs((inputs[background] > 0.4).float().mean().item() - 0.1587) < 0.015
    if kind == "fill-pixels":  # each pixel hidden with probability 0.6, measured where there is ink
        ink = x > 0
        assert abs((t.inputs[ink] == 0).float().mean().item() - 0.6) < 0.02
    if kind == "denoise-salt-and-pepper":  # a fifth of the pixels set to 0 or 1 at random, half each
        u = t.inputs
        salt = ((u == 1) & (x != 1)).float().mean().item() / (x != 1).float().mean().item()
        pepper = ((u == 0) & (x != 0)).float().mean().item() / (x != 0).float().mean().item()
        assert abs(salt - 0.1) < 0.015 and abs(pepper - 0.1) < 0.015


def _mask(half) -> np.ndarray:
    m = np.zeros((N, N), bool)
    m[half] = True
    return m


def test_random_degradations_are_their_formulas_on_the_generators_draws(embedded):
    """The draws replayed from the same seed, each degradation's formula written out per pixel in NumPy."""
    x = asymmetric_digits(embedded)
    a = x.numpy()

    def draws(kind):
        g = torch.Generator().manual_seed(9)
        return (torch.randn if kind == "normal" else torch.rand)(x.shape, generator=g).numpy()

    z = draws("normal")
    noisy = edits.gaussian_noise(x, torch.Generator().manual_seed(9)).numpy()
    np.testing.assert_allclose(noisy, np.minimum(np.maximum(a + 0.4 * z, 0), 1), rtol=0, atol=1e-6)
    u = draws("uniform")
    hidden = edits.hide_pixels(x, torch.Generator().manual_seed(9)).numpy()
    assert np.array_equal(hidden, np.where(u < 0.6, 0.0, a))
    hidden = edits.hide_pixels(x, torch.Generator().manual_seed(9), fraction=0.25, value=0.5).numpy()
    assert np.array_equal(hidden, np.where(u < 0.25, 0.5, a))
    salted = edits.salt_and_pepper(x, torch.Generator().manual_seed(9)).numpy()
    assert np.array_equal(salted, np.where(u < 0.1, 0.0, np.where(u < 0.2, 1.0, a)))
    salted = edits.salt_and_pepper(x, torch.Generator().manual_seed(9), fraction=0.5).numpy()
    assert np.array_equal(salted, np.where(u < 0.25, 0.0, np.where(u < 0.5, 1.0, a)))


def test_hide_half_hides_a_whole_half_edge_rows_included():
    x = torch.ones(64, 1, N, N)  # ink up to the border, where MNIST has none
    hidden = edits.hide_half(x, torch.Generator().manual_seed(1)).numpy()
    halves = [(slice(0, 14), slice(None)), (slice(14, 28), slice(None)), (slice(None), slice(0, 14)),
              (slice(None), slice(14, 28))]
    seen = set()
    for b in hidden[:, 0]:
        (which,) = [k for k, h in enumerate(halves) if np.array_equal(b, np.where(_mask(h), 0.0, 1.0))]
        seen.add(which)
    assert seen == {0, 1, 2, 3}


def test_a_pixel_at_exactly_one_half_is_background_for_outline_and_skeleton():
    x = torch.zeros(2, 1, N, N)
    x[:, 0, 8:20, 8:20] = 0.5
    x[1, 0, 10:18, 10:18] = 0.5 + 2**-10
    for fn, plain in ((edits.outline, outline), (edits.skeleton, skeleton)):
        got = fn(x).numpy()
        assert not got[0].any() and got[1].any(), fn.__name__
        np.testing.assert_array_equal(got[1, 0], plain(x[1, 0].double().numpy()))


def test_shift_and_combo_makers_take_an_empty_batch():
    empty = torch.zeros(0, 1, N, N)
    for make in (edits._make_shift, edits._make_combo):
        inputs, outputs = make(empty, None, [])
        assert inputs.shape == outputs.shape == (0, 1, N, N)


@pytest.mark.parametrize(("size", "value"), [(12, 0.0), (6, 0.5)])
def test_hide_box_places_its_square_anywhere_in_the_middle_twenty(size, value):
    x = torch.ones(400, 1, N, N)
    hidden = edits.hide_box(x, torch.Generator().manual_seed(2), size=size, value=value).numpy()
    tops, lefts = set(), set()
    for b in hidden[:, 0]:
        rows, cols = np.nonzero(b != 1)
        top, left = int(rows.min()), int(cols.min())
        box = _mask((slice(top, top + size), slice(left, left + size)))
        assert np.array_equal(b, np.where(box, value, 1.0))
        tops.add(top)
        lefts.add(left)
    assert tops == lefts == set(range(4, 4 + 20 - size + 1))  # every place, none outside the middle 20 x 20


def test_erosion_by_the_square_on_strokes_thick_enough_to_survive_it():
    """MNIST's strokes vanish under the 3x3 erosion; a thick block and a full image (eroded from the border,
    which counts as background) do not."""
    x = torch.zeros(3, 1, N, N)
    x[0, 0, 6:15, 5:20] = 0.8
    x[0, 0, 9:12, 8:17] = 0.3
    x[1] = 1.0
    x[2, 0] = torch.rand(N, N, generator=torch.Generator().manual_seed(0))
    got = edits.erode(x).numpy()
    for i in range(3):
        np.testing.assert_allclose(got[i, 0], erode_square(x[i, 0].double().numpy()), rtol=0, atol=1e-7)
    assert got[1, 0, 1:-1, 1:-1].min() == 1.0 and got[1, 0, 0].max() == 0.0


def test_score_edits_against_plain_psnr_error_and_an_evaluator_that_reads_by_hand():
    """score_edits: mean PSNR (-10 log10 of each image's mean squared error, averaged), mean absolute error, the
    share at >= 18 dB (an edit at exactly 18 dB counts), and with an evaluator the share read as the exact output's
    digit and, given labels, the share read as the label."""
    exact = torch.zeros(4, 1, 28, 28)
    exact[:, :, 10:18, 12:16] = 1.0
    edited = exact.clone()
    mse = [10 ** (-2.0), 10 ** (-1.8), 10 ** (-1.5), 10 ** (-3.0)]  # 20, 18, 15 and 30 dB
    for i, m in enumerate(mse):
        edited[i] = exact[i] + math.sqrt(m) * torch.where(torch.arange(784).reshape(1, 28, 28) % 2 == 0, 1.0, -1.0)
    got = edits.score_edits(edited, exact)
    want_psnr = np.mean([-10 * np.log10(((e - x) ** 2).double().mean().item()) for e, x in zip(edited, exact)])
    assert got["psnr"] == pytest.approx(want_psnr, rel=1e-5) and got["psnr"] == pytest.approx((20 + 18 + 15 + 30) / 4)
    assert got["mae"] == pytest.approx(np.mean([math.sqrt(m) for m in mse]), rel=1e-5)
    assert got["success"] == 0.75 and got["n"] == 4  # 20, 18 (on the bound) and 30 dB
    assert "label_agreement" not in got and "accuracy" not in got

    class ReadsByInk:  # a stand-in evaluator: the digit is the image's total ink over 30, modulo 10
        def predict(self, x):
            return (x.abs().sum(dim=(1, 2, 3)) / 30).long() % 10

    reader = ReadsByInk()
    read_edited, read_exact = reader.predict(edited), reader.predict(exact)
    assert read_edited.tolist() == [3, 4, 5, 1] and read_exact.tolist() == [1, 1, 1, 1]  # only the last agrees
    got = edits.score_edits(edited, exact, reader, torch.tensor([3, 9, 9, 9]))
    assert got["label_agreement"] == 0.25 and got["accuracy"] == 0.25  # edit 0 alone is read as its label
    assert "accuracy" not in edits.score_edits(edited, exact, reader)
