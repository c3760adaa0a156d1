"""One adapter per model family: everything the engine asks about a classifier's insides.

The engine never reaches into a model itself. It asks the family's :class:`Adapter` where the layers
are, which inputs the model takes, how to turn token ids into the states entering layer 0, how to run
one layer on hidden states with a padding mask, how the model's own classification head reads the last
states (final normalisation, pooling, pooler, classifier; dropout off), and where each layer's attention
output projection W_O is. Adding a family is one subclass here, listed in :data:`ADAPTERS`, and its
test (``tests/test_families.py``).

Families whose attention does not go through transformers' attention interface (DeBERTa-v2/v3, MPNet)
cannot be reached by :mod:`headscope.engine.interventions` and are refused by name.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from headscope.engine.interventions import count_layers
from torch import nn
from transformers import PreTrainedModel

LayerInputs = Callable[[int], dict]  # layer number -> the keyword arguments that layer's forward needs


class Adapter:
    """The BERT answers; other families override what differs."""

    family = "BERT"
    architectures: tuple[str, ...] = ("BertForSequenceClassification",)
    prefix = "bert"  # the classifier's attribute that holds the encoder
    takes_token_type_ids = True
    position_offset = 0  # positions the model reserves before the first token (RoBERTa: the padding index + 1)

    # -- where things are ---------------------------------------------------------------------------
    def encoder(self, model: PreTrainedModel) -> nn.Module:
        """The encoder inside the classifier (``BertModel``...): what a base checkpoint loads as."""
        return getattr(model, self.prefix)

    def layers(self, encoder: nn.Module) -> list[nn.Module]:
        """One module per layer number, in order (a module may repeat where layers share weights)."""
        return list(encoder.encoder.layer)

    def output_projection(self, layer: nn.Module) -> nn.Linear:
        """The attention output projection W_O: head h reads input columns ``[h*d, (h+1)*d)``."""
        return layer.attention.output.dense

    def max_positions(self, config) -> int:
        return config.max_position_embeddings - self.position_offset

    def install(self, encoder: nn.Module) -> None:
        """Once per loaded encoder: number its attention calls in its own forward (see interventions)."""
        count_layers(encoder)

    # -- running --------------------------------------------------------------------------------------
    def embed(self, encoder: nn.Module, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None) -> torch.Tensor:
        """Token ids -> the hidden states entering layer 0, ``[batch, seq, hidden]``."""
        types = token_type_ids if self.takes_token_type_ids else None
        return encoder.embeddings(input_ids=input_ids, token_type_ids=types)

    def layer_inputs(self, encoder: nn.Module, hidden: torch.Tensor, attention_mask: torch.Tensor) -> LayerInputs:
        """What each layer takes besides the hidden states, from the 0/1 ``[batch, key]`` padding mask:
        here one additive ``[batch, 1, 1, key]`` mask, the same for every layer."""
        mask = attention_mask[:, None, None, :].to(hidden.dtype)
        kwargs = {"attention_mask": (1.0 - mask) * torch.finfo(hidden.dtype).min}
        return lambda _index: kwargs

    def run_layer(self, layer: nn.Module, hidden: torch.Tensor, kwargs: dict) -> torch.Tensor:
        out = layer(hidden, **kwargs)
        return out[0] if isinstance(out, tuple) else out

    def run_last_layer(self, layer: nn.Module, hidden: torch.Tensor, kwargs: dict) -> torch.Tensor:
        """The last layer's output only where the head reads it: ``[batch, 1, hidden]``, the first token
        (its attention still sees every token). About a sixth less work on a 6-layer model."""
        context, _ = layer.attention.self(hidden, **kwargs)
        first = layer.attention.output(context[:, :1], hidden[:, :1])
        return layer.feed_forward_chunk(first)

    def reads_first_token_only(self, config) -> bool:
        """True when the head reads only the first token (then :meth:`run_last_layer` may be used)."""
        return True

    def head(self, model: PreTrainedModel, hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """Last hidden states -> logits, as the model's own head does (pooler on the first token)."""
        pooler = model.bert.pooler
        pooled = pooler(hidden) if pooler is not None else hidden[:, 0]
        return model.classifier(pooled)


class RobertaAdapter(Adapter):
    family = "RoBERTa"
    architectures = ("RobertaForSequenceClassification", "XLMRobertaForSequenceClassification",
                     "CamembertForSequenceClassification")
    prefix = "roberta"
    position_offset = 2

    def head(self, model, hidden, attention_mask):
        return model.classifier(hidden)  # dense + tanh + out_proj on the first token


class ElectraAdapter(Adapter):
    family = "ELECTRA"
    architectures = ("ElectraForSequenceClassification",)
    prefix = "electra"

    def embed(self, encoder, input_ids, token_type_ids):
        hidden = super().embed(encoder, input_ids, token_type_ids)
        project = getattr(encoder, "embeddings_project", None)  # embedding size -> hidden size
        return project(hidden) if project is not None else hidden

    def head(self, model, hidden, attention_mask):
        return model.classifier(hidden)  # dense + gelu + out_proj on the first token


class DistilBertAdapter(Adapter):
    family = "DistilBERT"
    architectures = ("DistilBertForSequenceClassification",)
    prefix = "distilbert"
    takes_token_type_ids = False

    def layers(self, encoder):
        return list(encoder.transformer.layer)

    def output_projection(self, layer):
        return layer.attention.out_lin

    def embed(self, encoder, input_ids, token_type_ids):
        return encoder.embeddings(input_ids)

    def run_last_layer(self, layer, hidden, kwargs):
        attended, _ = layer.attention(hidden, **kwargs)
        first = layer.sa_layer_norm(attended[:, :1] + hidden[:, :1])
        return layer.output_layer_norm(layer.ffn(first) + first)

    def head(self, model, hidden, attention_mask):
        pooled = torch.relu(model.pre_classifier(hidden[:, 0]))
        return model.classifier(pooled)


class AlbertAdapter(Adapter):
    """ALBERT runs one layer's weights as every layer (per group): the module repeats in :meth:`layers`,
    and each call is still its own layer number, so each is ablated on its own."""

    family = "ALBERT"
    architectures = ("AlbertForSequenceClassification",)
    prefix = "albert"

    def layers(self, encoder):
        config, groups = encoder.config, encoder.encoder.albert_layer_groups
        per_group = config.num_hidden_layers / config.num_hidden_groups
        return [module for index in range(config.num_hidden_layers)
                for module in groups[int(index / per_group)].albert_layers]  # as AlbertTransformer runs them

    def output_projection(self, layer):
        return layer.attention.dense

    def embed(self, encoder, input_ids, token_type_ids):
        hidden = encoder.embeddings(input_ids, token_type_ids=token_type_ids)
        return encoder.encoder.embedding_hidden_mapping_in(hidden)  # embedding size -> hidden size

    def run_last_layer(self, layer, hidden, kwargs):
        attended, _ = layer.attention(hidden, **kwargs)  # output projection and norm included
        first = attended[:, :1]
        return layer.full_layer_layer_norm(layer.ff_chunk(first) + first)

    def head(self, model, hidden, attention_mask):
        encoder = model.albert
        pooled = encoder.pooler_activation(encoder.pooler(hidden[:, 0])) if encoder.pooler is not None \
            else hidden[:, 0]
        return model.classifier(pooled)


class ModernBertAdapter(Adapter):
    """ModernBERT: rotary positions, pre-norm layers, local (sliding window) and global layers, a final
    norm, and a head that pools the first token or the mean over real tokens (``classifier_pooling``)."""

    family = "ModernBERT"
    architectures = ("ModernBertForSequenceClassification",)
    prefix = "model"
    takes_token_type_ids = False

    def layers(self, encoder):
        return list(encoder.layers)

    def output_projection(self, layer):
        return layer.attn.Wo

    def embed(self, encoder, input_ids, token_type_ids):
        return encoder.embeddings(input_ids=input_ids)

    def layer_inputs(self, encoder, hidden, attention_mask):
        from transformers.masking_utils import create_bidirectional_mask, create_bidirectional_sliding_window_mask

        config = encoder.config
        # the model's own mask builders: global layers see every real key, local ones a window of them
        arguments = {"config": config, "inputs_embeds": hidden, "attention_mask": attention_mask}
        masks = {"full_attention": create_bidirectional_mask(**arguments),
                 "sliding_attention": create_bidirectional_sliding_window_mask(**arguments)}
        positions = torch.arange(hidden.shape[1], device=hidden.device)[None]
        rotary = {kind: encoder.rotary_emb(hidden, positions, kind) for kind in set(config.layer_types)}
        types = config.layer_types
        return lambda index: {"attention_mask": masks[types[index]], "position_embeddings": rotary[types[index]]}

    def run_last_layer(self, layer, hidden, kwargs):
        attended, _ = layer.attn(layer.attn_norm(hidden), **kwargs)
        first = hidden[:, :1] + attended[:, :1]
        return first + layer.mlp(layer.mlp_norm(first))

    def reads_first_token_only(self, config):
        return config.classifier_pooling == "cls"

    def head(self, model, hidden, attention_mask):
        hidden = model.model.final_norm(hidden)
        if model.config.classifier_pooling == "mean":
            if attention_mask is None:
                pooled = hidden.mean(dim=1)
            else:
                real = attention_mask[:, :, None].to(hidden.dtype)
                pooled = (hidden * real).sum(dim=1) / real.sum(dim=1)
        else:
            pooled = hidden[:, 0]
        return model.classifier(model.head(pooled))


ADAPTERS: tuple[Adapter, ...] = (Adapter(), RobertaAdapter(), ElectraAdapter(), DistilBertAdapter(), AlbertAdapter(),
                                 ModernBertAdapter())
BY_ARCHITECTURE: dict[str, Adapter] = {arch: adapter for adapter in ADAPTERS for arch in adapter.architectures}
SUPPORTED = ", ".join(BY_ARCHITECTURE)
# attention computed inside the module, out of reach of a registered attention function
NO_ATTENTION_INTERFACE = ("DebertaV2", "Deberta", "MPNet")


def adapter_for(architecture: str) -> Adapter:
    """The adapter of `architecture` (``config.architectures[0]``), or a ValueError naming what is supported."""
    if architecture in BY_ARCHITECTURE:
        return BY_ARCHITECTURE[architecture]
    if architecture.startswith(NO_ATTENTION_INTERFACE):
        raise ValueError(
            f"architecture {architecture!r} computes attention inside its own modules, not through transformers' "
            f"attention interface, so headscope cannot read or switch off its heads; supported: {SUPPORTED}"
        )
    raise ValueError(f"architecture {architecture!r} is not supported; headscope supports {SUPPORTED}")
