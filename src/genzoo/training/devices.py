"""The device, data-parallel ranks, the autocast choice and the RNG fork."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
import torch.distributed as dist

from . import TrainingError


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except RuntimeError:
        raise TrainingError(f"--device {device}: not a device; use auto, cpu or cuda (cuda:N for one of several GPUs)"
                            ) from None
    if device.type not in ("cpu", "cuda"):
        raise TrainingError(f"--device {device}: genzoo runs on cpu or cuda; use --device auto, cpu or cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainingError("--device cuda: no CUDA device is available here; use --device cpu or auto")
    return device


def forked_rng(device: torch.device):
    """A context in which torch's random draws (CPU, and `device`'s if a GPU) leave the outer stream as it was."""
    return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])


def autocast_for(amp: bool, device: torch.device, model: Any) -> Callable[[], AbstractContextManager]:
    """The context factory for training's forward passes: bf16 autocast on CUDA when `amp` is on and
    the model says it is safe for its loss (`amp_safe`), otherwise no autocast."""
    if amp and device.type == "cuda" and model.amp_safe:
        return functools.partial(torch.autocast, "cuda", dtype=torch.bfloat16)
    return nullcontext


class Distributed:
    """Rank, world size and process group under torchrun; a single process otherwise."""

    def __init__(self, device: torch.device):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.enabled = self.world > 1
        self.device = device
        if self.enabled and device.type == "cuda":
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(self.device)
        if self.enabled and not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def any(self, *flags: bool) -> tuple[bool, ...]:
        """Each flag, true if it is true on any rank (every rank must call this at the same step)."""
        if not self.enabled:
            return flags
        votes = torch.tensor([int(f) for f in flags], device=self.device)
        dist.all_reduce(votes, op=dist.ReduceOp.MAX)
        return tuple(bool(v) for v in votes.tolist())

    def gather(self, obj: Any) -> list[Any]:
        """`obj` of every rank, in rank order (every rank must call this at the same step)."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out
