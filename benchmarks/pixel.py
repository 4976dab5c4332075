"""Benchmark of the autoregressive pixel models: test NLL, time to quality, sampling speed.

    python benchmarks/pixel.py --device cuda --out results.json            # everything (GPU)
    python benchmarks/pixel.py --device cpu --skip-train --out cpu.json    # sampling speed only
    python benchmarks/pixel.py --device cuda --speed-steps 50 --out speed.json   # training speed only

Time to quality comes from the trainer's test NLL at every epoch end (`minutes_to_nll`).

Targets, test NLL on binarized MNIST in nats:
    PixelCNN <= 81.3 (van den Oord et al. 2016: 81.30), and <= 81.45 within 15 minutes on one H100
    Diagonal BiLSTM <= 80.0 (paper: 79.20 with 7 layers); best of ours <= 79.0
    sampling 100 digits on GPU: cached sampler >= 20x faster than the naive one, same batch
The papers' numbers are on the fixed binarization of Murray & Salakhutdinov (2008);
ours are on `genzoo.data.FIXED_BINARIZATION` (one seeded Bernoulli draw of the test set)
and training uses dynamic binarization: comparable in spirit, not the same draw.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import genzoo
from genzoo import recipes as genzoo_recipes
from genzoo.data import FIXED_BINARIZATION, fixed_binarization, load_data
from genzoo.models.autoregressive import generate
from genzoo.trainer import train_or_resume

# name -> (model, model overrides, train overrides, NLL target in nats): the package's recipes
# (`genzoo recipes pixelcnn`, `... pixelrnn`) as MODEL-NAME and this benchmark's own beside them.
RECIPES = {
    **{f"{model}-{name}": (model, recipe.model, recipe.train, None)
       for model in ("pixelcnn", "pixelrnn") for name, recipe in genzoo_recipes.RECIPES[model].items()},
    # the 15-minute PixelCNN: gated, bf16 autocast (trainer default on CUDA), whole data on the GPU
    "pixelcnn-gated": ("pixelcnn", {"gated": True, "channels": 96, "n_layers": 15, "head_channels": 256},
                       {"epochs": 40, "batch_size": 128, "lr": 2e-3, "schedule": "cosine", "warmup_steps": 500,
                        "grad_clip": 1.0, "time_budget": 14 * 60, "sample_every": 10}, 81.3),
    "pixelcnn": ("pixelcnn", {"channels": 128, "n_layers": 12, "head_channels": 256},
                 {"epochs": 30, "batch_size": 128, "lr": 1e-3, "schedule": "cosine", "warmup_steps": 500,
                  "grad_clip": 1.0}, 81.3),
    "pixelrnn-diagonal": ("pixelrnn", {"variant": "diagonal", "n_layers": 7, "channels": 64, "hidden": 32},
                          {"epochs": 30, "batch_size": 128, "lr": 1e-3, "schedule": "cosine", "warmup_steps": 500,
                           "grad_clip": 1.0}, 80.0),
    "pixelrnn-row": ("pixelrnn", {"variant": "row", "n_layers": 7, "channels": 64, "hidden": 32},
                     {"epochs": 30, "batch_size": 128, "lr": 1e-3, "schedule": "cosine", "warmup_steps": 500,
                      "grad_clip": 1.0}, None),
}


@torch.no_grad()
def test_nll(model, test_x: torch.Tensor, batch: int = 500) -> float:
    """Mean -log p(x) in nats over the fixed binarization of test_x (float32, no autocast)."""
    x = fixed_binarization(test_x).to(model.device)
    total = sum(-model.log_prob(x[k : k + batch]).double().sum().item() for k in range(0, len(x), batch))
    return total / len(x)


def minutes_to(log: list[dict], nll: float) -> float | None:
    """Training minutes (the trainer's clock) to the first epoch end whose test NLL is <= nll, else None.

    The trainer's pass over the test set at each epoch end logs test_loss, which for a pixel
    model is its exact NLL on the fixed binarization (the figure `test_nll` gives at the end).
    """
    return next((r["time"] / 60 for r in log if r.get("test_loss", float("inf")) <= nll), None)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_sampler(model, method: str, n: int, seed: int = 0) -> tuple[float, torch.Tensor]:
    """Seconds to draw n digits with `method` ("cached" or "naive"), and the digits."""
    size = model.image_size
    u = torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(seed)).to(model.device)
    sync(model.device)
    start = time.perf_counter()
    x = generate(model, u, method=method)
    sync(model.device)
    return time.perf_counter() - start, x


@torch.no_grad()
def estimate_naive(model, n: int, passes: int = 5) -> float:
    """The naive sampler's time for n digits, from `passes` whole-network passes times H * W."""
    x = torch.zeros(n, 1, model.image_size, model.image_size, device=model.device)
    model.logits(x)  # warm-up
    sync(model.device)
    start = time.perf_counter()
    for _ in range(passes):
        model.logits(x)
    sync(model.device)
    return (time.perf_counter() - start) / passes * model.image_size**2


def speed_probe(name, model_name, model_over, train_over, data, device, args) -> dict:
    """Training images/s of a recipe through the shared trainer, over `args.speed_steps` steps after 5."""
    probe = {
        **train_over,
        "epochs": 0,
        "steps": args.speed_steps + 5,
        "log_every": 5,
        "sample_every": 0,
        "time_budget": 0,
        "test_every": 0,
    }
    run = genzoo.train(model_name, data, out=Path(args.runs) / f"{name}-speed", device=device, seed=0, progress=False,
                       train_overrides=probe, model_overrides=model_over, overwrite=True)
    images_per_s = genzoo.runs.steady_images_per_s(run)
    epoch_s = len(data.train_x) / images_per_s
    print(f"{name}: {images_per_s:,.0f} training images/s at batch {train_over['batch_size']} on {device}, "
          f"{epoch_s:.1f} s per epoch of {len(data.train_x):,}", flush=True)
    return {"train_images_per_s": images_per_s, "seconds_per_epoch": epoch_s, "speed_steps": args.speed_steps,
            "torch_threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--data", default="mnist", help="a --data value (default: full MNIST)")
    parser.add_argument("--recipes", default="pixelcnn-gated,pixelcnn,pixelrnn-diagonal,pixelrnn-row",
                        help=f"comma-separated, from {', '.join(RECIPES)}")
    parser.add_argument("--runs", default="runs/pixel", help="folder for the run folders")
    parser.add_argument("--skip-train", action="store_true", help="untrained models: sampling speed only")
    parser.add_argument("--resume", action="store_true", help="continue runs that have a checkpoint")
    parser.add_argument("--speed-steps", type=int, default=0,
                        help="> 0: a training speed probe only: N steps of each recipe after 5 of warm-up")
    parser.add_argument("--epochs", type=int, default=0, help="override every recipe's epochs (0: the recipe's)")
    parser.add_argument("--time-budget", type=float, default=-1, help="override the training time budget, seconds")
    parser.add_argument("--sample-n", type=int, default=100, help="digits for the cached vs naive comparison")
    parser.add_argument("--naive-estimate", action="store_true",
                        help="estimate the naive sampler from 5 network passes x H*W instead of running it (slow CPUs)")
    parser.add_argument("--cpu-digits", type=int, default=2, help="digits for CPU seconds per digit (0: skip)")
    parser.add_argument("--out", default="results.json")
    args = parser.parse_args()

    device = torch.device(args.device)
    torch.backends.cudnn.allow_tf32 = False  # sampling comparisons in true fp32
    torch.backends.cuda.matmul.allow_tf32 = False
    if args.speed_steps and args.skip_train:
        parser.error("--speed-steps trains (briefly); drop --skip-train")
    data = None if args.skip_train else load_data(args.data)
    results = {"device": genzoo.runs.hardware(device), "binarization": FIXED_BINARIZATION, "recipes": {}}
    for name in args.recipes.split(","):
        model_name, model_over, train_over, target = RECIPES[name]
        train_over = dict(train_over)
        if args.epochs:
            train_over["epochs"] = args.epochs
        if args.time_budget >= 0:
            train_over["time_budget"] = args.time_budget
        row: dict = {"model": model_name, "hparams": model_over, "train": train_over, "nll_target": target}
        if args.speed_steps:
            results["recipes"][name] = {
                **row,
                **speed_probe(name, model_name, model_over, train_over, data, device, args),
            }
            continue
        if args.skip_train:
            torch.manual_seed(0)
            model = genzoo.create(model_name, **model_over).to(device)
        else:
            run = Path(args.runs) / name
            train_or_resume(model_name, data, run, resume=args.resume, device=device, seed=0,
                            train_overrides=train_over, model_overrides=model_over)
            # the trainer's own clock, summed over resumed sessions
            log = genzoo.runs.read_metrics_log(run)
            ends = [r for r in log if r.get("event") == "end"]
            row["train_seconds"] = ends[-1]["train_seconds"] if ends else None
            row["train_steps"] = ends[-1]["step"] if ends else None
            # time to quality, from the per-epoch test NLL (pytorch-generative's PixelCNN: 81.45 after ~3 h on an H100)
            row["minutes_to_nll"] = {str(level): minutes_to(log, level) for level in (81.45, target) if level}
            row["test_nll_by_epoch"] = [round(r["test_loss"], 3) for r in log if "test_loss" in r]
            model = genzoo.load(run, device=device)
            row["test_nll_nats"] = test_nll(model, data.test_x)
            row["test_bits_per_dim"] = row["test_nll_nats"] / (784 * 0.6931471805599453)
            row["meets_target"] = target is None or row["test_nll_nats"] <= target
            reached = ", ".join(f"<= {level} after {m:.1f} min" if m is not None else f"never <= {level}"
                                for level, m in row["minutes_to_nll"].items())
            print(f"{name}: test NLL {row['test_nll_nats']:.2f} nats (target {target}), "
                  f"trained in {row['train_seconds'] / 60:.1f} min; at epoch ends: {reached}", flush=True)
        row["parameters"] = model.n_parameters()
        model.eval()

        fast_s, fast_x = time_sampler(model, "cached", args.sample_n)
        if args.naive_estimate:
            naive_s, differing = estimate_naive(model, args.sample_n), None
        else:
            naive_s, naive_x = time_sampler(model, "naive", args.sample_n)
            # float rounding differs between whole-image and row convolutions; one flipped pixel
            # changes the rest of its image, so count images as well as pixels
            differing = int((fast_x != naive_x).sum().item())
            row["differing_images"] = int((fast_x != naive_x).flatten(1).any(1).sum().item())
        row["sampling"] = {
            "device": str(device), "n": args.sample_n, "cached_seconds": fast_s, "naive_seconds": naive_s,
            "naive_estimated": args.naive_estimate, "speedup": naive_s / fast_s, "differing_pixels": differing,
        }
        print(f"{name}: {args.sample_n} digits on {device}: cached {fast_s:.2f} s, naive {naive_s:.2f} s"
              f"{' (estimated)' if args.naive_estimate else ''}, speed-up {naive_s / fast_s:.1f}x, "
              f"differing pixels {differing}", flush=True)
        if args.cpu_digits:
            cpu_model = model.to("cpu")
            seconds, _ = time_sampler(cpu_model, "cached", args.cpu_digits)
            row["cpu_cached_seconds_per_digit"] = seconds / args.cpu_digits
            row["cpu_threads"] = torch.get_num_threads()
            print(f"{name}: CPU ({torch.get_num_threads()} threads) cached sampler "
                  f"{seconds / args.cpu_digits:.2f} s per digit", flush=True)
        results["recipes"][name] = row

    trained = [r["test_nll_nats"] for r in results["recipes"].values() if "test_nll_nats" in r]
    if trained:
        results["best_nll_nats"] = min(trained)
        results["best_meets_79"] = min(trained) <= 79.0
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
