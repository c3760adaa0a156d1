"""What every atlas analysis shares: progress and cancellation hooks, and the attention maps of a split."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from headscope.engine.engine import Engine
from headscope.engine.interventions import capture_attention

Progress = Callable[[float], None]  # share done, 0..1
Cancelled = Callable[[], bool]


class JobCancelled(Exception):
    """Raised between evaluation chunks when the caller asked to stop."""


def no_progress(_: float) -> None:
    """Progress sink for callers that do not show any."""


def never_cancelled() -> bool:
    return False


def check_cancelled(cancelled: Cancelled) -> None:
    if cancelled():
        raise JobCancelled("cancelled")


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

    The engine's lock is held for one batch at a time, so interactive requests interleave with a job.
    """
    prepared = engine.prepared(split, limit)
    model = engine.model
    disabled = engine.disabled_tensor(ablate)
    ablated = bool(disabled.any())
    means = engine.head_means() if ablated and mode == "mean" else None
    total = len(prepared.examples)
    done = 0
    for batch in prepared.batches:
        check_cancelled(cancelled)
        with engine.lock:
            _, weights, intervention = capture_attention(
                lambda b=batch: model.run_layers(model.embed(b.input_ids, b.token_type_ids), b.attention_mask),
                model.num_layers, disabled=disabled[None].to(model.device) if ablated else None,
                mode=engine.check_mode(mode), means=means, capture_values=measure == "norm")
            weights = weights.float()
            if measure == "norm":  # [batch, layers, heads, key] norms scale each key's column
                weights = weights * engine.value_norms(intervention.values)[:, :, :, None, :]
        weights = weights.cpu().numpy()  # [batch, layers, heads, seq, seq]
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
