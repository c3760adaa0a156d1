"""Scoring masks on a split without redoing work that can be reused.

A :class:`PreparedSplit` holds a split's examples tokenised into length-sorted batches, the unablated
model's logits, and the hidden states entering some or all layers (as many as the memory budget
allows). A mask whose first disabled head sits in layer ``l`` restarts from the latest kept layer
``<= l``: layers below it cannot change, since ablating a head only alters what comes after it.
Several masks can share one forward pass: the batch is repeated once per mask, and the intervention
gives each copy its own row of ``disabled``.

Speed (issue 6): masks are grouped by restart layer so a pass never recomputes layers one of its masks
did not need; the last layer is computed only as far as the classifier reads it (the first token, for
the families whose head reads only that: :meth:`LoadedModel.logits_from`);
on CUDA, kept layer inputs that do not fit the device wait in pinned host memory, logits stay on the
device until the end, and passes are sized from the device's free memory. These passes read no weights
back, so they run PyTorch's fused attention (``Intervention(fused=True)``: scaled_dot_product_attention,
every ablation mode applied to the heads' outputs; logits equal the eager path's within float rounding,
tests/test_fused.py; speed: bench/fused_bench.py, README's speed table).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from headscope.engine.interventions import AblationMode, Intervention, intervene
from headscope.engine.model import LoadedModel
from headscope.engine.tasks import Example


@dataclass
class Batch:
    """Examples padded together. ``positions`` index into the prepared split's example list."""

    positions: np.ndarray
    input_ids: torch.Tensor  # [batch, seq]
    attention_mask: torch.Tensor  # [batch, seq] 1 = real token
    token_type_ids: torch.Tensor  # [batch, seq] segments (the adapter passes them on where the model takes them)
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


# Rows (examples x masks) per pass on CPU: one batch already keeps the cores busy, and bigger passes only
# spill the caches (12 single-head masks on 300 dev examples, MiniLM, 1 thread: 64 rows 16.3 s, 256 rows
# 18.1 s, 1024 rows 21.8 s), so on CPU the masks of a sweep share passes only when batches are small.
CPU_ROWS_PER_PASS = 64
# Padded tokens in one batch, and in one pass, on a CPU: 64 sentences of 16 tokens, or two inputs of 512 tokens
# (a BERT-large pass of such a batch is seconds on a CPU, where a batch of 64 such took minutes). One layer of
# one pass is the smallest unit of batch work the scheduler hands out (run_by_layer), so an interactive call
# (the inspector's grid) waits for at most a layer of such a batch.
CPU_BATCH_TOKENS = 1024
CUDA_MEMORY_FRACTION = 0.5  # share of the free device memory one pass may use (the allocator needs slack)
CUDA_MAX_ROWS_PER_PASS = 16384


def rows_per_pass_for(model: LoadedModel, prepared: PreparedSplit) -> int:
    """How many rows one pass can take: on CUDA, what half the free memory holds at the split's longest
    batch (activations of one layer at a time, in inference mode); on CPU a fixed size, fewer rows where
    the longest batch's rows are long (CPU_BATCH_TOKENS)."""
    if not prepared.batches:
        return CPU_ROWS_PER_PASS
    if model.device.type != "cuda":
        seq = max(b.input_ids.shape[1] for b in prepared.batches)
        return max(1, min(CPU_ROWS_PER_PASS, CPU_BATCH_TOKENS // seq))
    free, _total = torch.cuda.mem_get_info(model.device)
    seq = max(b.input_ids.shape[1] for b in prepared.batches)
    element = torch.finfo(model.dtype).bits // 8
    hidden, heads = model.config.hidden_size, model.num_heads
    intermediate = getattr(model.config, "intermediate_size", 4 * hidden)
    # live at once in one layer: input and repeated copy, Q/K/V, context, projections, FFN activations;
    # scores in the model dtype (a few copies) plus the float32 softmax
    per_row = seq * (10 * hidden + 2 * intermediate) * element + heads * seq * seq * (3 * element + 8)
    return int(max(1, min(CUDA_MAX_ROWS_PER_PASS, free * CUDA_MEMORY_FRACTION // per_row)))


def _stash(hidden: torch.Tensor, on_device: bool) -> torch.Tensor:
    """Keep a layer input on its device, or in pinned host memory so copying it back can overlap work."""
    if on_device or hidden.device.type != "cuda":
        return hidden
    host = torch.empty(hidden.shape, dtype=hidden.dtype, pin_memory=True)
    return host.copy_(hidden, non_blocking=True)


Runner = Callable[[Sequence[float], Callable[[int, int], None]], None]


def run_all(weights: Sequence[float], work: Callable[[int, int], None]) -> None:
    """Run every unit at once (the default): callers that queue model work pass a chunking runner
    (``Engine.chunked``: :func:`headscope.engine.scheduling.run_chunked` through the engine's scheduler)."""
    work(0, len(weights))


def run_by_layer(run: Runner, starts: Sequence[int], costs: Sequence[float], num_layers: int,
                 segment: Callable[[int, int, int], None]) -> None:
    """Run forward passes through `run` as units of one layer each: pass ``p`` covers layers
    ``starts[p]..num_layers-1`` at ``costs[p]`` a layer.

    Why layers: a unit is what an interactive call may wait for, and one pass of a batch is seconds on a
    CPU at BERT-large size (24 layers, 1,024 padded tokens), one layer a 24th of it. `segment(p, a, b)` runs
    layers ``a..b-1`` of pass ``p``: once per pass and chunk, in order, the pass's first call starting at
    ``starts[p]``, its last one ending at `num_layers`; between calls it keeps the pass's hidden states.
    Unchunked (:func:`run_all`) each pass is one call, so the same passes run the same operations either
    way and every number is the same.
    """
    units = [(p, layer) for p, start in enumerate(starts) for layer in range(start, num_layers)]

    def work(first: int, stop: int) -> None:
        index = first
        while index < stop:
            p, begin = units[index]
            end = index
            while end < stop and units[end][0] == p:
                end += 1
            segment(p, begin, units[end - 1][1] + 1)
            index = end

    run([costs[p] for p, _ in units], work)


def batch_split(model: LoadedModel, examples: list[Example], batch_size: int) -> list[Batch]:
    """The examples tokenised (truncated to `max_tokens`) into batches of similar length, on the model's
    device: all a pass over the split needs besides the model (no forward pass here). A batch holds at most
    `batch_size` examples and, on a CPU, at most CPU_BATCH_TOKENS padded tokens (at least one example)."""
    lengths = model.token_counts([e.text for e in examples], [e.text_pair for e in examples])
    order = np.argsort(lengths, kind="stable")
    tokens = CPU_BATCH_TOKENS if model.device.type == "cpu" else None
    batches: list[Batch] = []
    start = 0
    while start < len(order):
        stop = start + 1  # lengths ascend, so the last example of a batch sets its padded length
        while stop < len(order) and stop - start < batch_size and \
                (tokens is None or (stop - start + 1) * lengths[order[stop]] <= tokens):
            stop += 1
        positions, start = order[start:stop], stop
        encoded = model.encode_batch([examples[i].text for i in positions], [examples[i].text_pair for i in positions])
        encoded = {k: v.to(model.device, non_blocking=True) for k, v in encoded.items()}
        batches.append(Batch(positions=positions, **encoded))
    return batches


def prepare_split(model: LoadedModel, examples: list[Example], *, batch_size: int, budget_bytes: int,
                  device_budget_bytes: int | None = None, run: Runner = run_all) -> PreparedSplit:
    """Tokenise, batch by length, run the unablated model once and keep layer inputs within the budget.

    On CUDA, kept inputs beyond `device_budget_bytes` (default: a quarter of the free device memory,
    leaving room for passes) live in pinned host memory instead. The forward passes (a unit per batch
    and layer, :func:`run_by_layer`) go through `run`.
    """
    batches = batch_split(model, examples, batch_size)
    element = torch.finfo(model.dtype).bits // 8
    padded_tokens = sum(b.input_ids.numel() for b in batches)
    kept = choose_kept_layers(model.num_layers, padded_tokens * model.config.hidden_size * element, budget_bytes)
    if device_budget_bytes is None:
        device_budget_bytes = torch.cuda.mem_get_info(model.device)[0] // 4 if model.device.type == "cuda" else 0
    on_device_bytes = 0

    batch_logits: list[torch.Tensor | None] = [None] * len(batches)
    hidden: torch.Tensor | None = None  # states of the batch in progress, between two chunks

    def forward(index: int, first: int, stop: int) -> None:
        nonlocal hidden
        batch = batches[index]

        def keep(layer: int, states: torch.Tensor) -> None:
            nonlocal on_device_bytes
            if layer in kept:
                size = states.numel() * states.element_size()
                fits = on_device_bytes + size <= device_budget_bytes
                on_device_bytes += size if fits else 0
                batch.layer_inputs[layer] = _stash(states, fits)

        with torch.inference_mode(), intervene(Intervention(fused=True)):
            if first == 0:
                hidden = model.embed(batch.input_ids, batch.token_type_ids)
            if stop < model.num_layers:
                hidden = model.run_layers(hidden, batch.attention_mask, first, stop, keep=keep)
            else:
                batch_logits[index] = model.classify(*model.final_states(hidden, batch.attention_mask, first,
                                                                         keep=keep)).float()
                hidden = None

    run_by_layer(run, [0] * len(batches), [b.size * b.input_ids.shape[1] for b in batches], model.num_layers,
                 forward)
    logits = np.zeros((len(examples), model.config.num_labels), dtype=np.float32)
    if batches:  # one device-to-host copy for the whole split
        logits[np.concatenate([b.positions for b in batches])] = torch.cat(batch_logits).cpu().numpy()
    gold = np.array([e.label for e in examples], dtype=np.int64)
    return PreparedSplit(examples=examples, gold=gold, batches=batches, baseline_logits=logits, kept_layers=kept)


def _restart_layer(first_ablated: int, kept: tuple[int, ...]) -> int | None:
    """The latest kept layer at or below the first ablated one (None = start from the embeddings)."""
    usable = [k for k in kept if k <= first_ablated]
    return max(usable) if usable else None


@dataclass(frozen=True)
class Pass:
    """One forward pass of `masks` (indices into ``disabled``) over one batch, from `start_layer`."""

    batch: int
    start_layer: int  # -1 = from the embeddings
    masks: np.ndarray
    weight: float  # rows x tokens: its relative cost per layer it runs


def masked_logits(model: LoadedModel, prepared: PreparedSplit, disabled: torch.Tensor, mode: AblationMode,
                  means: torch.Tensor | None = None, *, use_layer_cache: bool = True,
                  rows_per_pass: int | None = None, run: Runner = run_all) -> np.ndarray:
    """Logits ``[masks, n, labels]`` of every example under each mask of ``disabled [masks, layers, heads]``.

    Masks are grouped by the layer they restart from (the latest kept layer at or below their first
    ablated one), so no pass recomputes a layer one of its masks did not need; each group is cut into
    passes of about `rows_per_pass` rows (examples x masks; None = sized for the device). The passes
    go through `run`, a unit per pass and layer weighted by its cost (:func:`run_by_layer`).
    """
    if rows_per_pass is None:
        rows_per_pass = rows_per_pass_for(model, prepared)
    disabled = disabled.to(device=model.device, dtype=torch.bool)
    masks, n = disabled.shape[0], len(prepared.examples)
    first = disabled.any(dim=-1).cpu().numpy()  # [masks, layers]: the one sync to learn the restart points
    first = np.where(first.any(axis=1), first.argmax(axis=1), model.num_layers)
    restart = np.array([
        -1 if not use_layer_cache else (r if (r := _restart_layer(int(f), prepared.kept_layers)) is not None else -1)
        for f in first
    ])  # -1 = from the embeddings
    active = np.flatnonzero(first < model.num_layers)
    passes = []
    for index, batch in enumerate(prepared.batches):
        per_pass = max(1, rows_per_pass // batch.size)
        for start_layer in np.unique(restart[active]):
            group = active[restart[active] == start_layer]
            for s in range(0, len(group), per_pass):
                chosen = group[s:s + per_pass]
                passes.append(Pass(index, int(start_layer), chosen, len(chosen) * batch.input_ids.numel()))
    out = torch.zeros(masks, n, model.config.num_labels, dtype=torch.float32, device=model.device)
    hidden: torch.Tensor | None = None  # states of the pass in progress, between two chunks

    def forward(p: int, first: int, stop: int) -> None:
        nonlocal hidden
        step = passes[p]
        batch = prepared.batches[step.batch]
        copies = len(step.masks)
        index = torch.as_tensor(step.masks, device=model.device)
        with torch.inference_mode():
            if first == max(step.start_layer, 0):
                if step.start_layer < 0:
                    hidden = model.embed(batch.input_ids, batch.token_type_ids)
                else:
                    hidden = batch.layer_inputs[step.start_layer].to(model.device, non_blocking=True)
                if copies > 1:
                    hidden = hidden.repeat(copies, 1, 1)
            rows = disabled[index].repeat_interleave(batch.size, 0)
            mask = batch.attention_mask.repeat(copies, 1) if copies > 1 else batch.attention_mask
            with intervene(Intervention(disabled=rows, mode=mode, means=means, fused=True)):
                if stop < model.num_layers:
                    hidden = model.run_layers(hidden, mask, first, stop)
                    return
                logits = model.logits_from(hidden, mask, first)
            hidden = None
            positions = torch.as_tensor(batch.positions, device=model.device)
            out[index[:, None], positions[None, :]] = logits.float().view(copies, batch.size, -1)

    run_by_layer(run, [max(p.start_layer, 0) for p in passes], [p.weight for p in passes], model.num_layers, forward)
    result = out.cpu().numpy()  # one device-to-host copy for every mask
    result[first >= model.num_layers] = prepared.baseline_logits  # nothing disabled: the baseline is the answer
    return result


def head_output_means(model: LoadedModel, examples: list[Example], batch_size: int,
                      run: Runner = run_all) -> torch.Tensor:
    """Mean of each head's output over every real token of `examples`, unablated: ``[layers, heads, head_dim]``
    (a unit of `run` per batch of examples and layer)."""
    sums = torch.zeros(model.num_layers, model.num_heads, model.head_dim, dtype=torch.float64, device=model.device)
    tokens = 0
    starts = list(range(0, len(examples), batch_size))
    encoded: dict[str, torch.Tensor] = {}  # the batch in progress, between two chunks
    hidden: torch.Tensor | None = None

    @torch.inference_mode()
    def forward(index: int, first: int, stop: int) -> None:
        nonlocal tokens, encoded, hidden
        if first == 0:
            chunk = examples[starts[index]:starts[index] + batch_size]
            encoded = model.encode_batch([e.text for e in chunk], [e.text_pair for e in chunk])
            tokens += int(encoded["attention_mask"].sum())  # counted on the host, before the copy
            encoded = {k: v.to(model.device) for k, v in encoded.items()}
            hidden = model.embed(encoded["input_ids"], encoded["token_type_ids"])
        real = encoded["attention_mask"].to(torch.float64)[:, None, :, None]  # [batch, 1, query, 1]
        intervention = Intervention(capture_outputs=True)
        with intervene(intervention):
            hidden = model.run_layers(hidden, encoded["attention_mask"], first, stop)
        for layer, output in intervention.outputs.items():  # [batch, heads, query, head_dim]
            sums[layer] += (output.to(torch.float64) * real).sum(dim=(0, 2))  # summed where it lives

    run_by_layer(run, [0] * len(starts), [float(len(examples[s:s + batch_size])) for s in starts], model.num_layers,
                 forward)
    return (sums / max(tokens, 1)).to(torch.float32).cpu()
