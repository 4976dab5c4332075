"""Reference points of the evaluation suite: evaluator accuracy, the FID-style floor, bad samplers, timing.

A reader places every model's FID-style score between the floor (10,000 real
training digits against the 10,000 test digits) and deliberately bad samplers
(noise, the mean image, a sampler that only produces ones). The time of
`sample_quality` on 10,000 images is the evaluation cost of `genzoo evaluate`
without the model's own sampling time.

    python benchmarks/evaluation.py --data ../shared/data/mnist --device cpu --out results.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from genzoo.data import load_data
from genzoo.evaluation.evaluator import EVALUATOR_VERSION, accuracy, load_evaluator
from genzoo.evaluation.scoring import sample_quality


def bad_samplers(train_x: torch.Tensor, train_y: torch.Tensor, n: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Samplers a model must beat, each giving (n, 1, 28, 28) images in [0, 1]."""
    mean, std = train_x.mean(0), train_x.std(0)  # (1, 28, 28) per-pixel statistics
    ones = train_x[train_y == 1]
    return {
        "uniform noise": torch.rand(n, 1, 28, 28, generator=gen),
        "Gaussian noise, MNIST pixel mean/std": (mean + std * torch.randn(n, 1, 28, 28, generator=gen)).clamp(0, 1),
        "the mean training image, n times": mean.expand(n, 1, 28, 28).clone(),
        "real digits, only ones (mode collapse)": ones[torch.randint(len(ones), (n,), generator=gen)],
    }


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="mnist")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n", type=int, default=10_000, help="samples per score")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="JSON file for the results")
    args = parser.parse_args()

    data = load_data(args.data)
    evaluator = load_evaluator(args.device)
    gen = torch.Generator().manual_seed(args.seed)
    real = data.test_x[: args.n]
    hardware = (torch.cuda.get_device_name(args.device) if args.device.startswith("cuda")
                else f"CPU {platform.machine()}, {torch.get_num_threads()} threads")
    results = {"evaluator_version": EVALUATOR_VERSION, "data": data.describe(), "n": args.n, "n_real": len(real),
               "seed": args.seed, "hardware": hardware, "date": time.strftime("%Y-%m-%d"),
               "evaluator_test_accuracy": accuracy(evaluator, data.test_x, data.test_y), "scores": {}}
    print(
        f"evaluator {EVALUATOR_VERSION}: test accuracy {results['evaluator_test_accuracy']:.4%} on {len(data.test_x):,}"
    )

    floor = data.train_x[torch.randperm(len(data.train_x), generator=gen)[: args.n]]
    candidates = {"real training digits (floor)": floor, **bad_samplers(data.train_x, data.train_y, args.n, gen)}
    print(f"\n| samples ({args.n:,} each, vs {len(real):,} test digits) | FID-style | precision | recall "
          "| top class share | seconds |\n|---|---|---|---|---|---|")
    for name, samples in candidates.items():
        start = time.perf_counter()
        q = sample_quality(
            samples.to(args.device), real.to(args.device), evaluator
        )  # real features recomputed: full cost
        seconds = time.perf_counter() - start
        results["scores"][name] = {**q, "seconds": round(seconds, 2)}
        print(f"| {name} | {q['fid']:.3f} | {q['precision']:.3f} | {q['recall']:.3f} "
              f"| {max(q['class_coverage']):.3f} | {seconds:.1f} |", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)
        print(f"\nwrote {args.out}")
    return results


if __name__ == "__main__":
    main()
