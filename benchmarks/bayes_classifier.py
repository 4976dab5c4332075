"""Sampling from a Bayes classifier: test accuracy, test log-likelihood and sample FID-style score
for one Gaussian per digit and for a Gaussian mixture of K components per digit.

Each configuration K:PCA_DIM:COVARIANCE is fitted on the 60,000 training digits, then
scored on the 10,000 test digits (Bayes-rule accuracy; log-likelihood of uniformly
dequantized pixels, nats and 8-bit bits/dim) and on `--samples` class-balanced samples
(FID-style score, precision/recall and conditional accuracy with the pinned evaluator,
`genzoo.evaluation.scoring.model_sample_quality`). Expected: more components, better (lower) FID.

    python benchmarks/bayes_classifier.py --device cuda --out bayes.json
    python benchmarks/bayes_classifier.py --device cpu --configs 1:0:full 1:50:full 10:50:full --out bayes_cpu.json

Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from genzoo.data import load_data  # noqa: E402
from genzoo.evaluation.scoring import model_sample_quality  # noqa: E402
from genzoo.metrics import bits_per_dim  # noqa: E402
from genzoo.models.bayes import BayesClassifier  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--data",
        default="mnist",
        help="full MNIST: a folder of IDX files, or mnist ($GENZOO_DATA, the cache, else a download)",
    )
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--configs", nargs="+", default=["1:0:full", "10:0:full", "1:50:full", "10:50:full"],
                   help="K:PCA_DIM:COVARIANCE_TYPE (PCA_DIM 0: pixel space)")
    p.add_argument("--reg-covar", type=float, default=0.01)
    p.add_argument("--samples", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="bayes_classifier.json")
    args = p.parse_args()

    data = load_data(args.data)
    device = torch.device(args.device)
    train_x, train_y = data.train_x.to(device), data.train_y.to(device)
    test_x, test_y = data.test_x.to(device), data.test_y.to(device)
    rows = []
    for spec in args.configs:
        k, pca_dim, covariance_type = spec.split(":")
        torch.manual_seed(args.seed)
        model = BayesClassifier(components_per_class=int(k), pca_dim=int(pca_dim), covariance_type=covariance_type,
                                reg_covar=args.reg_covar).to(device)
        start = time.perf_counter()
        fit = model.fit(train_x, train_y)
        fit_seconds = time.perf_counter() - start
        accuracy = model.accuracy(test_x, test_y)
        log_p = torch.cat([model.log_prob(test_x[i : i + 1000]) for i in range(0, len(test_x), 1000)]).double().mean()
        quality = (
            model_sample_quality(model, data.test_x, n_samples=args.samples, seed=args.seed) if args.samples else {}
        )
        row = {
            "config": spec,
            "components_per_class": int(k),
            "pca_dim": int(pca_dim),
            "covariance_type": covariance_type,
            "reg_covar": args.reg_covar,
            "fit_seconds": fit_seconds,
            "fit": fit,
            "test_accuracy": accuracy,
            "test_log_likelihood": float(log_p),
            "test_bits_per_dim_8bit": float(bits_per_dim(-log_p, dequantized=True)),
            **{
                key: quality[key]["value"]
                for key in ("fid", "precision", "recall", "conditional_accuracy")
                if key in quality
            },
        }
        rows.append(row)
        fid = row.get("fid", float("nan"))
        print(
            f"{spec:12s} test accuracy {accuracy:.4f}  test log-lik {float(log_p):9.2f} nats "
            f"({row['test_bits_per_dim_8bit']:.3f} bits/dim)  "
            f"FID-style {fid:8.2f}  fit {fit_seconds:.1f} s",
            flush=True,
        )
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "device": str(device),
        "data": data.describe(),
        "samples": args.samples,
        "rows": rows,
    }
    Path(args.out).write_text(json.dumps(result, indent=2, default=str))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
