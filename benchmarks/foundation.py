"""Foundation benchmark: VAE test NLL by IWAE, and training speed of ae, dae, vae.

    python benchmarks/foundation.py --device cuda --out foundation.json         # full: ~15 min on one H100
    python benchmarks/foundation.py --device cpu --vae-epochs 0 --speed-steps 50  # speed only, on a CPU
    python benchmarks/foundation.py --device cpu --vae-epochs 1 --iwae-k 100 --max-test 200 --speed-steps 5  # smoke run
    python benchmarks/foundation.py --device cuda --speed-steps 0 --vae-epochs 300 --vae-set channels=96 \
        --runs runs/vae-wide --out wide.json     # another recipe for the NLL run; --resume goes on after a cut

Targets: VAE test NLL <= 85.0 nats (IWAE, K=5000, the fixed binarization of
the test set); an epoch of 60,000 images for a VAE of the size of PyTorch's MNIST
example (784-400-20) under 1 s on one GPU. Data: full MNIST from --data (default
`mnist`: $GENZOO_DATA, the cache, else a download).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import genzoo
from genzoo.commands import split_sets
from genzoo.config import ConfigError, parse_sets
from genzoo.data import load_data
from genzoo.evaluation.evaluate import evaluate_run
from genzoo.runs import read_config, read_metrics_log, steady_images_per_s
from genzoo.trainer import train_or_resume


def train_speed(name, data, device, steps, out, **hparams):
    """Images/s of `steps` training steps at batch 128 (after a warm-up of 20 steps)."""
    run = genzoo.train(
        name,
        data=data,
        out=out / f"speed_{name}",
        overwrite=True,  # a scratch run, measured afresh each time
        device=device,
        progress=False,
        model_overrides=hparams,
        train_overrides={
            "steps": steps + 20,
            "epochs": 0,
            "batch_size": 128,
            "log_every": 20,
            "sample_every": 0,
            "test_every": 0,
        },
    )
    return steady_images_per_s(run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        default="mnist",
        help="full MNIST: a folder of IDX files, or mnist ($GENZOO_DATA, the cache, else a download)",
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--vae-epochs", type=int, default=100, help="0 skips the NLL run")
    parser.add_argument("--iwae-k", type=int, default=5000)
    parser.add_argument(
        "--max-test", type=int, default=0, help="first N test digits only (0: all; for a CPU smoke run)"
    )
    parser.add_argument("--vae-set", action="append", default=[], metavar="KEY=VALUE",
                        help="a model or trainer hyper-parameter of the NLL run's VAE (repeatable)")
    parser.add_argument("--resume", action="store_true", help="continue the NLL run under --runs from its checkpoint")
    parser.add_argument("--speed-steps", type=int, default=200, help="0 skips the speed part")
    parser.add_argument("--runs", default="runs/bench-foundation")
    parser.add_argument("--out", default="foundation.json")
    args = parser.parse_args()
    try:
        vae_model_set, vae_train_set = split_sets("vae", parse_sets(args.vae_set))
    except ConfigError as e:
        parser.error(f"--vae-set: {e}")
    data, out, results = load_data(args.data), Path(args.runs), {}

    if args.speed_steps:
        # Speed: images/s for each model, and one epoch of the PyTorch-example-sized VAE.
        for name, hparams in {
            "ae": {},
            "dae": {},
            "vae": {},
            "vae_mlp_400_20": {"arch": "mlp", "hidden": 400, "latent_dim": 20},
        }.items():
            ips = train_speed(name.split("_")[0], data, args.device, args.speed_steps, out, **hparams)
            results[f"{name}_train_images_per_s"] = ips
            print(f"{name:16s} {ips:10.0f} training images/s")
        run = genzoo.train("vae", data=data, out=out / "epoch_mlp", device=args.device, progress=False, overwrite=True,
                           model_overrides={"arch": "mlp", "hidden": 400, "latent_dim": 20},
                           train_overrides={"epochs": 3, "batch_size": 128, "sample_every": 0, "test_every": 0})
        epochs = [r["time"] for r in read_metrics_log(run) if "loss" in r and float(r["epoch"]).is_integer()]
        results["vae_mlp_epoch_seconds"] = (
            min(b - a for a, b in zip(epochs, epochs[1:])) if len(epochs) > 1 else epochs[0]
        )
        print(
            f"VAE 784-400-20: one epoch of {len(data.train_x):,} images in "
            f"{results['vae_mlp_epoch_seconds']:.2f} s (target < 1 s on a GPU)"
        )

    if args.vae_epochs:
        started = time.perf_counter()
        run = train_or_resume(
            "vae",
            data,
            out / "vae",
            resume=args.resume,
            device=args.device,
            model_overrides=vae_model_set,
            train_overrides={"epochs": args.vae_epochs, **vae_train_set},
        )
        metrics = evaluate_run(run, device=args.device, iwae_k=args.iwae_k, max_test=args.max_test, n_samples=0)
        results.update(vae_nll_nats=metrics["nll_nats"]["value"], vae_nll_se=metrics["nll_nats"]["se"],
                       vae_elbo_nats=metrics["elbo_nats"]["value"], vae_iwae_gap_nats=metrics["iwae_gap_nats"]["value"],
                       vae_config=read_config(run),
                       vae_iwae_k=args.iwae_k, vae_epochs=args.vae_epochs, binarization=metrics["nll_nats"]["data"],
                       vae_test_digits=metrics["nll_nats"]["n"],
                       vae_total_seconds=time.perf_counter() - started, hardware=metrics["hardware"])
        print(f"VAE test NLL (IWAE, K={args.iwae_k}): {results['vae_nll_nats']:.2f} ± {results['vae_nll_se']:.2f} nats "
              f"(target <= 85.0); ELBO {results['vae_elbo_nats']:.2f}, IWAE gap {results['vae_iwae_gap_nats']:.2f}")
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
