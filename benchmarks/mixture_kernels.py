"""Seconds per EM iteration of each kernel of genzoo.mixture against the plain steps, on MNIST digits.

For every covariance type, the kernel `choose_kernel` picks for the data (sparse diag, fused spherical, the
active-feature full step, tied with X^T X kept) is timed against `DenseKernel` (the plain E- and M-steps of
`genzoo.mixture.em`) on the same parameters: the first `--n` training digits (float64, pixels / 255; full and
tied `--slow-n`), K components from a few EM iterations, `--repeats` calls of `em_step` each, alternating. With
2 threads, full and tied also time the plain step with torch keeping its threads (`torch_one_thread` off), what
the module keeps torch from doing. The sides' lower bounds agree (their largest relative difference is
recorded as bound_rel_diff). Also prints the data's share
of exact zeros and how many pixels are nonzero in some digit, at a few sizes.

    python benchmarks/mixture_kernels.py --data /path/to/mnist --threads 1 2 --out mixture_kernels.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from genzoo.data import load_data  # noqa: E402
from genzoo.mixture import GaussianMixture, kernels  # noqa: E402


def fitted(X: torch.Tensor, k: int, covariance_type: str) -> tuple[torch.Tensor, ...]:
    """Parameters a few EM iterations in (the starting point of every timed step)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm = GaussianMixture(k, covariance_type=covariance_type, max_iter=3, init_params="k-means++_nearest",
                             random_state=0, reg_covar=1e-3).fit(X)
    return gm._weights, gm._means, gm._precisions_cholesky


def time_step(kernel: kernels.DenseKernel, params: tuple, repeats: int, threads_kept: bool) -> tuple[list, tuple]:
    """Seconds of `repeats` em_step calls, and the last call's output."""
    patch = contextlib.nullcontext() if not threads_kept else _torch_keeps_its_threads()
    seconds, out = [], None
    with patch:
        for _ in range(repeats):
            start = time.perf_counter()
            out = kernel.em_step(*params)
            seconds.append(time.perf_counter() - start)
    return seconds, out


@contextlib.contextmanager
def _torch_keeps_its_threads():
    before = kernels.torch_one_thread
    kernels.torch_one_thread = lambda X, covariance_type: contextlib.nullcontext()
    try:
        yield
    finally:
        kernels.torch_one_thread = before


def compare(X: torch.Tensor, covariance_type: str, k: int, threads: int, repeats: int) -> list[dict]:
    params = fitted(X, k, covariance_type)
    chosen = kernels.choose_kernel(X, covariance_type, 1e-3)
    plain = kernels.DenseKernel(X, covariance_type, 1e-3)
    sides = [(f"chosen: {type(chosen).__name__}", chosen, False), ("plain: DenseKernel", plain, False)]
    if threads > 1 and covariance_type in ("full", "tied"):
        sides.append(("plain, torch keeps its threads", plain, True))
    rows, outputs = [], []
    for name, kernel, kept in sides:
        seconds, out = time_step(kernel, params, repeats, kept)
        outputs.append(out)
        rows.append({"type": covariance_type, "threads": threads, "n": len(X), "k": k, "kernel": name,
                     "median_s": statistics.median(seconds), "min_s": min(seconds), "max_s": max(seconds)})
    bounds = [o[0] for o in outputs]
    worst = max(abs(b - bounds[0]) / abs(bounds[0]) for b in bounds)
    for row in rows:
        row["bound_rel_diff"] = worst
    return rows


def data_facts(x: torch.Tensor) -> list[dict]:
    facts = []
    for n in (5_000, 20_000, 60_000):
        X = x[:n]
        facts.append({"n": len(X), "zero_share": float((X == 0).double().mean()),
                      "active_pixels": int((X != 0).any(0).sum()), "pixels": X.shape[1]})
    return facts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="mnist")
    p.add_argument("--n", type=int, default=20_000, help="digits for diag and spherical")
    p.add_argument("--slow-n", type=int, default=5_000, help="digits for full and tied")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--types", nargs="+", default=["diag", "spherical", "tied", "full"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    x = load_data(args.data, verbose=False).train_x.reshape(-1, 784).double()
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        with threadpool_limits(threads):
            for covariance_type in args.types:
                n = args.n if covariance_type in ("diag", "spherical") else args.slow_n
                for row in compare(x[:n].contiguous(), covariance_type, args.k, threads, args.repeats):
                    rows.append(row)
                    print(f"{row['type']:9s} {threads} thread(s) N={row['n']:,} {row['kernel']:32s} "
                          f"{row['median_s']:.3f} s ({row['min_s']:.3f}-{row['max_s']:.3f})", flush=True)
    facts = data_facts(x)
    for f in facts:
        print(f"first {f['n']:,} digits: {f['zero_share']:.1%} exact zeros, {f['active_pixels']} of {f['pixels']} "
              "pixels nonzero in some digit")
    record = {"rows": rows, "data": facts, "machine": platform.processor() or platform.machine(),
              "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M")}
    if args.out:
        args.out.write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
