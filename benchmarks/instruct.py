"""Benchmark of the `instruct` editor (issue 19): a recipe trained through the shared trainer, then edits of test
digits scored against the exact outputs of `genzoo.models.instruct.edits`, per kind, on trained and held-out phrasings.

    # train a recipe (resumable: the same command goes on after a time limit)
    nice -n 19 python benchmarks/instruct.py train --recipe cpu-small --data ../shared/data/mnist --runs runs/instruct

    # score: per kind and phrasing split, PSNR and mean absolute error against the exact output, and how often
    # the evaluator reads the same digit in the edit as in the exact output; the degraded inputs' figures beside
    python benchmarks/instruct.py evaluate runs/instruct/cpu-small --per-kind 20 --steps 10 --out instruct.json

    # why a kind misses: several edits of the same inputs (their distance to the exact output and to each
    # other), and the training digits nearest each degraded input (what a real digit that fits it scores)
    python benchmarks/instruct.py spread runs/instruct/cpu-small -n 100 --out spread.json
    python benchmarks/instruct.py retrieval --data ../shared/data/mnist -n 1000 --out retrieval.json

    # the A/B of the fills' hidden pixels marked grey (train and evaluate with the same value; default 0, black)
    python benchmarks/instruct.py train --recipe cpu-latent --hidden-value 0.5 ...

Each edit starts from a test digit (never seen in training), with fixed seeds. The text-blind baseline
(`use_text=False`) never reads the instruction, so its held-out and no-text rows are its trained-phrasing edits,
scored once. "success" is an edit with PSNR
>= 18 dB against the exact output (the issue's bar for a kind's mean). The text-free row ("no text") scores the
same network with the instruction withheld (its eps(I, 0), s_T = 0): what the text contributes to this network.
A network trained without text (`--recipe cpu-small-blind`) is the issue's baseline proper.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import torch

from genzoo import metrics, runs
from genzoo.data import load_data, spread
from genzoo.models.instruct import edits
from genzoo.trainer import train_or_resume
from genzoo.training.devices import resolve_device

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ddpm import stamp, write_result  # noqa: E402  (benchmarks/ddpm.py: the same record and JSON output)

_CPU_MODEL = {"widths": (16, 32), "res_blocks": 1, "attn_resolution": 7, "ema_decay": 0.995, "sample_steps": 10}
_CPU_TRAIN = {"steps": 100_000, "epochs": 0, "batch_size": 64, "lr": 1e-3, "warmup_steps": 100, "grad_clip": 1.0,
              "time_budget": 2700.0, "test_images": 500, "checkpoint_minutes": 5.0, "log_every": 25}
# v-prediction: after 420 s on one core each, 14.8 dB on eight kinds against eps's 10.8 (docs/results/instruct.md)
_LATENT_MODEL = {"space": "latent", "widths": (32, 64), "res_blocks": 1, "attn_resolution": 7, "ae_widths": (16, 32),
                 "first_stage_steps": 400, "ema_decay": 0.999, "sample_steps": 10, "prediction": "v"}
_LATENT_TRAIN = {**_CPU_TRAIN, "warmup_steps": 200, "log_every": 50, "time_budget": 3600.0}
# name -> (model overrides, trainer overrides)
RECIPES = {
    # What a shared 2-core CPU affords: a narrow two-level pixel U-Net (28 -> 14, attention in the middle at 14x14),
    # 45 minutes of wall clock.
    "cpu-small": (_CPU_MODEL, _CPU_TRAIN),
    # The same network that never sees the instruction: the baseline of the table.
    "cpu-small-blind": ({**_CPU_MODEL, "use_text": False}, _CPU_TRAIN),
    # The paper's latent editor (Stable Diffusion's first stage in small: ddpm's KL autoencoder, 28x28 -> 4x7x7,
    # trained as the run's first 400 steps on the triples' inputs and outputs, or fine-tuned from a latent ddpm run's
    # with --first-stage-from), a two-level U-Net at 7 -> 4.
    # About 2.8x the pixel recipe's images per CPU-second (docs/results/instruct.md).
    "cpu-latent": (_LATENT_MODEL, _LATENT_TRAIN),
    "cpu-latent-blind": ({**_LATENT_MODEL, "use_text": False}, _LATENT_TRAIN),
    # The full-size model (the defaults) for a GPU (not yet run).
    "pixel-gpu": ({"dropout": 0.1, "ema_decay": 0.9995},
                  {"epochs": 40, "batch_size": 128, "lr": 2e-4, "warmup_steps": 1000}),
}


def cmd_train(args) -> dict:
    model_overrides, train_overrides = RECIPES[args.recipe]
    train_overrides = {**train_overrides, **({"time_budget": args.time_budget} if args.time_budget else {})}
    if args.first_stage_from:  # a latent ddpm run's first stage, fine-tuned for --first-stage-steps
        model_overrides = {**model_overrides, "first_stage_from": str(Path(args.first_stage_from).resolve()),
                           "first_stage_steps": args.first_stage_steps}
    if args.pairs:  # semantic edits mixed into the triples
        model_overrides = {**model_overrides, "semantic_pairs": str(Path(args.pairs).resolve()),
                           "semantic_fraction": args.semantic_fraction}
    if args.prediction:
        model_overrides = {**model_overrides, "prediction": args.prediction}
    if args.word_noise is not None:
        model_overrides = {**model_overrides, "word_noise": args.word_noise}
    run = Path(args.runs) / args.recipe
    train_or_resume("instruct", args.data, run, device=args.device, seed=args.seed, train_overrides=train_overrides,
                    model_overrides=model_overrides)
    end = [r for r in runs.read_metrics_log(run) if r.get("event") == "end"][-1]
    return {"recipe": args.recipe, "run": str(run), "steps": end["step"], "train_seconds": end["train_seconds"],
            "images_per_s": end["images_per_s"], "process_cpu_seconds": time.process_time(),
            **stamp(resolve_device(args.device))}


def edit_triples(model, digits: torch.Tensor, kind: str, split: str, seed: int, args, text: bool = True):
    triples = edits.make_triples(digits, torch.Generator().manual_seed(seed), kinds=[kind] * len(digits), split=split)
    out = model.edit(triples.inputs, triples.instructions, image_guidance=args.image_guidance,
                     text_guidance=args.text_guidance if text else 0.0, steps=args.steps,
                     generator=torch.Generator().manual_seed(seed))
    return triples, out.cpu()


def slant_and_thickness(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two measures of a digit's handwriting that do not depend on which digit it is: its slant, the ink's
    column-on-row regression slope (columns per row: 0 upright, > 0 leaning right, the shear that deskewing
    undoes), and its stroke thickness, the ink over the length of its one-pixel skeleton."""
    mass = x[:, 0]
    rows = torch.arange(mass.shape[1], dtype=x.dtype)[:, None]
    cols = torch.arange(mass.shape[2], dtype=x.dtype)[None, :]
    total = mass.sum((1, 2)).clamp_min(1e-6)
    r = rows - ((mass * rows).sum((1, 2)) / total)[:, None, None]
    c = cols - ((mass * cols).sum((1, 2)) / total)[:, None, None]
    slant = -(mass * r * c).sum((1, 2)) / (mass * r * r).sum((1, 2)).clamp_min(1e-6)  # rows grow downwards
    thickness = mass.sum((1, 2)) / edits.skeleton(x).sum((1, 2, 3)).clamp_min(1.0)
    return slant, thickness


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a - a.mean(), b - b.mean()
    return ((a * b).sum() / (a.norm() * b.norm()).clamp_min(1e-12)).item()


def hand_kept(x: torch.Tensor, reference: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
    """The correlation over the digits of x's slant and thickness with `reference`'s (slant_and_thickness of others)."""
    return dict(zip(("slant", "thickness"), map(correlation, slant_and_thickness(x), reference)))


def semantic_edits(model, test_x: torch.Tensor, test_y: torch.Tensor, evaluator, args) -> dict:
    """Semantic edits of test digits ("turn this 3 into a 8"), per phrasing split and with the text withheld: how often
    the evaluator reads the requested digit, and style kept: the evaluator-feature distance from each edit to its
    input against the mean distance between two random test digits of the target class (the issue's measure), and
    against the distance from a random test digit of the target class to the input, which is what an edit that
    drew the requested digit without regard to the input would score (`closer_than_random`: the share of edits
    nearer their input than that digit is). The evaluator's features are made to tell digits apart, so these
    distances are mostly about the class; the handwriting is measured too: the correlation over the edits of the
    input's slant and stroke thickness with the edit's, beside the same for the random target-class digit (about
    0) and, for an editor taught semantic pairs, over those pairs (what it was shown)."""
    # test digits evenly spaced through the test set (every class, also in a set stored class by class); the random
    # digits of the target class come from the rest of it
    chosen = spread(torch.arange(len(test_x)), min(args.semantic, len(test_x) - 10))
    n = len(chosen)
    digits, sources = test_x[chosen].to(model.device), test_y[chosen]
    rest = torch.ones(len(test_x), dtype=torch.bool)
    rest[chosen] = False
    by_class = [test_x[rest & (test_y == c)] for c in range(10)]
    if any(len(c) < 2 for c in by_class):
        raise SystemExit(f"--semantic {args.semantic}: leaves fewer than two test digits of some class to compare "
                         f"the edits' style with; ask for fewer than {len(test_x) - 20}")
    g = torch.Generator().manual_seed(args.seed + 999)
    targets = (sources + torch.randint(1, 10, (n,), generator=g)) % 10  # a different digit
    with torch.no_grad():  # two random digits of the target class, per edit
        a = torch.stack([by_class[c][torch.randint(len(by_class[c]), (), generator=g)] for c in targets.tolist()])
        b = torch.stack([by_class[c][torch.randint(len(by_class[c]), (), generator=g)] for c in targets.tolist()])
        random_distance = (evaluator.features(a) - evaluator.features(b)).norm(dim=1).mean().item()
        input_features = evaluator.features(digits.cpu())
        unrelated = (evaluator.features(a) - input_features).norm(dim=1)  # a target-class digit that ignores the input
    handwriting = slant_and_thickness(digits.cpu())
    out = {"n": n, "random_pair_distance_in_target_class": random_distance,
           "random_target_digit_to_input": unrelated.mean().item(),
           "random_target_digit_correlation": hand_kept(a, handwriting)}
    pairs = model.semantic_pairs()
    if pairs is not None:  # what the editor was taught: the same correlations over its training pairs
        out["training_pairs_correlation"] = hand_kept(pairs["outputs"], slant_and_thickness(pairs["inputs"]))
    for split, text in (("train", True), ("held-out", True), ("no_text", False)):
        if split != "train" and not model.config.use_text:  # the text-blind baseline: the same edits, scored once
            out[split] = out["train"]
            continue
        instructions = edits.semantic_instructions(sources.tolist(), targets.tolist(),
                                                   torch.Generator().manual_seed(args.seed),
                                                   "held-out" if split == "held-out" else "train")
        edited = model.edit(digits, instructions, image_guidance=args.image_guidance,
                            text_guidance=args.text_guidance if text else 0.0, steps=args.steps,
                            generator=torch.Generator().manual_seed(args.seed + 998)).cpu()
        with torch.no_grad():
            read = evaluator.predict(edited)
            distances = (evaluator.features(edited) - input_features).norm(dim=1)
        out[split] = {"target_read": (read == targets).float().mean().item(),
                      "source_read": (read == sources).float().mean().item(),
                      "style_distance": distances.mean().item(),
                      "closer_than_random": (distances < unrelated).float().mean().item(),
                      "correlation": hand_kept(edited, handwriting)}
        print(f"semantic {split:9s} target read {out[split]['target_read']:.3f}, source read "
              f"{out[split]['source_read']:.3f}, feature distance to the input {distances.mean():.2f} (a random digit "
              f"of the target class {unrelated.mean():.2f}, nearer in {out[split]['closer_than_random']:.0%}; random "
              f"pair of the target class {random_distance:.2f}); the input's slant and thickness kept: correlation "
              f"{out[split]['correlation']['slant']:.2f} and {out[split]['correlation']['thickness']:.2f}",
              file=sys.stderr, flush=True)
    return out


def cmd_evaluate(args) -> dict:
    from genzoo.evaluation.evaluator import load_evaluator

    device = resolve_device(args.device)
    run = Path(args.run)
    model = runs.load(run, device)
    data = load_data(runs.read_config(run)["data"], verbose=False)
    test_x = data.test_x
    evaluator = load_evaluator("cpu")
    reads_text = model.config.use_text  # the text-blind baseline's edits do not depend on the instruction
    rows = []
    kinds = (args.kinds.split(",") if args.kinds else list(edits.KINDS)) if args.per_kind else []
    for k, kind in enumerate(kinds):
        # the same test digits for both splits, a different block of the test set per kind
        digits = test_x[(k * args.per_kind) % len(test_x):][: args.per_kind].to(device)
        labels = data.test_y[(k * args.per_kind) % len(test_x):][: args.per_kind] \
            if edits.KINDS[kind].group == "image-to-image" else None
        row = {"kind": kind, "group": edits.KINDS[kind].group}
        for split in ("train", "held-out"):
            if split == "held-out" and not reads_text:  # the same edits as the trained phrasings': scored once
                row[split] = row["train"]
                continue
            n = args.per_kind if split == "train" else (args.held_out_per_kind or args.per_kind)
            triples, out = edit_triples(model, digits[:n], kind, split, args.seed + k, args)
            row[split] = edits.score_edits(out, triples.outputs.cpu(), evaluator,
                                           None if labels is None else labels[:n])
            if split == "train":
                exact = triples.outputs
                # doing nothing: the input as the edit
                row["input"] = edits.score_edits(triples.inputs.cpu(), triples.outputs.cpu(), evaluator, labels)
                if args.no_text and not reads_text:
                    row["no_text"] = row["train"]
                elif args.no_text:
                    _, blind = edit_triples(model, digits, kind, split, args.seed + k, args, text=False)
                    row["no_text"] = edits.score_edits(blind, triples.outputs.cpu(), evaluator, labels)
        if model.first_stage is not None:  # what a latent editor could reach at best: the first stage's round trip
            with torch.no_grad():
                round_trip = model.from_space(model.to_space(exact.to(device))).cpu()
                row["first_stage"] = edits.score_edits(round_trip, exact.cpu())
        rows.append(row)
        print(f"{kind:24s} PSNR trained {row['train']['psnr']:5.1f} held-out {row['held-out']['psnr']:5.1f} "
              f"input {row['input']['psnr']:5.1f} dB; success {row['train']['success']:.2f} / "
              f"{row['held-out']['success']:.2f}", file=sys.stderr, flush=True)

    def mean(key: str, split: str, group: str | None = None) -> float:
        values = [r[split][key] for r in rows if key in r.get(split, {}) and group in (None, r["group"])]
        return sum(values) / len(values) if values else math.nan

    splits = ("train", "held-out", "input", *(["no_text"] if args.no_text else []),
              *(["first_stage"] if model.first_stage is not None else []))
    summary = {split: {key: mean(key, split) for key in ("psnr", "mae", "success", "label_agreement", "accuracy")}
               for split in splits}
    by_group = {group: {split: mean("psnr", split, group) for split in splits}
                for group in dict.fromkeys(r["group"] for r in rows)}
    semantic = semantic_edits(model, test_x, data.test_y, evaluator, args) if args.semantic else None
    end = [r for r in runs.read_metrics_log(run) if r.get("event") == "end"][-1:]
    return {"run": str(run), "train": end, "settings": {"image_guidance": args.image_guidance,
                                                        "text_guidance": args.text_guidance, "steps": args.steps,
                                                        "per_kind": args.per_kind,
                                                        "held_out_per_kind": args.held_out_per_kind or args.per_kind,
                                                        "seed": args.seed},
            "summary": summary, "psnr_by_group": by_group, "kinds": rows, "semantic": semantic,
            "load": open("/proc/loadavg").read().split()[:3] if Path("/proc/loadavg").exists() else None,
            "process_cpu_seconds": time.process_time(), **stamp(device)}


def cmd_speed(args) -> dict:
    """Training triples per CPU-second of the pixel and latent recipes' networks, timed in one process, interleaved
    (rounds of a few steps each, process CPU time: fair on a shared machine), and the CPU seconds of one edit."""
    from genzoo.models.instruct import InstructPix2Pix
    from genzoo.train_config import TrainConfig

    x = load_data(args.data, verbose=False).train_x[: args.batch_size]
    nets = {"pixel (cpu-small)": (RECIPES["cpu-small"][0], 0), "latent (cpu-latent)": (RECIPES["cpu-latent"][0], 0),
            "latent first stage": (RECIPES["cpu-latent"][0], 10**9)}  # step 0 of a first stage that never ends
    models = {}
    for name, (overrides, first_stage_steps) in nets.items():
        torch.manual_seed(0)
        model = InstructPix2Pix(**{**overrides, "first_stage_steps": first_stage_steps}).train()
        step = 0 if first_stage_steps else model.config.first_stage_steps  # a diffusion step
        models[name] = (model, model.configure_optimizers(TrainConfig(lr=1e-3))["model"], step)
    seconds = dict.fromkeys(nets, 0.0)
    for _ in range(args.rounds):
        for name, (model, opt, step) in models.items():
            start = time.process_time()
            for _ in range(args.steps):
                opt.zero_grad(set_to_none=True)
                model.loss(x, step=step)["loss"].backward()
                opt.step()
            seconds[name] += time.process_time() - start
    out = {name: {"triples_per_cpu_second": args.rounds * args.steps * len(x) / sec} for name, sec in seconds.items()}
    for name in ("pixel (cpu-small)", "latent (cpu-latent)"):
        model = models[name][0].eval()
        start = time.process_time()
        model.edit(x[:50], ["mirror it"] * 50, steps=10, generator=torch.Generator().manual_seed(0))
        out[name]["cpu_seconds_per_edit_10_ddim_steps"] = (time.process_time() - start) / 50
    out["ratio_latent_to_pixel"] = (out["latent (cpu-latent)"]["triples_per_cpu_second"]
                                    / out["pixel (cpu-small)"]["triples_per_cpu_second"])
    return {**out, "batch_size": len(x), "threads": torch.get_num_threads(),
            "load": open("/proc/loadavg").read().split()[:3] if Path("/proc/loadavg").exists() else None,
            **stamp(torch.device("cpu"))}


def cmd_first_stage(args) -> dict:
    """The round trip (encode, decode) of a latent run's first stage (ddpm or instruct) per edit kind: PSNR against
    the exact outputs and the inputs of `--n` triples of test digits, and on the plain test digits. A latent editor
    cannot be closer to the exact output than this."""
    model = runs.load(args.run, "cpu")
    if getattr(model, "first_stage", None) is None:
        raise SystemExit(f"{args.run}: a {model.name} run without a first stage; give a latent ddpm or instruct run")
    ae = model.first_stage.eval()
    x = load_data(args.data, verbose=False).test_x[: args.n]
    with torch.no_grad():
        def trip(images: torch.Tensor) -> float:
            return metrics.psnr(ae.decode(ae.encode(images)[0]), images).mean().item()

        out = {"run": str(args.run), "n": args.n, "test_digits": trip(x), "kinds": {}}
        for kind in edits.KINDS:
            t = edits.make_triples(x, torch.Generator().manual_seed(0), kinds=[kind] * len(x))
            out["kinds"][kind] = {"outputs": trip(t.outputs), "inputs": trip(t.inputs)}
            print(f"{kind:24s} outputs {out['kinds'][kind]['outputs']:5.1f} dB, inputs "
                  f"{out['kinds'][kind]['inputs']:5.1f} dB", file=sys.stderr)
    return {**out, **stamp(torch.device("cpu"))}


# The image-to-image kinds whose degradation loses information: many digits fit one input, so an edit that draws
# one of them can miss the exact output by far. `retrieval` measures how far the best-fitting real digit lands.
_MASKED = {"fill-box": edits.hide_box, "fill-half": edits.hide_half, "fill-pixels": edits.hide_pixels}
_SEEN_AS = {"upscale-14": lambda x: edits.downsample(x, 14), "upscale-7": lambda x: edits.downsample(x, 7),
            "outline": edits.outline, "skeleton": edits.skeleton,
            "denoise-gaussian": lambda x: x, "denoise-salt-and-pepper": lambda x: x}


def show_hidden_as(value: float) -> None:
    """Make the fills' inputs in this process (edits.KINDS, which training and evaluation draw from) show their
    hidden pixels as `value`: 0, what genzoo's triples show, is the background, so an input does not say where its
    hidden part is; 0.5 marks that part grey. For the A/B of docs/results/instruct.md; a run trained with a value
    is evaluated with the same one."""
    for name, hide in (("fill-box", edits.hide_box), ("fill-half", edits.hide_half),
                       ("fill-pixels", edits.hide_pixels)):
        edits.KINDS[name] = dataclasses.replace(edits.KINDS[name],
                                                make=lambda x, g, fields, hide=hide: (hide(x, g, value=value), x))


def nearest_training_digits(kind: str, digits: torch.Tensor, train_x: torch.Tensor, k: int,
                            generator: torch.Generator, chunk: int = 250,
                            mask_known: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """For each test digit, degraded as `kind` degrades it, the k training digits that best explain its degraded
    input, nearest first: (N, k) indices into train_x, the degraded inputs (N, 1, 28, 28) and, for the fills, the
    visible pixels (N, 1, 28, 28: 1 where seen; None for the other kinds).

    Fills: the squared distance on the pixels left visible (the training digit under the same mask); with
    `mask_known` False, on all pixels, the hidden ones black as the input shows them (the editor is not told which
    pixels are hidden either), and no visible pixels are returned. Noise: the
    squared distance of the training digit to the noisy input (the Gaussian likelihood). Upscaling and sketches:
    the squared distance between the two digits' degraded versions (the same 14x14 or 7x7 image, the same
    outline or skeleton)."""
    n = len(digits)
    visible = None
    if kind in _MASKED:
        visible = _MASKED[kind](torch.ones_like(digits), generator).flatten(1)  # (N, 784): 1 where seen
        inputs = digits * visible.view_as(digits)
        seen = train_x.flatten(1)
        visible = visible if mask_known else None
    else:
        inputs = edits.KINDS[kind].make(digits, generator, [{}] * n)[0]
        seen = _SEEN_AS[kind](train_x).flatten(1)  # D(t) of every training digit
    picked = []
    for first in range(0, n, chunk):
        x = inputs[first:first + chunk].flatten(1)
        if visible is not None:  # sum over visible p of (t_p - x_p)^2, for every training digit t at once
            m = visible[first:first + chunk]
            d = m @ seen.pow(2).T - 2 * (m * x) @ seen.T
        else:  # the input is the test digit's degraded version: ||D(t) - input||^2 up to a constant
            d = seen.pow(2).sum(1)[None] - 2 * x @ seen.T
        picked.append(d.topk(k, dim=1, largest=False).indices)
    return torch.cat(picked), inputs, None if visible is None else visible.view_as(digits)


def _known_kinds(kinds: list[str], allowed: list[str]) -> list[str]:
    unknown = [k for k in kinds if k not in allowed]
    if unknown:
        raise SystemExit(f"--kinds: {', '.join(unknown)} not among the kinds this command takes: {', '.join(allowed)}")
    return kinds


def cmd_retrieval(args) -> dict:
    """The retrieval baseline of the kinds that lose information: the training digit that best fits each degraded
    test input (a fill keeps the pixels it sees) and the mean of the `k` best, scored against the exact output as
    an edit is. The first is one real digit consistent with the input; the second a blurred average of several,
    nearer the mean of the digits that fit (which minimises the squared error, where any one of them does not)."""
    kinds = _known_kinds(args.kinds.split(",") if args.kinds else [*_MASKED, *_SEEN_AS], [*_MASKED, *_SEEN_AS])
    data = load_data(args.data, verbose=False)
    train_x, digits = data.train_x, data.test_x[: args.n]
    out = {"data": args.data, "n": args.n, "k": args.k, "kinds": {}}
    for kind in kinds:
        index, inputs, visible = nearest_training_digits(kind, digits, train_x, args.k,
                                                         torch.Generator().manual_seed(args.seed))
        nearest, mean_of_k = train_x[index[:, 0]], train_x[index].mean(1)
        if visible is not None:  # a fill keeps what it sees: the drawn digit only where the input hides it
            nearest, mean_of_k = (torch.where(visible > 0, digits, d) for d in (nearest, mean_of_k))
        row = {"input": edits.score_edits(inputs, digits), "nearest": edits.score_edits(nearest, digits),
               "mean_of_k": edits.score_edits(mean_of_k, digits)}
        blind = ""
        if visible is not None:  # the same search not told which pixels are hidden, as the editor is not
            index = nearest_training_digits(kind, digits, train_x, args.k, torch.Generator().manual_seed(args.seed),
                                            mask_known=False)[0]
            row["nearest_mask_unknown"] = edits.score_edits(train_x[index[:, 0]], digits)
            row["mean_of_k_mask_unknown"] = edits.score_edits(train_x[index].mean(1), digits)
            blind = (f"; not told the mask: {row['nearest_mask_unknown']['psnr']:5.1f} and "
                     f"{row['mean_of_k_mask_unknown']['psnr']:5.1f} dB")
        out["kinds"][kind] = row
        print(f"{kind:24s} nearest training digit {row['nearest']['psnr']:5.1f} dB (success "
              f"{row['nearest']['success']:.2f}); mean of the {args.k} nearest {row['mean_of_k']['psnr']:5.1f} dB; "
              f"the input {row['input']['psnr']:5.1f} dB{blind}", file=sys.stderr, flush=True)
    return {**out, **stamp(torch.device("cpu"))}


def cmd_spread(args) -> dict:
    """Several edits of the same inputs from different noise, per kind: how far each lands from the exact output,
    how far two land from each other, and how far their mean lands. An editor whose edits vary as much as the
    digits that fit the input do (a calibrated sampler) has E||s1 - s2||^2 = E||s - x||^2, twice the least squared
    error any single answer could reach; the mean of its edits then scores nearer the exact output."""
    if args.samples < 2:
        raise SystemExit(f"--samples {args.samples}: give at least 2 (two edits are compared with each other)")
    names = list(edits.KINDS)
    kinds = _known_kinds(args.kinds.split(","), names)
    device = resolve_device(args.device)
    model = runs.load(args.run, device)
    test_x = load_data(runs.read_config(args.run)["data"], verbose=False).test_x
    out = {"run": str(args.run), "n": args.n, "samples": args.samples, "kinds": {}}
    for kind in kinds:
        k = names.index(kind)  # the digits and seed that `evaluate` gives this kind
        digits = test_x[(k * args.n) % len(test_x):][: args.n].to(device)
        triples = edits.make_triples(digits, torch.Generator().manual_seed(args.seed + k), kinds=[kind] * len(digits))
        drawn = [model.edit(triples.inputs, triples.instructions, image_guidance=args.image_guidance,
                            text_guidance=args.text_guidance, steps=args.steps,
                            generator=torch.Generator().manual_seed(args.seed + k + 1000 * j)).cpu()
                 for j in range(args.samples)]
        exact = triples.outputs.cpu()
        row = {"each": sum(metrics.psnr(d, exact).mean().item() for d in drawn) / len(drawn),
               "between_two": metrics.psnr(drawn[0], drawn[1]).mean().item(),
               "mean_of_edits": metrics.psnr(torch.stack(drawn).mean(0), exact).mean().item()}
        out["kinds"][kind] = row
        print(f"{kind:24s} an edit {row['each']:5.1f} dB from the exact output, two edits {row['between_two']:5.1f} "
              f"dB from each other, the mean of {args.samples} edits {row['mean_of_edits']:5.1f} dB",
              file=sys.stderr, flush=True)
    return {**out, **stamp(device)}


def _number(v, form: str) -> str:
    """A figure in `form`, or "-" where it is missing (None) or not a number (NaN)."""
    return "-" if v is None or v != v else format(v, form)


def _semantic_reads(semantic: dict) -> str:
    """"train 0.995, held-out 0.004, ...": the share of semantic edits read as the requested digit, per split."""
    return ", ".join(f"{split} {v['target_read']:.3f}" for split, v in semantic.items()
                     if isinstance(v, dict) and "target_read" in v)


def table(editor: dict, blind: dict | None) -> str:
    """The markdown table of docs/results/instruct.md from `evaluate`'s JSON of the editor and of its text-blind
    baseline: PSNR (dB) per kind and split, the baseline, doing nothing, the first stage's bound, success rates,
    label agreement, the image-to-image kinds' accuracy; then the semantic edits."""
    def f(v) -> str:
        return _number(v, ".1f")

    def two(a, b) -> str:
        return " / ".join(_number(v, ".2f") for v in (a, b))

    base = {r["kind"]: r for r in blind["kinds"]} if blind else {}
    lines = ["| kind | trained | held-out | text-blind baseline | input as the edit | first stage round trip | "
             "success trained / held-out | success baseline | label agreement trained / baseline | "
             "accuracy: edit / baseline / degraded input |", "|---|---|---|---|---|---|---|---|---|---|"]
    rows = [(r, base.get(r["kind"])) for r in editor["kinds"]]
    summary = ({"kind": f"**mean of {len(rows)} kinds**", **editor["summary"]},
               {"kind": "", **blind["summary"]} if blind else None)
    for r, b in [*rows, summary]:
        acc = ""  # image-to-image kinds (and their mean): the evaluator's accuracy on the true label
        if r["train"].get("accuracy") is not None and r["train"]["accuracy"] == r["train"]["accuracy"]:
            acc = (f"{r['train']['accuracy']:.2f} / {b['train']['accuracy'] if b else float('nan'):.2f} / "
                   f"{r['input']['accuracy']:.2f}")
        base_success = f"{b['train']['success']:.2f}" if b else "-"
        agreement = two(r["train"].get("label_agreement"), b["train"].get("label_agreement") if b else None)
        lines.append(f"| {r['kind']} | {f(r['train']['psnr'])} | {f(r['held-out']['psnr'])} | "
                     f"{f(b['train']['psnr']) if b else '-'} | {f(r['input']['psnr'])} | "
                     f"{f(r.get('first_stage', {}).get('psnr'))} | "
                     f"{two(r['train']['success'], r['held-out']['success'])} | {base_success} | {agreement} | {acc} |")
    for name, result in (("editor", editor), ("text-blind baseline", blind)):
        semantic = (result or {}).get("semantic")
        if not semantic:
            continue
        reads = _semantic_reads(semantic)
        distances = ", ".join(f"{split} {v['style_distance']:.2f}"
                              + (f" (nearer than the random digit in {v['closer_than_random']:.0%}; slant and "
                                 f"thickness correlation {v['correlation']['slant']:.2f} and "
                                 f"{v['correlation']['thickness']:.2f})" if "closer_than_random" in v else "")
                              for split, v in semantic.items() if isinstance(v, dict) and "style_distance" in v)
        unrelated = semantic.get("random_target_digit_to_input")
        taught = semantic.get("training_pairs_correlation")
        lines += ["", f"Semantic edits, {name} ({semantic['n']} test digits per split): requested digit read in "
                  f"{reads}; feature distance from the edit to its input {distances} ("
                  + (f"a random digit of the target class to the input: {unrelated:.2f}; " if unrelated else "")
                  + f"two random digits of the target class: {semantic['random_pair_distance_in_target_class']:.2f})"
                  + (f"; the training pairs' slant and thickness correlation {taught['slant']:.2f} and "
                     f"{taught['thickness']:.2f}" if taught else "") + "."]
    return "\n".join(lines)


def compare(results: dict[str, dict]) -> str:
    """Several editors side by side from `evaluate`'s JSON, labelled: PSNR (dB) and success per kind, trained and
    held-out phrasings, the mean of the kinds, then each one's semantic edits."""
    def pair(split_a: dict, split_b: dict, key: str, form: str) -> str:
        return " / ".join(_number(v, form) for v in (split_a.get(key), split_b.get(key)))

    names = list(results)
    lines = ["| kind | " + " | ".join(f"{n}: dB trained / held-out | {n}: success" for n in names) + " |",
             "|---|" + "---|---|" * len(names)]
    rows = {n: [*r["kinds"], {"kind": f"**mean of {len(r['kinds'])} kinds**", **r["summary"]}]
            for n, r in results.items()}
    for i, row in enumerate(rows[names[0]]):
        cells = []
        for n in names:
            r = rows[n][i]
            if r["kind"] != row["kind"]:
                raise SystemExit(f"{n}: kind {r['kind']} where {names[0]} has {row['kind']}: compare the same kinds")
            cells += [pair(r["train"], r["held-out"], "psnr", ".1f"), pair(r["train"], r["held-out"], "success", ".2f")]
        lines.append(f"| {row['kind']} | " + " | ".join(cells) + " |")
    for n, r in results.items():
        semantic = r.get("semantic") or {}
        reads = _semantic_reads(semantic)
        if reads:
            lines += ["", f"Semantic edits, {n} ({semantic['n']} test digits per split): requested digit read "
                          f"in {reads}."]
    return "\n".join(lines)


def edit_options(parser: argparse.ArgumentParser) -> None:
    """How the editor edits, for the commands that edit (evaluate, spread): the same defaults in both."""
    parser.add_argument("--steps", type=int, default=10, help="DDIM steps")
    parser.add_argument("--image-guidance", dest="image_guidance", type=float, default=1.5)
    parser.add_argument("--text-guidance", dest="text_guidance", type=float, default=3.0)


def hidden_option(parser: argparse.ArgumentParser) -> None:
    """What the fills' inputs show where pixels are hidden, for the commands that make triples (train, evaluate)."""
    parser.add_argument("--hidden-value", dest="hidden_value", type=float, default=0.0,
                        help="the fills' hidden pixels shown as this (0: black, as genzoo's triples show them; 0.5: "
                             "marked grey); evaluate a run with the value it was trained with")


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train")
    p.add_argument("--recipe", choices=list(RECIPES), default="cpu-small")
    p.add_argument("--data", default="mnist")
    p.add_argument("--runs", default="runs/instruct")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--time-budget", dest="time_budget", type=float, default=0.0,
                   help="seconds of training (0: the recipe's)")
    p.add_argument("--first-stage-from", dest="first_stage_from",
                   help="latent recipes: a latent ddpm run whose first stage (ae_widths 16,32) starts the editor's")
    p.add_argument("--first-stage-steps", dest="first_stage_steps", type=int, default=150,
                   help="with --first-stage-from: the steps that fine-tune it on the triples")
    p.add_argument("--pairs", help="pairs.safetensors of `genzoo semantic-pairs`: semantic edits mixed into training")
    p.add_argument("--semantic-fraction", dest="semantic_fraction", type=float, default=0.1,
                   help="with --pairs: the share of each batch that is semantic pairs")
    p.add_argument("--prediction", choices=("eps", "v"), help="what the U-Net predicts (default: the recipe's)")
    p.add_argument("--word-noise", dest="word_noise", type=float,
                   help="the instructions' word noise in training (default: the recipe's)")
    hidden_option(p)
    p.set_defaults(fn=cmd_train)
    p = sub.add_parser("evaluate")
    p.add_argument("run")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--per-kind", dest="per_kind", type=int, default=50,
                   help="test digits per kind and split (0: no kind, the semantic edits only)")
    p.add_argument("--held-out-per-kind", dest="held_out_per_kind", type=int, default=0,
                   help="test digits per kind for the held-out phrasings (0: --per-kind); the first of the same digits")
    p.add_argument("--kinds", help="comma-separated kinds (default: all)")
    edit_options(p)
    p.add_argument("--semantic", type=int, default=0,
                   help="semantic edits of this many test digits per phrasing split (0: none)")
    p.add_argument("--no-text", dest="no_text", action="store_true",
                   help="also score the edits with the instruction withheld (s_T = 0)")
    hidden_option(p)
    p.set_defaults(fn=cmd_evaluate)
    q = sub.add_parser("speed")
    q.add_argument("--data", default="mnist")
    q.add_argument("--batch-size", dest="batch_size", type=int, default=64)
    q.add_argument("--steps", type=int, default=3, help="steps per network and round")
    q.add_argument("--rounds", type=int, default=4)
    q.set_defaults(fn=cmd_speed)
    q = sub.add_parser("first-stage")
    q.add_argument("run", help="a latent ddpm or instruct run")
    q.add_argument("--data", default="mnist")
    q.add_argument("-n", type=int, default=200, help="test digits per kind")
    q.set_defaults(fn=cmd_first_stage)
    q = sub.add_parser("retrieval", help="what the training digits nearest a degraded input score, per kind")
    q.add_argument("--data", default="mnist")
    q.add_argument("-n", type=int, default=1000, help="test digits per kind")
    q.add_argument("-k", type=int, default=10, help="the nearest training digits averaged")
    q.add_argument("--kinds", help="comma-separated image-to-image kinds (default: all)")
    q.add_argument("--seed", type=int, default=0)
    q.set_defaults(fn=cmd_retrieval)
    q = sub.add_parser("spread", help="several edits of the same inputs: their distance to the exact output and "
                                      "to each other, per kind")
    q.add_argument("run")
    q.add_argument("--device", default="auto")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("-n", type=int, default=100, help="test digits per kind (evaluate's --per-kind: the same digits)")
    q.add_argument("--samples", type=int, default=4, help="edits of each input (at least 2)")
    q.add_argument("--kinds", default="fill-box,fill-half,upscale-7,combo,upscale-14,fill-pixels")
    edit_options(q)
    q.set_defaults(fn=cmd_spread)
    p.add_argument("--out", help="JSON file (default: print)")
    for q in (sub.choices["train"], sub.choices["speed"], sub.choices["first-stage"], sub.choices["retrieval"],
              sub.choices["spread"]):
        q.add_argument("--out", help="JSON file (default: print)")
    q = sub.add_parser("table", help="the markdown table of an evaluation (and of its text-blind baseline's)")
    q.add_argument("editor", help="evaluate's JSON of the editor")
    q.add_argument("baseline", nargs="?", help="evaluate's JSON of the text-blind baseline")
    q = sub.add_parser("compare", help="several editors' evaluations side by side")
    q.add_argument("labelled", nargs="+", metavar="LABEL=JSON", help="a label and evaluate's JSON of an editor")
    args = parser.parse_args()
    if args.command == "compare":
        if any("=" not in item for item in args.labelled):
            parser.error("compare: give each evaluation as LABEL=JSON")
        print(compare({label: json.loads(Path(path).read_text())
                       for label, path in (item.split("=", 1) for item in args.labelled)}))
        return {}
    if args.command == "table":
        print(table(json.loads(Path(args.editor).read_text()),
                    json.loads(Path(args.baseline).read_text()) if args.baseline else None))
        return {}
    if getattr(args, "hidden_value", 0.0):
        show_hidden_as(args.hidden_value)
    result = args.fn(args)
    if hasattr(args, "hidden_value"):  # train and evaluate say what the fills' inputs showed
        result["hidden_value"] = args.hidden_value
    return write_result(result, args.out)


if __name__ == "__main__":
    main()
