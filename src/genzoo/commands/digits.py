"""A digit from an image file: what `genzoo edit --image` and the web app's uploads start from."""

from __future__ import annotations

from pathlib import Path

import torch

from ..data import DataError
from ..image_input import BlankImageError, digit_from_image


def load_digit(path: str | Path) -> torch.Tensor:
    """A PNG, JPEG or any image Pillow reads, of any size and mode, as a (1, 1, 28, 28) MNIST-like digit in [0, 1].

    `image_input.digit_from_image` makes it, as it does for the web app's uploads: white ink on black, the ink's
    box scaled to fit 20 x 20, its centre of mass at the frame's centre. A file that is not an image, or a
    blank one, is a DataError naming the file.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such image file")
    try:
        with Image.open(path) as image:
            image.load()
            return digit_from_image(image)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: not an image Pillow can read ({e}); give a PNG or JPEG of a digit") from None
    except BlankImageError as e:
        raise DataError(f"{path}: {e}; give a PNG or JPEG of a digit") from None
