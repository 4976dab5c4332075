"""`genzoo demo`: train the autoencoder, the denoising autoencoder and the VAE on the data at hand
within a time budget, evaluate them, and write the HTML report.

The data is MNIST when it is found ($GENZOO_DATA or the cache), else the embedded
5,000-digit subset. On a CPU the networks are narrower and the evaluation lighter
(first 1,000 test digits, 100 importance samples, 2,000 samples for the FID-style
score), so that the whole demo takes a
few minutes on a laptop; the report states the settings next to each number.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from .data import load_data
from .evaluate import evaluate_run
from .trainer import resolve_device, train

# Per model: hyper-parameters on a CPU (on a GPU the defaults are used).
CPU_HPARAMS = {
    "ae": {"channels": 16, "latent_dim": 16},
    "dae": {"channels": 16, "latent_dim": 32, "noise": "gaussian", "noise_level": 0.5},
    "vae": {"channels": 16, "latent_dim": 16},
}
BUDGET_SHARE = {"ae": 0.25, "dae": 0.3, "vae": 0.45}


def run_demo(out: str | Path = "genzoo-demo", data: str = "auto", budget: float = 240.0,
             device: str = "auto", seed: int = 0) -> Path:
    """Train, evaluate and report ae, dae and vae; return the report's index.html."""
    from .report import write_report

    out = Path(out)
    device = resolve_device(device)
    dataset = load_data(data)
    on_cpu = device.type == "cpu"
    print(f"genzoo demo: {dataset.describe()} on {device}, {budget:.0f} s of training in all", file=sys.stderr)
    run_dirs = []
    for name, share in BUDGET_SHARE.items():
        started = time.perf_counter()
        run_dir = train(name, data=dataset, out=out / name, device=device, seed=seed, overwrite=True,
                        model_overrides=CPU_HPARAMS[name] if on_cpu else None,
                        train_overrides={"epochs": 200, "time_budget": budget * share, "schedule": "constant",
                                         "checkpoint_minutes": 1.0, "sample_every": 1})
        print(f"genzoo demo: {name} trained in {time.perf_counter() - started:.0f} s; evaluating", file=sys.stderr)
        evaluate_run(run_dir, device=str(device), seed=seed, max_test=1000 if on_cpu else 0,
                     iwae_k=100 if on_cpu else 0, n_samples=2000 if on_cpu else 10_000)
        run_dirs.append(run_dir)
    return write_report(run_dirs, out / "report", title="genzoo demo: autoencoder, denoising autoencoder, VAE")
