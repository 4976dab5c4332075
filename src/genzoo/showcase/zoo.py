"""The zoo's table, drawn from the model table: for every model family, how `genzoo demo` trains it and what its
report section teaches.

`RECIPES` holds the `demo` column of `genzoo.catalog.MODELS` (a `catalog.Demo` per model that has one): the
CPU-sized hyper-parameters and trainer settings (a GPU takes the model's own full-size defaults), its share of the
demo's budget, the evaluation settings on a CPU, and the section text: what the model is, its objective as a
formula (matplotlib mathtext, rendered offline), the genzoo functions whose source computes that objective (shown
as they are installed, so they cannot drift), the paper, the captions of its pictures, and the command of its full
recipe. `CPU_TRAIN` holds the trainer settings every CPU recipe shares.

`TAXONOMY` places every model in the taxonomy of generative models of Goodfellow's NIPS 2016 tutorial
(figure 9): explicit density, tractable or approximate (variational, Markov chain); implicit density,
Markov chain or direct. It is drawn from the leaf each row of the model table (`genzoo.catalog`) names.

A model is in the demo when its row of the model table has a `demo` (docs/CONTRIBUTING.md).
"""

from __future__ import annotations

from typing import Any

from .. import catalog

# Trainer settings shared by every CPU recipe: a constant rate (a continued run goes on at the same rate),
# epochs far beyond the budget (the time budget stops training), a test pass on a subset.
CPU_TRAIN = {"schedule": "constant", "epochs": catalog.DEMO_EPOCHS, "checkpoint_minutes": 1.0, "test_images": 500,
             "warmup_steps": 0}

RECIPES: dict[str, catalog.Demo] = {name: entry.demo for name, entry in catalog.MODELS.items()
                                    if entry.demo is not None}

# The taxonomy of the model table (Goodfellow 2016, figure 9): (heading, children), a child a heading node or a
# model name; and what each leaf says beside its name.
TAXONOMY: tuple = catalog.taxonomy()
LEAF_NOTES = {name: entry.note for name, entry in catalog.MODELS.items()}


def taxonomy_leaves(node: Any = TAXONOMY) -> list[str]:
    """Every model name in the taxonomy, in order."""
    if isinstance(node, str):
        return [node]
    _, children = node
    return [leaf for child in children for leaf in taxonomy_leaves(child)]
