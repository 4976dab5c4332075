"""Semantic edit pairs ("turn this 3 into an 8") drawn from a class-conditional diffusion model and filtered by the
evaluator, as Brooks et al. 2023 make and filter theirs (with Stable Diffusion, prompt-to-prompt and CLIP).

Each candidate is two deterministic DDIM samples (eta = 0) from the same x_T, one of a source digit and one of a
different target digit: the shared noise keeps the style (stroke width, slant), so that the pair differs in the
digit alone. A pair is kept when the evaluator reads the source digit in the first image and the target digit in
the second, each with probability >= threshold (the paper's filter checks both sides). `genzoo semantic-pairs`
(`genzoo.commands.semantic_pairs`) opens the run and writes the file the editor's `semantic_pairs` setting reads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ...config import ConfigError
from ...constants import N_CLASSES
from ..base import CapabilityError
from .edits import semantic_instructions


@dataclass
class SemanticPairs:
    """The kept pairs: inputs, outputs (K, 1, 28, 28) in [0, 1], sources, targets (K,) int64 (the file's tensors),
    one instruction per pair, and how they were made."""

    tensors: dict[str, torch.Tensor]
    instructions: list[str]
    made: int
    threshold: float
    sampling: dict[str, Any] = field(default_factory=dict)

    @property
    def kept(self) -> int:
        return len(self.tensors["inputs"])


def check_request(model, n: int, threshold: float) -> None:
    """Refuse, before any sampling, a count or threshold out of range and a model that cannot draw chosen digits
    with classifier-free guidance (a class-conditional ddpm)."""
    if n < 1 or not 0 <= threshold <= 1:
        raise ConfigError(f"n={n}, threshold={threshold}: need n >= 1 and a threshold in [0, 1] (0 keeps every pair)")
    if not model.conditional or "guidance" not in model.sample_options:
        raise CapabilityError(f"{model.name}: semantic pairs need a class-conditional ddpm run "
                              "(trained with --set conditional=true)")


@torch.no_grad()
def make_semantic_pairs(model, evaluator, n: int = 1000, *, threshold: float = 0.9, steps: int = 50,
                        guidance: float = 2.0, seed: int = 0, batch: int = 250,
                        done: Callable[[int], object] | None = None) -> SemanticPairs:
    """n candidate pairs from `model` (a class-conditional ddpm), those the evaluator reads both sides of kept.

    Args:
        model: draws the pairs (`sample(n, y=, generator=, sampler=, eta=, steps=, guidance=)`).
        evaluator: the evaluator network (`logits(images)` -> (N, 10)), on the model's device.
        n: candidates made; threshold: the evaluator probability both sides need.
        steps, guidance: DDIM steps and classifier-free guidance weight of the samples.
        seed: the digits drawn, the noise of each pair and the instructions' phrasings.
        batch: candidates sampled at a time.
        done: called with the number of candidates each batch drew (a progress bar's update).
    Returns:
        the kept pairs, their instructions and the settings.
    """
    check_request(model, n, threshold)
    g = torch.Generator().manual_seed(seed)
    sources = torch.randint(0, N_CLASSES, (n,), generator=g)
    targets = (sources + torch.randint(1, N_CLASSES, (n,), generator=g)) % N_CLASSES  # a different digit
    options = {"sampler": "ddim", "eta": 0.0, "steps": steps, "guidance": guidance}
    inputs, outputs = [], []
    for start in range(0, n, batch):
        a, b = sources[start:start + batch], targets[start:start + batch]
        noise_seed = seed * 1_000_003 + start  # the same x_T for both digits of a pair
        inputs.append(model.sample(len(a), y=a, generator=torch.Generator().manual_seed(noise_seed), **options).cpu())
        outputs.append(model.sample(len(b), y=b, generator=torch.Generator().manual_seed(noise_seed), **options).cpu())
        if done is not None:
            done(len(a))
    inputs, outputs = torch.cat(inputs), torch.cat(outputs)
    p_in = torch.softmax(evaluator.logits(inputs.to(model.device)), 1).cpu()  # (n, 10)
    p_out = torch.softmax(evaluator.logits(outputs.to(model.device)), 1).cpu()
    keep = (p_in[torch.arange(n), sources] >= threshold) & (p_out[torch.arange(n), targets] >= threshold)
    tensors = {"inputs": inputs[keep].contiguous(), "outputs": outputs[keep].contiguous(),
               "sources": sources[keep].contiguous(), "targets": targets[keep].contiguous()}
    instructions = semantic_instructions(tensors["sources"].tolist(), tensors["targets"].tolist(),
                                         torch.Generator().manual_seed(seed))
    return SemanticPairs(tensors, instructions, n, threshold, options)
