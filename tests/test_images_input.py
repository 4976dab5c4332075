"""One function turns any picture of a digit into the 28 x 28 model input (`image_input.digit_from_image`), for
`genzoo edit --image` and the web app alike: a digit already in MNIST's frame stays put, an off-centre one is
centred by its mass, the ink's colour does not matter, and sizes, modes, transparency and EXIF rotation give the
same digit as a plain grey PNG."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from genzoo import commands
from genzoo.data import DataError
from genzoo.image_input import BlankImageError, digit_from_image


def centre_of_mass(a: np.ndarray) -> tuple[float, float]:
    mass = a.sum()
    return float(a.sum(1) @ np.arange(a.shape[0]) / mass), float(a.sum(0) @ np.arange(a.shape[1]) / mass)


def digit(image) -> np.ndarray:
    out = digit_from_image(image)
    assert out.shape == (1, 1, 28, 28) and out.dtype == torch.float32
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    return out[0, 0].numpy()


def bar_page(size=(120, 90), dark_ink=True) -> np.ndarray:
    """A 40 x 8 bar off-centre on a page of `size` (width, height), as uint8 grey levels."""
    ink, paper = (0, 255) if dark_ink else (255, 0)
    page = np.full(size[::-1], paper, np.uint8)
    page[10:50, 12:20] = ink  # rows 10..49, columns 12..19
    return page


def bar_expected() -> np.ndarray:
    """The bar in MNIST's frame, worked out by hand: 40 x 8 halves exactly to 20 x 4; its centre of mass
    (9.5, 1.5) inside that box goes to (14, 14): rows round(4.5) = 4 (half to even) .. 23, columns 12..15."""
    out = np.zeros((28, 28), np.float32)
    out[4:24, 12:16] = 1
    return out


def encode(image: Image.Image, fmt: str = "PNG", **save) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save)
    return Image.open(io.BytesIO(buffer.getvalue()))


def test_a_digit_already_in_mnists_frame_stays_put(embedded):
    """MNIST's own test digits come back unchanged (but for ink fainter than the floor, and the strongest stroke
    stretched to 1), at the same place."""
    moved = 0
    for x in embedded.test_x[:200, 0].numpy():
        y = digit(x)
        kept = x >= 0.1  # fainter ink is background to the function (JPEG ringing lies there)
        if np.allclose(y[kept], x[kept] / x.max(), atol=1e-6) and not y[~kept].any():
            continue
        moved += 1  # dropping the faint edge moved the centre of mass over a rounding boundary: one pixel
        assert max(abs(a - b) for a, b in zip(centre_of_mass(x), centre_of_mass(y))) < 1.1
    assert moved <= 6


def test_an_off_centre_bar_is_scaled_into_20_pixels_and_centred_by_its_mass():
    assert np.array_equal(digit(bar_page()), bar_expected())


def test_an_off_centre_lopsided_digit_is_centred_by_its_mass_not_its_box():
    """A small L drawn at 20 pixels high (so no scaling): a thin stem and a heavy foot, its mass low and right of
    its box's centre. The frame puts the mass at (14, 14), worked out here from the drawing's own centre of mass."""
    page = np.zeros((200, 300), np.uint8)
    page[40:60, 150:152] = 255  # stem: 20 rows x 2 columns; the box is rows 40..59, columns 150..159
    page[55:60, 150:160] = 255  # foot: 5 rows x 10 columns
    box = page[40:60, 150:160] / 255.0
    cy, cx = centre_of_mass(box)
    top, left = round(14 - cy), round(14 - cx)
    expected = np.zeros((28, 28), np.float32)
    expected[top:top + 20, left:left + 10] = box
    assert np.array_equal(digit(page), expected)
    assert (top, left) != (4, 9)  # where centring the box would have put it


def test_mass_far_from_the_box_centre_keeps_the_digit_whole():
    """A thin stem over a heavy foot: centring the mass would push the stem's top out of the frame; the digit is
    moved only as far as the frame allows, and none of it wraps round to the other side."""
    page = np.zeros((100, 100), np.uint8)
    page[10:90, 50:51] = 255
    page[80:90, 36:66] = 255
    y = digit(page)
    rows = np.nonzero(y.sum(1) > 0)[0]
    assert np.array_equal(rows, np.arange(20))  # rows 0..19: the whole 20-pixel box, top row first


def test_white_on_black_and_black_on_white_give_the_same_digit():
    assert np.array_equal(digit(bar_page(dark_ink=True)), digit(bar_page(dark_ink=False)))
    grey_paper = bar_page().astype(np.float32) / 255 * 0.4 + 0.05  # dark ink (0.05) on mid-grey paper (0.45)
    assert np.abs(digit(grey_paper) - bar_expected()).max() < 1e-5


@pytest.mark.parametrize("mode", ["L", "RGB", "P", "1", "CMYK", "I;16", "I", "F", "LA", "RGBA"])
def test_every_mode_gives_the_digit_of_the_grey_png(mode):
    page = Image.fromarray(bar_page())
    if mode == "I;16":
        image = Image.fromarray(bar_page().astype(np.uint16) * 257)  # 16-bit: 65535 is white
    elif mode == "I":
        image = Image.fromarray(bar_page().astype(np.int32) * 257)
    elif mode == "F":
        image = Image.fromarray(bar_page().astype(np.float32) / 255)
    else:
        image = page.convert(mode)
    assert np.array_equal(digit(image), bar_expected()), mode


@pytest.mark.parametrize("ink", [0, 255])
def test_ink_on_a_transparent_layer_is_read_from_its_alpha(ink):
    """A drawing app's export: coloured or black or white ink, the rest transparent (and black or white under
    the transparency, which must not matter)."""
    for hidden in (0, 255):
        rgba = np.zeros((90, 120, 4), np.uint8)
        rgba[..., :3] = hidden
        rgba[10:50, 12:20] = (ink, ink, ink, 255)
        assert np.array_equal(digit(encode(Image.fromarray(rgba, "RGBA"))), bar_expected()), (ink, hidden)
    la = np.zeros((90, 120, 2), np.uint8)
    la[10:50, 12:20] = (ink, 255)
    assert np.array_equal(digit(Image.fromarray(la, "LA")), bar_expected())


def test_sizes_from_tiny_to_large_and_a_jpeg():
    small = np.zeros((12, 10), np.uint8)  # a 10 x 2 bar: scaled up to 20 x 4
    small[1:11, 2:4] = 255
    assert np.array_equal(digit(small), bar_expected())
    large = np.full((1500, 2000), 255, np.uint8)  # 400 x 80 bar, reduced 20 times
    large[300:700, 900:980] = 0
    assert np.abs(digit(large) - bar_expected()).max() < 1e-4
    jpeg = digit(encode(Image.fromarray(bar_page()), "JPEG", quality=60))  # ringing round the edges
    cy, cx = centre_of_mass(jpeg)
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5
    rows, cols = np.nonzero(jpeg > 0.5)
    assert rows.max() - rows.min() + 1 in (19, 20) and cols.max() - cols.min() + 1 in (3, 4, 5)
    far = np.ones((28, 28), bool)
    far[2:26, 10:18] = False
    assert not jpeg[far].any()


def test_a_phone_photo_stored_sideways_is_turned_upright():
    """EXIF orientation 6: the pixels are stored rotated; viewers (and the function) turn them 90 degrees."""
    upright = bar_page(size=(90, 120)).T.copy()  # a horizontal bar: what the user sees
    stored = Image.fromarray(np.rot90(upright, 1).copy())  # what a camera holding it sideways stores
    exif = Image.Exif()
    exif[0x0112] = 6
    photo = encode(stored, "JPEG", quality=95, exif=exif)
    rows, cols = np.nonzero(digit(photo) > 0.5)
    assert rows.max() - rows.min() + 1 == 4 and cols.max() - cols.min() + 1 == 20  # lying, as the user sees it


@pytest.mark.parametrize("page", [np.full((30, 30), 255, np.uint8), np.zeros((30, 30), np.uint8),
                                  np.random.default_rng(0).integers(120, 135, (40, 40)).astype(np.uint8)],
                         ids=["white", "black", "grain"])
def test_a_blank_picture_is_an_error(page):
    with pytest.raises(BlankImageError, match=r"the image is blank \(no stroke stands out"):
        digit_from_image(page)


def test_load_digit_reads_files_through_the_same_function(tmp_path):
    for name, image in {"a.png": Image.fromarray(bar_page()), "b.jpg": Image.fromarray(bar_page()).convert("RGB"),
                        "c.png": Image.fromarray(bar_page(dark_ink=False)).convert("RGBA")}.items():
        image.save(tmp_path / name, quality=95) if name.endswith("jpg") else image.save(tmp_path / name)
        with Image.open(tmp_path / name) as opened:
            assert torch.equal(commands.load_digit(tmp_path / name), digit_from_image(opened)), name
    Image.fromarray(np.full((30, 30), 200, np.uint8)).save(tmp_path / "blank.png")
    with pytest.raises(DataError, match=r"blank.png: the image is blank .*; give a PNG or JPEG of a digit"):
        commands.load_digit(tmp_path / "blank.png")
