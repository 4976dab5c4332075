"""One writer per run folder: RUN/.genzoo.lock, held by the process that trains or evaluates into it.

Two trainers writing one folder leave a config.json of one beside the weights of the other, and nothing says
so; two evaluations would overwrite each other's partial sums. The lock is an advisory `flock` on a file that
holds the holder's PID and command: the kernel drops it when the process dies, however it dies, so a lock left
behind by a killed process is taken over (with a message naming the dead holder) and a live one is refused at
once with its PID and command. Readers (sampling, pictures, reports, the app) never take it: every file they
read is written atomically.
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .runs import RunError

LOCK = ".genzoo.lock"


class RunBusyError(RunError):
    """Another live process holds the run folder's lock."""


_held: dict[Path, list] = {}  # run folder -> [open lock file, depth]: a process may nest its own holds


def _describe(holder: dict[str, Any]) -> str:
    return f"PID {holder.get('pid', '?')} on {holder.get('host', '?')}, `{holder.get('command', '?')}`, " \
           f"since {holder.get('since', '?')}"


def _read_holder(f) -> dict[str, Any] | None:
    f.seek(0)
    text = f.read()
    if not text.strip():
        return None
    try:
        holder = json.loads(text)
    except json.JSONDecodeError:
        return {"pid": "?", "command": text.strip()[:200]}
    return holder if isinstance(holder, dict) else None


def acquire(run_dir: str | Path, purpose: str) -> None:
    """Take RUN's lock for `purpose` (e.g. "training"), creating the folder; nested calls in one process count.

    Raises RunBusyError (the holder's PID and command) when another live process holds it. A lock file that
    still names a holder, although nobody holds the lock, was left by a process that died: it is taken over,
    with a message on stderr that names that process.
    """
    run_dir = Path(run_dir)
    key = run_dir.resolve()
    if key in _held:
        _held[key][1] += 1
        return
    path = run_dir / LOCK
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        f = open(path, "a+")
    except OSError as e:
        raise RunError(f"{path}: cannot create the run's lock ({e.strerror}); {purpose} writes into {run_dir}, "
                       "so it needs a folder it may write to") from None
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_holder(f) or {}
        f.close()
        raise RunBusyError(f"{run_dir}: in use by another process ({_describe(holder)}); one process writes a run "
                           f"folder at a time. Wait for it to end, or stop it (kill {holder.get('pid', 'PID')}), "
                           "then run the command again") from None
    left = _read_holder(f)
    if left is not None:
        print(f"genzoo: {run_dir}: taking over the lock left by {_describe(left)}, which is no longer running",
              file=sys.stderr, flush=True)
    f.seek(0)
    f.truncate()
    f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv),
                        "purpose": purpose, "since": time.strftime("%Y-%m-%dT%H:%M:%S")}) + "\n")
    f.flush()
    _held[key] = [f, 1, run_dir if created else None]


def release(run_dir: str | Path) -> None:
    """Give back a hold taken by `acquire`; the last one empties the lock file (a clean end) and unlocks it."""
    key = Path(run_dir).resolve()
    entry = _held.get(key)
    if entry is None:
        return
    entry[1] -= 1
    if entry[1] > 0:
        return
    del _held[key]
    f, created = entry[0], entry[2]
    try:
        f.seek(0)
        f.truncate()  # empty: no holder to report as dead next time
    finally:
        fcntl.flock(f, fcntl.LOCK_UN)
        f.close()
    if created is not None and [p.name for p in created.iterdir()] == [LOCK]:
        # the folder was made for the lock and nothing was written (a refused command): leave no trace
        (created / LOCK).unlink()
        created.rmdir()


class hold:
    """`with hold(run_dir, "evaluation"):` the lock for a block (see `acquire`)."""

    def __init__(self, run_dir: str | Path, purpose: str):
        self.run_dir, self.purpose = Path(run_dir), purpose

    def __enter__(self) -> hold:
        acquire(self.run_dir, self.purpose)
        return self

    def __exit__(self, *exc: object) -> None:
        release(self.run_dir)


def empty_run_folder(run_dir: str | Path) -> None:
    """Delete everything in a run folder but its lock (`--overwrite`): deleting the lock file while it is held
    would let a third process lock a fresh file of the same name and write beside the holder."""
    for entry in Path(run_dir).iterdir():
        if entry.name == LOCK:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def holder(run_dir: str | Path) -> dict[str, Any] | None:
    """Who holds RUN's lock now (its PID, host, command, purpose, since), or None; never blocks."""
    path = Path(run_dir) / LOCK
    try:
        with open(path) as f:
            try:
                fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return _read_holder(f)
            fcntl.flock(f, fcntl.LOCK_UN)
            return None
    except FileNotFoundError:
        return None


def training_rank() -> int:
    """This process's rank under torchrun (0 alone): only rank 0 writes the run folder, so only it locks."""
    return int(os.environ.get("RANK", "0"))


def locks_run(train: Callable) -> Callable:
    """Decorate `genzoo.trainer.train(model, data, out, ...)`: the run folder's lock is held from before the
    folder is looked at until training ends, by rank 0."""

    @functools.wraps(train)
    def locked(model: Any, data: Any = "auto", out: str | Path | None = None, **kwargs: Any):
        if training_rank() != 0:
            return train(model, data, out, **kwargs)
        name = model if isinstance(model, str) else model.name
        with hold(Path(out) if out is not None else Path("runs") / name, "training"):
            return train(model, data, out, **kwargs)

    return locked
