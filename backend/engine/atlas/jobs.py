"""Long atlas analyses as background jobs: an executor of one worker, progress, cancellation, stored results.

A job's id is a hash of its kind, its canonical parameters and what makes its numbers (model
fingerprint, dtype, task hash, max_tokens), so the same request always names the same job. Finished
results go to a ``jobs`` table in the engine's SQLite file; after a restart, ``get`` and ``submit``
find them there and answer at once, without running the model. Jobs run one at a time (a
``ThreadPoolExecutor`` with one worker, a future per job); their model work goes through the engine's
scheduler as time-sized chunks at batch priority, so an interactive request waits at most for one chunk,
and a cancel takes effect before the next chunk. The `means` job is the exception to "one at a time": mean
mode waits for it (the dashboard shows its progress before a mean-mode score), so it runs in a worker of
its own instead of queueing behind a sweep; its chunks still queue in the one scheduler.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from headscope.engine.atlas import runner
from headscope.engine.atlas.common import JobCancelled
from headscope.engine.engine import Engine
from headscope.engine.errors import EngineError
from headscope.engine.records import Record
from headscope.engine.store import ensure_table

log = logging.getLogger(__name__)

STATES = ("queued", "running", "done", "failed", "cancelled")
JOBS_COLUMNS = ("id TEXT PRIMARY KEY, kind TEXT NOT NULL, params TEXT NOT NULL, model TEXT NOT NULL, "
                "task TEXT NOT NULL, result TEXT NOT NULL, elapsed_s REAL NOT NULL, finished REAL NOT NULL, "
                "version TEXT NOT NULL")


class StoredJob(Record):
    """A finished job as the ``jobs`` table keeps it; a row that does not parse is a miss."""

    kind: str
    params: dict
    result: dict
    elapsed_s: float


@dataclass
class Job:
    """One analysis and where it stands."""

    id: str
    kind: str
    params: dict
    state: str = "queued"
    progress: float = 0.0
    eta_s: float | None = None
    result: dict | None = None
    error: str | None = None
    stored: bool = False  # the result came from the store, not from this process
    elapsed_s: float | None = None
    started: float | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event, repr=False)
    future: Future | None = field(default=None, repr=False)  # the executor's handle while queued or running

    def to_dict(self, with_result: bool = True) -> dict:
        """The job object of docs/api.md, plus the parameters and timing."""
        return {"id": self.id, "kind": self.kind, "state": self.state, "progress": self.progress,
                "eta_s": self.eta_s, "result": self.result if with_result else None, "error": self.error,
                "params": self.params, "stored": self.stored, "elapsed_s": self.elapsed_s}


class JobManager:
    """Queues, runs, cancels and remembers atlas jobs for one engine."""

    def __init__(self, engine: Engine, *, base_model: str | None = None) -> None:
        self.engine = engine
        self.base_model = base_model
        self._jobs: dict[str, Job] = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="headscope-jobs")  # one at a time
        self._means_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="headscope-means")
        self._lock = threading.Lock()
        store = engine.store
        with store.locked():
            ensure_table(store.connection(), "jobs", JOBS_COLUMNS)
            store.connection().commit()

    # -- identity and storage -------------------------------------------------------------------
    def job_id(self, params: dict) -> str:
        identity = {"params": params, **self.engine.identity()}
        if params["kind"] == "similarity":
            identity["base_model"] = self.base_model
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]

    def _stored(self, job_id: str) -> Job | None:
        store = self.engine.store
        with store.locked():
            row = store.connection().execute(
                "SELECT kind, params, result, elapsed_s FROM jobs WHERE id = ? AND model = ? AND task = ? "
                "AND version = ?",
                (job_id, self.engine.model.fingerprint, self.engine.task.content_hash, store.version)).fetchone()
        if row is None:
            return None
        try:
            stored = StoredJob(kind=row[0], params=json.loads(row[1]), result=json.loads(row[2]), elapsed_s=row[3])
        except (TypeError, ValueError):  # not JSON, or not the shape above (pydantic's error is a ValueError)
            return None
        return Job(id=job_id, kind=stored.kind, params=stored.params, state="done", progress=1.0, eta_s=0.0,
                   result=stored.result, stored=True, elapsed_s=stored.elapsed_s)

    def record(self, params: dict, result: dict, elapsed_s: float = 0.0) -> str:
        """Store a finished result (also used by `headscope sweep`, so the server shows it at once)."""
        job_id = self.job_id(params)
        store = self.engine.store
        with store.locked():
            store.connection().execute(
                "INSERT OR REPLACE INTO jobs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (job_id, params["kind"], json.dumps(params), self.engine.model.fingerprint,
                 self.engine.task.content_hash, json.dumps(result), elapsed_s, time.time(), store.version))
            store.connection().commit()
        return job_id

    # -- the public operations ------------------------------------------------------------------
    def submit(self, kind: str, mode: str | None = "zero", split: str | None = None, limit: int | None = None,
               **extra: object) -> Job:
        """Queue a job (or find the same one queued, running or finished); bad parameters raise InputError."""
        params = runner.normalise_params(self.engine, kind, mode, split, limit, **extra)
        job_id = self.job_id(params)
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None and job.state in ("queued", "running", "done"):
                return job
            stored = self._stored(job_id)
            if stored is not None:
                self._jobs[job_id] = stored
                return stored
            job = Job(id=job_id, kind=kind, params=params)
            self._jobs[job_id] = job
            executor = self._means_executor if kind == "means" else self._executor
            job.future = executor.submit(self._run, job)
        return job

    def lookup(self, kind: str, mode: str | None = "zero", split: str | None = None, limit: int | None = None,
               **extra: object) -> tuple[dict, Job | None]:
        """A request's canonical parameters and its job if one is known, without starting anything."""
        params = runner.normalise_params(self.engine, kind, mode, split, limit, **extra)
        return params, self.get(self.job_id(params))

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None and (job := self._stored(job_id)) is not None:
                self._jobs[job_id] = job
            return job

    def list(self) -> list[Job]:
        """Jobs of this process and finished ones stored for this model and task, newest first."""
        store = self.engine.store
        with store.locked():
            ids = [row[0] for row in store.connection().execute(
                "SELECT id FROM jobs WHERE model = ? AND task = ? AND version = ? ORDER BY finished DESC",
                (self.engine.model.fingerprint, self.engine.task.content_hash, store.version))]
        with self._lock:
            live = list(self._jobs)
        return [job for job_id in dict.fromkeys([*reversed(live), *ids]) if (job := self.get(job_id)) is not None]

    def cancel(self, job_id: str) -> Job | None:
        """Stop a queued or running job (a running one stops at its next chunk); finished jobs stay."""
        job = self.get(job_id)
        if job is None:
            return None
        with self._lock:
            if job.state in ("queued", "running"):
                job.cancel_event.set()  # a running job stops before its next chunk
            if job.state == "queued" and job.future is not None and job.future.cancel():
                job.state, job.eta_s = "cancelled", None  # never started
        return job

    def wait(self, job_id: str, timeout: float = 60.0) -> Job:
        """Block until the job is no longer queued or running (for tests and scripts)."""
        job = self.get(job_id)
        if job is None:
            raise KeyError(job_id)
        if job.future is not None:
            done, _ = futures.wait([job.future], timeout=timeout)
            if not done:
                raise TimeoutError(f"job {job_id} still {job.state} after {timeout} s")
        return job

    def close(self) -> None:
        """Cancel what is queued or running and stop the executor (at app shutdown)."""
        with self._lock:
            for job in self._jobs.values():
                if job.state in ("queued", "running"):
                    job.cancel_event.set()
        for executor in (self._executor, self._means_executor):
            executor.shutdown(wait=True, cancel_futures=True)

    # -- the worker ---------------------------------------------------------------------------------
    def _run(self, job: Job) -> None:
        """Run one job in the executor's thread; its model work queues chunk by chunk at batch priority
        through the engine's scheduler."""
        if job.cancel_event.is_set():
            job.state, job.eta_s = "cancelled", None
            return
        started = time.monotonic()
        job.state, job.started, job.progress, job.eta_s, job.error = "running", started, 0.0, None, None

        def progress(share: float) -> None:
            share = min(max(share, 0.0), 1.0)
            job.progress = share
            elapsed = time.monotonic() - started
            job.eta_s = elapsed * (1 - share) / share if share > 0 else None

        try:
            result = runner.run_job(self.engine, job.kind, job.params, progress, job.cancel_event.is_set,
                                    base_model=self.base_model)
        except JobCancelled:
            job.state, job.eta_s = "cancelled", None
            return
        except EngineError as exc:
            job.state, job.error, job.eta_s = "failed", str(exc), None
            return
        except Exception as exc:  # a job must never take the worker down
            log.exception("job %s (%s) failed", job.id, job.kind)
            job.state, job.error, job.eta_s = "failed", f"internal error: {type(exc).__name__}", None
            return
        job.elapsed_s = time.monotonic() - started
        self.record(job.params, result, job.elapsed_s)
        job.result, job.progress, job.eta_s, job.state = result, 1.0, 0.0, "done"
