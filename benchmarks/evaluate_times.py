"""How long a default `genzoo evaluate RUN` takes for every family, and how far its budgeted estimate lies from
the paper-protocol figure.

For each family: the shipped model (`pretrained:NAME`, whose evaluation.json is a paper-protocol evaluation) where
one exists, else a short training of the family's default config (`genzoo train MODEL --steps N --time-budget S`
on the given data). Then `genzoo evaluate RUN` with no flags (the default budget) is timed by the wall clock, in a
process of its own, and the settings it chose, its headline figures and the paper protocol's time estimate that
it printed are recorded. Where the paper protocol is estimated to take at most --paper-under seconds,
`genzoo evaluate RUN --protocol paper` runs too, and the gap between the two figures is recorded.

Results go to OUT/results.jsonl, one line per family, with the load average before and after each timing (the
machine may be shared); a family already there is skipped, so the script can be stopped and run again.
`--markdown` prints the table of OUT/results.jsonl for docs/results/evaluation.md.

    nice -n 10 python benchmarks/evaluate_times.py --data /work/shared/data/mnist --out /tmp/evaluate-times
    python benchmarks/evaluate_times.py --out /tmp/evaluate-times --markdown
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from genzoo import pretrained, registry

# The VAE first (the long pass the budget exists for), then the shipped models (a paper-protocol figure).
ORDER = ("vae", "gmm", "bayes", "rbm", "ae", "gan", "pixelcnn", "instruct", "ddpm", "dae", "cgan", "dcgan",
         "pixelrnn")
HEADLINES = ("nll_nats", "nll_nats_whole_test", "fid", "edit_psnr", "reconstruction_mse")
PAPER_ESTIMATE = re.compile(r"the paper's protocol \(--protocol paper\): (.*?), about ([\d.]+) (s|min|h) here")
UNIT_SECONDS = {"s": 1.0, "min": 60.0, "h": 3600.0}


def genzoo(*args: str, log: Path) -> tuple[float, float, int]:
    """Run `genzoo ARGS` in a process of its own, stderr to `log`, stdout to `log`.out; returns (wall seconds,
    CPU seconds of that process, exit code). On a shared machine the CPU seconds say what the work cost."""
    start, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(log, "w") as err, open(f"{log}.out", "w") as out:
        code = subprocess.run([sys.executable, "-m", "genzoo", *args], stdout=out, stderr=err).returncode
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.perf_counter() - start, used.ru_utime + used.ru_stime - cpu.ru_utime - cpu.ru_stime, code


def headline(metrics: dict) -> dict:
    return {k: {"value": metrics[k]["value"], "se": metrics[k].get("se"), "n": metrics[k].get("n")}
            for k in HEADLINES if isinstance(metrics.get(k), dict)}


def prepare(name: str, out: Path, data: str, steps: int, train_seconds: float) -> tuple[Path, dict]:
    """The run folder to evaluate and how it was made: the shipped model's copy, or a short training."""
    run = out / name
    if name in pretrained.names():
        if not (run / "config.json").exists():
            source = pretrained.resolve(f"pretrained:{name}")
            run.mkdir(parents=True, exist_ok=True)
            for file in ("model.safetensors", "config.json"):
                shutil.copyfile(source / file, run / file)
        paper = json.loads((pretrained.resolve(f"pretrained:{name}") / "evaluation.json").read_text())
        return run, {"source": f"pretrained:{name}", "paper": headline(paper)}
    if not (run / "model.safetensors").exists():
        _, _, code = genzoo("train", name, "--data", data, "--steps", str(steps), "--time-budget",
                               str(train_seconds), "--device", "cpu", "--out", str(run), "--overwrite",
                               "--set", "sample_every=0",  # no sample grid: a Gibbs chain's takes minutes
                               log=out / f"{name}.train.log")
        if code:
            raise RuntimeError(f"{name}: training failed, see {out / f'{name}.train.log'}")
    ends = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if '"end"' in line]
    return run, {"source": f"genzoo train {name} --steps {steps} --time-budget {train_seconds:g} --set sample_every=0",
                 "trained_steps": ends[-1]["step"] if ends else None}


def evaluate(run: Path, log: Path, *flags: str) -> dict:
    load = os.getloadavg()[0]
    seconds, cpu, code = genzoo("evaluate", str(run), "--device", "cpu", "--json", *flags, log=log)
    if code:
        raise RuntimeError(f"{run}: genzoo evaluate {' '.join(flags)} failed, see {log}")
    metrics = json.loads(Path(f"{log}.out").read_text())
    paper = PAPER_ESTIMATE.search(log.read_text())
    return {"seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1), "load_before": round(load, 2),
            "load_after": round(os.getloadavg()[0], 2),
            "settings": {k: v for k, v in metrics["settings"].items() if v is not None and v != {}},
            "figures": headline(metrics),
            "paper_estimate": paper.group(1) if paper else None,
            "paper_seconds": float(paper.group(2)) * UNIT_SECONDS[paper.group(3)] if paper else None}


def gaps(budgeted: dict, paper: dict) -> dict:
    """Budgeted minus paper-protocol figure, in units of the budgeted figure's standard error where it has one."""
    out = {}
    for key in ("nll_nats", "fid", "edit_psnr", "reconstruction_mse"):
        mine = budgeted.get("nll_nats_whole_test" if key == "nll_nats" and "nll_nats_whole_test" in budgeted
                            else key)
        if mine and key in paper:
            gap = mine["value"] - paper[key]["value"]
            out[key] = {"gap": gap, "se": mine.get("se")}
    return out


def markdown(results: list[dict]) -> str:
    lines = ["| family | model evaluated | default `genzoo evaluate`: wall (CPU) | load (1 min) before -> after | "
             "settings the budget chose | budgeted figures | paper protocol (estimated here) | budgeted - paper |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        d = r["default"]
        figures = "; ".join(f"{k} {v['value']:.2f}" + (f" ± {v['se']:.2g}" if v.get("se") else "")
                            + (f" (n {v['n']:,})" if v.get("n") else "") for k, v in d["figures"].items()) or \
            "none (no pass fitted)"
        settings = ", ".join(f"{k} {v['betas']:,} betas x {v['runs']} runs" if k == "ais" else f"{k} {v}"
                             for k, v in d["settings"].items()
                             if k not in ("seed", "protocol", "budget_seconds", "test_total") and v is not False)
        if d["settings"].get("whole_test") is False:
            settings += " (the subset's own NLL)"
        hours = (d.get("paper_seconds") or 0) > 7200
        paper = (f"{d['paper_estimate']}: {d['paper_seconds'] / (3600 if hours else 60):,.1f} {'h' if hours else 'min'}"
                 if d.get("paper_estimate") else "–")
        gap = "; ".join(f"{k} {v['gap']:+.2f}" + (f" ({v['gap'] / v['se']:+.1f} se)" if v.get("se") else "")
                        for k, v in r.get("gap", {}).items()) or "–"
        lines.append(f"| {r['model']} | {r['source']} | {d['seconds'] / 60:.1f} min ({d['cpu_seconds'] / 60:.1f} "
                     f"min) | {d['load_before']:.1f} -> "
                     f"{d['load_after']:.1f} | {settings} | {figures} | {paper} | {gap} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/evaluate-times"))
    parser.add_argument("--data", default="/work/shared/data/mnist")
    parser.add_argument("--models", nargs="*", default=[m for m in ORDER if m in registry.MODELS])
    parser.add_argument("--steps", type=int, default=300, help="training steps of a family with no shipped model")
    parser.add_argument("--train-seconds", type=float, default=90.0, help="training time cap of each")
    parser.add_argument("--paper-under", type=float, default=300.0,
                        help="also run --protocol paper where its estimate is at most this many seconds")
    parser.add_argument("--markdown", action="store_true", help="print the table of OUT/results.jsonl and stop")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if Path(args.data).is_dir():  # the shipped models' config says data "auto": MNIST where GENZOO_DATA says
        os.environ["GENZOO_DATA"] = str(Path(args.data).resolve())
    results_path = args.out / "results.jsonl"
    results = [json.loads(line) for line in results_path.read_text().splitlines()] if results_path.exists() else []
    if args.markdown:
        print(markdown(results))
        return
    done = {r["model"] for r in results}
    for name in args.models:
        if name in done:
            continue
        print(f"{name}: preparing", flush=True)
        run, made = prepare(name, args.out, args.data, args.steps, args.train_seconds)
        shutil.rmtree(run / "evaluations", ignore_errors=True)  # no evaluation from an earlier try resumed
        print(f"{name}: default genzoo evaluate", flush=True)
        result = {"model": name, **made, "date": time.strftime("%Y-%m-%d %H:%M"), "cpus": os.cpu_count(),
                  "default": evaluate(run, args.out / f"{name}.evaluate.log")}
        paper = made.pop("paper", None)
        result.pop("paper", None)
        estimate = result["default"]["paper_seconds"]
        if paper is None and estimate is not None and estimate <= args.paper_under:
            print(f"{name}: genzoo evaluate --protocol paper (estimated {estimate:.0f} s)", flush=True)
            result["paper"] = evaluate(run, args.out / f"{name}.paper.log", "--protocol", "paper")
            paper = result["paper"]["figures"]
        elif paper is not None:
            result["paper"] = {"figures": paper, "from": "the shipped evaluation.json (protocol paper)"}
        if paper is not None:
            result["gap"] = gaps(result["default"]["figures"], paper)
        print(json.dumps(result), flush=True)
        with open(results_path, "a") as f:
            f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
