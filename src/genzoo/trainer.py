"""The one trainer every model goes through.

It chooses how to train from the model's `training_mode`:

- "gradient": the trainer owns the optimizer, calls `model(x, y)` (the loss dict),
  steps Adam with an optional warm-up/cosine schedule, bf16 autocast on CUDA;
- "step": the model's own `train_step(x, y, optimizers)` (adversarial, CD-k);
- "fit": one closed-form `fit(train_x, train_y)` on the whole training set.

Around that it keeps the run folder: config.json, metrics.jsonl (with, for gradient-
trained models, the loss on the test set after each epoch), a sample grid per epoch
and `samples/progress.gif`, `model.safetensors`, and an atomic `checkpoint.pt`
(weights, optimizer and scheduler states, step, RNG) every few minutes and at each
epoch end. `resume=True` continues a killed run exactly where its last checkpoint
left it. The whole data set is kept on the device and batches are cut from a seeded
per-epoch permutation, so there is no DataLoader and no worker process.

Under `torchrun` (WORLD_SIZE > 1) gradient-trained models run data-parallel with
PyTorch's DistributedDataParallel: every rank takes its slice of each global batch,
and only rank 0 writes to the run folder.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import sys
import time
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from tqdm import tqdm

from . import runs
from .config import build
from .data import Dataset, binarize, fixed_binarization, load_data
from .images import save_gif, save_grid
from .train_config import TrainConfig


class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss, an unusable resume)."""


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainingError("--device cuda: no CUDA device is available here; use --device cpu or auto")
    return device


def lr_factor(cfg: TrainConfig, total_steps: int):
    """Multiplier of the base learning rate at each step: linear warm-up, then constant or cosine."""

    def factor(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.schedule == "cosine":
            progress = (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return 1.0

    return factor


class _Distributed:
    """Rank, world size and process group under torchrun; a single process otherwise."""

    def __init__(self, device: torch.device):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.enabled = self.world > 1
        if self.enabled and not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def train(
    model: Any,
    data: str | Dataset = "auto",
    out: str | Path | None = None,
    *,
    device: str | torch.device = "auto",
    seed: int = 0,
    resume: bool = False,
    train_overrides: dict[str, Any] | None = None,
    model_overrides: dict[str, Any] | None = None,
    progress: bool = True,
) -> Path:
    """Train a model into a run folder and return the folder.

    Args:
        model: a CLI name (e.g. "vae") or a model instance.
        data: a `--data` value (folder, "mnist", "embedded", "fashion-mnist", "auto") or a Dataset.
        out: the run folder (default runs/<model>); with `resume=True`, the run to continue.
        device: "auto" (GPU when there is one), "cpu" or "cuda".
        seed: seeds weights, batches, noise and the fixed sample grid.
        resume: continue the run in `out` from its checkpoint, with its own config.
        train_overrides: TrainConfig values (epochs, steps, batch_size, lr, ...). With `resume`, only
            epochs or steps: a finished (or killed) run then trains on to that new length.
        model_overrides: model hyper-parameters (strings are parsed as with --set).
        progress: show a progress bar.
    """
    device = resolve_device(device)
    name = model if isinstance(model, str) else model.name
    run_dir = Path(out) if out is not None else Path("runs") / name
    if resume:
        config = runs.read_config(run_dir)
        if name != config["model"]:
            raise TrainingError(f"{run_dir}: a {config['model']} run, not {name}; "
                                f"continue it with: genzoo train {config['model']} --out {run_dir} --resume")
        changed = sorted(set(model_overrides or {}) | (set(train_overrides or {}) - set(LENGTH_KEYS)))
        if changed:
            raise TrainingError(f"{run_dir}: --resume continues a run with its own config.json; drop {', '.join(changed)} "
                                "(only --epochs or --steps may go with it, to train the run for longer)")
        torch.manual_seed(config["seed"])
        model_obj = runs.build_model(config)
        train_cfg = build(TrainConfig, config["train"], owner="trainer")
        data_spec, seed = config["data"], config["seed"]
    else:
        if model_overrides and not isinstance(model, str):
            raise TrainingError("model_overrides apply to a model given by name; configure the instance instead")
        torch.manual_seed(seed)  # the initial weights come from the seed (DDP then broadcasts rank 0's copy)
        model_obj = runs.create(model, **(model_overrides or {})) if isinstance(model, str) else model
        train_cfg = build(TrainConfig, {**model_obj.train_defaults, **(train_overrides or {})}, owner="trainer")
        data_spec = data if isinstance(data, str) else data.spec
    dataset = data if isinstance(data, Dataset) else load_data(data_spec)
    lengthened = resume and bool(train_overrides) and _lengthen(run_dir, train_cfg, train_overrides, len(dataset.train_x))
    if lengthened:
        train_cfg = lengthened

    ddp = _Distributed(device)
    if ddp.enabled and model_obj.training_mode != "gradient":
        raise TrainingError(
            f"{name}: data-parallel training (torchrun) needs a gradient-trained model; "
            f"{name} trains with '{model_obj.training_mode}'. Run it as a single process."
        )
    if ddp.enabled and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)

    if ddp.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "samples").mkdir(exist_ok=True)
        if not resume:
            for stale in (runs.CHECKPOINT, runs.METRICS_LOG):
                (run_dir / stale).unlink(missing_ok=True)
            runs.write_config(run_dir, model_obj, train_cfg, data_spec, seed)
        elif lengthened:  # the new length is the run's own from now on: a later plain --resume keeps it
            config["train"] = dataclasses.asdict(train_cfg)
            runs.atomic_write_text(run_dir / runs.CONFIG, json.dumps(config, indent=2) + "\n")
    ddp.barrier()
    return _Loop(model_obj, train_cfg, dataset, run_dir, device, seed, ddp, progress).run(resume)


LENGTH_KEYS = ("epochs", "steps")  # the trainer settings that --resume may change


def forked_rng(device: torch.device):
    """A context in which torch's random draws (CPU, and `device`'s if a GPU) leave the outer stream as it was."""
    return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])


def epoch_steps(cfg: TrainConfig, n_train: int) -> int:
    """Optimizer steps of an epoch: n_train // batch_size (the remainder is dropped), at least one."""
    return max(1, n_train // min(cfg.batch_size, n_train))


def total_steps(cfg: TrainConfig, n_train: int) -> int:
    """Optimizer steps of a run: `steps`, or `epochs` epochs."""
    return cfg.steps or cfg.epochs * epoch_steps(cfg, n_train)


def _lengthen(run_dir: Path, cfg: TrainConfig, lengths: dict[str, Any], n_train: int) -> TrainConfig | None:
    """The run's trainer settings with a new number of epochs or steps, or None when the length is unchanged.

    The learning-rate schedule is recomputed over the new length from the checkpoint's step on; a
    cosine schedule that had reached its end thus rises again, and this says by how much.
    """
    path = run_dir / runs.CHECKPOINT
    if not path.exists():
        raise TrainingError(f"{path}: no checkpoint to resume from; start the run again without --resume")
    new = build(TrainConfig, {**dataclasses.asdict(cfg), **lengths}, owner="trainer")
    step = torch.load(path, map_location="cpu", weights_only=True, mmap=True)["step"]
    before, after = total_steps(cfg, n_train), total_steps(new, n_train)
    if after < step:
        raise TrainingError(f"{run_dir}: the run is at step {step}, past the {after} steps that "
                            f"{', '.join(f'{k}={v}' for k, v in lengths.items())} make; ask for more, or drop them")
    if after == before:
        return None
    note = f"genzoo: {run_dir}: training to step {after} instead of {before} (now at step {step})"
    lr_now, lr_new = cfg.lr * lr_factor(cfg, before)(step), new.lr * lr_factor(new, after)(step)
    if lr_new != lr_now:
        note += f"; the {new.schedule} schedule now spans {after} steps: the learning rate goes from {lr_now:.3g} to {lr_new:.3g}"
    print(note, file=sys.stderr)
    return new


def train_or_resume(model: Any, data: str | Dataset, out: str | Path, *, resume: bool = True,
                    train_overrides: dict[str, Any] | None = None, model_overrides: dict[str, Any] | None = None,
                    **kwargs: Any) -> Path:
    """`train`, except that with `resume` a run folder holding a checkpoint is continued with its
    own config (the overrides are then not used; a finished run is left as it is).

    For scripts that a time limit may cut off (the benchmarks): the same command, run again,
    goes on where the last one stopped.
    """
    resume = resume and (Path(out) / runs.CHECKPOINT).exists()
    return train(model, data, out, resume=resume, train_overrides=None if resume else train_overrides,
                 model_overrides=None if resume else model_overrides, **kwargs)


class _Loop:
    def __init__(self, model, cfg: TrainConfig, dataset: Dataset, run_dir: Path, device, seed: int, ddp, progress: bool):
        self.model, self.cfg, self.run_dir, self.device, self.seed, self.ddp = model, cfg, run_dir, device, seed, ddp
        torch.manual_seed(seed + ddp.rank)  # each rank draws its own noise
        self.model.to(device)
        self.dataset = dataset
        self._order: tuple[int, torch.Tensor | None] = (-1, None)
        self._test: tuple[torch.Tensor, torch.Tensor] | None = None  # test images and labels on the device, once
        self.train_x = dataset.train_x.to(device)
        self.train_y = dataset.train_y.to(device)
        self.n = len(self.train_x)
        self.batch = min(cfg.batch_size, self.n)
        if self.batch % ddp.world:
            raise TrainingError(f"batch_size={self.batch} must be divisible by the {ddp.world} processes")
        self.steps_per_epoch = epoch_steps(cfg, self.n)
        self.total = total_steps(cfg, self.n)
        self.progress = progress and ddp.main
        self.step = 0
        self.elapsed = 0.0  # training seconds, summed over resumed sessions
        self.stop_reason = ""
        self.last_checkpoint_step = -1
        mode = model.training_mode
        self.optimizers = model.configure_optimizers(cfg) if mode in ("gradient", "step") else {}
        factor = lr_factor(cfg, self.total)
        self.schedulers = {k: torch.optim.lr_scheduler.LambdaLR(o, factor) for k, o in self.optimizers.items()}
        self.net = model
        if ddp.enabled:
            self.net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        self.use_amp = cfg.amp and device.type == "cuda" and model.amp_safe
        if device.type == "cuda":
            # Every training batch has one shape (an epoch's remainder is dropped): let cudnn time its
            # convolution algorithms once and keep the fastest. The choice may vary between machines, so
            # GPU runs repeat up to float rounding; bit-exact resume is a CPU guarantee.
            torch.backends.cudnn.benchmark = True

    # ------------------------------------------------------------------ state

    def state(self) -> dict:
        rng = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "model": self.model.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
            "step": self.step,
            "elapsed": self.elapsed,
            "rng": rng,
        }

    def checkpoint(self) -> None:
        if self.ddp.main:  # model.safetensors is what `load` reads, checkpoint.pt what --resume reads
            runs.save_weights(self.model, self.run_dir / runs.WEIGHTS)
            runs.atomic_torch_save(self.state(), self.run_dir / runs.CHECKPOINT)
        self.last_checkpoint_step = self.step
        self.last_checkpoint_time = time.monotonic()

    def restore(self) -> None:
        path = self.run_dir / runs.CHECKPOINT
        if not path.exists():
            raise TrainingError(f"{path}: no checkpoint to resume from; start the run again without --resume")
        state = torch.load(path, map_location=self.device, weights_only=True)
        self.model.load_state_dict(state["model"])
        for key, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][key])
        for key, sched in self.schedulers.items():
            sched.load_state_dict(state["schedulers"][key])
            # the rate of the step to come, by this run's schedule (the same value, unless the run was lengthened)
            for group, base, factor in zip(sched.optimizer.param_groups, sched.base_lrs, sched.lr_lambdas):
                group["lr"] = base * factor(sched.last_epoch)
        self.step, self.elapsed = state["step"], state["elapsed"]
        torch.set_rng_state(state["rng"]["torch"].cpu())
        if "cuda" in state["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng"]["cuda"].cpu(), self.device)

    def trim_log(self) -> None:
        """Before training on from a checkpoint: drop the log lines written after it (those steps are
        done again) and the last session's end record."""
        if self.ddp.main:
            kept = [r for r in runs.read_metrics_log(self.run_dir) if r.get("step", 0) <= self.step and "event" not in r]
            runs.atomic_write_text(self.run_dir / runs.METRICS_LOG, "".join(json.dumps(r) + "\n" for r in kept))

    def log(self, record: dict) -> None:
        if self.ddp.main:
            with open(self.run_dir / runs.METRICS_LOG, "a") as f:
                f.write(json.dumps(record) + "\n")

    # ------------------------------------------------------------------ pictures

    def rng_fork(self):
        # Pictures and epoch hooks must not move the training RNG, or a resumed run would diverge.
        return forked_rng(self.device)

    @torch.no_grad()
    def sample_grid(self, epoch: int) -> None:
        if not self.ddp.main:
            return
        self.model.eval()
        n = self.cfg.n_grid
        labels = self.model.default_labels(n) if self.model.conditional else None
        with self.rng_fork():
            images = self.model.sample(n, y=labels, generator=torch.Generator().manual_seed(self.seed))
        self.model.train()
        samples = self.run_dir / "samples"
        save_grid(images, samples / f"epoch_{epoch:03d}.png", nrow=10 if self.model.conditional else None)
        frames = sorted(samples.glob("epoch_*.png"))
        save_gif(frames, samples / "progress.gif")

    # ------------------------------------------------------------------ loop

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """The seeded shuffle of epoch `epoch` (a function of seed and epoch only, so resuming repeats it)."""
        if self._order[0] != epoch:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            self._order = (epoch, torch.randperm(self.n, generator=generator).to(self.device))
        return self._order[1]

    def batch_at(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, position = divmod(step, self.steps_per_epoch)
        index = self.epoch_order(epoch)[position * self.batch : (position + 1) * self.batch]
        index = index[self.ddp.rank :: self.ddp.world]
        x, y = self.train_x[index], self.train_y[index]
        if self.model.binary_data:
            x = binarize(x)
        return x, y

    def gradient_step(self, x, y) -> dict[str, torch.Tensor]:
        """One optimizer step on the model's loss; returns the loss dict's values still on the device."""
        opt = self.optimizers["model"]
        opt.zero_grad(set_to_none=True)
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if self.use_amp else nullcontext()
        with autocast:
            out = self.net(x, y, step=self.step)
        out["loss"].backward()
        if self.cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        opt.step()
        self.model.after_optimizer_step(self.step)
        return {k: v.detach() for k, v in out.items()}

    def settle(self, pending: list[tuple[int, dict]], window: dict[str, float]) -> int:
        """Bring the steps' values to the host in one device sync, add them to `window`, return their count.

        Steps return their values as device tensors (or floats) so that a GPU is never made to
        wait for the host between steps; the values are looked at here, at log points and
        before every checkpoint. A non-finite value stops training: the steps since the last
        check may have spoilt the weights in memory, but the checkpoint on disk predates them.
        """
        tensors = [v for _, out in pending for v in out.values() if isinstance(v, torch.Tensor)]
        host = iter(torch.stack([t.float().reshape(()) for t in tensors]).tolist() if tensors else [])
        for step, out in pending:
            values = {k: next(host) if isinstance(v, torch.Tensor) else float(v) for k, v in out.items()}
            bad = [k for k, v in values.items() if not math.isfinite(v)]
            if bad:
                raise TrainingError(
                    f"{self.model.name}: {', '.join(f'{k}={values[k]}' for k in bad)} at step {step}; training stopped. "
                    f"The last good checkpoint (step {self.last_checkpoint_step}) is kept in {self.run_dir}. "
                    "Try a lower lr, --set grad_clip=1, or --set amp=false"
                )
            for k, v in values.items():
                window[k] = window.get(k, 0.0) + v
        n = len(pending)
        pending.clear()
        return n

    def run(self, resume: bool) -> Path:
        if resume:
            self.restore()
            if self.step >= self.total:
                print(f"genzoo: {self.run_dir} already finished ({self.step} steps)", file=sys.stderr)
                return self.run_dir
            self.trim_log()
        self.model.train()
        if self.model.training_mode == "fit":
            return self.run_fit()
        stop = {"signal": None}
        previous = {}

        def request_stop(signum, frame):
            stop["signal"] = signal.Signals(signum).name

        if self.ddp.main and _in_main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, request_stop)
        try:
            self.loop(stop)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        # Checkpointed: now let the signal do what it was sent for (interrupt a script, end a process).
        if stop["signal"] == "SIGINT":
            raise KeyboardInterrupt
        if stop["signal"] == "SIGTERM":
            raise SystemExit(128 + signal.SIGTERM)
        return self.run_dir

    def loop(self, stop: dict) -> None:
        cfg, start_step = self.cfg, self.step
        bar = tqdm(total=self.total, initial=self.step, disable=not self.progress, desc=self.model.name, unit="step",
                   dynamic_ncols=True, file=sys.stderr)
        pending: list[tuple[int, dict]] = []  # steps whose values are still on the device
        window: dict[str, float] = {}
        window_n, window_t, window_images = 0, time.perf_counter(), 0
        session_start = time.perf_counter()
        elapsed_before = self.elapsed
        self.last_checkpoint_time = time.monotonic()
        while self.step < self.total:
            x, y = self.batch_at(self.step)
            if self.model.training_mode == "gradient":
                out = self.gradient_step(x, y)
            else:
                out = self.model.train_step(x, y, self.optimizers)
            with warnings.catch_warnings():
                # A model's own step may skip an optimizer on purpose (a GAN's G with d_steps > 1): the
                # schedule still follows the trainer's step count.
                warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)` before")
                for sched in self.schedulers.values():
                    sched.step()
            self.step += 1
            pending.append((self.step, out))
            window_images += len(x) * self.ddp.world
            self.elapsed = elapsed_before + time.perf_counter() - session_start
            bar.update(1)

            epoch_done = self.step % self.steps_per_epoch == 0 or self.step == self.total
            log_due = self.step % cfg.log_every == 0 or epoch_done
            over_budget = cfg.time_budget and self.elapsed >= cfg.time_budget
            stopping = bool(stop["signal"] or over_budget)
            checkpoint_due = epoch_done or time.monotonic() - self.last_checkpoint_time >= cfg.checkpoint_minutes * 60
            if log_due or stopping or checkpoint_due:
                try:
                    window_n += self.settle(pending, window)
                except TrainingError:
                    bar.close()
                    raise
                self.elapsed = elapsed_before + time.perf_counter() - session_start  # now that the device is done
            if log_due:
                now = time.perf_counter()
                record = {k: v / window_n for k, v in window.items()}
                record.update(step=self.step, epoch=self.step / self.steps_per_epoch, time=round(self.elapsed, 3),
                              lr=next(iter(self.optimizers.values())).param_groups[0]["lr"],
                              images_per_s=window_images / max(now - window_t, 1e-9))
                self.log(record)
                shown = record.get("loss", record[next(iter(out))])
                bar.set_postfix(loss=f"{shown:.4g}", img_s=f"{record['images_per_s']:.0f}")
                window, window_n, window_t, window_images = {}, 0, now, 0
            if epoch_done:
                epoch = math.ceil(self.step / self.steps_per_epoch)
                self.end_epoch(epoch)
            if stopping:
                self.stop_reason = f"stopped by {stop['signal']}" if stop["signal"] else "time budget reached"
                break
            if checkpoint_due:
                self.checkpoint()
        bar.close()
        if self.stop_reason and self.step % self.steps_per_epoch and cfg.sample_every:
            self.sample_grid(math.ceil(self.step / self.steps_per_epoch))  # a picture of where it stopped
        if self.last_checkpoint_step != self.step:
            self.checkpoint()
        self.finish(start_step)

    def end_epoch(self, epoch: int) -> None:
        with self.rng_fork():
            extra = self.model.epoch_end(epoch) or {}
        if extra:
            self.log({"step": self.step, "epoch": epoch, **extra})
            if extra.get("warning") and self.ddp.main:
                tqdm.write(f"genzoo: warning (epoch {epoch}): {extra['warning']}", file=sys.stderr)
        if self.cfg.sample_every and epoch % self.cfg.sample_every == 0:
            self.sample_grid(epoch)
        test_due = self.cfg.test_every and epoch % self.cfg.test_every == 0 and len(self.dataset.test_x)
        if test_due and self.model.training_mode == "gradient" and self.ddp.main:
            start = time.perf_counter()
            record = self.test_losses()
            self.log({"step": self.step, "epoch": epoch, "time": round(self.elapsed, 3), **record,
                      "test_images": len(self._test[0]), "test_seconds": round(time.perf_counter() - start, 3)})

    @torch.no_grad()
    def test_losses(self) -> dict[str, float]:
        """Every entry of the model's loss dict, averaged over the test set, as test_<key>.

        Eval mode, no autocast, Bernoulli models on the fixed binarization that evaluation uses (a
        pixel model's test_loss is then its exact test NLL, a VAE's its negative ELBO). Any noise the
        loss draws comes from the run's seed inside a forked RNG: the figure repeats, and training's
        random stream is left as it was.
        """
        if self._test is None:
            n = self.cfg.test_images or len(self.dataset.test_x)
            x = self.dataset.test_x[:n]
            self._test = ((fixed_binarization(x) if self.model.binary_data else x).to(self.device),
                          self.dataset.test_y[:n].to(self.device))
        x, y = self._test
        size = self.batch // self.ddp.world  # one process's training batch: known to fit
        totals: dict[str, float] = {}
        self.model.eval()
        with self.rng_fork():
            torch.manual_seed(self.seed)
            for start in range(0, len(x), size):
                xb, yb = x[start : start + size], y[start : start + size]
                for key, value in self.model.loss(xb, yb).items():
                    totals[key] = totals.get(key, 0.0) + float(value) * len(xb)
        self.model.train()
        return {f"test_{key}": total / len(x) for key, total in totals.items()}

    def finish(self, start_step: int) -> None:
        steps = self.step - start_step
        images = self.step * self.batch
        record = {"event": "end", "step": self.step, "train_seconds": round(self.elapsed, 3),
                  "images_per_s": images / max(self.elapsed, 1e-9), "steps_this_session": steps,
                  "device": runs.hardware(self.device), "world_size": self.ddp.world}
        if self.stop_reason:
            record["stopped"] = self.stop_reason
            if self.ddp.main:
                print(f"genzoo: {self.stop_reason} at step {self.step}/{self.total}; "
                      f"continue with: genzoo train {self.model.name} --out {self.run_dir} --resume", file=sys.stderr)
        self.log(record)
        if self.ddp.main and not self.stop_reason.startswith("stopped by"):  # a time budget still ends with pictures
            self.model.eval()
            with self.rng_fork():
                self.model.write_pictures(self.run_dir, self.dataset)
            self.model.train()

    def run_fit(self) -> Path:
        start = time.perf_counter()
        if self.ddp.main:
            print(f"genzoo: fitting {self.model.name} on {self.n:,} images ...", file=sys.stderr)
        x = binarize(self.train_x) if self.model.binary_data else self.train_x
        out = self.model.fit(x, self.train_y) or {}
        self.elapsed = time.perf_counter() - start
        self.step = self.total
        self.log({"step": 0, "epoch": 1, **out})
        if self.cfg.sample_every:
            self.sample_grid(1)
        self.checkpoint()
        self.finish(0)
        return self.run_dir


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
