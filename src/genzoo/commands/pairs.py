"""`genzoo semantic-pairs DDPM_RUN`: the editor's semantic training pairs, drawn from a diffusion run and kept
where the evaluator agrees (the computation is `genzoo.models.instruct.pairs`; this verb opens the run and writes
the files)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .. import runs
from ..training import progress
from ..training.devices import resolve_device
from .drawing import write_rows


def semantic_pairs(ddpm_run: str | Path, out: str | Path, n: int = 1000, *, threshold: float = 0.9,
                   steps: int = 50, guidance: float = 2.0, seed: int = 0, batch: int = 250,
                   device: str = "auto") -> str:
    """`genzoo semantic-pairs DDPM_RUN --out DIR`: candidate semantic edits ("turn this 3 into an 8") from a
    class-conditional diffusion run, filtered by the evaluator (`genzoo.models.instruct.pairs`: a pair is kept
    when the evaluator reads the source digit in the first image and the target digit in the second, each with
    probability >= threshold). Writes DIR/pairs.safetensors (inputs, outputs, sources, targets), DIR/pairs.json
    (counts, settings, instructions) and DIR/pairs.png (the first 16 kept pairs); returns a line with how many
    were made and kept.
    """
    from safetensors.torch import save_file

    from ..evaluation.evaluator import load_evaluator
    from ..models.instruct.pairs import check_request, make_semantic_pairs

    model = runs.load(ddpm_run, resolve_device(device))
    check_request(model, n, threshold)
    with progress.bar(n, "semantic pairs", "pair", enabled=True) as bar:
        made = make_semantic_pairs(model, load_evaluator(model.device), n, threshold=threshold, steps=steps,
                                   guidance=guidance, seed=seed, batch=batch, done=bar.update)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file(made.tensors, str(out / "pairs.safetensors"))
    record = {"ddpm_run": str(ddpm_run), "made": n, "kept": made.kept, "threshold": threshold,
              "sampling": made.sampling, "seed": seed, "instructions": made.instructions}
    runs.atomic_write_text(out / "pairs.json", json.dumps(record, indent=2) + "\n")
    if made.kept:
        shown = min(16, made.kept)
        write_rows(torch.stack([made.tensors["inputs"][:shown], made.tensors["outputs"][:shown]]),
                    out / "pairs.png")
    return f"made {n} candidate pairs, kept {made.kept} (evaluator probability >= {threshold:g} for both)" \
           f"; written to {out}"
