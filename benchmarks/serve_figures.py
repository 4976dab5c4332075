"""Every figure issue 21 asks of `genzoo serve`, in one command, written as the markdown of its results page.

    python benchmarks/serve_figures.py --write docs/results/serve.md

1. The page in a real browser, `--loads` times: the browser test (`tests/test_serve.py`, ten runs under
   RUN_ROOT, a fresh headless Chromium each time) writes the page's own timings (`serve-timings.json`,
   `performance.now()` in the page): the first load (the page's answer, the `load` event, ready = the runs
   listed and the first run's report drawn), a reload, drawing-to-classification for three drawings, three
   denoise answers and the VAE's reconstruction with its latent map.
2. The loopback load test: `benchmarks/serve_load.py` (200 mixed requests from 8 clients, the server as its
   own process) over small runs it trains first into `--root` (a fresh folder unless given).

Prints the markdown (date, CPU, load average before and after, the commands, each target met or not) and, with
`--write FILE`, puts it in FILE between the lines `<!-- serve_figures -->` and `<!-- /serve_figures -->`.
Run it on an idle machine at normal priority: what it measures is the machine as much as the server.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- serve_figures -->", "<!-- /serve_figures -->"
PAGE_TARGET_MS, ANSWER_TARGET_MS = 1000, 300  # issue 21: the page in under 1 s, an answer in under 300 ms


def run(command: list[str], env: dict[str, str] | None = None, check: bool = True) -> int:
    print("$", " ".join(command), flush=True)
    environment = {**os.environ, "PYTHONPATH": str(REPO / "src"), **(env or {})}
    return subprocess.run(command, cwd=REPO, env=environment, check=check).returncode


def browser_timings(loads: int, scratch: Path) -> list[dict]:
    """The browser test's timings, once per fresh browser."""
    out = []
    for i in range(loads):
        shots = scratch / f"browser-{i + 1}"
        run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_serve.py", "-k",
             "test_the_page_in_headless_chromium"], env={"GENZOO_SCREENSHOT_DIR": str(shots)})
        timings = shots / "serve-timings.json"
        if not timings.exists():
            raise SystemExit(f"{timings}: the browser test wrote no timings (skipped? it needs chromium, "
                             "chromium-driver and selenium: see .ci/run)")
        out.append(json.loads(timings.read_text()))
    return out


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def chromium_version() -> str:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if not binary:
        return "no chromium"
    return subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip()


def verdict(values: list[float], target: float) -> str:
    worst = max(values)
    return f"< {target:.0f}: **met** (all {len(values)})" if worst < target else \
        f"< {target:.0f}: **not met** ({sum(v >= target for v in values)} of {len(values)} at or over)"


def browser_table(timings: list[dict]) -> list[str]:
    ms = lambda v: f"{v:,.0f}"  # noqa: E731
    rows = [
        ("first load: the page's answer (document)", [t["document"] for t in timings], None),
        ("first load: `load` event", [t["load_event"] for t in timings], None),
        ("first load: ready (runs listed, first report drawn)", [t["ready"] for t in timings], PAGE_TARGET_MS),
        ("reload: ready", [t["reload"]["ready"] for t in timings], PAGE_TARGET_MS),
    ]
    lines = ["| what | " + " | ".join(f"browser {i + 1}" for i in range(len(timings))) + " | median | target |",
             "|---" * (len(timings) + 3) + "|"]
    for what, values, target in rows:
        lines.append(f"| {what} | " + " | ".join(ms(v) for v in values) + f" | {ms(statistics.median(values))} | "
                     + (verdict(values, target) if target else "") + " |")
    for what, key, target in (("drawing-to-classification (3 drawings)", "classify", ANSWER_TARGET_MS),
                              ("denoise answer (3 presses; the first loads the model)", "denoise", ANSWER_TARGET_MS),
                              ("VAE reconstruction with its latent map (first call)", "reconstruct", None)):
        values = [v for t in timings for v in t[key]]
        lines.append(f"| {what} | " + " | ".join(", ".join(ms(v) for v in t[key]) for t in timings)
                     + f" | {ms(statistics.median(values))} | " + (verdict(values, target) if target else "") + " |")
    return lines


def load_table(report: dict) -> list[str]:
    lines = [f"{report['requests_answered']} requests from {report['clients']} clients in {report['wall_seconds']} s "
             f"({report['requests_per_second']}/s): **{report['server_errors']} server errors, "
             f"{len(report['connection_failures'])} failed connections**; jobs at the end: "
             + (", ".join(f"{n} {s}" for s, n in report["jobs_at_end"].items()) or "none")
             + f"; runs: {', '.join(report['runs'])}.", "",
             "| endpoint | n | p50 ms | p95 ms | max ms | status |", "|---|---|---|---|---|---|"]
    for row in report["endpoints"]:
        status = ", ".join(f"{code}: {n}" for code, n in row["status"].items())
        lines.append(f"| {row['endpoint']} | {row['n']} | {row['p50_ms']:.0f} | {row['p95_ms']:.0f} | "
                     f"{row['max_ms']:.0f} | {status} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", type=int, default=3, help="browser test runs (each a fresh browser)")
    parser.add_argument("--root", help="RUN_ROOT of the load test (default: a fresh folder, runs trained there)")
    parser.add_argument("--steps", type=int, default=20, help="training steps of each load-test run")
    parser.add_argument("--write", metavar="FILE", help="put the markdown in FILE between the serve_figures lines")
    args = parser.parse_args()
    if args.write and (BEGIN not in Path(args.write).read_text() or END not in Path(args.write).read_text()):
        raise SystemExit(f"{args.write}: no lines {BEGIN} and {END} to write between; add them where the "
                         "figures go")

    scratch = Path(tempfile.mkdtemp(prefix="serve-figures-"))
    load_before = os.getloadavg()[0]
    started = datetime.now(timezone.utc)
    timings = browser_timings(args.loads, scratch)
    root = Path(args.root) if args.root else scratch / "runs"
    load_json = scratch / "serve_load.json"
    exit_status = run([sys.executable, "benchmarks/serve_load.py", "--root", str(root), "--make-runs", "--steps",
                       str(args.steps), "--out", str(load_json)], check=False)
    if not load_json.exists():
        raise SystemExit(f"benchmarks/serve_load.py ended with status {exit_status} and wrote no {load_json}")
    report = json.loads(load_json.read_text())
    load_after = os.getloadavg()[0]

    command = "python benchmarks/serve_figures.py" + (f" --write {args.write}" if args.write else "")
    markdown = [
        f"Measured {started:%Y-%m-%d %H:%M} UTC on {cpu_name()} ({os.cpu_count()} cores), {chromium_version()}; "
        f"1-minute load average {load_before:.1f} before, {load_after:.1f} after; by", "",
        f"    {command}", "",
        f"In a real browser: the browser test run {args.loads} time(s), each with a fresh headless Chromium, over "
        "ten runs under RUN_ROOT (ms: from the start of navigation for the loads; from the end of the stroke, or "
        "the button press, to the answer drawn for the rest):", "",
        *browser_table(timings), "",
        f"The loopback load test (`benchmarks/serve_load.py`, its own server process, small runs trained "
        f"{args.steps} steps each):", "",
        *load_table(report),
    ]
    text = "\n".join(markdown) + "\n"
    print("\n" + text)
    if args.write:
        page = Path(args.write).read_text()
        head, rest = page.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        Path(args.write).write_text(f"{head}{BEGIN}\n{text}{END}{tail}")
        print(f"written into {args.write}")
    shutil.rmtree(scratch, ignore_errors=True)
    return 1 if report["server_errors"] or report["connection_failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
