"""Heavy work of `genzoo serve` (pixel-model completion and sampling, diffusion sampling, editing) as jobs.

Each run has its own queue and at most one worker thread, so one model does one heavy job at a
time and the others wait their turn, in order, while light requests are answered meanwhile.
A job reports progress and can be cancelled: the models' long loops (a pixel model's pixels, a
diffusion sampler's steps) report each step to the one callback of `models.base.reporting_progress`,
which records it on the job and stops a cancelled one there; and every submodule gets a forward
pre-hook that stops the job at its next network call once it is cancelled (work outside those
loops, such as an editor's encoding of its instruction, stops too).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import traceback
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..models.base import reporting_progress
from .inputs import InputError

log = logging.getLogger("genzoo.serve")

MAX_QUEUED_PER_RUN = 8
KEEP_FINISHED = 200


class Cancelled(Exception):
    """Raised inside a job's computation when the job has been cancelled."""


@dataclass
class Job:
    run: str
    kind: str
    work: Callable[[Job], dict]
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    status: str = "queued"  # queued -> running -> done | error | cancelled
    progress: float | None = None  # 0..1 where the steps are known
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    result: dict | None = None
    error: str | None = None
    cancel_requested: threading.Event = field(default_factory=threading.Event)

    def check(self) -> None:
        """Stop here if the job was cancelled."""
        if self.cancel_requested.is_set():
            raise Cancelled(self.id)

    def tick(self, done: int, total: int) -> None:
        """Record `done` of `total` steps, and stop if the job was cancelled."""
        self.progress = min(1.0, done / max(total, 1))
        self.check()

    def view(self, position: int | None = None) -> dict[str, Any]:
        seconds = (self.finished or time.time()) - (self.started or self.created)
        return {"id": self.id, "run": self.run, "kind": self.kind, "status": self.status, "progress": self.progress,
                "queue_position": position, "seconds": round(seconds, 2), "error": self.error,
                "result": self.result}


class JobBoard:
    """Queues of heavy jobs, one per run, each drained by its own worker thread."""

    def __init__(self, max_queued_per_run: int = MAX_QUEUED_PER_RUN, keep_finished: int = KEEP_FINISHED):
        self.max_queued = max_queued_per_run
        self.keep_finished = keep_finished
        self.lock = threading.Lock()
        self.jobs: OrderedDict[str, Job] = OrderedDict()
        self.queues: dict[str, deque[Job]] = {}
        self.workers: dict[str, threading.Thread] = {}

    def submit(self, run: str, kind: str, work: Callable[[Job], dict]) -> Job:
        """Queue `work(job) -> result dict` on the run's queue; 429 when that queue is full."""
        with self.lock:
            queue = self.queues.setdefault(run, deque())
            if len(queue) >= self.max_queued:
                raise InputError(f"{run}: {len(queue)} jobs are already waiting for this model (at most "
                                 f"{self.max_queued}); wait for one to finish or cancel one", 429)
            job = Job(run, kind, work)
            self.jobs[job.id] = job
            queue.append(job)
            self._forget_old()
            if run not in self.workers:
                worker = threading.Thread(target=self._drain, args=(run,), name=f"genzoo-serve {run}", daemon=True)
                self.workers[run] = worker
                worker.start()
        return job

    def get(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise InputError(f"no job {job_id!r} (finished jobs are kept for the last {self.keep_finished})", 404)
        return job

    def cancel(self, job_id: str) -> Job:
        """Cancel a queued job at once, a running one at its next step; a finished job stays as it is."""
        with self.lock:
            job = self.get(job_id)
            job.cancel_requested.set()
            queue = self.queues.get(job.run, deque())
            if job.status == "queued" and job in queue:
                queue.remove(job)
                job.status, job.finished = "cancelled", time.time()
        return job

    def position(self, job: Job) -> int | None:
        """0 for the running job, 1.. for the ones waiting behind it, None when finished."""
        if job.status == "running":
            return 0
        queue = self.queues.get(job.run, ())
        return list(queue).index(job) if job in queue else None

    def view(self, job: Job) -> dict[str, Any]:
        with self.lock:
            return job.view(self.position(job))

    def views(self) -> list[dict[str, Any]]:
        """Unfinished jobs first (running, then queued in order), then the latest finished ones."""
        with self.lock:
            views = [job.view(self.position(job)) for job in self.jobs.values()]
        live = [v for v in views if v["status"] in ("running", "queued")]
        live.sort(key=lambda v: (v["run"], v["queue_position"]))
        done = [v for v in views if v["status"] not in ("running", "queued")][-20:]
        return live + [{**v, "result": None} for v in reversed(done)]

    def shutdown(self, timeout: float = 10.0) -> None:
        """Cancel every queued and running job and wait (up to `timeout` s each) for the workers to stop."""
        with self.lock:
            for job in self.jobs.values():
                job.cancel_requested.set()
                if job.status == "queued":
                    job.status, job.finished = "cancelled", time.time()
            for queue in self.queues.values():
                while len(queue) > 1 or (queue and queue[0].status != "running"):
                    queue.pop()
            workers = list(self.workers.values())
        for worker in workers:
            worker.join(timeout)

    def _drain(self, run: str) -> None:
        while True:
            with self.lock:
                queue = self.queues[run]
                if not queue:
                    del self.workers[run]
                    return
                job = queue[0]
                job.status, job.started = "running", time.time()
            self._run(job)
            with self.lock:
                if queue and queue[0] is job:
                    queue.popleft()

    @staticmethod
    def _run(job: Job) -> None:
        from ..config import ConfigError
        from ..models.base import CapabilityError
        from ..runs import RunError

        try:
            job.check()
            job.result = job.work(job)
            job.status, job.progress = "done", 1.0
        except Cancelled:
            job.status = "cancelled"
        except (InputError, ConfigError, CapabilityError, RunError) as e:
            job.status, job.error = "error", str(e)
        except Exception as e:  # the worker must outlive any failure of one job; the log has the traceback
            log.error("job %s (%s on %s) failed:\n%s", job.id, job.kind, job.run, traceback.format_exc())
            job.status, job.error = "error", f"internal error: {type(e).__name__}: {e}"
        finally:
            job.finished = time.time()

    def _forget_old(self) -> None:
        finished = [j for j in self.jobs.values() if j.status not in ("queued", "running")]
        for job in finished[: max(0, len(finished) - self.keep_finished)]:
            del self.jobs[job.id]


@contextlib.contextmanager
def watched(model: nn.Module, job: Job) -> Iterator[None]:
    """For the job's time, in the job's own thread only (the one that enters this): progress from the model's
    loops through `reporting_progress`, and cancellation at each step and at the next forward call of any
    submodule."""
    worker = threading.get_ident()  # a light request may use the same model from another thread meanwhile

    def check(*_) -> None:
        if threading.get_ident() == worker:
            job.check()

    handles = [module.register_forward_pre_hook(check) for module in model.modules()]
    try:
        with reporting_progress(job.tick):
            yield
    finally:
        for handle in handles:
            handle.remove()
