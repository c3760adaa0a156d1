"""Clark et al. 2019's syntax heads: how often each head's strongest attention finds a word's syntactic head.

As in their analysis code (clarkkev/attention-analysis, ``Syntax_Analysis.ipynb``), each head is read as
a parser at word level (docs/api.md, "Words, parses and syntax heads"):

- ``dependent-to-head``: word i predicts as its head the other word of its segment it attends to most
  (row i of the word-level map); ``head-to-dependent``: the other word of its segment that attends most to
  it (column i). Ties go to the lowest word index.
- counted words: relation not ``punct``, not a root, and both the word and its head own a wordpiece that
  survived truncation; every other word is skipped (and counted, by reason).
- baseline: the best fixed relative offset k in -10..10 (k != 0), predicting word i + k as the head of i
  (outside the segment = wrong), on the same counted words; ties to the smallest |k|, then the negative k.
- best head: the most accurate (layer, head), ties to the lowest (layer, head).

Unlike their notebook, the ``poss`` special case (crediting the prediction of a following "'s") is not
applied, and ``all`` counts the counted words only (theirs also scored punctuation and roots).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from headscope.engine.words import Alignment, Parse

DIRECTIONS = ("dependent-to-head", "head-to-dependent")
MAX_OFFSET = 10
# tie order of the baseline: the smallest |k| first, the negative k before the positive one
OFFSETS = tuple(k for distance in range(1, MAX_OFFSET + 1) for k in (-distance, distance))
OFFSET_INDEX = {k: i for i, k in enumerate(OFFSETS)}
ALL = "all"
SKIP_REASONS = ("punct", "root", "truncated", "no_wordpiece")


def skip_reason(parse: Parse, alignment: Alignment, word: int) -> str | None:
    """Why a word is not counted (None: it is counted)."""
    head = parse.heads[word]
    if parse.relations[word] == "punct":
        return "punct"
    if head == word:
        return "root"
    if alignment.word_entry[word] < 0 or alignment.word_entry[head] < 0:
        return "truncated"
    if not (alignment.owns[word] and alignment.owns[head]):
        return "no_wordpiece"
    return None


def predicted_heads(word_maps: np.ndarray, entries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each head's prediction for each of a segment's words, as positions into `entries`:
    ``([layers, heads, k] dependent-to-head, [layers, heads, k] head-to-dependent)``.

    `word_maps` is ``[layers, heads, m, m]`` at word level; `entries` the segment's words' rows in it.
    A word never predicts itself; argmax keeps the first (lowest) index on ties.
    """
    sub = word_maps[:, :, entries[:, None], entries[None, :]].astype(np.float64)  # [L, H, k, k]
    diagonal = np.arange(len(entries))
    sub[:, :, diagonal, diagonal] = -np.inf
    return sub.argmax(axis=-1), sub.argmax(axis=-2)


@dataclass
class SyntaxAccumulator:
    """Right predictions per relation, direction and head, summed over examples."""

    num_layers: int
    num_heads: int
    examples: int = 0
    words: int = 0
    counts: Counter = field(default_factory=Counter)  # relation -> counted words
    skipped: Counter = field(default_factory=Counter)  # reason -> words
    correct: dict[str, np.ndarray] = field(default_factory=dict)  # relation -> [2, layers, heads]
    offsets: dict[str, np.ndarray] = field(default_factory=dict)  # relation -> [len(OFFSETS)]

    def _tally(self, relation: str) -> tuple[np.ndarray, np.ndarray]:
        if relation not in self.correct:
            self.correct[relation] = np.zeros((2, self.num_layers, self.num_heads), dtype=np.int64)
            self.offsets[relation] = np.zeros(len(OFFSETS), dtype=np.int64)
        return self.correct[relation], self.offsets[relation]

    def add(self, word_maps: np.ndarray, alignment: Alignment, parse: Parse) -> None:
        """One example: ``word_maps [layers, heads, m, m]`` over the entries of `alignment`."""
        self.examples += 1
        self.words += len(parse.words)
        for segment in sorted(set(parse.segments)):
            present = [w for w, s in enumerate(parse.segments) if s == segment and alignment.word_entry[w] >= 0]
            counted = []
            for w, s in enumerate(parse.segments):
                if s != segment:
                    continue
                reason = skip_reason(parse, alignment, w)
                if reason is None:
                    counted.append(w)
                else:
                    self.skipped[reason] += 1
            if not counted:
                continue
            position = {w: p for p, w in enumerate(present)}
            to_head, from_head = predicted_heads(word_maps, alignment.word_entry[present])
            words = np.asarray(present)
            for w in counted:
                head = parse.heads[w]
                right = np.stack([words[to_head[:, :, position[w]]] == head,
                                  words[from_head[:, :, position[w]]] == head])
                offset = OFFSET_INDEX.get(head - w)
                for relation in (parse.relations[w], ALL):
                    correct, offsets = self._tally(relation)
                    correct += right
                    if offset is not None:
                        offsets[offset] += 1
                    self.counts[relation] += 1

    def result(self) -> dict:
        """The ``syntax`` job's result: one entry per relation and direction, the most counted first."""
        order = sorted(self.counts, key=lambda r: (r != ALL, -self.counts[r], r))
        relations = []
        for relation in order:
            count = self.counts[relation]
            baseline = self.offsets[relation] / count
            best_offset = int(np.argmax(baseline))  # first maximum: OFFSETS is in tie order
            for d, direction in enumerate(DIRECTIONS):
                accuracy = self.correct[relation][d] / count
                best = int(np.argmax(accuracy))  # first maximum: the lowest (layer, head)
                relations.append({
                    "relation": relation, "direction": direction, "count": int(count),
                    "accuracy": accuracy.tolist(),
                    "best_head": [best // self.num_heads, best % self.num_heads],
                    "best_accuracy": float(accuracy.flat[best]),
                    "baseline_offset": OFFSETS[best_offset],
                    "baseline_accuracy": float(baseline[best_offset]),
                })
        return {
            "n": self.examples,
            "words": self.words,
            "skipped": int(sum(self.skipped.values())),
            "skipped_by_reason": {reason: int(self.skipped[reason]) for reason in SKIP_REASONS},
            "relations": relations,
        }
