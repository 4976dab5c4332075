"""A training session of a run: batch, step, log, epoch end, checkpoint; then the pictures.

The trainer chooses how to train from the model's `training_mode`: gradient steps on its loss
(the trainer's optimizer, `model(x, y, step=step)`, then `after_optimizer_step`), the model's own
`train_step` (adversarial, CD-k) or one closed-form `fit`. In every mode the trainer owns the
step count and the autocast choice, and passes them in.

Work after a checkpoint (a sample grid, the test pass, the pictures) is stopped at once by
SIGINT/SIGTERM; training steps finish the step in progress and checkpoint first.
"""

from __future__ import annotations

import math
import sys
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
from tqdm import tqdm

from .. import runs
from ..data import Dataset, binarize
from ..evaluation.evaluator import evaluator_or_reason
from ..images import save_pictures
from ..train_config import TrainConfig
from . import TrainingError, progress
from .batches import Batches
from .checkpoint import Checkpoints
from .devices import Distributed, autocast_for, forked_rng
from .logwindow import Clock, LogWindow, NonFinite
from .outputs import TestPass, write_sample_grid
from .schedule import LearningRates, total_steps
from .signals import Interrupted, StopSignals

PICTURES_SKIPPED = "pictures_skipped"  # the metrics.jsonl event of a finished run whose pictures a signal cut short


class Loop:
    def __init__(self, model, cfg: TrainConfig, dataset: Dataset, run_dir: Path, device: torch.device, seed: int,
                 ddp: Distributed, show_progress: bool):
        self.model, self.cfg, self.dataset, self.run_dir = model, cfg, dataset, run_dir
        self.device, self.seed, self.ddp = device, seed, ddp
        torch.manual_seed(seed + ddp.rank)  # each rank draws its own noise
        model.to(device)
        self.batches = Batches(dataset, cfg, device, ddp, seed, model.binary_data)
        self.total = total_steps(cfg, self.batches.n)
        self.progress = show_progress and ddp.main
        self.step = self.start_step = self.settled_step = 0
        self.elapsed = 0.0  # training seconds, summed over resumed sessions
        self.stop_reason, self.phase, self.ended = "", "", False
        self.window = LogWindow()  # the steps since the last log line; kept in the checkpoint
        self.shown: dict[str, str] = {}  # the last log line's loss and images/s, beside the bar
        self.fit_out: dict = {}  # what a closed-form or EM fit returned
        self.optimizers = model.configure_optimizers(cfg) if model.training_mode != "fit" else {}
        self.rates = LearningRates(self.optimizers, cfg, self.total)
        self.net = model
        if ddp.enabled:
            ids = [device.index] if device.type == "cuda" else None
            self.net = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
        self.autocast = autocast_for(cfg.amp, device, model)
        self.checkpoints = Checkpoints(run_dir, ddp, device, seed)
        self.test_pass = TestPass(model, dataset, cfg, self.total * self.batches.size, device, seed,
                                  self.batches.size // ddp.world, self.progress)
        if device.type == "cuda":
            # Every training batch has one shape (an epoch's remainder is dropped): let cudnn time its
            # convolution algorithms once and keep the fastest. The choice may vary between machines, so
            # GPU runs repeat up to float rounding; bit-exact resume is a CPU guarantee.
            torch.backends.cudnn.benchmark = True

    # ------------------------------------------------------------------ the session

    def run(self, resume: bool) -> Path:
        if resume:
            self.step, self.elapsed = self.checkpoints.restore(self.model, self.optimizers, self.window)
            self.start_step = self.settled_step = self.step
            if self.step >= self.total:
                return self.resume_finished()
            self.trim_log()
        self.rates.set(self.step)
        self.model.train()
        if self.model.training_mode == "fit":
            self.fit()  # before the handlers: Ctrl-C ends a fit at once, there is nothing to save yet
        with StopSignals() as stops:
            try:
                if self.model.training_mode != "fit":
                    self.loop(stops)
                elif self.cfg.sample_every:
                    self.sample_grid(1, stops)
                self.finish(stops)
            except Interrupted:
                self.interrupted(stops)
        stops.reraise()
        return self.run_dir

    def make_bar(self):
        """Steps of the run; for a run with a time budget, the budget: seconds trained of the seconds it may
        train (its step count is an upper bound it will most often not reach)."""
        if self.cfg.time_budget:
            return progress.bar(self.cfg.time_budget, self.model.name, "s", self.progress,
                                initial=min(self.elapsed, self.cfg.time_budget), budget=True)
        return progress.bar(self.total, self.model.name, "step", self.progress, initial=self.step)

    def advance(self, bar) -> None:
        if self.cfg.time_budget:
            bar.update(min(self.elapsed, self.cfg.time_budget) - bar.n)
            bar.set_postfix(step=self.step, **self.shown)
        else:
            bar.update(1)

    def loop(self, stops: StopSignals) -> None:
        window, clock = self.window, Clock(self.elapsed)
        bar = self.make_bar()
        self.checkpoints.time = time.monotonic()
        with bar:
            while self.step < self.total:
                x, y = self.batches.at(self.step)
                window.add(self.step + 1, self.train_step(x, y), images=len(x) * self.ddp.world)
                self.step += 1
                self.rates.set(self.step)  # the rate of the step to come
                self.elapsed = clock.elapsed()
                self.advance(bar)
                epoch_end, log_due, stop, checkpoint_due = self.due(stops)
                if log_due or checkpoint_due:
                    self.settle(window, clock)
                if log_due:
                    self.log_window(window, bar)
                progress.pause(bar)  # the rate and time left count training steps only, not the epoch's pictures
                paused = time.perf_counter()
                if epoch_end:
                    self.epoch_hook(self.epoch)
                if checkpoint_due:
                    self.save_checkpoint()
                if epoch_end and not stops.requested:
                    self.epoch_outputs(self.epoch, stops)
                window.start += time.perf_counter() - paused  # nor does the next log line's images/s
                progress.unpause(bar)
                if stop:
                    self.stop_reason = self.why_stopped(stops)
                    break

    @property
    def epoch(self) -> int:
        return math.ceil(self.step / self.batches.per_epoch)

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor | float]:
        """One step at `self.step`; returns the step's values for the log, still on the device."""
        if self.model.training_mode == "step":
            return self.model.train_step(x, y, self.optimizers, step=self.step, autocast=self.autocast)
        opt = self.optimizers["model"]
        opt.zero_grad(set_to_none=True)
        with self.autocast():
            out = self.net(x, y, step=self.step)
        out["loss"].backward()
        if self.cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        opt.step()
        self.model.after_optimizer_step(self.step)
        return {k: v.detach() for k, v in out.items()}

    def due(self, stops: StopSignals) -> tuple[bool, bool, bool, bool]:
        """What the step just taken ends: (an epoch, a log window, training, a checkpoint interval)."""
        cfg = self.cfg
        epoch_end = self.step % self.batches.per_epoch == 0 or self.step == self.total
        log_due = self.step % cfg.log_every == 0 or epoch_end
        stop = bool(stops.requested or (cfg.time_budget and self.elapsed >= cfg.time_budget))
        timed = time.monotonic() - self.checkpoints.time >= cfg.checkpoint_minutes * 60
        if self.ddp.enabled:  # the ranks decide together (a checkpoint gathers from all), at steps all of them reach
            stop, timed = self.ddp.any(stop, timed) if log_due else (False, False)
        return epoch_end, log_due, stop, epoch_end or timed or stop

    def why_stopped(self, stops: StopSignals) -> str:
        if stops.requested:
            return f"stopped by {stops.requested}"
        if self.cfg.time_budget and self.elapsed >= self.cfg.time_budget:
            return "time budget reached"
        return "stopped with another process (a signal or its time budget)"

    # ------------------------------------------------------------------ reading the steps' values

    def settle(self, window: LogWindow, clock: Clock) -> None:
        """Read the pending steps' values and check the weights, in one device sync; stop on a non-finite one.

        This runs before every checkpoint, so no checkpoint holds what a bad step left: a NaN loss,
        or NaN weights from a finite loss whose gradient was not finite.
        """
        params = [p for p in self.model.parameters()]
        flags = torch.stack([p.detach().isfinite().all() for p in params]) if params else None
        try:
            finite = window.settle(flags)
        except NonFinite as bad:
            raise TrainingError(self.stop_message(f"{bad} at step {bad.step}")) from None
        if not all(finite):
            names = [name for (name, _), ok in zip(self.model.named_parameters(), finite) if not ok]
            first = self.settled_step + 1
            steps = f"step {self.step}" if first == self.step else f"steps {first} to {self.step}"
            raise TrainingError(self.stop_message(
                f"non-finite weights ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''}) after {steps}, "
                "whose losses were finite"))
        self.settled_step = self.step
        self.elapsed = clock.elapsed()  # now that the device is done

    def stop_message(self, what: str) -> str:
        """What stopped training, what the run folder holds now, and what to change (only what applies here:
        autocast advice only where autocast is on)."""
        if self.checkpoints.step >= 0:
            kept = (f"The last good checkpoint (step {self.checkpoints.step}) is kept in {self.run_dir}, but resuming "
                    "with the same settings would meet the same values.")
        else:
            kept = f"No checkpoint was written yet, so {self.run_dir} has nothing to resume from."
        unused = self.model.unused_train_keys  # suggest only what this model takes
        fixes = [f"a lower --lr (this run: {self.cfg.lr:g})" if "lr" not in unused else f"lower rates ({unused['lr']})"]
        if not self.cfg.grad_clip and "grad_clip" not in unused:
            fixes.append("--set grad_clip=1")
        if self.autocast is not nullcontext:  # bf16 autocast is on (CUDA): it may be the cause
            fixes.append("--set amp=false")
        return (f"{self.model.name}: {what}; training stopped. {kept} Start afresh with --overwrite and "
                f"{', '.join(fixes[:-1]) + ' or ' + fixes[-1] if len(fixes) > 1 else fixes[0]}")

    def log_window(self, window: LogWindow, bar: tqdm) -> None:
        means, speed = window.close()
        self.log({**means, "step": self.step, "epoch": self.step / self.batches.per_epoch,
                  "time": round(self.elapsed, 3), "lr": self.rates.current(), "images_per_s": speed})
        shown = means.get("loss", next(iter(means.values()), math.nan))
        self.shown = {"loss": f"{shown:.4g}", "img_s": f"{speed:.0f}"}
        bar.set_postfix(**({"step": self.step} if self.cfg.time_budget else {}), **self.shown)

    # ------------------------------------------------------------------ run folder

    def log(self, record: dict) -> None:
        if self.ddp.main:
            runs.append_metrics_log(self.run_dir, record)

    def trim_log(self) -> None:
        """Before training on from a checkpoint: drop the log lines written after it (those steps are
        done again) and the last session's end record."""
        if self.ddp.main:
            log = runs.read_metrics_log(self.run_dir)
            kept = [r for r in log if r.get("step", 0) <= self.step and "event" not in r]
            runs.write_metrics_log(self.run_dir, kept)

    def save_checkpoint(self) -> None:
        self.checkpoints.save(self.model, self.optimizers, self.step, self.elapsed, self.window)

    # ------------------------------------------------------------------ epoch ends

    def epoch_hook(self, epoch: int) -> None:
        """The model's own epoch-end report (before the checkpoint; e.g. a GAN's averages and coverage)."""
        # A model that checks its samples at epoch ends is handed the evaluator; models never load it themselves.
        evaluator, why = evaluator_or_reason(str(self.device)) if self.model.uses_evaluator else (None, "")
        with forked_rng(self.device):  # pictures and hooks must not move the training RNG: a resume would diverge
            extra = self.model.epoch_end(epoch, evaluator=evaluator) or {}
        if why:
            extra["evaluator"] = f"unavailable: {why}"
        if extra:
            self.log({"step": self.step, "epoch": epoch, **extra})
            if extra.get("warning") and self.ddp.main:
                tqdm.write(f"genzoo: warning (epoch {epoch}): {extra['warning']}", file=sys.stderr)

    def epoch_outputs(self, epoch: int, stops: StopSignals) -> None:
        """After the epoch's checkpoint: its sample grid and its test pass (a signal stops them at once)."""
        if self.cfg.sample_every and epoch % self.cfg.sample_every == 0:
            self.sample_grid(epoch, stops)
        test_due = self.cfg.test_every and epoch % self.cfg.test_every == 0 and len(self.dataset.test_x)
        if test_due and self.model.training_mode == "gradient" and self.ddp.main:
            with self.in_phase("test pass", stops):
                self.log({"step": self.step, "epoch": epoch, "time": round(self.elapsed, 3), **self.test_pass()})

    @contextmanager
    def in_phase(self, name: str, stops: StopSignals, ticking: bool = False):
        """A phase after the checkpoint: a signal ends it at once; its name goes into the stop message."""
        self.phase = name
        with stops.immediate(), progress.ticking(name, self.progress and ticking):
            yield
        self.phase = ""

    def sample_grid(self, epoch: int, stops: StopSignals) -> None:
        if self.ddp.main:
            with self.in_phase(f"sample grid of epoch {epoch}", stops, ticking=True):
                write_sample_grid(self.model, self.cfg.n_grid, self.seed, self.run_dir / "samples", epoch)

    # ------------------------------------------------------------------ the end

    def finish(self, stops: StopSignals) -> None:
        """The end record, then (unless a signal stopped training) the model's pictures."""
        if self.stop_reason == "time budget reached" and self.step % self.batches.per_epoch and self.cfg.sample_every:
            self.sample_grid(self.epoch, stops)  # a picture of where it stopped
        self.log_end()
        if stops.requested:  # training stopped at its last step: the pictures wait for --resume
            self.mark_skipped_pictures()
        elif self.ddp.main:
            self.make_pictures(stops)

    def log_end(self) -> None:
        record = {"event": "end", "step": self.step, "train_seconds": round(self.elapsed, 3),
                  "images_per_s": self.step * self.batches.size / max(self.elapsed, 1e-9),
                  "steps_this_session": self.step - self.start_step, "device": runs.hardware(self.device),
                  "world_size": self.ddp.world}
        if self.model.training_mode == "fit":  # no steps: the fit's images/s and its EM iterations
            record.update(images_per_s=self.batches.n / max(self.elapsed, 1e-9), steps_this_session=0,
                          fit="EM" if self.model.fit_iterations() else "closed form")
            for key in ("n_iter", "mean_em_iterations"):
                if key in self.fit_out:
                    record["em_iterations"] = self.fit_out[key]
        if self.stop_reason:
            record["stopped"] = self.stop_reason
            self.say_stopped()
        self.log(record)
        self.ended = True

    def say_stopped(self) -> None:
        if self.ddp.main and self.stop_reason == "time budget reached" and not self.phase:
            budget = self.cfg.time_budget
            print(f"genzoo: {self.model.name}: trained for its time budget of {budget:g} s: {self.step:,} steps "
                  f"({self.step / self.batches.per_epoch:.3g} epochs), checkpointed in {self.run_dir}. To train it "
                  f"for longer: genzoo train {self.model.name} --out {self.run_dir} --resume --time-budget "
                  f"{2 * budget:g}", file=sys.stderr)
            return
        if self.ddp.main:
            during = f" during the {self.phase}" if self.phase else ""
            then = "the pictures were skipped; make them" if self.step >= self.total else "continue"
            print(f"genzoo: {self.stop_reason} at step {self.step}/{self.total}{during} (checkpointed); {then} with: "
                  f"genzoo train {self.model.name} --out {self.run_dir} --resume", file=sys.stderr)

    def make_pictures(self, stops: StopSignals) -> None:
        with self.in_phase("pictures", stops, ticking=True), forked_rng(self.device):
            self.model.eval()
            save_pictures(self.model.pictures(self.dataset), self.run_dir)
            self.model.train()

    def interrupted(self, stops: StopSignals) -> None:
        """A signal ended a phase after the checkpoint: say so, and mark skipped pictures for --resume."""
        self.stop_reason = f"stopped by {stops.requested}"
        if self.ended:
            self.say_stopped()
        else:
            self.log_end()
        self.mark_skipped_pictures()

    def mark_skipped_pictures(self) -> None:
        if self.step >= self.total:  # a finished run: --resume makes them (an unfinished one's come at its end)
            self.log({"event": PICTURES_SKIPPED, "step": self.step})

    def resume_finished(self) -> Path:
        """--resume of a finished run: make the pictures a signal skipped, else leave the run as it is."""
        log = runs.read_metrics_log(self.run_dir)
        if not self.ddp.main:
            return self.run_dir
        if not (log and log[-1].get("event") == PICTURES_SKIPPED):
            print(f"genzoo: {self.run_dir} already finished ({self.step} steps)", file=sys.stderr)
            return self.run_dir
        print(f"genzoo: {self.run_dir} is finished; making the pictures that were skipped", file=sys.stderr)
        with StopSignals() as stops:
            try:
                self.make_pictures(stops)
                runs.write_metrics_log(self.run_dir, log[:-1])
            except Interrupted:
                print(f"genzoo: stopped by {stops.requested} again; the pictures are still to be made", file=sys.stderr)
        stops.reraise()
        return self.run_dir

    # ------------------------------------------------------------------ closed-form models

    def fit(self) -> None:
        """A model fitted in one go (EM, closed form): progress per EM iteration where the model counts them."""
        start = time.perf_counter()
        most = self.model.fit_iterations()
        if self.ddp.main:
            what = f"EM, at most {most:,} iterations (--set max_iter=N)" if most else "in closed form"
            print(f"genzoo: fitting {self.model.name} on {self.batches.n:,} images, {what} ...", file=sys.stderr)
        x = binarize(self.batches.x) if self.model.binary_data else self.batches.x
        if most:
            with progress.bar(most, f"{self.model.name}: EM", "iteration", self.progress) as bar:
                out = self.model.fit(x, self.batches.y, on_iteration=lambda bound: bar.update(1)) or {}
        else:
            with progress.ticking(f"{self.model.name}: fitting", self.progress):
                out = self.model.fit(x, self.batches.y) or {}
        self.elapsed = time.perf_counter() - start
        self.fit_out = out
        self.step = self.total
        self.log({"step": 0, "epoch": 1, **out})
        self.save_checkpoint()
