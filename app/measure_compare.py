"""Weight-based against norm-based attention shares per head (Kobayashi et al. 2020), for the atlas.

Two finished ``stats`` jobs on the same examples, one with ``measure: "weights"`` and one with
``measure: "norm"``, give for every head the share of its attention that goes to [CLS], [SEP],
punctuation and the token itself. One scatter per target, a point per head (weight share across, norm
share up, the diagonal for "no change"): a head whose "attention to [CLS]" is only weight sits far
below the diagonal.
"""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

TARGETS: dict[str, str] = {"to_cls": "[CLS]", "to_sep": "[SEP]", "to_punct": "punctuation", "to_self": "itself"}


def paired_shares(weights: dict[str, Any], norm: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per head: its share of each target by weight and by norm (heads matched by layer, head)."""
    by_norm = {(h["layer"], h["head"]): h for h in norm["heads"]}
    rows = []
    for head in weights["heads"]:
        other = by_norm.get((head["layer"], head["head"]))
        if other is None:
            continue
        row = {"layer": head["layer"], "head": head["head"]}
        for name in TARGETS:
            row[f"{name}_weights"], row[f"{name}_norm"] = head[name], other[name]
        rows.append(row)
    return rows


def layer_means(rows: list[dict[str, Any]], name: str) -> list[tuple[int, float, float]]:
    """Per layer: the mean share of target `name` over its heads, by weight and by norm."""
    layers = sorted({row["layer"] for row in rows})
    out = []
    for layer in layers:
        chosen = [row for row in rows if row["layer"] == layer]
        out.append((layer, sum(r[f"{name}_weights"] for r in chosen) / len(chosen),
                    sum(r[f"{name}_norm"] for r in chosen) / len(chosen)))
    return out


def compare_figure(weights: dict[str, Any], norm: dict[str, Any]) -> go.Figure:
    """Scatter per target: x = share by weight, y = share by norm, one point per head, colour = layer."""
    rows = paired_shares(weights, norm)
    figure = make_subplots(rows=1, cols=len(TARGETS), subplot_titles=[f"to {t}" for t in TARGETS.values()],
                           horizontal_spacing=0.06)
    last_layer = max((row["layer"] for row in rows), default=0)
    for column, name in enumerate(TARGETS, start=1):
        figure.add_scatter(
            x=[row[f"{name}_weights"] for row in rows], y=[row[f"{name}_norm"] for row in rows],
            mode="markers", row=1, col=column, showlegend=False,
            customdata=[[row["layer"], row["head"]] for row in rows],
            marker={"color": [row["layer"] for row in rows], "colorscale": "Viridis", "cmin": 0,
                    "cmax": max(last_layer, 1), "size": 7,
                    "colorbar": {"title": {"text": "layer"}, "dtick": 1} if column == len(TARGETS) else None,
                    "showscale": column == len(TARGETS)},
            hovertemplate="L%{customdata[0]}H%{customdata[1]}<br>by weight %{x:.3f}<br>by norm %{y:.3f}"
                          "<extra></extra>",
        )
        figure.add_scatter(x=[0, 1], y=[0, 1], mode="lines", row=1, col=column, showlegend=False,
                           line={"dash": "dot", "color": "grey", "width": 1}, hoverinfo="skip")
        figure.update_xaxes(title_text="share by weight", range=[0, 1], row=1, col=column)
        figure.update_yaxes(title_text="share by norm" if column == 1 else None, range=[0, 1], row=1, col=column)
    figure.update_layout(
        title={"text": f"attention by weight vs by norm (Kobayashi et al. 2020), {weights['n']} examples; "
                       "below the diagonal: weight that moves little"},
        margin={"l": 50, "r": 10, "t": 60, "b": 40},
    )
    return figure
