"""Any picture of a digit a user gives -> the (1, 1, 28, 28) input the models get, the same way everywhere.

`genzoo edit --image` (through `commands.load_digit`) and the web app's upload and canvas (`serve`) both call
`digit_from_image`, so one PNG becomes one 28 x 28 digit whichever door it comes in by. The recipe is MNIST's
own (LeCun et al. 1998, "Gradient-based learning applied to document recognition"): white ink on black, the
ink's bounding box scaled to fit 20 x 20 with its aspect ratio kept, placed in a 28 x 28 frame so that its centre
of mass lies at the frame's centre. What users' files add to that recipe is handled here too: any size, any
Pillow mode (bilevel, palette, 16-bit, float, CMYK), transparency, a camera's EXIF rotation, dark ink on light
paper or light ink on dark, paper that is grey, and JPEG ringing around the strokes.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageOps

SIDE = 28
BOX = 20  # MNIST's digits fit a 20 x 20 box inside the 28 x 28 frame
# Ink fainter than this share of the stroke's contrast is background: JPEG ringing and paper grain lie below it.
FLOOR = 0.1
# A picture whose strongest stroke differs from the background by less than this is blank, not a faint digit.
MIN_CONTRAST = 0.1


class BlankImageError(ValueError):
    """The picture holds no stroke that stands out from its background."""


def digit_from_image(image: Image.Image | np.ndarray) -> torch.Tensor:
    """A picture of one digit -> the (1, 1, 28, 28) float32 digit in [0, 1], white on black, MNIST-framed.

    Args:
        image: a Pillow image of any size and mode (its EXIF orientation applied), or an array: (H, W) grey
            levels, floats in [0, 1] or uint8, or (H, W, 3 or 4) uint8 RGB(A).
    Returns:
        (1, 1, 28, 28) float32 in [0, 1].
    Raises:
        BlankImageError: no stroke stands out from the background.
    """
    ink = ink_map(image)
    return torch.from_numpy(frame(ink))[None, None]


def ink_map(image: Image.Image | np.ndarray) -> np.ndarray:
    """A picture -> (H, W) float32 ink in [0, 1]: 0 on the background, 1 at the strongest stroke."""
    grey = grey_levels(image)
    background = float(np.median(np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])))
    darkest, lightest = float(grey.min()), float(grey.max())
    # The ink is whatever lies farthest from the background: dark pencil on grey paper as well as chalk on slate.
    if background - darkest > lightest - background:
        ink, contrast = background - grey, background - darkest
    else:
        ink, contrast = grey - background, lightest - background
    if contrast < MIN_CONTRAST:
        raise BlankImageError(f"the image is blank (no stroke stands out from its background: the strongest differs "
                              f"by {contrast:.0%} of full scale)")
    ink = np.clip(ink / contrast, 0, 1)
    return np.where(ink < FLOOR, 0, ink).astype(np.float32)


def grey_levels(image: Image.Image | np.ndarray) -> np.ndarray:
    """A picture -> (H, W) float32 grey levels in [0, 1]; transparent parts become the page under the ink."""
    if isinstance(image, np.ndarray):
        if image.ndim == 2 and image.dtype.kind == "f":
            if not np.isfinite(image).all() or image.min() < 0 or image.max() > 1:
                raise ValueError(f"a grey array of floats must lie in [0, 1]; got values in "
                                 f"[{np.nanmin(image):.3g}, {np.nanmax(image):.3g}]")
            return image.astype(np.float32)
        image = Image.fromarray(image)
    image = ImageOps.exif_transpose(image)  # a phone photo stored sideways, upright again
    alpha = None
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (image.mode == "P" and "transparency" in image.info) \
            or (image.mode in ("L", "RGB") and "transparency" in image.info):
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255
        alpha = rgba[..., 3]
        grey = np.asarray(image.convert("RGBA").convert("RGB").convert("L"), dtype=np.float32) / 255
    elif image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        grey = np.asarray(image, dtype=np.float64)
        reach = 1.0 if grey.max() <= 1 else 255.0 if grey.max() <= 255 else 65535.0  # the file's bit depth
        grey = (np.clip(grey, 0, reach) / reach).astype(np.float32)
    else:
        grey = np.asarray(image.convert("L"), dtype=np.float32) / 255
    if alpha is not None and alpha.min() < 1:
        # Where the picture is see-through, the page shows: a page that sets the ink apart (black ink drawn on a
        # transparent layer lies on white, white ink on black), judged from the visible pixels' mean.
        visible = alpha.sum()
        ink_level = float((grey * alpha).sum() / visible) if visible > 0 else 0.0
        page = 1.0 if ink_level < 0.5 else 0.0
        grey = grey * alpha + page * (1 - alpha)
    return grey


def frame(ink: np.ndarray) -> np.ndarray:
    """Ink (H, W) in [0, 1] -> the (28, 28) float32 MNIST frame: the ink's bounding box scaled to fit 20 x 20
    (aspect kept), its centre of mass at (14, 14) as in MNIST's own digits, moved in as far as needed to stay whole."""
    rows, cols = np.nonzero(ink > 0)
    if len(rows) == 0:
        raise BlankImageError("the image is blank (no stroke stands out from its background)")
    box = ink[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    scale = BOX / max(box.shape)
    h, w = max(1, round(box.shape[0] * scale)), max(1, round(box.shape[1] * scale))
    small = box if (h, w) == box.shape else np.asarray(
        Image.fromarray(box.astype(np.float32)).resize((w, h), Image.LANCZOS), dtype=np.float32)
    small = np.clip(small, 0, 1)  # Lanczos overshoots at sharp edges
    mass = float(small.sum())
    if mass <= 0:
        raise BlankImageError("the image is blank (its strokes vanish at 20 x 20 pixels)")
    cy = float(small.sum(1) @ np.arange(h)) / mass
    cx = float(small.sum(0) @ np.arange(w)) / mass
    centre = SIDE / 2  # MNIST's digits have their centre of mass within half a pixel of row 14, column 14
    top = min(max(round(centre - cy), 0), SIDE - h)
    left = min(max(round(centre - cx), 0), SIDE - w)
    out = np.zeros((SIDE, SIDE), np.float32)
    out[top:top + h, left:left + w] = small
    return out
