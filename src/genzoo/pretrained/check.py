"""What a shipped model's weights must give: a re-score on a small fixed subset.

`subset_figures` is computed once when a model is packed (benchmarks/pretrained.py) and recorded in the
manifest; tests/test_pretrained.py computes it again from the installed files, so weights that do not give
their recorded figures fail. It is cheap by design: likelihoods where a model has one, else samples.
"""

from __future__ import annotations

from typing import Any

import torch

from ..data import Dataset, fixed_binarization
from ..evaluation.evaluate import denoising_metrics, editing_metrics, per_image_log_prob
from ..evaluation.scoring import model_sample_quality
from ..metrics import psnr

SUBSET = 300  # the first test digits scored
SAMPLES = 300  # samples drawn, seed 0, for a model without a likelihood
EDITS = 92  # four of every edit kind
IWAE_K = 50  # importance samples of an IWAE re-score
SEED = 0


@torch.no_grad()
def subset_figures(model: torch.nn.Module, data: Dataset) -> dict[str, float]:
    """The re-score: deterministic figures of `model` on the first SUBSET test digits (seeded draws).

    nll_nats: mean -log p of the digits (fixed binarization for Bernoulli models; IWAE_K samples where the
    likelihood is importance-sampled); recon_psnr / denoise_psnr: reconstructions and denoised digits (its
    trained noise) against the digits; fid / precision / recall: SAMPLES samples against the digits, for a
    model without a likelihood; edit_psnr: EDITS edits against their exact outputs.
    """
    x = data.test_x[:SUBSET].to(model.device)
    out: dict[str, float] = {}
    if model.can_edit:
        return {"edit_psnr": editing_metrics(model, x, EDITS, SEED)["edit_psnr"]["value"]}
    if model.log_prob_kind is not None:
        binary = (fixed_binarization(data.test_x)[:SUBSET] if model.binary_data else data.test_x[:SUBSET])
        options: dict[str, Any] = {"k": IWAE_K} if "k" in model.log_prob_options else {}
        if "generator" in model.log_prob_options:
            options["generator"] = torch.Generator(model.device).manual_seed(SEED)
        out["nll_nats"] = float(-per_image_log_prob(model, binary.to(model.device), **options).mean())
    if model.can_reconstruct:
        out["recon_psnr"] = float(psnr(model.reconstruct(x), x).mean())
    if model.can_denoise:
        trained = f"{model.config.noise.replace('-', '_')}"
        out["denoise_psnr"] = denoising_metrics(model, x, SEED)[f"psnr_denoised_{trained}"]["value"]
    if model.log_prob_kind is None and model.can_sample and not model.can_reconstruct:
        scores = model_sample_quality(model, x, SAMPLES, SEED)
        out.update({key: scores[key]["value"] for key in ("fid", "precision", "recall")})
        if "conditional_accuracy" in scores:
            out["conditional_accuracy"] = scores["conditional_accuracy"]["value"]
    return out
