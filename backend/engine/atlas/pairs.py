"""Head pairs: the score with two heads disabled together, and the interaction beyond their single effects.

For k heads the sweep scores k(k+1)/2 masks (every head alone on the diagonal, every pair off it), in layer
order so that consecutive masks restart from the same layer and share forward passes (:mod:`chunks`).
``interaction[i][j] = delta[i][j] - delta[i][i] - delta[j][j]``: zero when the two effects add up.

Significance (docs/api.md, "Head pairs"): every delta cell i <= j is tested against the baseline as
any sweep cell is (McNemar for accuracy, a paired permutation for F1/MCC), Holm over the k(k+1)/2 cells.
Each interaction i < j is tested against 0 with a permutation of the per-example contrast
``c = x_ij - x_i - x_j + x_0`` (x: the example's prediction under both heads off, head i off, head j
off, nothing off): each round, with probability 1/2 per example, swaps (x_ij <-> x_i) and (x_j <-> x_0),
which flips the sign of the example's contrast. For accuracy the contrast of an example is
right_ij - right_i - right_j + right_0 and the metric is its mean, so this is the sign-flip test; for F1
and MCC the metric is recomputed from the permuted predictions. Holm over the k(k-1)/2 interactions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from headscope.engine import metrics, significance
from headscope.engine.atlas.chunks import mask_predictions
from headscope.engine.atlas.common import Cancelled, Progress, never_cancelled, no_progress
from headscope.engine.engine import Engine
from headscope.engine.errors import InputError

Head = tuple[int, int]
PREDICTION_SHARE = 0.9  # of the progress bar: the forward passes; the tests take the rest


def checked_heads(engine: Engine, heads: Sequence[Sequence[int]] | None) -> list[Head]:
    """The heads of a pairs job in layer order without repeats (None = every head); at least two."""
    if heads is None:
        return [(layer, head) for layer in range(engine.model.num_layers) for head in range(engine.model.num_heads)]
    if not isinstance(heads, list | tuple):
        raise InputError(f"heads must be a list of [layer, head] pairs or null; got {heads!r}")
    chosen = list(engine.mask(heads).heads)  # sorted, no repeats; an unknown head is named with the ranges
    if len(chosen) < 2:
        raise InputError(f"a pairs job needs at least 2 distinct heads; got {len(chosen)}")
    return chosen


def pair_cells(k: int) -> list[tuple[int, int]]:
    """The cells i <= j, row by row: the order the masks are scored in."""
    return [(i, j) for i in range(k) for j in range(i, k)]


def interaction_contrast(metric: str, gold: np.ndarray, both: np.ndarray, first: np.ndarray, second: np.ndarray,
                         none: np.ndarray, num_labels: int
                         ) -> tuple[Callable[[np.ndarray], np.ndarray], int, float, bytes | None]:
    """The permutation contrast of one interaction: ``swaps [rows, d] -> interaction`` over the d examples a
    swap can change, d, the observed interaction, and for accuracy the contrast values as bytes (two
    interactions with equal values draw equal rounds, so they share one p-value)."""
    size = metrics.label_count(num_labels, gold, both, first, second, none)
    movable = (both != first) | (second != none)
    if metric == "accuracy":  # the mean of per-example contrasts: the sign-flip test on integers
        right = [(p == gold).astype(np.int64) for p in (both, first, second, none)]
        contrast = right[0] - right[1] - right[2] + right[3]
        movable = contrast != 0
        values, n = contrast[movable], len(gold)

        def flipped(swaps: np.ndarray) -> np.ndarray:
            return np.where(swaps, -values, values).sum(axis=1) / n

        return flipped, int(movable.sum()), float(contrast.sum() / n), values.astype(np.int8).tobytes()
    fixed = [metrics.confusion(gold[~movable], p[~movable], size) for p in (both, first, second, none)]
    g, ij, i, j, zero = (a[movable] for a in (gold, both, first, second, none))

    def score(k: int, predicted: np.ndarray) -> np.ndarray:
        return metrics.from_confusion(metric, fixed[k] + metrics.confusion(g, predicted, size), num_labels)

    def permuted(swaps: np.ndarray) -> np.ndarray:
        return (score(0, np.where(swaps, i, ij)) - score(1, np.where(swaps, ij, i))
                - score(2, np.where(swaps, zero, j)) + score(3, np.where(swaps, j, zero)))

    observed = float(permuted(np.zeros((1, len(g)), dtype=bool))[0])
    return permuted, int(movable.sum()), observed, None


def interaction_p_values(metric: str, gold: np.ndarray, predictions: np.ndarray, baseline: np.ndarray,
                         index: dict[tuple[int, int], int], k: int, num_labels: int) -> dict[tuple[int, int], float]:
    """Unadjusted p-value of every interaction i < j (rounds from the family's size)."""
    rounds = significance.rounds_for(k * (k - 1) // 2)
    seen: dict[bytes, float] = {}  # accuracy: equal contrast vectors draw equal rounds, so equal p-values
    out = {}
    for i in range(k):
        for j in range(i + 1, k):
            contrast, movable, observed, memo = interaction_contrast(
                metric, gold, predictions[index[i, j]], predictions[index[i, i]], predictions[index[j, j]], baseline,
                num_labels)
            if memo is not None and memo in seen:
                out[i, j] = seen[memo]
                continue
            out[i, j] = significance.permutation_p_value(contrast, movable, observed, rounds)
            if memo is not None:
                seen[memo] = out[i, j]
    return out


def pair_sweep(engine: Engine, mode: str, split: str | None = None, limit: int | None = None,
               heads: Sequence[Sequence[int]] | None = None, *, progress: Progress = no_progress,
               cancelled: Cancelled = never_cancelled) -> dict:
    """``delta`` and ``interaction`` (k x k) over the chosen heads, with their significance (module doc)."""
    chosen = checked_heads(engine, heads)
    k = len(chosen)
    cells = pair_cells(k)
    index = {cell: position for position, cell in enumerate(cells)}
    masks = [[chosen[i]] if i == j else [chosen[i], chosen[j]] for i, j in cells]
    split_name = engine.task.split_name(split)
    prepared = engine.prepared(split_name, limit)
    gold, baseline = prepared.gold, prepared.baseline_predictions
    predictions, workers = mask_predictions(engine, masks, mode, split_name, limit, cancelled=cancelled,
                                            progress=lambda share: progress(PREDICTION_SHARE * share))
    base_score = engine.score(baseline, gold)
    delta = np.zeros((k, k))
    for (i, j), row in zip(cells, predictions, strict=True):
        delta[i, j] = delta[j, i] = engine.score(row, gold) - base_score
    diagonal = np.diag(delta)
    interaction = delta - diagonal[:, None] - diagonal[None, :]
    np.fill_diagonal(interaction, 0.0)

    num_labels = len(engine.model.labels)
    cell_p = significance.family_p_values(engine.task.metric, gold, baseline, predictions, num_labels)
    cell_fields = significance.holm_fields(cell_p)
    progress(PREDICTION_SHARE + (1 - PREDICTION_SHARE) / 2)
    pair_p = interaction_p_values(engine.task.metric, gold, predictions, baseline, index, k, num_labels)
    pair_fields = significance.holm_fields([pair_p[cell] for cell in sorted(pair_p)])
    progress(1.0)

    def square(values: Sequence, order: list[tuple[int, int]], diagonal_value: object) -> list[list]:
        grid: list[list] = [[diagonal_value] * k for _ in range(k)]
        for (i, j), value in zip(order, values, strict=True):
            grid[i][j] = grid[j][i] = value
        return grid

    upper = sorted(pair_p)
    return {
        "metric": engine.task.metric, "baseline": base_score, "n": len(prepared.examples), "mode": mode,
        "split": split_name, "heads": [list(h) for h in chosen], "workers": workers,
        "delta": delta.tolist(), "interaction": interaction.tolist(),
        "p_value": square(cell_fields["p_value"], cells, None),
        "p_holm": square(cell_fields["p_holm"], cells, None),
        "significant": square(cell_fields["significant"], cells, None),
        "interaction_p_value": square(pair_fields["p_value"], upper, None),
        "interaction_p_holm": square(pair_fields["p_holm"], upper, None),
        "interaction_significant": square(pair_fields["significant"], upper, None),
    }
