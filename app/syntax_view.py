"""The atlas's Syntax section: Clark et al.'s table and a relation x head map from a `syntax` job result.

Pure functions of the job's result (docs/api.md, the `syntax` kind), so the page only lays them out: the
table has one row per relation and direction (the best head, its accuracy, the best fixed offset and its
accuracy), the map one row per relation and one column per head, each cell the head's accuracy for that
relation in the chosen direction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import plotly.graph_objects as go

DIRECTIONS = ("dependent-to-head", "head-to-dependent")
MIN_COUNT = 20  # relations with fewer counted words are left off the map (their accuracy is noise)


def syntax_rows(result: dict[str, Any], href: Callable[[int, int], str]) -> list[dict[str, Any]]:
    """Clark et al.'s Table 1 for both directions: relation, words counted, best head (a link to
    ``href(layer, head)``), its accuracy, the best offset and its accuracy, and the head's gain over the
    offset (percentage points)."""
    rows = []
    for entry in result["relations"]:
        layer, head = (int(v) for v in entry["best_head"])
        rows.append({
            "relation": entry["relation"],
            "direction": entry["direction"],
            "words": entry["count"],
            "best head": f"[L{layer}H{head}]({href(layer, head)})",
            "accuracy %": round(100 * entry["best_accuracy"], 1),
            "best offset": entry["baseline_offset"],
            "offset accuracy %": round(100 * entry["baseline_accuracy"], 1),
            "gain (points)": round(100 * (entry["best_accuracy"] - entry["baseline_accuracy"]), 1),
        })
    return rows


def relation_head_grid(result: dict[str, Any], direction: str,
                       min_count: int = MIN_COUNT) -> tuple[list[str], np.ndarray]:
    """The relations shown (most counted first, "all" on top) and ``[relations, layers * heads]`` accuracy
    in `direction`, heads in (layer, head) order."""
    chosen = [e for e in result["relations"]
              if e["direction"] == direction and (e["count"] >= min_count or e["relation"] == "all")]
    grid = np.array([np.asarray(e["accuracy"], dtype=np.float32).ravel() for e in chosen], dtype=np.float32)
    labels = [f"{e['relation']} ({e['count']})" for e in chosen]
    return labels, grid.reshape(len(chosen), -1)


def relation_head_figure(result: dict[str, Any], direction: str, num_heads: int) -> go.Figure:
    """Heatmap of accuracy (%) per relation (rows) and head (columns, L0H0, L0H1, ...); a cell's
    customdata is its [layer, head], for a click to open that head."""
    labels, grid = relation_head_grid(result, direction)
    columns = grid.shape[1] if grid.size else 0
    heads = [(c // num_heads, c % num_heads) for c in range(columns)]
    names = [f"L{layer}H{head}" for layer, head in heads]
    custom = np.array([[list(h) for h in heads]] * len(labels)) if labels else None
    figure = go.Figure(go.Heatmap(
        z=100 * grid, x=names, y=labels, customdata=custom, colorscale="Viridis", zmin=0, zmax=100,
        colorbar={"title": {"text": "accuracy %"}},
        hovertemplate="%{y}, %{x}: %{z:.1f} %<extra></extra>",
    ))
    figure.update_layout(
        title={"text": f"accuracy of each head per relation ({direction}); rows: relation (words counted)"},
        margin={"l": 140, "r": 10, "t": 40, "b": 60}, yaxis={"autorange": "reversed", "type": "category"},
        xaxis={"type": "category", "tickangle": -90, "tickfont": {"size": 9}},
    )
    return figure


def clicked_head(click: dict[str, Any] | None) -> tuple[int, int] | None:
    """The (layer, head) of a clicked map cell, or None."""
    try:
        layer, head = click["points"][0]["customdata"]
        return int(layer), int(head)
    except (TypeError, KeyError, IndexError, ValueError):
        return None
