"""The inspector's word-level view of the focused head: the sentence's dependency arcs (spaCy, from
/api/parse) on the left, the head's strongest attention per word (from /api/attention with
``level: "word"``) on the right, and the arcs the head gets right marked.

A word's strongest attention is read as in the `syntax` job (Clark et al.'s dependent-to-head direction,
`headscope.engine.atlas.syntax.predicted_heads`): the other word of its segment it attends to most, ties
to the lowest index. Counted arcs are those the job counts: not `punct`, not a root (a word that owns no
wordpiece, which the job also skips, cannot be told apart over HTTP and is counted here). Pure functions of
the two API answers, so the page only fetches and lays out; each trace carries its arc in `meta`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go
from headscope.app import palette
from headscope.engine.atlas.syntax import predicted_heads


@dataclass(frozen=True)
class WordArcs:
    """What the view shows: per word, its syntactic head and relation, the word it attends to most (None:
    alone in its segment, or the head moves nothing) with that weight, and whether the arc counts/is right."""

    words: list[str]
    heads: list[int]
    relations: list[str]
    targets: list[int | None]
    weights: list[float]
    counted: list[bool]
    right: list[bool]

    @property
    def score(self) -> tuple[int, int]:
        """(arcs right, arcs counted)."""
        return sum(self.right), sum(self.counted)


def word_entries(tokens: list[str], words: list[str]) -> list[int] | None:
    """The entry of each parsed word in the word-level `tokens` (special tokens at their places, then the
    words in order: word k is the k-th non-special entry, docs/api.md), found by walking both in order;
    None when they do not line up (the input was truncated, so some words have no entry)."""
    entries: list[int] = []
    for i, token in enumerate(tokens):
        if len(entries) < len(words) and token == words[len(entries)]:
            entries.append(i)
    return entries if len(entries) == len(words) else None


def word_arcs(parse: dict[str, Any], tokens: list[str], segments: list[int], values: np.ndarray) -> WordArcs:
    """The arcs of one word-level map `values` ([entries, entries], rows = from) over `tokens`."""
    words, heads, relations = parse["words"], parse["heads"], parse["relations"]
    entries = word_entries(tokens, words)
    if entries is None:
        raise ValueError("the parse's words do not line up with the word-level tokens")
    entries_array = np.asarray(entries)
    word_segments = np.asarray([segments[e] for e in entries])
    targets: list[int | None] = [None] * len(words)
    if np.any(values):  # a head that moves nothing (norm, disabled) points at no word
        for segment in sorted(set(word_segments.tolist())):
            members = np.flatnonzero(word_segments == segment)
            if len(members) < 2:
                continue
            to_head, _ = predicted_heads(values[None, None], entries_array[members])
            for position, word in enumerate(members):
                targets[word] = int(members[to_head[0, 0, position]])
    weights = [float(values[entries[w], entries[t]]) if t is not None else 0.0 for w, t in enumerate(targets)]
    counted = [heads[w] != w and relations[w] != "punct" for w in range(len(words))]
    right = [counted[w] and targets[w] == heads[w] for w in range(len(words))]
    return WordArcs(list(words), list(heads), list(relations), targets, weights, counted, right)


FIGURE_WIDTH = 640  # px; x runs -1..1 over it (plus room for the relation labels), so words and arcs keep
PX_PER_UNIT = FIGURE_WIDTH / 2.3  # their proportions whatever the panel's width
ROW_PX = 24
LABEL_ROOM = 0.22  # x units left of the deepest arc for its relation's label


def _arc(y0: float, y1: float, side: int, start: float, depth: float,
         points: int = 24) -> tuple[list[float], list[float]]:
    """A half-ellipse from word row y0 to row y1, from `start` out to `start + depth` on `side` (-1 left,
    +1 right)."""
    t = np.linspace(0, np.pi, points)
    middle, half = (y0 + y1) / 2, (y1 - y0) / 2
    return (side * (start + depth * np.sin(t))).tolist(), (middle - half * np.cos(t)).tolist()


def word_view_figure(arcs: WordArcs, title: str) -> go.Figure:
    """Words down the middle; each dependency arc on the left (green when the head gets it right, with its
    relation), the head's strongest attention from each word on the right (width: its weight relative to
    the largest shown); longer arcs reach further out. Every trace's `meta` names its arc: kind, word,
    other end, right."""
    figure = go.Figure()
    count = len(arcs.words)
    top = max(arcs.weights, default=0.0) or 1.0
    start = (max((len(w) for w in arcs.words), default=1) * 4.0 + 10) / PX_PER_UNIT  # half the widest word
    spans = [abs(w - h) for w, h in enumerate(arcs.heads)] + [abs(w - t) for w, t in enumerate(arcs.targets)
                                                               if t is not None]
    longest = max([*spans, 1])
    room = max(1.0 - start, 0.2)

    def depth(a: int, b: int) -> float:
        return room * (0.15 + 0.85 * abs(a - b) / longest)

    for word, head in enumerate(arcs.heads):
        if head == word:
            continue
        hit = arcs.right[word]
        xs, ys = _arc(-word, -head, -1, start, depth(word, head))
        figure.add_scatter(
            x=xs, y=ys, mode="lines", hoverinfo="text", showlegend=False,
            line={"color": palette.RIGHT if hit else palette.ACCENT, "width": 3 if hit else 1.5,
                  "dash": "solid" if arcs.counted[word] else "dot"},
            text=f"{arcs.words[word]} → its head {arcs.words[head]} ({arcs.relations[word]})"
                 + (": the head's strongest attention" if hit else ""),
            meta={"kind": "dependency", "word": word, "head": head, "relation": arcs.relations[word],
                  "counted": arcs.counted[word], "right": hit},
        )
        figure.add_annotation(x=-(start + depth(word, head)) - 0.01, y=-(word + head) / 2,
                              text=arcs.relations[word], showarrow=False, xanchor="right",
                              font={"size": 10, "color": palette.RIGHT if hit else palette.MUTED})
    for word, target in enumerate(arcs.targets):
        if target is None:
            continue
        hit = arcs.right[word]
        weight = arcs.weights[word]
        xs, ys = _arc(-word, -target, 1, start, depth(word, target))
        figure.add_scatter(
            x=xs, y=ys, mode="lines", hoverinfo="text", showlegend=False,
            line={"color": palette.RIGHT if hit else palette.NEUTRAL, "width": 1 + 4 * weight / top},
            text=f"{arcs.words[word]} attends most to {arcs.words[target]}: {weight:.3f}",
            meta={"kind": "attention", "word": word, "target": target, "weight": weight, "right": hit},
        )
    figure.add_scatter(x=[0.0] * count, y=[-w for w in range(count)], mode="text", text=arcs.words,
                       textfont={"size": 13, "color": palette.INK}, hoverinfo="skip", showlegend=False,
                       meta={"kind": "words"})
    right, counted = arcs.score
    figure.update_layout(
        title={"text": f"{title}: {right} of {counted} arcs right", "font": {"size": 12}, "x": 0.02},
        xaxis={"visible": False, "range": [-1 - LABEL_ROOM, 1.08], "fixedrange": True},
        yaxis={"visible": False, "range": [-count + 0.4, 1.0], "fixedrange": True},
        margin={"l": 6, "r": 6, "t": 34, "b": 6}, width=FIGURE_WIDTH, height=max(200, ROW_PX * count + 70),
        paper_bgcolor=palette.PANEL, plot_bgcolor=palette.PANEL,
    )
    figure.add_annotation(x=-0.55, y=0.75, text="dependency arcs (spaCy)", showarrow=False,
                          font={"size": 11, "color": palette.MUTED})
    figure.add_annotation(x=0.55, y=0.75, text="strongest attention", showarrow=False,
                          font={"size": 11, "color": palette.MUTED})
    return figure
