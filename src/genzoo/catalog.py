"""The one table of models: CLI name -> where its class is, what it is, its papers, its place in the taxonomy.

Everything per model that is not the model itself derives from this table: the registry (`genzoo.registry`
imports each `target`), `genzoo list`, the CLI's model choices, and the taxonomy of the demo report. It imports
no torch, so that `genzoo list` and `genzoo --version` answer at once (importing the models takes seconds).
Adding a model is its own file under `genzoo/models/` and one row here (docs/CONTRIBUTING.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# The taxonomy of generative models of Goodfellow's NIPS 2016 tutorial (figure 9), as the paths of its leaves,
# in the order the demo report shows them; a model names its leaf.
FULLY_VISIBLE = ("Explicit density", "Tractable density", "Fully visible belief nets: the chain rule")
MIXTURES = ("Explicit density", "Tractable density", "Mixtures of Gaussians: closed form and EM")
VARIATIONAL = ("Explicit density", "Approximate density", "Variational")
EXPLICIT_MARKOV = ("Explicit density", "Approximate density", "Markov chain")
IMPLICIT_MARKOV = ("Implicit density", "Markov chain")
DIRECT = ("Implicit density", "Direct")
TAXONOMY_ROOT = "Maximum likelihood and beyond"
LEAVES = (FULLY_VISIBLE, MIXTURES, VARIATIONAL, EXPLICIT_MARKOV, IMPLICIT_MARKOV, DIRECT)


@dataclass(frozen=True)
class Entry:
    target: str  # "module:Class" under genzoo.models
    about: str  # what it is, one line (`genzoo list`)
    papers: str  # the papers it follows
    leaf: tuple[str, ...]  # its leaf of the taxonomy, one of LEAVES
    note: str  # what the taxonomy says beside its name


# CLI name -> its row; the order is the registry's, `genzoo list`'s and the demo's.
MODELS: dict[str, Entry] = {
    "gmm": Entry("gmm:GMM", "Gaussian mixture over the pixels (or a PCA subspace), fitted by EM",
                 "Dempster, Laird & Rubin 1977; Tipping & Bishop 1999", MIXTURES, "Gaussian mixture by EM"),
    "bayes": Entry("bayes:BayesClassifier",
                   "sampling from a Bayes classifier: p(y) p(x | y), a Gaussian or a Gaussian mixture per digit",
                   "Murphy 2012, section 4.2; Dempster, Laird & Rubin 1977", MIXTURES,
                   "sampling from a Bayes classifier"),
    "rbm": Entry("rbm:RBM", "restricted Boltzmann machine, CD-k / persistent CD, AIS likelihood",
                 "Hinton 2002; Tieleman 2008; Salakhutdinov & Murray 2008", EXPLICIT_MARKOV,
                 "restricted Boltzmann machine, CD and AIS"),
    "ae": Entry("ae:Autoencoder", "convolutional autoencoder with a bottleneck", "Hinton & Salakhutdinov 2006",
                DIRECT, "autoencoder: a Gaussian fitted to its codes, decoded"),
    "dae": Entry("dae:DenoisingAutoencoder",
                 "denoising autoencoder (Gaussian, salt-and-pepper, masking noise), sampled through its Markov chain",
                 "Vincent et al. 2008; Bengio et al. 2013", IMPLICIT_MARKOV,
                 "denoising autoencoder through its Markov chain (Bengio et al. 2013)"),
    "vae": Entry("vae:VAE", "variational autoencoder, Bernoulli decoder, ELBO and IWAE likelihood",
                 "Kingma & Welling 2014; Burda et al. 2016", VARIATIONAL, "variational autoencoder"),
    "pixelcnn": Entry("pixelcnn:PixelCNN",
                      "PixelCNN on binarized digits: masked convolutions, gated, class-conditional; exact likelihood",
                      "van den Oord et al. 2016", FULLY_VISIBLE, "masked convolutions"),
    "pixelrnn": Entry("pixelrnn:PixelRNN",
                      "PixelRNN on binarized digits: Row LSTM or Diagonal BiLSTM; exact likelihood",
                      "van den Oord et al. 2016", FULLY_VISIBLE, "Row / Diagonal LSTM"),
    "gan": Entry("gan:GAN", "GAN with fully connected networks", "Goodfellow et al. 2014", DIRECT,
                 "generative adversarial net"),
    "cgan": Entry("gan:ConditionalGAN", "conditional GAN: the label enters both networks", "Mirza & Osindero 2014",
                  DIRECT, "conditional GAN"),
    "dcgan": Entry("gan:DCGAN", "deep convolutional GAN, optionally class-conditional", "Radford et al. 2015",
                   DIRECT, "deep convolutional GAN"),
    "ddpm": Entry("ddpm:DDPM",
                  "denoising diffusion, pixel or latent space; classifier-free guidance, DDIM or ancestral",
                  "Ho et al. 2020; Nichol & Dhariwal 2021; Song et al. 2021; Ho & Salimans 2022; Rombach et al. 2022",
                  VARIATIONAL, "denoising diffusion (a variational bound; sampled by a Markov chain)"),
    "instruct": Entry("instruct:InstructPix2Pix",
                      "InstructPix2Pix-style editor: a digit and a free-text instruction in, the edited digit out; "
                      "two guidance scales", "Brooks, Holynski & Efros 2023; Ho et al. 2020; Song et al. 2021",
                      VARIATIONAL, "InstructPix2Pix-style editor"),
}

NAMES = tuple(MODELS)


def listing() -> str:
    """`genzoo list`: one line per model, its name, what it is and its papers."""
    return "\n".join(f"{name:9s} {entry.about} ({entry.papers})" for name, entry in MODELS.items())


def taxonomy() -> tuple[str, list[Any]]:
    """The taxonomy as a tree: (heading, children), a child a heading node or a model name; the leaves in the
    order of LEAVES, the models of a leaf in the table's order. A leaf without a model is left out."""
    root: tuple[str, list[Any]] = (TAXONOMY_ROOT, [])
    for leaf in LEAVES:
        models = [name for name, entry in MODELS.items() if entry.leaf == leaf]
        if not models:
            continue
        node = root
        for heading in leaf:
            node = next((c for c in node[1] if not isinstance(c, str) and c[0] == heading), None) or \
                _append(node, (heading, []))
        node[1].extend(models)
    return root


def _append(node: tuple[str, list[Any]], child: tuple[str, list[Any]]) -> tuple[str, list[Any]]:
    node[1].append(child)
    return child
