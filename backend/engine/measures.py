"""Attention measures beyond the weights (docs/api.md, "Attention measures").

- ``weights``: the softmax weights a_ij each head used (v1).
- ``norm`` (Kobayashi et al. 2020, "Attention is not only a weight"): a_ij * ||f_h(x_j)||_2 with
  f_h(x_j) = W_O[:, h*d:(h+1)*d] v_j^h, the part of the attention output projection that head h's value
  vector of token j passes through (value projection bias included, W_O's bias left out). A head
  disabled in ``zero`` or ``mean`` mode moves nothing: all 0.
- ``rollout`` (Abnar & Zuidema 2020): per layer, R_l = B_l R_(l-1), R_(-1) = I, B_l = rows of
  (0.5 M_l + 0.5 I) normalised to sum 1, M_l = mean weights over the heads that still attend (all
  heads in ``uniform`` mode, with their uniform weights; I when none is left).

Pure functions on tensors and arrays: the engine captures value vectors at the intervention point
and calls these; nothing here runs the model.
"""

from __future__ import annotations

import numpy as np
import torch

MEASURES: tuple[str, ...] = ("weights", "norm", "rollout")
HEAD_MEASURES: tuple[str, ...] = ("weights", "norm")  # one map per head; rollout has one per layer
SILENCING_MODES: tuple[str, ...] = ("zero", "mean")  # a head disabled so moves nothing between tokens


def output_gram(w_o: torch.Tensor, num_heads: int) -> torch.Tensor:
    """``[heads, d, d]`` float32: W_h^T W_h for each head's block W_h = W_O[:, h*d:(h+1)*d].

    ||W_h v||^2 = v^T (W_h^T W_h) v, so norms of every token cost heads * d^2 per token instead of a
    second output projection (hidden * hidden per token).
    """
    out, width = w_o.shape
    blocks = w_o.float().reshape(out, num_heads, width // num_heads).transpose(0, 1)  # [heads, out, d]
    return blocks.transpose(1, 2) @ blocks


def value_norms(values: torch.Tensor, gram: torch.Tensor) -> torch.Tensor:
    """||f_h(x_j)||_2 for every head and token: ``values [batch, heads, key, d]`` -> ``[batch, heads, key]``
    float32, from the head Gram matrices of :func:`output_gram`."""
    v = values.float()
    squared = torch.einsum("bhkd,hde,bhke->bhk", v, gram, v)
    return squared.clamp_min(0).sqrt()  # rounding can leave -1e-9 where the norm is 0


def silenced(disabled: np.ndarray, mode: str) -> np.ndarray:
    """``[layers, heads]`` bool: heads whose output no longer depends on any token (zero, mean mode)."""
    return disabled if mode in SILENCING_MODES else np.zeros_like(disabled)


def rollout(weights: np.ndarray, disabled: np.ndarray, mode: str) -> np.ndarray:
    """``weights [layers, heads, n, n]`` -> ``[layers, n, n]`` float32, each R_l (rows sum to 1)."""
    layers, _, n, _ = weights.shape
    eye = np.eye(n)
    silent = silenced(disabled, mode)
    result = np.empty((layers, n, n), dtype=np.float32)
    rolled = eye
    for layer in range(layers):
        attending = ~silent[layer]
        mixed = weights[layer, attending].astype(np.float64).mean(axis=0) if attending.any() else eye
        step = 0.5 * mixed + 0.5 * eye
        step /= step.sum(axis=-1, keepdims=True)
        rolled = step @ rolled
        result[layer] = rolled
    return result

