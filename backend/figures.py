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
from plotly.subplots import make_subplots

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
                cell: int = 64) -> go.Figure:
    """Every head's map ``[layers, heads, n, n]`` (or every layer's, ``[layers, n, n]`` for rollout) as a
    grid of small heatmaps; disabled heads are titled "off", the focused one is framed."""
    maps = np.asarray(maps, dtype=np.float32)
    per_layer = maps.ndim == 3
    rows, cols = maps.shape[0], 1 if per_layer else maps.shape[1]
    disabled = {tuple(h) for h in off}
    names = [f"L{r}" if per_layer else head_name(r, c) + (" off" if (r, c) in disabled else "")
             for r in range(rows) for c in range(cols)]
    figure = make_subplots(rows=rows, cols=cols, subplot_titles=names, horizontal_spacing=0.01,
                           vertical_spacing=0.3 / max(rows, 1))
    top = float(maps.max()) if maps.size else 1.0
    for r in range(rows):
        for c in range(cols):
            matrix = maps[r] if per_layer else maps[r, c]
            figure.add_trace(go.Heatmap(z=matrix, coloraxis="coloraxis", hovertemplate=(
                f"{names[r * cols + c]}<br>from %{{y}} to %{{x}}<br>%{{z:.4f}}<extra></extra>")), row=r + 1, col=c + 1)
    figure.update_xaxes(showticklabels=False, ticks="", showline=False)
    figure.update_yaxes(showticklabels=False, ticks="", showline=False, autorange="reversed")
    figure.update_annotations(font_size=9)
    if focus is not None and not per_layer:
        index = focus[0] * cols + focus[1] + 1
        suffix = "" if index == 1 else str(index)
        figure.add_shape(type="rect", xref=f"x{suffix} domain", yref=f"y{suffix} domain", x0=-0.04, x1=1.04,
                         y0=-0.04, y1=1.04, line={"color": "#d62728", "width": 2}, fillcolor="rgba(0,0,0,0)")
    figure.update_layout(template="simple_white", coloraxis={"colorscale": COLORSCALE, "cmin": 0, "cmax": top,
                                                             "showscale": False},
                         width=cols * cell + 40, height=rows * (cell + 18) + 40,
                         margin={"l": 10, "r": 10, "t": 30, "b": 10})
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


def standalone_html(*, title: str, tokens: Sequence[str], maps: np.ndarray, focus: tuple[int, int] | None,
                    off: Sequence[Sequence[int]], mode: str, measure: str, prediction: dict[str, Any],
                    labels: Sequence[str], model_name: str, scores: dict[str, Any] | None = None,
                    link: str | None = None) -> str:
    """One self-contained HTML page of a view (the grid, the focused head, the scores) that opens offline:
    plotly.js is inlined once, nothing is fetched. `maps` as in :func:`grid_figure`."""
    maps = np.asarray(maps, dtype=np.float32)
    grid = grid_figure(maps, focus=focus, off=off)
    parts = [grid.to_html(include_plotlyjs=True, full_html=False, config={"displaylogo": False})]
    if focus is not None and maps.ndim == 4:
        layer, head = focus
        focus_title = f"{head_name(layer, head)} · {measure} · mode {mode}"
        focused = head_figure(tokens, maps[layer, head], title=focus_title, measure=measure)
        parts.append(focused.to_html(include_plotlyjs=False, full_html=False, config={"displaylogo": False}))
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
{link_line}
<div class="row"><div>{parts[0]}</div>{score_table}</div>
<div class="row">{"".join(f"<div>{p}</div>" for p in parts[1:])}</div>
</body></html>
"""
