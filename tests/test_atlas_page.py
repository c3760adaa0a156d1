"""The atlas page's views of real job results."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from headscope.engine.atlas.jobs import JobManager
from headscope.engine.engine import Engine


@pytest.fixture
def manager(engine: Engine) -> Iterator[JobManager]:
    jobs = JobManager(engine)
    yield jobs
    jobs.close()


def test_atlas_views_show_the_job_numbers_and_link_heads_by_integers(manager: JobManager) -> None:
    from headscope.app import atlas

    sweep = manager.wait(manager.submit("single-head", "zero", "dev", 10).id, timeout=120).result
    grid, title = atlas.head_grid("single-head", sweep, "entropy", "vertical")
    np.testing.assert_allclose(grid, sweep["delta"], rtol=1e-6)
    assert title == "delta"
    rows = atlas.table_rows("single-head", sweep, "/")
    assert rows[5]["head"] == "[L1H1](/?layer=1&head=1)" and rows[5]["delta"] == pytest.approx(
        sweep["delta"][1][1], abs=1e-5)
    stats = manager.wait(manager.submit("stats", None, "dev", 4).id, timeout=60).result
    grid, _ = atlas.head_grid("stats", stats, "to_cls", "vertical")
    assert grid[2, 3] == pytest.approx(stats["heads"][2 * 4 + 3]["to_cls"])
    patterns = manager.wait(manager.submit("patterns", None, "dev", 4).id, timeout=60).result
    grid, _ = atlas.head_grid("patterns", patterns, "entropy", "heterogeneous")
    assert grid[0, 0] == pytest.approx(patterns["heads"][0]["counts"]["heterogeneous"] / 4)
    assert atlas.chart_figure("patterns", patterns) is not None
    assert atlas.inspector_href("/", 3, 7) == "/?layer=3&head=7"


def test_sweep_views_mark_and_count_the_cells_that_survive_holm() -> None:
    from headscope.app import atlas

    significant = [[False, True, False], [False, False, True]]
    figure = atlas.mark_significant(atlas.map_figure(np.zeros((2, 3), dtype=np.float32), "delta", True),
                                    significant)
    marks = figure.data[-1]
    assert sorted(zip(marks.y, marks.x, strict=True)) == [(0, 1), (1, 2)]
    assert "2 of 6 survive Holm's correction" in figure.layout.title.text
    bars = atlas.chart_figure("layer", {"metric": "accuracy", "mode": "zero", "delta": [-0.3, 0.0],
                                        "significant": [True, False]})
    assert list(bars.data[0].marker.color) == ["#b2182b", "#bbbbbb"]
    assert "1 of 2 survive" in bars.layout.title.text
