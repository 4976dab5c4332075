"""Seconds per EM iteration: genzoo.mixture.GaussianMixture against scikit-learn's, interleaved.

Both start from the same initial parameters (weights_init, means_init, precisions_init:
k-means++ seeds, every sample given to its nearest seed, one M-step), so that no
initialisation is timed, and run exactly `--iters` EM iterations (tol=0) on the same
data: the first `--n` MNIST training digits as float64 pixels / 255 (N x 784); for full
and tied covariance `--slow-iters` iterations on `--slow-n` digits (scikit-learn's full
fit takes ~20 s per iteration at 20,000 x 784 on an idle core). Each
timed call is `fit_predict`, which for both is `--iters` E- and M-steps and one final
E-step. For every covariance type and thread count, the two libraries alternate (order
swapped on each repeat), `--repeats` times; the table gives the median seconds per
iteration, the spread (min-max) and the ratio of the medians (> 1: genzoo faster).
Threads are limited for both with threadpoolctl (BLAS, OpenMP) and torch.set_num_threads.
Agreement: the relative difference of the final average log-likelihoods.

    python benchmarks/mixture_vs_sklearn.py --data /path/to/mnist --threads 1 2 --types diag spherical tied full \\
        --slow-n 5000 --slow-iters 2 --out mixture_vs_sklearn.json

Prints one line per timed fit and a Markdown table; writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.mixture import GaussianMixture as SklearnGM
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling script's initial parameters

from gmm_vs_sklearn import TYPES, initial_parameters  # noqa: E402  (one start for both comparisons)

from genzoo.data import load_data  # noqa: E402
from genzoo.mixture import GaussianMixture  # noqa: E402


def timed_fit(make, X: np.ndarray) -> tuple[float, float]:
    """Seconds of one fit_predict and the fit's average log-likelihood on X."""
    start = time.perf_counter()
    model = make()
    model.fit_predict(X)
    seconds = time.perf_counter() - start
    return seconds, float(model.score(X))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="mnist", help="a folder of MNIST IDX files, or mnist ($GENZOO_DATA or the cache)")
    p.add_argument("--n", type=int, default=20_000, help="training digits (diag, spherical)")
    p.add_argument("--slow-n", type=int, default=20_000, help="training digits for full and tied covariance")
    p.add_argument("--components", type=int, default=10)
    p.add_argument("--iters", type=int, default=10, help="EM iterations per fit (diag, spherical)")
    p.add_argument("--slow-iters", type=int, default=10,
                   help="EM iterations per fit for full and tied covariance (scikit-learn: ~20 s each at 20,000 x 784)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--types", nargs="+", default=["diag", "spherical", "tied", "full"], choices=TYPES)
    p.add_argument("--reg-covar", type=float, default=1e-3)
    p.add_argument("--out", default="mixture_vs_sklearn.json")
    args = p.parse_args()
    warnings.simplefilter("ignore")  # tol=0 fits end with a ConvergenceWarning on purpose

    data = load_data(args.data)
    pixels = data.train_x.reshape(len(data.train_x), -1).double()  # (60000, 784) pixels / 255
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": " ".join(["python", *sys.argv]),
        "host": {"cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
                 "torch": torch.__version__, "numpy": np.__version__,
                 "sklearn": __import__("sklearn").__version__},
        "n_samples": args.n, "n_samples_full_tied": args.slow_n, "n_features": pixels.shape[1],
        "n_components": args.components,
        "reg_covar": args.reg_covar, "rows": [],
    }
    for ct in args.types:
        iters = args.slow_iters if ct in ("full", "tied") else args.iters
        n = args.slow_n if ct in ("full", "tied") else args.n
        Xt = pixels[:n]  # (N, 784)
        X = Xt.numpy()
        init = initial_parameters(Xt, args.components, ct, args.reg_covar, seed=0)
        kw = dict(covariance_type=ct, reg_covar=args.reg_covar, tol=0.0, max_iter=iters, **init)
        makers = {"sklearn": lambda kw=kw: SklearnGM(args.components, **kw),
                  "genzoo": lambda kw=kw: GaussianMixture(args.components, **kw)}
        for threads in args.threads:
            times: dict[str, list[float]] = {"sklearn": [], "genzoo": []}
            scores: dict[str, float] = {}
            torch.set_num_threads(threads)
            with threadpool_limits(limits=threads):
                for rep in range(args.repeats):
                    order = ("sklearn", "genzoo") if rep % 2 == 0 else ("genzoo", "sklearn")
                    for name in order:
                        seconds, scores[name] = timed_fit(makers[name], X)
                        times[name].append(seconds / iters)
                        print(f"{ct:9s} threads={threads} repeat {rep} {name:7s}: {seconds:8.2f} s for {iters} "
                              f"iterations ({seconds / iters:.3f} s/iteration)", flush=True)
            med = {k: statistics.median(v) for k, v in times.items()}
            row = {"covariance_type": ct, "threads": threads, "n_samples": n, "iterations": iters,
                   "sklearn_s_per_iter": times["sklearn"], "genzoo_s_per_iter": times["genzoo"],
                   "sklearn_median": med["sklearn"], "genzoo_median": med["genzoo"],
                   "speedup": med["sklearn"] / med["genzoo"],
                   "relative_difference_log_likelihood":
                       abs(scores["genzoo"] - scores["sklearn"]) / abs(scores["sklearn"])}
            result["rows"].append(row)
            print(f"{ct:9s} threads={threads}: speed-up x{row['speedup']:.2f}, log-likelihood relative difference "
                  f"{row['relative_difference_log_likelihood']:.1e}", flush=True)

    print("\n| covariance | threads | N | iterations | scikit-learn s/iter (min-max) | genzoo s/iter (min-max) "
          "| speed-up | log-lik rel. diff. |")
    print("|---|---|---|---|---|---|---|---|")
    for r in result["rows"]:
        sk, gz = r["sklearn_s_per_iter"], r["genzoo_s_per_iter"]
        print(f"| {r['covariance_type']} | {r['threads']} | {r['n_samples']} | {r['iterations']} "
              f"| {r['sklearn_median']:.3f} ({min(sk):.3f}-{max(sk):.3f}) "
              f"| {r['genzoo_median']:.3f} ({min(gz):.3f}-{max(gz):.3f}) | x{r['speedup']:.2f} "
              f"| {r['relative_difference_log_likelihood']:.1e} |")
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
