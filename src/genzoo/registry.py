"""CLI name -> model class: a literal dict, so importing it registers nothing by side effect."""

from __future__ import annotations

from .models.ae import Autoencoder
from .models.dae import DenoisingAutoencoder
from .models.vae import VAE

MODELS = {
    "ae": Autoencoder,
    "dae": DenoisingAutoencoder,
    "vae": VAE,
}


def get(name: str) -> type:
    try:
        return MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known models: {', '.join(MODELS)} (see `genzoo list`)") from None
