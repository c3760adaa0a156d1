"""Per-head attention statistics (Clark et al. 2019, Voita et al. 2019) as pure functions on maps.

A *map* is one example's attention of every head of a layer, ``[heads, n, n]`` over its ``n`` real
tokens (no padding), rows = queries, each row summing to 1. :class:`StatsAccumulator` adds maps up so
that every real query token of every example weighs the same, as docs/api.md's ``stats`` result asks.

Word level (Clark et al., section 3): a word split into several wordpieces receives the *sum* of the
attention given to its pieces and gives the *mean* of the attention its pieces give, so rows still
sum to 1. :func:`word_groups` finds the words, :func:`merge_words` merges a map.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

# Clark et al.'s behaviour thresholds (reference-numbers.md), applied to a head's mean statistics.
BROAD_ENTROPY_NATS = 3.8  # entropy above this: attention spread broadly
POSITIONAL_MEAN = 0.5  # mean attention to the previous / next token above this
TOKEN_MEAN = 0.6  # mean attention to [CLS] / [SEP] / "." / "," (or punctuation) above this
# Voita et al.: a positional head puts its largest weight at offset -1 or +1 at least this often.
VOITA_POSITIONAL_SHARE = 0.9

STAT_NAMES = ("entropy", "to_cls", "to_sep", "to_punct", "to_period", "to_comma", "to_self", "to_prev",
              "to_next", "confidence", "argmax_prev", "argmax_next")
WORD_MARKERS = ("Ġ", "▁")  # byte-level BPE / sentencepiece: a token starting a new word carries one


def strip_marker(token: str) -> str:
    """The token's text without wordpiece continuation (``##``) or word-start (``Ġ``, ``▁``) markers."""
    if token.startswith("##") and len(token) > 2:
        return token[2:]
    if token[:1] in WORD_MARKERS and len(token) > 1:
        return token[1:]
    return token


def is_punctuation(token: str) -> bool:
    """True when every character of the token's text is a Unicode punctuation character (category P*)."""
    text = strip_marker(token)
    return bool(text) and all(unicodedata.category(ch).startswith("P") for ch in text)


def word_groups(tokens: Sequence[str], special_tokens: Sequence[str] = ()) -> list[int]:
    """The word index of each token: special tokens are words of their own; ``##x`` continues a word
    (WordPiece); in marker-style vocabularies (``Ġ``/``▁``) a token without the marker continues one."""
    special = set(special_tokens)
    marker_style = any(t[:1] in WORD_MARKERS for t in tokens if t not in special)
    groups: list[int] = []
    previous_special = True
    for token in tokens:
        is_special = token in special
        if is_special or not groups or previous_special:
            continues = False
        elif marker_style:
            continues = token[:1] not in WORD_MARKERS
        else:
            continues = token.startswith("##")
        groups.append(groups[-1] if continues else (groups[-1] + 1 if groups else 0))
        previous_special = is_special
    return groups


def merge_words(weights: np.ndarray, groups: Sequence[int]) -> np.ndarray:
    """``[heads, n, n]`` -> ``[heads, words, words]``: sum the attention TO a word's pieces, average the
    attention FROM them (Clark et al.). Rows still sum to 1."""
    index = np.asarray(groups)
    count = int(index.max()) + 1
    onehot = np.zeros((len(index), count), dtype=np.float64)
    onehot[np.arange(len(index)), index] = 1.0
    to_words = weights.astype(np.float64) @ onehot  # [heads, n, words]: summed over each word's keys
    sizes = onehot.sum(axis=0)
    return np.einsum("nw,hnv->hwv", onehot / sizes, to_words)  # mean over each word's queries


def merge_word_tokens(tokens: Sequence[str], groups: Sequence[int]) -> list[str]:
    """One string per word: its pieces joined without markers (special tokens kept as they are)."""
    words: list[list[str]] = []
    for token, group in zip(tokens, groups, strict=True):
        if group == len(words):
            words.append([token])
        else:
            words[group].append(strip_marker(token))
    return ["".join(pieces) for pieces in words]


def head_sums(weights: np.ndarray, tokens: Sequence[str], sep_token: str | None) -> tuple[np.ndarray, int]:
    """Per-head sums over the query rows of one map: ``[heads, len(STAT_NAMES)]`` and the row count.

    Entropy is in nats (0 log 0 = 0); [CLS] is the first token; previous/next are 0 where absent.
    """
    a = weights.astype(np.float64)
    heads, n, _ = a.shape
    rows = np.arange(n)
    logs = np.log(np.where(a > 0, a, 1.0))
    entropy = -(a * logs).sum(axis=-1)  # [heads, n]
    sep = np.array([t == sep_token for t in tokens])
    punct = np.array([is_punctuation(t) for t in tokens])
    period = np.array([strip_marker(t) == "." for t in tokens])
    comma = np.array([strip_marker(t) == "," for t in tokens])
    prev = np.zeros((heads, n))
    nxt = np.zeros((heads, n))
    prev[:, 1:] = a[:, rows[1:], rows[1:] - 1]
    nxt[:, :-1] = a[:, rows[:-1], rows[:-1] + 1]
    argmax = a.argmax(axis=-1)  # [heads, n]
    per_row = np.stack([
        entropy,
        a[:, :, 0],
        a[:, :, sep].sum(axis=-1),
        a[:, :, punct].sum(axis=-1),
        a[:, :, period].sum(axis=-1),
        a[:, :, comma].sum(axis=-1),
        a[:, rows, rows],
        prev,
        nxt,
        a.max(axis=-1),
        (argmax == rows - 1).astype(np.float64),
        (argmax == rows + 1).astype(np.float64),
    ], axis=-1)  # [heads, n, stats]
    return per_row.sum(axis=1), n


def behaviour_labels(stats: dict[str, float]) -> list[str]:
    """The labels a head earns by Clark et al.'s thresholds (and Voita's positional rule)."""
    rules = [
        ("broad", stats["entropy"] > BROAD_ENTROPY_NATS),
        ("previous", stats["to_prev"] > POSITIONAL_MEAN),
        ("next", stats["to_next"] > POSITIONAL_MEAN),
        ("cls", stats["to_cls"] > TOKEN_MEAN),
        ("sep", stats["to_sep"] > TOKEN_MEAN),
        ("period", stats["to_period"] > TOKEN_MEAN),
        ("comma", stats["to_comma"] > TOKEN_MEAN),
        ("punctuation", stats["to_punct"] > TOKEN_MEAN),
        ("positional", max(stats["argmax_prev"], stats["argmax_next"]) >= VOITA_POSITIONAL_SHARE),
    ]
    return [name for name, holds in rules if holds]


@dataclass
class StatsAccumulator:
    """Sums of per-row statistics over many examples, for ``layers x heads``; each query row weighs 1."""

    num_layers: int
    num_heads: int
    sep_token: str | None
    special_tokens: Sequence[str] = ()
    word_level: bool = False
    examples: int = 0
    rows: np.ndarray = field(init=False)
    sums: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.sums = np.zeros((self.num_layers, self.num_heads, len(STAT_NAMES)))
        self.rows = np.zeros(self.num_layers)

    def add(self, maps: np.ndarray, tokens: Sequence[str]) -> None:
        """One example: ``maps [layers, heads, n, n]`` over its real tokens."""
        if self.word_level:
            groups = word_groups(tokens, self.special_tokens)
            tokens = merge_word_tokens(tokens, groups)
        for layer in range(self.num_layers):
            layer_maps = merge_words(maps[layer], groups) if self.word_level else maps[layer]
            sums, count = head_sums(layer_maps, tokens, self.sep_token)
            self.sums[layer] += sums
            self.rows[layer] += count
        self.examples += 1

    def result(self) -> dict:
        """docs/api.md's ``stats`` result: means per head, plus the behaviour labels."""
        heads = []
        for layer in range(self.num_layers):
            for head in range(self.num_heads):
                means = self.sums[layer, head] / max(self.rows[layer], 1)
                stats = {name: float(v) for name, v in zip(STAT_NAMES, means, strict=True)}
                heads.append({"layer": layer, "head": head, **stats, "labels": behaviour_labels(stats)})
        return {"n": self.examples, "word_level": self.word_level, "heads": heads}
