"""CLI name -> model class: a literal dict, so importing it registers nothing by side effect."""

from __future__ import annotations

from .config import ConfigError
from .models.ae import Autoencoder
from .models.bayes import BayesClassifier
from .models.dae import DenoisingAutoencoder
from .models.ddpm import DDPM
from .models.gan import DCGAN, GAN, ConditionalGAN
from .models.gmm import GMM
from .models.instruct import InstructPix2Pix
from .models.pixelcnn import PixelCNN
from .models.pixelrnn import PixelRNN
from .models.rbm import RBM
from .models.vae import VAE

MODELS = {
    "gmm": GMM,
    "bayes": BayesClassifier,
    "rbm": RBM,
    "ae": Autoencoder,
    "dae": DenoisingAutoencoder,
    "vae": VAE,
    "pixelcnn": PixelCNN,
    "pixelrnn": PixelRNN,
    "gan": GAN,
    "cgan": ConditionalGAN,
    "dcgan": DCGAN,
    "ddpm": DDPM,
    "instruct": InstructPix2Pix,
}


def get(name: str) -> type:
    try:
        return MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(MODELS)} (see `genzoo list`)") from None
