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


def test_the_pairs_view_draws_interaction_beside_delta_and_links_a_cell_with_both_heads_off(
        manager: JobManager) -> None:
    job = manager.wait(manager.submit("pairs", "uniform", "dev", 12, heads=[[2, 1], [0, 3], [1, 0]]).id, timeout=120)
    result = job.result
    figure = atlas.pairs_figure(result)
    interaction, _, delta, _ = figure.data
    names = ["L0H3", "L1H0", "L2H1"]  # layer order, the first on top
    assert list(interaction.y) == list(delta.x) == names and figure.layout.yaxis.autorange == "reversed"
    np.testing.assert_allclose(delta.z, result["delta"])
    assert interaction.z[0][1] == pytest.approx(result["interaction"][0][1]) and interaction.z[1][1] is None
    assert figure.layout.coloraxis.cmid == 0 and figure.layout.coloraxis.colorscale[0][1] == atlas.palette.DOWN
    survivors = sum(bool(result["interaction_significant"][i][j]) for i in range(3) for j in range(i + 1, 3))
    assert f"interaction: {survivors} of 3 survive Holm's correction" in figure.layout.title.text
    click = {"points": [{"x": "L2H1", "y": "L0H3", "z": 0.0, "curveNumber": 0}]}
    assert atlas.clicked_pair(click) == ((0, 3), (2, 1))
    href = atlas.pair_href("/", atlas.clicked_pair(click), job.params["mode"])
    assert href == "/?ex=0&layer=0&head=3&off=L0H3,L2H1&mode=uniform"
    rows = atlas.table_rows("pairs", result, job.params, "/", [])
    assert len(rows) == 3 and rows[1]["pair"] == f"[L0H3 + L2H1]({href})"
    assert rows[1]["interaction"] == formatting.delta(result["interaction"][0][2])


def test_the_pairs_view_circles_and_counts_the_cells_that_survive_holm() -> None:
    k = 3
    flags = [[None, True, False], [True, None, False], [False, False, None]]
    cells = [[True, False, False], [False, False, True], [False, True, False]]
    result = {"metric": "accuracy", "mode": "zero", "n": 40, "heads": [[0, 0], [0, 1], [1, 0]],
              "delta": np.eye(k).tolist(), "interaction": (np.ones((k, k)) * -0.2).tolist(),
              "p_holm": np.full((k, k), 0.5).tolist(), "significant": cells,
              "interaction_p_holm": [[None, 0.01, 1.0], [0.01, None, 1.0], [1.0, 1.0, None]],
              "interaction_significant": flags}
    figure = atlas.pairs_figure(result)
    marks = figure.data[1]
    assert sorted(zip(marks.y, marks.x, strict=True)) == [("L0H0", "L0H1"), ("L0H1", "L0H0")]
    assert "interaction: 1 of 3 survive Holm's correction" in figure.layout.title.text
    assert "delta: 2 of 6 survive Holm's correction" in figure.layout.title.text
    assert "p = 0.010 after Holm" in figure.data[0].text[0][1]
