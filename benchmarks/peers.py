"""genzoo against the libraries a user would pick instead: the same network, data and CPU, one process.

Issue 22. Each comparison builds the two sides from the same architecture, trains them on the same
MNIST digits on the same CPU, interleaving the two (A B A B ...: one repeat of each in turn, so
that what the machine does meanwhile falls on both), and reports the median and the spread
(min-max) of the seconds per epoch or per step, their ratio (peer / genzoo: > 1 means genzoo is
faster) by the wall clock and by this process's CPU time (at one thread on a shared machine the
steadier of the two: another job's turn on the core is not counted), the FLOPs per training
image (counted by torch.utils.flop_counter over one training step, forward and backward; the
optimizer's element-wise work is not counted) and the GFLOP/s that each side achieves, against
the CPU's float32 peak measured in the same process by a large matrix product (`--peak-size`).

    vae    genzoo's `vae` (`--arch mlp`: the 784-400-20 MLP; `--arch conv`: the default conv
           networks) against pythae's VAE (or IWAE, `--peer iwae`), built from the very same
           encoder and decoder modules and trained by pythae's own trainer (`BaseTrainer.train_step`,
           one epoch over its DataLoader). Ours: the trainer's step (`Loop.train_step`) over an epoch
           of the trainer's batches; against the IWAE, ours trains the same K-sample bound
           (`--set train_k=K`, K = `--iwae-k`). After the repeats (one epoch each per repeat) both are scored
           by genzoo's own code: `VAE.log_prob`, the IWAE estimate with the same K and the same
           random draws, on the same fixed binarization of the test digits.
    ddpm   genzoo's pixel-space `ddpm` (its defaults) against denoising-diffusion-pytorch's `Unet` +
           `GaussianDiffusion` (`--peer lucidrains`) or diffusers' `UNet2DModel` + `DDPMScheduler`
           (`--peer diffusers`, the loop of diffusers' train_unconditional example, with labels
           through `num_class_embeds` as ours), each at the base width whose parameter count is the
           nearest to ours; the same batch size, Adam, gradient clipping and EMA of the weights on both
           sides. Seconds per training step.

The rows of `gmm` (scikit-learn, benchmarks/mixture_vs_sklearn.py) and of `dcgan`/`cgan`
(PyTorch-GAN restated in benchmarks/pytorch_gan_reference.py) have their own scripts.

    python benchmarks/peers.py vae --arch mlp --data ../shared/data/mnist --repeats 3 --out peers-vae-mlp.json
    python benchmarks/peers.py vae --arch conv --epoch-images 1280 --repeats 3 --out peers-vae-conv.json
    python benchmarks/peers.py ddpm --peer lucidrains --steps 3 --repeats 3 --out peers-ddpm-lucidrains.json

The peers are an optional extra (see docs/results/peers.md for why torchvision is removed):

    python -m venv --system-site-packages /path/to/venv
    /path/to/venv/bin/pip install -c benchmarks/peers-constraints.txt -e ".[peers]"
    /path/to/venv/bin/pip uninstall -y torchvision

Prints a Markdown row and writes the figures as JSON, with the load average beside each.
"""

from __future__ import annotations

import argparse
import copy
import importlib
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
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import genzoo  # noqa: E402
from genzoo.config import build  # noqa: E402
from genzoo.constants import N_CLASSES  # noqa: E402
from genzoo.data import Dataset, fixed_binarization, load_data, spread  # noqa: E402
from genzoo.train_config import TrainConfig  # noqa: E402
from genzoo.training.devices import Distributed  # noqa: E402
from genzoo.training.loop import Loop  # noqa: E402

CPU = torch.device("cpu")
PEER_PACKAGES = {"pythae": "pythae", "lucidrains": "denoising_diffusion_pytorch", "diffusers": "diffusers"}


# ---------------------------------------------------------------------------- the peers


def import_without_torchvision(package: str):
    """Import `package` (denoising-diffusion-pytorch) where torchvision cannot be imported.

    PyPI's torchvision wheels are CUDA builds: their compiled operators link libtorch_cuda, which the
    CPU build of torch lacks, and `import torchvision` then fails (`operator torchvision::nms does not
    exist`). denoising-diffusion-pytorch imports `torchvision.transforms` and `torchvision.utils` at
    the top of its module but uses them only in its image-folder Dataset and its Trainer's sample
    grids, neither of which is used here. While `package` is imported, a module stands in for torchvision
    whose every use raises; it is removed afterwards (diffusers, imported later, must see no torchvision).
    """
    try:
        importlib.import_module("torchvision")
        return importlib.import_module(package)
    except (ImportError, RuntimeError):
        pass

    class Missing(types.ModuleType):
        def __getattr__(self, name):
            raise RuntimeError(f"torchvision.{self.__name__}.{name}: torchvision is not importable beside the "
                               "CPU build of torch here (see benchmarks/peers.py)")

    stand_in = types.ModuleType("torchvision")
    stand_in.transforms, stand_in.utils = Missing("transforms"), Missing("utils")
    sys.modules["torchvision"] = stand_in
    try:
        return importlib.import_module(package)
    finally:
        del sys.modules["torchvision"]


def peer_missing(peer: str) -> str | None:
    """None when `peer` imports here, else why not (for a test's skip reason)."""
    try:
        import_peer(peer)
    except ImportError as error:
        return f"{peer} ({PEER_PACKAGES[peer]}) is not importable: {error}"
    return None


def import_peer(peer: str):
    if peer == "lucidrains":
        return import_without_torchvision(PEER_PACKAGES[peer])
    return importlib.import_module(PEER_PACKAGES[peer])


# ---------------------------------------------------------------------------- measuring


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def peak_gflops(size: int = 2048, repeats: int = 5) -> float:
    """The CPU's float32 matrix-product rate: the best of `repeats` products of two size x size matrices."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # first-call costs
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def counted_flops(step: Callable[[], object]) -> int:
    """FLOPs of one call of `step` (forward and backward; matrix products and convolutions)."""
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def profile(run: Callable[[], None], top: int = 8) -> dict:
    """Where one call of `run` spends its time: torch.profiler's operators by self CPU time (their share of
    the wall time), and the wall time left outside any operator (Python, data handling, the framework)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    start = time.perf_counter()
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    wall = time.perf_counter() - start
    ops = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    in_ops = sum(e.self_cpu_time_total for e in ops) / 1e6
    return {"wall_s": wall, "outside_operators": max(0.0, 1 - in_ops / wall),
            "top": [{"op": e.key, "share": e.self_cpu_time_total / 1e6 / wall, "calls": e.count} for e in ops[:top]]}


def summary(seconds: list[float]) -> dict:
    return {"median": statistics.median(seconds), "min": min(seconds), "max": max(seconds), "all": seconds}


def interleave(sides: dict[str, Callable[[int], None]], repeats: int,
               cpu: dict[str, list[float]] | None = None) -> dict[str, list[float]]:
    """Seconds of each side's `run(repeat)`, the sides taken in turn (A B A B ...), `repeats` times each.

    Returns the wall-clock seconds; `cpu`, when given, receives this process's CPU seconds of each call. At one
    thread on a shared machine the CPU seconds are the steadier measure: another job's turn on the core is not
    counted (on an idle machine the two agree)."""
    times: dict[str, list[float]] = {name: [] for name in sides}
    for repeat in range(repeats):
        for name, run in sides.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            run(repeat)
            times[name].append(time.perf_counter() - start)
            if cpu is not None:
                cpu.setdefault(name, []).append(time.process_time() - start_cpu)
            used = f", {cpu[name][-1]:.2f} s of CPU" if cpu is not None else ""
            print(f"  repeat {repeat + 1}/{repeats}: {name} {times[name][-1]:.2f} s{used} (load {load_average()})",
                  file=sys.stderr, flush=True)
    return times


def our_loop(model, dataset: Dataset, batch_size: int, lr: float, run_dir: Path, seed: int = 0, **train) -> Loop:
    """genzoo's trainer for `model` (its batches and their binarization seeded by `seed`): no test pass, grids or
    pictures (the speed of training itself)."""
    cfg = build(TrainConfig, {"batch_size": batch_size, "lr": lr, "epochs": 1000, "sample_every": 0,
                              "test_every": 0, **train}, owner="trainer")
    return Loop(model, cfg, dataset, run_dir, CPU, seed, Distributed(CPU), show_progress=False)


def our_steps(loop: Loop, n: int) -> None:
    out = {}
    for _ in range(n):
        out = loop.train_step(*loop.batches.at(loop.step))
        loop.step += 1
    float(out["loss"])


def subset(data: Dataset, n: int) -> Dataset:
    """The first n training images (all when n is 0 or more than there are)."""
    n = n or len(data.train_x)
    return Dataset(data.name, data.source, data.train_x[:n], data.train_y[:n], data.test_x, data.test_y)


def side_figures(times: list[float], images: int, flops_per_image: float, peak: float,
                 cpu: list[float] | None = None) -> dict:
    s = summary(times)
    gflops = flops_per_image * images / s["median"] / 1e9
    out = {"seconds": s, "images": images, "images_per_s": images / s["median"], "flops_per_image": flops_per_image,
           "gflops_per_s": gflops, "share_of_peak": gflops / peak}
    if cpu:
        out["cpu_seconds"] = summary(cpu)
    return out


# ---------------------------------------------------------------------------- vae against pythae


def pythae_modules(vae):
    """pythae's encoder and decoder around the very modules of genzoo's `vae` (shared, not copied): what
    pythae trains is then scored by genzoo's `VAE.log_prob` with no conversion."""
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder

    class Encoder(BaseEncoder):
        def __init__(self, net: nn.Module):
            super().__init__()
            self.net = net

        def forward(self, x):
            mu, logvar = self.net(x).chunk(2, dim=-1)  # (B, D) each, as genzoo's VAE.encode splits them
            return ModelOutput(embedding=mu, log_covariance=logvar)

    class Decoder(BaseDecoder):
        def __init__(self, net: nn.Module):
            super().__init__()
            self.net = net

        def forward(self, z):
            # pythae's "bce" loss takes probabilities; genzoo's decoder gives logits
            return ModelOutput(reconstruction=torch.sigmoid(self.net(z)))  # (B, 1, 28, 28)

    return Encoder(vae.encoder), Decoder(vae.decoder)


def vae_overrides(arch: str) -> dict:
    # the MLP: PyTorch's MNIST VAE example sizes (784-400-20); conv: genzoo's defaults
    return {"arch": "mlp", "hidden": 400, "latent_dim": 20} if arch == "mlp" else {"arch": "conv"}


def pythae_vae(vae, peer: str, iwae_k: int):
    """pythae's VAE (or IWAE with `iwae_k` samples) around genzoo's `vae` networks, Bernoulli pixels."""
    from pythae.models import IWAE, VAE, IWAEConfig, VAEConfig

    encoder, decoder = pythae_modules(vae)
    common = {"input_dim": (1, 28, 28), "latent_dim": vae.config.latent_dim, "reconstruction_loss": "bce"}
    if peer == "iwae":
        return IWAE(IWAEConfig(**common, number_samples=iwae_k), encoder=encoder, decoder=decoder)
    return VAE(VAEConfig(**common), encoder=encoder, decoder=decoder)


def pythae_trainer(model, train_x: torch.Tensor, batch_size: int, lr: float, out_dir: Path, seed: int):
    """pythae's own trainer, set up as its TrainingPipeline does (seed, Adam, output folder), minus its logging."""
    from pythae.data.datasets import BaseDataset
    from pythae.trainers import BaseTrainer, BaseTrainerConfig

    config = BaseTrainerConfig(output_dir=str(out_dir), num_epochs=1000, learning_rate=lr,
                               per_device_train_batch_size=batch_size, per_device_eval_batch_size=batch_size,
                               train_dataloader_num_workers=0, no_cuda=True, seed=seed)
    trainer = BaseTrainer(model, BaseDataset(train_x, torch.zeros(len(train_x))), training_config=config)
    trainer.prepare_training()
    return trainer


def compare_vae(data: Dataset, arch: str, peer: str, epoch_images: int, repeats: int, batch_size: int, lr: float,
                test_images: int, k: int, iwae_k: int, peak: float, profile_steps: int = 0, seed: int = 0) -> dict:
    """One epoch of `epoch_images` digits per repeat for each side, in turn; then the IWAE NLL of both."""
    import_peer("pythae")
    train = subset(data, epoch_images)
    torch.manual_seed(seed)
    # against pythae's IWAE, ours trains the same K-sample bound (`train_k`)
    ours = genzoo.create("vae", **vae_overrides(arch), **({"train_k": iwae_k} if peer == "iwae" else {}))
    torch.manual_seed(seed)
    theirs_vae = genzoo.create("vae", **vae_overrides(arch))  # the networks pythae trains, scored as ours
    theirs = pythae_vae(theirs_vae, peer, iwae_k)
    # pythae reads one fixed array: one seeded binarization of the training digits (ours draws a new one per batch)
    train_binary = fixed_binarization(train.train_x, seed=seed + 1)
    with tempfile.TemporaryDirectory() as tmp:
        loop = our_loop(ours, train, batch_size, lr, Path(tmp) / "genzoo", seed)
        trainer = pythae_trainer(theirs, train_binary, batch_size, lr, Path(tmp) / "pythae", seed)
        x = train_binary[:batch_size]
        flops_ours = counted_flops(lambda: our_steps(loop, 1)) / batch_size
        flops_theirs = counted_flops(lambda: trainer._optimizers_step(
            trainer.model({"data": x}, epoch=0, dataset_size=len(train_binary), uses_ddp=False))) / batch_size
        # one step each was taken by the counting: the weights of both moved once before the timed epochs
        cpu: dict[str, list[float]] = {}
        times = interleave({"genzoo": lambda r: our_steps(loop, loop.batches.per_epoch),
                            "pythae": lambda r: trainer.train_step(r + 1)}, repeats, cpu)
        profiles = {}
        if profile_steps:
            def their_batches(n: int) -> None:  # the body of pythae's train_step, its DataLoader included
                for i, inputs in enumerate(trainer.train_loader):
                    if i == n:
                        break
                    trainer._optimizers_step(trainer.model(trainer._set_inputs_to_device(inputs), epoch=1,
                                                           dataset_size=len(train_binary), uses_ddp=False))

            profiles = {"genzoo": profile(lambda: our_steps(loop, profile_steps)),
                        "pythae": profile(lambda: their_batches(profile_steps))}
    test = fixed_binarization(spread(data.test_x, test_images))
    nll = {}
    for name, model in (("genzoo", ours), ("pythae", theirs_vae)):
        model.eval()
        generator = torch.Generator().manual_seed(seed)  # the same draws for both
        nll[name] = -float(torch.cat([model.log_prob(part, k=k, generator=generator)
                                      for part in test.split(100)]).mean())
    images_ours, images_theirs = loop.batches.per_epoch * loop.batches.size, len(train_binary)
    name = f"pythae {peer.upper()}" + (f" (K={iwae_k})" if peer == "iwae" else "")
    return {"comparison": f"vae-{arch}" + (f", both trained on the IWAE bound, K={iwae_k}" if peer == "iwae" else ""),
            "peer": name,
            "parameters": {"genzoo": ours.n_parameters(), "peer": theirs_vae.n_parameters()},
            "epoch_images": len(train_binary), "epochs": repeats, "steps_before_timing": 1,  # the FLOP count's step
            "genzoo": {**side_figures(times["genzoo"], images_ours, flops_ours, peak, cpu["genzoo"]),
                       "test_nll": nll["genzoo"]},
            "peer_side": {**side_figures(times["pythae"], images_theirs, flops_theirs, peak, cpu["pythae"]),
                          "test_nll": nll["pythae"]},
            "nll": {"test_images": len(test), "k": k, "binarization": "genzoo.data.fixed_binarization(seed=0)"},
            "profiles": profiles}


# ---------------------------------------------------------------------------- ddpm against diffusion libraries


def lucidrains_unet(width: int):
    ddp = import_peer("lucidrains")
    # three levels at 28 -> 14 -> 7 as ours; attention: theirs by default (linear, full at the innermost)
    return ddp.Unet(dim=width, dim_mults=(1, 2, 2), channels=1, flash_attn=False)


def diffusers_unet(width: int, res_blocks: int):
    from diffusers import UNet2DModel

    return UNet2DModel(sample_size=28, in_channels=1, out_channels=1, block_out_channels=(width, 2 * width, 2 * width),
                       layers_per_block=res_blocks, norm_num_groups=8, num_class_embeds=11,
                       down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"))


def diffusers_ddim(eps: Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor], x: torch.Tensor,
                   y: torch.Tensor | None, steps: int, guidance: float, timesteps: int) -> torch.Tensor:
    """x_T -> x_0 by diffusers' DDIMScheduler (eta 0) on the cosine schedule, set as genzoo's sampler is set: the
    timesteps spaced by linspace from T - 1 to 0, x_0 clipped to [-1, 1] and eps re-derived from the clipped x_0,
    alpha_bar = 1 after the last step; guidance as ours, eps(null) + w (eps(y) - eps(null)). `eps(x, t, labels)`
    is the network. (Its step goes from t to t - T // steps, where ours goes to the next timestep of the list:
    the same steps when `steps` is T.)"""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler(num_train_timesteps=timesteps, beta_schedule="squaredcos_cap_v2",
                              timestep_spacing="linspace", clip_sample=True, set_alpha_to_one=True)
    scheduler.set_timesteps(steps)
    null = torch.full_like(y, N_CLASSES) if y is not None else None
    for t in scheduler.timesteps:
        if y is None or guidance == 1:
            out = eps(x, t, y)
        elif guidance == 0:
            out = eps(x, t, null)
        else:
            cond, uncond = eps(torch.cat([x, x]), t, torch.cat([y, null])).chunk(2)
            out = uncond + guidance * (cond - uncond)
        x = scheduler.step(out, t, x, eta=0.0, use_clipped_model_output=True).prev_sample
    return x


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def nearest_width(build_net: Callable[[int], nn.Module], target: int, widths: range) -> int:
    """The base width whose network's parameter count is the nearest to `target`."""
    return min(widths, key=lambda w: abs(count(build_net(w)) - target))


class PeerDiffusion:
    """A peer's training step for epsilon prediction on a cosine schedule, beside genzoo's: Adam, gradient
    clipping and an EMA of the weights as ours; batches cut from the same in-memory tensor as ours."""

    def __init__(self, peer: str, target_parameters: int, res_blocks: int, lr: float, grad_clip: float,
                 widths: range = range(8, 129, 8), p_uncond: float = 0.1):
        self.peer, self.p_uncond = peer, p_uncond
        if peer == "lucidrains":
            ddp = import_peer("lucidrains")
            from ema_pytorch import EMA

            self.width = nearest_width(lucidrains_unet, target_parameters, widths)
            self.unet = lucidrains_unet(self.width)
            # their GaussianDiffusion takes images in [0, 1] and rescales inside, as ours
            self.net = ddp.GaussianDiffusion(self.unet, image_size=28, timesteps=1000, objective="pred_noise",
                                             beta_schedule="cosine")
            self.ema = EMA(self.net, beta=0.999, update_every=10)  # their Trainer's EMA (every 10 steps)
        else:
            import_peer("diffusers")
            from diffusers import DDPMScheduler
            from diffusers.training_utils import EMAModel

            self.width = nearest_width(lambda w: diffusers_unet(w, res_blocks), target_parameters, widths)
            self.unet = self.net = diffusers_unet(self.width, res_blocks)
            self.scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
            self.ema = EMAModel(self.unet.parameters(), decay=0.999)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=lr)
        self.grad_clip = grad_clip

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.peer == "lucidrains":
            return self.net(x)  # unconditional: their Unet takes no label
        x0 = x * 2 - 1  # (B, 1, 28, 28) in [-1, 1]
        noise = torch.randn_like(x0)
        t = torch.randint(0, self.scheduler.config.num_train_timesteps, (len(x0),))
        # the label dropped to the null class as ours does (p_uncond), which classifier-free guidance needs
        y = torch.where(torch.rand(len(y)) < self.p_uncond, N_CLASSES, y)
        pred = self.unet(self.scheduler.add_noise(x0, noise, t), t, class_labels=y).sample
        return F.mse_loss(pred, noise)

    def set_lr(self, lr: float) -> None:
        for group in self.opt.param_groups:
            group["lr"] = lr

    @torch.no_grad()
    def sample(self, n: int, y: torch.Tensor | None, generator: torch.Generator, steps: int,
               guidance: float) -> torch.Tensor:
        """n images (n, 1, 28, 28) in [0, 1] from the EMA weights by the library's own DDIM sampler (eta 0).
        denoising-diffusion-pytorch's draws its noise from torch's global generator (seed it before)."""
        if self.peer == "lucidrains":
            model = self.ema.ema_model
            model.sampling_timesteps, model.is_ddim_sampling = steps, steps < model.num_timesteps
            return model.sample(batch_size=n).clamp(0, 1)
        unet = copy.deepcopy(self.unet).eval()
        self.ema.copy_to(unet.parameters())
        x = torch.randn((n, 1, 28, 28), generator=generator)  # x_T drawn as genzoo's sampler draws it
        x = diffusers_ddim(lambda x, t, labels: unet(x, t, class_labels=labels).sample, x, y, steps, guidance,
                           self.scheduler.config.num_train_timesteps)
        return (x.clamp(-1, 1) + 1) / 2

    def step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.grad_clip)
        self.opt.step()
        if self.peer == "lucidrains":
            self.ema.update()
        else:
            self.ema.step(self.unet.parameters())
        return loss.detach()


def compare_ddpm(data: Dataset, peer: str, steps: int, repeats: int, batch_size: int, peak: float,
                 overrides: dict | None = None, widths: range = range(8, 129, 8), profile_steps: int = 0,
                 seed: int = 0) -> dict:
    """`steps` training steps per repeat for each side, in turn."""
    torch.manual_seed(seed)
    ours = genzoo.create("ddpm", **(overrides or {}))
    defaults = ours.train_defaults
    theirs = PeerDiffusion(peer, count(ours.unet), ours.config.res_blocks, defaults["lr"], defaults["grad_clip"],
                           widths)
    generator = torch.Generator().manual_seed(seed)
    with tempfile.TemporaryDirectory() as tmp:
        loop = our_loop(ours, data, batch_size, defaults["lr"], Path(tmp),
                        warmup_steps=defaults["warmup_steps"], grad_clip=defaults["grad_clip"])

        def their_steps(n: int) -> None:
            loss = torch.zeros(())
            for _ in range(n):
                index = torch.randint(0, len(data.train_x), (batch_size,), generator=generator)
                loss = theirs.step(data.train_x[index], data.train_y[index])
            float(loss)

        flops_ours = counted_flops(lambda: our_steps(loop, 1)) / batch_size
        flops_theirs = counted_flops(lambda: their_steps(1)) / batch_size
        cpu: dict[str, list[float]] = {}
        times = interleave({"genzoo": lambda r: our_steps(loop, steps), peer: lambda r: their_steps(steps)}, repeats,
                           cpu)
        profiles = ({"genzoo": profile(lambda: our_steps(loop, profile_steps)),
                     peer: profile(lambda: their_steps(profile_steps))} if profile_steps else {})
    images = steps * batch_size
    names = {"lucidrains": "denoising-diffusion-pytorch Unet + GaussianDiffusion",
             "diffusers": "diffusers UNet2DModel + DDPMScheduler"}
    return {"comparison": "ddpm-pixel", "peer": names[peer], "peer_width": theirs.width,
            "parameters": {"genzoo": count(ours.unet), "peer": count(theirs.unet)},
            "steps_per_repeat": steps, "batch_size": batch_size,
            "genzoo": side_figures(times["genzoo"], images, flops_ours, peak, cpu["genzoo"]),
            "peer_side": side_figures(times[peer], images, flops_theirs, peak, cpu[peer]), "profiles": profiles}


def compare_ddpm_quality(data: Dataset, peer: str, steps: int, n_samples: int, sampler_steps: int, guidance: float,
                         batch_size: int = 128, seed: int = 0, overrides: dict | None = None,
                         widths: range = range(8, 129, 8), sample_batch: int = 250, references: int = 10_000,
                         grid: str | None = None) -> dict:
    """Quality after the same training: both sides trained `steps` steps at `batch_size`, one step of each in
    turn, with genzoo's learning-rate schedule for ddpm on both (linear warm-up, then constant); then
    `n_samples` samples from each side's EMA weights by its library's DDIM sampler with `sampler_steps` steps
    (eta 0), scored by genzoo's evaluator against the first `references` test digits. Against diffusers both
    sides are class-conditional (digits 0..9 in turn, guidance `guidance`) and start from the same noise;
    denoising-diffusion-pytorch's Unet takes no label, so against it both sides are unconditional."""
    from genzoo.evaluation.evaluator import load_evaluator
    from genzoo.evaluation.scoring import real_features, sample_quality
    from genzoo.images import save_grid

    conditional = peer == "diffusers"
    torch.manual_seed(seed)
    ours = genzoo.create("ddpm", **{"conditional": conditional, **(overrides or {})})
    defaults = ours.train_defaults
    theirs = PeerDiffusion(peer, count(ours.unet), ours.config.res_blocks, defaults["lr"], defaults["grad_clip"],
                           widths, p_uncond=ours.config.p_uncond)
    generator = torch.Generator().manual_seed(seed)
    cpu = {"genzoo": 0.0, "peer": 0.0}
    with tempfile.TemporaryDirectory() as tmp:
        loop = our_loop(ours, data, batch_size, defaults["lr"], Path(tmp), seed=seed, steps=steps,
                        warmup_steps=defaults["warmup_steps"], grad_clip=defaults["grad_clip"])
        for step in range(steps):
            start = time.process_time()
            loop.rates.set(loop.step)
            our_steps(loop, 1)
            middle = time.process_time()
            theirs.set_lr(defaults["lr"] * loop.rates.factor(step))  # the rate genzoo's step just took
            index = torch.randint(0, len(data.train_x), (batch_size,), generator=generator)
            float(theirs.step(data.train_x[index], data.train_y[index]))
            cpu["genzoo"] += middle - start
            cpu["peer"] += time.process_time() - middle
            if (step + 1) % max(1, steps // 10) == 0:
                print(f"  step {step + 1}/{steps}: {cpu['genzoo']:.0f} / {cpu['peer']:.0f} s of CPU (load "
                      f"{load_average()})", file=sys.stderr, flush=True)
    labels = torch.arange(n_samples) % N_CLASSES if conditional else None
    draw = {"genzoo": lambda n, y, g: ours.sample(n, y=y, generator=g, guidance=guidance, steps=sampler_steps),
            "peer": lambda n, y, g: theirs.sample(n, y, g, sampler_steps, guidance)}
    evaluator = load_evaluator("cpu")
    real = data.test_x[:references]
    features = real_features(evaluator, real)
    sides = {}
    for side, sample in draw.items():
        torch.manual_seed(seed)  # denoising-diffusion-pytorch's noise
        generator = torch.Generator().manual_seed(seed)  # genzoo's and diffusers': the same x_T
        start = time.perf_counter()
        images = torch.cat([sample(min(sample_batch, n_samples - first),
                                   None if labels is None else labels[first:first + sample_batch], generator)
                            for first in range(0, n_samples, sample_batch)])
        seconds = time.perf_counter() - start
        q = sample_quality(images.float(), real, evaluator, labels=labels, real_features=features)
        sides[side] = {"train_cpu_seconds": cpu[side], "sample_seconds": seconds, "images": images,
                       **{k: q[k] for k in ("fid", "precision", "recall", "confident_share", "class_entropy_bits",
                                            "conditional_accuracy") if k in q}}
        print(f"  {side}: {n_samples} samples in {seconds:.0f} s, FID-style {q['fid']:.1f}", file=sys.stderr,
              flush=True)
    shown = min(100, n_samples) // 10 * 10
    if grid and shown:  # the first (up to) 100 samples of each side, ten a row, genzoo's rows above the peer's
        save_grid(torch.cat([sides["genzoo"]["images"][:shown], sides["peer"]["images"][:shown]]), grid, nrow=10)
    names = {"lucidrains": "denoising-diffusion-pytorch Unet + GaussianDiffusion (unconditional, both sides)",
             "diffusers": "diffusers UNet2DModel + DDIMScheduler (class-conditional, both sides)"}
    return {"comparison": "ddpm-pixel-quality", "peer": names[peer], "peer_width": theirs.width,
            "parameters": {"genzoo": count(ours.unet), "peer": count(theirs.unet)}, "steps": steps,
            "batch_size": batch_size, "n_samples": n_samples, "sampler_steps": sampler_steps,
            "guidance": guidance if conditional else None, "references": len(real), "seed": seed,
            "genzoo": {k: v for k, v in sides["genzoo"].items() if k != "images"},
            "peer_side": {k: v for k, v in sides["peer"].items() if k != "images"}}


# ---------------------------------------------------------------------------- the report


def markdown_row(r: dict) -> str:
    ours, theirs = r["genzoo"], r["peer_side"]
    unit = "epoch" if r["comparison"].startswith("vae") else "step"

    per = r.get("steps_per_repeat", 1)  # ddpm times several steps per repeat; vae one epoch

    def cell(side):
        s = side["seconds"]
        return f"{s['median'] / per:.3f} ({s['min'] / per:.3f}-{s['max'] / per:.3f})"

    ratio, paired = throughput_ratios(r)
    if "cpu_seconds" in ours and "cpu_seconds" in theirs:
        cpu_ratio, cpu_paired = throughput_ratios(r, "cpu_seconds")
        by_cpu = (f"x{cpu_ratio:.2f} (x{statistics.median(cpu_paired):.2f}, x{min(cpu_paired):.2f}-"
                  f"x{max(cpu_paired):.2f})")
    else:
        by_cpu = "-"
    quality = (f"{ours['test_nll']:.2f} / {theirs['test_nll']:.2f}" if "test_nll" in ours else "-")
    return (f"| {r['comparison']} | {r['peer']} | {r['parameters']['genzoo']:,} / {r['parameters']['peer']:,} "
            f"| s/{unit}: {cell(ours)} / {cell(theirs)} | x{ratio:.2f} "
            f"(x{statistics.median(paired):.2f}, x{min(paired):.2f}-x{max(paired):.2f}) | {by_cpu} | {quality} "
            f"| {ours['flops_per_image'] / 1e6:.1f} / {theirs['flops_per_image'] / 1e6:.1f} "
            f"| {ours['gflops_per_s']:.1f} ({ours['share_of_peak']:.0%}) / {theirs['gflops_per_s']:.1f} "
            f"({theirs['share_of_peak']:.0%}) | {r['load_before']} / {r['load_after']} |")


def throughput_ratios(r: dict, clock: str = "seconds") -> tuple[float, list[float]]:
    """genzoo's training throughput over the peer's: the ratio of the median times, and the ratio within each
    repeat (the two sides timed one after the other, under nearly the same load). `clock`: "seconds" (wall)
    or "cpu_seconds" (this process's CPU time)."""
    ours, theirs = r["genzoo"][clock], r["peer_side"][clock]
    per_image = r["genzoo"]["images"] / r["peer_side"]["images"]
    paired = [t / o * per_image for o, t in zip(ours["all"], theirs["all"])]
    return theirs["median"] / ours["median"] * per_image, paired


HEADER = ("| comparison | peer | parameters genzoo / peer | seconds, median (min-max), genzoo / peer "
          "| throughput genzoo / peer: ratio of medians (median of the repeats' ratios, min-max) "
          "| the same by CPU time | test NLL nats genzoo / peer | MFLOP per training image genzoo / peer "
          "| GFLOP/s (share of peak) genzoo / peer | load before / after |\n|---|---|---|---|---|---|---|---|---|---|")


QUALITY_HEADER = ("| comparison | peer | parameters genzoo / peer | training steps x batch | samples (DDIM steps, "
                  "guidance) | FID-style genzoo / peer | precision | recall | confident share | class entropy, bits "
                  "| conditional accuracy | training CPU s | sampling s |\n" + "|---" * 13 + "|")


def quality_row(r: dict) -> str:
    ours, theirs = r["genzoo"], r["peer_side"]

    def pair(key: str, form: str) -> str:
        return f"{ours[key]:{form}} / {theirs[key]:{form}}" if key in ours else "-"

    guided = f", {r['guidance']:g}" if r["guidance"] is not None else ", unconditional"
    return (f"| {r['comparison']} | {r['peer']} | {r['parameters']['genzoo']:,} / {r['parameters']['peer']:,} "
            f"| {r['steps']} x {r['batch_size']} | {r['n_samples']:,} ({r['sampler_steps']}{guided}) "
            f"| {pair('fid', '.1f')} | {pair('precision', '.3f')} | {pair('recall', '.3f')} "
            f"| {pair('confident_share', '.3f')} | {pair('class_entropy_bits', '.2f')} "
            f"| {pair('conditional_accuracy', '.3f')} | {pair('train_cpu_seconds', '.0f')} "
            f"| {pair('sample_seconds', '.0f')} |")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("comparison", choices=["vae", "ddpm", "ddpm-quality"])
    p.add_argument("--data", default="mnist", help="full MNIST: a folder of IDX files, or mnist")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats of each side, interleaved")
    p.add_argument("--threads", type=int, default=1, help="torch threads (both sides)")
    p.add_argument("--peak-size", type=int, default=2048, help="matrix size of the float32 peak measurement")
    p.add_argument("--profile-steps", type=int, default=0,
                   help="after the timings, profile this many steps of each side (torch.profiler; 0: none)")
    p.add_argument("--out", default="peers.json")
    p.add_argument("--seed", type=int, default=0,
                   help="vae: both sides' initial weights, batches and binarization, and the NLL's draws; "
                        "ddpm-quality: both sides' initial weights, batches and sampling noise")
    vae = p.add_argument_group("vae")
    vae.add_argument("--arch", choices=["mlp", "conv"], default="mlp")
    vae.add_argument("--peer", default=None, help="vae: vae or iwae (pythae); ddpm: lucidrains or diffusers")
    vae.add_argument("--epoch-images", type=int, default=0, help="vae: training digits of an epoch (0: all 60,000)")
    vae.add_argument("--iwae-k", type=int, default=5, help="vae --peer iwae: importance samples in pythae's training")
    vae.add_argument("--test-images", type=int, default=1000, help="vae: test digits scored (spread over the test set)")
    vae.add_argument("--k", type=int, default=1000, help="vae: importance samples of the test NLL (both sides)")
    ddpm = p.add_argument_group("ddpm")
    ddpm.add_argument("--steps", type=int, default=3,
                      help="ddpm: training steps per repeat; ddpm-quality: training steps of each side")
    ddpm.add_argument("--samples", type=int, default=1000, help="ddpm-quality: samples scored on each side")
    ddpm.add_argument("--sampler-steps", type=int, default=50, help="ddpm-quality: DDIM steps of both samplers")
    ddpm.add_argument("--guidance", type=float, default=2.0,
                      help="ddpm-quality against diffusers: classifier-free guidance of both sides (ours: 2)")
    ddpm.add_argument("--grid", default=None, help="ddpm-quality: PNG of 100 samples of each side, genzoo's on top")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    peer = args.peer or ("vae" if args.comparison == "vae" else "lucidrains")
    allowed = ("vae", "iwae") if args.comparison == "vae" else ("lucidrains", "diffusers")
    if peer not in allowed:
        p.error(f"--peer {peer}: the {args.comparison} comparison takes {' or '.join(allowed)}")
    data = load_data(args.data)
    load_before = load_average()
    peak = None  # the quality comparison times no throughput
    if args.comparison != "ddpm-quality":
        peak = peak_gflops(args.peak_size)
        print(f"float32 peak ({args.peak_size}^3 matrix product, {args.threads} thread(s)): {peak:.1f} GFLOP/s",
              file=sys.stderr, flush=True)
    if args.comparison == "ddpm-quality":
        result = compare_ddpm_quality(data, peer, args.steps, args.samples, args.sampler_steps, args.guidance,
                                      seed=args.seed, grid=args.grid)
    elif args.comparison == "vae":
        result = compare_vae(data, args.arch, peer, args.epoch_images, args.repeats, 128, 1e-3,
                             args.test_images, args.k, args.iwae_k, peak, args.profile_steps, seed=args.seed)
    else:
        result = compare_ddpm(data, peer, args.steps, args.repeats, 128, peak, profile_steps=args.profile_steps)
    result.update(load_before=load_before, load_after=load_average(), peak_gflops=peak, threads=args.threads,
                  repeats=args.repeats, command="python " + " ".join(sys.argv),
                  date=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                  hardware=f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
                  torch=torch.__version__, peer_version=peer_version(peer))
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    if args.comparison == "ddpm-quality":
        print(QUALITY_HEADER)
        print(quality_row(result))
        print(f"\n{result['command']} ({result['date']}, torch {result['torch']}, {result['peer_version']})")
        return
    for side, prof in result["profiles"].items():
        ops = ", ".join(f"{o['op']} {o['share']:.0%}" for o in prof["top"])
        print(f"profile of {side}, {args.profile_steps} steps in {prof['wall_s']:.2f} s: outside operators "
              f"{prof['outside_operators']:.0%}; {ops}")
    print(HEADER)
    print(markdown_row(result))
    print(f"\n{result['command']} ({result['date']}, torch {result['torch']}, {result['peer_version']}, "
          f"peak {peak:.1f} GFLOP/s)")


def peer_version(peer: str) -> str:
    from importlib.metadata import version

    package = {"vae": "pythae", "iwae": "pythae", "lucidrains": "denoising-diffusion-pytorch"}.get(peer, peer)
    return f"{package} {version(package)}"


if __name__ == "__main__":
    main()
