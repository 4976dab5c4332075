"""genzoo: train, sample, evaluate and compare generative models of MNIST-like images.

    import genzoo
    model = genzoo.create("vae", latent_dim=2)
    run = genzoo.train("vae", data="embedded", out="runs/vae", train_overrides={"epochs": 5})
    model = genzoo.load(run)
    images = model.sample(16, generator=torch.Generator().manual_seed(0))
"""

from typing import Any

from ._version import __version__

__all__ = ["create", "load", "train", "__version__"]


def __getattr__(name: str) -> Any:
    """create, load and train, imported on first use (PEP 562): `import genzoo` alone does not import torch,
    so that `genzoo list` and `genzoo --version` answer at once."""
    if name in ("create", "load"):
        from . import runs

        return getattr(runs, name)
    if name == "train":
        from .trainer import train

        return train
    raise AttributeError(f"module 'genzoo' has no attribute {name!r}")
