"""Progress bars on stderr: training steps, the test pass, and phases whose length is not known."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from tqdm import tqdm


def bar(total: int | None, desc: str, unit: str, enabled: bool, initial: int = 0, delay: float = 0.0) -> tqdm:
    """A bar shown after `delay` seconds; a delayed one (a phase that is often short) is erased when done."""
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=not enabled, dynamic_ncols=True,
                delay=delay, leave=not delay, file=sys.stderr)


@contextmanager
def ticking(desc: str, enabled: bool, delay: float = 2.0) -> Iterator[None]:
    """For work done inside a model (sampling, pictures) whose length the trainer does not know: after
    `delay` seconds, a line with `desc` and the time spent so far, refreshed every second."""
    if not enabled:
        yield
        return
    done = threading.Event()
    shown: list[tqdm] = []

    def tick() -> None:
        if done.wait(delay):
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
