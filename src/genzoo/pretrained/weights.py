"""The weights that ship for a model, and how they are made whole again when it is loaded.

Only what sampling, scoring and editing need ships: a model declares its training-only weights (a GAN's
discriminator) and its averaged copies (an EMA that stands in for the network it averages), so the online
network of an EMA pair ships once, as its average.
"""

from __future__ import annotations

import torch


def shipped_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The weights that ship: all but the training-only ones, and, where an average stands in for a trained
    network, the average alone."""
    state = model.state_dict()
    averaged = {online for avg, online in model.averaged_weights.items() if any(k.startswith(avg) for k in state)}
    dropped = tuple(model.training_only_weights) + tuple(averaged)
    return {k: v for k, v in state.items() if not k.startswith(dropped)}


def complete_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Shipped weights made whole for `model`: each averaged copy also fills the weights it averages, and the
    training-only weights keep the model's fresh initialisation."""
    full = dict(state)
    for avg, online in model.averaged_weights.items():
        for key, value in state.items():
            if key.startswith(avg):
                full.setdefault(online + key[len(avg):], value)
    for key, value in model.state_dict().items():
        if key.startswith(tuple(model.training_only_weights)):
            full.setdefault(key, value)
    return full
