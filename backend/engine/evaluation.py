"""Scoring masks on a split without redoing work that can be reused.

A :class:`PreparedSplit` holds a split's examples tokenised into length-sorted batches, the unablated
model's logits, and the hidden states entering some or all layers (as many as the memory budget
allows). A mask whose first disabled head sits in layer ``l`` restarts from the latest kept layer
``<= l``: layers below it cannot change, since ablating a head only alters what comes after it.
Several masks can share one forward pass: the batch is repeated once per mask, and the intervention
gives each copy its own row of ``disabled``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from backend.engine.interventions import AblationMode, Intervention, intervene
from backend.engine.model import LoadedModel
from backend.engine.tasks import Example


@dataclass
class Batch:
    """Examples padded together. ``positions`` index into the prepared split's example list."""

    positions: np.ndarray
    input_ids: torch.Tensor  # [batch, seq]
    attention_mask: torch.Tensor  # [batch, seq] 1 = real token
    token_type_ids: torch.Tensor  # [batch, seq]
    additive: torch.Tensor  # [batch, 1, 1, seq]
    layer_inputs: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> [batch, seq, hidden]

    @property
    def size(self) -> int:
        return len(self.positions)


@dataclass
class PreparedSplit:
    examples: list[Example]
    gold: np.ndarray  # [n]
    batches: list[Batch]
    baseline_logits: np.ndarray  # [n, labels] float32
    kept_layers: tuple[int, ...]

    @property
    def baseline_predictions(self) -> np.ndarray:
        return self.baseline_logits.argmax(axis=-1)

    @property
    def kept_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for b in self.batches for t in b.layer_inputs.values())


def choose_kept_layers(num_layers: int, per_layer_bytes: int, budget_bytes: int) -> tuple[int, ...]:
    """Which layers' inputs fit the budget: all of them, or fewer spread evenly (never layer 0 first,
    since the embeddings are cheap to recompute)."""
    fit = budget_bytes // per_layer_bytes if per_layer_bytes else num_layers
    if fit >= num_layers:
        return tuple(range(num_layers))
    if fit <= 0:
        return ()
    kept = {min(num_layers - 1, max(1, round(num_layers * (i + 1) / (fit + 1)))) for i in range(fit)}
    return tuple(sorted(kept))


def prepare_split(model: LoadedModel, examples: list[Example], *, batch_size: int, budget_bytes: int) -> PreparedSplit:
    """Tokenise, batch by length, run the unablated model once and keep layer inputs within the budget."""
    texts = [e.text for e in examples]
    pairs = [e.text_pair for e in examples]
    has_pairs = any(p is not None for p in pairs)
    lengths = [
        len(ids) for ids in model.tokenizer(
            texts, [p or "" for p in pairs] if has_pairs else None, truncation=True, max_length=model.max_tokens
        )["input_ids"]
    ]
    order = np.argsort(lengths, kind="stable")
    element = torch.finfo(model.dtype).bits // 8
    padded_tokens = sum(
        max(lengths[i] for i in order[s:s + batch_size]) * len(order[s:s + batch_size])
        for s in range(0, len(order), batch_size)
    )
    kept = choose_kept_layers(model.num_layers, padded_tokens * model.config.hidden_size * element, budget_bytes)

    batches: list[Batch] = []
    logits = np.zeros((len(examples), model.config.num_labels), dtype=np.float32)
    for start in range(0, len(order), batch_size):
        positions = order[start:start + batch_size]
        encoded = model.encode_batch([texts[i] for i in positions], [pairs[i] for i in positions])
        encoded = {k: v.to(model.device) for k, v in encoded.items()}
        batch = Batch(positions=positions, additive=model.additive_mask(encoded["attention_mask"]), **encoded)

        def keep(layer: int, hidden: torch.Tensor, batch: Batch = batch) -> None:
            if layer in kept:
                batch.layer_inputs[layer] = hidden

        with torch.inference_mode():
            hidden = model.embed(batch.input_ids, batch.token_type_ids)
            out = model.classify(model.run_layers(hidden, batch.additive, keep=keep))
        logits[positions] = out.float().cpu().numpy()
        batches.append(batch)
    gold = np.array([e.label for e in examples], dtype=np.int64)
    return PreparedSplit(examples=examples, gold=gold, batches=batches, baseline_logits=logits, kept_layers=kept)


def _restart_layer(first_ablated: int, kept: tuple[int, ...]) -> int | None:
    """The latest kept layer at or below the first ablated one (None = start from the embeddings)."""
    usable = [k for k in kept if k <= first_ablated]
    return max(usable) if usable else None


def masked_logits(model: LoadedModel, prepared: PreparedSplit, disabled: torch.Tensor, mode: AblationMode,
                  means: torch.Tensor | None = None, *, use_layer_cache: bool = True,
                  rows_per_pass: int = 256) -> np.ndarray:
    """Logits ``[masks, n, labels]`` of every example under each mask of ``disabled [masks, layers, heads]``.

    Masks are grouped into passes of about `rows_per_pass` rows (examples x masks); each pass restarts
    from the kept hidden states below the earliest ablated layer of its masks.
    """
    disabled = disabled.to(device=model.device, dtype=torch.bool)
    masks = disabled.shape[0]
    out = np.zeros((masks, len(prepared.examples), model.config.num_labels), dtype=np.float32)
    ablated_layers = disabled.any(dim=-1)  # [masks, layers]
    first = [int(row.nonzero()[0]) if row.any() else model.num_layers for row in ablated_layers.cpu()]
    order = np.argsort(first, kind="stable")  # masks with similar restart points share passes
    with torch.inference_mode():
        for batch in prepared.batches:
            per_pass = max(1, rows_per_pass // batch.size)
            for s in range(0, masks, per_pass):
                chosen = order[s:s + per_pass]
                earliest = min(first[i] for i in chosen)
                if earliest >= model.num_layers:  # nothing disabled: the baseline is the answer
                    out[chosen[:, None], batch.positions[None, :]] = prepared.baseline_logits[batch.positions]
                    continue
                restart = _restart_layer(earliest, prepared.kept_layers) if use_layer_cache else None
                if restart is None:
                    hidden, start = model.embed(batch.input_ids, batch.token_type_ids), 0
                else:
                    hidden, start = batch.layer_inputs[restart], restart
                copies = len(chosen)
                rows = disabled[torch.as_tensor(chosen, device=disabled.device)].repeat_interleave(batch.size, 0)
                intervention = Intervention(disabled=rows, mode=mode, means=means)
                with intervene(intervention):
                    final = model.run_layers(hidden.repeat(copies, 1, 1), batch.additive.repeat(copies, 1, 1, 1),
                                             start=start)
                    logits = model.classify(final).float().cpu().numpy()
                out[chosen[:, None], batch.positions[None, :]] = logits.reshape(copies, batch.size, -1)
    return out


def head_output_means(model: LoadedModel, examples: list[Example], batch_size: int) -> torch.Tensor:
    """Mean of each head's output over every real token of `examples`, unablated: ``[layers, heads, head_dim]``."""
    sums = torch.zeros(model.num_layers, model.num_heads, model.head_dim, dtype=torch.float64)
    tokens = 0
    with torch.inference_mode():
        for start in range(0, len(examples), batch_size):
            chunk = examples[start:start + batch_size]
            encoded = model.encode_batch([e.text for e in chunk], [e.text_pair for e in chunk])
            encoded = {k: v.to(model.device) for k, v in encoded.items()}
            real = encoded["attention_mask"].to(torch.float64)[:, None, :, None]  # [batch, 1, query, 1]
            intervention = Intervention(capture_outputs=True)
            with intervene(intervention):
                hidden = model.embed(encoded["input_ids"], encoded["token_type_ids"])
                model.run_layers(hidden, model.additive_mask(encoded["attention_mask"]))
            for layer, output in intervention.outputs.items():  # [batch, heads, query, head_dim]
                sums[layer] += (output.to(torch.float64).cpu() * real.cpu()).sum(dim=(0, 2))
            tokens += int(encoded["attention_mask"].sum())
    return (sums / max(tokens, 1)).to(torch.float32)
