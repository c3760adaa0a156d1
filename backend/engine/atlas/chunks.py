"""Predictions of many masks on one split, in chunks: the one place where a sweep's masks are run.

A chunk is `chunk` consecutive masks, scored by one :meth:`Engine.evaluate_many` call (which groups them
by restart layer and shares forward passes of `rows_per_pass` rows); progress is reported and cancellation
checked as the engine's scheduler runs the passes. The chunks and the pass size are decided here, once, by
the driver: in this process each chunk is one call, and when the engine has a mask pool (:mod:`ray_workers`,
Ray) the very same chunks go to the pool's workers with the same pass size, so each forward pass holds the
same masks and rows wherever it runs and the numbers do not depend on where they ran (contract, "Scale").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from headscope.engine.atlas.common import Cancelled, Progress, never_cancelled, no_progress
from headscope.engine.engine import Engine
from headscope.engine.evaluation import PreparedSplit, rows_per_pass_for

Head = tuple[int, int]
ROWS_PER_CALL = 2048  # examples x masks per chunk: bounds how long a sweep holds the engine's lock


def workers_of(engine: Engine) -> int:
    """How many workers run this engine's sweeps (results say it as `workers`)."""
    return engine.mask_pool.workers if engine.mask_pool is not None else 1


def chunk_size(n: int, chunk: int | None = None, rows_per_pass: int = 0) -> int:
    """Masks per chunk for a split of `n` examples: as given, or as many as keep a chunk near ROWS_PER_CALL
    rows (examples x masks), or near one pass of the device when that holds more (on CUDA, sized from its
    free memory: a GPU would idle on 2,048 rows)."""
    return chunk or max(1, max(ROWS_PER_CALL, rows_per_pass) // max(n, 1))


def chunks_of(masks: Sequence[Sequence[Head]], size: int) -> list[Sequence[Sequence[Head]]]:
    return [masks[start:start + size] for start in range(0, len(masks), size)]


def mask_predictions(engine: Engine, masks: Sequence[Sequence[Head]], mode: str, split: str | None,
                     limit: int | None, *, chunk: int | None = None, progress: Progress = no_progress,
                     cancelled: Cancelled = never_cancelled) -> tuple[np.ndarray, int]:
    """Predicted labels ``[masks, n]`` of the split's first `limit` examples under each mask, and how many
    workers computed them (:func:`workers_of`)."""
    split_name = engine.task.split_name(split)
    prepared = engine.prepared(split_name, limit)
    rows = pass_rows(engine, prepared)
    parts = chunks_of(masks, chunk_size(len(prepared.examples), chunk, rows))
    if engine.mask_pool is not None:
        return engine.mask_pool.predict(parts, mode, split_name, limit, rows_per_pass=rows, progress=progress,
                                        cancelled=cancelled), engine.mask_pool.workers
    out = np.zeros((len(masks), len(prepared.examples)), dtype=np.int64)
    done = 0
    for part in parts:  # the engine's scheduler runs each chunk's passes in time-sized pieces
        def share(value: float, done: int = done, size: int = len(part)) -> None:
            progress((done + value * size) / len(masks))

        out[done:done + len(part)] = engine.evaluate_many(part, mode, split_name, limit, rows_per_pass=rows,
                                                          progress=share, cancelled=cancelled)
        done += len(part)
    return out, 1


def pass_rows(engine: Engine, prepared: PreparedSplit) -> int:
    """Rows (examples x masks) per forward pass of a sweep: sized once, by the driver, for its device."""
    return rows_per_pass_for(engine.model, prepared)
