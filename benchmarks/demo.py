"""Time `genzoo demo` and tabulate what it reached, for docs/RESULTS.md.

    python benchmarks/demo.py --out /tmp/genzoo-demo              # runs `genzoo demo` (default budget) and times it
    python benchmarks/demo.py --out /tmp/genzoo-demo -- --data ../shared/data/mnist   # more demo arguments after --
    python benchmarks/demo.py --out /tmp/genzoo-demo --passes 2   # the demo, then its continuation in the same folder
    python benchmarks/demo.py --out /tmp/genzoo-demo --table-only # the tables of a demo folder already written
    OMP_NUM_THREADS=1 python benchmarks/demo.py --out /tmp/genzoo-costs --costs   # what each slice's reserve must hold
    GENZOO_DATA=../shared/data/mnist OMP_NUM_THREADS=1 python benchmarks/demo.py --out /tmp/costs --costs --models vae

Prints the wall clock of the whole command against its budget, the machine's load average before,
during (sampled every 15 s) and after; the shipped phase's wall clock, model by model; then one row per model
trained from scratch in the demo folder: demo runs, training
seconds in all, the last run's slice, wall clock and CPU seconds, the samples scored, the share of samples
the evaluator classifies with confidence >= 0.9, the entropy of their digits in bits, FID-style score and
conditional accuracy; and, for models run more than once, those scores after each demo run and the change of
the confident share from the first run to the last (what the second run bought).

--costs measures, for every model at its CPU recipe, the work that follows training inside its slice and
does not shrink with the time left: the grid drawn where the budget stops training, the model's pictures,
the probes of 8 and 32 samples and an evaluation with the fewest samples the demo scores (MIN_SAMPLES), in CPU seconds
of one thread (a run trained for one step: these costs do not depend on the weights), beside the reserve the
demo keeps for it at the default budget. A ratio well under 1 means the slice holds even on a loaded machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path


def value(entry):
    return entry.get("value") if isinstance(entry, dict) else entry


def fmt(x, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def history_row(name: str, runs: list[dict], width: int) -> str:
    """A model's sample scores after each demo run, and how far the confident share moved from the first."""
    cells = []
    for r in runs:
        if r["what"].startswith("already"):
            cells.append(f"kept: {fmt(r.get('confident_share'), '.3f')}")
        elif r.get("confident_share") is None:
            cells.append("-")
        else:
            cells.append(f"{r['train_seconds_in_all']:.0f} s: {r['confident_share']:.3f}, "
                         f"{r['class_entropy_bits']:.2f} bits, FID-style {r['fid']:.0f}")
    cells += ["-"] * (width - len(cells))  # a model left out of the later runs (--models)
    scored = [r["confident_share"] for r in runs if r.get("confident_share") is not None]
    change = f"{scored[-1] - scored[0]:+.3f}" if len(scored) > 1 else "-"
    return f"| {name} | " + " | ".join(cells) + f" | {change} |"


def shipped_table(out: Path) -> str:
    """The shipped phase (OUT/shipped/shipped.json): each shipped model's wall clock and pictures drawn."""
    summary = json.loads((out / "shipped" / "shipped.json").read_text())
    lines = [f"The shipped phase: {len(summary['models'])} models drawn in {summary.get('seconds', 0):.0f} s "
             "(zoo picture included).", "", "| shipped model | wall clock (s) | pictures | pictures left out |",
             "|---|---|---|---|"]
    lines += [f"| {name} | {entry['seconds']:.1f} | {len(entry['pictures'])} | "
              f"{'yes' if entry['pictures_left_out'] else '-'} |" for name, entry in summary["models"].items()]
    return "\n".join(lines)


def table(out: Path) -> str:
    parts = [shipped_table(out)] if (out / "shipped" / "shipped.json").exists() else []
    if (out / "demo.json").exists():
        parts.append(scratch_table(out))
    return "\n\n".join(parts)


def scratch_table(out: Path) -> str:
    floor = json.loads((out / "real_data.json").read_text())
    sessions = json.loads((out / "demo.json").read_text())
    lines = ["| model | demo runs | train s in all | last run: slice / wall / CPU s | samples | confident >= 0.9 | "
             "class entropy (bits) | FID-style | conditional accuracy |",
             "|---|---|---|---|---|---|---|---|---|",
             f"| real training digits (floor) | – | – | – | {floor['n']} | {floor['confident_share']:.3f} | "
             f"{floor['class_entropy_bits']:.2f} | {floor['fid']:.2f} | – |"]
    for name, runs in sessions.items():
        m = json.loads((out / name / "metrics.json").read_text())
        last = runs[-1]
        lines.append(f"| {name} | {len(runs)} | {value(m.get('train_seconds')) or 0:.0f} | "
                     f"{last['slice_seconds']:.0f} / {last.get('wall_seconds', 0):.0f} / "
                     f"{fmt(last.get('cpu_seconds'), '.0f')} | {m['fid']['n']} | "
                     f"{value(m['confident_share']):.3f} | {value(m['class_entropy_bits']):.2f} | "
                     f"{value(m['fid']):.1f} | {fmt(value(m.get('conditional_accuracy')), '.3f')} |")
    editors = {name: runs for name, runs in sessions.items() if any(r.get("edit_psnr") is not None for r in runs)}
    if editors:  # an editor is judged by its edits: PSNR against the exact outputs, evaluator agreement
        lines += ["", "Edits of test digits (the editor's outputs; its samples above are a by-product), after each "
                  "demo run:", "", "| model | demo run | train s in all | edits | edit PSNR (dB) | doing nothing (dB) "
                  "| read as the exact output's digit |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {name} | {i} | {r['train_seconds_in_all']:.0f} | {r.get('n_edits')} | {r['edit_psnr']:.2f} | "
                  f"{r['edit_psnr_input']:.2f} | {r['edit_label_agreement']:.3f} |"
                  for name, runs in editors.items() for i, r in enumerate(runs, 1) if r.get("edit_psnr") is not None]
    width = max(len(runs) for runs in sessions.values())
    history = [history_row(name, runs, width) for name, runs in sessions.items() if len(runs) > 1]
    if history:
        lines += ["", "Sample scores after each demo run (training seconds in all: confident >= 0.9, class "
                  "entropy, FID-style; a closed-form fit is kept as it was fitted):", "",
                  "| model | " + " | ".join(f"run {i}" for i in range(1, width + 1)) + " | confident share, "
                  "last run minus first |", "|---|" + "---|" * (width + 1), *history]
    return "\n".join(lines)


def cpu_seconds(fn, *args) -> float:
    began = time.process_time()
    fn(*args)
    return time.process_time() - began


def fixed_costs(name: str, data, run_dir: Path) -> tuple[float, float, float, float]:
    """CPU seconds of (the stop grid, the pictures, the probe, the evaluation with MIN_SAMPLES samples) of a
    model at its CPU recipe, trained for one step (or fitted) into run_dir."""
    import torch

    from genzoo import registry
    from genzoo.evaluation.evaluate import evaluate_run
    from genzoo.images import save_pictures
    from genzoo.runs import load
    from genzoo.showcase.demo import MIN_SAMPLES, PROBE_SAMPLES, eval_settings, model_settings
    from genzoo.trainer import train

    hparams, train_cfg = model_settings(name, "cpu")
    length = {} if registry.get(name).training_mode == "fit" else {"steps": 1, "epochs": 0}
    train(name, data=data, out=run_dir, device="cpu", model_overrides=hparams, progress=False,
          train_overrides={**train_cfg, **length, "sample_every": 0, "test_every": 0}, overwrite=True)
    model = load(run_dir, "cpu").eval()

    def draw(n: int):
        labels = torch.arange(n) % 10 if model.conditional else None
        return model.sample(n, y=labels, generator=torch.Generator().manual_seed(0))

    grid = cpu_seconds(draw, train_cfg.get("n_grid", 64)) if train_cfg.get("sample_every", 1) else 0.0
    pictures = cpu_seconds(lambda: save_pictures(model.pictures(data), run_dir))
    probe = cpu_seconds(draw, PROBE_SAMPLES) + cpu_seconds(draw, 4 * PROBE_SAMPLES) if model.can_sample else 0.0
    settings = {**eval_settings(name, "cpu", len(data.test_x)), "n_samples": MIN_SAMPLES}
    evaluation = cpu_seconds(lambda: evaluate_run(run_dir, device="cpu", **settings))
    return grid, pictures, probe, evaluation


def costs(out: Path, models: list[str] | None = None) -> str:
    """The fixed post-training work of every model (CPU seconds, one thread) against the reserve of its slice."""
    import torch

    from genzoo import registry
    from genzoo.data import load_data
    from genzoo.defaults import DEMO_BUDGET
    from genzoo.showcase.demo import MIN_SAMPLES, plan_slice
    from genzoo.showcase.zoo import RECIPES

    torch.set_num_threads(1)
    data = load_data("auto")
    shares = sum(RECIPES[m].share for m in registry.MODELS)
    lines = [f"CPU seconds of one thread on {data.describe()}; reserve: the seconds of the slice kept from training "
             f"at the default budget of {DEMO_BUDGET:.0f} s, every model run to plan", "",
             f"| model | slice s | reserve s | stop grid | pictures | probe | evaluation, {MIN_SAMPLES} samples | "
             "in all | in all / reserve |", "|---|---|---|---|---|---|---|---|---|"]
    for name in models or registry.MODELS:
        recipe = RECIPES[name]
        whole, seconds = plan_slice(DEMO_BUDGET, recipe.share, shares, recipe.eval_seconds)
        grid, pictures, probe, evaluation = fixed_costs(name, data, out / name)
        total, reserve = grid + pictures + probe + evaluation, whole - seconds
        lines.append(f"| {name} | {whole:.0f} | {reserve:.0f} | {grid:.1f} | {pictures:.1f} | {probe:.1f} | "
                     f"{evaluation:.1f} | {total:.1f} | {total / reserve:.2f} |")
        print(lines[-1], file=sys.stderr, flush=True)
    return "\n".join(lines)


def timed_pass(out: Path, demo_args: list[str], what: str) -> None:
    """Run `genzoo demo` once and print its wall clock with the machine's load before, during and after."""
    loads, done = [], threading.Event()

    def sample_load():
        while not done.wait(15):
            loads.append(os.getloadavg()[0])

    load_before = os.getloadavg()[0]
    sampler = threading.Thread(target=sample_load, daemon=True)
    sampler.start()
    start = time.perf_counter()
    command = [sys.executable, "-m", "genzoo", "demo", "--out", str(out), *demo_args]
    subprocess.run(command, check=True)
    wall = time.perf_counter() - start
    done.set()
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    during = f"{min(loads):.2f} to {max(loads):.2f}, mean {sum(loads) / len(loads):.2f}" if loads else "-"
    print(f"{what + ': ' if what else ''}`{' '.join(['genzoo', *command[3:]])}`: wall clock {wall:.0f} s "
          f"({wall / 60:.1f} min); 1-minute load average before {load_before:.2f}, during {during}, after "
          f"{os.getloadavg()[0]:.2f}; {os.cpu_count()} CPUs; finished {date}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="genzoo-demo")
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("--costs", action="store_true", help="the fixed post-training work of each model against "
                        "its reserve (CPU seconds; trains nothing for long)")
    parser.add_argument("--models", nargs="+", help="with --costs: these models only")
    parser.add_argument("--passes", type=int, default=1, help="run the demo this many times in the same folder "
                        "(each a continuation of the last), timing each")
    parser.add_argument("demo_args", nargs="*", help="more `genzoo demo` arguments, after --")
    args = parser.parse_args()
    out = Path(args.out)
    if args.costs:
        print(costs(out, args.models))
        return
    if not args.table_only:
        for i in range(args.passes):
            timed_pass(out, args.demo_args, f"pass {i + 1} of {args.passes}" if args.passes > 1 else "")
    print(table(out))


if __name__ == "__main__":
    main()
