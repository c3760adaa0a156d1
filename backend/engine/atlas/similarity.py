"""Pre-trained vs fine-tuned: per-head cosine similarity of attention maps (Kovaleva et al., section 5).

The base encoder is loaded as safely as the classifier (safetensors only, no remote code) with
headscope's attention, so its weights are captured at the same intervention point. For every example
and head, the two maps over the same tokens are flattened and compared by cosine similarity; the
result is the mean over examples.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from headscope.engine.atlas.common import Cancelled, Progress, check_cancelled, never_cancelled, no_progress
from headscope.engine.engine import Engine
from headscope.engine.errors import InputError, ModelLoadError
from headscope.engine.interventions import ATTN_IMPLEMENTATION, capture_attention
from headscope.engine.model import check_directory, resolve_model_dir
from transformers import AutoModel

HOW_TO_GIVE_BASE = (
    "no pre-trained base model is configured: start headscope with --base-model DIR (a local safetensors "
    "directory or hub id of the model this classifier was fine-tuned from), or set HEADSCOPE_BASE_MODEL"
)


def default_base_model(model: str | None, base_model: str | None, cache_dir: Path) -> str | None:
    """The configured base model; for the embedded default model, the MiniLM it was fine-tuned from."""
    if base_model:
        return base_model
    if model is None:
        from headscope.engine.downloads import minilm_dir

        directory = minilm_dir(cache_dir)
        return str(directory) if (directory / "config.json").is_file() else None
    return None


def load_base_encoder(source: str | Path, engine: Engine) -> torch.nn.Module:
    """The pre-trained encoder, safetensors only, with headscope attention; shape-checked against the model."""
    directory = resolve_model_dir(source)
    check_directory(directory)
    try:
        encoder = AutoModel.from_pretrained(directory, use_safetensors=True, trust_remote_code=False,
                                            attn_implementation=ATTN_IMPLEMENTATION, dtype=engine.model.dtype)
    except Exception as exc:
        raise ModelLoadError(f"cannot load base model from {directory}: {type(exc).__name__}: {exc}") from None
    config = encoder.config
    if (config.num_hidden_layers, config.num_attention_heads) != (engine.model.num_layers, engine.model.num_heads):
        raise InputError(
            f"base model has {config.num_hidden_layers} layers x {config.num_attention_heads} heads, the model "
            f"{engine.model.num_layers} x {engine.model.num_heads}: they cannot be compared head by head"
        )
    expected = type(engine.model.base).__name__
    if type(encoder).__name__ != expected:
        raise InputError(f"base model loads as {type(encoder).__name__}, the model's encoder is {expected}: "
                         "give the pre-trained model of the same family")
    encoder.to(engine.model.device).eval().requires_grad_(False)
    engine.model.adapter.install(encoder)  # numbers its attention calls, as for the classifier
    return encoder


def attention_similarity(engine: Engine, base_source: str | None, split: str | None = None,
                         limit: int | None = None, *, progress: Progress = no_progress,
                         cancelled: Cancelled = never_cancelled) -> dict:
    """``similarity[l][h]``: mean over examples of the cosine similarity of head (l, h)'s maps."""
    if not base_source:
        raise InputError(HOW_TO_GIVE_BASE)
    encoder = load_base_encoder(base_source, engine)
    model = engine.model
    batches = engine.batches(split, limit)  # both passes start from the embeddings: no baseline pass
    total = np.zeros((model.num_layers, model.num_heads), dtype=np.float64)
    n = sum(batch.size for batch in batches)
    done = 0
    for batch in batches:
        check_cancelled(cancelled)
        _, tuned, _ = engine.schedule(lambda b=batch: capture_attention(lambda: model.run_layers(
            model.embed(b.input_ids, b.token_type_ids), b.attention_mask), model.num_layers))
        _, base, _ = engine.schedule(lambda b=batch: capture_attention(
            lambda: encoder(**model.inputs(vars(b))), model.num_layers))
        tuned, base = tuned.double(), base.double()  # [batch, layers, heads, query, key]
        real = batch.attention_mask.to(torch.float64)
        cell = (real[:, :, None] * real[:, None, :])[:, None, None]  # padding cells left out
        dot = (tuned * base * cell).sum(dim=(-1, -2))
        norms = ((tuned**2 * cell).sum(dim=(-1, -2)) * (base**2 * cell).sum(dim=(-1, -2))).sqrt()
        total += (dot / norms.clamp_min(1e-12)).sum(dim=0).cpu().numpy()
        done += batch.size
        progress(done / n)
    return {"n": n, "split": engine.task.split_name(split), "base_model": Path(str(base_source)).name,
            "similarity": (total / n).tolist()}
