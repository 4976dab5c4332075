"""(input image, instruction, output image) triples for the `instruct` editor, made from plain digits.

InstructPix2Pix (Brooks et al. 2023) trains on triples that another model generated; at digit scale we can
do better for most kinds and compute the output exactly from the digit:

- exact transforms: rotate by 90 (either way) or 180 degrees or tilt by 15, flip, shift by k pixels, scale
  up or down about the centre, thicken or thin the strokes (3x3 morphology), invert, and two-step
  combinations of them ("... and then ...");
- image-to-image tasks (the seed's uses of generative models): the input is a degraded digit and the output
  the digit itself: upscale from 14x14 or 7x7, fill in a hidden box, half or random pixels, turn an outline
  (the contour around the strokes) or a skeleton (Lantuejoul's morphological skeleton) into the digit, remove
  Gaussian or salt-and-pepper noise.

Each kind has several phrasings; the last one or two of each (`held_out`) are never used in training, so that
an evaluation can measure how the editor copes with wordings it has not seen. Everything is a function of
the digits and a `torch.Generator` (None: torch's global RNG, which the trainer seeds and checkpoints), so the
same seed gives the same triples. Images are (N, 1, 28, 28) float in [0, 1] throughout.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ...config import ConfigError

Images = torch.Tensor  # (N, 1, 28, 28) in [0, 1]

# ---------------------------------------------------------------------------- exact operations


def rotate90(x: Images, quarter_turns: int = 1) -> Images:
    """Rotate by quarter_turns * 90 degrees counter-clockwise (as seen on screen, rows going down)."""
    return torch.rot90(x, quarter_turns, dims=(-2, -1))


def rotate(x: Images, degrees: float) -> Images:
    """Rotate counter-clockwise by `degrees` about the image centre, bilinear, zero outside."""
    return _affine(x, degrees=degrees, scale=1.0)


def scale(x: Images, factor: float) -> Images:
    """Zoom by `factor` about the image centre (> 1 bigger), bilinear, zero outside."""
    return _affine(x, degrees=0.0, scale=factor)


def _affine(x: Images, degrees: float, scale: float) -> Images:
    # grid_sample reads the output pixel at p from the input at A p (normalised coordinates, y pointing down):
    # a counter-clockwise turn on screen by a reads from the clockwise-turned point, divided by the zoom.
    a = math.radians(degrees)
    cos, sin = math.cos(a) / scale, math.sin(a) / scale
    theta = x.new_tensor([[cos, -sin, 0.0], [sin, cos, 0.0]]).expand(len(x), 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)  # (N, 28, 28, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False).clamp(0, 1)


def flip(x: Images, axis: str) -> Images:
    """axis="horizontal": left <-> right; "vertical": top <-> bottom."""
    return torch.flip(x, dims=(-1,) if axis == "horizontal" else (-2,))


DIRECTIONS = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}


def shift(x: Images, pixels: int, direction: str) -> Images:
    """Move the content `pixels` towards `direction`; what comes in from the border is 0 (background)."""
    dy, dx = (pixels * d for d in DIRECTIONS[direction])
    h, w = x.shape[-2:]
    out = torch.zeros_like(x)
    out[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = x[..., max(-dy, 0):h + min(-dy, 0),
                                                                      max(-dx, 0):w + min(-dx, 0)]
    return out


def dilate(x: Images) -> Images:
    """Grey-level dilation by a 3x3 square: each pixel becomes the maximum of its neighbourhood (thicker strokes)."""
    return F.max_pool2d(x, 3, stride=1, padding=1)


def erode(x: Images) -> Images:
    """Grey-level erosion by a 3x3 square (outside counts as background 0): the neighbourhood's minimum."""
    return -F.max_pool2d(-F.pad(x, (1, 1, 1, 1), value=0.0), 3, stride=1)


def thin(x: Images) -> Images:
    """Thinner strokes: grey-level erosion by a plus-shaped element (the pixel and its 4 neighbours), gentler
    than the 3x3 square, which would wipe out MNIST's 2-3 pixel strokes altogether."""
    p = F.pad(x, (1, 1, 1, 1), value=0.0)
    neighbours = torch.stack([p[..., 1:-1, 1:-1], p[..., :-2, 1:-1], p[..., 2:, 1:-1], p[..., 1:-1, :-2],
                              p[..., 1:-1, 2:]])  # (5, N, 1, 28, 28)
    return neighbours.amin(0)


def invert(x: Images) -> Images:
    return 1 - x


def downsample(x: Images, size: int) -> Images:
    """The digit at size x size (area averaging), blown back up to 28x28 (bilinear): a blurry, blocky input."""
    small = F.adaptive_avg_pool2d(x, size)
    return F.interpolate(small, size=x.shape[-2:], mode="bilinear", align_corners=False).clamp(0, 1)


def outline(x: Images) -> Images:
    """The outer contour of the binarized digit (its dilation minus itself): a one-pixel line on each side of
    every stroke. (The full morphological gradient, dilation minus erosion, would be the thickened digit
    itself: MNIST's strokes are thinner than the 3x3 erosion.)"""
    b = (x > 0.5).float()
    return dilate(b) - b


def skeleton(x: Images) -> Images:
    """Lantuejoul's morphological skeleton of the binarized digit: the union over k of
    erode^k(X) minus the opening of erode^k(X) (a thin line along the stroke's middle)."""
    b = (x > 0.5).float()
    out = torch.zeros_like(b)
    while b.any():
        opened = dilate(erode(b))
        out = torch.maximum(out, b - opened)
        b = erode(b)
    return out


# ---------------------------------------------------------------------------- degradations (random)


def _rand(shape, generator: torch.Generator | None, device) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=generator.device if generator else device).to(device)


def _randn(shape, generator: torch.Generator | None, device) -> torch.Tensor:
    return torch.randn(shape, generator=generator, device=generator.device if generator else device).to(device)


def _randint(high: int, n: int, generator: torch.Generator | None, device) -> torch.Tensor:
    return torch.randint(0, high, (n,), generator=generator, device=generator.device if generator else device)


def hide_box(x: Images, generator: torch.Generator | None, size: int = 12, value: float = 0.0) -> Images:
    """A size x size square at a random place in the middle 20x20 set to `value` (hidden; 0 by default, the
    background, so that the input does not say where the hidden part is)."""
    n, device = len(x), x.device
    tops, lefts = _randint(20 - size + 1, n, generator, device) + 4, _randint(20 - size + 1, n, generator, device) + 4
    rows = torch.arange(28, device=device)
    inside_r = (rows[None] >= tops.to(device)[:, None]) & (rows[None] < tops.to(device)[:, None] + size)  # (N, 28)
    inside_c = (rows[None] >= lefts.to(device)[:, None]) & (rows[None] < lefts.to(device)[:, None] + size)
    mask = (inside_r[:, :, None] & inside_c[:, None, :])[:, None]  # (N, 1, 28, 28)
    return x.masked_fill(mask, value)


def hide_half(x: Images, generator: torch.Generator | None, value: float = 0.0) -> Images:
    """One half (top, bottom, left or right, drawn per digit) set to `value` (hidden; 0 by default)."""
    which = _randint(4, len(x), generator, x.device).tolist()
    out = x.clone()
    for i, w in enumerate(which):
        region = [(slice(0, 14), slice(None)), (slice(14, 28), slice(None)),
                  (slice(None), slice(0, 14)), (slice(None), slice(14, 28))][w]
        out[i, :, region[0], region[1]] = value
    return out


def hide_pixels(x: Images, generator: torch.Generator | None, fraction: float = 0.6, value: float = 0.0) -> Images:
    """Each pixel hidden (set to `value`, 0 by default) with probability `fraction`."""
    return torch.where(_rand(x.shape, generator, x.device) >= fraction, x, value)


def gaussian_noise(x: Images, generator: torch.Generator | None, sigma: float = 0.4) -> Images:
    return (x + sigma * _randn(x.shape, generator, x.device)).clamp(0, 1)


def salt_and_pepper(x: Images, generator: torch.Generator | None, fraction: float = 0.2) -> Images:
    """A `fraction` of the pixels set to 0 or 1 at random (half each)."""
    u = _rand(x.shape, generator, x.device)
    out = torch.where(u < fraction / 2, torch.zeros_like(x), x)
    return torch.where((u >= fraction / 2) & (u < fraction), torch.ones_like(x), out)


# ---------------------------------------------------------------------------- the kinds


@dataclass(frozen=True)
class EditKind:
    """One kind of edit: its phrasings (templates with {k} and {direction} where it takes them) and how the
    (input, output) pair is made from digits; `fields` draws each triple's template values."""

    name: str
    group: str  # "transform" | "image-to-image"
    phrasings: tuple[str, ...]  # the training phrasings
    held_out: tuple[str, ...]  # never seen in training
    make: Callable[[Images, torch.Generator | None, list[dict]], tuple[Images, Images]]  # -> (inputs, outputs)
    fields: Callable[[int, torch.Generator | None], list[dict]] = lambda n, g: [{} for _ in range(n)]


def _exact(fn: Callable[[Images], Images]):
    return lambda x, g, fields: (x, fn(x))


def _degraded(fn: Callable[[Images, torch.Generator | None], Images]):
    return lambda x, g, fields: (fn(x, g), x)


def _shift_fields(n: int, g: torch.Generator | None) -> list[dict]:
    ks = _randint(4, n, g, "cpu").tolist()
    dirs = _randint(4, n, g, "cpu").tolist()
    return [{"k": k + 1, "direction": list(DIRECTIONS)[d]} for k, d in zip(ks, dirs)]


def _make_shift(x: Images, g, fields: list[dict]) -> tuple[Images, Images]:
    out = torch.stack([shift(x[i], f["k"], f["direction"]) for i, f in enumerate(fields)]) if len(x) else x
    return x, out


# The pieces of the two-step combinations: name -> (operation, its phrasings as a verb phrase).
STEPS: dict[str, tuple[Callable[[Images], Images], tuple[str, ...]]] = {
    "rotate-90": (lambda x: rotate90(x, 1), ("rotate it 90 degrees to the left", "turn it a quarter to the left")),
    "rotate-180": (lambda x: rotate90(x, 2), ("rotate it 180 degrees", "turn it upside down")),
    "flip-horizontal": (lambda x: flip(x, "horizontal"), ("mirror it", "flip it left to right")),
    "thicken": (dilate, ("make the strokes thicker", "make it bold")),
    "thin": (thin, ("make the strokes thinner", "thin it")),
    "invert": (invert, ("invert it", "invert the colours")),
}
COMBO_TEMPLATES = ("{a} and then {b}", "{a}, then {b}", "first {a}, then {b}")
COMBO_HELD_OUT = ("{a} and after that {b}",)


def _combo_fields(n: int, g: torch.Generator | None) -> list[dict]:
    names = list(STEPS)
    first, second = _randint(len(names), n, g, "cpu").tolist(), _randint(len(names) - 1, n, g, "cpu").tolist()
    which = _randint(4, n, g, "cpu").tolist()  # bits: the phrasing of each step
    out = []
    for a, b, w in zip(first, second, which):
        b = b + (b >= a)  # two different steps
        out.append({"steps": (names[a], names[b]), "a": STEPS[names[a]][1][w & 1], "b": STEPS[names[b]][1][w >> 1]})
    return out


def _make_combo(x: Images, g, fields: list[dict]) -> tuple[Images, Images]:
    out = [STEPS[f["steps"][1]][0](STEPS[f["steps"][0]][0](x[i:i + 1]))[0] for i, f in enumerate(fields)]
    return x, torch.stack(out) if out else x


FILL = ("fill in the missing part", "complete the digit", "restore the hidden part", "fill in what is missing")
FILL_HELD = ("fill the gaps",)
SHARPEN = ("make it sharp", "upscale it", "sharpen it", "increase the resolution")
SHARPEN_HELD = ("make it crisp",)
SKETCH = ("turn the outline into a digit", "fill in the outline", "make a digit from this sketch",
          "draw the digit from the sketch")
SKETCH_HELD = ("colour in the sketch",)
DENOISE = ("remove the noise", "denoise it", "clean it up", "take out the noise")
DENOISE_HELD = ("get rid of the speckles",)

KINDS: dict[str, EditKind] = {k.name: k for k in [
    EditKind("rotate-90", "transform",
             ("rotate it 90 degrees to the left", "turn it a quarter to the left", "rotate it counterclockwise"),
             ("give it a quarter turn anticlockwise",), _exact(lambda x: rotate90(x, 1))),
    EditKind("rotate-270", "transform",
             ("rotate it 90 degrees to the right", "turn it a quarter to the right", "rotate it clockwise"),
             ("give it a quarter turn clockwise",), _exact(lambda x: rotate90(x, -1))),
    EditKind("rotate-180", "transform",
             ("rotate it 180 degrees", "turn it upside down", "spin it half a turn"),
             ("give it a half turn",), _exact(lambda x: rotate90(x, 2))),
    EditKind("tilt-left", "transform",
             ("tilt it slightly to the left", "rotate it a little counterclockwise", "lean it to the left"),
             ("slant it a bit to the left",), _exact(lambda x: rotate(x, 15.0))),
    EditKind("tilt-right", "transform",
             ("tilt it slightly to the right", "rotate it a little clockwise", "lean it to the right"),
             ("slant it a bit to the right",), _exact(lambda x: rotate(x, -15.0))),
    EditKind("flip-horizontal", "transform",
             ("mirror it", "flip it horizontally", "flip it left to right"),
             ("reflect it left right",), _exact(lambda x: flip(x, "horizontal"))),
    EditKind("flip-vertical", "transform",
             ("flip it vertically", "flip it top to bottom", "mirror it top to bottom"),
             ("reflect it top bottom",), _exact(lambda x: flip(x, "vertical"))),
    EditKind("shift", "transform",
             ("move it {k} pixels {direction}", "shift it {direction} by {k} pixels",
              "translate it {k} px {direction}"),
             ("push it {k} pixels {direction}",), _make_shift, _shift_fields),
    EditKind("scale-up", "transform", ("make it bigger", "enlarge it", "scale it up"), ("zoom in",),
             _exact(lambda x: scale(x, 1.3))),
    EditKind("scale-down", "transform", ("make it smaller", "shrink it", "scale it down"), ("zoom out",),
             _exact(lambda x: scale(x, 0.7))),
    EditKind("thicken", "transform", ("make the strokes thicker", "make it bold", "thicken it"),
             ("use a heavier pen",), _exact(dilate)),
    EditKind("thin", "transform", ("make the strokes thinner", "thin it", "make it less bold"),
             ("use a finer pen",), _exact(thin)),
    EditKind("invert", "transform", ("invert it", "invert the colours", "make it a negative"),
             ("swap black and white",), _exact(invert)),
    EditKind("combo", "transform", COMBO_TEMPLATES, COMBO_HELD_OUT, _make_combo, _combo_fields),
    EditKind("upscale-14", "image-to-image", SHARPEN, SHARPEN_HELD, _degraded(lambda x, g: downsample(x, 14))),
    EditKind("upscale-7", "image-to-image", SHARPEN, SHARPEN_HELD, _degraded(lambda x, g: downsample(x, 7))),
    EditKind("fill-box", "image-to-image", FILL, FILL_HELD, _degraded(hide_box)),
    EditKind("fill-half", "image-to-image", FILL, FILL_HELD, _degraded(hide_half)),
    EditKind("fill-pixels", "image-to-image", FILL, FILL_HELD, _degraded(hide_pixels)),
    EditKind("outline", "image-to-image", SKETCH, SKETCH_HELD, _degraded(lambda x, g: outline(x))),
    EditKind("skeleton", "image-to-image", SKETCH, SKETCH_HELD, _degraded(lambda x, g: skeleton(x))),
    EditKind("denoise-gaussian", "image-to-image", DENOISE, DENOISE_HELD, _degraded(gaussian_noise)),
    EditKind("denoise-salt-and-pepper", "image-to-image", DENOISE, DENOISE_HELD, _degraded(salt_and_pepper)),
]}


# Semantic edits ("turn this 3 into an 8"): their pairs come from a class-conditional diffusion run
# (`genzoo semantic-pairs`, `pairs.make_semantic_pairs`), not from an operation on the digit; these are their phrasings.
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SEMANTIC = ("turn this {a} into a {b}", "make it a {b_word}", "change the digit to {b}", "turn it into a {b_word}")
SEMANTIC_HELD_OUT = ("rewrite it as the number {b_word}",)


def semantic_instructions(sources: list[int], targets: list[int], generator: torch.Generator | None = None,
                          split: str = "train") -> list[str]:
    """One phrasing per (source digit, target digit), drawn from SEMANTIC (or SEMANTIC_HELD_OUT)."""
    pool = SEMANTIC if split == "train" else SEMANTIC_HELD_OUT if split == "held-out" else None
    if pool is None:
        raise ConfigError(f"split={split!r}: must be train or held-out")
    chosen = _randint(len(pool), len(sources), generator, "cpu").tolist()
    return [pool[c].format(a=a, b=b, b_word=DIGIT_WORDS[b]) for a, b, c in zip(sources, targets, chosen)]


def phrasings(kind: EditKind, split: str) -> tuple[str, ...]:
    if split == "train":
        return kind.phrasings
    if split == "held-out":
        return kind.held_out
    raise ConfigError(f"split={split!r}: must be train or held-out")


def vocabulary_text() -> list[str]:
    """Every training phrasing with its fields filled in every way: what the tokenizer's vocabulary is built from
    (held-out phrasings are left out, so that their new words really are unknown)."""
    texts = []
    for kind in KINDS.values():
        for template in kind.phrasings:
            if kind.name == "combo":
                verbs = [verb for _, verbs in STEPS.values() for verb in verbs]
                texts += [template.format(a=a, b=b) for a in verbs for b in verbs]
            else:
                texts += [template.format(k=k, direction=d) for k in range(1, 5) for d in DIRECTIONS]
    texts += [t.format(a=a, b=b, b_word=DIGIT_WORDS[b]) for t in SEMANTIC for a in range(10) for b in range(10)]
    return texts


@dataclass
class Triples:
    inputs: Images  # (N, 1, 28, 28)
    instructions: list[str]
    outputs: Images  # (N, 1, 28, 28)
    kinds: list[str]


def make_triples(x: Images, generator: torch.Generator | None = None, *, kinds: list[str] | None = None,
                 split: str = "train") -> Triples:
    """One triple per digit of x: a kind drawn uniformly (or the given one per digit), a phrasing of it drawn
    from `split` ("train" or "held-out"), and its (input, output) pair.

    Args:
        x: (N, 1, 28, 28) digits in [0, 1].
        generator: all the draws (None: torch's global RNG).
        kinds: N kind names (default: drawn uniformly over KINDS).
    """
    n = len(x)
    names = list(KINDS)
    if kinds is None:
        kinds = [names[i] for i in _randint(len(names), n, generator, "cpu").tolist()]
    elif len(kinds) != n:
        raise ConfigError(f"kinds: {len(kinds)} names for {n} digits; give one per digit")
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise ConfigError(f"unknown edit kind(s) {', '.join(unknown)}; known: {', '.join(KINDS)}")
    inputs, outputs = torch.empty_like(x), torch.empty_like(x)
    instructions = [""] * n
    for name in dict.fromkeys(kinds):  # each kind once, in order of first appearance (reproducible)
        kind = KINDS[name]
        index = [i for i, k in enumerate(kinds) if k == name]
        fields = kind.fields(len(index), generator)
        pool = phrasings(kind, split)
        chosen = _randint(len(pool), len(index), generator, "cpu").tolist()
        inp, out = kind.make(x[index], generator, fields)
        inputs[index], outputs[index] = inp, out
        for i, c, f in zip(index, chosen, fields):
            instructions[i] = pool[c].format(**f)
    return Triples(inputs, instructions, outputs, kinds)


# An edit "succeeds" at this PSNR against its exact output (the editor's bar; about 0.13 root-mean-square error).
SUCCESS_PSNR = 18.0


def score_edits(edited: Images, exact: Images, evaluator=None, labels: torch.Tensor | None = None) -> dict:
    """How close edits are to their exact outputs: mean PSNR (dB), mean absolute error, the share of edits at
    SUCCESS_PSNR or more; with the evaluator, the share it reads as the same digit as the exact output
    ("label_agreement") and, given the true `labels` (image-to-image kinds, whose output is the digit itself),
    its accuracy on the edits. edited, exact (N, 1, 28, 28) in [0, 1] on the CPU."""
    from ...metrics import psnr

    p = psnr(edited, exact)
    out = {"psnr": p.mean().item(), "mae": (edited - exact).abs().mean().item(),
           "success": (p >= SUCCESS_PSNR).float().mean().item(), "n": len(edited)}
    if evaluator is not None:
        read = evaluator.predict(edited)
        out["label_agreement"] = (read == evaluator.predict(exact)).float().mean().item()
        if labels is not None:
            out["accuracy"] = (read == labels).float().mean().item()
    return out
