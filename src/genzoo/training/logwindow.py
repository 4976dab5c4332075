"""The steps since the last log line: their values, images and time, read from the device in one sync."""

from __future__ import annotations

import math
import time

import torch


class NonFinite(Exception):
    """A step returned a NaN or infinite value."""

    def __init__(self, step: int, values: dict[str, float]):
        self.step = step
        self.bad = {k: v for k, v in values.items() if not math.isfinite(v)}
        super().__init__(", ".join(f"{k}={v}" for k, v in self.bad.items()))


class LogWindow:
    """Steps return their values as device tensors (or floats) so that a GPU never waits for the host
    between steps; `settle` reads them at log points and before every checkpoint, and `close`
    turns the window into a log line's means and images/s and starts the next one."""

    def __init__(self) -> None:
        self.pending: list[tuple[int, dict]] = []  # (step, values) still on the device
        self._reset(time.perf_counter())

    def _reset(self, now: float) -> None:
        self.sums: dict[str, float] = {}
        self.steps = 0  # settled steps in the sums
        self.images = 0
        self.start = now

    def add(self, step: int, values: dict, images: int) -> None:
        self.pending.append((step, values))
        self.images += images

    def settle(self, extra: torch.Tensor | None = None) -> list[float]:
        """Bring the pending values and `extra` (a 1-d tensor) to the host in one device sync; add the
        values to the sums and return `extra`'s. Raises NonFinite for the first step with a bad value."""
        parts = [v.detach().float().reshape(1)
                 for _, out in self.pending for v in out.values() if isinstance(v, torch.Tensor)]
        if extra is not None:
            parts.append(extra.float().reshape(-1))
        host = iter(torch.cat(parts).tolist() if parts else [])
        pending, self.pending = self.pending, []
        for step, out in pending:
            values = {k: next(host) if isinstance(v, torch.Tensor) else float(v) for k, v in out.items()}
            if not all(math.isfinite(v) for v in values.values()):
                raise NonFinite(step, values)
            for key, value in values.items():
                self.sums[key] = self.sums.get(key, 0.0) + value
            self.steps += 1
        return list(host)

    def state(self) -> dict:
        """The settled part of the window, for a checkpoint (taken right after `settle`): a resumed run's first
        log line then averages the same steps as an uninterrupted run's."""
        return {"sums": dict(self.sums), "steps": self.steps, "images": self.images,
                "seconds": time.perf_counter() - self.start}

    def restore(self, state: dict) -> None:
        self.sums, self.steps, self.images = dict(state["sums"]), int(state["steps"]), int(state["images"])
        self.start = time.perf_counter() - float(state["seconds"])

    def close(self) -> tuple[dict[str, float], float]:
        """The means of the settled values and the images/s since the window began; a new window starts."""
        now = time.perf_counter()
        means = {k: v / max(self.steps, 1) for k, v in self.sums.items()}
        speed = self.images / max(now - self.start, 1e-9)
        self._reset(now)
        return means, speed


class Clock:
    """Training seconds of a run, summed over its sessions (resumes)."""

    def __init__(self, before: float = 0.0):
        self.before, self.start = before, time.perf_counter()

    def elapsed(self) -> float:
        return self.before + time.perf_counter() - self.start
