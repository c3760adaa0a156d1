"""Predictions of many masks on one split, in chunks: the one place where a sweep's masks are run.

A chunk is `chunk` consecutive masks, scored by one :meth:`Engine.evaluate_many` call (which groups them
by restart layer and shares forward passes); between chunks the engine's lock is free, progress is
reported and cancellation checked. When the engine has a mask pool (:mod:`ray_workers`,
Ray), the same chunks go to the pool's workers instead, so the numbers do not depend on where they ran.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from headscope.engine.atlas.common import Cancelled, Progress, never_cancelled, no_progress
from headscope.engine.engine import Engine

Head = tuple[int, int]
ROWS_PER_CALL = 2048  # examples x masks per chunk: bounds how long a sweep holds the engine's lock


def workers_of(engine: Engine) -> int:
    """How many workers run this engine's sweeps (results say it as `workers`)."""
    return engine.mask_pool.workers if engine.mask_pool is not None else 1


def chunk_size(n: int, chunk: int | None = None) -> int:
    """Masks per chunk for a split of `n` examples: as given, or as many as keep a chunk near ROWS_PER_CALL
    rows (so interactive requests wait seconds, not minutes)."""
    return chunk or max(1, ROWS_PER_CALL // max(n, 1))


def chunks_of(masks: Sequence[Sequence[Head]], size: int) -> list[Sequence[Sequence[Head]]]:
    return [masks[start:start + size] for start in range(0, len(masks), size)]


def mask_predictions(engine: Engine, masks: Sequence[Sequence[Head]], mode: str, split: str | None,
                     limit: int | None, *, chunk: int | None = None, progress: Progress = no_progress,
                     cancelled: Cancelled = never_cancelled) -> tuple[np.ndarray, int]:
    """Predicted labels ``[masks, n]`` of the split's first `limit` examples under each mask, and how many
    workers computed them (:func:`workers_of`)."""
    split_name = engine.task.split_name(split)
    prepared = engine.prepared(split_name, limit)
    parts = chunks_of(masks, chunk_size(len(prepared.examples), chunk))
    if engine.mask_pool is not None:
        return engine.mask_pool.predict(parts, mode, split_name, limit, progress=progress,
                                        cancelled=cancelled), engine.mask_pool.workers
    out = engine.evaluate_many(masks, mode, split_name, limit, progress=progress, cancelled=cancelled)
    return out.reshape(len(masks), len(prepared.examples)), 1  # the engine's scheduler chunks the passes
