"""RBM test log-likelihood on binarized MNIST by annealed importance sampling.

Target: better than -86.34 nats per test digit, the 500-hidden CD25 RBM of
Salakhutdinov & Murray (2008) (their AIS: 14,500 intermediate distributions, 100 runs,
base-rate model from the training pixels' means). The RBM is trained by the genzoo
trainer (dynamically binarized training digits, PCD-1 with 100 persistent chains, SGD
with momentum 0.5, weight decay on W, learning rate 0.05 annealed to 0 by a cosine over
200 epochs), then scored on the fixed binarization of the 10,000 test digits.

    python benchmarks/rbm_ais.py --device cpu --threads 1 --out rbm_ais.json      # the recipe: ~30 min on one CPU core
    python benchmarks/rbm_ais.py --device cpu --epochs 1 --hidden 500 --ais-betas 1000 --ais-runs 20 \
        --max-test 2000 --out rbm_ais_short.json                                   # a short CPU check

Prints the figures and writes them as JSON (with every setting used).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import genzoo  # noqa: E402
from genzoo.data import FIXED_BINARIZATION, fixed_binarization, load_data  # noqa: E402
from genzoo.runs import read_config, read_metrics_log  # noqa: E402
from genzoo.trainer import train_or_resume  # noqa: E402

TARGET = -86.34  # nats, Salakhutdinov & Murray (2008), CD25(500)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--data",
        default="mnist",
        help="full MNIST: a folder of IDX files, or mnist ($GENZOO_DATA, the cache, else a download)",
    )
    p.add_argument("--device", default="auto")
    p.add_argument("--run", default="runs/rbm_ais",
                   help="run folder; an existing one is resumed with its own settings, or only re-scored when finished")
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--hidden", type=int, default=500)
    p.add_argument("--method", default="pcd", choices=["cd", "pcd"])
    p.add_argument("--k", type=int, default=1, help="Gibbs sweeps per update (CD-k / PCD-k)")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--schedule", default="cosine", choices=["constant", "cosine"], help="learning rate over training")
    p.add_argument("--momentum", type=float, default=0.5)
    p.add_argument("--weight-cost", type=float, default=2e-4, help="L2 on W (weight decay)")
    p.add_argument("--chains", type=int, default=100, help="persistent chains (pcd)")
    p.add_argument("--sample-every", type=int, default=10, help="epochs between sample grids")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--ais-betas", type=int, default=14500)
    p.add_argument("--ais-runs", type=int, default=100)
    p.add_argument("--max-test", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="rbm_ais.json")
    args = p.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_data(args.data)
    run = Path(args.run)
    # an existing run is continued (or only re-scored) as configured
    train_or_resume("rbm", data, run, device=args.device, seed=args.seed,
                    train_overrides={"epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size,
                                     "schedule": args.schedule, "sample_every": args.sample_every},
                    model_overrides={"n_hidden": args.hidden, "method": args.method, "k": args.k,
                                     "momentum": args.momentum, "weight_cost": args.weight_cost,
                                     "persistent_chains": args.chains})
    end = next(r for r in reversed(read_metrics_log(run)) if r.get("event") == "end")
    train_seconds = end["train_seconds"]  # the trainer's clock, summed over sessions

    model = genzoo.load(run)
    device = model.device if args.device == "auto" else torch.device(args.device)
    model.to(device)
    start = time.perf_counter()
    ais = model.estimate_log_z(args.ais_betas, args.ais_runs, seed=args.seed)
    ais_seconds = time.perf_counter() - start
    test = fixed_binarization(data.test_x[: args.max_test]).to(device)
    log_p = torch.cat([model.log_prob(test[i : i + 1000]) for i in range(0, len(test), 1000)]).double()
    mean = float(log_p.mean())
    free = float(-model.free_energy(test).double().mean())
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "device": str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
        "training": read_config(run),
        "settings": {
            "data": args.data,
            "max_test": args.max_test,
            "ais_betas": args.ais_betas,
            "ais_runs": args.ais_runs,
            "ais_seed": args.seed,
            "binarization": FIXED_BINARIZATION,
            "ais_base": "base-rate model, visible logits of the training pixels' means (smoothed)",
            "ais_schedule": "Salakhutdinov & Murray proportions: "
            "1/29 of betas in [0,0.5), 8/29 in [0.5,0.9), 20/29 in [0.9,1]",
        },
        "log_z": ais["log_z"],
        "log_z_3se": [ais["log_z_low"], ais["log_z_high"]],
        "test_log_likelihood": mean,
        "test_log_likelihood_3se": [free - ais["log_z_high"], free - ais["log_z_low"]],
        "n_test": len(test),
        "target": TARGET,
        "beats_target": mean > TARGET,
        "train_seconds": train_seconds,
        "train_device": end.get("device"),
        "ais_seconds": ais_seconds,
    }
    print(f"log Z = {ais['log_z']:.3f}  (3 s.e.: {ais['log_z_low']:.3f} .. {ais['log_z_high']:.3f}; "
          f"{args.ais_betas} betas x {args.ais_runs} runs, {ais_seconds:.0f} s)")
    print(f"AIS test log-likelihood: {mean:.2f} nats/digit on {len(test)} test digits "
          f"(target > {TARGET}: {'yes' if mean > TARGET else 'no'}); training {train_seconds:.0f} s")
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
