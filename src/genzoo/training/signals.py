"""SIGINT and SIGTERM: training ends after the step in progress; a slow phase after the checkpoint ends at once."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Self

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(Exception):
    """A stop signal arrived in a phase that stops at once (the checkpoint was already on disk)."""

    def __init__(self, signal_name: str):
        super().__init__(signal_name)
        self.signal = signal_name


class StopSignals:
    """While training, a stop signal is noted (`requested`) and acted on after the step in progress,
    so that the checkpoint holds whole steps. Inside `immediate()` (a test pass, pictures: work
    after the checkpoint) it raises `Interrupted` at once instead.

    Handlers can only be set in the main thread; elsewhere signals keep their usual effect.
    """

    def __init__(self) -> None:
        self.requested: str | None = None
        self._immediate = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> Self:
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum, frame) -> None:
        self.requested = signal.Signals(signum).name
        if self._immediate:
            raise Interrupted(self.requested)

    @contextmanager
    def immediate(self) -> Iterator[None]:
        """A block that a stop signal ends at once (also one that came before it)."""
        if self.requested:
            raise Interrupted(self.requested)
        self._immediate = True
        try:
            yield
        finally:
            self._immediate = False

    def reraise(self) -> None:
        """Now that the checkpoint is on disk, let the signal do what it was sent for."""
        if self.requested == "SIGINT":
            raise KeyboardInterrupt
        if self.requested == "SIGTERM":
            raise SystemExit(128 + signal.SIGTERM)
