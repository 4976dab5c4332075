"""genzoo: train, sample, evaluate and compare generative models of MNIST-like images.

    import genzoo
    model = genzoo.create("vae", latent_dim=2)
    run = genzoo.train("vae", data="embedded", out="runs/vae", train_overrides={"epochs": 5})
    model = genzoo.load(run)
    images = model.sample(16, generator=torch.Generator().manual_seed(0))
"""

from ._version import __version__
from .runs import create, load
from .trainer import train

__all__ = ["create", "load", "train", "__version__"]
