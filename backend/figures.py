"""Figures and the standalone HTML view, from plain numbers: shared by the Python API and the dashboard.

Everything here takes what ``/api/attention`` and ``/api/evaluate`` answer (tokens, maps, scores), so the
notebook's figures, ``hs.export_html`` and the dashboard's "standalone HTML" export draw the same view
the same way. Plotly only: no engine, no web server.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import plotly.graph_objects as go

COLORSCALE = "Blues"
MEASURE_WORDS = {
    "weights": "attention weight",
    "norm": "weight x ||f(x_j)|| (Kobayashi et al.)",
    "rollout": "attention rollout (Abnar & Zuidema)",
}


def head_name(layer: int, head: int) -> str:
    return f"L{layer}H{head}"


def _labels(tokens: Sequence[str]) -> list[str]:
    """Axis labels that stay distinct when a token repeats (plotly merges equal category names)."""
    return [f"{token} " + "\u200b" * i for i, token in enumerate(tokens)]


def head_figure(tokens: Sequence[str], matrix: np.ndarray, *, title: str, measure: str = "weights",
                size: int = 560) -> go.Figure:
    """One map as a heatmap for a paper: query tokens down, key tokens across, a colour bar from 0 to the
    map's largest value that says what the numbers are, white background."""
    labels = _labels(tokens)
    matrix = np.asarray(matrix, dtype=np.float32)
    figure = go.Figure(go.Heatmap(
        z=matrix, x=labels, y=labels, colorscale=COLORSCALE, zmin=0.0, zmax=float(matrix.max()) if matrix.size else 1.0,
        colorbar={"title": {"text": MEASURE_WORDS.get(measure, measure), "side": "right"}, "thickness": 12},
        hovertemplate="from %{y}<br>to %{x}<br>%{z:.4f}<extra></extra>",
    ))
    figure.update_layout(
        title={"text": title, "x": 0.5, "font": {"size": 14}}, template="simple_white",
        width=size + 120, height=size + 80, margin={"l": 10, "r": 10, "t": 60, "b": 10},
        xaxis={"title": "key (attended to)", "tickangle": -60, "tickfont": {"size": 10}},
        yaxis={"title": "query (attending)", "autorange": "reversed", "tickfont": {"size": 10}},
    )
    return figure


def grid_figure(maps: np.ndarray, *, focus: tuple[int, int] | None = None, off: Sequence[Sequence[int]] = (),
                cell: int = 64, own_scales: bool = False, title: str | None = None) -> go.Figure:
    """Every head's map ``[layers, heads, r, c]`` (or every layer's, ``[layers, r, c]`` for rollout) as a
    grid of small heatmaps; disabled heads are titled "off", the focused one is framed. One colour scale
    for all maps (0 to the largest value), or with `own_scales` each map from 0 to its own largest value,
    as the dashboard's grid draws norm maps, which do not sum to 1 per row. The layout is written out
    here rather than through ``make_subplots``, whose per-cell bookkeeping takes seconds for 384 heads."""
    maps = np.asarray(maps, dtype=np.float32)
    per_layer = maps.ndim == 3
    rows, cols = maps.shape[0], 1 if per_layer else maps.shape[1]
    disabled = {tuple(h) for h in off}
    top = float(maps.max()) if maps.size else 1.0
    gap_x, gap_y = 0.01, 0.3 / max(rows, 1)
    width_x, width_y = (1 - gap_x * (cols - 1)) / cols, (1 - gap_y * (rows - 1)) / rows
    data: list[dict[str, Any]] = []
    layout: dict[str, Any] = {}
    annotations = []
    for r in range(rows):
        for c in range(cols):
            index = r * cols + c + 1
            suffix = "" if index == 1 else str(index)
            name = f"L{r}" if per_layer else head_name(r, c) + (" off" if (r, c) in disabled else "")
            matrix = maps[r] if per_layer else maps[r, c]
            scale = ({"colorscale": COLORSCALE, "zmin": 0.0, "zmax": max(float(matrix.max()), 1e-6),
                      "showscale": False} if own_scales else {"coloraxis": "coloraxis"})
            data.append({"type": "heatmap", "z": matrix, "xaxis": f"x{suffix}", "yaxis": f"y{suffix}", **scale,
                         "hovertemplate": f"{name}<br>from %{{y}} to %{{x}}<br>%{{z:.4f}}<extra></extra>"})
            x0, y1 = c * (width_x + gap_x), 1 - r * (width_y + gap_y)
            axis = {"showticklabels": False, "ticks": "", "showline": False, "showgrid": False, "zeroline": False}
            layout[f"xaxis{suffix}"] = {**axis, "domain": [max(x0, 0.0), min(x0 + width_x, 1.0)],
                                        "anchor": f"y{suffix}"}
            layout[f"yaxis{suffix}"] = {**axis, "domain": [max(y1 - width_y, 0.0), min(y1, 1.0)],
                                        "anchor": f"x{suffix}", "autorange": "reversed"}
            annotations.append({"text": name, "x": x0 + width_x / 2, "y": y1, "xref": "paper", "yref": "paper",
                                "xanchor": "center", "yanchor": "bottom", "showarrow": False, "font": {"size": 9}})
    shapes = []
    if focus is not None and not per_layer:
        index = focus[0] * cols + focus[1] + 1
        suffix = "" if index == 1 else str(index)
        shapes.append({"type": "rect", "xref": f"x{suffix} domain", "yref": f"y{suffix} domain", "x0": -0.04,
                       "x1": 1.04, "y0": -0.04, "y1": 1.04, "line": {"color": "#d62728", "width": 2},
                       "fillcolor": "rgba(0,0,0,0)"})
    figure = go.Figure(data=data, layout={
        **layout, "annotations": annotations, "shapes": shapes, "template": "simple_white",
        "coloraxis": {"colorscale": COLORSCALE, "cmin": 0, "cmax": top, "showscale": False},
        "width": cols * cell + 40, "height": rows * (cell + 18) + 40 + (24 if title else 0),
        "margin": {"l": 10, "r": 10, "t": 30 + (24 if title else 0), "b": 10},
    })
    if title:
        figure.update_layout(title={"text": title, "x": 0.01, "font": {"size": 12}})
    return figure


def _score_rows(scores: dict[str, Any]) -> list[tuple[str, str]]:
    """The evaluation as (label, value) rows, saying how each number was made."""
    rows = [
        ("metric", str(scores.get("metric"))),
        ("baseline (nothing disabled)", f"{scores['baseline']:.3f}"),
        ("with the mask", f"{scores['score']:.3f}"),
        ("delta", f"{scores['delta']:+.3f}"),
    ]
    significance = scores.get("significance") or {}
    if "ci95" in significance:
        low, high = significance["ci95"]
        rows.append(("95% interval of delta", f"[{low:.3f}, {high:.3f}]"))
    if "p_value" in significance:
        p = significance["p_value"]
        rows.append((f"p ({significance.get('test', 'test')})", "p < 0.001" if p < 0.001 else f"p = {p:.3f}"))
    rows += [
        ("examples", f"{scores.get('n')} of split {scores.get('split', 'dev')}"),
        ("flipped predictions", str(len(scores.get("flipped", [])))),
    ]
    return rows


STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #1d1d1f; }
h1 { font-size: 20px; margin: 0 0 4px; } .meta { color: #555; font-size: 13px; margin: 2px 0; }
.row { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; margin-top: 16px; }
table { border-collapse: collapse; font-size: 14px; } td { padding: 3px 10px; border-bottom: 1px solid #eee; }
td:first-child { color: #555; } .prediction { font-size: 14px; margin-top: 8px; }
"""


def grid_contents(grid_shape: Sequence[int], n: int, measure: str) -> tuple[str, str]:
    """What the grid of a standalone page shows (its pictures' size, how they were made) and its colour
    scale, in words: said on the page, so a pooled or rescaled picture is never taken for the raw map."""
    rows, cols = grid_shape[-2], grid_shape[-1]
    what = "every layer's rollout map" if len(grid_shape) == 3 else "every head's map"
    size = (f"{what} in full ({n} x {n} tokens)" if (rows, cols) == (n, n) else
            f"{what} average-pooled to {rows} x {cols} from {n} x {n} tokens (as the dashboard's grid)")
    scale = ("norm: each head on its own colour scale (0 to its largest value), as in the dashboard"
             if measure == "norm" else "one colour scale for all (0 to the largest value)")
    return size, scale


def standalone_html(*, title: str, tokens: Sequence[str], grid: np.ndarray, focused: np.ndarray | None,
                    focus: tuple[int, int] | None, off: Sequence[Sequence[int]], mode: str, measure: str,
                    prediction: dict[str, Any], labels: Sequence[str], model_name: str,
                    scores: dict[str, Any] | None = None, link: str | None = None) -> str:
    """One self-contained HTML page of a view (the grid, the focused head, the scores) that opens offline:
    plotly.js is inlined once, nothing is fetched. `grid` as :func:`grid_figure` takes it, whole or pooled
    (at 24 x 16 heads and 512 tokens whole maps would make a page of hundreds of MB); `focused` the
    focused head's full n x n map (None: not drawn). The page says which it holds."""
    grid = np.asarray(grid, dtype=np.float32)
    size, scale = grid_contents(grid.shape, len(tokens), measure)
    figure = grid_figure(grid, focus=focus, off=off, own_scales=measure == "norm", title=f"Grid: {scale}")
    parts = [figure.to_html(include_plotlyjs=True, full_html=False, config={"displaylogo": False})]
    contents = f"Contents: {size}"
    if focus is not None and focused is not None:
        layer, head = focus
        focus_title = f"{head_name(layer, head)} · {measure} · mode {mode}"
        head_map = head_figure(tokens, focused, title=focus_title, measure=measure)
        parts.append(head_map.to_html(include_plotlyjs=False, full_html=False, config={"displaylogo": False}))
        contents += f"; the focused head {head_name(layer, head)} in full ({len(tokens)} x {len(tokens)})"
    contents += "; the task score." if scores is not None else "."
    off_text = ", ".join(head_name(int(h[0]), int(h[1])) for h in sorted(map(tuple, off))) or "none"
    probs = ", ".join(f"{html.escape(str(label))} {p:.3f}"
                      for label, p in zip(labels, prediction["probs"], strict=True))
    score_table = ""
    if scores is not None:
        cells = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in _score_rows(scores))
        score_table = f"<div><h2 style='font-size:16px'>Task score</h2><table>{cells}</table></div>"
    link_line = f"<p class='meta'>Live view: {html.escape(link)}</p>" if link else ""
    made = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{STYLE}</style></head><body>
<h1>{html.escape(title)}</h1>
<p class="meta">model {html.escape(model_name)} · mode {html.escape(mode)} · measure {html.escape(measure)}
 · heads off: {html.escape(off_text)} · made by headscope, {made}</p>
<p class="meta">input: {html.escape(" ".join(tokens))}</p>
<p class="prediction">prediction: <b>{html.escape(str(prediction["label"]))}</b> ({probs})</p>
<p class="meta">{html.escape(contents)}</p>
{link_line}
<div class="row"><div>{parts[0]}</div>{score_table}</div>
<div class="row">{"".join(f"<div>{p}</div>" for p in parts[1:])}</div>
</body></html>
"""
