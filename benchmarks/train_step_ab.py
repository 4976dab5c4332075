"""A/B of genzoo's training step against its earlier code paths: the same model, one process, interleaved.

Issue 22 (genzoo against the peers) asked for genzoo's side to be as fast as it can honestly be
without changing the model. Each change to the step is measured here against the path it replaced,
on the same weights and the same batch, the variants taken in turn (A B C A B C ...) so that what
the machine does meanwhile falls on all of them, and timed twice: by the wall clock and by this
process's CPU time. On a shared machine at one thread the CPU time is the steadier of the two
(another job's turn on the core is not counted); on an idle machine the two agree.

    ddpm   the pixel-space U-Net at its defaults (batch 128), the trainer's step (`Loop.train_step`:
           loss, backward, gradient clipping, Adam, EMA). Variants:
             before      NCHW feature maps, the attention's q/k/v strided along d (the math fallback of
                         scaled_dot_product_attention), Adam's foreach path: the code before these changes
             attention   as before, with the attention's q/k/v made contiguous along d (the fused kernel)
             fused       attention with the fused Adam: the code now (the trainer's default optimizer)
             nhwc        fused, with the U-Net's feature maps channels_last (NHWC in memory: the stem's output
                         converted by a forward hook, the layout then follows through the convolutions);
                         oneDNN's convolutions are often faster on it. Not adopted: no clear gain
                         (docs/results/peers.md)
             compiled    fused, with the forward pass and loss through `torch.compile` (Inductor's C++
                         kernels, e.g. GroupNorm fused with SiLU; it compiles in the untimed first call,
                         whose seconds are reported). Not adopted (docs/results/peers.md)
           ("before" also cuts its batches as before: `x[index]`, not `index_select`; the same values.)
    vae    the 784-400-20 MLP (`--set arch=mlp hidden=400 latent_dim=20`), an epoch of `--images`
           digits through the trainer's step (its batches included). Variants:
             before      Adam's foreach path; batches cut by `x[index]` and binarized by `torch.bernoulli`
             fused       the fused Adam
             now         the fused Adam, batches by `index_select`, binarized by a uniform draw below the
                         intensity (the same Bernoulli distribution, twice as fast on the CPU)
             compiled    now, with the forward pass and loss through `torch.compile`. Not adopted
    vae-conv  the default convolutional VAE, an epoch of `--images` digits through the trainer's step. Variants:
             nchw        the convolutions' weights in PyTorch's default memory format (NCHW)
             nhwc        the same weights channels_last (NHWC), so that oneDNN's convolutions run on NHWC

    python benchmarks/train_step_ab.py ddpm --threads 1 --repeats 7
    python benchmarks/train_step_ab.py vae --threads 1 --repeats 9 --images 12800
    python benchmarks/train_step_ab.py vae --variants now,compiled --threads 1 --repeats 25 --images 12800
    python benchmarks/train_step_ab.py vae-conv --threads 1 --repeats 7 --images 2560

Prints the median seconds of each variant by both clocks, each variant's speed-up over the first
(the ratio of the medians, and the median and range of the ratios within a round), the load average,
and writes them as JSON (`--out`).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import types
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import genzoo  # noqa: E402
from genzoo.config import build  # noqa: E402
from genzoo.data import Dataset, load_data  # noqa: E402
from genzoo.models import diffusion  # noqa: E402
from genzoo.train_config import TrainConfig  # noqa: E402
from genzoo.training.batches import Batches  # noqa: E402
from genzoo.training.devices import Distributed  # noqa: E402
from genzoo.training.loop import Loop  # noqa: E402

CPU = torch.device("cpu")


def strided_attention(self: diffusion.SelfAttention, x: torch.Tensor) -> torch.Tensor:
    """`SelfAttention.forward` as it was: q, k, v strided along d, so PyTorch takes its math path."""
    b, c, h, w = x.shape
    qkv = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w)  # (B, 3, heads, d, HW)
    q, k, v = qkv.transpose(-1, -2).unbind(1)  # (B, heads, HW, d) each
    out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, HW, d)
    return x + self.out(out.transpose(-1, -2).reshape(b, c, h, w))


def batch_before(self: Batches, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`Batches.at` as it was: advanced indexing, and torch.bernoulli for the dynamic binarization."""
    epoch, position = divmod(step, self.per_epoch)
    index = self.order(epoch)[position * self.size : (position + 1) * self.size]
    index = index[self.ddp.rank :: self.ddp.world]
    x, y = self.x[index], self.y[index]
    return (torch.bernoulli(x) if self.binary else x), y


FUSED_ATTENTION = diffusion.SelfAttention.forward
DDPM_VARIANTS = {  # name: (channels_last feature maps, attention, fused Adam, batches, torch.compile)
    "before": (False, strided_attention, False, batch_before, False),
    "attention": (False, FUSED_ATTENTION, False, Batches.at, False),
    "fused": (False, FUSED_ATTENTION, True, Batches.at, False),
    "nhwc": (True, FUSED_ATTENTION, True, Batches.at, False),
    "compiled": (False, FUSED_ATTENTION, True, Batches.at, True),
}
VAE_VARIANTS = {"before": (False, batch_before, False), "fused": (True, batch_before, False),
                "now": (True, Batches.at, False), "compiled": (True, Batches.at, True)}
CONV_VAE_VARIANTS = {"nchw": torch.contiguous_format, "nhwc": torch.channels_last}


def loop_for(model, data: Dataset, batch_size: int, run_dir: Path, fused: bool, batches: Callable, compiled: bool,
             **train) -> Loop:
    """The trainer around `model`, its Adam's fused path, its way of cutting batches and whether its forward pass
    and loss go through `torch.compile` set as asked (no test pass, grids or pictures)."""
    cfg = build(TrainConfig, {"batch_size": batch_size, "lr": train.pop("lr", 1e-3), "epochs": 1000,
                              "sample_every": 0, "test_every": 0, **train}, owner="trainer")
    loop = Loop(model, cfg, data, run_dir, CPU, 0, Distributed(CPU), show_progress=False)
    for opt in loop.optimizers.values():
        for group in opt.param_groups:
            group["fused"], group["foreach"] = (True, None) if fused else (None, None)
    loop.batches.at = types.MethodType(batches, loop.batches)
    if compiled:  # Inductor's C++ kernels for the forward pass, the loss and their backward (compiled on first call)
        loop.net = torch.compile(loop.net)
    return loop


def steps(loop: Loop, n: int, before: Callable[[], None] = lambda: None) -> None:
    before()
    out = {}
    for _ in range(n):
        out = loop.train_step(*loop.batches.at(loop.step))
        loop.step += 1
    float(out["loss"])


def ddpm_sides(data: Dataset, names: list[str], batch_size: int, n_steps: int, run_dir: Path) -> dict:
    torch.manual_seed(0)
    start = genzoo.create("ddpm")
    defaults = start.train_defaults
    sides = {}
    for name in names:
        channels_last, attention, fused, batches, compiled = DDPM_VARIANTS[name]
        model = copy.deepcopy(start)
        loop = loop_for(model, data, batch_size, run_dir / name, fused, batches, compiled, lr=defaults["lr"],
                        warmup_steps=defaults["warmup_steps"], grad_clip=defaults["grad_clip"])

        if channels_last:  # a 1-channel input is NCHW and NHWC at once: convert the stem's output
            model.unet.stem.register_forward_hook(lambda m, i, out: out.contiguous(memory_format=torch.channels_last))

        def setup(attention=attention):
            diffusion.SelfAttention.forward = attention

        sides[name] = lambda loop=loop, setup=setup: steps(loop, n_steps, setup)
    return sides


def vae_sides(data: Dataset, names: list[str], batch_size: int, images: int, run_dir: Path, conv: bool) -> dict:
    n = images or len(data.train_x)
    part = Dataset(data.name, data.source, data.train_x[:n], data.train_y[:n], data.test_x, data.test_y)
    torch.manual_seed(0)
    start = genzoo.create("vae") if conv else genzoo.create("vae", arch="mlp", hidden=400, latent_dim=20)
    sides = {}
    for name in names:
        if conv:  # the trainer's step as it is, the convolutions' weights in the variant's memory format
            model = copy.deepcopy(start).to(memory_format=CONV_VAE_VARIANTS[name])
            loop = loop_for(model, part, batch_size, run_dir / name, True, Batches.at, False)
        else:
            loop = loop_for(copy.deepcopy(start), part, batch_size, run_dir / name, *VAE_VARIANTS[name])
        sides[name] = lambda loop=loop: steps(loop, loop.batches.per_epoch)
    return sides


def interleaved(sides: dict[str, Callable[[], None]], repeats: int) -> dict[str, dict[str, list[float]]]:
    """Wall and CPU seconds of each side's call, the sides in turn, `repeats` rounds after a first round that the
    medians leave out (its wall seconds are kept as `first_call`: a compiled side compiles there)."""
    times = {name: {"wall": [], "cpu": []} for name in sides}
    for name, run in sides.items():
        wall = time.perf_counter()
        run()
        times[name]["first_call"] = time.perf_counter() - wall
    for repeat in range(repeats):
        for name, run in sides.items():
            wall, cpu = time.perf_counter(), time.process_time()
            run()
            times[name]["cpu"].append(time.process_time() - cpu)
            times[name]["wall"].append(time.perf_counter() - wall)
        shown = ", ".join(f"{n} {t['wall'][-1]:.2f} s ({t['cpu'][-1]:.2f} cpu)" for n, t in times.items())
        print(f"  round {repeat + 1}/{repeats}: {shown} (load {os.getloadavg()[0]:.2f})", file=sys.stderr, flush=True)
    return times


def speedups(times: dict[str, dict[str, list[float]]]) -> dict:
    """Each side's speed-up over the first, by each clock: the ratio of the medians and the rounds' own ratios."""
    first = next(iter(times.values()))
    out = {}
    for name, t in times.items():
        out[name] = {"first_call_s": t["first_call"]}
        for clock in ("wall", "cpu"):
            paired = [a / b for a, b in zip(first[clock], t[clock])]
            out[name][clock] = {"median_s": statistics.median(t[clock]), "all_s": t[clock],
                                "speedup": statistics.median(first[clock]) / statistics.median(t[clock]),
                                "paired_median": statistics.median(paired), "paired_min": min(paired),
                                "paired_max": max(paired)}
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", choices=["ddpm", "vae", "vae-conv"])
    p.add_argument("--variants", default="", help="comma-separated, the first is the reference (default: all)")
    p.add_argument("--data", default="../shared/data/mnist")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=7, help="timed rounds (after one untimed round)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=1, help="ddpm: training steps per call")
    p.add_argument("--images", type=int, default=12800, help="vae: digits of an epoch (0: all 60,000)")
    p.add_argument("--out", default="")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    known = {"ddpm": DDPM_VARIANTS, "vae": VAE_VARIANTS, "vae-conv": CONV_VAE_VARIANTS}[args.model]
    names = args.variants.split(",") if args.variants else list(known)
    unknown = [n for n in names if n not in known]
    if unknown:
        p.error(f"--variants {','.join(unknown)}: {args.model} has {', '.join(known)}")
    data = load_data(args.data)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        if args.model == "ddpm":
            sides = ddpm_sides(data, names, args.batch_size, args.steps, Path(tmp))
        else:
            sides = vae_sides(data, names, args.batch_size, args.images, Path(tmp), conv=args.model == "vae-conv")
        try:
            result = speedups(interleaved(sides, args.repeats))
        finally:
            diffusion.SelfAttention.forward = FUSED_ATTENTION
    record = {"model": args.model, "variants": result, "threads": args.threads, "batch_size": args.batch_size,
              "repeats": args.repeats, "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2),
              "command": "python " + " ".join(sys.argv), "torch": torch.__version__,
              "hardware": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
              "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    if args.out:
        Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    first = names[0]
    print(f"{args.model}, {args.threads} thread(s), {args.repeats} rounds, load {record['load_before']} -> "
          f"{record['load_after']}; speed-up over {first}: ratio of medians (median of the rounds' ratios, min-max); "
          "the untimed first call")
    for name, r in result.items():
        cells = [f"{clock} {r[clock]['median_s']:.3f} s x{r[clock]['speedup']:.3f} (x{r[clock]['paired_median']:.3f}, "
                 f"x{r[clock]['paired_min']:.3f}-x{r[clock]['paired_max']:.3f})" for clock in ("cpu", "wall")]
        print(f"  {name:10s} " + "; ".join(cells) + f"; first call {r['first_call_s']:.1f} s")


if __name__ == "__main__":
    main()
