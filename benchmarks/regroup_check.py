"""Train every registered model a few steps, evaluate it with fixed small settings, dump the metrics to one JSON.

    python benchmarks/regroup_check.py --out /tmp/after.json
    PYTHONPATH=/path/to/old/checkout/src python benchmarks/regroup_check.py --out /tmp/before.json
    python benchmarks/regroup_check.py --compare /tmp/before.json /tmp/after.json

For code moves that must not change behaviour: run it on the tree before and after the move and compare.
Everything is fixed (seed, tiny networks, the embedded digits, one CPU thread, explicit evaluation settings),
so two trees that compute the same thing give the same numbers, to the last digit. What a run records about
the machine or the clock (times, dates, paths, hardware, version) is left out: those differ between any two runs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Small networks so that every model trains and evaluates in seconds on a CPU.
TINY = {
    "gmm": {"n_components": 3, "pca_dim": 20, "max_iter": 20},
    "bayes": {"pca_dim": 10},
    "rbm": {"n_hidden": 16, "persistent_chains": 32, "gibbs_steps": 20, "ais_betas": 100, "ais_runs": 8},
    "ae": {"channels": 8, "latent_dim": 8},
    "dae": {"channels": 8, "latent_dim": 8},
    "vae": {"channels": 8, "latent_dim": 8, "iwae_k": 8, "iwae_chunk": 4},
    "pixelcnn": {"channels": 8, "n_layers": 2, "head_channels": 8},
    "pixelrnn": {"channels": 8, "n_layers": 1, "hidden": 8, "head_channels": 8},
    "gan": {"latent_dim": 8, "widths": (32, 32)},
    "cgan": {"latent_dim": 8, "widths": (32, 32)},
    "dcgan": {"latent_dim": 8, "widths": (16, 8)},
    "ddpm": {"widths": (8, 16), "res_blocks": 1, "attn_heads": 2, "timesteps": 50, "sample_steps": 4},
    "instruct": {"widths": (8, 16), "res_blocks": 1, "attn_heads": 2, "timesteps": 50, "sample_steps": 4,
                 "text_dim": 16, "text_layers": 1, "text_heads": 2, "trigram_buckets": 64},
}
TRAIN = {"steps": 30, "epochs": 0, "batch_size": 32, "log_every": 10, "n_grid": 16, "lr": 3e-3}
# Every evaluation setting given, so that a change of `evaluate_run`'s defaults does not change the figures.
EVALUATION = {"device": "cpu", "seed": 0, "max_test": 64, "random_subset": False, "iwae_k": 8, "n_samples": 64,
              "ais_betas": 100, "ais_runs": 8, "n_edits": 23}
# Keys whose values describe the machine, the clock or the file system, not what the model computed.
VOLATILE = re.compile(r"seconds|time|per_s|_at$|^hardware$|path|^run$|dir$|version|commit|threads|^device$")


def stable(value: Any) -> Any:
    """`value` without the volatile keys, at any depth; NaN written as a string so that two NaN compare equal."""
    if isinstance(value, dict):
        return {k: stable(v) for k, v in value.items() if not VOLATILE.search(str(k))}
    if isinstance(value, list):
        return [stable(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return value


def evaluate_function():
    """`evaluate_run` wherever the tree under test keeps it."""
    try:
        from genzoo.evaluation.evaluate import evaluate_run
    except ImportError:
        from genzoo.evaluate import evaluate_run
    return evaluate_run


def run_one(name: str, root: Path) -> dict[str, Any]:
    import genzoo
    from genzoo import registry, runs

    unused = registry.get(name).unused_train_keys
    used = {k: v for k, v in TRAIN.items() if k not in unused}
    run = genzoo.train(name, data="embedded", out=root / name, device="cpu", seed=0, train_overrides=used,
                       model_overrides=TINY[name], progress=False)
    evaluate_function()(run, **EVALUATION)
    return {"metrics": stable(json.loads((run / runs.METRICS).read_text())),
            "training_log": stable(runs.read_metrics_log(run))}


def collect(names: list[str]) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    import genzoo

    result: dict[str, Any] = {"genzoo": str(Path(genzoo.__file__).parent), "models": {}}
    with tempfile.TemporaryDirectory(prefix="regroup_check_") as tmp:
        for name in names:
            start = time.perf_counter()
            result["models"][name] = run_one(name, Path(tmp))
            print(f"{name}: {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    return result


def differences(before: Any, after: Any, where: str = "") -> list[str]:
    """Every path at which the two JSON values differ, with both values."""
    if isinstance(before, dict) and isinstance(after, dict):
        out = []
        for key in sorted(set(before) | set(after)):
            if key not in after:
                out.append(f"{where}/{key}: only before ({before[key]!r})")
            elif key not in before:
                out.append(f"{where}/{key}: only after ({after[key]!r})")
            else:
                out.extend(differences(before[key], after[key], f"{where}/{key}"))
        return out
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        return [d for i, (b, a) in enumerate(zip(before, after)) for d in differences(b, a, f"{where}[{i}]")]
    return [] if before == after else [f"{where}: {before!r} -> {after!r}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="the JSON file to write")
    parser.add_argument("--models", default="", help="comma-separated model names (default: every registered)")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"),
                        help="compare two files written by --out; exit 1 when they differ")
    args = parser.parse_args(argv)
    if args.compare:
        before, after = (json.loads(p.read_text())["models"] for p in args.compare)
        diffs = differences(before, after)
        print("\n".join(diffs) if diffs else f"identical: {len(after)} models")
        return 1 if diffs else 0
    if args.out is None:
        parser.error("give --out FILE (or --compare BEFORE AFTER)")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from genzoo import registry

    names = [n for n in args.models.split(",") if n] or list(registry.MODELS)
    unknown = sorted(set(names) - set(TINY))
    if unknown:
        parser.error(f"no tiny config for {', '.join(unknown)}; add one to TINY in {__file__}")
    result = collect(names)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1, sort_keys=True))
    tmp.replace(args.out)
    print(f"wrote {args.out} ({len(names)} models)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
