"""The engine facade: one loaded model, one task, one result store, and the caches between them.

Everything the API serves is computed here; the API only validates and shapes. Forward passes run
behind one lock (a CPU has no spare cores to share, and the caches fill once), while the per-call
mask travels in the intervention's context variable.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Protocol, TypeVar

import numpy as np
import torch
from headscope.engine import metrics, significance
from headscope.engine.errors import InputError
from headscope.engine.evaluation import (
    Batch,
    PreparedSplit,
    Runner,
    batch_split,
    head_output_means,
    masked_logits,
    prepare_split,
)
from headscope.engine.interventions import ABLATION_MODES, AblationMode, capture_attention
from headscope.engine.masks import HeadMask
from headscope.engine.measures import MEASURES, output_gram, rollout, silenced, value_norms
from headscope.engine.model import LoadedModel
from headscope.engine.records import StoredEvaluation
from headscope.engine.scheduling import (
    DIRECT,
    Cancelled,
    Priority,
    Progress,
    Scheduler,
    check_cancelled,
    never_cancelled,
    no_progress,
    run_chunked,
)
from headscope.engine.store import ResultStore
from headscope.engine.tasks import Example, Task
from headscope.engine.words import Alignment, Parse, Parser, align, encode_with_offsets, stored_parses
from pydantic import Field

if TYPE_CHECKING:
    from headscope.engine.atlas.ray_workers import MaskPool

Head = tuple[int, int]
T = TypeVar("T")


class Sized(Protocol):
    """What :meth:`Engine.kept_states` keeps: anything that says how much memory it holds."""

    @property
    def nbytes(self) -> int: ...


S = TypeVar("S", bound=Sized)
MaskLike = HeadMask | Iterable[Sequence[int]]
MEANS_WAIT_POLL_S = 0.25  # how often a caller waiting for another's means computation reads its progress


@dataclass(frozen=True)
class AttentionResult:
    """One input's forward under a mask: every measure of docs/api.md is read from these arrays."""

    tokens: list[str]
    segments: list[int]
    label: str
    probs: list[float]
    weights: np.ndarray  # [layers, heads, query, key] float32, rows sum to 1
    value_norms: np.ndarray  # [layers, heads, key] float32, ||W_O block h . v_j^h||_2 (measure norm)
    disabled: np.ndarray  # [layers, heads] bool, the mask
    mode: str

    def silenced(self, layer: int, head: int) -> bool:
        """The head is disabled in a mode that makes it move nothing (zero, mean)."""
        return bool(silenced(self.disabled, self.mode)[layer, head])

    @cached_property
    def rollout(self) -> np.ndarray:
        """``[layers, query, key]`` attention rollout (computed once per memoised forward)."""
        return rollout(self.weights, self.disabled, self.mode)

    def head_maps(self, measure: str, heads: Sequence[Head]) -> np.ndarray:
        """``[len(heads), n, n]`` maps of the listed heads under ``weights`` or ``norm``; every head of
        ``weights`` in order comes without a copy."""
        layers, per_layer, n, _ = self.weights.shape
        index = [layer * per_layer + head for layer, head in heads]
        every = index == list(range(layers * per_layer))
        flat = self.weights.reshape(layers * per_layer, n, n)
        chosen = flat if every else flat[index]
        if measure == "weights":
            return chosen
        if measure != "norm":
            raise InputError(f"measure {measure!r} has no per-head map; per head: weights, norm")
        norms = self.value_norms.reshape(layers * per_layer, n)[index]
        norms = norms * ~silenced(self.disabled, self.mode).reshape(-1)[index, None]
        return chosen * norms[:, None, :]

    @property
    def nbytes(self) -> int:
        """Memory this result holds once its rollout is made (for the memo's byte budget)."""
        layers, _, n, _ = self.weights.shape
        return self.weights.nbytes + self.value_norms.nbytes + layers * n * n * 4

    def maps(self, measure: str) -> np.ndarray:
        """``[layers, heads, n, n]`` for ``weights``/``norm``, ``[layers, n, n]`` for ``rollout``."""
        if measure == "rollout":
            return self.rollout
        layers, heads = self.disabled.shape
        every = [(layer, head) for layer in range(layers) for head in range(heads)]
        return self.head_maps(measure, every).reshape(self.weights.shape)


class EvaluationResult(StoredEvaluation):
    """One mask's evaluation as the engine answers it: the stored record and how it was obtained."""

    cached: bool = Field(description="Read from the result store, not computed by this call.")
    elapsed_ms: float = Field(description="Time this call took, in milliseconds.")


class Engine:
    """Attention, predictions and evaluations of one model on one task, with reuse."""

    def __init__(self, model: LoadedModel, task: Task, store: ResultStore, *, batch_size: int = 64,
                 layer_cache_bytes: int = 2 * 1024**3, attention_cache_bytes: int = 1024**3,
                 scheduler: Scheduler = DIRECT) -> None:
        self.model = model
        self.scheduler = scheduler  # where model work queues: directly by default, the API's gate in a server
        self.task = task
        self.store = store
        self.batch_size = batch_size
        self.layer_cache_bytes = layer_cache_bytes
        self.attention_cache_bytes = attention_cache_bytes
        self.lock = threading.RLock()  # the model's: held by scheduled work while it runs, never while waiting
        self._state = threading.Lock()  # the memo dicts below, for moments (never around model work)
        self._once: dict[object, threading.Lock] = {}  # one lock per split preparation / means computation
        self._prepared: OrderedDict[tuple[str, int], PreparedSplit] = OrderedDict()
        self._attention: OrderedDict[tuple, AttentionResult] = OrderedDict()
        self._derived: OrderedDict[tuple, Sized] = OrderedDict()  # kept_states: anything with `nbytes`
        self._means: torch.Tensor | None = None
        self._means_share = 0.0  # how far the computation of the means in progress is (0..1)
        self.mask_pool: MaskPool | None = None  # workers that run a sweep's chunks elsewhere (Ray)
        self._page_predictions: dict[str, np.ndarray] = {}  # split -> baseline prediction per example, -1 = not yet
        self._grams: list[torch.Tensor] | None = None
        self.parser = Parser()

    # -- description and validation -------------------------------------------------------------
    def describe(self) -> dict:
        info = self.model.describe()
        info["task"] = {"name": self.task.name, "metric": self.task.metric, "splits": self.task.sizes()}
        return info

    def mask(self, ablate: MaskLike) -> HeadMask:
        """The canonical mask of ``[[layer, head], ...]`` (read once, validated, sorted, no repeats); a
        HeadMask passes through. Routes call this at the boundary and pass the mask inward."""
        return HeadMask.of(ablate, self.model.num_layers, self.model.num_heads)

    def disabled_tensor(self, ablate: MaskLike) -> torch.Tensor:
        """Validated ``[layers, heads]`` bool mask from ``[[layer, head], ...]``."""
        return self.mask(ablate).tensor()

    @staticmethod
    def check_mode(mode: str) -> AblationMode:
        if mode not in ABLATION_MODES:
            raise InputError(f"unknown ablation mode {mode!r}; allowed: {', '.join(ABLATION_MODES)}")
        return mode  # type: ignore[return-value]

    @staticmethod
    def check_measure(measure: str) -> str:
        if measure not in MEASURES:
            raise InputError(f"unknown measure {measure!r}; allowed: {', '.join(MEASURES)}")
        return measure

    # -- the norm measure ------------------------------------------------------------------------
    def value_norms(self, values: dict[int, torch.Tensor], layers: range | None = None) -> torch.Tensor:
        """Captured value vectors (layer -> ``[batch, heads, key, d]``) -> ``[batch, layers, heads, key]``
        float32 norms ||W_O block h . v_j^h||_2 (measures.py), from per-layer Gram matrices made once; of
        every layer, or of `layers` (part of a pass cut between layers)."""
        with self.lock:
            if self._grams is None:
                self._grams = [output_gram(self.model.output_projection(layer).weight, self.model.num_heads)
                               for layer in range(self.model.num_layers)]
        return torch.stack([value_norms(values[layer], self._grams[layer])
                            for layer in layers or range(self.model.num_layers)], dim=1)

    def identity(self) -> dict:
        """What makes this engine's numbers: model fingerprint, dtype, task content and max_tokens. Part of
        every stored result's key and every job's id, so results never cross models or tasks."""
        return {"model": self.model.fingerprint, "dtype": str(self.model.dtype), "task": self.task.content_hash,
                "max_tokens": self.model.max_tokens}

    def result_key(self, kind: str, **params: object) -> dict:
        """The result store's key for a `kind` of result with `params`, on this model and task."""
        return {"kind": kind, **self.identity(), **params}

    # -- scheduling -------------------------------------------------------------------------------
    def schedule(self, call: Callable[[], T], priority: Priority = Priority.BATCH) -> T:
        """Run one piece of model work through the scheduler, holding the caches' lock while it runs."""
        def locked() -> T:
            with self.lock:
                return call()

        return self.scheduler.schedule(locked, priority)

    def chunked(self, progress: Progress = no_progress, cancelled: Cancelled = never_cancelled,
                priority: Priority = Priority.BATCH) -> Runner:
        """A runner for evaluation.py's long loops: their units in time-sized chunks through the scheduler
        (scheduling.run_chunked), checking `cancelled` before and reporting `progress` after each chunk."""
        def runner(weights: Sequence[float], work: Callable[[int, int], None]) -> None:
            def locked(start: int, stop: int) -> None:
                with self.lock:
                    work(start, stop)

            run_chunked(self.scheduler, weights, locked, priority=priority, progress=progress, cancelled=cancelled)

        return runner

    def _once_lock(self, key: object) -> threading.Lock:
        with self._state:
            return self._once.setdefault(key, threading.Lock())

    # -- mean ablation statistics ----------------------------------------------------------------
    def head_means(self, progress: Progress = no_progress, cancelled: Cancelled = never_cancelled) -> torch.Tensor:
        """Per-head mean output over the reference split ``[layers, heads, head_dim]``: computed once (in
        chunks of batch work), stored. A caller that finds another one computing them waits for that
        computation and follows its progress (so the `means` job shows it, whoever started it);
        `cancelled` stops the wait or this caller's own computation before its next chunk."""
        lock = self._once_lock("head-means")
        while not lock.acquire(timeout=MEANS_WAIT_POLL_S):
            check_cancelled(cancelled)
            progress(self._means_share)
        try:
            if self._means is None:
                key = self.result_key("head-means", split=self.task.reference_split)
                shape = (self.model.num_layers, self.model.num_heads, self.model.head_dim)
                stored = self.store.get_array(key, shape)
                if stored is None:
                    def share(done: float) -> None:
                        self._means_share = done
                        progress(done)

                    self._means_share = 0.0
                    examples = self.task.split(self.task.reference_split)
                    stored = head_output_means(self.model, examples, self.batch_size,
                                               run=self.chunked(share, cancelled)).numpy()
                    self.store.put_array(key, stored)
                self._means = torch.from_numpy(stored).to(self.model.device)
        finally:
            lock.release()
        progress(1.0)
        return self._means

    def has_head_means(self) -> bool:
        """The per-head means are at hand (in memory or stored), so mean mode answers without computing them."""
        if self._means is not None:
            return True
        shape = (self.model.num_layers, self.model.num_heads, self.model.head_dim)
        return self.store.get_array(self.result_key("head-means", split=self.task.reference_split), shape) is not None

    def use_head_means(self, means: torch.Tensor) -> None:
        """Take the per-head means from elsewhere (a Ray worker gets its driver's, so every worker ablates
        with the very same numbers)."""
        with self.lock:
            self._means = means.to(self.model.device)

    def means_for(self, mode: str, disabled: torch.Tensor) -> torch.Tensor | None:
        return self.head_means() if mode == "mean" and bool(disabled.any()) else None

    # -- one input ----------------------------------------------------------------------------------
    def attention(self, text: str, text_pair: str | None, ablate: MaskLike,
                  mode: str = "zero") -> AttentionResult:
        """Every head's attention and the prediction for one input under a mask (memoised)."""
        mode = self.check_mode(mode)
        mask = self.mask(ablate)
        disabled = mask.tensor()
        key = (text, text_pair or None, mask.heads, mode)
        with self._state:
            if key in self._attention:
                self._attention.move_to_end(key)
                return self._attention[key]
        encoded = self.model.encode_one(text, text_pair)
        means = self.means_for(mode, disabled)

        def forward() -> AttentionResult:
            with self._state:  # a call for the same key that held the gate before this one has answered it
                if key in self._attention:
                    return self._attention[key]
            ids = torch.tensor([encoded["input_ids"]], device=self.model.device)
            types = torch.tensor([encoded["token_type_ids"]], device=self.model.device)
            mask = torch.ones_like(ids)
            logits, weights, intervention = capture_attention(
                lambda: self.model.classify(self.model.run_layers(self.model.embed(ids, types), mask), mask),
                self.model.num_layers, disabled=disabled[None].to(self.model.device), mode=mode, means=means,
                capture_values=True)
            weights = weights[0].float()
            if self.model.dtype != torch.float32:
                # half-precision weights are rounded (rows off 1 by up to ~1e-3 in float16, ~1e-2 in
                # bfloat16); the float32 answer renormalises each row so it sums to 1 as docs/api.md says
                weights = weights / weights.sum(dim=-1, keepdim=True)
            probs = torch.softmax(logits[0].float(), dim=-1).cpu().tolist()
            result = AttentionResult(
                tokens=self.model.tokenizer.convert_ids_to_tokens(encoded["input_ids"]),
                segments=list(encoded["token_type_ids"]),
                label=self.model.labels[int(np.argmax(probs))],
                probs=probs,
                weights=weights.cpu().numpy(),
                value_norms=self.value_norms(intervention.values)[0].cpu().numpy(),
                disabled=disabled.numpy(),
                mode=mode,
            )
            return result

        result = self.schedule(forward, Priority.INTERACTIVE)
        with self._state:
            self._memoise_attention(key, result)
        return result

    def _memoise_attention(self, key: tuple, result: AttentionResult) -> None:
        """Keep `result`, dropping the least recently used entries beyond the byte budget (one BERT-large
        entry at 512 tokens is 24 x 16 x 512 x 512 float32 = 400 MB, so a count would not bound memory);
        an entry larger than the whole budget is not kept."""
        size = result.nbytes
        if size > self.attention_cache_bytes:
            return
        self._attention[key] = result
        while sum(r.nbytes for r in self._attention.values()) > self.attention_cache_bytes:
            self._attention.popitem(last=False)

    def attention_memo_bytes(self) -> int:
        """Bytes the attention memo holds now."""
        with self._state:
            return sum(r.nbytes for r in self._attention.values())

    # -- a split ------------------------------------------------------------------------------------
    def prepared(self, split: str | None, limit: int | None, progress: Progress = no_progress,
                 cancelled: Cancelled = never_cancelled) -> PreparedSplit:
        """The split's first `limit` examples, tokenised, with baseline logits and kept layer inputs (the
        forward passes in chunks of batch work; prepared once, kept while the layer cache has room)."""
        examples = self.task.select(split, limit)
        key = (self.task.split_name(split), len(examples))
        with self._once_lock(("prepared", key)):
            with self._state:
                if key in self._prepared:
                    self._prepared.move_to_end(key)
                    return self._prepared[key]
            prepared = prepare_split(self.model, examples, batch_size=self.batch_size,
                                     budget_bytes=self.layer_cache_bytes, run=self.chunked(progress, cancelled))
            with self._state:
                self._prepared[key] = prepared
                self._trim_kept_states()
            return prepared

    def kept_states(self, key: tuple, compute: Callable[[], S]) -> S:
        """States derived from a split (the Layers page's per-layer readouts under a mask), computed once
        per `key` and kept in memory beside the prepared splits, within the same `layer_cache_bytes`
        (least recently used dropped first; one larger than the whole budget is not kept)."""
        with self._state:
            if key in self._derived:
                self._derived.move_to_end(key)
                return self._derived[key]
        with self._once_lock(("derived", key)):
            with self._state:
                if key in self._derived:
                    return self._derived[key]
            value = compute()
            with self._state:
                if value.nbytes <= self.layer_cache_bytes:
                    self._derived[key] = value
                    self._trim_kept_states()
            return value

    def _trim_kept_states(self) -> None:
        """Prepared splits and derived states within `layer_cache_bytes` (call holding ``_state``): the
        least recently used derived states go first, then prepared splits, always keeping the newest."""
        def total() -> int:
            return sum(p.kept_bytes for p in self._prepared.values()) + sum(d.nbytes for d in self._derived.values())

        while self._derived and total() > self.layer_cache_bytes:
            self._derived.popitem(last=False)
        while len(self._prepared) > 1 and total() > self.layer_cache_bytes:
            self._prepared.popitem(last=False)

    def ready(self, split: str | None, limit: int | None) -> PreparedSplit | None:
        """The prepared split if it is in memory now (nothing computed)."""
        key = (self.task.split_name(split), len(self.task.select(split, limit)))
        with self._state:
            return self._prepared.get(key)

    def batches(self, split: str | None, limit: int | None) -> list[Batch]:
        """The chosen examples in padded batches, for passes that start from the embeddings (attention maps):
        the prepared split's when it is in memory, else tokenised alone, without its baseline pass."""
        prepared = self.ready(split, limit)
        if prepared is not None:
            return prepared.batches
        return batch_split(self.model, self.task.select(split, limit), self.batch_size)

    def baseline_predictions(self, split: str | None, limit: int | None = None) -> np.ndarray:
        return self.prepared(split, limit).baseline_predictions

    def score(self, predictions: np.ndarray, gold: np.ndarray) -> float:
        return metrics.score(self.task.metric, gold, predictions, len(self.model.labels))

    def _evaluation_key(self, mask: HeadMask, mode: str, split: str, n: int) -> dict:
        return self.result_key("evaluate", split=split, n=n, mode=mode, mask=mask.pairs())

    def evaluation_record(self, mode: AblationMode, n: int, predictions: np.ndarray,
                          prepared: PreparedSplit) -> StoredEvaluation:
        """What the store keeps for one mask's predictions on a prepared split: the scores, the flipped ids
        and the delta's significance (so a repeated request answers without recomputing any of it)."""
        baseline = prepared.baseline_predictions
        score, base_score = self.score(predictions, prepared.gold), self.score(baseline, prepared.gold)
        return StoredEvaluation(
            metric=self.task.metric, mode=mode, n=n, score=score, baseline=base_score, delta=score - base_score,
            flipped=[int(i) for i in np.nonzero(predictions != baseline)[0]],
            significance=significance.significance(self.task.metric, prepared.gold, baseline, predictions,
                                                   len(self.model.labels)),
        )

    def remember_evaluation(self, mask: MaskLike, mode: str, split: str, record: StoredEvaluation) -> None:
        """Store one mask's evaluation under the key :meth:`stored_evaluation` looks up."""
        self.store.put(self._evaluation_key(self.mask(mask), mode, split, record.n), record.model_dump(mode="json"))

    def stored_evaluation(self, ablate: MaskLike, mode: str = "zero", split: str | None = None,
                          limit: int | None = None) -> EvaluationResult | None:
        """The stored result of exactly this evaluation, if there is one, without touching the model."""
        started = time.perf_counter()
        split_name = self.task.split_name(split)
        key = self._evaluation_key(self.mask(ablate), self.check_mode(mode), split_name,
                                   len(self.task.select(split_name, limit)))
        hit = StoredEvaluation.parse_or_none(self.store.get(key))
        if hit is None:
            return None
        elapsed_ms = (time.perf_counter() - started) * 1000
        return EvaluationResult(**dict(hit), cached=True, elapsed_ms=elapsed_ms)

    def evaluate(self, ablate: MaskLike, mode: str = "zero", split: str | None = None,
                 limit: int | None = None, *, use_store: bool = True, use_layer_cache: bool = True) -> EvaluationResult:
        """The task metric with `ablate` disabled by `mode`, against the unablated baseline, and how sure
        the difference is."""
        started = time.perf_counter()
        mask = self.mask(ablate)  # read once: `ablate` may be a one-shot iterable
        if use_store and (hit := self.stored_evaluation(mask, mode, split, limit)) is not None:
            return hit
        mode = self.check_mode(mode)
        disabled = mask.tensor()
        split_name = self.task.split_name(split)
        n = len(self.task.select(split_name, limit))
        prepared = self.prepared(split_name, limit)
        means = self.means_for(mode, disabled)
        logits = masked_logits(self.model, prepared, disabled[None], mode, means, use_layer_cache=use_layer_cache,
                               run=self.chunked())[0]
        value = self.evaluation_record(mode, n, logits.argmax(axis=-1), prepared)
        if use_store:
            self.remember_evaluation(mask, mode, split_name, value)
        return EvaluationResult(**dict(value), cached=False, elapsed_ms=(time.perf_counter() - started) * 1000)

    def evaluate_many(self, masks: Sequence[MaskLike], mode: str = "zero", split: str | None = None,
                      limit: int | None = None, *, use_layer_cache: bool = True, rows_per_pass: int | None = None,
                      progress: Progress = no_progress, cancelled: Cancelled = never_cancelled) -> np.ndarray:
        """Predictions ``[masks, n]`` for many masks, several masks per forward pass of `rows_per_pass` rows
        (None: sized for this device) (for sweeps), in time-sized chunks of batch work; `cancelled` is
        checked before each chunk."""
        mode = self.check_mode(mode)
        disabled = torch.stack([self.disabled_tensor(m) for m in masks])
        prepared = self.prepared(split, limit, cancelled=cancelled)
        means = self.means_for(mode, disabled)
        logits = masked_logits(self.model, prepared, disabled, mode, means, use_layer_cache=use_layer_cache,
                               rows_per_pass=rows_per_pass, run=self.chunked(progress, cancelled))
        return logits.argmax(axis=-1)

    def examples(self, split: str | None, offset: int, count: int,
                 query: str | None = None) -> tuple[int, list[dict]]:
        """A page of a split (or of its examples whose text or second segment contains `query`, ignoring
        case) with gold labels and the unablated model's predictions; the total counts the matches.

        Only the page is predicted (a split can have tens of thousands of rows); predictions are memoised
        per example, and a split already prepared for evaluation answers from its baseline.
        """
        split_name = self.task.split_name(split)
        rows = self.task.split(split_name)
        if query:
            needle = query.casefold()
            matches: Sequence[int] = [i for i, e in enumerate(rows) if needle in e.text.casefold()
                                      or (e.text_pair is not None and needle in e.text_pair.casefold())]
        else:
            matches = range(len(rows))
        chosen = list(matches[offset:offset + count])
        with self._state:
            known = self._page_predictions.setdefault(split_name, np.full(len(rows), -1, dtype=np.int64))
            whole = self._prepared.get((split_name, len(rows)))
            if whole is not None:
                known[:] = whole.baseline_predictions
            missing = [i for i in chosen if known[i] < 0]
        if count == 1 and missing and self._predicted_by_attention(rows[missing[0]], known, missing[0]):
            missing = []  # a view's lookup: predicted by the forward its attention needs next
        if len(missing) == 1:
            # the one example a view shows is interactive work; the inspector's views ask for it at once, so a
            # call queued behind another for it answers from `known` once it holds the gate (one forward)
            def predict_one() -> None:
                with self._state:
                    if known[missing[0]] >= 0:
                        return
                predicted = prepare_split(self.model, [rows[missing[0]]], batch_size=1, budget_bytes=0)
                with self._state:
                    known[missing] = predicted.baseline_predictions

            self.schedule(predict_one, Priority.INTERACTIVE)
        elif missing:
            # a list to choose from (the picker's page) is batch work, so on a large model (BERT-large at 512
            # tokens: seconds an example on a CPU) it never holds up the grid's attention call
            predicted = prepare_split(self.model, [rows[i] for i in missing], batch_size=self.batch_size,
                                      budget_bytes=0, run=self.chunked(priority=Priority.BATCH)).baseline_predictions
            with self._state:
                known[missing] = predicted
        labels = self.model.labels
        return len(matches), [
            {"id": rows[i].id, "text": rows[i].text, "text_pair": rows[i].text_pair, "label": labels[rows[i].label],
             "predicted": labels[int(p)]}
            for i, p in zip(chosen, known[chosen], strict=True)
        ]

    def _predicted_by_attention(self, example: Example, known: np.ndarray, index: int) -> bool:
        """A page of one (a view looking up the example it shows) predicted by the unablated attention forward,
        memoised: the inspector's grid asks for that forward next (or, under a mask, its difference view), so
        looking the example up costs no forward of its own (BERT-large at 512 tokens: seconds on a CPU).
        False when the example is longer than an interactive input may be (predicted as evaluation does)."""
        try:
            result = self.attention(example.text, example.text_pair, (), "zero")
        except InputError:
            return False
        with self._state:
            known[index] = int(np.argmax(result.probs))
        return True

    # -- words (spaCy) ------------------------------------------------------------------------------
    def parse(self, text: str, text_pair: str | None = None) -> Parse:
        """spaCy's parse of an interactive input, held to the same limits as /api/attention."""
        self.model.encode_one(text, text_pair)  # empty or longer than max_tokens: the same InputError
        return self.parser.parse(text, text_pair)

    def alignment(self, parse: Parse, tokens: list[str], text: str, text_pair: str | None,
                  truncate: bool) -> Alignment:
        """How `tokens` (the model's encoding of the input, truncated as task batches are when
        `truncate`) map onto the words of `parse`."""
        max_length = self.model.max_tokens if truncate else None
        with self.model.tokenizing:
            encoded = encode_with_offsets(self.model.tokenizer, text, text_pair, max_length)
        if len(encoded.input_ids) != len(tokens):
            raise RuntimeError(f"offsets encoding has {len(encoded.input_ids)} tokens, the model saw {len(tokens)}")
        return align(parse, encoded, tokens)

    def word_alignment(self, tokens: list[str], text: str, text_pair: str | None) -> Alignment:
        """How `attention`'s tokens for this input map onto spaCy's words (word level, docs/api.md)."""
        text_pair = text_pair if text_pair is not None and text_pair.strip() else None  # as encode_one
        return self.alignment(self.parser.parse(text, text_pair), tokens, text, text_pair, truncate=False)

    def split_parses(self, split: str | None, limit: int | None,
                     between_chunks: Callable[[float], None] = lambda _: None) -> list[Parse]:
        """Parses of the chosen examples, computed once per task, split and parser and then stored."""
        examples = self.task.select(split, limit)
        return stored_parses(self.store, self.parser, self.task.content_hash, self.task.split_name(split),
                             [(e.text, e.text_pair) for e in examples], between_chunks)
