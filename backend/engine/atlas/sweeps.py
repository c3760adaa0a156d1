"""Ablation sweeps: every head alone, every layer, and a greedy search for heads whose removal helps.

All of them score masks through :func:`chunks.mask_predictions`: in this process that is one
:meth:`Engine.evaluate_many` call per chunk of masks (several masks share a forward pass; the engine's
scheduler runs the passes in time-sized pieces, checking cancellation before each); on Ray the same chunks,
with the same pass size, run on the workers.
Each mask's result is also written to the store in :meth:`Engine.evaluate`'s format, so the
dashboard answers a click on a swept head at once.

How sure (docs/api.md, "Significance on every score"): `single-head` and `layer` add ``p_value``,
``p_holm`` and ``significant`` in the shape of ``delta``, every cell of a sweep being one family for
Holm's correction; greedy adds ``test_significance``, the test of its final set on the held-out split
(the only split its choice did not see).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from headscope.engine import significance
from headscope.engine.atlas.chunks import mask_predictions, workers_of
from headscope.engine.atlas.common import Cancelled, Progress, check_cancelled, never_cancelled, no_progress
from headscope.engine.engine import Engine

Head = tuple[int, int]


@dataclass(frozen=True)
class MaskScores:
    """What scoring a family of masks found: each mask's score and predictions, and the baseline's."""

    scores: list[float]
    baseline: float
    predictions: np.ndarray  # [masks, n]
    baseline_predictions: np.ndarray  # [n]
    gold: np.ndarray  # [n]

    def holm_fields(self, engine: Engine, shape: tuple[int, ...]) -> dict:
        """``p_value``, ``p_holm`` and ``significant`` of every mask against the baseline, the masks being
        one family (Holm), in `shape` (docs/api.md, "Significance on every score")."""
        p = significance.family_p_values(engine.task.metric, self.gold, self.baseline_predictions,
                                         self.predictions, len(engine.model.labels))
        return significance.holm_fields(p.reshape(shape))


def score_masks(engine: Engine, masks: Sequence[Sequence[Head]], mode: str, split: str | None,
                limit: int | None, *, chunk: int | None = None, progress: Progress = no_progress,
                cancelled: Cancelled = never_cancelled, remember: bool = True) -> MaskScores:
    """The metric under each mask and the baseline; the masks run in chunks (:func:`mask_predictions`: here
    or on Ray workers, `chunk` masks per chunk, by default as many as keep a chunk near ROWS_PER_CALL rows)."""
    split_name = engine.task.split_name(split)
    prepared = engine.prepared(split_name, limit, cancelled=cancelled)
    n = len(prepared.examples)
    baseline = engine.score(prepared.baseline_predictions, prepared.gold)
    predictions, _ = mask_predictions(engine, masks, mode, split_name, limit, chunk=chunk, progress=progress,
                                      cancelled=cancelled)
    scores: list[float] = []
    for mask, row in zip(masks, predictions, strict=True):
        scores.append(engine.score(row, prepared.gold))
        if remember:
            engine.remember_evaluation(mask, mode, split_name,
                                       engine.evaluation_record(mode, n, row, prepared))
    return MaskScores(scores, baseline, predictions, prepared.baseline_predictions, prepared.gold)


def _header(engine: Engine, mode: str, split: str | None, limit: int | None, baseline: float) -> dict:
    return {"metric": engine.task.metric, "baseline": baseline, "n": len(engine.task.select(split, limit)),
            "mode": mode, "split": engine.task.split_name(split), "workers": workers_of(engine)}


def single_head_sweep(engine: Engine, mode: str, split: str | None = None, limit: int | None = None, *,
                      progress: Progress = no_progress, cancelled: Cancelled = never_cancelled) -> dict:
    """``delta[l][h]``: the metric with only head (l, h) disabled, minus the baseline (Kovaleva's Figure 8)."""
    layers, heads = engine.model.num_layers, engine.model.num_heads
    masks = [[(layer, head)] for layer in range(layers) for head in range(heads)]
    scored = score_masks(engine, masks, mode, split, limit, progress=progress, cancelled=cancelled)
    grid = np.array(scored.scores).reshape(layers, heads)
    return {**_header(engine, mode, split, limit, scored.baseline), "delta": (grid - scored.baseline).tolist(),
            "score": grid.tolist(), **scored.holm_fields(engine, (layers, heads))}


def layer_sweep(engine: Engine, mode: str, split: str | None = None, limit: int | None = None, *,
                progress: Progress = no_progress, cancelled: Cancelled = never_cancelled) -> dict:
    """``delta[l]``: the metric with every head of layer l disabled, minus the baseline."""
    layers, heads = engine.model.num_layers, engine.model.num_heads
    masks = [[(layer, head) for head in range(heads)] for layer in range(layers)]
    scored = score_masks(engine, masks, mode, split, limit, progress=progress, cancelled=cancelled)
    return {**_header(engine, mode, split, limit, scored.baseline),
            "delta": [s - scored.baseline for s in scored.scores], "score": scored.scores,
            **scored.holm_fields(engine, (layers,))}


def greedy_search(engine: Engine, mode: str, split: str | None = None, limit: int | None = None, *,
                  max_heads: int = 5, held_out: str | None = "test", held_out_limit: int | None = None,
                  progress: Progress = no_progress, cancelled: Cancelled = never_cancelled) -> dict:
    """Grow a set of disabled heads one head at a time, each time adding the head that raises the metric on
    `split` most; stop after `max_heads` heads or when no head raises it. Every step is also scored on
    `held_out`, since a gain measured on the examples it was chosen on is inflated."""
    all_heads = [(layer, head) for layer in range(engine.model.num_layers) for head in range(engine.model.num_heads)]
    chosen: list[Head] = []
    start = score_masks(engine, [[]], mode, split, limit, remember=False)
    current_score, baseline = start.scores[0], start.baseline
    held_baseline = None
    if held_out is not None:
        held_baseline = engine.evaluate([], mode, held_out, held_out_limit).baseline
    steps = []
    for step in range(max_heads):
        candidates = [h for h in all_heads if h not in chosen]

        def step_progress(share: float, step: int = step) -> None:
            progress((step + share) / max_heads)

        scores = score_masks(engine, [[*chosen, h] for h in candidates], mode, split, limit,
                             progress=step_progress, cancelled=cancelled, remember=False).scores
        best = int(np.argmax(scores))  # ties: the earliest head
        if scores[best] <= current_score:
            break
        chosen.append(candidates[best])
        current_score = scores[best]
        entry = {"added": list(candidates[best]), "heads": [list(h) for h in chosen], "score": current_score,
                 "delta": current_score - baseline}
        if held_out is not None:
            check_cancelled(cancelled)
            held = engine.evaluate(chosen, mode, held_out, held_out_limit)
            entry.update(held_out_score=held.score, held_out_delta=held.delta)
        steps.append(entry)
    progress(1.0)
    last = steps[-1] if steps else None
    final = engine.evaluate(chosen, mode, held_out, held_out_limit) if held_out else None
    return {
        **_header(engine, mode, split, limit, baseline), "max_heads": max_heads, "steps": steps,
        "heads": [list(h) for h in chosen], "score": current_score, "delta": current_score - baseline,
        "held_out": held_out, "held_out_n": len(engine.task.select(held_out, held_out_limit)) if held_out else None,
        "held_out_baseline": held_baseline,
        "held_out_delta": last["held_out_delta"] if last and held_out else (0.0 if held_out else None),
        "test_significance": final.significance.model_dump(mode="json") if final else None,
    }
