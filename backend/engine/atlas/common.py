"""What every atlas analysis shares: progress and cancellation hooks, and the attention maps of a split."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from headscope.engine.engine import Engine
from headscope.engine.evaluation import Batch, run_by_layer
from headscope.engine.interventions import capture_attention
from headscope.engine.scheduling import (  # noqa: F401 (the atlas modules' hooks, defined with the scheduler)
    Cancelled,
    JobCancelled,
    Progress,
    check_cancelled,
    never_cancelled,
    no_progress,
)


@dataclass(frozen=True)
class ExampleMaps:
    """One example's attention over its real tokens."""

    position: int  # index in the split's stored order
    tokens: list[str]
    segments: list[int]
    maps: np.ndarray  # [layers, heads, n, n] float32, in the measure asked (weights or norm)


def split_maps(engine: Engine, split: str | None, limit: int | None, progress: Progress = no_progress,
               cancelled: Cancelled = never_cancelled, measure: str = "weights", *,
               ablate: Iterable[Sequence[int]] = (), mode: str = "zero") -> Iterator[ExampleMaps]:
    """Every head's attention on each chosen example, one padded batch per forward pass, as weights or as
    Kobayashi et al.'s norm (weight x ||W_O block . value||; docs/api.md); unablated, or with `ablate`
    disabled by `mode` (weights only: the syntax job).

    Each layer of a batch is a unit of batch work for the engine's scheduler (:func:`run_by_layer`), so
    interactive requests go between (at BERT-large size a whole batch is seconds on a CPU).
    The passes start from the embeddings, so the split is only tokenised, not prepared (no baseline pass).
    """
    batches = engine.batches(split, limit)
    model = engine.model
    disabled = engine.disabled_tensor(ablate)
    ablated = bool(disabled.any())
    means = engine.head_means() if ablated and mode == "mean" else None
    intervention_disabled = disabled[None].to(model.device) if ablated else None
    total = sum(batch.size for batch in batches)
    done = 0
    for batch in batches:
        check_cancelled(cancelled)
        parts: list[torch.Tensor] = []  # [batch, layers of a chunk, heads, seq, seq] each
        hidden: list[torch.Tensor] = []  # the states entering the next chunk's first layer

        def segment(_: int, first: int, stop: int, batch: Batch = batch, parts: list = parts,
                    hidden: list = hidden) -> None:
            layers = range(first, stop)
            states, weights, intervention = capture_attention(
                lambda: model.run_layers(model.embed(batch.input_ids, batch.token_type_ids) if first == 0
                                         else hidden.pop(), batch.attention_mask, first, stop),
                layers, disabled=intervention_disabled, mode=engine.check_mode(mode), means=means,
                capture_values=measure == "norm")
            weights = weights.float()
            if measure == "norm":  # [batch, layers, heads, key] norms scale each key's column
                weights = weights * engine.value_norms(intervention.values, layers)[:, :, :, None, :]
            parts.append(weights.cpu())
            hidden.append(states)

        run_by_layer(engine.chunked(cancelled=cancelled), [0], [batch.input_ids.numel()], model.num_layers, segment)
        weights = torch.cat(parts, dim=1).numpy()  # [batch, layers, heads, seq, seq]
        lengths = batch.attention_mask.sum(dim=1).tolist()
        for row, (position, length) in enumerate(zip(batch.positions, lengths, strict=True)):
            ids = batch.input_ids[row, :length].tolist()
            yield ExampleMaps(
                position=int(position),
                tokens=model.tokenizer.convert_ids_to_tokens(ids),
                segments=batch.token_type_ids[row, :length].tolist(),
                maps=weights[row, :, :, :length, :length],
            )
        done += batch.size
        progress(done / total)
