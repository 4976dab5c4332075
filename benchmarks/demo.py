"""Time the default `genzoo demo` and tabulate what it reached, for docs/RESULTS.md.

    python benchmarks/demo.py --out /tmp/genzoo-demo              # runs `genzoo demo` (default budget) and times it
    python benchmarks/demo.py --out /tmp/genzoo-demo --table-only # the table of a demo folder already written

Prints the wall clock of the whole command, the machine's load before and after, and one row per
model: training seconds in all, the share of samples the evaluator classifies with confidence >= 0.9,
the entropy of their digits in bits, FID-style score, samples scored, and the real-data floor.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def value(entry):
    return entry.get("value") if isinstance(entry, dict) else entry


def table(out: Path) -> str:
    floor = json.loads((out / "real_data.json").read_text())
    sessions = json.loads((out / "demo.json").read_text())
    lines = ["| model | demo runs | train s in all | confident >= 0.9 | class entropy (bits) | FID-style | samples |",
             "|---|---|---|---|---|---|---|",
             f"| real training digits (floor) | – | – | {floor['confident_share']:.3f} | "
             f"{floor['class_entropy_bits']:.2f} | {floor['fid']:.2f} | {floor['n']} |"]
    for name, runs in sessions.items():
        m = json.loads((out / name / "metrics.json").read_text())
        lines.append(f"| {name} | {len(runs)} | {value(m.get('train_seconds')) or 0:.0f} | "
                     f"{value(m['confident_share']):.3f} | {value(m['class_entropy_bits']):.2f} | "
                     f"{value(m['fid']):.1f} | {m['fid']['n']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="genzoo-demo")
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("demo_args", nargs="*", help="more `genzoo demo` arguments, after --")
    args = parser.parse_args()
    out = Path(args.out)
    if not args.table_only:
        load_before = os.getloadavg()
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "genzoo", "demo", "--out", str(out), *args.demo_args], check=True)
        wall = time.perf_counter() - start
        date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        print(f"wall clock {wall:.0f} s ({wall / 60:.1f} min); load average before {load_before[0]:.2f}, "
              f"after {os.getloadavg()[0]:.2f}; {os.cpu_count()} CPUs; {date}")
    print(table(out))


if __name__ == "__main__":
    main()
