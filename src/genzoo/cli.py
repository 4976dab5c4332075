"""The `genzoo` command: a thin shell over the library functions of the same names."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from . import catalog
from ._version import __version__
from .defaults import DEFAULT_EDITS, DEMO_BUDGET, EVALUATE_BUDGET, add_evaluator_arguments
from .serve import DEFAULT_ROOT as SERVE_ROOT  # a light module: FastAPI is imported when the server starts
from .serve import ServeError, serve


def user_errors() -> tuple[type[BaseException], ...]:
    """Errors a user can cause and fix: printed as one line, never as a traceback. (Read when one is raised:
    by then the modules that define them are imported.)"""
    from .config import ConfigError
    from .data import DataError
    from .evaluation.evaluator import EvaluatorError
    from .models.base import CapabilityError
    from .pretrained import PretrainedError
    from .recipes import RecipeError
    from .runs import RunError
    from .training import TrainingError

    return (DataError, ConfigError, RunError, TrainingError, CapabilityError, EvaluatorError, FileNotFoundError,
            ServeError, RecipeError, PretrainedError)


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1 (a count of images, steps, rows)."""
    return _bounded(text, int, 1)


def non_negative_int(text: str) -> int:
    """argparse type: a whole number >= 0 (where 0 means "all" or "none", as the help says)."""
    return _bounded(text, int, 0)


def non_negative_float(text: str) -> float:
    return _bounded(text, float, 0)


def _bounded(text: str, kind: type, low: float):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a {'whole ' if kind is int else ''}number") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"{text} must be >= {low:g}")
    return value


def sampling_args(p) -> None:
    p.add_argument("--guidance", type=float,
                   help="diffusion: classifier-free guidance w (0 uncond., 1 cond., >1 guided)")
    p.add_argument("--steps", type=positive_int, help="diffusion: DDIM steps")
    p.add_argument("--eta", type=float, help="diffusion: DDIM eta (0 deterministic, 1 ancestral variance)")
    p.add_argument("--sampler", choices=["ddim", "ancestral"], help="diffusion: the sampler")


def guidance_weights(text: str) -> list[float]:
    """argparse type of --guidance-sweep: comma-separated weights >= 0."""
    return [_bounded(part, float, 0) for part in text.split(",") if part.strip()]


# Each verb is one call of a library function, whose module is imported when the verb runs (the models and
# torch take seconds to import: `genzoo list` needs neither); what it returns (a path, a text) is printed by
# `main`.


def cmd_list(args):
    return catalog.listing()


def cmd_train(args):
    from . import commands

    return commands.train(args.model, data=args.data, out=args.out, device=args.device, seed=args.seed,
                          resume=args.resume, sets=args.set, epochs=args.epochs, steps=args.steps,
                          batch_size=args.batch_size, lr=args.lr, overwrite=args.overwrite,
                          time_budget=args.time_budget, recipe=args.recipe, init_from=args.init_from)


def cmd_pretrained(args):
    from . import pretrained

    return pretrained.listing()


def cmd_recipes(args):
    from . import recipes

    return recipes.listing(args.model)


def cmd_sample(args):
    from . import commands

    return commands.sample(args.run, args.n, label=args.label, seed=args.seed, out=args.out, device=args.device,
                           guidance=args.guidance, steps=args.steps, eta=args.eta, sampler=args.sampler,
                           chain=args.chain)


def cmd_reverse_process(args):
    from . import commands

    return commands.reverse_process(args.run, args.n, columns=args.columns, label=args.label, seed=args.seed,
                                    out=args.out, device=args.device, guidance=args.guidance, steps=args.steps,
                                    eta=args.eta, sampler=args.sampler)


def cmd_interpolate(args):
    from . import commands

    return commands.interpolate(args.run, args.out, steps=args.steps, label=args.label, rows=args.rows,
                                seed=args.seed, device=args.device)


def cmd_complete(args):
    from . import commands

    return commands.complete(args.run, args.hide, args.n, completions=args.completions, seed=args.seed,
                             out=args.out, device=args.device)


def cmd_reconstruct(args):
    from . import commands

    return commands.reconstruct(args.run, args.n, out=args.out, device=args.device)


def cmd_denoise(args):
    from . import commands

    return commands.denoise(args.run, args.noise, args.n, seed=args.seed, out=args.out, device=args.device)


def cmd_edit(args):
    from . import commands

    return commands.edit(args.run, args.instruction, images=args.image, test_indices=args.test_index,
                         image_guidance=args.image_guidance, text_guidance=args.text_guidance, steps=args.steps,
                         sweep=args.sweep, seed=args.seed, out=args.out, device=args.device)


def cmd_semantic_pairs(args):
    from . import commands

    return commands.semantic_pairs(args.run, args.out, args.n, threshold=args.threshold, steps=args.steps,
                                   guidance=args.guidance, seed=args.seed, device=args.device)


def seconds_since_start() -> float:
    """Seconds since this process started (Python's start and the imports, torch's the longest), where the system
    says (Linux's /proc); 0 elsewhere."""
    try:
        with open("/proc/self/stat") as stat, open("/proc/uptime") as uptime:
            started = int(stat.read().rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")  # field 22
            return max(0.0, float(uptime.read().split()[0]) - started)
    except (OSError, ValueError, IndexError):
        return 0.0


def cmd_evaluate(args):
    from . import commands

    return commands.evaluate(args.run, as_json=args.json, device=args.device, seed=args.seed,
                             started=args.started, max_test=args.max_test, random_subset=args.random_subset,
                             iwae_k=args.iwae_k, n_samples=args.n_samples, guidance=args.guidance, steps=args.steps,
                             eta=args.eta, sampler=args.sampler, guidance_sweep=args.guidance_sweep,
                             sweep_samples=args.sweep_samples, ais_betas=args.ais_betas, ais_runs=args.ais_runs,
                             n_edits=args.n_edits, budget=args.budget, protocol=args.protocol)


def cmd_report(args):
    from .showcase import report

    return report.write_report(args.runs, args.out)


def cmd_demo(args):
    from .showcase import demo

    return demo.run_demo(out=args.out, data=args.data, budget=args.budget, models=args.models, device=args.device,
                         seed=args.seed, phases=args.phases)


def cmd_gmm_demo(args):
    from . import commands

    return commands.gmm_demo(args.out, n_components=args.components, seed=args.seed)


def cmd_bench(args):
    from .showcase import bench

    return bench.run_bench(args.models, data=args.data, budget_seconds=args.budget, device=args.device,
                           out_dir=args.out, seed=args.seed, n_samples=args.n_samples, reuse=not args.retrain,
                           max_test=args.max_test, iwae_k=args.iwae_k)


def cmd_serve(args):
    return serve(args.root, host=args.host, port=args.port, threads=args.threads)


def cmd_evaluator(args):
    from .evaluation import evaluator

    return evaluator.main(args)


def device_arg(p) -> None:
    p.add_argument("--device", default="auto", help="auto (GPU when present), cpu or cuda")


def add_list(sub) -> None:
    p = sub.add_parser("list", help="the models, one line each")
    p.set_defaults(fn=cmd_list)


def add_train(sub) -> None:
    p = sub.add_parser("train", help="train a model into a run folder")
    p.add_argument("model", choices=catalog.NAMES, metavar="MODEL")
    p.add_argument("--data", default="auto", help="folder of IDX files, mnist, embedded, fashion-mnist or auto")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--epochs", type=positive_int)
    group.add_argument("--steps", type=positive_int)
    p.add_argument("--time-budget", dest="time_budget", type=non_negative_float, metavar="SECONDS",
                   help="stop (checkpointed) after this many seconds of training, summed over --resume sessions; "
                        "with --resume, a new budget to train on to")
    p.add_argument("--batch-size", dest="batch_size", type=positive_int)
    p.add_argument("--lr", type=float)
    device_arg(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="run folder (default runs/MODEL)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its last checkpoint; with --epochs or --steps, train it for longer",
    )
    p.add_argument("--overwrite", action="store_true",
                   help="--out holds a run: delete it and train afresh (without this, such a folder is refused)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="any model or trainer hyper-parameter")
    p.add_argument("--recipe", metavar="NAME",
                   help="a named recipe (`genzoo recipes MODEL` lists them: cpu, paper); --set and the options above "
                        "override its values")
    p.add_argument("--from", dest="init_from", metavar="RUN",
                   help="start from the weights and model settings of RUN (a run folder or pretrained:NAME), with a "
                        "fresh optimizer: how a shipped model trains on")
    p.set_defaults(fn=cmd_train)


def add_pretrained(sub) -> None:
    p = sub.add_parser("pretrained", help="the trained models shipped with genzoo (pretrained:NAME) and their figures")
    p.set_defaults(fn=cmd_pretrained)


def add_recipes(sub) -> None:
    p = sub.add_parser("recipes", help="the named recipes of every model (or one): settings, time, figures reached")
    p.add_argument("model", nargs="?", choices=catalog.NAMES, metavar="MODEL")
    p.set_defaults(fn=cmd_recipes)


def add_sample(sub) -> None:
    p = sub.add_parser("sample", help="draw a grid of samples from a trained run")
    p.add_argument("run")
    p.add_argument("-n", type=positive_int, default=64)
    p.add_argument("--label", type=int, help="digit to draw (conditional models)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="PNG file (default RUN/samples/sample_nN_seedS[_labelL][_OPTIONVALUE].png), "
                   "or FILE.npz for the images as uint8 arrays (any -n)")
    sampling_args(p)
    p.add_argument("--chain", action="store_true",
                   help="dae: show the Markov chain from noise (corrupt, denoise, repeat), one chain a row")
    device_arg(p)
    p.set_defaults(fn=cmd_sample)


def add_reverse_process(sub) -> None:
    p = sub.add_parser("reverse-process", help="diffusion: rows of x_T ... x_0, one digit per row (ddpm)")
    p.add_argument("run")
    p.add_argument("-n", type=positive_int, default=4, help="rows (digits 0, 3, 6, 9, ... unless --label)")
    p.add_argument("--columns", type=positive_int, default=10, help="states per row, x_T first and x_0 last")
    p.add_argument("--label", type=int, help="the digit of every row")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="PNG file (default RUN/samples/reverse_process_nN_columnsC_seedS[...].png)")
    sampling_args(p)
    device_arg(p)
    p.set_defaults(fn=cmd_reverse_process)


def add_interpolate(sub) -> None:
    p = sub.add_parser("interpolate", help="rows of images along straight latent paths (gan, cgan, dcgan)")
    p.add_argument("run")
    p.add_argument("--steps", type=positive_int, default=10, help="images per row, end points included")
    p.add_argument("--label", type=int, help="digit of every row (conditional models; default one row per digit)")
    p.add_argument("--rows", type=positive_int, default=4, help="independent paths (unconditional, or with --label)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="PNG file (default RUN/samples/interpolation_stepsS_rowsR_seedS[_labelL].png)")
    device_arg(p)
    p.set_defaults(fn=cmd_interpolate)


def add_complete(sub) -> None:
    p = sub.add_parser("complete", help="fill in the hidden part of test digits (pixelcnn, pixelrnn)")
    p.add_argument("run")
    p.add_argument("--hide", choices=["bottom-half", "right-half", "box"], default="bottom-half")
    p.add_argument("-n", type=positive_int, default=10, help="test digits (fixed binarization)")
    p.add_argument("--completions", type=positive_int, default=4, help="completions per digit")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="PNG file (default RUN/completions-HIDE_nN_completionsC_seedS.png)")
    device_arg(p)
    p.set_defaults(fn=cmd_complete)


def add_reconstruct(sub) -> None:
    p = sub.add_parser("reconstruct", help="test digits above their reconstructions (autoencoders)")
    p.add_argument("run")
    p.add_argument("-n", type=positive_int, default=16)
    p.add_argument("--out", help="PNG file (default RUN/reconstructions_nN.png)")
    device_arg(p)
    p.set_defaults(fn=cmd_reconstruct)


def add_denoise(sub) -> None:
    p = sub.add_parser("denoise", help="rows of clean / noisy / denoised test digits (dae)")
    p.add_argument("run")
    p.add_argument("--noise", action="append", metavar="KIND:LEVEL",
                   help="gaussian:0.5, salt-and-pepper:0.3 or masking:0.5 (repeatable; default all three)")
    p.add_argument("-n", type=positive_int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="PNG file (default RUN/denoising_noiseKINDLEVEL_nN_seedS.png)")
    device_arg(p)
    p.set_defaults(fn=cmd_denoise)


def add_edit(sub) -> None:
    p = sub.add_parser("edit", help="edit digits by free-text instructions (an instruct run)")
    p.add_argument("run")
    p.add_argument("--image", action="append", metavar="FILE",
                   help="a PNG or JPEG of a digit, any size or mode (repeatable: one row each)")
    p.add_argument("--test-index", "--digit-from-test", dest="test_index", action="append", type=non_negative_int,
                   metavar="I", help="the run's test digit I (repeatable)")
    p.add_argument("--instruction", action="append", metavar="TEXT", required=True,
                   help="what to do, e.g. 'make it thicker' (repeatable: one column each)")
    p.add_argument("--image-guidance", dest="image_guidance", type=non_negative_float,
                   help="s_I: how closely to keep the input (default: the run's)")
    p.add_argument("--text-guidance", dest="text_guidance", type=non_negative_float,
                   help="s_T: how strongly to follow the instruction (default: the run's)")
    p.add_argument("--steps", type=positive_int, help="DDIM steps (default: the run's)")
    p.add_argument("--sweep", action="store_true",
                   help="one digit, one instruction, under a grid of guidance scales (s_I down, s_T across)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="PNG file (default RUN/edits/edit_seedS.png or sweep_seedS.png)")
    device_arg(p)
    p.set_defaults(fn=cmd_edit)


def add_semantic_pairs(sub) -> None:
    p = sub.add_parser("semantic-pairs", help="editor training pairs 'turn this 3 into an 8' from a ddpm run")
    p.add_argument("run", help="a class-conditional ddpm run")
    p.add_argument("--out", required=True, help="folder for pairs.safetensors, pairs.json and pairs.png")
    p.add_argument("-n", type=positive_int, default=1000, help="candidate pairs to draw")
    p.add_argument("--threshold", type=float, default=0.9,
                   help="evaluator probability both digits of a pair must reach to be kept")
    p.add_argument("--steps", type=positive_int, default=50, help="DDIM steps (eta = 0)")
    p.add_argument("--guidance", type=non_negative_float, default=2.0, help="classifier-free guidance w")
    p.add_argument("--seed", type=int, default=0)
    device_arg(p)
    p.set_defaults(fn=cmd_semantic_pairs)


def add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="every metric that applies; writes RUN/evaluations/SETTINGS.json and "
                       "RUN/metrics.json (the most complete evaluation)")
    p.add_argument("run")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.add_argument("--seed", type=int, default=0)
    # the budget is the time the user waits: it began with the process (Python's start, the imports)
    p.set_defaults(started=time.perf_counter() - seconds_since_start())
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--budget", type=non_negative_float, metavar="SECONDS",
                        help="the settings not given are chosen so that the command takes about this long here, "
                             f"from a timed probe (default {EVALUATE_BUDGET:.0f}); the estimates carry their "
                             "standard errors")
    budget.add_argument("--protocol", choices=["paper"], help="the paper's protocol for the settings not given "
                        "(IWAE K=5000 on all test digits, AIS 14500 x 100, 10000 samples); says its time first")
    p.add_argument("--max-test", dest="max_test", type=non_negative_int, default=None,
                   help="likelihood, reconstruction and denoising on the first N test images only (0: all); sample "
                        "quality always compares with every test digit")
    p.add_argument("--random-subset", dest="random_subset", action="store_true", default=None,
                   help="with --max-test: N test images drawn at random (seeded) instead of the first N; for the "
                        "VAE, also estimates the whole test set's NLL from them")
    p.add_argument("--iwae-k", dest="iwae_k", type=non_negative_int, default=None,
                   help="importance samples (0: the model's own)")
    device_arg(p)
    p.add_argument("--samples", dest="n_samples", type=non_negative_int, default=None,
                   help="samples for FID-style score, precision/recall, coverage (0: none; 10000 for the reported "
                        "figures)")
    sampling_args(p)
    p.add_argument("--guidance-sweep", dest="guidance_sweep", metavar="W,W,...", type=guidance_weights,
                   help="diffusion: FID-style and conditional accuracy at each guidance weight, e.g. 0,1,2,3,5; "
                        "writes RUN/guidance_sweep.json and .png")
    p.add_argument("--sweep-samples", dest="sweep_samples", type=non_negative_int, default=0,
                   help="samples per guidance weight (0: --samples)")
    p.add_argument("--ais-betas", dest="ais_betas", type=non_negative_int, default=None,
                   help="rbm: AIS intermediate distributions for log Z (0: the run's own, 14500 by default); "
                        "fewer are quicker, with a wider spread (recorded beside the NLL)")
    p.add_argument("--ais-runs", dest="ais_runs", type=non_negative_int, default=None,
                   help="rbm: AIS chains for log Z (0: the run's own, 100 by default)")
    p.add_argument("--edits", dest="n_edits", type=non_negative_int, default=None,
                   help=f"instruct: test digits edited, the edit kinds in turn, scored against the exact outputs "
                        f"(default: what the budget allows, at most {DEFAULT_EDITS}; 0: none)")
    p.set_defaults(fn=cmd_evaluate)


def add_report(sub) -> None:
    p = sub.add_parser("report", help="static HTML gallery of one or more runs")
    p.add_argument("runs", nargs="+")
    p.add_argument("--out", default="report")
    p.set_defaults(fn=cmd_report)


def add_demo(sub) -> None:
    p = sub.add_parser("demo", help="train, evaluate and report every model family within a time budget")
    p.add_argument("--out", default="genzoo-demo", help="demo folder; run again to train every model for longer")
    p.add_argument("--data", default="auto")
    p.add_argument("--budget", type=non_negative_float, default=DEMO_BUDGET,
                   help=f"seconds of wall clock for the whole demo (default {DEMO_BUDGET:.0f})")
    p.add_argument("--models", nargs="+", help="CLI names (default: every model), or pretrained:NAME for a shipped "
                                               "model, ranked as shipped (not trained)")
    p.add_argument("--seed", type=int, default=0)
    half = p.add_mutually_exclusive_group()
    half.add_argument("--shipped-only", dest="phases", action="store_const", const="shipped", default="both",
                      help="only the shipped trained models' pictures and figures (a few minutes), no training")
    half.add_argument("--from-scratch-only", dest="phases", action="store_const", const="scratch",
                      help="only the training from scratch, without the shipped models")
    device_arg(p)
    p.set_defaults(fn=cmd_demo)


def add_gmm_demo(sub) -> None:
    p = sub.add_parser("gmm-demo", help="Gaussian mixture by EM on 2-D clusters: points, 1 and 2 std ellipses, samples")
    p.add_argument("--out", default="gmm-demo")
    p.add_argument("--components", type=positive_int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(fn=cmd_gmm_demo)


def add_bench(sub) -> None:
    p = sub.add_parser("bench", help="train (or reuse), evaluate and rank models: leaderboard.md/.json")
    p.add_argument("--models", nargs="+", help="CLI names (default: every model), or pretrained:NAME for a shipped "
                                               "model, ranked as shipped (not trained)")
    p.add_argument("--data", default="auto")
    p.add_argument("--budget", type=non_negative_float, default=120.0,
                   help="training seconds per model (0: its own epochs)")
    p.add_argument("--samples", dest="n_samples", type=non_negative_int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="bench")
    p.add_argument("--retrain", action="store_true", help="train again even where a finished run exists")
    p.add_argument("--max-test", dest="max_test", type=non_negative_int, default=0,
                   help="first N test images only (0: all)")
    p.add_argument("--iwae-k", dest="iwae_k", type=non_negative_int, default=0,
                   help="importance samples (0: each model's own)")
    device_arg(p)
    p.set_defaults(fn=cmd_bench)


def add_serve(sub) -> None:
    p = sub.add_parser("serve", help="local web app over the shipped models and run folders: draw a digit, watch "
                                      "every model work on it")
    p.add_argument("root", nargs="?", default=None, metavar="RUN_ROOT",
                   help=f"folder whose run folders are served beside the shipped models (e.g. {SERVE_ROOT}, the "
                        "demo's; default: the shipped models alone)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback; others warn)")
    p.add_argument("--port", type=non_negative_int, default=8000, help="TCP port (default 8000)")
    p.add_argument("--threads", type=non_negative_int, default=0, help="torch CPU threads (0: half the cores, <= 4)")
    p.set_defaults(fn=cmd_serve)


def add_evaluator(sub) -> None:
    p = sub.add_parser("evaluator", help="`genzoo evaluator train`: rebuild the evaluator network asset")
    p.add_argument("action", choices=["train"])
    add_evaluator_arguments(p)
    p.set_defaults(fn=cmd_evaluator)


# The verbs in the order `genzoo --help` lists them.
VERBS = (add_list, add_train, add_pretrained, add_recipes, add_sample, add_reverse_process, add_interpolate,
         add_complete, add_reconstruct, add_denoise, add_edit, add_semantic_pairs, add_evaluate, add_report,
         add_demo, add_gmm_demo, add_bench, add_serve, add_evaluator)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: one subparser per verb, each added by its own function below."""
    parser = argparse.ArgumentParser(prog="genzoo", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"genzoo {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_verb in VERBS:
        add_verb(sub)
    return parser


def shipped_runs_to_workspaces(args) -> None:
    """`pretrained:NAME` where a verb takes run folders: the verb works on a folder the user owns that holds a
    copy of the shipped model (`genzoo.pretrained.workspace`), so nothing is written into the installed package."""
    from . import pretrained

    for attr in ("run", "runs"):
        value = getattr(args, attr, None)
        if isinstance(value, list):
            setattr(args, attr, [str(pretrained.workspace(v)) if pretrained.is_pretrained(v) else v for v in value])
        elif value is not None and pretrained.is_pretrained(value):
            setattr(args, attr, str(pretrained.workspace(value)))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        shipped_runs_to_workspaces(args)
        result = args.fn(args)
    except user_errors() as e:
        print(f"genzoo {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a file that cannot be read or written: name it, no traceback
        where = f"{e.filename}: " if e.filename else ""
        print(f"genzoo {args.command}: error: {where}{e.strerror or e}; choose another path", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # training has checkpointed and said how to resume
        return 130
    if isinstance(result, (str, Path)):  # a written file or a text; bench and evaluator print their own tables
        try:
            print(result, flush=True)
        except BrokenPipeError:  # `genzoo recipes | head`: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
    return 0
