"""Named training recipes: for every model, `cpu` (the best a 2-core CPU reaches in at most 3 CPU-hours of
training) and `paper` (the paper's settings, sized for a GPU), run by `genzoo train MODEL --recipe NAME`.

A recipe is hyper-parameters for the model and the trainer, given by steps or epochs so that the same
command on the same machine gives the same weights. A recipe may need the run of another model first:
the editor's `cpu` recipe starts from the latent first stage of diffusion's `cpu` run and learns from
semantic pairs that run draws; `genzoo train instruct --recipe cpu` runs every stage into sub-folders of
its run, each stage resumable like any run.

This module imports no torch: `genzoo recipes` answers at once. The figures a recipe reached are read from
the manifest of the shipped weights (`genzoo.pretrained`), never written here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class RecipeError(ValueError):
    """An unknown model or recipe name: the message lists the known ones."""


@dataclass(frozen=True)
class Stage:
    """A run of another model that a recipe trains first, inside its own run folder (`stages/<name>`)."""

    name: str  # sub-folder of the run's `stages/`
    model: str
    recipe: str  # that model's recipe


@dataclass(frozen=True)
class Recipe:
    about: str  # one line: what the recipe is and why
    model: dict[str, Any] = field(default_factory=dict)  # model hyper-parameters
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig values
    device: str = "cpu"  # what it is sized for: "cpu" (a 2-core CPU, one thread) or "gpu"
    stages: tuple[Stage, ...] = ()  # runs trained before this one (their outputs feed `model`)
    pairs: int = 0  # > 0: semantic pairs drawn from the `ddpm` stage's run before training (the editor)
    pairs_threshold: float = 0.9  # the evaluator's confidence a pair's two digits need to be kept


# Adversarial models keep their default Adam betas (0.5, 0.999); only length and losses differ.
_DDPM_LATENT = {"space": "latent", "noise_schedule": "linear", "widths": (32, 64), "res_blocks": 1,
                "ae_widths": (16, 32), "first_stage_steps": 1500, "ema_decay": 0.999}

RECIPES: dict[str, dict[str, Recipe]] = {
    "gmm": {
        "cpu": Recipe("30 full-covariance Gaussians over 50 principal components, EM on all training digits",
                      model={"n_components": 30, "pca_dim": 50, "max_iter": 100}),
        "paper": Recipe("10 components over 50 principal components (one per digit on average)",
                        model={"n_components": 10, "pca_dim": 50}),
    },
    "bayes": {
        "cpu": Recipe("10 Gaussians per digit over 50 principal components: sharper samples than one",
                      model={"components_per_class": 10, "pca_dim": 50}),
        "paper": Recipe("one Gaussian per digit (Gaussian discriminant analysis)",
                        model={"components_per_class": 1, "pca_dim": 50}),
    },
    "rbm": {
        "cpu": Recipe("500 hidden units, PCD-1 with 100 chains, 200 epochs annealed by a cosine (Salakhutdinov & "
                      "Murray's model, scored by their AIS)", model={"n_hidden": 500}, train={"epochs": 200}),
        "paper": Recipe("the same model for 100 epochs", model={"n_hidden": 500}, train={"epochs": 100},
                        device="gpu"),
    },
    "ae": {
        "cpu": Recipe("the default conv autoencoder for 10 epochs, cosine schedule", train={"epochs": 10}),
        "paper": Recipe("the default conv autoencoder for its 20 epochs", device="gpu"),
    },
    "dae": {
        "cpu": Recipe("the default conv denoising autoencoder for 10 epochs, cosine schedule", train={"epochs": 10}),
        "paper": Recipe("the default denoising autoencoder for its epochs", device="gpu"),
    },
    "vae": {
        "cpu": Recipe("the default conv VAE (32-d latent) for 25 epochs, the cosine schedule ending with them",
                      train={"epochs": 25}),
        "paper": Recipe("Kingma & Welling's 784-400-20 MLP VAE for 100 epochs",
                        model={"arch": "mlp", "hidden": 400, "latent_dim": 20}, train={"epochs": 100},
                        device="gpu"),
    },
    "gan": {
        "cpu": Recipe("fully connected GAN on the hinge loss (spreads its samples over the digits), 30 epochs",
                      model={"loss": "hinge"}, train={"epochs": 30}),
        "paper": Recipe("Goodfellow et al.'s nonsaturating GAN for its 30 epochs", device="gpu"),
    },
    "cgan": {
        "cpu": Recipe("the conditional GAN for its 30 epochs", train={"epochs": 30}),
        "paper": Recipe("Mirza & Osindero's conditional GAN for its 30 epochs", device="gpu"),
    },
    "dcgan": {
        "cpu": Recipe("the DCGAN with InfoGAN's fully connected layers at half width, 20 epochs (every digit at "
                      "its share)", model={"widths": (128, 64), "fc_width": 1024, "d_fc_width": 1024},
                      train={"epochs": 20}),
        "paper": Recipe("Radford et al.'s DCGAN for its 20 epochs", device="gpu"),
    },
    "pixelcnn": {
        "cpu": Recipe("a narrow gated PixelCNN (48 channels, 8 layers) for 6 epochs, cosine schedule",
                      model={"gated": True, "channels": 48, "n_layers": 8, "head_channels": 128},
                      train={"epochs": 6, "lr": 2e-3, "warmup_steps": 200}),
        "paper": Recipe("gated PixelCNN, 96 channels, 15 layers, 40 epochs",
                        model={"gated": True, "channels": 96, "n_layers": 15, "head_channels": 256},
                        train={"epochs": 40, "lr": 2e-3, "warmup_steps": 500}, device="gpu"),
    },
    "pixelrnn": {
        "cpu": Recipe("a narrow Row LSTM (32 channels, 4 layers) for 4 epochs, cosine schedule",
                      model={"variant": "row", "n_layers": 4, "channels": 32, "hidden": 32},
                      train={"epochs": 4, "warmup_steps": 200}),
        "paper": Recipe("Diagonal BiLSTM, 7 layers, 30 epochs",
                        model={"variant": "diagonal", "n_layers": 7, "channels": 64, "hidden": 32},
                        train={"epochs": 30, "warmup_steps": 500}, device="gpu"),
    },
    "ddpm": {
        "cpu": Recipe("class-conditional latent diffusion: a KL autoencoder to 4x7x7 (first 1,500 steps), then a "
                      "small U-Net, EMA 0.999, 7,000 steps", model=_DDPM_LATENT,
                      train={"steps": 7_000, "epochs": 0, "batch_size": 128, "lr": 1e-3, "test_images": 1000}),
        "paper": Recipe("pixel-space U-Net (64, 128, 128 channels, dropout 0.1), 40 epochs",
                        model={"widths": (64, 128, 128), "res_blocks": 2, "dropout": 0.1, "ema_decay": 0.9995},
                        train={"epochs": 40, "batch_size": 128, "lr": 2e-4, "warmup_steps": 1000}, device="gpu"),
    },
    "instruct": {
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
}


def get(model: str, name: str) -> Recipe:
    """The recipe `name` of `model`; an unknown one is an error listing the known ones."""
    if model not in RECIPES:
        raise RecipeError(f"no recipes for model {model!r}; models with recipes: {', '.join(RECIPES)}")
    if name not in RECIPES[model]:
        raise RecipeError(f"{model}: no recipe {name!r}; its recipes: {', '.join(RECIPES[model])} "
                          f"(`genzoo recipes {model}` describes them)")
    return RECIPES[model][name]


def command(model: str, name: str) -> str:
    """The command that trains a recipe on full MNIST."""
    return f"genzoo train {model} --recipe {name} --data mnist --out runs/{model}-{name}"


def listing(model: str | None = None) -> str:
    """`genzoo recipes [MODEL]`: each recipe of each model (or of one), what it is, the command, the time on a
    2-core CPU and the figures its shipped weights reached."""
    from . import pretrained  # a manifest reader: no torch

    shipped = pretrained.manifest()["models"]
    lines = []
    for name in [model] if model else RECIPES:
        if name not in RECIPES:
            raise RecipeError(f"no recipes for model {name!r}; models with recipes: {', '.join(RECIPES)}")
        lines.append(name)
        for key, recipe in RECIPES[name].items():
            entry = shipped.get(name) if shipped.get(name, {}).get("recipe") == key else None
            hours = ("sized for a GPU" if recipe.device == "gpu" else
                     f"{entry['cpu_seconds'] / 3600:.2f} CPU-hours on a 2-core CPU, one thread" if entry else
                     "for a 2-core CPU; its time is not measured yet")
            lines.append(f"  {key:6s} {recipe.about} ({hours})")
            lines.append(f"         {command(name, key)}")
            if entry:
                lines.append(f"         reached (shipped as pretrained:{name}): {pretrained.headline(entry)}")
    return "\n".join(lines)
