"""The PyTorch-GAN DCGAN and CGAN, trained and scored like our models, to compare with ours.

Our DCGAN should reach equal or better quality than eriklindernoren/PyTorch-GAN's after the
same number of epochs. This script restates, in our own code, the networks and
the training loop of that repository's `implementations/dcgan/dcgan.py` and
`implementations/cgan/cgan.py` at their default settings, trains them on the same MNIST,
and scores 10,000 of their samples with the evaluator and metrics of `benchmarks/gan.py`:

- images resized to 32 x 32 (their `--img_size` default; bilinear) and scaled to [-1, 1];
- batch 64, the last short batch kept, reshuffled each epoch; Adam, lr 2e-4, betas
  (0.5, 0.999); latent size 100;
- each step trains the generator first (against the current discriminator), then the
  discriminator on the same real and generated batch, its loss halved;
- DCGAN: binary cross-entropy on a sigmoid score; conv weights from N(0, 0.02), batch-norm
  scales from N(1, 0.02). CGAN: least squares (MSE on the raw score), PyTorch's default
  initialisation, the label through a 10 x 10 embedding into both networks;
- their batch norms' eps of 0.8 (`BatchNorm2d(c, 0.8)`: the second argument is eps) kept
  as published.

Deliberately different: the data lie on the device as one tensor (so the speed here leaves
out their DataLoader over PIL images), and the random numbers come from torch generators
seeded by --seed.

Samples (tanh outputs) are mapped to [0, 1] and brought to 28 x 28 for the evaluator by the
least-squares inverse of the bilinear upsampling, which returns a real digit unchanged;
10,000 real training digits taken through 28 -> 32 -> 28 check that (their scores are the
real-data floor's). Each model is scored with its generator in eval mode (batch-norm
running statistics) and in training mode (statistics of each batch of 64, as in the pictures
their scripts save); both are reported, and the first 100 samples of each go to
`RUNS/MODEL/samples_eval_mode.png` and `samples_batch_stats.png`.

    python benchmarks/pytorch_gan_reference.py --device cuda --out ref.json      # 20 / 30 epochs
    python benchmarks/pytorch_gan_reference.py --device cpu --models dcgan --epochs 5 --runs runs/ref --out ref.json

A checkpoint is written at each epoch end and every --checkpoint-minutes; `--resume` (with
`--runs`) goes on from it, and a finished model is only re-scored.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import textwrap
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from genzoo.data import load_data
from genzoo.evaluation.evaluator import EVALUATOR_VERSION, load_evaluator
from genzoo.evaluation.scoring import describe_quality, sample_quality
from genzoo.images import save_grid
from genzoo.runs import atomic_torch_save, hardware

LATENT, SIZE, CLASSES, BATCH = 100, 32, 10, 64
# Our benchmark's epochs for the model each one is compared with (benchmarks/gan.py: dcgan 20, cgan 30).
EPOCHS = {"dcgan": 20, "cgan": 30}


class DCGANGenerator(nn.Module):
    """z -> 128 x 8 x 8 -> (nearest upsample, 3 x 3 conv) twice -> 1 x 32 x 32 in [-1, 1]."""

    def __init__(self):
        super().__init__()
        self.init_size = SIZE // 4
        self.project = nn.Linear(LATENT, 128 * self.init_size ** 2)
        self.conv = nn.Sequential(
            nn.BatchNorm2d(128),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(128, 128, 3, padding=1), nn.BatchNorm2d(128, eps=0.8), nn.LeakyReLU(0.2),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(128, 64, 3, padding=1), nn.BatchNorm2d(64, eps=0.8), nn.LeakyReLU(0.2),
            nn.Conv2d(64, 1, 3, padding=1), nn.Tanh(),
        )

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.project(z).view(len(z), 128, self.init_size, self.init_size)  # (B, 128, 8, 8)
        return self.conv(h)  # (B, 1, 32, 32)


class DCGANDiscriminator(nn.Module):
    """Four stride-2 3 x 3 convs (16, 32, 64, 128 channels) with dropout, then a sigmoid score."""

    def __init__(self):
        super().__init__()
        layers, c_in = [], 1
        for c_out, norm in ((16, False), (32, True), (64, True), (128, False)):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.LeakyReLU(0.2), nn.Dropout2d(0.25)]
            if norm:
                layers.append(nn.BatchNorm2d(c_out, eps=0.8))
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.score = nn.Linear(128 * (SIZE // 16) ** 2, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return torch.sigmoid(self.score(self.features(x).flatten(1)))  # (B, 1) probability of real


class CGANGenerator(nn.Module):
    """[label embedding, z] -> 128 -> 256 -> 512 -> 1024 (batch norm from the second) -> 32 x 32."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(CLASSES, CLASSES)
        layers, d_in = [], CLASSES + LATENT
        for i, width in enumerate((128, 256, 512, 1024)):
            layers.append(nn.Linear(d_in, width))
            if i > 0:
                layers.append(nn.BatchNorm1d(width, eps=0.8))
            layers.append(nn.LeakyReLU(0.2))
            d_in = width
        self.net = nn.Sequential(*layers, nn.Linear(d_in, SIZE * SIZE), nn.Tanh())

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([self.embed(y), z], 1)).view(len(z), 1, SIZE, SIZE)


class CGANDiscriminator(nn.Module):
    """[image, label embedding] -> 512 -> 512 -> 512 (dropout 0.4 on the last two) -> raw score."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(CLASSES, CLASSES)
        self.net = nn.Sequential(
            nn.Linear(SIZE * SIZE + CLASSES, 512), nn.LeakyReLU(0.2),
            nn.Linear(512, 512), nn.Dropout(0.4), nn.LeakyReLU(0.2),
            nn.Linear(512, 512), nn.Dropout(0.4), nn.LeakyReLU(0.2),
            nn.Linear(512, 1),
        )

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x.flatten(1), self.embed(y)], 1))


def dcgan_init(module: nn.Module) -> None:
    """Their `weights_init_normal`: conv weights N(0, 0.02); batch-norm scales N(1, 0.02), shifts 0."""
    if isinstance(module, nn.Conv2d):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def build(key: str, device: str) -> tuple[nn.Module, nn.Module]:
    if key == "dcgan":
        generator, discriminator = DCGANGenerator(), DCGANDiscriminator()
        generator.apply(dcgan_init)
        discriminator.apply(dcgan_init)
    else:
        generator, discriminator = CGANGenerator(), CGANDiscriminator()
    return generator.to(device), discriminator.to(device)


def adversarial_loss(key: str, score: torch.Tensor, target: float) -> torch.Tensor:
    """DCGAN: BCE on the sigmoid output; CGAN: least squares on the raw score."""
    truth = torch.full_like(score, target)
    return F.binary_cross_entropy(score, truth) if key == "dcgan" else F.mse_loss(score, truth)


def to_their_images(x: torch.Tensor) -> torch.Tensor:
    """(N, 1, 28, 28) in [0, 1] -> (N, 1, 32, 32) in [-1, 1], as their Resize(32) + Normalize(0.5, 0.5)."""
    return F.interpolate(x, size=SIZE, mode="bilinear", align_corners=False).clamp(0, 1) * 2 - 1


def _upsample_matrix() -> torch.Tensor:
    """(32, 28): bilinear 28 -> 32 along one axis, so that to_their_images(x) = U x U^T before clamping."""
    eye = torch.eye(28).view(28, 1, 1, 28)  # 28 one-hot rows as (N, C, H=1, W=28) signals
    return F.interpolate(eye, size=(1, SIZE), mode="bilinear", align_corners=False).view(28, SIZE).T


# The least-squares inverse of that upsampling (condition number 2.1): exact on real digits.
DOWNSAMPLE = torch.linalg.pinv(_upsample_matrix())  # (28, 32)


def to_our_images(x: torch.Tensor) -> torch.Tensor:
    """(N, 1, 32, 32) in [-1, 1] -> (N, 1, 28, 28) in [0, 1], for the evaluator.

    The 28 x 28 image whose bilinear upsampling is nearest to x in least squares: it takes
    a real digit through 28 -> 32 -> 28 unchanged, where an antialiased resize would blur it
    (on the embedded digits, FID-style 13.5 -> 81 and recall 0.85 -> 0.40).
    """
    down = DOWNSAMPLE.to(x.device)
    return (down @ ((x + 1) / 2) @ down.T).clamp(0, 1)


def train(key: str, data, run_dir: Path, device: str, epochs: int, seed: int, resume: bool,
          checkpoint_minutes: float) -> dict:
    """Their training loop; returns timing. Checkpoints at each epoch end and every few minutes."""
    torch.manual_seed(seed)  # dropout draws from the global stream, as in their script
    generator, discriminator = build(key, device)
    opt_g = torch.optim.Adam(generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    rng = torch.Generator(device).manual_seed(seed)
    images = to_their_images(data.train_x.to(device))
    labels = data.train_y.to(device)
    n = len(images)
    state = {"epoch": 0, "batch": 0, "order": None, "train_seconds": 0.0, "epoch_seconds": []}
    ckpt = run_dir / "checkpoint.pt"
    if ckpt.exists() and not resume:
        raise SystemExit(f"{ckpt} exists: pass --resume to go on from it, or choose another --runs folder")
    if resume and ckpt.exists():
        saved = torch.load(ckpt, map_location=device, weights_only=True)
        generator.load_state_dict(saved["generator"])
        discriminator.load_state_dict(saved["discriminator"])
        opt_g.load_state_dict(saved["opt_g"])
        opt_d.load_state_dict(saved["opt_d"])
        rng.set_state(saved["rng"].cpu())
        torch.set_rng_state(saved["global_rng"].cpu())
        state = saved["state"]
        print(f"{key}: resumed at epoch {state['epoch'] + 1}, batch {state['batch']}")
    run_dir.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        atomic_torch_save({"generator": generator.state_dict(), "discriminator": discriminator.state_dict(),
                           "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(), "rng": rng.get_state(),
                           "global_rng": torch.get_rng_state(), "state": state}, ckpt)

    n_batches = -(-n // BATCH)
    clock = last_save = time.perf_counter()  # clock: training time since then is not yet in state["train_seconds"]

    def tick() -> None:
        nonlocal clock
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        now = time.perf_counter()
        state["train_seconds"] += now - clock
        clock = now

    while state["epoch"] < epochs:
        if state["order"] is None:
            state["order"] = torch.randperm(n, device=device, generator=rng)
        order = state["order"]
        tick()
        epoch_from, first = state["train_seconds"], state["batch"]  # an epoch begun at batch 0 is timed whole
        for i in range(state["batch"], n_batches):
            idx = order[i * BATCH:(i + 1) * BATCH]
            real, y = images[idx], labels[idx]
            z = torch.randn(len(idx), LATENT, device=device, generator=rng)
            fake_y = torch.randint(0, CLASSES, (len(idx),), device=device, generator=rng)

            opt_g.zero_grad(set_to_none=True)
            fake = generator(z, fake_y)
            loss_g = adversarial_loss(key, discriminator(fake, fake_y), 1.0)
            loss_g.backward()
            opt_g.step()

            opt_d.zero_grad(set_to_none=True)
            loss_d = 0.5 * (adversarial_loss(key, discriminator(real, y), 1.0)
                            + adversarial_loss(key, discriminator(fake.detach(), fake_y), 0.0))
            loss_d.backward()
            opt_d.step()

            state["batch"] = i + 1
            if (i + 1) % 200 == 0 or i + 1 == n_batches:
                tick()
                seconds = state["train_seconds"] - epoch_from
                print(f"{key} epoch {state['epoch'] + 1}/{epochs} batch {i + 1}/{n_batches}  "
                      f"loss_d {loss_d.item():.4f}  loss_g {loss_g.item():.4f}  "
                      f"{(i + 1 - first) * BATCH / seconds:.0f} images/s", flush=True)
            if i + 1 < n_batches and time.perf_counter() - last_save > 60 * checkpoint_minutes:
                tick()
                save()
                clock = last_save = time.perf_counter()  # the save is not training time
        tick()
        if first == 0:
            state["epoch_seconds"].append(state["train_seconds"] - epoch_from)
        state.update(epoch=state["epoch"] + 1, batch=0, order=None)
        save()
        clock = last_save = time.perf_counter()
    atomic_torch_save({"generator": generator.state_dict()}, run_dir / "generator.pt")
    timed = state["epoch_seconds"]
    return {"epochs": epochs, "batch_size": BATCH, "train_seconds": state["train_seconds"],
            "images_per_s": epochs * n / state["train_seconds"],
            "last_epoch_seconds": timed[-1] if timed else None,
            "fastest_epoch_seconds": min(timed) if timed else None}


@torch.no_grad()
def sample(key: str, generator: nn.Module, n: int, device: str, seed: int, batch_stats: bool) -> torch.Tensor:
    """n samples as (n, 1, 28, 28) in [0, 1]; labels 0..9 in turn for the CGAN.

    With `batch_stats`, batch norm uses each batch's statistics (batches of 64, as in training).
    """
    generator.train(batch_stats)
    rng = torch.Generator(device).manual_seed(seed)
    labels = (torch.arange(n) % CLASSES).to(device)
    out = []
    for start in range(0, n, BATCH):
        y = labels[start:start + BATCH]
        out.append(to_our_images(generator(torch.randn(len(y), LATENT, device=device, generator=rng), y)).cpu())
    return torch.cat(out)


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--data",
        default="mnist",
        help="full MNIST: a folder of IDX files, or mnist ($GENZOO_DATA, the cache, else a download)",
    )
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--models", default="dcgan,cgan", help="comma-separated, from dcgan, cgan")
    parser.add_argument("--epochs", type=int, default=0, help="override every model's epochs (0: dcgan 20, cgan 30)")
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", default=None, help="keep the checkpoints here (default: a temporary folder)")
    parser.add_argument("--resume", action="store_true", help="continue the runs under --runs from their checkpoints")
    parser.add_argument("--checkpoint-minutes", type=float, default=5.0)
    parser.add_argument("--out", default=None, help="JSON file for the results")
    args = parser.parse_args()
    keys = args.models.split(",")
    for key in keys:
        if key not in EPOCHS:
            parser.error(f"--models: unknown {key!r}; choose from {', '.join(EPOCHS)}")
    if args.resume and not args.runs:
        parser.error("--resume continues the runs under --runs; name that folder")

    data = load_data(args.data)
    evaluator = load_evaluator(args.device)
    results = {"data": data.describe(), "device": args.device, "hardware": hardware(args.device),
               "date": time.strftime("%Y-%m-%d"), "torch": torch.__version__, "seed": args.seed,
               "n_samples": args.samples, "evaluator_version": EVALUATOR_VERSION, "models": {}}
    pick = torch.randperm(len(data.train_x), generator=torch.Generator().manual_seed(args.seed))[:args.samples]
    real = data.train_x[pick]
    for name, images in (("real_data_floor", real), ("real_data_floor_resized", to_our_images(to_their_images(real)))):
        results[name] = sample_quality(images, data.test_x, evaluator)
        print(f"{name}: FID-style {results[name]['fid']:.3f}  precision {results[name]['precision']:.3f}  "
              f"recall {results[name]['recall']:.3f}")

    root = Path(args.runs) if args.runs else Path(tempfile.mkdtemp(prefix="genzoo-pytorch-gan-"))
    for key in keys:
        timing = train(key, data, root / key, args.device, args.epochs or EPOCHS[key], args.seed, args.resume,
                       args.checkpoint_minutes)
        generator, _ = build(key, args.device)
        generator.load_state_dict(torch.load(root / key / "generator.pt", map_location=args.device,
                                             weights_only=True)["generator"])
        labels = (torch.arange(args.samples) % CLASSES) if key == "cgan" else None
        scores = {}
        for mode, batch_stats in (("eval_mode", False), ("batch_stats", True)):
            samples = sample(key, generator, args.samples, args.device, args.seed, batch_stats)
            scores[mode] = sample_quality(samples, data.test_x, evaluator, labels=labels)
            save_grid(samples[:100], root / key / f"samples_{mode}.png", nrow=10)
        results["models"][key] = {**timing, "quality": scores}
        print(f"\n{key}: {timing['epochs']} epochs in {timing['train_seconds']:.1f} s "
              f"({timing['images_per_s']:.0f} images/s, last whole epoch {timing['last_epoch_seconds']})")
        for mode, s in scores.items():
            print(f"  {mode}:\n" + textwrap.indent(describe_quality(s), "    "))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
        print(f"\nwrote {args.out}")
    return results


if __name__ == "__main__":
    main()
