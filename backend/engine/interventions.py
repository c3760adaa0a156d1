"""The one place where headscope reads and changes attention heads.

Every self-attention layer of a loaded model calls :func:`headscope_attention`, registered with
transformers' ``AttentionInterface`` under the name :data:`ATTN_IMPLEMENTATION` and selected once,
at load time. It computes eager attention and then applies whatever the *current* :class:`Intervention`
asks for. The current intervention lives in a ``ContextVar`` that :func:`intervene` sets for the length
of a ``with`` block, so nothing stays installed after a call and two threads never see each other's
masks (hooks are process-global; context variables are not).

Named points, with shapes:

- ``weights``   ``[batch, heads, query, key]``  softmax attention of one layer (captured here)
- ``values``    ``[batch, heads, key, head_dim]``  each head's value vectors of one layer, value projection
  bias included, as the layer's input gave them under the current mask (captured here; the ``norm``
  measure, :mod:`headscope.engine.measures`)
- ``output``    ``[batch, heads, query, head_dim]``  each head's context vector before the output
  projection (ablated here: ``zero`` -> 0, ``mean`` -> the stored mean)
- ``disabled``  ``[batch | 1, layers, heads]``  bool, True = head switched off for that batch row;
  one row per example lets a single forward pass evaluate a different mask per copy of the data
- ``means``     ``[layers, heads, head_dim]``  per-head mean output over the reference split
- ``gates``     ``[layers, heads]``  optional multiplicative gate on each head's output (1 = untouched),
  used for Michel et al.'s importance score, d loss / d gate

Which layer a call belongs to is not read from the module (DistilBERT's and ALBERT's attention modules
carry no ``layer_idx``, and ALBERT runs one module as every layer): a layer count in a second
``ContextVar`` says it. :func:`at_layer` sets it for one layer (the engine's layer-by-layer runs), and
:func:`count_layers` numbers the calls of a model's own forward in order (installed once per model by
its adapter, :mod:`headscope.engine.adapters`).

The ablation modes are implemented here; their names and definitions are :data:`ABLATION_MODES`
(:mod:`headscope.engine.modes`, light, re-exported here; docs/api.md, "Ablation modes"): the API validates
against them and serves them in ``/api/model``, the dashboard reads them from there. In ``uniform`` mode,
where a query may attend only some keys (ModernBERT's local layers), query i gets 1/L_i over the L_i
real keys it may attend.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from headscope.engine.modes import ABLATION_MODES, AblationMode
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, eager_mask

ATTN_IMPLEMENTATION = "headscope"
T = TypeVar("T")


@dataclass
class Intervention:
    """What one forward pass should do to the heads, and what it recorded."""

    disabled: torch.Tensor | None = None  # [batch | 1, layers, heads] bool
    mode: AblationMode = "zero"
    means: torch.Tensor | None = None  # [layers, heads, head_dim]
    gates: torch.Tensor | None = None  # [layers, heads]
    capture_weights: bool = False
    capture_outputs: bool = False
    capture_values: bool = False
    fused: bool = False  # PyTorch's fused attention when the pass captures nothing and gates nothing (no weights)
    weights: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> [batch, heads, query, key]
    outputs: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> [batch, heads, query, head_dim]
    values: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> [batch, heads, key, head_dim]
    _ablated_layers: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        if self.mode not in ABLATION_MODES:
            raise ValueError(f"unknown ablation mode {self.mode!r}; allowed: {', '.join(ABLATION_MODES)}")
        if self.disabled is not None:
            if self.disabled.dim() != 3:
                raise ValueError("disabled must be [batch | 1, layers, heads]")
            layers = self.disabled.any(dim=0).any(dim=-1).nonzero().flatten().tolist()
            self._ablated_layers = frozenset(layers)
            if self._ablated_layers and self.mode == "mean" and self.means is None:
                raise ValueError("mean ablation needs the stored per-head means")


_current: ContextVar[Intervention | None] = ContextVar("headscope_intervention", default=None)


class _LayerCount:
    """The layer number of the next attention call; each call takes it and moves it on by one."""

    __slots__ = ("next", "previous")

    def __init__(self, start: int, previous: _LayerCount | None) -> None:
        self.next = start
        self.previous = previous


_layer: ContextVar[_LayerCount | None] = ContextVar("headscope_layer", default=None)


@contextlib.contextmanager
def at_layer(index: int) -> Iterator[None]:
    """Number the attention calls inside the block from `index` (one layer run by the engine)."""
    token = _layer.set(_LayerCount(index, _layer.get()))
    try:
        yield
    finally:
        _layer.reset(token)


def count_layers(encoder: torch.nn.Module) -> None:
    """Number the attention calls of every forward of `encoder` from 0, in call order (its layers run in
    order, one attention call each). Hooks installed once; the count itself lives in the context."""

    def start(_module: torch.nn.Module, _args: object) -> None:
        _layer.set(_LayerCount(0, _layer.get()))

    def stop(_module: torch.nn.Module, _args: object, _output: object) -> None:
        count = _layer.get()
        _layer.set(count.previous if count is not None else None)

    encoder.register_forward_pre_hook(start)
    encoder.register_forward_hook(stop, always_call=True)


def _layer_of(module: torch.nn.Module) -> int:
    count = _layer.get()
    if count is not None:
        layer = count.next
        count.next += 1
        return layer
    layer = getattr(module, "layer_idx", None)
    if layer is None:
        raise RuntimeError("attention called outside a counted forward: run layers through the engine "
                           "(LoadedModel.run_layers) or the model's own forward")
    return layer


@contextlib.contextmanager
def intervene(intervention: Intervention) -> Iterator[Intervention]:
    """Make `intervention` apply to every forward pass run by this thread/task inside the block."""
    token = _current.set(intervention)
    try:
        yield intervention
    finally:
        _current.reset(token)


def _allowed_keys(attention_mask: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """Bool ``[batch, 1, query | 1, key]``: True where the query may attend the key (a real token, and
    inside the query's window where the layer has one)."""
    batch, _, _, keys = like.shape
    if attention_mask is None:
        return torch.ones(batch, 1, 1, keys, dtype=torch.bool, device=like.device)
    if attention_mask.dtype == torch.bool:
        return attention_mask
    return attention_mask > torch.finfo(attention_mask.dtype).min / 2


def headscope_attention(
    module: torch.nn.Module,
    query: torch.Tensor,  # [batch, heads, query, head_dim]
    key: torch.Tensor,  # [batch, heads, key, head_dim]
    value: torch.Tensor,  # [batch, heads, key, head_dim]
    attention_mask: torch.Tensor | None,  # additive float or bool, [batch, 1, query | 1, key]
    scaling: float | None = None,
    dropout: float = 0.0,
    **_: object,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eager attention plus the current intervention. Returns ([batch, query, heads, head_dim], weights).

    A pass whose intervention asks for `fused` attention and reads nothing back (no capture, no gates, not
    training) gets PyTorch's scaled_dot_product_attention instead (weights None), every mode applied to the
    heads' outputs (:func:`_fused_attention`); anything else falls back to the eager computation here."""
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    intervention = _current.get()
    if intervention is not None and intervention.fused and _may_fuse(module, intervention):
        return _fused_attention(intervention, _layer_of(module), query, key, value, attention_mask, scaling), None
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask
    # at least float32 (half precision softmax loses mass), float64 kept for exact gradient checks
    weights = torch.softmax(scores, dim=-1, dtype=torch.promote_types(scores.dtype, torch.float32)).to(query.dtype)
    weights = torch.nn.functional.dropout(weights, p=dropout, training=module.training)

    layer = _layer_of(module)
    ablated = intervention is not None and layer in intervention._ablated_layers
    if ablated:
        disabled = intervention.disabled[:, layer, :, None, None]  # [batch | 1, heads, 1, 1]
        if intervention.mode == "uniform":
            allowed = _allowed_keys(attention_mask, weights).to(weights.dtype)
            # a padding query whose window holds no real key gets a zero row, never 0/0
            uniform = allowed / allowed.sum(dim=-1, keepdim=True).clamp_min(1.0)
            weights = torch.where(disabled, uniform, weights)

    output = torch.matmul(weights, value)  # [batch, heads, query, head_dim]

    if intervention is not None:
        if intervention.capture_outputs:
            intervention.outputs[layer] = output
        if intervention.capture_values:
            intervention.values[layer] = value
        if ablated and intervention.mode == "zero":
            output = output.masked_fill(disabled, 0.0)
        elif ablated and intervention.mode == "mean":
            mean = intervention.means[layer].to(output.dtype)[None, :, None, :]  # [1, heads, 1, head_dim]
            output = torch.where(disabled, mean, output)
        if intervention.gates is not None:
            output = output * intervention.gates[layer].to(output.dtype)[None, :, None, None]
        if intervention.capture_weights:
            intervention.weights[layer] = weights
    return output.transpose(1, 2).contiguous(), weights


def _may_fuse(module: torch.nn.Module, intervention: Intervention) -> bool:
    """The fused kernel returns no weights and no per-head outputs: only a pass that reads neither back."""
    return not (module.training or intervention.gates is not None or intervention.capture_weights
                or intervention.capture_outputs or intervention.capture_values)


def _fused_attention(intervention: Intervention, layer: int, query: torch.Tensor, key: torch.Tensor,
                     value: torch.Tensor, attention_mask: torch.Tensor | None, scaling: float) -> torch.Tensor:
    """Fused attention, then each disabled head's output replaced: 0 (`zero`), its stored mean (`mean`), or
    the mean of its value vectors over the keys each query may attend (`uniform`: what weights of 1/L_i
    give, the eager path's definition). Returns ``[batch, query, heads, head_dim]``."""
    output = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask,
                                                              scale=scaling)  # [batch, heads, query, head_dim]
    if layer in intervention._ablated_layers:
        disabled = intervention.disabled[:, layer, :, None, None]  # [batch | 1, heads, 1, 1]
        if intervention.mode == "zero":
            output = output.masked_fill(disabled, 0.0)
        elif intervention.mode == "mean":
            output = torch.where(disabled, intervention.means[layer].to(output.dtype)[None, :, None, :], output)
        else:
            like = query.new_empty(query.shape[0], 1, 1, key.shape[2])
            allowed = _allowed_keys(attention_mask, like).to(value.dtype)  # [batch, 1, query | 1, key]
            uniform = allowed / allowed.sum(dim=-1, keepdim=True).clamp_min(1.0)
            output = torch.where(disabled, torch.matmul(uniform, value), output)  # [batch, heads, query | 1, d]
    return output.transpose(1, 2).contiguous()


def capture_attention(forward: Callable[[], T], layers: int | range,
                      **fields: Any) -> tuple[T, torch.Tensor, Intervention]:
    """Run `forward()` without gradients under an :class:`Intervention` (its fields from `fields`) that also
    records every layer's attention. `layers`: the number of layers `forward` runs from the first, or the
    range it runs (part of a pass cut between layers). Returns forward's value, the weights ``[batch, layers,
    heads, query, key]`` in the model's dtype, and the intervention (for anything else it captured). The one
    way headscope reads attention maps."""
    captured = Intervention(capture_weights=True, **fields)
    with torch.inference_mode(), intervene(captured):
        value = forward()
    layers = range(layers) if isinstance(layers, int) else layers
    return value, torch.stack([captured.weights[layer] for layer in layers], dim=1), captured


# The model's own forward (used for gradients and by tests) must build the same additive mask as eager.
AttentionInterface.register(ATTN_IMPLEMENTATION, headscope_attention)
AttentionMaskInterface.register(ATTN_IMPLEMENTATION, eager_mask)
