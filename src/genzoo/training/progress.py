"""Progress on stderr: training steps, the test pass, evaluation passes, and phases whose length is not known.

On a terminal, tqdm bars redraw in place. When stderr is not a terminal (a log file, a pipe, CI), bar
redraws would pile up as one endless line, so progress is written as plain lines instead: one each time
another LINE_EVERY of the work is done (and at the end), each with the elapsed time, the rate and the
time left.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tqdm import tqdm

LINE_EVERY = 0.05  # without a terminal: a line per 5 % of the work
TICK_LINE_SECONDS = 30.0  # without a terminal, a phase of unknown length: a line every 30 s


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60:02d}:{seconds % 60:02d}"


class Lines:
    """The part of tqdm's interface that genzoo uses, written as one line per LINE_EVERY of the total.

    `budget`: the total is a time budget in seconds (the line then reads "12/60 s of its time budget").
    """

    def __init__(self, total: float | None, desc: str, unit: str, initial: float = 0, delay: float = 0.0,
                 file: Any = None, budget: bool = False):
        self.total, self.desc, self.unit, self.n = total, desc, unit, initial
        self.delay, self.file, self.budget = delay, file or sys.stderr, budget
        self.start = self.last_time = time.monotonic()
        self.first = initial
        self.paused_at: float | None = None
        self.next_share = (int(initial / total / LINE_EVERY) + 1) * LINE_EVERY if total else 0.0
        self.postfix = ""
        self.closed = False

    def __enter__(self) -> Lines:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _elapsed(self) -> float:
        return time.monotonic() - self.start

    def _line(self) -> str:
        elapsed = self._elapsed()
        done = self.n - self.first
        if self.budget:
            head = f"{self.desc}: {self.n:.0f}/{self.total:.0f} s of its time budget"
        elif self.total:
            head = f"{self.desc}: {100 * self.n / self.total:3.0f}% {self.n:,.0f}/{self.total:,.0f} {self.unit}"
        else:
            head = f"{self.desc}: {self.n:,.0f} {self.unit}"
        rate = ""
        if done > 0 and elapsed > 0 and not self.budget:
            per = elapsed / done
            rate = f", {1 / per:.3g} {self.unit}/s" if per < 1 else f", {per:.3g} s/{self.unit}"
        left = ""
        if self.total and done > 0 and self.n < self.total:
            left = f", about {_clock((self.total - self.n) * elapsed / done)} left"
        postfix = f" [{self.postfix}]" if self.postfix else ""
        return f"{head} ({_clock(elapsed)} elapsed{rate}{left}){postfix}"

    def _print(self) -> None:
        if self._elapsed() >= self.delay:
            print(self._line(), file=self.file, flush=True)
            self.last_time = time.monotonic()

    def update(self, n: float = 1) -> None:
        self.n += n
        if self.total and self.n / self.total >= self.next_share - 1e-12:
            while self.next_share <= self.n / self.total + 1e-12:
                self.next_share += LINE_EVERY
            if self.n < self.total:
                self._print()
        elif not self.total and time.monotonic() - self.last_time >= TICK_LINE_SECONDS:
            self._print()

    def set_postfix(self, **values: Any) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def refresh(self) -> None:
        pass

    def pause(self) -> None:
        self.paused_at = time.monotonic()

    def unpause(self) -> None:
        if self.paused_at is not None:
            self.start += time.monotonic() - self.paused_at
            self.paused_at = None

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.n > self.first or not self.total:
                self._print()


def is_terminal(file: Any = None) -> bool:
    file = file or sys.stderr
    return bool(getattr(file, "isatty", lambda: False)())


def bar(total: float | None, desc: str, unit: str, enabled: bool, initial: float = 0, delay: float = 0.0,
        budget: bool = False) -> tqdm | Lines:
    """A progress bar on a terminal, lines elsewhere. Shown after `delay` seconds; a delayed bar (a phase that is
    often short) is erased when done. `budget`: the total is a time budget in seconds, updated with the time
    spent (the bar then shows elapsed / budget, not a step count the run will not reach)."""
    if not is_terminal():
        if not enabled:
            return tqdm(total=total, disable=True)
        return Lines(total, desc, unit, initial=initial, delay=delay, budget=budget)
    fmt = ("{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s of its time budget{postfix}" if budget
           else None)  # tqdm puts ", " before a postfix
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=not enabled, dynamic_ncols=True,
                delay=delay, leave=not delay, file=sys.stderr, bar_format=fmt)


def pause(progress: tqdm | Lines) -> None:
    """Stop the bar's clock (a phase that is not the bar's work, such as the pictures, is about to run)."""
    if isinstance(progress, Lines):
        progress.pause()
    elif not progress.disable:
        progress.refresh()  # tqdm's unpause counts from its last print: print now


def unpause(progress: tqdm | Lines) -> None:
    """Start the bar's clock again: its rate and time left leave out the time since `pause`."""
    if isinstance(progress, Lines):
        progress.unpause()
    elif not progress.disable:
        progress.unpause()


@contextmanager
def ticking(desc: str, enabled: bool, delay: float = 2.0) -> Iterator[None]:
    """For work done inside a model (sampling, pictures) whose length the caller does not know: after
    `delay` seconds, a line with `desc` and the time spent so far, refreshed every second on a terminal
    (every TICK_LINE_SECONDS as a new line elsewhere)."""
    if not enabled:
        yield
        return
    done = threading.Event()
    shown: list[tqdm] = []
    terminal = is_terminal()
    start = time.monotonic()

    def tick() -> None:
        if done.wait(delay):
            return
        if not terminal:
            print(f"{desc}: started ({_clock(time.monotonic() - start)} so far)", file=sys.stderr, flush=True)
            while not done.wait(TICK_LINE_SECONDS):
                print(f"{desc}: {_clock(time.monotonic() - start)} so far", file=sys.stderr, flush=True)
            return
        shown.append(tqdm(total=None, desc=desc, bar_format="{desc}: {elapsed} (Ctrl-C skips it)", leave=False,
                          file=sys.stderr))
        while not done.wait(1.0):
            shown[0].refresh()

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    try:
        yield
    finally:
        done.set()
        ticker.join()
        if shown:
            shown[0].close()
        elif not terminal and time.monotonic() - start >= delay:
            print(f"{desc}: done in {_clock(time.monotonic() - start)}", file=sys.stderr, flush=True)
