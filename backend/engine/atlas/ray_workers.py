"""Sweeps on a Ray cluster: a sweep's chunks of masks run on Ray actors, each holding the model on its own
device (one GPU per actor where the cluster has GPUs).

headscope does not schedule across machines; Ray places the actors, moves the data and reports failures.
This module only hands out the chunks a single process would run (:mod:`chunks`: the same masks per chunk,
the same batches, the same per-head means for `mean` ablation), one chunk in flight per actor, and puts the
predictions back in order, so the numbers equal a one-process run on the same device and dtype. The model
travels as its files through Ray's object store, so workers need no shared disk and load exactly the
weights the driver loaded (checked by fingerprint).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from headscope.engine.atlas.common import Cancelled, JobCancelled, Progress
from headscope.engine.engine import Engine
from headscope.engine.errors import EngineError
from headscope.engine.model import PICKLE_SUFFIXES, load_model
from headscope.engine.store import ResultStore
from headscope.engine.tasks import Task

log = logging.getLogger(__name__)

LOCAL = "local"  # HEADSCOPE_RAY_ADDRESS / --ray value that starts a Ray instance on this machine
POLL_S = 0.25  # how long one wait for a finished chunk lasts before cancellation is checked again
Head = tuple[int, int]


class RayError(EngineError):
    """Ray is missing, unreachable, or its workers disagree with the driver."""


class MaskWorker:
    """One Ray actor: the model loaded once on this actor's device, scoring chunks of masks."""

    def __init__(self, files: dict[str, bytes], task: Task, *, name: str, max_tokens: int, device: str | None,
                 dtype: str, batch_size: int, layer_cache_bytes: int, threads: int) -> None:
        torch.set_num_threads(threads)
        self._directory = tempfile.TemporaryDirectory(prefix="headscope-worker-")
        root = Path(self._directory.name)
        for file_name, data in files.items():
            (root / file_name).write_bytes(data)
        model = load_model(root, device=device, dtype=dtype, max_tokens=max_tokens, name=name)
        self.engine = Engine(model, task, ResultStore(root / "results.sqlite"), batch_size=batch_size,
                             layer_cache_bytes=layer_cache_bytes, attention_cache_bytes=0)

    def describe(self) -> tuple[str, str]:
        return self.engine.model.fingerprint, str(self.engine.model.device)

    def predict(self, masks: Sequence[Sequence[Head]], mode: str, split: str, limit: int | None,
                means: np.ndarray | None, rows_per_pass: int | None) -> np.ndarray:
        if means is not None:
            self.engine.use_head_means(torch.from_numpy(means))
        return self.engine.evaluate_many(masks, mode, split, limit, rows_per_pass=rows_per_pass)


def _ray():
    try:
        import ray
    except ImportError:  # the optional extra
        raise RayError('sweeps on Ray need the ray extra: pip install "headscope[ray]"') from None
    return ray


class MaskPool:
    """Ray actors that score a sweep's chunks; `workers` of them."""

    def __init__(self, engine: Engine, address: str, *, workers: int | None = None, dtype: str = "auto") -> None:
        ray = self._ray = _ray()
        self.engine = engine
        self._started = False
        if not ray.is_initialized():
            try:
                ray.init(address=None if address == LOCAL else address, include_dashboard=False,
                         logging_level=logging.WARNING, log_to_driver=False)
            except Exception as exc:  # unreachable address, version mismatch: say which
                raise RayError(f"cannot connect to the Ray cluster at {address!r}: {type(exc).__name__}: {exc}"
                               ) from None
            self._started = True
        directory = engine.model.directory
        if directory is None:
            raise RayError("this model was not loaded from files, so it cannot be sent to Ray workers")
        resources = ray.cluster_resources()
        gpus, cpus = int(resources.get("GPU", 0)), max(1, int(resources.get("CPU", 1)))
        self.workers = workers or gpus or cpus
        threads = 1 if gpus else max(1, cpus // self.workers)
        files = {p.name: p.read_bytes() for p in sorted(directory.iterdir())
                 if p.is_file() and p.suffix not in PICKLE_SUFFIXES}
        options = {"num_gpus": 1, "num_cpus": 1} if gpus else {"num_cpus": threads}
        actor = ray.remote(MaskWorker).options(**options)
        files_ref, task_ref = ray.put(files), ray.put(engine.task)
        self.actors = [
            actor.remote(files_ref, task_ref, name=engine.model.name, max_tokens=engine.model.max_tokens,
                         device=None if gpus else "cpu", dtype=dtype, batch_size=engine.batch_size,
                         layer_cache_bytes=engine.layer_cache_bytes, threads=threads)
            for _ in range(self.workers)
        ]
        described = ray.get([a.describe.remote() for a in self.actors])
        wrong = [d for d in described if d[0] != engine.model.fingerprint]
        if wrong:
            raise RayError(f"Ray workers loaded model {wrong[0][0]}, not the driver's {engine.model.fingerprint}")
        # the driver's pass size goes to workers on its kind of device (the same passes, so the same numbers);
        # workers on another kind (GPUs under a CPU driver) size their own passes
        self._same_device = all(torch.device(d[1]).type == engine.model.device.type for d in described)
        log.info("Ray: %d workers on %s", self.workers, ", ".join(sorted({d[1] for d in described})))

    def predict(self, chunks: Sequence[Sequence[Sequence[Head]]], mode: str, split: str, limit: int | None, *,
                rows_per_pass: int, progress: Progress, cancelled: Cancelled) -> np.ndarray:
        """Predictions ``[masks, n]`` of every chunk, in order, each chunk's passes `rows_per_pass` rows (the
        driver's); each actor has one chunk in flight at a time. On cancellation nothing more is handed out
        and chunks in flight are cancelled or left to finish."""
        ray = self._ray
        any_disabled = any(len(mask) for chunk in chunks for mask in chunk)
        means = self.engine.head_means().cpu().numpy() if mode == "mean" and any_disabled else None
        means_ref = ray.put(means)
        total = sum(len(c) for c in chunks)
        results: list[np.ndarray | None] = [None] * len(chunks)
        pending: dict = {}  # ObjectRef -> (chunk index, actor)
        idle = list(self.actors)
        handed, finished = 0, 0
        while handed < len(chunks) or pending:
            if cancelled():
                for ref in pending:
                    with contextlib.suppress(Exception):  # a chunk that already finished cannot be cancelled
                        ray.cancel(ref)
                raise JobCancelled("cancelled")
            while idle and handed < len(chunks):
                worker = idle.pop()
                ref = worker.predict.remote(chunks[handed], mode, split, limit, means_ref,
                                            rows_per_pass if self._same_device else None)
                pending[ref] = (handed, worker)
                handed += 1
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
            for ref in ready:
                index, worker = pending.pop(ref)
                results[index] = ray.get(ref)
                idle.append(worker)
                finished += len(chunks[index])
                progress(finished / max(total, 1))
        n = len(self.engine.task.select(split, limit))
        return np.concatenate(results) if results else np.zeros((0, n), dtype=np.int64)

    def close(self) -> None:
        """Stop the actors, and the Ray instance if this pool started it."""
        for actor in self.actors:
            self._ray.kill(actor)
        self.actors = []
        if self._started:
            self._ray.shutdown()
