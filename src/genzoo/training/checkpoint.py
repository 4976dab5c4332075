"""checkpoint.pt (what --resume reads) and model.safetensors (what `genzoo.load` reads).

Only rank 0 writes, each file atomically (a kill leaves the old file or the new one, never
half of one). Under torchrun every rank draws its own noise (seeded seed + rank), so the
checkpoint holds every rank's RNG state and each rank gets its own back.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from .. import runs
from . import TrainingError
from .devices import Distributed
from .logwindow import LogWindow


def rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


class Checkpoints:
    """Writes and restores a run's checkpoint; `step` and `time` say when the last one was written
    (step -1: none yet in this session, nor restored)."""

    def __init__(self, run_dir: Path, ddp: Distributed, device: torch.device, seed: int):
        self.run_dir, self.ddp, self.device, self.seed = run_dir, ddp, device, seed
        self.path = run_dir / runs.CHECKPOINT
        self.step = -1
        self.time = time.monotonic()

    def save(self, model: torch.nn.Module, optimizers: dict, step: int, elapsed: float,
             window: LogWindow | None = None) -> None:
        """Every rank calls this at the same step (their RNG states are gathered). `window`: the log window's
        settled steps, so that a resumed run's first log line averages the same steps as an uninterrupted run."""
        rngs = self.ddp.gather(rng_state(self.device))
        if self.ddp.main:
            runs.save_weights(model, self.run_dir / runs.WEIGHTS)
            state = {"model": model.state_dict(), "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
                     "step": step, "elapsed": elapsed, "rng": rngs[0]}
            if self.ddp.enabled:
                state["rng_ranks"] = rngs
            if window is not None:
                state["log_window"] = window.state()
            runs.atomic_torch_save(state, self.path)
        self.step, self.time = step, time.monotonic()

    def restore(self, model: torch.nn.Module, optimizers: dict, window: LogWindow | None = None) -> tuple[int, float]:
        """Load the checkpoint into the model, the optimizers and this rank's RNG; returns (step, elapsed).

        Checkpoints written before the trainer set the learning rates itself also hold "schedulers":
        not needed, the rate of a step follows from the step.
        """
        if not self.path.exists():
            raise TrainingError(f"{self.path}: no checkpoint to resume from; start the run again without --resume")
        state = runs.load_checkpoint(self.path, self.device)
        model.load_state_dict(state["model"])
        for key, opt in optimizers.items():
            opt.load_state_dict(state["optimizers"][key])
        self._restore_rng(state.get("rng_ranks", [state["rng"]]), state["step"])
        if window is not None and "log_window" in state:  # checkpoints from before it was kept: a shorter first line
            window.restore(state["log_window"])
        self.step = state["step"]
        return state["step"], state["elapsed"]

    def _restore_rng(self, ranks: list[dict], step: int) -> None:
        if len(ranks) == self.ddp.world:
            set_rng_state(ranks[self.ddp.rank], self.device)
            return
        # Another number of processes (or a checkpoint from before each rank's state was kept): the
        # ranks must not share one stream, so each draws anew from the seed, its rank and the step.
        torch.manual_seed(self.seed + self.ddp.rank + 1_000_003 * step)
        if self.ddp.main:
            print(f"genzoo: {self.path} holds the random state of {len(ranks)} process(es), not {self.ddp.world}: "
                  "training goes on with fresh noise, so it will not repeat an uninterrupted run bit for bit",
                  file=sys.stderr)
