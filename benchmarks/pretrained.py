"""Build the shipped weights (src/genzoo/pretrained/): train a family's `cpu` recipe on full MNIST, evaluate it on
the whole test set, and pack it with its manifest entry.

    # the whole of it for one family: train (resumable: the same command goes on after a cut), evaluate, pack
    OMP_NUM_THREADS=1 python benchmarks/pretrained.py build cgan --data ../shared/data/mnist --runs runs/ship
    # pack a run trained already by `genzoo train MODEL --recipe cpu`, with the CPU-seconds its training took
    python benchmarks/pretrained.py pack cgan --run runs/ship/cgan --cpu-seconds 1234 --commit <sha>

Training runs on one thread (OMP_NUM_THREADS=1), so that its CPU-seconds are a 2-core machine's time with the
other core free. The evaluation uses each family's full protocol on the 10,000 test digits (`EVALUATION`);
its JSON ships beside the weights. Packing keeps only the weights sampling needs
(`genzoo.pretrained.weights.shipped_state`), in float16 where the re-score on the fixed subset
(`genzoo.pretrained.check.subset_figures`) moves by less than `FP16_TOLERANCE`, and records that re-score in the
manifest, where tests/test_pretrained.py checks it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from genzoo import pretrained, recipes, runs
from genzoo.commands import train
from genzoo.data import load_data
from genzoo.evaluate import evaluate_run
from genzoo.pretrained.check import subset_figures
from genzoo.pretrained.weights import shipped_state

ROOT = Path(pretrained.__file__).parent
# evaluate_run settings on the full test set, per family (the rest: every test digit, 10,000 samples)
EVALUATION = {
    "vae": {"iwae_k": 1000},
    "rbm": {"ais_betas": 14_500, "ais_runs": 100},
    "pixelcnn": {"n_samples": 1000},
    "pixelrnn": {"n_samples": 1000},
    "ddpm": {"sample_options": {"sampler": "ddim", "steps": 50, "guidance": 2.0}},
    "instruct": {"n_edits": 23_000, "n_samples": 0},
}
FP16_TOLERANCE = 2e-3  # relative change of every re-score figure that float16 weights may make
# the evaluation's figures a manifest headline quotes, in this order, where the evaluation has them
HEADLINE = {"nll_nats": ("NLL", "{:.2f} nats"), "fid": ("FID-style", "{:.2f}"),
            "conditional_accuracy": ("conditional accuracy", "{:.2%}"), "precision": ("precision", "{:.3f}"),
            "recall": ("recall", "{:.3f}"), "class_entropy_bits": ("class entropy", "{:.2f} bits"),
            "reconstruction_mse": ("reconstruction MSE", "{:.4f}"), "edit_psnr": ("edit PSNR", "{:.2f} dB")}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def headline(model: str, evaluation: dict) -> dict[str, str]:
    out = {}
    for key, (label, fmt) in HEADLINE.items():
        if key in evaluation and isinstance(evaluation[key], dict) and evaluation[key].get("value") is not None:
            n = evaluation[key].get("n")
            out[f"{label} ({n:,})" if n else label] = fmt.format(evaluation[key]["value"])
    if "psnr_denoised_gaussian" in evaluation:
        out["denoised PSNR, Gaussian noise 0.5"] = f"{evaluation['psnr_denoised_gaussian']['value']:.2f} dB"
    return out


def to_half(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """float32 tensors that float16 holds (|x| < 60,000) as float16; the rest as they are."""
    return {k: v.half() if v.dtype == torch.float32 and (v.numel() == 0 or float(v.abs().max()) < 6e4) else v
            for k, v in state.items()}


def close(a: dict[str, float], b: dict[str, float]) -> bool:
    return a.keys() == b.keys() and all(math.isclose(a[k], b[k], rel_tol=FP16_TOLERANCE, abs_tol=1e-6) for k in a)


def pack(model_name: str, run: Path, cpu_s: float, commit: str, data: str) -> dict:
    """Evaluate `run` on the full test set, write src/genzoo/pretrained/MODEL/ and its manifest entry."""
    config = runs.read_config(run)
    if config["train"].get("recipe") != "cpu":
        sys.exit(f"{run}: trained with recipe {config['train'].get('recipe')!r}; ship only the cpu recipe")
    print(f"{model_name}: evaluating on the full test set ...", file=sys.stderr)
    evaluation = evaluate_run(run, device="cpu", seed=0, **EVALUATION.get(model_name, {}))
    model = runs.load(run, "cpu")
    dataset = load_data(data, verbose=False)
    exact = subset_figures(model, dataset)
    state = shipped_state(model)
    half = to_half(state)
    model.load_state_dict({**model.state_dict(), **half})  # float16 values, cast back into the float32 model
    halved = subset_figures(model, dataset)
    chosen, dtype = (half, "float16") if close(exact, halved) else (state, "float32")
    figures = halved if dtype == "float16" else exact
    target = ROOT / model_name
    target.mkdir(exist_ok=True)
    save_file({k: v.contiguous() for k, v in chosen.items()}, str(target / "model.safetensors"))
    shipped_config = {**config, "data": "auto",  # MNIST where the user has it, else the embedded digits
                      "shipped": {"dtype": dtype, "left_out": sorted(set(model.state_dict()) - set(chosen))}}
    (target / "config.json").write_text(json.dumps(shipped_config, indent=2) + "\n")
    (target / "evaluation.json").write_text(json.dumps(evaluation, indent=2) + "\n")
    entry = {"model": model_name, "recipe": "cpu", "command": recipes.command(model_name, "cpu"),
             "commit": commit, "cpu_seconds": round(cpu_s, 1), "trained_step": evaluation.get("trained_step"),
             "dtype": dtype, "headline": headline(model_name, evaluation), "subset": figures,
             "packed_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
             "files": {p.name: sha256(p) for p in sorted(target.iterdir()) if p.is_file()}}
    manifest = pretrained.manifest()
    manifest["models"][model_name] = entry
    manifest["models"] = dict(sorted(manifest["models"].items()))
    pretrained.MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n")
    return entry


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="train the cpu recipe (resumable), evaluate, pack")
    b.add_argument("model", choices=list(recipes.RECIPES))
    b.add_argument("--data", default="mnist")
    b.add_argument("--runs", default="runs/ship")
    k = sub.add_parser("pack", help="evaluate and pack a run trained with --recipe cpu")
    k.add_argument("model", choices=list(recipes.RECIPES))
    k.add_argument("--run", required=True)
    k.add_argument("--cpu-seconds", type=float, required=True, help="CPU-seconds its training took")
    k.add_argument("--commit", required=True, help="the commit that trained it")
    k.add_argument("--data", default="mnist")
    args = p.parse_args()
    if args.command == "build":
        run = Path(args.runs) / args.model
        spent = run / "training_cpu_seconds.json"  # summed over the commands that trained it
        before = json.loads(spent.read_text())["cpu_seconds"] if spent.exists() else 0.0
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
        began = cpu_seconds()
        resume = (run / runs.CONFIG).exists()
        train(args.model, data=args.data, out=str(run), device="cpu", resume=resume,
              recipe=None if resume else "cpu")
        total = before + cpu_seconds() - began
        spent.write_text(json.dumps({"cpu_seconds": total, "commit": commit}) + "\n")
        entry = pack(args.model, run, total, commit, args.data)
    else:
        entry = pack(args.model, Path(args.run), args.cpu_seconds, args.commit, args.data)
    print(json.dumps(entry, indent=2))


if __name__ == "__main__":
    main()
