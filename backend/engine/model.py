"""Loading a BERT-family classifier safely, and running it layer by layer.

Loading: safetensors only, no remote code, attention fixed at load time to headscope's own
(:mod:`headscope.engine.interventions`). Running: :meth:`LoadedModel.embed`, :meth:`LoadedModel.run_layers`
and :meth:`LoadedModel.classify` split the forward pass so that evaluation can restart from the hidden
states entering any layer (the layer cache).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from headscope.engine.errors import InputError, ModelLoadError
from headscope.engine.interventions import ATTN_IMPLEMENTATION
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel

log = logging.getLogger(__name__)

PICKLED_WEIGHTS = ("pytorch_model.bin", "tf_model.h5", "flax_model.msgpack", "model.ckpt.index")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


def _bert_head(model: PreTrainedModel, hidden: torch.Tensor) -> torch.Tensor:
    pooled = model.bert.pooler(hidden) if model.bert.pooler is not None else hidden[:, 0]
    return model.classifier(model.dropout(pooled))


def _sequence_head(model: PreTrainedModel, hidden: torch.Tensor) -> torch.Tensor:
    return model.classifier(hidden)


@dataclass(frozen=True)
class Family:
    """Where one architecture keeps its encoder, and how its classifier reads the last hidden states."""

    base: str
    head: Callable[[PreTrainedModel, torch.Tensor], torch.Tensor]


FAMILIES: dict[str, Family] = {
    "BertForSequenceClassification": Family("bert", _bert_head),
    "RobertaForSequenceClassification": Family("roberta", _sequence_head),
    "XLMRobertaForSequenceClassification": Family("roberta", _sequence_head),
    "CamembertForSequenceClassification": Family("roberta", _sequence_head),
    "ElectraForSequenceClassification": Family("electra", _sequence_head),
}


def pick_device(requested: str | None) -> torch.device:
    if requested:
        return torch.device(requested)
    return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")


def pick_dtype(requested: str, device: torch.device) -> torch.dtype:
    """float16 by default on CUDA (speed), float32 on CPU (CPU half precision is slow and lossy)."""
    if requested == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return getattr(torch, requested)


def _fingerprint(directory: Path) -> str:
    """Changes whenever the weights or the config change: a hash of config.json and every safetensors file."""
    digest = hashlib.sha256()
    for path in [directory / "config.json", *sorted(directory.glob("*.safetensors"))]:
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def resolve_model_dir(source: str | Path) -> Path:
    """A local directory as is; otherwise a hub id, fetched (safetensors and text files only)."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path.resolve()
    if path.exists():
        raise ModelLoadError(f"model path {path} is a file; give the directory that holds config.json")
    text = str(source)
    if text.startswith((".", "/", "~")) or text.count("/") > 1:
        raise ModelLoadError(f"model directory {text} does not exist")
    try:
        from huggingface_hub import snapshot_download

        local = snapshot_download(text, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model"])
    except Exception as exc:  # offline, unknown id, auth: all mean "cannot get it"
        raise ModelLoadError(f"cannot fetch model {text!r} from the hub: {type(exc).__name__}: {exc}") from None
    return Path(local)


def _check_directory(directory: Path) -> None:
    if not (directory / "config.json").is_file():
        raise ModelLoadError(f"{directory} has no config.json: not a transformers model directory")
    if not list(directory.glob("*.safetensors")):
        pickled = sorted(p.name for p in directory.iterdir() if p.name in PICKLED_WEIGHTS
                         or p.suffix in PICKLE_SUFFIXES)
        if pickled:
            raise ModelLoadError(
                f"{directory} holds only pickled weights ({', '.join(pickled)}); headscope loads safetensors "
                "only, since unpickling runs code. Convert with save_pretrained(..., safe_serialization=True)."
            )
        raise ModelLoadError(f"{directory} has no *.safetensors weights")


@dataclass
class LoadedModel:
    """A classifier ready for headscope: eval mode, headscope attention, frozen parameters."""

    model: PreTrainedModel
    tokenizer: object
    name: str
    architecture: str
    family: Family
    fingerprint: str
    max_tokens: int

    @property
    def config(self):
        return self.model.config

    @property
    def num_layers(self) -> int:
        return self.config.num_hidden_layers

    @property
    def num_heads(self) -> int:
        return self.config.num_attention_heads

    @property
    def head_dim(self) -> int:
        return self.config.hidden_size // self.config.num_attention_heads

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def labels(self) -> list[str]:
        id2label = self.config.id2label
        return [str(id2label[i]) for i in range(self.config.num_labels)]

    @property
    def base(self) -> torch.nn.Module:
        return getattr(self.model, self.family.base)

    @property
    def layers(self) -> torch.nn.ModuleList:
        return self.base.encoder.layer

    def describe(self) -> dict:
        return {
            "name": self.name,
            "architecture": self.architecture,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "head_dim": self.head_dim,
            "max_tokens": self.max_tokens,
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
            "labels": self.labels,
            "fingerprint": self.fingerprint,
        }

    # -- tokenising ----------------------------------------------------------------------------
    def encode_one(self, text: str, text_pair: str | None = None) -> dict[str, list[int]]:
        """Encode an interactive input; longer than `max_tokens` is an error that names both numbers."""
        if not text or not text.strip():
            raise InputError("text is empty; give at least one non-space character")
        if text_pair is not None and not text_pair.strip():
            text_pair = None
        encoded = self.tokenizer(text, text_pair, truncation=False, return_token_type_ids=True)
        count = len(encoded["input_ids"])
        if count > self.max_tokens:
            raise InputError(
                f"input is {count} tokens long (special tokens and both segments counted); "
                f"the limit is max_tokens={self.max_tokens}"
            )
        return dict(encoded)

    def encode_batch(self, texts: list[str], pairs: list[str | None]) -> dict[str, torch.Tensor]:
        """Encode task examples, truncated to `max_tokens` as GLUE practice does, padded to the longest."""
        if any(p is not None for p in pairs):
            batch = self.tokenizer(texts, [p or "" for p in pairs], truncation=True, max_length=self.max_tokens,
                                   padding=True, return_tensors="pt", return_token_type_ids=True)
        else:
            batch = self.tokenizer(texts, truncation=True, max_length=self.max_tokens, padding=True,
                                   return_tensors="pt", return_token_type_ids=True)
        return {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}

    # -- running, layer by layer ---------------------------------------------------------------
    def additive_mask(self, attention_mask: torch.Tensor) -> torch.Tensor:
        """``[batch, key]`` 0/1 -> ``[batch, 1, 1, key]`` additive mask in the model's dtype."""
        mask = attention_mask[:, None, None, :].to(self.dtype)
        return (1.0 - mask) * torch.finfo(self.dtype).min

    def embed(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        """Token ids -> hidden states entering layer 0, ``[batch, seq, hidden]``."""
        hidden = self.base.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
        project = getattr(self.base, "embeddings_project", None)
        return project(hidden) if project is not None else hidden

    def run_layers(self, hidden: torch.Tensor, mask: torch.Tensor, start: int = 0, stop: int | None = None,
                   keep: Callable[[int, torch.Tensor], None] | None = None) -> torch.Tensor:
        """Run layers ``start..stop-1`` on the hidden states entering `start`; `keep(l, h)` sees each input."""
        for index in range(start, self.num_layers if stop is None else stop):
            if keep is not None:
                keep(index, hidden)
            hidden = self.layers[index](hidden, attention_mask=mask)
            if isinstance(hidden, tuple):  # older layer signatures return tuples
                hidden = hidden[0]
        return hidden

    def classify(self, hidden: torch.Tensor) -> torch.Tensor:
        """Last hidden states ``[batch, seq, hidden]`` -> logits ``[batch, labels]``."""
        return self.family.head(self.model, hidden)


def load_model(source: str | Path, *, device: str | None = None, dtype: str = "auto",
               max_tokens: int = 128, name: str | None = None) -> LoadedModel:
    """Load a supported classifier from a directory or hub id, safetensors only."""
    directory = resolve_model_dir(source)
    _check_directory(directory)
    try:
        config = AutoConfig.from_pretrained(directory, trust_remote_code=False)
    except Exception as exc:
        raise ModelLoadError(f"cannot read {directory / 'config.json'}: {exc}") from None
    architecture = (config.architectures or ["<none>"])[0]
    if architecture not in FAMILIES:
        raise ModelLoadError(
            f"architecture {architecture!r} is not supported; headscope supports {', '.join(FAMILIES)}"
        )
    torch_device = pick_device(device)
    torch_dtype = pick_dtype(dtype, torch_device)
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            directory, use_safetensors=True, trust_remote_code=False,
            attn_implementation=ATTN_IMPLEMENTATION, dtype=torch_dtype,
        )
        tokenizer = AutoTokenizer.from_pretrained(directory)
    except Exception as exc:
        raise ModelLoadError(f"cannot load model from {directory}: {type(exc).__name__}: {exc}") from None
    if type(model).__name__ != architecture:
        raise ModelLoadError(f"{directory} declares {architecture} but loads as {type(model).__name__}")
    model.to(torch_device).eval().requires_grad_(False)
    for index, layer in enumerate(getattr(model, FAMILIES[architecture].base).encoder.layer):
        layer.attention.self.layer_idx = index  # the intervention point keys on it
    positions = getattr(config, "max_position_embeddings", max_tokens)
    if FAMILIES[architecture].base == "roberta":
        positions -= 2  # RoBERTa-style positions start after the padding index
    return LoadedModel(
        model=model, tokenizer=tokenizer, architecture=architecture,
        name=name or (directory.name if Path(source).expanduser().is_dir() else str(source)),  # no server paths
        family=FAMILIES[architecture], fingerprint=_fingerprint(directory),
        max_tokens=min(max_tokens, positions),
    )

