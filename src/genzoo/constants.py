"""Shapes every genzoo model and metric agrees on: MNIST-like digits, 1 x 28 x 28, ten classes."""

IMAGE_SHAPE = (1, 28, 28)  # (C, H, W) of one image
N_PIXELS = 28 * 28  # dimensions of one flattened image
N_CLASSES = 10  # digit labels 0..9
