"""Training images/s of every model's default config, through the trainer's own step.

    python benchmarks/speed.py --device cpu --out speed.json            # every model, ~30 s each
    python benchmarks/speed.py --models pixelcnn,vae --seconds 60
    python benchmarks/speed.py --models gmm,bayes --fit-images 6000       # closed-form fits on a subset

Each model is built with its defaults (config and `train_defaults`, batch size included) on full
MNIST, and the trainer's step (`Loop.train_step`: the optimizer step of a gradient-trained model,
or the model's own `train_step`) runs on the trainer's batches: `--warmup` steps first (first-call
costs), then steps until `--seconds` have passed (at least 3). No test pass, sample grid or pictures:
this is the speed of training itself. Closed-form models (`fit`) report the time of their fit.

Besides images per wall-clock second, images per CPU-second of the process (all its threads):
on a machine shared with other jobs the first drops with the load, the second much less
(times the threads, it approaches the idle machine's images/s). The 1-minute load average
is recorded beside each model. Prints a markdown table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

import genzoo
from genzoo.config import build
from genzoo.data import Dataset, load_data
from genzoo.registry import MODELS
from genzoo.runs import hardware, read_metrics_log
from genzoo.train_config import TrainConfig
from genzoo.training.devices import Distributed, resolve_device
from genzoo.training.loop import Loop


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def trainer_loop(name: str, data: Dataset, device: torch.device, run_dir: Path) -> Loop:
    torch.manual_seed(0)
    model = genzoo.create(name)
    cfg = build(TrainConfig, {**model.train_defaults, "sample_every": 0, "test_every": 0}, owner="trainer")
    return Loop(model, cfg, data, run_dir, device, 0, Distributed(device), show_progress=False)


def measure_steps(loop: Loop, seconds: float, warmup: int) -> dict:
    """Images/s of the trainer's step after `warmup` steps, over at least `seconds` and 3 steps."""
    loop.model.train()
    for _ in range(warmup):
        loop.train_step(*loop.batches.at(loop.step))
        loop.step += 1
    sync(loop.device)
    start, cpu_start, steps = time.perf_counter(), time.process_time(), 0
    while steps < 3 or time.perf_counter() - start < seconds:
        out = loop.train_step(*loop.batches.at(loop.step))
        loop.step += 1
        steps += 1
    for value in out.values():
        float(value)  # the device's work is done once the last step's values are on the host
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    images = steps * loop.batches.size
    return {"images_per_s": images / elapsed, "images_per_cpu_s": images / cpu, "steps": steps,
            "seconds": round(elapsed, 2)}


def measure_fit(loop: Loop) -> dict:
    start = time.perf_counter()
    loop.fit()
    elapsed = time.perf_counter() - start
    record = next(r for r in read_metrics_log(loop.run_dir) if r.get("step") == 0)
    return {"fit_seconds": round(elapsed, 2), "fit_images": loop.batches.n,
            **{k: v for k, v in record.items() if k in ("n_iter", "converged", "mean_em_iterations")}}


def subset(data: Dataset, n: int) -> Dataset:
    """The first n training images (for the slow closed-form fits)."""
    return Dataset(data.spec, data.source, data.train_x[:n], data.train_y[:n], data.test_x, data.test_y)


def row(r: dict) -> str:
    if "images_per_s" in r:
        speed = f"{r['images_per_s']:,.1f} | {r['images_per_cpu_s']:,.1f}"
    else:
        speed = f"fit: {r['fit_seconds']:,.1f} s on {r['fit_images']:,} images | -"
    steps = f"{r['steps']} in {r['seconds']} s" if "steps" in r else "-"
    batch = r["batch_size"] if "steps" in r else "-"  # a fit takes the whole training set at once
    return f"| {r['model']} | {speed} | {batch} | {r['threads']} | {steps} | {r['load_average']:.1f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="mnist", help="full MNIST: a folder of IDX files, or mnist")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated CLI names (default: all)")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured time per model (after the warm-up)")
    parser.add_argument("--warmup", type=int, default=3, help="steps before the clock starts")
    parser.add_argument("--fit-images", type=int, default=0, help="fit models on the first N images (0: all)")
    parser.add_argument("--out", default="speed.json")
    args = parser.parse_args()
    device, data = resolve_device(args.device), load_data(args.data)
    results = []
    for name in args.models.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            fit = MODELS[name].training_mode == "fit"
            fit_data = subset(data, args.fit_images) if fit and args.fit_images else data
            loop = trainer_loop(name, fit_data, device, Path(tmp))
            print(f"speed: {name} ...", file=sys.stderr, flush=True)
            figures = measure_fit(loop) if fit else measure_steps(loop, args.seconds, args.warmup)
        results.append({"model": name, **figures, "batch_size": loop.batches.size, "threads": torch.get_num_threads(),
                        "load_average": os.getloadavg()[0]})
        print(row(results[-1]), flush=True)
    meta = {"command": "python " + " ".join(sys.argv), "hardware": hardware(device), "torch": torch.__version__,
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    Path(args.out).write_text(json.dumps({**meta, "models": results}, indent=2) + "\n")
    print("\n| model | training images/s | images per CPU-second | batch size | threads | steps measured | load |\n"
          "|---|---|---|---|---|---|---|")
    print("\n".join(row(r) for r in results))
    print(f"\n{meta['command']} ({meta['date']}, {meta['hardware']}, torch {meta['torch']})")


if __name__ == "__main__":
    main()
