"""The one table of models: CLI name -> where its class is, what it is, its papers, its place in the taxonomy,
its named training recipes.

Everything per model that is not the model itself derives from this table: the registry (`genzoo.registry`
imports each `target`), `genzoo list`, the CLI's model choices, the taxonomy of the demo report, and the
recipes of `genzoo recipes` and `genzoo train --recipe` (`genzoo.recipes`). It imports no torch, so that
`genzoo list` and `genzoo --version` answer at once (importing the models takes seconds).
Adding a model is its own file under `genzoo/models/` and one row here (docs/CONTRIBUTING.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
class Stage:
    """A run of another model that a recipe trains first, inside its own run folder (`stages/<name>`)."""

    name: str  # sub-folder of the run's `stages/`
    model: str
    recipe: str  # that model's recipe


@dataclass(frozen=True)
class Recipe:
    """Hyper-parameters for the model and the trainer, by steps or epochs, so that the same command on the same
    machine gives the same weights: `cpu` (the best a 2-core CPU reaches in at most 3 CPU-hours of training) and
    `paper` (the paper's settings, sized for a GPU) for every model."""

    about: str  # one line: what the recipe is and why
    model: dict[str, Any] = field(default_factory=dict)  # model hyper-parameters
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig values
    device: str = "cpu"  # what it is sized for: "cpu" (a 2-core CPU, one thread) or "gpu"
    stages: tuple[Stage, ...] = ()  # runs trained before this one (their outputs feed `model`)
    pairs: int = 0  # > 0: semantic pairs drawn from the `ddpm` stage's run before training (the editor)
    pairs_threshold: float = 0.9  # the evaluator's confidence a pair's two digits need to be kept


@dataclass(frozen=True)
class Entry:
    target: str  # "module:Class" under genzoo.models
    about: str  # what it is, one line (`genzoo list`)
    papers: str  # the papers it follows
    leaf: tuple[str, ...]  # its leaf of the taxonomy, one of LEAVES
    note: str  # what the taxonomy says beside its name
    recipes: dict[str, Recipe]  # recipe name -> recipe; at least "cpu" and "paper"


# CLI name -> its row; the order is the registry's, `genzoo list`'s and the demo's.
MODELS: dict[str, Entry] = {
    "gmm": Entry(
        target="gmm:GMM",
        about="Gaussian mixture over the pixels (or a PCA subspace), fitted by EM",
        papers="Dempster, Laird & Rubin 1977; Tipping & Bishop 1999",
        leaf=MIXTURES,
        note="Gaussian mixture by EM",
        recipes={
            "cpu": Recipe("30 full-covariance Gaussians over 50 principal components, EM on all training digits",
                          model={"n_components": 30, "pca_dim": 50, "max_iter": 100}),
            "paper": Recipe("10 components over 50 principal components (one per digit on average)",
                            model={"n_components": 10, "pca_dim": 50}),
        },
    ),
    "bayes": Entry(
        target="bayes:BayesClassifier",
        about="sampling from a Bayes classifier: p(y) p(x | y), a Gaussian or a Gaussian mixture per digit",
        papers="Murphy 2012, section 4.2; Dempster, Laird & Rubin 1977",
        leaf=MIXTURES,
        note="sampling from a Bayes classifier",
        recipes={
            "cpu": Recipe("10 Gaussians per digit over 50 principal components: sharper samples than one",
                          model={"components_per_class": 10, "pca_dim": 50}),
            "paper": Recipe("one Gaussian per digit (Gaussian discriminant analysis)",
                            model={"components_per_class": 1, "pca_dim": 50}),
        },
    ),
    "rbm": Entry(
        target="rbm:RBM",
        about="restricted Boltzmann machine, CD-k / persistent CD, AIS likelihood",
        papers="Hinton 2002; Tieleman 2008; Salakhutdinov & Murray 2008",
        leaf=EXPLICIT_MARKOV,
        note="restricted Boltzmann machine, CD and AIS",
        recipes={
            "cpu": Recipe("500 hidden units, PCD-1 with 100 chains, 200 epochs annealed by a cosine (Salakhutdinov & "
                          "Murray's model, scored by their AIS)", model={"n_hidden": 500}, train={"epochs": 200}),
            "paper": Recipe("the same model for 100 epochs", model={"n_hidden": 500}, train={"epochs": 100},
                            device="gpu"),
        },
    ),
    "ae": Entry(
        target="ae:Autoencoder",
        about="convolutional autoencoder with a bottleneck",
        papers="Hinton & Salakhutdinov 2006",
        leaf=DIRECT,
        note="autoencoder: a Gaussian fitted to its codes, decoded",
        recipes={
            "cpu": Recipe("the default conv autoencoder for 10 epochs, cosine schedule", train={"epochs": 10}),
            "paper": Recipe("the default conv autoencoder for its 20 epochs", device="gpu"),
        },
    ),
    "dae": Entry(
        target="dae:DenoisingAutoencoder",
        about="denoising autoencoder (Gaussian, salt-and-pepper, masking noise), sampled through its Markov chain",
        papers="Vincent et al. 2008; Bengio et al. 2013",
        leaf=IMPLICIT_MARKOV,
        note="denoising autoencoder through its Markov chain (Bengio et al. 2013)",
        recipes={
            "cpu": Recipe("the default conv denoising autoencoder for 10 epochs, cosine schedule",
                          train={"epochs": 10}),
            "paper": Recipe("the default denoising autoencoder for its epochs", device="gpu"),
        },
    ),
    "vae": Entry(
        target="vae:VAE",
        about="variational autoencoder, Bernoulli decoder, ELBO and IWAE likelihood",
        papers="Kingma & Welling 2014; Burda et al. 2016",
        leaf=VARIATIONAL,
        note="variational autoencoder",
        recipes={
            "cpu": Recipe("the default conv VAE (32-d latent) for 12 epochs, the cosine schedule ending with them",
                          train={"epochs": 12}),
            "paper": Recipe("Kingma & Welling's 784-400-20 MLP VAE for 100 epochs",
                            model={"arch": "mlp", "hidden": 400, "latent_dim": 20}, train={"epochs": 100},
                            device="gpu"),
        },
    ),
    "pixelcnn": Entry(
        target="pixelcnn:PixelCNN",
        about="PixelCNN on binarized digits: masked convolutions, gated, class-conditional; exact likelihood",
        papers="van den Oord et al. 2016",
        leaf=FULLY_VISIBLE,
        note="masked convolutions",
        recipes={
            "cpu": Recipe("a narrow gated PixelCNN (48 channels, 8 layers) for 6 epochs, cosine schedule",
                          model={"gated": True, "channels": 48, "n_layers": 8, "head_channels": 128},
                          train={"epochs": 6, "lr": 2e-3, "warmup_steps": 200}),
            "paper": Recipe("gated PixelCNN, 96 channels, 15 layers, 40 epochs",
                            model={"gated": True, "channels": 96, "n_layers": 15, "head_channels": 256},
                            train={"epochs": 40, "lr": 2e-3, "warmup_steps": 500}, device="gpu"),
        },
    ),
    "pixelrnn": Entry(
        target="pixelrnn:PixelRNN",
        about="PixelRNN on binarized digits: Row LSTM or Diagonal BiLSTM; exact likelihood",
        papers="van den Oord et al. 2016",
        leaf=FULLY_VISIBLE,
        note="Row / Diagonal LSTM",
        recipes={
            "cpu": Recipe("a narrow Row LSTM (32 channels, 4 layers) for 4 epochs, cosine schedule",
                          model={"variant": "row", "n_layers": 4, "channels": 32, "hidden": 32},
                          train={"epochs": 4, "warmup_steps": 200}),
            "paper": Recipe("Diagonal BiLSTM, 7 layers, 30 epochs",
                            model={"variant": "diagonal", "n_layers": 7, "channels": 64, "hidden": 32},
                            train={"epochs": 30, "warmup_steps": 500}, device="gpu"),
        },
    ),
    # The adversarial models' recipes keep their default Adam betas (0.5, 0.999); only length and losses differ.
    "gan": Entry(
        target="gan:GAN",
        about="GAN with fully connected networks",
        papers="Goodfellow et al. 2014",
        leaf=DIRECT,
        note="generative adversarial net",
        recipes={
            "cpu": Recipe("fully connected GAN on the hinge loss (spreads its samples over the digits), 30 epochs",
                          model={"loss": "hinge"}, train={"epochs": 30}),
            "paper": Recipe("Goodfellow et al.'s nonsaturating GAN for its 30 epochs", device="gpu"),
        },
    ),
    "cgan": Entry(
        target="gan:ConditionalGAN",
        about="conditional GAN: the label enters both networks",
        papers="Mirza & Osindero 2014",
        leaf=DIRECT,
        note="conditional GAN",
        recipes={
            "cpu": Recipe("the conditional GAN for its 30 epochs", train={"epochs": 30}),
            "paper": Recipe("Mirza & Osindero's conditional GAN for its 30 epochs", device="gpu"),
        },
    ),
    "dcgan": Entry(
        target="gan:DCGAN",
        about="deep convolutional GAN, optionally class-conditional",
        papers="Radford et al. 2015",
        leaf=DIRECT,
        note="deep convolutional GAN",
        recipes={
            "cpu": Recipe("the DCGAN with InfoGAN's fully connected layers at half width, 20 epochs (every digit at "
                          "its share)", model={"widths": (128, 64), "fc_width": 1024, "d_fc_width": 1024},
                          train={"epochs": 20}),
            "paper": Recipe("Radford et al.'s DCGAN for its 20 epochs", device="gpu"),
        },
    ),
    "ddpm": Entry(
        target="ddpm:DDPM",
        about="denoising diffusion, pixel or latent space; classifier-free guidance, DDIM or ancestral",
        papers="Ho et al. 2020; Nichol & Dhariwal 2021; Song et al. 2021; Ho & Salimans 2022; Rombach et al. 2022",
        leaf=VARIATIONAL,
        note="denoising diffusion (a variational bound; sampled by a Markov chain)",
        recipes={
            "cpu": Recipe("class-conditional latent diffusion: a KL autoencoder to 4x7x7 (first 1,500 steps), then a "
                          "small U-Net, EMA 0.999, 7,000 steps",
                          model={"space": "latent", "noise_schedule": "linear", "widths": (32, 64), "res_blocks": 1,
                                 "ae_widths": (16, 32), "first_stage_steps": 1500, "ema_decay": 0.999},
                          train={"steps": 7_000, "epochs": 0, "batch_size": 128, "lr": 1e-3, "test_images": 1000}),
            "paper": Recipe("pixel-space U-Net (64, 128, 128 channels, dropout 0.1), 40 epochs",
                            model={"widths": (64, 128, 128), "res_blocks": 2, "dropout": 0.1, "ema_decay": 0.9995},
                            train={"epochs": 40, "batch_size": 128, "lr": 2e-4, "warmup_steps": 1000}, device="gpu"),
        },
    ),
    "instruct": Entry(
        target="instruct:InstructPix2Pix",
        about="InstructPix2Pix-style editor: a digit and a free-text instruction in, the edited digit out; two "
              "guidance scales",
        papers="Brooks, Holynski & Efros 2023; Ho et al. 2020; Song et al. 2021",
        leaf=VARIATIONAL,
        note="InstructPix2Pix-style editor",
        recipes={
            "cpu": Recipe("latent editor predicting v: diffusion's cpu run gives the first stage and 2,000 semantic "
                          "pairs, then the editor trains 12,000 steps",
                          model={"space": "latent", "widths": (32, 64), "res_blocks": 1, "attn_resolution": 7,
                                 "ae_widths": (16, 32), "first_stage_steps": 400, "ema_decay": 0.999,
                                 "sample_steps": 10, "prediction": "v", "semantic_fraction": 0.1},
                          train={"steps": 12_000, "epochs": 0, "batch_size": 128, "lr": 1e-3, "warmup_steps": 200,
                                 "grad_clip": 1.0, "test_images": 1000},
                          stages=(Stage("ddpm", "ddpm", "cpu"),), pairs=2000),
            "paper": Recipe("the full-size pixel editor for 40 epochs", model={"dropout": 0.1, "ema_decay": 0.9995},
                            train={"epochs": 40, "batch_size": 128, "lr": 2e-4, "warmup_steps": 1000}, device="gpu"),
        },
    ),
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
