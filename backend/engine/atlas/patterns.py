"""Kovaleva et al.'s attention pattern types, by a small rule-based classifier anyone can check.

Kovaleva et al. (2019) labelled about 400 maps by hand and trained a CNN that was never released; these
rules are a transparent stand-in. For one head on one example (a map ``[n, n]`` over real tokens, rows
= queries summing to 1) three shares of attention are measured, each a mean over query rows:

- **vertical share** ``v``: attention to a few fixed key columns that every query looks at ([CLS],
  [SEP], a full stop...). The up to :data:`VERTICAL_COLUMNS` columns with the largest mean attention
  *outside the diagonal band* are candidates; a candidate counts only if that off-band mean reaches
  :data:`COLUMN_MIN` (so a pure diagonal map has no vertical column). ``v`` is all the attention those
  columns receive.
- **diagonal share** ``d``: attention within :data:`DIAGONAL_BAND` positions of the query (itself and
  its neighbours), not counting the vertical columns (already in ``v``).
- **block share**: for inputs with two segments, the attention each query keeps inside its own
  segment; the smaller of the two segments' means (so one big segment cannot pass for a block).

Rules, in order:

1. ``v + d >= STRUCTURED_MIN``: the map is structured.
   ``v >= MIXED_PART_MIN`` and ``d >= MIXED_PART_MIN`` -> **vertical+diagonal**; otherwise the larger
   of the two -> **vertical** or **diagonal**.
2. Two segments, each with at least :data:`BLOCK_MIN_TOKENS` tokens, and block share ``>= BLOCK_MIN``
   -> **block** (Kovaleva's intra-sentence attention; a single-segment input cannot show it).
3. Everything else -> **heterogeneous**.

Limits: maps over fewer than about 10 tokens are unreliable (a random map's chance peaks and a real
column of 1/4 of the attention look alike there); the band holds 3 of every n cells of a row, so a
segment of under about six tokens reads as diagonal rather than block; the shares are means over query
rows, so noise spread over a row lowers them in proportion (15 % noise keeps every type in the tests).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PATTERN_TYPES = ("vertical", "diagonal", "vertical+diagonal", "block", "heterogeneous")

VERTICAL_COLUMNS = 2  # at most this many key columns can make a map vertical ([CLS] and [SEP], say)
COLUMN_MIN = 0.1  # a column is vertical when it gets at least this mean attention from off-band queries
COLUMN_LIFT = 2.0  # ... and at least this many times what uniform attention (1/n) would give it
DIAGONAL_BAND = 1  # |query - key| <= this counts as diagonal (the token itself and its neighbours)
STRUCTURED_MIN = 0.6  # vertical + diagonal shares needed for a vertical / diagonal type
MIXED_PART_MIN = 0.2  # both shares at least this: vertical+diagonal
BLOCK_MIN = 0.8  # each segment's queries keep at least this share inside their own segment
BLOCK_MIN_TOKENS = 2  # a segment needs at least this many tokens to form a block


def pattern_shares(weights: np.ndarray, segments: Sequence[int] | None = None) -> dict[str, float]:
    """The vertical, diagonal and block shares of one map ``[n, n]`` (see the module docstring)."""
    a = np.asarray(weights, dtype=np.float64)
    n = a.shape[0]
    offsets = np.abs(np.arange(n)[:, None] - np.arange(n)[None, :])
    band = offsets <= DIAGONAL_BAND
    off_band_mean = np.where(band, 0.0, a).mean(axis=0)  # [keys]
    candidates = np.argsort(-off_band_mean, kind="stable")[:VERTICAL_COLUMNS]
    vertical = [int(c) for c in candidates if off_band_mean[c] >= max(COLUMN_MIN, COLUMN_LIFT / n)]
    in_vertical = np.zeros(n, dtype=bool)
    in_vertical[vertical] = True
    v = float(a[:, in_vertical].sum(axis=1).mean())
    d = float(np.where(band & ~in_vertical[None, :], a, 0.0).sum(axis=1).mean())
    block = 0.0
    if segments is not None:
        seg = np.asarray(segments)
        ids = np.unique(seg)
        if len(ids) == 2 and all((seg == s).sum() >= BLOCK_MIN_TOKENS for s in ids):
            same = seg[:, None] == seg[None, :]
            kept = np.where(same, a, 0.0).sum(axis=1)  # [queries]
            block = float(min(kept[seg == s].mean() for s in ids))
    return {"vertical": v, "diagonal": d, "block": block}


def classify_map(weights: np.ndarray, segments: Sequence[int] | None = None) -> str:
    """The pattern type of one head's map on one example, by the module's rules."""
    shares = pattern_shares(weights, segments)
    v, d = shares["vertical"], shares["diagonal"]
    if v + d >= STRUCTURED_MIN:
        if v >= MIXED_PART_MIN and d >= MIXED_PART_MIN:
            return "vertical+diagonal"
        return "vertical" if v >= d else "diagonal"
    if shares["block"] >= BLOCK_MIN:
        return "block"
    return "heterogeneous"


class PatternCounter:
    """Counts of pattern types per head over many examples."""

    def __init__(self, num_layers: int, num_heads: int) -> None:
        self.counts = np.zeros((num_layers, num_heads, len(PATTERN_TYPES)), dtype=np.int64)
        self.examples = 0

    def add(self, maps: np.ndarray, segments: Sequence[int] | None = None) -> None:
        """One example: ``maps [layers, heads, n, n]`` over its real tokens."""
        for layer in range(maps.shape[0]):
            for head in range(maps.shape[1]):
                kind = classify_map(maps[layer, head], segments)
                self.counts[layer, head, PATTERN_TYPES.index(kind)] += 1
        self.examples += 1

    def result(self) -> dict:
        """docs/api.md's ``patterns`` result, plus distributions per layer and over the model."""
        def as_dict(row: np.ndarray) -> dict[str, int]:
            return {name: int(c) for name, c in zip(PATTERN_TYPES, row, strict=True)}

        layers, heads, _ = self.counts.shape
        return {
            "n": self.examples,
            "types": list(PATTERN_TYPES),
            "heads": [{"layer": layer, "head": head, "counts": as_dict(self.counts[layer, head])}
                      for layer in range(layers) for head in range(heads)],
            "layers": [as_dict(self.counts[layer].sum(axis=0)) for layer in range(layers)],
            "model": as_dict(self.counts.sum(axis=(0, 1))),
        }
