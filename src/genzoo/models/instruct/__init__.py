"""The `instruct` editor and what serves it alone: the model (`editor`), its training triples with exact outputs
(`edits`), its text encoder (`text`) and the semantic pairs drawn from a diffusion model (`pairs`)."""

from .editor import InstructConfig, InstructPix2Pix, edit_figure

__all__ = ["InstructConfig", "InstructPix2Pix", "edit_figure"]
