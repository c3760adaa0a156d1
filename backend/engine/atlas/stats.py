"""Per-head attention statistics (Clark et al. 2019, Voita et al. 2019) as pure functions on maps.

A *map* is one example's attention of every head of a layer, ``[heads, n, n]`` over its ``n`` real
tokens (no padding), rows = queries, each row summing to 1. :class:`StatsAccumulator` adds maps up so
that every real query token of every example weighs the same, as docs/api.md's ``stats`` result asks.

Word level (Clark et al., section 3): the caller merges each map to spaCy's words first
(:meth:`headscope.engine.words.Alignment.merge`: a word receives the *sum* of the attention given to its
pieces and gives the *mean* of the attention its pieces give, so rows still sum to 1), and passes the
word-level entries as the tokens; ``word_level`` only records that it did.
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
    word_level: bool = False
    examples: int = 0
    rows: np.ndarray = field(init=False)
    sums: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.sums = np.zeros((self.num_layers, self.num_heads, len(STAT_NAMES)))
        self.rows = np.zeros(self.num_layers)

    def add(self, maps: np.ndarray, tokens: Sequence[str]) -> None:
        """One example: ``maps [layers, heads, n, n]`` over its real tokens (or word-level entries)."""
        for layer in range(self.num_layers):
            sums, count = head_sums(maps[layer], tokens, self.sep_token)
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
