"""The atlas page's views of real job results: numbers as the job has them, formatted once, and head links
that keep the job's mask and mode."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from headscope.app import atlas, formatting
from headscope.engine.atlas import runner
from headscope.engine.atlas.jobs import JobManager
from headscope.engine.engine import Engine


@pytest.fixture
def manager(engine: Engine) -> Iterator[JobManager]:
    jobs = JobManager(engine)
    yield jobs
    jobs.close()


def test_atlas_views_show_the_job_numbers_and_link_heads_under_the_jobs_mask(manager: JobManager) -> None:
    catalogue = runner.catalogue()
    job = manager.wait(manager.submit("single-head", "uniform", "dev", 10).id, timeout=120)
    sweep = job.result
    grid, title = atlas.head_grid("single-head", sweep, "entropy", "vertical")
    np.testing.assert_allclose(grid, sweep["delta"], rtol=1e-6)
    assert title == "delta"
    rows = atlas.table_rows("single-head", sweep, job.params, "/", catalogue["statistics"])
    assert rows[5]["head"] == "[L1H1](/?ex=0&layer=1&head=1&off=L1H1&mode=uniform)"
    assert rows[5]["delta"] == formatting.delta(sweep["delta"][1][1])
    stats = manager.wait(manager.submit("stats", None, "dev", 4).id, timeout=60).result
    grid, _ = atlas.head_grid("stats", stats, "to_cls", "vertical")
    assert grid[2, 3] == pytest.approx(stats["heads"][2 * 4 + 3]["to_cls"])
    patterns = manager.wait(manager.submit("patterns", None, "dev", 4).id, timeout=60).result
    grid, _ = atlas.head_grid("patterns", patterns, "entropy", "heterogeneous")
    assert grid[0, 0] == pytest.approx(patterns["heads"][0]["counts"]["heterogeneous"] / 4)
    assert atlas.chart_figure("patterns", patterns, catalogue["pattern_types"]) is not None
    assert atlas.inspector_href("/", 3, 7) == "/?ex=0&layer=3&head=7&mode=zero"


def test_the_map_puts_layer_0_on_top_and_a_drop_in_red() -> None:
    figure = atlas.map_figure(np.array([[-0.02, 0.0], [0.01, 0.0]]), "delta", diverging=True)
    assert figure.layout.yaxis.autorange == "reversed"
    scale = figure.data[0].colorscale
    assert scale[0][1] == atlas.palette.DOWN and scale[-1][1] == atlas.palette.UP


def test_deltas_and_parameters_are_written_for_people() -> None:
    assert formatting.delta(-0.0020000000000000018) == "−0.002"
    assert formatting.delta(0.0004) == "±0.000" and formatting.direction(0.0004) == ""
    text = atlas.describe_params({"kind": "layers", "mode": "mean", "split": "dev", "limit": 100,
                                  "ablate": [[1, 2], [3, 0]]})
    assert text == "job layers · mode mean · split dev · first 100 examples · ablate L1H2,L3H0"
    assert "{" not in atlas.describe_params({"kind": "stats", "mode": None, "split": "test", "limit": None,
                                            "word_level": True, "measure": "norm"})


def test_sweep_views_mark_and_count_the_cells_that_survive_holm() -> None:
    from headscope.app import atlas

    significant = [[False, True, False], [False, False, True]]
    figure = atlas.mark_significant(atlas.map_figure(np.zeros((2, 3), dtype=np.float32), "delta", True),
                                    significant)
    marks = figure.data[-1]
    assert sorted(zip(marks.y, marks.x, strict=True)) == [(0, 1), (1, 2)]
    assert "2 of 6 survive Holm's correction" in figure.layout.title.text
    bars = atlas.chart_figure("layer", {"metric": "accuracy", "mode": "zero", "delta": [-0.3, 0.0],
                                        "significant": [True, False]}, [])
    assert list(bars.data[0].marker.color) == [atlas.palette.DOWN, atlas.palette.NEUTRAL]
    assert "1 of 2 survive" in bars.layout.title.text
