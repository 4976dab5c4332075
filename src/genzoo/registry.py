"""CLI name -> model class, for every row of the model table (`genzoo.catalog`).

Importing this module imports every model module (and torch); importing a model module registers nothing by
side effect: the table says which classes there are, here they are looked up.
"""

from __future__ import annotations

import importlib

from . import catalog
from .config import ConfigError


def model_class(target: str) -> type:
    """The class a table row names, "module:Class" under genzoo.models."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(f"genzoo.models.{module}"), name)


MODELS: dict[str, type] = {name: model_class(entry.target) for name, entry in catalog.MODELS.items()}


def get(name: str) -> type:
    try:
        return MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(MODELS)} (see `genzoo list`)") from None
