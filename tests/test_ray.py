"""Sweeps on a real local Ray instance (2 CPUs, 2 workers): the same chunks, the same numbers as one process,
progress, cancellation, and the number of workers in the result."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from headscope.engine.atlas.chunks import mask_predictions
from headscope.engine.atlas.common import JobCancelled
from headscope.engine.atlas.pairs import pair_sweep
from headscope.engine.atlas.ray_workers import MaskPool
from headscope.engine.engine import Engine
from headscope.engine.model import LoadedModel
from headscope.engine.store import ResultStore

from tests.helpers import make_task

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow

HEADS = [[0, 1], [1, 2], [2, 0]]


@pytest.fixture(scope="module")
def pooled(tiny_model: LoadedModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    engine = Engine(tiny_model, make_task(), ResultStore(tmp_path_factory.mktemp("ray") / "r.sqlite"), batch_size=8)
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    except Exception:  # Ray waits a fixed 30 s for its raylet; a saturated machine can miss that once
        ray.shutdown()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        engine.mask_pool = MaskPool(engine, "local", workers=2)
        yield engine
    finally:
        if engine.mask_pool is not None:
            engine.mask_pool.close()
        ray.shutdown()


def test_ray_workers_give_the_numbers_of_one_process(pooled: Engine, tiny_model: LoadedModel, tmp_path: Path) -> None:
    local = Engine(tiny_model, make_task(), ResultStore(tmp_path / "r.sqlite"), batch_size=8)
    masks = [[(layer, head)] for layer in range(3) for head in range(4)] + [[(0, 0), (2, 3)]]
    shares: list[float] = []
    on_ray, workers = mask_predictions(pooled, masks, "mean", "dev", None, chunk=2, progress=shares.append)
    alone, one = mask_predictions(local, masks, "mean", "dev", None, chunk=2)
    assert (workers, one) == (2, 1)
    np.testing.assert_array_equal(on_ray, alone)
    assert len(shares) == 7 and shares == sorted(shares) and shares[-1] == 1.0  # one report per chunk
    result = pair_sweep(pooled, "zero", "dev", 20, HEADS)
    expected = pair_sweep(local, "zero", "dev", 20, HEADS)
    assert result["workers"] == 2 and expected["workers"] == 1
    assert {k: v for k, v in result.items() if k != "workers"} == {k: v for k, v in expected.items() if k != "workers"}


def test_a_cancelled_ray_sweep_stops_handing_out_chunks(pooled: Engine) -> None:
    masks = [[(layer, head)] for layer in range(3) for head in range(4)]
    shares: list[float] = []
    with pytest.raises(JobCancelled):
        mask_predictions(pooled, masks, "zero", "dev", None, chunk=1, progress=shares.append,
                         cancelled=lambda: len(shares) >= 1)
    assert 1 <= len(shares) < len(masks)
