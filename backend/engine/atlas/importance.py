"""Michel et al. (2019): head importance from the gradient of the loss through a per-head gate, and
iterative pruning by that importance.

A gate ``xi [layers, heads]`` (all ones) multiplies each head's output at the intervention point. For an
example x with loss L_x (cross-entropy against the gold label), ``dL_x/dxi_h`` equals Michel's
``sum over positions of Att_h(x)^T dL_x/dAtt_h(x)``. The importance is ``I_h = E_x |dL_x/dxi_h|``, the
absolute value taken per example (not of the batch sum, as HF's run_bertology does), then
L2-normalised per layer. Per-example gradients need one backward pass per example.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from headscope.engine.atlas.common import Cancelled, Progress, never_cancelled, no_progress
from headscope.engine.engine import Engine
from headscope.engine.interventions import Intervention, intervene

PRUNE_SHARE = 0.1  # Michel et al. and run_bertology's masking_amount: 10 % of the heads a step


def raw_importance(engine: Engine, split: str | None, limit: int | None, *, mode: str = "zero",
                   disabled: torch.Tensor | None = None, progress: Progress = no_progress,
                   cancelled: Cancelled = never_cancelled) -> tuple[np.ndarray, float]:
    """``E_x |dL_x / d gate|`` as ``[layers, heads]`` float64, and the mean loss, with `disabled` heads
    switched off by `mode` (their gates stay in the graph but they are not pruned twice)."""
    model = engine.model
    prepared = engine.prepared(split, limit, cancelled=cancelled)
    total = np.zeros((model.num_layers, model.num_heads), dtype=np.float64)
    loss_sum = 0.0
    n = len(prepared.examples)
    if disabled is None:
        disabled = torch.zeros(model.num_layers, model.num_heads, dtype=torch.bool)
    means = engine.means_for(mode, disabled)
    units = [(batch, row, length) for batch in prepared.batches
             for row, length in enumerate(batch.attention_mask.sum(dim=1).tolist())]
    gate_disabled = disabled[None].to(model.device)

    def backward(start: int, stop: int) -> None:  # one example at a time, in time-sized chunks of batch work
        nonlocal total, loss_sum
        for batch, row, length in units[start:stop]:
            gold = torch.as_tensor(prepared.gold[batch.positions[row:row + 1]], device=model.device)
            with torch.enable_grad():
                gate = torch.ones(model.num_layers, model.num_heads, dtype=model.dtype, device=model.device,
                                  requires_grad=True)
                intervention = Intervention(disabled=gate_disabled, mode=mode, means=means, gates=gate)
                ids = batch.input_ids[row:row + 1, :length]
                types = batch.token_type_ids[row:row + 1, :length]
                mask = batch.attention_mask[row:row + 1, :length]
                with intervene(intervention):
                    hidden = model.embed(ids, types)
                    logits = model.classify(model.run_layers(hidden, mask), mask)
                loss = torch.nn.functional.cross_entropy(logits, gold)
                (grad,) = torch.autograd.grad(loss, gate)
            total += grad.abs().double().cpu().numpy()
            loss_sum += float(loss.detach())

    engine.chunked(progress, cancelled)([float(length) for _, _, length in units], backward)
    return total / n, loss_sum / n


def normalise_per_layer(importance: np.ndarray) -> np.ndarray:
    """Each layer's importances divided by their L2 norm (Michel et al.; run_bertology's default)."""
    norms = np.linalg.norm(importance, axis=-1, keepdims=True)
    return importance / np.where(norms > 0, norms, 1.0)


def head_importance(engine: Engine, mode: str = "zero", split: str | None = None, limit: int | None = None, *,
                    progress: Progress = no_progress, cancelled: Cancelled = never_cancelled) -> dict:
    """The ``importance`` job: normalised and raw importance per head."""
    raw, loss = raw_importance(engine, split, limit, mode=mode, progress=progress, cancelled=cancelled)
    return {"metric": engine.task.metric, "n": len(engine.task.select(split, limit)), "mode": mode,
            "split": engine.task.split_name(split), "loss": loss, "importance": normalise_per_layer(raw).tolist(),
            "raw": raw.tolist()}


def pruning_curve(engine: Engine, mode: str = "zero", split: str | None = None, limit: int | None = None, *,
                  share: float = PRUNE_SHARE, max_share: float = 0.9, progress: Progress = no_progress,
                  cancelled: Cancelled = never_cancelled) -> dict:
    """Prune `share` of all heads a step, least important first, recomputing importance on the heads left
    (as run_bertology does), and score the metric after each step: metric vs share of heads pruned."""
    layers, heads = engine.model.num_layers, engine.model.num_heads
    total = layers * heads
    per_step = max(1, round(share * total))
    steps = math.floor(max_share * total / per_step)
    pruned = torch.zeros(layers, heads, dtype=torch.bool)
    baseline = engine.evaluate([], mode, split, limit)
    points = [{"pruned": 0, "share": 0.0, "score": baseline.score, "delta": 0.0, "ci95": [0.0, 0.0], "heads": []}]
    for step in range(steps):
        def step_progress(done: float, step: int = step) -> None:
            progress((step + done) / steps)

        raw, _ = raw_importance(engine, split, limit, mode=mode, disabled=pruned, progress=step_progress,
                                cancelled=cancelled)
        score = np.where(pruned.numpy(), np.inf, normalise_per_layer(np.where(pruned.numpy(), 0.0, raw)))
        order = np.argsort(score, axis=None, kind="stable")[:per_step]
        removed = [divmod(int(i), heads) for i in order]
        for layer, head in removed:
            pruned[layer, head] = True
        result = engine.evaluate(pruned.nonzero().tolist(), mode, split, limit)
        points.append({"pruned": int(pruned.sum()), "share": float(pruned.sum()) / total, "score": result.score,
                       "delta": result.delta, "ci95": list(result.significance.ci95),
                       "heads": [list(h) for h in removed]})
    progress(1.0)
    return {"metric": engine.task.metric, "baseline": baseline.baseline, "n": baseline.n, "mode": mode,
            "split": engine.task.split_name(split), "step_share": share, "points": points}
