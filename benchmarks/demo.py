"""Time `genzoo demo` and tabulate what it reached, for docs/RESULTS.md.

    python benchmarks/demo.py --out /tmp/genzoo-demo              # runs `genzoo demo` (default budget) and times it
    python benchmarks/demo.py --out /tmp/genzoo-demo -- --data ../shared/data/mnist   # more demo arguments after --
    python benchmarks/demo.py --out /tmp/genzoo-demo --table-only # the tables of a demo folder already written

Prints the wall clock of the whole command against its budget, the machine's load average before,
during (sampled every 15 s) and after, then one row per model from the demo folder: demo runs, training
seconds in all, the last run's slice, wall clock and CPU seconds, the samples scored, the share of samples
the evaluator classifies with confidence >= 0.9, the entropy of their digits in bits, FID-style score and
conditional accuracy; and, for models run more than once, those scores after each demo run (what the
second run bought).
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


def table(out: Path) -> str:
    floor = json.loads((out / "real_data.json").read_text())
    sessions = json.loads((out / "demo.json").read_text())
    lines = ["| model | demo runs | train s in all | last run: slice / wall / CPU s | samples | confident >= 0.9 | "
             "class entropy (bits) | FID-style | conditional accuracy |",
             "|---|---|---|---|---|---|---|---|---|",
             f"| real training digits (floor) | – | – | – | {floor['n']} | {floor['confident_share']:.3f} | "
             f"{floor['class_entropy_bits']:.2f} | {floor['fid']:.2f} | – |"]
    history = []
    for name, runs in sessions.items():
        m = json.loads((out / name / "metrics.json").read_text())
        last = runs[-1]
        lines.append(f"| {name} | {len(runs)} | {value(m.get('train_seconds')) or 0:.0f} | "
                     f"{last['slice_seconds']:.0f} / {last.get('wall_seconds', 0):.0f} / "
                     f"{fmt(last.get('cpu_seconds'), '.0f')} | {m['fid']['n']} | "
                     f"{value(m['confident_share']):.3f} | {value(m['class_entropy_bits']):.2f} | "
                     f"{value(m['fid']):.1f} | {fmt(value(m.get('conditional_accuracy')), '.3f')} |")
        continued = [r for r in runs if r.get("confident_share") is not None and not r["what"].startswith("already")]
        if len(continued) > 1:
            history.append(f"| {name} | " + " | ".join(
                f"{r['train_seconds_in_all']:.0f} s: {r['confident_share']:.3f}, {r['class_entropy_bits']:.2f} bits, "
                f"FID-style {r['fid']:.0f}" for r in continued) + " |")
    if history:
        width = max(h.count(" | ") for h in history)
        lines += ["", "Sample scores after each demo run (training seconds in all: confident >= 0.9, class "
                  "entropy, FID-style):", "", "| model | " + " | ".join(f"run {i}" for i in range(1, width + 1)) + " |",
                  "|---|" + "---|" * width, *history]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="genzoo-demo")
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("demo_args", nargs="*", help="more `genzoo demo` arguments, after --")
    args = parser.parse_args()
    out = Path(args.out)
    if not args.table_only:
        loads, done = [], threading.Event()

        def sample_load():
            while not done.wait(15):
                loads.append(os.getloadavg()[0])

        load_before = os.getloadavg()[0]
        sampler = threading.Thread(target=sample_load, daemon=True)
        sampler.start()
        start = time.perf_counter()
        command = [sys.executable, "-m", "genzoo", "demo", "--out", str(out), *args.demo_args]
        subprocess.run(command, check=True)
        wall = time.perf_counter() - start
        done.set()
        date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        during = f"{min(loads):.2f} to {max(loads):.2f}, mean {sum(loads) / len(loads):.2f}" if loads else "-"
        print(f"`{' '.join(['genzoo', *command[3:]])}`: wall clock {wall:.0f} s ({wall / 60:.1f} min); "
              f"1-minute load average before {load_before:.2f}, during {during}, after {os.getloadavg()[0]:.2f}; "
              f"{os.cpu_count()} CPUs; finished {date}")
    print(table(out))


if __name__ == "__main__":
    main()
