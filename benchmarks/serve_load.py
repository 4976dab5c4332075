"""A small load test of `genzoo serve` on loopback: mixed requests from concurrent clients, latency per endpoint.

    python benchmarks/serve_load.py --root /tmp/serve-runs --make-runs      # trains 6 small runs there first
    python benchmarks/serve_load.py --root genzoo-demo --requests 200 --clients 8 --out serve_load.json

The server is started as a user starts it (`python -m genzoo serve ROOT --port P`, its own process, bound to
127.0.0.1) and driven by `--clients` threads, each with its own HTTP connection, that send `--requests`
requests in all, drawn in a fixed (seeded) mix: the run list, a drawn digit uploaded as PNG, classify,
denoise, reconstruct, sampling of the fast models, latent walks, a run's report and one of its pictures,
and submissions of heavy jobs (pixel-model completion, diffusion sampling, the editor; timed to their answer,
the job id; the jobs run on in the server's queues and are cancelled at the end). Bounded in count and in time
(`--timeout` per request, `--budget` for the whole test). Prints a markdown table (p50 / p95 / max ms per
endpoint, status counts) and writes JSON; any 5xx answer or failed connection makes the exit status 1.
A 429 (a model's job queue full) is the server doing its job and is counted apart.

`--make-runs` trains, into ROOT, one small run each of dae, vae (2-D latent), cgan, pixelcnn, ddpm
(conditional) and instruct (the editor) on the embedded digits for `--steps` steps: enough for real weights
of the real configs' kinds, sized for a CPU.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image

SMALL_RUNS = {
    "dae": {"channels": 16, "latent_dim": 16},
    "vae": {"channels": 16, "latent_dim": 2},
    "cgan": {"latent_dim": 32, "widths": (128, 256)},
    "pixelcnn": {"channels": 16, "n_layers": 3, "head_channels": 16},
    "ddpm": {"widths": (16, 32), "res_blocks": 1, "attn_heads": 2, "timesteps": 200, "sample_steps": 10,
             "conditional": True},
    "instruct": {"widths": (16, 32), "res_blocks": 1, "attn_heads": 2, "timesteps": 200, "sample_steps": 10,
                 "text_dim": 32, "text_layers": 1, "text_heads": 2, "trigram_buckets": 256},
}
# (endpoint label, weight): the share of requests of each kind
MIX = [("GET /api/runs", 10), ("POST /api/digit", 15), ("POST classify", 15), ("POST denoise", 15),
       ("POST reconstruct", 12), ("POST sample (fast model)", 10), ("POST interpolate", 8), ("GET report", 6),
       ("GET picture", 5), ("POST complete (job)", 2), ("POST sample (diffusion job)", 2), ("POST edit (job)", 2)]


def make_runs(root: Path, steps: int, models: list[str]) -> None:
    import genzoo

    for name in models:
        hparams = SMALL_RUNS[name]
        if (root / name / "model.safetensors").exists():
            continue
        start = time.time()
        genzoo.train(name, data="embedded", out=root / name, device="cpu", seed=0, model_overrides=hparams,
                     train_overrides={"steps": steps, "epochs": 0, "batch_size": 64, "log_every": 10,
                                      "sample_every": 0, "test_every": 0}, progress=False)
        print(f"trained {name} for {steps} steps in {time.time() - start:.0f} s", flush=True)


def drawn_digit_png(rng: random.Random) -> bytes:
    """A digit-like stroke on a 280 x 280 black canvas, as the page sends it."""
    canvas = np.zeros((280, 280), np.uint8)
    x = rng.randint(100, 180)
    for y in range(40, 240):
        canvas[y, max(0, x - 9 + (y - 140) // 12): x + 9 + (y - 140) // 12] = 255
    buffer = io.BytesIO()
    Image.fromarray(canvas).save(buffer, format="PNG")
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="RUN_ROOT to serve")
    parser.add_argument("--make-runs", action="store_true", help="train the small runs into ROOT first")
    parser.add_argument("--steps", type=int, default=200, help="training steps of each run with --make-runs")
    parser.add_argument("--models", nargs="+", default=list(SMALL_RUNS), choices=list(SMALL_RUNS),
                        help="the runs --make-runs trains")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    parser.add_argument("--budget", type=float, default=600.0, help="seconds for the whole test")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="the server's torch threads (0: its default)")
    parser.add_argument("--out", default="serve_load.json")
    args = parser.parse_args()
    import httpx

    root = Path(args.root)
    if args.make_runs:
        root.mkdir(parents=True, exist_ok=True)
        make_runs(root, args.steps, args.models)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    server = subprocess.Popen([sys.executable, "-m", "genzoo", "serve", str(root), "--port", str(port),
                               "--threads", str(args.threads)], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                runs = httpx.get(f"{base}/api/runs", timeout=5).json()["runs"]
                break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise SystemExit("the server did not answer in 60 s")
        by = {key: [r["name"] for r in runs if r.get(key) and r.get("weights")]
              for key in ("denoise", "reconstruct", "interpolate", "complete", "edit")}
        fast = [r["name"] for r in runs if r.get("sample") and not r.get("heavy_sample") and r.get("weights")]
        diffusion = [r["name"] for r in runs if "guidance" in r.get("sample_options", ()) and r.get("weights")]
        pictures = {r["name"]: httpx.get(f"{base}/api/runs/{r['name']}/report", timeout=30).json()["pictures"]
                    for r in runs if "error" not in r}
        rng = random.Random(args.seed)
        one = httpx.post(f"{base}/api/digit", files={"image": ("d.png", drawn_digit_png(rng), "image/png")},
                         timeout=30).json()["pixels"]
        available = {"POST denoise": by["denoise"], "POST reconstruct": by["reconstruct"],
                     "POST sample (fast model)": fast, "POST interpolate": by["interpolate"],
                     "POST complete (job)": by["complete"], "POST sample (diffusion job)": diffusion,
                     "POST edit (job)": by["edit"]}
        mix = [(kind, weight) for kind, weight in MIX if available.get(kind, True)]  # kinds with a run to ask
        labels, weights = zip(*mix)
        plan = rng.choices(labels, weights=weights, k=args.requests)

        def request(client: httpx.Client, kind: str, r: random.Random):
            seed = r.randint(0, 10_000)
            pick = lambda names: r.choice(names) if names else None  # noqa: E731
            if kind == "GET /api/runs":
                return client.get("/api/runs")
            if kind == "POST /api/digit":
                return client.post("/api/digit", files={"image": ("d.png", drawn_digit_png(r), "image/png")})
            if kind == "POST classify":
                return client.post("/api/classify", json={"pixels": one})
            if kind == "POST denoise" and by["denoise"]:
                return client.post(f"/api/runs/{pick(by['denoise'])}/denoise",
                                   json={"pixels": one, "noise": r.choice(["gaussian", "masking", "hide"]),
                                         "level": 0.4, "seed": seed})
            if kind == "POST reconstruct" and by["reconstruct"]:
                return client.post(f"/api/runs/{pick(by['reconstruct'])}/reconstruct", json={"pixels": one})
            if kind == "POST sample (fast model)" and fast:
                run = pick(fast)
                conditional = next(x for x in runs if x["name"] == run)["conditional"]
                body = {"n": 16, "seed": seed, **({"label": r.randint(0, 9)} if conditional else {})}
                return client.post(f"/api/runs/{run}/sample", json=body)
            if kind == "POST interpolate" and by["interpolate"]:
                return client.post(f"/api/runs/{pick(by['interpolate'])}/interpolate", json={"steps": 11, "seed": seed})
            if kind == "GET report":
                return client.get(f"/api/runs/{pick(list(pictures))}/report")
            if kind == "GET picture":
                run = pick([name for name, files in pictures.items() if files])
                if run:
                    return client.get(f"/api/runs/{run}/files/{r.choice(pictures[run])}")
            if kind == "POST complete (job)" and by["complete"]:
                return client.post(f"/api/runs/{pick(by['complete'])}/complete",
                                   json={"pixels": one, "completions": 1, "seed": seed})
            if kind == "POST sample (diffusion job)" and diffusion:
                return client.post(f"/api/runs/{pick(diffusion)}/sample",
                                   json={"n": 4, "label": r.randint(0, 9), "steps": 10, "seed": seed})
            if kind == "POST edit (job)" and by["edit"]:
                return client.post(f"/api/runs/{pick(by['edit'])}/edit",
                                   json={"pixels": one, "instruction": r.choice(["make it bold", "mirror it"]),
                                         "steps": 10, "seed": seed})
            return None  # no run of that kind under ROOT: skipped

        results: list[tuple[str, float, int]] = []
        failures: list[str] = []
        lock = threading.Lock()
        queue = list(enumerate(plan))
        deadline = time.time() + args.budget

        def client_loop(number: int) -> None:
            r = random.Random(args.seed * 1000 + number)
            with httpx.Client(base_url=base, timeout=args.timeout) as client:
                while time.time() < deadline:
                    with lock:
                        if not queue:
                            return
                        _, kind = queue.pop(0)
                    start = time.perf_counter()
                    try:
                        response = request(client, kind, r)
                    except httpx.HTTPError as e:
                        with lock:
                            failures.append(f"{kind}: {type(e).__name__}: {e}")
                        continue
                    if response is None:
                        continue
                    with lock:
                        results.append((kind, 1000 * (time.perf_counter() - start), response.status_code))

        load_before = os.getloadavg()[0]
        start = time.time()
        threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.time() - start
        load_after = os.getloadavg()[0]
        jobs = httpx.get(f"{base}/api/jobs", timeout=30).json()["jobs"]
        for job in jobs:
            if job["status"] in ("queued", "running"):
                httpx.post(f"{base}/api/jobs/{job['id']}/cancel", timeout=30)
        job_states = {}
        for job in jobs:
            job_states[job["status"]] = job_states.get(job["status"], 0) + 1
    finally:
        server.terminate()
        server.wait(30)

    table = []
    for kind in labels:
        times = [ms for k, ms, _ in results if k == kind]
        codes = [code for k, _, code in results if k == kind]
        if times:
            table.append({"endpoint": kind, "n": len(times), "p50_ms": percentile(times, 50),
                          "p95_ms": percentile(times, 95), "max_ms": max(times),
                          "status": {str(c): codes.count(c) for c in sorted(set(codes))}})
    server_errors = sum(1 for *_, code in results if code >= 500)
    report = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "hardware": f"CPU ({os.cpu_count()} cores)", "root": str(root), "runs": [r["name"] for r in runs],
        "requests_planned": args.requests, "requests_answered": len(results), "clients": args.clients,
        "wall_seconds": round(wall, 1), "requests_per_second": round(len(results) / wall, 1),
        "server_errors": server_errors, "connection_failures": failures,
        "load_average_1min": {"before": load_before, "after": load_after},
        "jobs_at_end": job_states, "endpoints": table,
    }
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"{len(results)} requests from {args.clients} clients in {wall:.1f} s "
          f"({report['requests_per_second']}/s); server errors: {server_errors}; connection failures: "
          f"{len(failures)}; load average {load_before:.1f} -> {load_after:.1f}")
    print("| endpoint | n | p50 ms | p95 ms | max ms | status |\n|---|---|---|---|---|---|")
    for row in table:
        status = ", ".join(f"{c}: {n}" for c, n in row["status"].items())
        print(f"| {row['endpoint']} | {row['n']} | {row['p50_ms']:.0f} | {row['p95_ms']:.0f} | {row['max_ms']:.0f} "
              f"| {status} |")
    return 1 if server_errors or failures else 0


if __name__ == "__main__":
    sys.exit(main())
