"""Loading a BERT-family classifier safely, and running it layer by layer.

Loading: safetensors only, no remote code, attention fixed at load time to headscope's own
(:mod:`headscope.engine.interventions`). Running: :meth:`LoadedModel.embed`, :meth:`LoadedModel.run_layers`
and :meth:`LoadedModel.classify` split the forward pass so that evaluation can restart from the hidden
states entering any layer (the layer cache). Everything family-specific is the family's adapter's
(:mod:`headscope.engine.adapters`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from headscope.engine.adapters import Adapter, adapter_for
from headscope.engine.errors import InputError, ModelLoadError
from headscope.engine.interventions import ATTN_IMPLEMENTATION, at_layer
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel

log = logging.getLogger(__name__)

PICKLED_WEIGHTS = ("pytorch_model.bin", "tf_model.h5", "flax_model.msgpack", "model.ckpt.index")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


def pick_device(requested: str | None) -> torch.device:
    if requested:
        return torch.device(requested)
    return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")


def pick_dtype(requested: str, device: torch.device) -> torch.dtype:
    """float16 by default on CUDA (speed), float32 on CPU (CPU half precision is slow and lossy)."""
    if requested == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return getattr(torch, requested)


def _hash_files(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def _file_identity(path: Path) -> list[str | int]:
    """What tells that a file is the very one hashed before, unchanged: where it is, which inode on which
    device, its size and its modification and change times (the change time moves on every write, rename
    and `touch`, and no program can set it back)."""
    stat = path.stat()
    return [str(path.resolve()), stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns]


def _fingerprint(directory: Path, known: Path | None = None) -> str:
    """Changes whenever the weights or the config change: a hash of config.json and every safetensors file.

    Hashing reads every byte of the weights (BERT-large: 1.3 GB, seconds on every start), so with `known`
    (a JSON file in the cache dir) a fingerprint is hashed once and reused while every file it covers is
    the very same file, unchanged (:func:`_file_identity`, read before hashing: a file written during the
    hash no longer matches); any difference, or a file added or removed, hashes again. A file that cannot
    be read or written is no error: the fingerprint is hashed as without it.
    """
    files = [directory / "config.json", *sorted(directory.glob("*.safetensors"))]
    identity = [_file_identity(path) for path in files]
    entries: dict[str, dict] = {}
    if known is not None:
        try:
            entries = json.loads(known.read_text())
        except (OSError, ValueError):
            entries = {}
        entry = entries.get(str(directory.resolve())) if isinstance(entries, dict) else None
        if isinstance(entry, dict) and entry.get("files") == identity and isinstance(entry.get("fingerprint"), str):
            return entry["fingerprint"]
    fingerprint = _hash_files(files)
    if known is not None:
        entries = {d: e for d, e in (entries if isinstance(entries, dict) else {}).items() if Path(d).is_dir()}
        entries[str(directory.resolve())] = {"files": identity, "fingerprint": fingerprint}
        try:
            known.parent.mkdir(parents=True, exist_ok=True)
            partial = known.with_name(f"{known.name}.{os.getpid()}.tmp")
            partial.write_text(json.dumps(entries, indent=1))
            partial.replace(known)  # atomic: a reader sees the old file or the new one
        except OSError as exc:
            log.warning("cannot remember the model fingerprint in %s: %s", known, exc)
    return fingerprint


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


def check_directory(directory: Path) -> None:
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


def check_vocabulary(model: PreTrainedModel, tokenizer, directory: Path, takes_token_type_ids: bool) -> None:
    """Every id the tokenizer can give must index the model's embedding tables (tokens, and segments where
    the model reads them): an input holding one past them would otherwise fail inside a forward pass (a
    500 on that input) instead of here, at load."""
    rows = model.get_input_embeddings().num_embeddings
    vocabulary = tokenizer.get_vocab()
    token, largest = max(vocabulary.items(), key=lambda item: item[1], default=("", -1))
    if largest >= rows:
        raise ModelLoadError(
            f"{directory}: the tokenizer gives ids up to {largest} (token {token!r}) but the model's embedding "
            f"table has {rows} rows (vocab_size in config.json); the tokenizer does not belong to these weights"
        )
    types = getattr(model.config, "type_vocab_size", None)
    if takes_token_type_ids and types is not None:
        segment = max(tokenizer("a", "b", return_token_type_ids=True).get("token_type_ids") or [0])
        if segment >= types:
            raise ModelLoadError(
                f"{directory}: the tokenizer marks a text pair's second segment with token type {segment} but the "
                f"model has {types} token type(s) (type_vocab_size in config.json); the tokenizer does not belong "
                "to these weights"
            )


def _segments(texts: list[str], pairs: list[str | None]) -> list[str | tuple[str, str]]:
    """The tokenizer's batch form: a pair where an example has one, the text alone where it has none."""
    return [text if pair is None else (text, pair) for text, pair in zip(texts, pairs, strict=True)]


@dataclass
class LoadedModel:
    """A classifier ready for headscope: eval mode, headscope attention, frozen parameters."""

    model: PreTrainedModel
    tokenizer: object
    name: str
    architecture: str
    adapter: Adapter
    fingerprint: str
    max_tokens: int
    directory: Path | None = None  # where the files were loaded from (what Ray workers are sent)
    layers: list[torch.nn.Module] = field(init=False, repr=False)  # one module per layer number
    # A fast tokenizer keeps its padding and truncation settings between calls, so two threads tokenising at
    # once (an /api/attention input beside an evaluation's batches) could get each other's: unpadded batches
    # (a ValueError, a 500). Every call through this model holds this lock.
    tokenizing: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self.layers = self.adapter.layers(self.base)

    @property
    def config(self):
        return self.model.config

    @property
    def num_layers(self) -> int:
        return len(self.layers)

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
        """The encoder inside the classifier (``BertModel``, ``DistilBertModel``...)."""
        return self.adapter.encoder(self.model)

    def output_projection(self, layer: int) -> torch.nn.Linear:
        """Layer `layer`'s attention output projection W_O (PyTorch ``[out, in]``; head h reads in-columns
        ``[h*head_dim, (h+1)*head_dim)``)."""
        return self.adapter.output_projection(self.layers[layer])

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
        """Encode an interactive input; longer than `max_tokens` is an error that names both numbers.
        ``token_type_ids`` are the tokens' segments (0/1), whether or not the model reads them."""
        if not text or not text.strip():
            raise InputError("text is empty; give at least one non-space character")
        if text_pair is not None and not text_pair.strip():
            text_pair = None
        with self.tokenizing:
            encoded = dict(self.tokenizer(text, text_pair, truncation=False, return_token_type_ids=True))
        count = len(encoded["input_ids"])
        if count > self.max_tokens:
            raise InputError(
                f"input is {count} tokens long (special tokens and both segments counted); "
                f"the limit is max_tokens={self.max_tokens}"
            )
        encoded.setdefault("token_type_ids", [0] * count)
        return encoded

    def encode_batch(self, texts: list[str], pairs: list[str | None]) -> dict[str, torch.Tensor]:
        """Encode task examples, truncated to `max_tokens` as GLUE practice does, padded to the longest.
        Each example is encoded as it is alone (a text without a pair gets no second segment, whatever
        it is batched with), so a prediction never depends on the batch. ``token_type_ids`` are the
        segments (zeros where the tokenizer has none): see :meth:`inputs`."""
        with self.tokenizing:
            batch = self.tokenizer(_segments(texts, pairs), truncation=True, max_length=self.max_tokens,
                                   padding=True, return_tensors="pt", return_token_type_ids=True)
        types = batch.get("token_type_ids")
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"],
                "token_type_ids": types if types is not None else torch.zeros_like(batch["input_ids"])}

    def token_counts(self, texts: list[str], pairs: list[str | None]) -> list[int]:
        """How many tokens :meth:`encode_batch` gives each example (special tokens included, no padding)."""
        with self.tokenizing:
            encoded = self.tokenizer(_segments(texts, pairs), truncation=True, max_length=self.max_tokens)
        return [len(ids) for ids in encoded["input_ids"]]

    def inputs(self, encoded: dict) -> dict:
        """The keyword arguments the model's own forward takes from an encoding (DistilBERT and ModernBERT
        take no ``token_type_ids``)."""
        keys = ("input_ids", "attention_mask", "token_type_ids") if self.adapter.takes_token_type_ids \
            else ("input_ids", "attention_mask")
        return {k: encoded[k] for k in keys if k in encoded}

    # -- running, layer by layer ---------------------------------------------------------------
    def embed(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Token ids -> hidden states entering layer 0, ``[batch, seq, hidden]``."""
        return self.adapter.embed(self.base, input_ids, token_type_ids)

    def run_layers(self, hidden: torch.Tensor, attention_mask: torch.Tensor, start: int = 0, stop: int | None = None,
                   keep: Callable[[int, torch.Tensor], None] | None = None) -> torch.Tensor:
        """Run layers ``start..stop-1`` on the hidden states entering `start`; `keep(l, h)` sees each input.

        `attention_mask` is the 0/1 ``[batch, key]`` padding mask (1 = real token); the adapter turns it
        into what the layers take.
        """
        inputs = self.adapter.layer_inputs(self.base, hidden, attention_mask)
        for index in range(start, self.num_layers if stop is None else stop):
            if keep is not None:
                keep(index, hidden)
            with at_layer(index):
                hidden = self.adapter.run_layer(self.layers[index], hidden, inputs(index))
        return hidden

    def logits_from(self, hidden: torch.Tensor, attention_mask: torch.Tensor, start: int) -> torch.Tensor:
        """Layers ``start..`` and the head (see :meth:`final_states`)."""
        return self.classify(*self.final_states(hidden, attention_mask, start))

    def final_states(self, hidden: torch.Tensor, attention_mask: torch.Tensor, start: int,
                     keep: Callable[[int, torch.Tensor], None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Layers ``start..`` up to the last layer's output as the head reads it, and the padding mask the
        head reads it with. Where the head reads only the first token, the last layer runs only as far
        as it reads (its attention still sees every token): ``[batch, 1, hidden]``; else ``[batch, seq,
        hidden]``. `keep` as for :meth:`run_layers`."""
        last = self.num_layers - 1
        if start > last or not self.adapter.reads_first_token_only(self.config):
            return self.run_layers(hidden, attention_mask, start=start, keep=keep), attention_mask
        hidden = self.run_layers(hidden, attention_mask, start=start, stop=last, keep=keep)
        if keep is not None:
            keep(last, hidden)
        inputs = self.adapter.layer_inputs(self.base, hidden, attention_mask)
        with at_layer(last):
            first = self.adapter.run_last_layer(self.layers[last], hidden, inputs(last))
        return first, attention_mask[:, :1]

    def classify(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Last hidden states ``[batch, seq, hidden]`` -> logits ``[batch, labels]``, as the model's own head
        reads them (`attention_mask` 0/1 for heads that pool over real tokens; None = all real)."""
        return self.adapter.head(self.model, hidden, attention_mask)


def load_model(source: str | Path, *, device: str | None = None, dtype: str = "auto",
               max_tokens: int = 128, name: str | None = None, fingerprints: Path | None = None) -> LoadedModel:
    """Load a supported classifier from a directory or hub id, safetensors only; `fingerprints`: the file
    where fingerprints are remembered between starts (see :func:`_fingerprint`; None = hash every time)."""
    directory = resolve_model_dir(source)
    check_directory(directory)
    try:
        config = AutoConfig.from_pretrained(directory, trust_remote_code=False)
    except Exception as exc:
        raise ModelLoadError(f"cannot read {directory / 'config.json'}: {exc}") from None
    architecture = (config.architectures or ["<none>"])[0]
    try:
        adapter = adapter_for(architecture)
    except ValueError as exc:
        raise ModelLoadError(str(exc)) from None
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
    check_vocabulary(model, tokenizer, directory, adapter.takes_token_type_ids)
    model.to(torch_device).eval().requires_grad_(False)
    adapter.install(adapter.encoder(model))
    return LoadedModel(
        model=model, tokenizer=tokenizer, architecture=architecture,
        name=name or (directory.name if Path(source).expanduser().is_dir() else str(source)),  # no server paths
        adapter=adapter, fingerprint=_fingerprint(directory, fingerprints),
        max_tokens=min(max_tokens, adapter.max_positions(config)), directory=directory,
    )

