"""genzoo's GaussianMixture against scikit-learn's: agreement and speed, side by side in one run.

1. Agreement: for every covariance type, both fitted from the same initial parameters
   (weights_init / means_init / precisions_init) on the same data (dequantized MNIST
   training digits projected on their first `--agree-dim` principal components); the
   final average log-likelihoods must agree within 1e-6 relative.
2. Speed: MNIST 60,000 x 784 (dequantized pixels, float64), 10 components, full
   covariance, the same initial parameters, exactly `--iters` EM iterations each
   (tol=0). scikit-learn runs on the CPU; genzoo on `--device`.

    python benchmarks/gmm_vs_sklearn.py --device cpu --out gmm_cpu.json
    python benchmarks/gmm_vs_sklearn.py --device cuda --out gmm_cuda.json

Prints the figures and writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import torch
from sklearn.mixture import GaussianMixture as SklearnGM

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from genzoo.data import load_data  # noqa: E402
from genzoo.mixture import (  # noqa: E402
    GaussianMixture,
    compute_precision_cholesky,
    estimate_gaussian_parameters,
    kmeans_plusplus,
)
from genzoo.models.gmm import dequantize  # noqa: E402

TYPES = ("full", "tied", "diag", "spherical")


def initial_parameters(X: torch.Tensor, n_components: int, covariance_type: str, reg_covar: float, seed: int) -> dict:
    """k-means++ seeds, nearest-seed responsibilities, one M-step: weights, means, precisions (numpy)."""
    seeds = kmeans_plusplus(X, n_components, torch.Generator().manual_seed(seed))
    sq = (X * X).sum(1, keepdim=True) - 2 * X @ X[seeds].T + (X[seeds] ** 2).sum(1)
    resp = torch.nn.functional.one_hot(sq.argmin(1), n_components).double()
    nk, means, cov = estimate_gaussian_parameters(X, resp, reg_covar, covariance_type)
    # not batched torch.linalg.inv: it can hang on the CPU
    pc = compute_precision_cholesky(cov, covariance_type, reg_covar)
    precisions = pc @ pc.mT if covariance_type in ("full", "tied") else pc**2
    return {"weights_init": (nk / nk.sum()).numpy(), "means_init": means.numpy(), "precisions_init": precisions.numpy()}


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--data",
        default="mnist",
        help="full MNIST: a folder of IDX files, or mnist ($GENZOO_DATA, the cache, else a download)",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--iters", type=int, default=5, help="EM iterations in the speed test")
    p.add_argument("--components", type=int, default=10)
    p.add_argument("--reg-covar", type=float, default=1e-3)
    p.add_argument("--agree-dim", type=int, default=30)
    p.add_argument("--agree-n", type=int, default=10_000)
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--skip-agreement", action="store_true")
    p.add_argument("--out", default="gmm_vs_sklearn.json")
    args = p.parse_args()
    warnings.simplefilter("ignore")  # tol=0 runs end with ConvergenceWarning on purpose

    data = load_data(args.data)
    X = dequantize(
        data.train_x.reshape(len(data.train_x), -1), torch.Generator().manual_seed(0)
    )  # (60000, 784) float64
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "host": {
            "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "device": args.device,
            "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
        },
        "agreement": {},
    }

    # 1. agreement, every covariance type
    sub = X[: args.agree_n]
    centred = sub - sub.mean(0)
    _, _, vt = torch.linalg.svd(centred, full_matrices=False)
    Z = centred @ vt[: args.agree_dim].T  # (n, d)
    for ct in () if args.skip_agreement else TYPES:
        init = initial_parameters(Z, args.components, ct, args.reg_covar, seed=0)
        kw = dict(covariance_type=ct, reg_covar=args.reg_covar, tol=1e-6, max_iter=300, **init)
        sk = SklearnGM(args.components, **kw).fit(Z.numpy())
        ours = GaussianMixture(args.components, device=args.device, **kw).fit(Z)
        ll_sk, ll_ours = sk.score(Z.numpy()), ours.score(Z)
        rel = abs(ll_ours - ll_sk) / abs(ll_sk)
        result["agreement"][ct] = {
            "sklearn": ll_sk,
            "genzoo": ll_ours,
            "relative_difference": rel,
            "n_iter_sklearn": int(sk.n_iter_),
            "n_iter_genzoo": ours.n_iter_,
            "within_1e-6": rel <= 1e-6,
        }
        print(f"agreement {ct:9s}: sklearn {ll_sk:.10f}  genzoo {ll_ours:.10f}  rel diff {rel:.2e}  "
              f"iterations {sk.n_iter_}/{ours.n_iter_}", flush=True)

    # 2. speed, MNIST 60,000 x 784, full covariance
    if not args.skip_speed:
        init = initial_parameters(X, args.components, "full", args.reg_covar, seed=0)
        kw = dict(covariance_type="full", reg_covar=args.reg_covar, tol=0.0, max_iter=args.iters, **init)
        Xn = X.numpy()
        start = time.perf_counter()
        sk = SklearnGM(args.components, **kw).fit(Xn)
        t_sk = time.perf_counter() - start
        print(f"speed sklearn (cpu): {t_sk:.1f} s for {sk.n_iter_} iterations", flush=True)
        Xd = X.to(args.device)
        if args.device.startswith("cuda"):  # warm-up: CUDA context, cuBLAS/cuSOLVER handles
            GaussianMixture(args.components, **{**kw, "max_iter": 1}).fit(Xd)
        sync(args.device)
        start = time.perf_counter()
        ours = GaussianMixture(args.components, **kw).fit(Xd)
        sync(args.device)
        t_ours = time.perf_counter() - start
        ll_sk, ll_ours = sk.score(Xn), ours.score(Xd)
        result["speed"] = {
            "n_samples": len(X),
            "n_features": X.shape[1],
            "n_components": args.components,
            "iterations": args.iters,
            "sklearn_seconds": t_sk,
            "genzoo_seconds": t_ours,
            "speedup": t_sk / t_ours,
            "sklearn_log_likelihood": ll_sk,
            "genzoo_log_likelihood": ll_ours,
            "relative_difference": abs(ll_ours - ll_sk) / abs(ll_sk),
        }
        print(
            f"speed genzoo ({args.device}): {t_ours:.1f} s for {ours.n_iter_} iterations; "
            f"speed-up x{t_sk / t_ours:.2f}; "
            f"avg log-lik sklearn {ll_sk:.6f} genzoo {ll_ours:.6f}",
            flush=True,
        )

    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
