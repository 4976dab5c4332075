"""Time to quality: genzoo's `cpu` recipe against each peer's own recipe, for the same wall-clock budgets.

Issue 41. Per-step speed on identical networks (benchmarks/peers.py) is a matter of shared kernels; what a user
feels is how many minutes of their CPU it takes to reach good digits or a good likelihood with each library used
the way its own docs say. Each row trains genzoo's `cpu` recipe (`genzoo train MODEL --recipe cpu`, the same
code path) and the peer's recipe on the same CPU, at the same torch thread count, and stops both at the same
points of their training clocks (`--budgets`, minutes), in turn (`--order interleaved`: every side reaches a point
before any goes on, so that what else the machine does falls on both), one side after the other
(`--order sequential`, for an idle machine), or both at once, each in a process of its own pinned to a core of
its own (`--order parallel`, for an idle 2-core machine: half the wall time, and the memory traffic of each falls
on the other). At each point the training is paused and the checkpoint is scored by
genzoo's own evaluation code on the same test digits and the same number of samples; scoring is not training
time. A side's clock counts its training steps only: neither side runs its per-epoch test pass or picture
grids (genzoo's `sample_every=0 test_every=0`, the peers' evaluation loaders unused).

    vae      genzoo `vae` cpu recipe (MLP 784-500-500-50 on the IWAE bound with K = 5, dynamic binarization) against
             pythae's VAE with its binary-MNIST reproducibility settings (examples/scripts/reproducibility/vae.py:
             784-400-40 MLP encoder and decoder, Bernoulli pixels, Adam 1e-3, batch 20, MultiStepLR at epochs
             200/350/500/750/1000 by 10^(-1/5), seed 123), on one fixed binarization of the training digits (the
             script reads Larochelle's fixed binarized MNIST). Quality: the IWAE NLL in nats with the same K and
             the same draws for both (`--k`), on `--test-images` test digits binarized by
             `genzoo.data.fixed_binarization(seed=0)`.
    gan      genzoo `dcgan` and `cgan` cpu recipes against PyTorch-GAN's dcgan.py and cgan.py defaults, restated in
             benchmarks/pytorch_gan_reference.py (32 x 32 images in [-1, 1], batch 64, Adam 2e-4 (0.5, 0.999));
             their samples are brought to 28 x 28 by that file's least-squares inverse of the upsampling and drawn
             with batch statistics (batches of 64), as the pictures their scripts save. Quality: FID-style,
             precision/recall and (cgan) the conditional accuracy of `--samples` samples (digits 0..9 in turn).
    diffusion genzoo `ddpm` cpu recipe (class-conditional latent diffusion) against (diffusers) diffusers'
             UNet2DModel + DDPMScheduler trained as in the Hugging Face diffusion course, unit 2
             (github.com/huggingface/diffusion-models-class, unit2/02_class_conditioned_diffusion_model_example:
             `ClassConditionedUnet`, a label embedding of 4 appended as input channels, 28 x 28, 2 layers a block,
             widths 32/64/64, Down/AttnDown/AttnDown and the mirrored up blocks; DDPMScheduler 1000 steps
             'squaredcos_cap_v2'; MSE on the noise, Adam 1e-3, batch 128, images in [-1, 1]), and against
             (lucidrains) denoising-diffusion-pytorch's `Unet` + `GaussianDiffusion` with its README settings
             (`LUCIDRAINS_README`; 32 x 32 images, its down-samplings need a side divisible by 8). Every side samples
             by DDIM, `--sampler-steps` (50) steps, eta 0: genzoo by its own sampler (guidance at the recipe's
             default against diffusers; unconditional, guidance 0, against denoising-diffusion-pytorch, whose Unet
             takes no label), diffusers by its DDIMScheduler (benchmarks/peers.py `diffusers_ddim`), denoising-
             diffusion-pytorch by its own DDIM from its EMA weights. Quality: FID-style (and, against diffusers, the
             conditional accuracy) of `--samples` samples (digits 0..9 in turn where conditional). Each comparison
             trains its own genzoo run (`--only` picks one).
    pixelcnn genzoo `pixelcnn` cpu recipe (a narrow gated PixelCNN) against pytorch-generative's PixelCNN and
             GatedPixelCNN with their `reproduce()` settings, restated in benchmarks/pytorch_generative_reference.py
             (pytorch-generative is not on PyPI): batch 256 / 128, Adam 1e-3 decayed x0.999977 / x0.9999 a step,
             the training digits binarized afresh each batch. Quality: the exact NLL in nats on `--test-images`
             test digits binarized by `genzoo.data.fixed_binarization(seed=0)`, the same digits for every side.
    mixture  genzoo.mixture.GaussianMixture against scikit-learn's, each with its defaults (k-means
             initialisation, n_init 1, tol 1e-3, max_iter 100, reg_covar 1e-6) but `--components`: whole `fit()`
             seconds, diag on `--n-diag` and full on `--n-full` MNIST training digits (float64 pixels / 255), at
             each `--threads`, the libraries alternating (order swapped each repeat); the mean log-likelihood
             reached, the EM iterations, and a fit stopped after one EM iteration (`max_iter=1`: the
             initialisation and one iteration) to show what the initialisation costs.

The JSON (written again after every checkpoint, so a killed run keeps what it measured) and the plot go to
`--out-dir` as time-to-quality-ROW.json / .png.

    python benchmarks/time_to_quality.py vae --data ../shared/data/mnist --budgets 5,15,30,60 --threads 1
    python benchmarks/time_to_quality.py gan --data ../shared/data/mnist --budgets 5,15,30,60 --samples 10000
    python benchmarks/time_to_quality.py diffusion --data ../shared/data/mnist --budgets 5,15,30,60 --samples 10000
    python benchmarks/time_to_quality.py pixelcnn --data ../shared/data/mnist --budgets 5,15,30,60
    python benchmarks/time_to_quality.py mixture --data ../shared/data/mnist --threads 1,2

The vae row needs pythae, the diffusion row diffusers and denoising-diffusion-pytorch (the peers' virtual
environment: see benchmarks/peers.py); the gan, pixelcnn and mixture rows restate their peers or need only the
test extra.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import platform
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmarks: peers and the restated peers

import peers  # noqa: E402
import pytorch_gan_reference as gan_reference  # noqa: E402
import pytorch_generative_reference as pixel_reference  # noqa: E402

import genzoo  # noqa: E402
from genzoo import commands, recipes, runs  # noqa: E402
from genzoo.constants import N_CLASSES  # noqa: E402
from genzoo.data import Dataset, fixed_binarization, load_data, spread  # noqa: E402
from genzoo.evaluation.evaluator import load_evaluator  # noqa: E402
from genzoo.evaluation.scoring import real_features, sample_quality  # noqa: E402
from genzoo.mixture import GaussianMixture  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results" / "peers"
LIKELIHOOD_KEYS = ("nll",)
SAMPLE_KEYS = ("fid", "precision", "recall", "conditional_accuracy")


# ---------------------------------------------------------------------------- the two sides


@dataclass
class Reading:
    """Where a side's training stands: its clock (training seconds), this process's CPU seconds over the same
    spans, and the steps taken."""

    seconds: float = 0.0
    cpu_seconds: float = 0.0
    steps: int = 0
    finished: bool = False  # the recipe ended before the budget: the later points score the same weights


class PeerSide:
    """A peer's recipe as one training step at a time (`step()`), the loop body of its own trainer or script.
    Its clock counts the calls of `step` only; `scorable()` gives what the row's scorer asks of a model."""

    def __init__(self, name: str, step: Callable[[], None], scorable: Callable[[], Any], about: str,
                 timer: Callable[[], float] = time.perf_counter):
        self.name, self.step, self.scorable, self.about = name, step, scorable, about
        self.timer, self.reading = timer, Reading()

    def train_until(self, seconds: float) -> Reading:
        while self.reading.seconds < seconds:
            start, start_cpu = self.timer(), time.process_time()
            self.step()
            self.reading.seconds += self.timer() - start
            self.reading.cpu_seconds += time.process_time() - start_cpu
            self.reading.steps += 1
        return self.reading


class GenzooSide:
    """genzoo's `cpu` recipe of `model`, trained by `genzoo.commands.train` (the CLI's `genzoo train MODEL --recipe
    cpu`) into `run_dir` with a time budget, then resumed with the next budget: the trainer's own clock (training
    seconds summed over sessions) stops it, and its run folder is the checkpoint that is scored."""

    def __init__(self, model: str, data: str, run_dir: Path, seed: int, scorable: Callable[[Any], Any],
                 recipe: str = "cpu", sets: tuple[str, ...] = ("sample_every=0", "test_every=0")):
        self.model, self.data, self.run_dir, self.seed = model, data, run_dir, seed
        self.recipe, self.sets = recipe, sets
        self.name, self.wrap, self.reading = "genzoo", scorable, Reading()
        self.about = f"genzoo {model} --recipe {recipe} ({recipes.get(model, recipe).about})"

    def train_until(self, seconds: float) -> Reading:
        start_cpu = time.process_time()
        if self.reading.steps == 0 and not (self.run_dir / runs.CONFIG).exists():
            commands.train(self.model, data=self.data, out=str(self.run_dir), device="cpu", seed=self.seed,
                           recipe=self.recipe, time_budget=seconds, sets=list(self.sets))
        else:
            commands.train(self.model, out=str(self.run_dir), device="cpu", resume=True, time_budget=seconds)
        end = last_end_record(self.run_dir)
        self.reading.cpu_seconds += time.process_time() - start_cpu  # the whole call: data loading and resuming too
        self.reading.seconds, self.reading.steps = end["train_seconds"], end["step"]
        self.reading.finished = "stopped" not in end  # no stop reason: the recipe ran to its end
        return self.reading

    def scorable(self):
        return self.wrap(runs.load(self.run_dir))


def last_end_record(run_dir: Path) -> dict:
    """The trainer's last end-of-session record in RUN/metrics.jsonl (training seconds, step, why it stopped)."""
    path = run_dir / "metrics.jsonl"
    ends = [record for line in path.read_text().splitlines() if line.strip()
            for record in [json.loads(line)] if record.get("event") == "end"]
    if not ends:
        raise RuntimeError(f"{path}: no end record; the training session did not finish (see its last lines)")
    return ends[-1]


# ---------------------------------------------------------------------------- running a comparison


def run_comparison(sides: dict[str, Any], budgets_s: list[float], score: Callable[[Any], dict], order: str,
                   on_checkpoint: Callable[[dict], None] | None = None) -> dict:
    """Train each side to each point of `budgets_s` (seconds of its training clock, ascending) and score it there.

    Returns {side: [checkpoint, ...]} in budget order, each checkpoint the budget, the side's reading and the
    scores. `order` "interleaved": every side reaches a point before any goes on; "sequential": one side through
    all its points, then the next; "parallel": every side at once, each in its own process on its own core (its
    points in turn). `on_checkpoint(result)` is called after each score (to save what is measured).
    """
    if list(budgets_s) != sorted(budgets_s) or any(b <= 0 for b in budgets_s):
        raise ValueError(f"budgets {budgets_s}: give positive points in ascending order")
    result: dict[str, list[dict]] = {name: [] for name in sides}

    def record(name: str, point: dict) -> None:
        result[name].append(point)
        shown = ", ".join(f"{k} {v:.4g}" for k, v in point.items() if k in LIKELIHOOD_KEYS + SAMPLE_KEYS)
        print(f"  {name} at {point['budget_minutes']:g} min: {point['steps']:,} steps in "
              f"{point['train_seconds']:.0f} s; {shown} (load {point['load']})", file=sys.stderr, flush=True)
        if on_checkpoint is not None:
            on_checkpoint(result)

    if order == "parallel":
        for name, point in in_parallel(sides, budgets_s, score):
            record(name, point)
        return result
    plan = ([(b, name) for b in budgets_s for name in sides] if order == "interleaved" else
            [(b, name) for name in sides for b in budgets_s])
    for budget, name in plan:
        record(name, checkpoint(sides[name], budget, score))
    return result


def checkpoint(side, budget: float, score: Callable[[Any], dict]) -> dict:
    """Train `side` to `budget` seconds of its clock, score it, and return the point: budget, reading, scores."""
    reading = side.train_until(budget)
    start = time.perf_counter()
    scores = score(side)
    return {"budget_minutes": budget / 60, "train_seconds": reading.seconds, "cpu_seconds": reading.cpu_seconds,
            "steps": reading.steps, "recipe_finished": reading.finished,
            "score_seconds": time.perf_counter() - start, "load": peers.load_average(), **scores}


def in_parallel(sides: dict[str, Any], budgets_s: list[float], score: Callable[[Any], dict]):
    """Yield (side, checkpoint) as each side, in a forked process pinned to a core of its own at this process's
    torch thread count, reaches its points in turn. A side that fails raises here with its traceback; Ctrl-C (or
    any error) stops every side's process."""
    import multiprocessing

    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < len(sides):
        raise ValueError(f"--order parallel runs each of the {len(sides)} sides on a core of its own; this process "
                         f"may use {len(cores)} core(s): use --order interleaved")
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    workers = [context.Process(target=side_worker, args=(name, side, budgets_s, score, queue, core,
                                                          torch.get_num_threads()), daemon=True)
               for (name, side), core in zip(sides.items(), cores)]
    for worker in workers:
        worker.start()
    try:
        for _ in range(len(sides) * len(budgets_s)):
            name, point = queue.get()
            if name is None:
                raise RuntimeError(f"a side failed in its process:\n{point}")
            yield name, point
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()
            worker.join()


def side_worker(name: str, side, budgets_s: list[float], score: Callable[[Any], dict], queue, core: int,
                threads: int) -> None:
    """One side of `in_parallel`, in its own process: pinned to `core`, every point in turn, each sent back."""
    import traceback

    os.sched_setaffinity(0, {core})
    torch.set_num_threads(threads)
    try:
        for budget in budgets_s:
            queue.put((name, {**checkpoint(side, budget, score), "core": core}))
    except BaseException:
        queue.put((None, f"{name}: {traceback.format_exc()}"))


def time_to_reach(curve: list[dict], target: float, key: str) -> float | None:
    """The training minutes of the first checkpoint of `curve` whose `key` (lower is better) is at or under
    `target`; None when none is."""
    for point in curve:
        if point[key] <= target:
            return point["train_seconds"] / 60
    return None


def summarise(checkpoints: dict[str, list[dict]], key: str, peer: str) -> dict:
    """The issue's readings: the minutes genzoo takes to reach the peer's last quality, and at each point which
    side is the better (lower `key`). Read at checkpoints, `speed_up` is a lower bound: genzoo got there between
    its checkpoint before (its minutes give `speed_up_at_most`) and the one that reached it; `speed_up_at_least` is
    true where that was its first checkpoint (no upper bound then); `peer_last_gain` is what the peer's figure
    improved by over its last interval (above 0: its curve was still falling when it stopped)."""
    ours, theirs = checkpoints["genzoo"], checkpoints[peer]
    target = theirs[-1][key]
    minutes = time_to_reach(ours, target, key)
    before = max((point["train_seconds"] / 60 for point in ours if minutes and point["train_seconds"] / 60 < minutes),
                 default=None)
    return {"key": key, "peer_last": target, "peer_last_minutes": theirs[-1]["train_seconds"] / 60,
            "genzoo_minutes_to_peer_last": minutes,
            "speed_up": theirs[-1]["train_seconds"] / 60 / minutes if minutes else None,
            "speed_up_at_least": minutes is not None and ours[0][key] <= target,
            "speed_up_at_most": theirs[-1]["train_seconds"] / 60 / before if before else None,
            "peer_last_gain": theirs[-2][key] - target if len(theirs) > 1 else None,
            "genzoo_better_at": [o["budget_minutes"] for o, t in zip(ours, theirs) if o[key] < t[key]]}


# ---------------------------------------------------------------------------- scoring


def likelihood_scorer(test_binary: torch.Tensor, seed: int, batch: int = 100, **log_prob_kwargs):
    """NLL in nats per image (mean and standard error) of `side.scorable().log_prob` on `test_binary`, the
    random draws (an IWAE's) from one generator seeded alike for every side and checkpoint."""
    def score(side) -> dict:
        model = side.scorable()
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            log_p = torch.cat([model.log_prob(part, generator=generator, **log_prob_kwargs)
                               for part in test_binary.split(batch)]).double()
        return {"nll": -float(log_p.mean()), "nll_se": float(log_p.std() / math.sqrt(len(log_p))),
                "test_images": len(log_p)}
    return score


def sample_scorer(real: torch.Tensor, n_samples: int, conditional: bool, seed: int, batch: int = 500):
    """genzoo's sample-quality figures (FID-style, precision/recall, class coverage and, conditional, the
    accuracy) of `n_samples` samples of `side.scorable().sample(n, y, generator)` against `real`."""
    evaluator = load_evaluator("cpu")
    features = real_features(evaluator, real)
    labels = torch.arange(n_samples) % N_CLASSES if conditional else None

    def score(side) -> dict:
        model = side.scorable()
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            images = torch.cat([model.sample(min(batch, n_samples - first),
                                             None if labels is None else labels[first:first + batch], generator)
                                for first in range(0, n_samples, batch)])
        q = sample_quality(images.float().clamp(0, 1), real, evaluator, labels=labels, real_features=features)
        return {**{k: float(q[k]) for k in SAMPLE_KEYS if k in q}, "n_samples": n_samples, "n_real": len(real)}
    return score


class GenzooSampler:
    """genzoo's model behind the scorer's `sample(n, y, generator)`."""

    def __init__(self, model, **options):
        self.model, self.options = model, options

    def sample(self, n, y, generator):
        return self.model.sample(n, y=y, generator=generator, **self.options)


# ---------------------------------------------------------------------------- the vae row: pythae


def pythae_reproducibility_side(data: Dataset, seed: int, work: Path) -> PeerSide:
    """pythae's VAE as its binary-MNIST reproducibility script trains it: the script's networks (Linear 784-400,
    ReLU, two heads to the 40-d mean and log-variance; Linear 40-400, ReLU, Linear 400-784, sigmoid) are genzoo's
    MLP VAE modules of those sizes, wrapped as pythae's encoder and decoder by benchmarks/peers.py, so that
    genzoo's `VAE.log_prob` scores what pythae trained; pythae's BaseTrainer with the script's settings."""
    peers.import_peer("pythae")
    from pythae.data.datasets import BaseDataset
    from pythae.trainers import BaseTrainer, BaseTrainerConfig

    torch.manual_seed(123)  # the script's seed
    networks = genzoo.create("vae", arch="mlp", hidden=400, latent_dim=40)
    model = peers.pythae_vae(networks, "vae", 0)
    train = fixed_binarization(data.train_x, seed=seed + 1)  # one fixed binarization, as the script's data
    config = BaseTrainerConfig(output_dir=str(work / "pythae"), num_epochs=3280, learning_rate=1e-3,
                               per_device_train_batch_size=20, per_device_eval_batch_size=20,
                               train_dataloader_num_workers=0, no_cuda=True, seed=123,
                               scheduler_cls="MultiStepLR",
                               scheduler_params={"milestones": [200, 350, 500, 750, 1000], "gamma": 10 ** (-1 / 5)})
    trainer = BaseTrainer(model, BaseDataset(train, torch.zeros(len(train))), training_config=config)
    trainer.prepare_training()
    state = {"epoch": 1, "batches": iter(trainer.train_loader)}

    def step() -> None:  # the body of BaseTrainer.train_step, one batch; its epoch end as BaseTrainer.train's
        trainer.model.train()
        try:
            inputs = next(state["batches"])
        except StopIteration:
            trainer.model.update()
            trainer._schedulers_step()
            state["epoch"] += 1
            state["batches"] = iter(trainer.train_loader)
            inputs = next(state["batches"])
        out = trainer.model(trainer._set_inputs_to_device(inputs), epoch=state["epoch"], dataset_size=len(train),
                            uses_ddp=False)
        trainer._optimizers_step(out)

    def scorable():
        networks.eval()
        return networks

    side = PeerSide("pythae", step, scorable, "pythae 0.1.2 VAE, its binary-MNIST reproducibility script's "
                    "settings (784-400-40 MLPs, Adam 1e-3, batch 20, MultiStepLR), one fixed binarization of the "
                    "training digits")
    side.trainer, side.epoch = trainer, lambda: state["epoch"]  # for the tests
    return side


# ---------------------------------------------------------------------------- the gan row: PyTorch-GAN


class ReferenceGANSide:
    """PyTorch-GAN's dcgan.py or cgan.py at its defaults, by the networks, losses and step order restated in
    benchmarks/pytorch_gan_reference.py, one batch of 64 a step (the last short batch kept, reshuffled each
    epoch)."""

    def __init__(self, key: str, data: Dataset, seed: int):
        self.key = key
        torch.manual_seed(seed)
        self.generator, self.discriminator = gan_reference.build(key, "cpu")
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.rng = torch.Generator().manual_seed(seed)
        self.images, self.labels = gan_reference.to_their_images(data.train_x), data.train_y
        self.order, self.position, self.seed = torch.randperm(len(self.images), generator=self.rng), 0, seed

    def step(self) -> None:
        if self.position >= len(self.images):
            self.order, self.position = torch.randperm(len(self.images), generator=self.rng), 0
        idx = self.order[self.position:self.position + gan_reference.BATCH]
        self.position += gan_reference.BATCH
        real, y = self.images[idx], self.labels[idx]
        z = torch.randn(len(idx), gan_reference.LATENT, generator=self.rng)
        fake_y = torch.randint(0, gan_reference.CLASSES, (len(idx),), generator=self.rng)
        self.generator.train()
        self.opt_g.zero_grad(set_to_none=True)
        fake = self.generator(z, fake_y)
        loss_g = gan_reference.adversarial_loss(self.key, self.discriminator(fake, fake_y), 1.0)
        loss_g.backward()
        self.opt_g.step()
        self.opt_d.zero_grad(set_to_none=True)
        loss_d = 0.5 * (gan_reference.adversarial_loss(self.key, self.discriminator(real, y), 1.0)
                        + gan_reference.adversarial_loss(self.key, self.discriminator(fake.detach(), fake_y), 0.0))
        loss_d.backward()
        self.opt_d.step()

    @torch.no_grad()
    def sample(self, n, y, generator):
        """n digits (n, 1, 28, 28) in [0, 1], the generator in training mode: the statistics of each batch of 64,
        as in the pictures their scripts save (and as `pytorch_gan_reference.sample(batch_stats=True)`)."""
        self.generator.train()
        labels = y if y is not None else torch.arange(n) % gan_reference.CLASSES
        out = []
        for first in range(0, n, gan_reference.BATCH):
            part = labels[first:first + gan_reference.BATCH]
            z = torch.randn(len(part), gan_reference.LATENT, generator=generator)
            out.append(gan_reference.to_our_images(self.generator(z, part)))
        return torch.cat(out)

    def side(self) -> PeerSide:
        return PeerSide("pytorch-gan", self.step, lambda: self, f"PyTorch-GAN {self.key}.py defaults (restated in "
                        "benchmarks/pytorch_gan_reference.py), samples with batch statistics, 32 -> 28 by the "
                        "least-squares inverse of the upsampling")


# ---------------------------------------------------------------------------- the diffusion row


class CourseUnet(nn.Module):
    """The Hugging Face diffusion course's `ClassConditionedUnet` (unit 2, 02_class_conditioned_diffusion_model_example
    in github.com/huggingface/diffusion-models-class): a label's learned 4-vector broadcast over the image as 4 more
    input channels of diffusers' UNet2DModel (28 x 28, 2 ResNet layers a block, widths 32, 64, 64, down blocks
    Down / AttnDown / AttnDown and the mirrored up blocks); returns the predicted noise."""

    def __init__(self, class_emb_size: int = 4):
        super().__init__()
        from diffusers import UNet2DModel

        self.class_emb = nn.Embedding(N_CLASSES, class_emb_size)
        self.model = UNet2DModel(sample_size=28, in_channels=1 + class_emb_size, out_channels=1, layers_per_block=2,
                                 block_out_channels=(32, 64, 64),
                                 down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
                                 up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"))

    def forward(self, x: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        cond = self.class_emb(class_labels)[:, :, None, None].expand(b, -1, h, w)  # (B, 4, H, W)
        return self.model(torch.cat([x, cond], 1), t).sample  # (B, 1, H, W)


class DiffusersCourseSide:
    """The course's training loop: batches of 128 (shuffled each epoch, the last short one kept), images mapped to
    [-1, 1], t drawn from randint(0, 999) as the course draws it, the noise added by DDPMScheduler (1000 steps,
    'squaredcos_cap_v2'), MSE against the noise, Adam 1e-3; no EMA, no clipping. Samples: DDIM with `steps` steps
    (eta 0) through diffusers' DDIMScheduler as `peers.diffusers_ddim` sets it (the timesteps spaced by linspace
    from 999, x_0 clipped to [-1, 1]), each image's own label, no guidance (the course's network has no null
    label). The course samples with the DDPM scheduler's 1,000 steps; DDIM-50 is what every side here uses."""

    BATCH, LR, TIMESTEPS = 128, 1e-3, 1000

    def __init__(self, data: Dataset, seed: int, steps: int = 50):
        peers.import_peer("diffusers")
        from diffusers import DDPMScheduler

        torch.manual_seed(seed)
        self.net = CourseUnet()
        self.scheduler = DDPMScheduler(num_train_timesteps=self.TIMESTEPS, beta_schedule="squaredcos_cap_v2")
        self.opt = torch.optim.Adam(self.net.parameters(), lr=self.LR)
        self.images, self.labels, self.sampler_steps = data.train_x, data.train_y, steps
        self.rng = torch.Generator().manual_seed(seed)
        self.order, self.position = torch.randperm(len(self.images), generator=self.rng), 0

    def step(self) -> float:
        if self.position >= len(self.images):
            self.order, self.position = torch.randperm(len(self.images), generator=self.rng), 0
        idx = self.order[self.position:self.position + self.BATCH]
        self.position += self.BATCH
        x, y = self.images[idx] * 2 - 1, self.labels[idx]  # (B, 1, 28, 28) in [-1, 1]
        noise = torch.randn(x.shape, generator=self.rng)
        t = torch.randint(0, self.TIMESTEPS - 1, (len(x),), generator=self.rng)  # the course's randint(0, 999)
        self.net.train()
        loss = F.mse_loss(self.net(self.scheduler.add_noise(x, noise, t), t, y), noise)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return float(loss.detach())

    @torch.no_grad()
    def sample(self, n, y, generator):
        self.net.eval()
        x = torch.randn((n, 1, 28, 28), generator=generator)
        x = peers.diffusers_ddim(lambda x, t, labels: self.net(x, t, labels), x, y, self.sampler_steps, 1.0,
                                 self.TIMESTEPS)
        return (x.clamp(-1, 1) + 1) / 2

    def side(self) -> PeerSide:
        return PeerSide("diffusers", self.step, lambda: self, "diffusers UNet2DModel + DDPMScheduler, class-"
                        "conditional as in the Hugging Face diffusion course, unit 2 (label embedding of 4 as input "
                        "channels, widths 32/64/64, Adam 1e-3, batch 128); samples by DDIMScheduler, "
                        f"{self.sampler_steps} steps, eta 0, no guidance")


# denoising-diffusion-pytorch's README: Unet(dim=64, dim_mults=(1, 2, 4, 8), flash_attn=True), GaussianDiffusion
# (image_size, timesteps=1000, its defaults otherwise: pred_v, sigmoid schedule), Trainer(train_batch_size=32,
# train_lr=8e-5, gradient_accumulate_every=2, ema_decay=0.995); the Trainer's defaults: Adam betas (0.9, 0.99),
# gradient norm clipped at 1, EMA updated every 10 steps.
LUCIDRAINS_README = {"unet": {"dim": 64, "dim_mults": (1, 2, 4, 8), "flash_attn": True}, "timesteps": 1000,
                     "batch_size": 32, "accumulate": 2, "lr": 8e-5, "betas": (0.9, 0.99), "max_grad_norm": 1.0,
                     "ema_decay": 0.995, "ema_update_every": 10}


class LucidrainsReadmeSide:
    """denoising-diffusion-pytorch's README recipe (`LUCIDRAINS_README`), the step of its Trainer: two batches of 32
    (shuffled each epoch), each loss halved and backpropagated, the gradient norm clipped at 1, Adam's step, the
    EMA's update. One channel; the digits resized to 32 x 32 (bilinear, as the Trainer's Resize would: its three
    down-samplings need a side divisible by 8) and their samples brought back to 28 x 28 by the least-squares inverse
    of that resizing (benchmarks/pytorch_gan_reference.py). Left out: the Trainer's random horizontal flips (its
    default, which would mirror digits) and its mixed precision (CUDA only). Samples from the EMA weights by its own
    DDIM (`sampling_timesteps` = `steps`, eta 0); unconditional (its Unet takes no label)."""

    def __init__(self, data: Dataset, seed: int, steps: int = 50):
        ddp = peers.import_peer("lucidrains")
        from ema_pytorch import EMA

        r = LUCIDRAINS_README
        torch.manual_seed(seed)
        self.unet = ddp.Unet(channels=1, **r["unet"])
        # GaussianDiffusion takes images in [0, 1] and rescales inside
        self.diffusion = ddp.GaussianDiffusion(self.unet, image_size=gan_reference.SIZE, timesteps=r["timesteps"])
        self.ema = EMA(self.diffusion, beta=r["ema_decay"], update_every=r["ema_update_every"])
        self.opt = torch.optim.Adam(self.diffusion.parameters(), lr=r["lr"], betas=r["betas"])
        self.images = (gan_reference.to_their_images(data.train_x) + 1) / 2  # (N, 1, 32, 32) in [0, 1]
        self.sampler_steps = steps
        self.rng = torch.Generator().manual_seed(seed)
        self.order, self.position = torch.randperm(len(self.images), generator=self.rng), 0

    def batch(self) -> torch.Tensor:
        if self.position >= len(self.images):
            self.order, self.position = torch.randperm(len(self.images), generator=self.rng), 0
        idx = self.order[self.position:self.position + LUCIDRAINS_README["batch_size"]]
        self.position += LUCIDRAINS_README["batch_size"]
        return self.images[idx]

    def step(self) -> float:
        r = LUCIDRAINS_README
        self.diffusion.train()
        total = 0.0
        for _ in range(r["accumulate"]):
            loss = self.diffusion(self.batch()) / r["accumulate"]
            total += float(loss.detach())
            loss.backward()
        torch.nn.utils.clip_grad_norm_(self.diffusion.parameters(), r["max_grad_norm"])
        self.opt.step()
        self.opt.zero_grad()
        self.ema.update()
        return total

    @torch.no_grad()
    def sample(self, n, y, generator):
        """n digits (n, 1, 28, 28) in [0, 1]. Their sampler draws its noise from torch's global generator: it is
        seeded from `generator` for each call."""
        model = self.ema.ema_model
        model.sampling_timesteps, model.is_ddim_sampling = self.sampler_steps, self.sampler_steps < model.num_timesteps
        torch.manual_seed(int(torch.randint(0, 2**62, (), generator=generator)))
        return gan_reference.to_our_images(model.sample(batch_size=n).clamp(0, 1) * 2 - 1)

    def side(self) -> PeerSide:
        return PeerSide("denoising-diffusion-pytorch", self.step, lambda: self, "denoising-diffusion-pytorch Unet "
                        "+ GaussianDiffusion with its README settings (dim 64, mults 1/2/4/8, 1000 steps, batch "
                        f"32 x 2, lr 8e-5, EMA 0.995), 32 x 32; samples by its DDIM, {self.sampler_steps} steps, "
                        "eta 0, unconditional")


# ---------------------------------------------------------------------------- the pixelcnn row: pytorch-generative


def pytorch_generative_side(key: str, data: Dataset, seed: int) -> PeerSide:
    """pytorch-generative's `reproduce()` of `key` ("pixelcnn" or "gated"), restated in
    benchmarks/pytorch_generative_reference.py, on the training digits binarized afresh each batch."""
    run = pixel_reference.Reproduce(key, data.train_x, seed)
    settings = pixel_reference.REPRODUCE[key]
    name = {"pixelcnn": "PixelCNN", "gated": "GatedPixelCNN"}[key]
    side = PeerSide("pytorch-generative", run.step, lambda: run,
                    f"pytorch-generative {name} reproduce() (restated in benchmarks/pytorch_generative_reference.py): "
                    f"{settings['network']}, batch {settings['batch_size']}, Adam {settings['lr']:g} decayed "
                    f"x{settings['lr_decay']} a step, dynamic binarization")
    side.run = run  # for the tests
    return side


class ExactNLL:
    """genzoo's autoregressive model behind the scorer's `log_prob(x, generator)`: exact, the generator unused."""

    def __init__(self, model):
        self.model = model

    def log_prob(self, x, generator):
        return self.model.log_prob(x)


# ---------------------------------------------------------------------------- the mixture row: scikit-learn


def mixture_row(data: Dataset, components: int, n_diag: int, n_full: int, threads: list[int], repeats: int,
                seed: int) -> list[dict]:
    """Whole `fit()` of each library's GaussianMixture with its defaults (but `components`), alternating."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture as SklearnGM
    from threadpoolctl import threadpool_limits

    makers = {"genzoo": lambda cov, **kw: GaussianMixture(components, covariance_type=cov, random_state=seed, **kw),
              "scikit-learn": lambda cov, **kw: SklearnGM(components, covariance_type=cov, random_state=seed, **kw)}
    rows = []
    for cov, n in (("diag", n_diag), ("full", n_full)):
        X = data.train_x[:n].reshape(n, -1).double().numpy()
        for t in threads:
            torch.set_num_threads(t)
            row = {"covariance_type": cov, "n": n, "dims": X.shape[1], "components": components, "threads": t,
                   "sides": {name: {"seconds": [], "one_iteration_seconds": []} for name in makers}}
            with threadpool_limits(t):
                for r in range(repeats):
                    names = list(makers) if r % 2 == 0 else list(makers)[::-1]
                    for name in names:
                        side = row["sides"][name]
                        start = time.perf_counter()
                        model = makers[name](cov).fit(X)
                        side["seconds"].append(time.perf_counter() - start)
                        side.update(n_iter=int(model.n_iter_), converged=bool(model.converged_),
                                    mean_log_likelihood=float(model.score(X)))
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore", ConvergenceWarning)
                            warnings.simplefilter("ignore", UserWarning)
                            start = time.perf_counter()
                            makers[name](cov, max_iter=1).fit(X)
                            side["one_iteration_seconds"].append(time.perf_counter() - start)
                        print(f"  {cov} n={n} threads={t} {name}: {side['seconds'][-1]:.2f} s, {side['n_iter']} "
                              f"iterations, max_iter=1 {side['one_iteration_seconds'][-1]:.2f} s (load "
                              f"{peers.load_average()})", file=sys.stderr, flush=True)
                row["same_start"] = same_start_fits(makers, cov, X, components, seed)
            ours, theirs = row["sides"]["genzoo"], row["sides"]["scikit-learn"]
            for side in (ours, theirs):
                side["median_seconds"] = float(np.median(side["seconds"]))
            row["speed_up"] = theirs["median_seconds"] / ours["median_seconds"]
            ll = (ours["mean_log_likelihood"], theirs["mean_log_likelihood"])
            row["log_likelihood_relative_difference"] = abs(ll[0] - ll[1]) / abs(ll[1])
            rows.append(row)
    return rows


START_REG = 1e-2  # added to the whole data's variance for the shared start (MNIST's border pixels never vary)


def same_start_fits(makers: dict, cov: str, X: np.ndarray, components: int, seed: int) -> dict:
    """Both libraries fitted from the same start, where they must reach the same optimum: equal weights, the
    means `components` training digits drawn with `seed`, every component's precision that of the whole data
    (its variance plus START_REG). Returns the seconds of each whole fit, its EM iterations and mean
    log-likelihood, and the two likelihoods' relative difference. The default fits above start from each
    library's own k-means, which may end in different optima."""
    start = {"weights_init": np.full(components, 1 / components),
             "means_init": X[np.random.default_rng(seed).choice(len(X), components, replace=False)]}
    if cov == "diag":
        start["precisions_init"] = np.tile(1 / (X.var(0) + START_REG), (components, 1))
    else:
        precision = np.linalg.inv(np.cov(X, rowvar=False) + START_REG * np.eye(X.shape[1]))
        start["precisions_init"] = np.tile(precision, (components, 1, 1))
    out = {}
    for name in makers:
        began = time.perf_counter()
        model = makers[name](cov, **start).fit(X)
        out[name] = {"seconds": time.perf_counter() - began, "n_iter": int(model.n_iter_),
                     "mean_log_likelihood": float(model.score(X))}
    ours, theirs = out["genzoo"], out["scikit-learn"]
    out["speed_up"] = theirs["seconds"] / ours["seconds"]
    out["log_likelihood_relative_difference"] = (abs(ours["mean_log_likelihood"] - theirs["mean_log_likelihood"])
                                                 / abs(theirs["mean_log_likelihood"]))
    print(f"  {cov} same start: genzoo {ours['seconds']:.2f} s ({ours['n_iter']} iterations), scikit-learn "
          f"{theirs['seconds']:.2f} s ({theirs['n_iter']}), log-likelihoods "
          f"{out['log_likelihood_relative_difference']:.1e} apart", file=sys.stderr, flush=True)
    return out


# ---------------------------------------------------------------------------- rows


@dataclass
class Comparison:
    """One curve pair of a row: genzoo's model against one peer side, scored by one scorer on `key`."""

    model: str
    peer: Callable[[Dataset, int, Path], PeerSide]
    wrap: Callable[[Any], Any]  # genzoo's loaded model -> what the scorer calls
    kind: str  # "likelihood" or "samples"
    conditional: bool = False
    notes: dict = field(default_factory=dict)  # how each side is sampled or scored, for the JSON
    measure: str = ""  # the likelihood's name in the JSON and the plot (the samples' is FID-style)
    package: str | None = None  # the peer's package in benchmarks/peers.py (None: restated here)


def vae_wrap(k: int):
    class IWAE:
        def __init__(self, model):
            self.model = model

        def log_prob(self, x, generator):
            return self.model.log_prob(x, k=k, generator=generator)
    return IWAE


def comparisons(row: str, k: int, sampler_steps: int = 50) -> dict[str, Comparison]:
    if row == "vae":
        iwae = vae_wrap(k)

        def pythae_side(data, seed, work):
            side = pythae_reproducibility_side(data, seed, work)
            scorable = side.scorable
            side.scorable = lambda: iwae(scorable())
            return side
        return {"vae-pythae": Comparison("vae", pythae_side, iwae, "likelihood", measure=f"IWAE NLL, nats, K = {k}",
                                         package="vae")}
    if row == "gan":
        return {key: Comparison(key, lambda data, seed, work, key=key: ReferenceGANSide(key, data, seed).side(),
                                GenzooSampler, "samples", conditional=key == "cgan")
                for key in ("dcgan", "cgan")}
    if row == "diffusion":
        ddim = {"sampler": "ddim", "steps": sampler_steps}
        ours = f"genzoo's DDIM, {sampler_steps} steps, eta 0 (its own sampler)"
        return {
            "diffusers": Comparison(
                "ddpm", lambda data, seed, work: DiffusersCourseSide(data, seed, sampler_steps).side(),
                functools.partial(GenzooSampler, **ddim), "samples", conditional=True, package="diffusers",
                notes={"genzoo_sampler": ours + ", classifier-free guidance at the recipe's default",
                       "peer_sampler": f"diffusers DDIMScheduler, {sampler_steps} steps, eta 0, timesteps by "
                                       "linspace, x_0 clipped (benchmarks/peers.py diffusers_ddim), no guidance",
                       "labels": "digits 0..9 in turn, both sides"}),
            "lucidrains": Comparison(
                "ddpm", lambda data, seed, work: LucidrainsReadmeSide(data, seed, sampler_steps).side(),
                functools.partial(GenzooSampler, guidance=0.0, **ddim), "samples", package="lucidrains",
                notes={"genzoo_sampler": ours + ", unconditional (guidance 0: the null label)",
                       "peer_sampler": f"denoising-diffusion-pytorch's DDIM, {sampler_steps} steps, eta 0, EMA "
                                       "weights, 32 x 32 brought to 28 x 28 by the least-squares inverse of the "
                                       "resizing",
                       "labels": "none: both sides unconditional"}),
        }
    if row == "pixelcnn":
        return {key: Comparison("pixelcnn", lambda data, seed, work, key=key: pytorch_generative_side(key, data, seed),
                                ExactNLL, "likelihood", measure="exact NLL, nats")
                for key in ("pixelcnn", "gated")}
    raise ValueError(f"row {row!r}: the learned-model rows built are {', '.join(LEARNED_ROWS)}")


LEARNED_ROWS = ("vae", "gan", "diffusion", "pixelcnn")


MEASURED_BY = ("command", "date", "load_before", "budgets_minutes", "order")  # a comparison's `measured`: its run


def run_row(row: str, data: Dataset, data_spec: str, budgets_min: list[float], args, out_json: Path,
            work: Path) -> dict:
    result: dict[str, Any] = {"row": row, "budgets_minutes": budgets_min, "order": args.order, "comparisons": {}}
    stamp(result, args)
    this_run = {key: result[key] for key in MEASURED_BY}
    kept = earlier_comparisons(out_json, row, args.only)
    for name, comparison in comparisons(row, args.k, args.sampler_steps).items():
        if args.only and name not in args.only:
            if name in kept:
                result["comparisons"][name] = kept[name]
            continue
        print(f"{name}: genzoo {comparison.model} --recipe cpu against its peer, budgets {budgets_min} min",
              file=sys.stderr, flush=True)
        peer = comparison.peer(data, args.seed, work / name)
        ours = GenzooSide(comparison.model, data_spec, work / name / "genzoo", args.seed, comparison.wrap)
        if comparison.kind == "likelihood":
            test = fixed_binarization(spread(data.test_x, args.test_images))
            score, key = likelihood_scorer(test, args.seed), "nll"
            quality = {"measure": comparison.measure, "test_images": len(test),
                       "binarization": "genzoo.data.fixed_binarization(seed=0)"}
        else:
            real = data.test_x[:args.real]
            score, key = sample_scorer(real, args.samples, comparison.conditional, args.seed), "fid"
            quality = {"measure": "FID-style (genzoo's evaluator)", "samples": args.samples, "real": len(real)}
        entry = {"genzoo": ours.about, "peer": peer.about, "peer_name": peer.name, "quality": quality, "key": key,
                 "peer_version": (peers.peer_version(comparison.package) if comparison.package else
                                  "restated here (no package)"), "measured": this_run, **comparison.notes}
        result["comparisons"][name] = entry

        def save(checkpoints, entry=entry):
            entry["checkpoints"] = checkpoints
            write_json(out_json, result)

        entry["checkpoints"] = run_comparison({"genzoo": ours, peer.name: peer}, [b * 60 for b in budgets_min],
                                              score, args.order, save)
        entry["summary"] = summarise(entry["checkpoints"], key, peer.name)
        write_json(out_json, result)
    return result


def earlier_comparisons(out_json: Path, row: str, only: list[str] | None) -> dict:
    """The comparisons of `row` already in `out_json` that this run (`--only`) does not measure again, each with the
    command, date and load of the run that measured it (`measured`), so that a row can be measured one comparison at
    a time. Without `--only` the row is measured whole and nothing is kept."""
    if not only or not out_json.exists():
        return {}
    try:
        earlier = json.loads(out_json.read_text())
    except json.JSONDecodeError as e:
        raise SystemExit(f"{out_json}: not readable JSON ({e}); move it aside to measure the row afresh") from None
    if earlier.get("row") != row:
        raise SystemExit(f"{out_json}: holds the {earlier.get('row')!r} row, not {row!r}; give another --out-dir")
    run_stamp = {key: earlier.get(key) for key in MEASURED_BY}
    return {name: {"measured": run_stamp, **entry} for name, entry in earlier.get("comparisons", {}).items()
            if name not in only}


def stamp(result: dict, args) -> None:
    result.update(command="python benchmarks/time_to_quality.py " + " ".join(args.argv), threads=args.threads_list,
                  seed=args.seed, date=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                  load_before=peers.load_average(),
                  hardware=f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
                  torch=torch.__version__)


def write_json(path: Path, result: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, path)


# ---------------------------------------------------------------------------- plots


def plot_row(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if result["row"] == "mixture":
        rows = result["fits"]
        fig, ax = plt.subplots(figsize=(7, 3.5))
        labels = [f"{r['covariance_type']}, n={r['n']:,}\n{r['threads']} thread(s)" for r in rows]
        x = np.arange(len(rows))
        for offset, name in ((-0.2, "genzoo"), (0.2, "scikit-learn")):
            ax.bar(x + offset, [r["sides"][name]["median_seconds"] for r in rows], 0.4, label=name)
        ax.set_xticks(x, labels)
        ax.set_ylabel("whole fit(), seconds (median)")
    else:
        entries = result["comparisons"]
        fig, axes = plt.subplots(1, len(entries), figsize=(5 * len(entries), 3.8), squeeze=False)
        for ax, (name, entry) in zip(axes[0], entries.items()):
            for side, points in entry.get("checkpoints", {}).items():
                label = "genzoo (cpu recipe)" if side == "genzoo" else entry["peer_name"]
                line, = ax.plot([p["train_seconds"] / 60 for p in points], [p[entry["key"]] for p in points],
                                "o-", label=label)
                if points and points[-1].get("recipe_finished"):  # its later points score the finished weights
                    ax.plot([points[-1]["train_seconds"] / 60, points[-1]["budget_minutes"]],
                            [points[-1][entry["key"]]] * 2, "--", color=line.get_color(),
                            label=f"{label}: recipe finished")
            ax.set_title(name)
            ax.set_xlabel(f"training minutes ({result['threads'][0]} thread(s))")
            ax.set_ylabel(entry["quality"]["measure"] + " (lower is better)")
    ax.legend()
    fig.suptitle(f"{result['row']}: {result['date']}, {result['hardware']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------------------- the command


def numbers(text: str, kind=float) -> list:
    try:
        return [kind(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give numbers separated by commas, e.g. 5,15,30,60") from None


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("row", choices=[*LEARNED_ROWS, "mixture"])
    p.add_argument("--data", default="mnist", help="full MNIST: a folder of IDX files, or mnist")
    p.add_argument("--budgets", type=numbers, default=[5.0, 15.0, 30.0, 60.0],
                   help="training minutes at which both sides are stopped and scored, ascending (default 5,15,30,60)")
    p.add_argument("--threads", type=lambda s: numbers(s, int), default=[1],
                   help="torch threads of both sides (the learned rows take one count; mixture: a list, e.g. 1,2)")
    p.add_argument("--order", choices=["interleaved", "sequential", "parallel"], default="interleaved",
                   help="interleaved: the sides take turns to each point; sequential: one side after the other; "
                        "parallel: both at once, each on a core of its own (a 2-core machine to themselves)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", nargs="*", default=None,
                   help="the comparisons of the row to run (gan: dcgan cgan; diffusion: diffusers lucidrains; "
                        "pixelcnn: pixelcnn gated); the row's others already in its JSON are kept")
    p.add_argument("--k", type=int, default=1000, help="vae: importance samples of the IWAE NLL (both sides)")
    p.add_argument("--test-images", type=int, default=10_000,
                   help="vae, pixelcnn: test digits scored (spread over the set)")
    p.add_argument("--samples", type=int, default=10_000,
                   help="gan, diffusion: samples scored at each checkpoint, each side")
    p.add_argument("--real", type=int, default=10_000,
                   help="gan, diffusion: test digits the samples are compared with")
    p.add_argument("--sampler-steps", type=int, default=50, help="diffusion: DDIM steps of every side's sampler")
    p.add_argument("--components", type=int, default=10, help="mixture: Gaussians (the one non-default setting)")
    p.add_argument("--n-diag", type=int, default=20_000, help="mixture: training digits of the diag fits")
    p.add_argument("--n-full", type=int, default=5_000, help="mixture: training digits of the full fits")
    p.add_argument("--repeats", type=int, default=3, help="mixture: fits of each library per setting")
    p.add_argument("--out-dir", type=Path, default=RESULTS, help="where time-to-quality-ROW.json and .png go")
    p.add_argument("--work", type=Path, default=None,
                   help="folder for the training runs (default: a temporary folder, deleted at the end)")
    args = p.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv
    args.threads_list = args.threads
    if args.row != "mixture" and len(args.threads) != 1:
        p.error(f"--threads {args.threads}: the {args.row} row trains at one thread count; run it once per count")
    if any(b <= 0 for b in args.budgets) or args.budgets != sorted(args.budgets):
        p.error(f"--budgets {args.budgets}: give positive minutes in ascending order")
    if args.only is not None and args.row != "mixture":
        known = list(comparisons(args.row, args.k, args.sampler_steps))
        if not args.only or set(args.only) - set(known):
            p.error(f"--only {' '.join(args.only)}: the {args.row} row's comparisons are {', '.join(known)}")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.row == "mixture" or args.threads == [1] else f"-{args.threads[0]}t"
    out_json = args.out_dir / f"time-to-quality-{args.row}{suffix}.json"
    data = load_data(args.data)
    if args.row == "mixture":
        result: dict[str, Any] = {"row": "mixture"}
        stamp(result, args)
        result["fits"] = mixture_row(data, args.components, args.n_diag, args.n_full, args.threads, args.repeats,
                                     args.seed)
        write_json(out_json, result)
    else:
        torch.set_num_threads(args.threads[0])
        with tempfile.TemporaryDirectory() as tmp:
            work = args.work or Path(tmp)
            result = run_row(args.row, data, args.data, args.budgets, args, out_json, work)
    result["load_after"] = peers.load_average()
    write_json(out_json, result)
    plot_row(result, out_json.with_suffix(".png"))
    print(f"wrote {out_json} and {out_json.with_suffix('.png')}")
    return result


if __name__ == "__main__":
    main()
