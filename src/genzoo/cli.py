"""The `genzoo` command: a thin shell over the library functions of the same names."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from . import registry, runs
from .config import ConfigError, field_types, parse_sets
from .data import DataError
from .evaluator import EvaluatorError
from .models.base import CapabilityError
from .train_config import TrainConfig
from .trainer import TrainingError, resolve_device

# Errors a user can cause and fix: printed as one line, never as a traceback.
USER_ERRORS = (DataError, ConfigError, runs.RunError, TrainingError, CapabilityError, EvaluatorError, FileNotFoundError)


def split_sets(model_name: str, pairs: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """Send each --set key to the model's Config or to the TrainConfig; unknown keys are errors."""
    model_keys = field_types(registry.get(model_name).Config)
    train_keys = field_types(TrainConfig)
    model_part, train_part = {}, {}
    for key, value in pairs.items():
        if key in model_keys:
            model_part[key] = value
        elif key in train_keys:
            train_part[key] = value
        else:
            raise ConfigError(
                f"--set {key}={value}: unknown key {key!r}. {model_name} keys: {', '.join(model_keys)}; "
                f"trainer keys: {', '.join(train_keys)}"
            )
    return model_part, train_part


def cmd_list(args) -> int:
    for name, cls in registry.MODELS.items():
        summary = (cls.__doc__ or "").strip().splitlines()[0]
        print(f"{name:10s} {summary}")
    return 0


def cmd_train(args) -> int:
    from .trainer import train

    if args.resume:
        if args.out is None:
            raise TrainingError("--resume needs --out RUN, the run folder to continue")
        if args.set:
            raise TrainingError(f"{args.out}: --resume continues a run with its own config.json; drop --set "
                                "(only --epochs or --steps may go with it, to train the run for longer)")
        model_part, train_part = {}, {}
    else:
        model_part, train_part = split_sets(args.model, parse_sets(args.set))
    for key in ("epochs", "steps", "batch_size", "lr"):
        if getattr(args, key) is not None:
            train_part[key] = getattr(args, key)
    if args.steps and "epochs" not in train_part:
        train_part["epochs"] = 0
    out = train(args.model, data=args.data, out=args.out, device=args.device, seed=args.seed, resume=args.resume,
                train_overrides=train_part, model_overrides=model_part)
    print(out)
    return 0


SAMPLE_OPTIONS = ("guidance", "steps", "eta", "sampler")  # flags of sample, reverse-process and evaluate


def sample_options(model, args) -> dict:
    """The sampling flags given on the command line, checked against what the model's `sample` takes."""
    given = {k: getattr(args, k) for k in SAMPLE_OPTIONS if getattr(args, k, None) is not None}
    unknown = [k for k in given if k not in model.sample_options]
    if unknown:
        raise CapabilityError(f"{model.name}: --{' --'.join(unknown)} does not apply; its sampling options: "
                              f"{', '.join(model.sample_options) or 'none'}")
    return given


def sampling_args(p) -> None:
    p.add_argument("--guidance", type=float, help="diffusion: classifier-free guidance w (0 uncond., 1 cond., >1 guided)")
    p.add_argument("--steps", type=int, help="diffusion: DDIM steps")
    p.add_argument("--eta", type=float, help="diffusion: DDIM eta (0 deterministic, 1 ancestral variance)")
    p.add_argument("--sampler", choices=["ddim", "ancestral"], help="diffusion: the sampler")


def cmd_sample(args) -> int:
    from .images import save_grid

    model = runs.load(args.run, resolve_device(args.device))
    options = sample_options(model, args)
    labels = None
    if args.label is not None:
        if not model.conditional:
            raise CapabilityError(f"{model.name}: not a conditional model, --label does not apply")
        if not 0 <= args.label <= 9:
            raise ConfigError(f"--label {args.label}: must be a digit 0..9")
        labels = torch.full((args.n,), args.label, dtype=torch.long, device=model.device)
    elif model.conditional:
        labels = model.default_labels(args.n)
    with torch.no_grad():
        images = model.sample(args.n, y=labels, generator=torch.Generator().manual_seed(args.seed), **options)
    out = Path(args.out or Path(args.run) / "samples" / f"sample_seed{args.seed}.png")
    save_grid(images, out, nrow=10 if labels is not None and args.label is None else None)
    print(out)
    return 0


def cmd_reverse_process(args) -> int:
    from .images import save_rows
    from .models.ddpm import reverse_process_rows

    model = runs.load(args.run, resolve_device(args.device))
    if "guidance" not in model.sample_options:
        raise CapabilityError(f"{model.name}: has no reverse process to draw; train a `ddpm` run")
    y = None
    if args.label is not None:
        if not 0 <= args.label <= 9:
            raise ConfigError(f"--label {args.label}: must be a digit 0..9")
        y = torch.full((args.n,), args.label, dtype=torch.long, device=model.device)
    rows = reverse_process_rows(model, args.n, args.columns, y, torch.Generator().manual_seed(args.seed),
                                **sample_options(model, args))
    print(save_rows(rows, args.out or Path(args.run) / "samples" / "reverse_process.png"))
    return 0


def cmd_interpolate(args) -> int:
    from .models.gan import interpolate_run

    print(interpolate_run(args.run, args.out, steps=args.steps, label=args.label, rows=args.rows, seed=args.seed,
                          device=resolve_device(args.device)))
    return 0


def cmd_complete(args) -> int:
    from .autoregressive import complete_run

    print(complete_run(args.run, args.hide, n_digits=args.n, n_completions=args.completions, seed=args.seed,
                       out=args.out, device=resolve_device(args.device)))
    return 0


def _test_images(run: str, n: int) -> torch.Tensor:
    from .data import load_data

    from .pictures import spread

    return spread(load_data(runs.read_config(run)["data"], verbose=False).test_x, n)


def cmd_reconstruct(args) -> int:
    from .pictures import write_reconstructions

    model = runs.load(args.run, resolve_device(args.device))
    print(write_reconstructions(model, _test_images(args.run, args.n), args.out or Path(args.run) / "reconstructions.png"))
    return 0


def cmd_denoise(args) -> int:
    from .models.dae import parse_noise
    from .pictures import write_denoising

    model = runs.load(args.run, resolve_device(args.device))
    if not hasattr(model, "denoise"):
        raise CapabilityError(f"{model.name}: is not a denoising autoencoder; train a `dae` run")
    noises = [parse_noise(text) for text in args.noise] if args.noise else None
    out = args.out or Path(args.run) / "denoising.png"
    print(write_denoising(model, _test_images(args.run, args.n), out, seed=args.seed, noises=noises))
    return 0


def cmd_evaluate(args) -> int:
    from .config import parse_value
    from .evaluate import evaluate_run

    options = {k: getattr(args, k) for k in SAMPLE_OPTIONS if getattr(args, k) is not None}
    sweep = list(parse_value("--guidance-sweep", args.guidance_sweep, tuple[float, ...])) if args.guidance_sweep else None
    metrics = evaluate_run(args.run, device=args.device, seed=args.seed, max_test=args.max_test,
                           random_subset=args.random_subset, iwae_k=args.iwae_k, n_samples=args.n_samples,
                           sample_options=options, guidance_sweep=sweep, sweep_samples=args.sweep_samples)
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        for key, value in metrics.items():
            if key == "guidance_sweep":
                for row in value["value"]:
                    print(f"{'  guidance ' + format(row['guidance'], 'g'):28s} FID-style {row['fid']:.4g}  "
                          f"conditional accuracy {row['conditional_accuracy']:.4f}")
                continue
            shown = value["value"] if isinstance(value, dict) and "value" in value else value
            unit = value.get("unit", "") if isinstance(value, dict) else ""
            se = f" ± {value['se']:.2g}" if isinstance(value, dict) and value.get("se") is not None else ""
            print(f"{key:28s} {shown:.6g}{se} {unit}" if isinstance(shown, float) else f"{key:28s} {shown}")
        print(f"written to {Path(args.run) / runs.METRICS}")
    return 0


def cmd_report(args) -> int:
    from .report import write_report

    print(write_report(args.runs, args.out))
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo

    print(run_demo(out=args.out, data=args.data, budget=args.budget, device=args.device, seed=args.seed))
    return 0


def cmd_gmm_demo(args) -> int:
    from .models.gmm import gmm_demo

    print(gmm_demo(args.out, n_components=args.components, seed=args.seed))
    return 0


def cmd_bench(args) -> int:
    from .bench import run_bench

    run_bench(args.models, data=args.data, budget_seconds=args.budget, device=args.device, out_dir=args.out,
              seed=args.seed, n_samples=args.n_samples, reuse=not args.retrain, max_test=args.max_test,
              iwae_k=args.iwae_k)
    return 0


def cmd_evaluator(args) -> int:
    from .evaluator import main as train_evaluator_main

    train_evaluator_main(args)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="genzoo", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def device_arg(p):
        p.add_argument("--device", default="auto", help="auto (GPU when present), cpu or cuda")

    p = sub.add_parser("list", help="the models, one line each")
    p.set_defaults(fn=cmd_list)

    p = sub.add_parser("train", help="train a model into a run folder")
    p.add_argument("model", choices=list(registry.MODELS), metavar="MODEL")
    p.add_argument("--data", default="auto", help="folder of IDX files, mnist, embedded, fashion-mnist or auto")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--epochs", type=int)
    group.add_argument("--steps", type=int)
    p.add_argument("--batch-size", dest="batch_size", type=int)
    p.add_argument("--lr", type=float)
    device_arg(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="run folder (default runs/MODEL)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint; with --epochs or --steps, train it for longer")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="any model or trainer hyper-parameter")
    p.set_defaults(fn=cmd_train)

    p = sub.add_parser("sample", help="draw a grid of samples from a trained run")
    p.add_argument("run")
    p.add_argument("-n", type=int, default=64)
    p.add_argument("--label", type=int, help="digit to draw (conditional models)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="PNG file (default RUN/samples/sample_seedS.png)")
    sampling_args(p)
    device_arg(p)
    p.set_defaults(fn=cmd_sample)

    p = sub.add_parser("reverse-process", help="diffusion: rows of x_T ... x_0, one digit per row (ddpm)")
    p.add_argument("run")
    p.add_argument("-n", type=int, default=4, help="rows (digits 0, 3, 6, 9, ... unless --label)")
    p.add_argument("--columns", type=int, default=10, help="states per row, x_T first and x_0 last")
    p.add_argument("--label", type=int, help="the digit of every row")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="PNG file (default RUN/samples/reverse_process.png)")
    sampling_args(p)
    device_arg(p)
    p.set_defaults(fn=cmd_reverse_process)

    p = sub.add_parser("interpolate", help="rows of images along straight latent paths (gan, cgan, dcgan)")
    p.add_argument("run")
    p.add_argument("--steps", type=int, default=10, help="images per row, end points included")
    p.add_argument("--label", type=int, help="digit of every row (conditional models; default one row per digit)")
    p.add_argument("--rows", type=int, default=4, help="independent paths (unconditional, or with --label)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="PNG file (default RUN/samples/interpolation.png)")
    device_arg(p)
    p.set_defaults(fn=cmd_interpolate)

    p = sub.add_parser("complete", help="fill in the hidden part of test digits (pixelcnn, pixelrnn)")
    p.add_argument("run")
    p.add_argument("--hide", choices=["bottom-half", "right-half", "box"], default="bottom-half")
    p.add_argument("-n", type=int, default=10, help="test digits (fixed binarization)")
    p.add_argument("--completions", type=int, default=4, help="completions per digit")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="PNG file (default RUN/completions-HIDE.png)")
    device_arg(p)
    p.set_defaults(fn=cmd_complete)

    p = sub.add_parser("reconstruct", help="test digits above their reconstructions (autoencoders)")
    p.add_argument("run")
    p.add_argument("-n", type=int, default=16)
    p.add_argument("--out")
    device_arg(p)
    p.set_defaults(fn=cmd_reconstruct)

    p = sub.add_parser("denoise", help="rows of clean / noisy / denoised test digits (dae)")
    p.add_argument("run")
    p.add_argument("--noise", action="append", metavar="KIND:LEVEL",
                   help="gaussian:0.5, salt-and-pepper:0.3 or masking:0.5 (repeatable; default all three)")
    p.add_argument("-n", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out")
    device_arg(p)
    p.set_defaults(fn=cmd_denoise)

    p = sub.add_parser("evaluate", help="every metric that applies; writes RUN/metrics.json")
    p.add_argument("run")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-test", dest="max_test", type=int, default=0, help="first N test images only (0: all)")
    p.add_argument("--random-subset", dest="random_subset", action="store_true",
                   help="with --max-test: N test images drawn at random (seeded) instead of the first N; for the "
                        "VAE, also estimates the whole test set's NLL from them")
    p.add_argument("--iwae-k", dest="iwae_k", type=int, default=0, help="importance samples (0: the model's own)")
    device_arg(p)
    p.add_argument("--samples", dest="n_samples", type=int, default=10_000,
                   help="samples for FID-style score, precision/recall, coverage (0: none; default 10000)")
    sampling_args(p)
    p.add_argument("--guidance-sweep", dest="guidance_sweep", metavar="W,W,...",
                   help="diffusion: FID-style and conditional accuracy at each guidance weight, e.g. 0,1,2,3,5; "
                        "writes RUN/guidance_sweep.json and .png")
    p.add_argument("--sweep-samples", dest="sweep_samples", type=int, default=0,
                   help="samples per guidance weight (0: --samples)")
    p.set_defaults(fn=cmd_evaluate)

    p = sub.add_parser("report", help="static HTML gallery of one or more runs")
    p.add_argument("runs", nargs="+")
    p.add_argument("--out", default="report")
    p.set_defaults(fn=cmd_report)

    p = sub.add_parser("demo", help="train ae, dae and vae on the data at hand and write the report")
    p.add_argument("--out", default="genzoo-demo")
    p.add_argument("--data", default="auto")
    p.add_argument("--budget", type=float, default=240.0, help="seconds of training in all (default 240)")
    p.add_argument("--seed", type=int, default=0)
    device_arg(p)
    p.set_defaults(fn=cmd_demo)

    p = sub.add_parser("gmm-demo", help="Gaussian mixture by EM on 2-D clusters: points, 1 and 2 std ellipses, samples")
    p.add_argument("--out", default="gmm-demo")
    p.add_argument("--components", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(fn=cmd_gmm_demo)

    p = sub.add_parser("bench", help="train (or reuse), evaluate and rank models: leaderboard.md/.json")
    p.add_argument("--models", nargs="+", help="CLI names (default: every model)")
    p.add_argument("--data", default="auto")
    p.add_argument("--budget", type=float, default=120.0, help="training seconds per model (0: its own epochs)")
    p.add_argument("--samples", dest="n_samples", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="bench")
    p.add_argument("--retrain", action="store_true", help="train again even where a finished run exists")
    p.add_argument("--max-test", dest="max_test", type=int, default=0, help="first N test images only (0: all)")
    p.add_argument("--iwae-k", dest="iwae_k", type=int, default=0, help="importance samples (0: each model's own)")
    device_arg(p)
    p.set_defaults(fn=cmd_bench)

    p = sub.add_parser("evaluator", help="`genzoo evaluator train`: rebuild the evaluator network asset")
    p.add_argument("action", choices=["train"])
    from .evaluator import add_arguments

    add_arguments(p)
    p.set_defaults(fn=cmd_evaluator)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except USER_ERRORS as e:
        print(f"genzoo {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # training has checkpointed and said how to resume
        return 130
