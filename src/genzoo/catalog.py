"""What `genzoo list` prints: every model's CLI name, what it is, and the papers it follows.

A literal table, importable without torch, so that `genzoo list` and `genzoo --version` answer at once
(importing the models takes seconds). tests/test_cli.py checks that it names exactly the registered models.
"""

from __future__ import annotations

# CLI name -> (what it is, the papers it follows); the registry's order.
MODELS: dict[str, tuple[str, str]] = {
    "gmm": ("Gaussian mixture over the pixels (or a PCA subspace), fitted by EM",
            "Dempster, Laird & Rubin 1977; Tipping & Bishop 1999"),
    "bayes": ("sampling from a Bayes classifier: p(y) p(x | y), a Gaussian or a Gaussian mixture per digit",
              "Murphy 2012, section 4.2; Dempster, Laird & Rubin 1977"),
    "rbm": ("restricted Boltzmann machine, CD-k / persistent CD, AIS likelihood",
            "Hinton 2002; Tieleman 2008; Salakhutdinov & Murray 2008"),
    "ae": ("convolutional autoencoder with a bottleneck", "Hinton & Salakhutdinov 2006"),
    "dae": ("denoising autoencoder (Gaussian, salt-and-pepper, masking noise), sampled through its Markov chain",
            "Vincent et al. 2008; Bengio et al. 2013"),
    "vae": ("variational autoencoder, Bernoulli decoder, ELBO and IWAE likelihood",
            "Kingma & Welling 2014; Burda et al. 2016"),
    "pixelcnn": ("PixelCNN on binarized digits: masked convolutions, gated, class-conditional; exact likelihood",
                 "van den Oord et al. 2016"),
    "pixelrnn": ("PixelRNN on binarized digits: Row LSTM or Diagonal BiLSTM; exact likelihood",
                 "van den Oord et al. 2016"),
    "gan": ("GAN with fully connected networks", "Goodfellow et al. 2014"),
    "cgan": ("conditional GAN: the label enters both networks", "Mirza & Osindero 2014"),
    "dcgan": ("deep convolutional GAN, optionally class-conditional", "Radford et al. 2015"),
    "ddpm": ("denoising diffusion, pixel or latent space; classifier-free guidance, DDIM or ancestral",
             "Ho et al. 2020; Nichol & Dhariwal 2021; Song et al. 2021; Ho & Salimans 2022; Rombach et al. 2022"),
    "instruct": ("InstructPix2Pix-style editor: a digit and a free-text instruction in, the edited digit out; "
                 "two guidance scales", "Brooks, Holynski & Efros 2023; Ho et al. 2020; Song et al. 2021"),
}

NAMES = tuple(MODELS)


def listing() -> str:
    """`genzoo list`: one line per model, its name, what it is and its papers."""
    return "\n".join(f"{name:9s} {what} ({papers})" for name, (what, papers) in MODELS.items())
