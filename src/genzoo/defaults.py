"""Defaults the CLI shows in its help and the library applies, in a module that imports no torch: the parser is
built before any verb runs, so `genzoo list`, `genzoo --version` and `genzoo VERB --help` answer at once."""

from __future__ import annotations

import argparse

EVALUATE_BUDGET = 300.0  # seconds: what a default `genzoo evaluate` aims to take on the machine at hand
DEFAULT_EDITS = 230  # an editor's scored edits: ten of each of the 23 kinds of genzoo.models.instruct.edits
DEMO_BUDGET = 840.0  # seconds of wall clock: the whole zoo in under a quarter of an hour on a 2-core CPU


def add_evaluator_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `genzoo evaluator train` (shared with `python -m genzoo.evaluator`)."""
    parser.add_argument("--data", default="mnist", help="data spec (full MNIST for the shipped asset)")
    parser.add_argument("--out", default=None,
                        help="output safetensors file (default: the package's asset, genzoo/assets/evaluator-*)")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
