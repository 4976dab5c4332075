"""Compare CPU recipes of one `genzoo demo` family at the same number of steps, by what the demo reports.

    OMP_NUM_THREADS=1 python benchmarks/demo_recipes.py gmm 0 'base:{}' 'k30:{"hp": {"n_components": 30}}'
    SEEDS=0,1 OMP_NUM_THREADS=1 python benchmarks/demo_recipes.py gan 2500 'base:{}' \
        'ema99:{"hp": {"ema_decay": 0.99}}'

Each LABEL:JSON is a variant of the model's demo recipe (`genzoo.showcase.demo.model_settings(name, "cpu")`): "hp"
overrides its hyper-parameters, "train" its trainer settings. Every variant trains for STEPS steps (a closed-form
fit: to convergence, on the demo's seeded subset of 10,000) on $DATA (default ../shared/data/mnist) with one thread,
is sampled 1,000 times, and is scored against the first 1,000 test digits: the share of samples the evaluator reads
with confidence >= 0.9, the entropy of their classes, the FID-style score, a class-conditional model's conditional
accuracy (samples asked for 0..9 in turn), and the CPU seconds of training (the same steps may cost more under
another variant; compare at equal CPU time then). Variants run interleaved, seed by seed ($SEEDS, default 0). Runs
go to /tmp/genzoo-demo-recipes/.
"""

from __future__ import annotations

import json
import os
import sys
import time

import torch

from genzoo import registry
from genzoo.data import load_data
from genzoo.evaluation.scoring import model_sample_quality
from genzoo.runs import load
from genzoo.showcase.demo import fit_subset, model_settings
from genzoo.trainer import train


def main() -> None:
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    torch.set_num_threads(1)
    name, steps = sys.argv[1], int(sys.argv[2])
    variants = [(arg.split(":", 1)[0], json.loads(arg.split(":", 1)[1])) for arg in sys.argv[3:]]
    data = load_data(os.environ.get("DATA", "../shared/data/mnist"), verbose=False)
    reference = data.test_x[:1000]
    hparams, train_cfg = model_settings(name, "cpu")
    fit = registry.get(name).training_mode == "fit"
    for seed in [int(s) for s in os.environ.get("SEEDS", "0").split(",")]:
        for label, variant in variants:
            hp = {**hparams, **{k: tuple(v) if isinstance(v, list) else v for k, v in variant.get("hp", {}).items()}}
            cfg = {**train_cfg, "sample_every": 0, "test_every": 0, **variant.get("train", {})}
            if not fit:
                cfg.update(steps=steps, epochs=0)
            out = f"/tmp/genzoo-demo-recipes/{name}-{label}-{seed}"
            began = time.process_time()
            train(name, data=fit_subset(name, data, "cpu", seed)[0] if fit else data, out=out, device="cpu",
                  seed=seed, model_overrides=hp, train_overrides=cfg, progress=False, overwrite=True)
            cpu = time.process_time() - began
            q = model_sample_quality(load(out, "cpu"), reference, 1000, seed=seed)
            labelled = (f", conditional accuracy {q['conditional_accuracy']['value']:.3f}"
                        if "conditional_accuracy" in q else "")
            print(f"{name} {label} seed {seed}: confident {q['confident_share']['value']:.3f}, entropy "
                  f"{q['class_entropy_bits']['value']:.2f} bits, FID-style {q['fid']['value']:.0f}{labelled}, "
                  f"training {cpu:.0f} CPU s", flush=True)


if __name__ == "__main__":
    main()
