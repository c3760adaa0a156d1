"""Words (spaCy) and the alignment of wordpieces to them, with a tokenizer that knows enough characters
for contractions, hyphens, punctuation, accents and emoji; the word-level merge checked against sums
and means written out by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from headscope.engine.errors import InputError
from headscope.engine.words import Encoded, Parse, Parser, align, encode_with_offsets
from transformers import AutoTokenizer, BertTokenizer, BertTokenizerLegacy

LETTERS = "abcdefghijklmnopqrstuvwxyz"
VOCAB = (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
         + ["i", "don", "'", "t", "think", "they", "can", "cannot", "go", ".", ",", "well", "-", "known",
            "cafe", "opened", "here", "the", "film", "is", "fun", "a", "plot", "!", "?", "un"]
         + list(LETTERS) + [f"##{c}" for c in LETTERS])


@pytest.fixture(scope="session")
def tokenizer(tmp_path_factory: pytest.TempPathFactory):
    """An uncased WordPiece tokenizer (fast, with offsets), saved and loaded back as a model's would be."""
    directory = tmp_path_factory.mktemp("tokenizer")
    (directory / "vocab.txt").write_text("\n".join(VOCAB))
    BertTokenizer(str(directory / "vocab.txt")).save_pretrained(directory)
    return AutoTokenizer.from_pretrained(directory)


def pieces_to_words(parser: Parser, tokenizer, text: str, pair: str | None = None):
    """(token, word or None) for each token, and the alignment."""
    parse = parser.parse(text, pair)
    encoded = encode_with_offsets(tokenizer, text, pair, None)
    tokens = tokenizer.convert_ids_to_tokens(encoded.input_ids)
    alignment = align(parse, encoded, tokens)
    owners = [None if alignment.entry_word[e] < 0 else parse.words[alignment.entry_word[e]]
              for e in alignment.token_entry]
    return list(zip(tokens, owners, strict=True)), alignment, parse


def test_contractions_belong_to_the_word_holding_their_first_character(parser: Parser, tokenizer) -> None:
    pairs, alignment, parse = pieces_to_words(parser, tokenizer, "I don't think they can't go.")
    assert parse.words == ["I", "do", "n't", "think", "they", "ca", "n't", "go", "."]
    # BERT splits "don't" as don ' t; spaCy as do n't: "don" starts in "do", "'" and "t" in "n't"
    assert pairs == [("[CLS]", None), ("i", "I"), ("don", "do"), ("'", "n't"), ("t", "n't"), ("think", "think"),
                     ("they", "they"), ("can", "ca"), ("'", "n't"), ("t", "n't"), ("go", "go"), (".", "."),
                     ("[SEP]", None)]
    assert alignment.owns.all()
    assert alignment.entries == ["[CLS]", *parse.words, "[SEP]"]


def test_cannot_gives_not_a_zero_column_and_the_row_of_can(parser: Parser, tokenizer) -> None:
    pairs, alignment, parse = pieces_to_words(parser, tokenizer, "they cannot go")
    assert parse.words == ["they", "can", "not", "go"]
    assert pairs[2] == ("cannot", "can")
    assert alignment.owns.tolist() == [True, True, False, True]
    n = len(pairs)
    rng = np.random.default_rng(0)
    maps = rng.random((2, 3, n, n))
    maps /= maps.sum(axis=-1, keepdims=True)
    merged = alignment.merge(maps)
    can, not_ = alignment.word_entry[1], alignment.word_entry[2]
    np.testing.assert_allclose(merged[..., :, not_], 0.0)
    np.testing.assert_allclose(merged[..., not_, :], merged[..., can, :])
    np.testing.assert_allclose(merged[..., can, can], maps[..., 2, 2], rtol=1e-6)  # "cannot" is one piece
    np.testing.assert_allclose(merged.sum(axis=-1), 1.0, rtol=1e-5)


def test_hyphens_accents_and_emoji_align_one_to_one(parser: Parser, tokenizer) -> None:
    pairs, alignment, parse = pieces_to_words(parser, tokenizer, "A well-known café 😀 opened  here.")
    # the double space is no word
    assert parse.words == ["A", "well", "-", "known", "café", "😀", "opened", "here", "."]
    assert [w for _, w in pairs] == [None, *parse.words, None]
    assert [t for t, _ in pairs][4:7] == ["known", "cafe", "[UNK]"]  # accent stripped, emoji unknown: same words
    assert alignment.owns.all()


def test_split_words_sum_attention_to_them_and_average_it_from_them(parser: Parser, tokenizer) -> None:
    text = "the unfun film"
    pairs, alignment, _ = pieces_to_words(parser, tokenizer, text)
    assert [t for t, _ in pairs] == ["[CLS]", "the", "un", "##f", "##u", "##n", "film", "[SEP]"]
    assert [w for _, w in pairs] == [None, "the", "unfun", "unfun", "unfun", "unfun", "film", None]
    n = len(pairs)
    rng = np.random.default_rng(1)
    maps = rng.random((1, 1, n, n))
    maps /= maps.sum(axis=-1, keepdims=True)
    a = maps[0, 0]
    groups = [[0], [1], [2, 3, 4, 5], [6], [7]]  # pieces of each entry: [CLS] the unfun film [SEP]
    expected = np.array([[np.mean([a[i, groups[b]].sum() for i in groups[r]]) for b in range(5)] for r in range(5)])
    np.testing.assert_allclose(alignment.merge(maps)[0, 0], expected, rtol=1e-6)
    np.testing.assert_allclose(expected.sum(axis=1), 1.0)


def test_pairs_parse_each_segment_alone_and_arcs_stay_inside(parser: Parser, tokenizer) -> None:
    text, pair = "the film is fun. I think", "they opened here."
    parse = parser.parse(text, pair)
    alone = parser.parse(text), parser.parse(pair)
    assert parse.words == alone[0].words + alone[1].words
    first = len(alone[0].words)
    assert parse.heads == alone[0].heads + [h + first for h in alone[1].heads]
    assert parse.relations == alone[0].relations + alone[1].relations
    assert parse.segments == [0] * first + [1] * len(alone[1].words)
    assert all(parse.segments[h] == parse.segments[w] for w, h in enumerate(parse.heads))
    assert parse.relations.count("root") == 3  # two sentences in the first segment, one in the second
    pairs, alignment, _ = pieces_to_words(parser, tokenizer, text, pair)
    assert alignment.entries == ["[CLS]", *alone[0].words, "[SEP]", *alone[1].words, "[SEP]"]
    assert alignment.entry_segments([0] * (first + 2) + [1] * (len(pairs) - first - 2)) == \
        [0] * (first + 2) + [1] * (len(alone[1].words) + 1)


def test_a_piece_without_visible_characters_joins_the_next_word() -> None:
    """A sentencepiece-style lone marker (offsets over the space) belongs to the word after it."""
    parse = Parse(words=["a", "(", "b"], heads=[0, 2, 0], relations=["root", "punct", "dep"], segments=[0, 0, 0],
                  spans=[(0, 1), (2, 3), (3, 4)])
    encoded = Encoded(input_ids=[0, 1, 2, 3, 4, 5], offsets=[(0, 0), (0, 1), (1, 2), (2, 3), (3, 4), (0, 0)],
                      sequence=[None, 0, 0, 0, 0, None], truncated=(False, False))
    alignment = align(parse, encoded, ["<s>", "▁a", "▁", "(", "b", "</s>"])
    assert alignment.token_entry.tolist() == [0, 1, 2, 2, 3, 4]


def test_truncated_words_are_absent(parser: Parser, tokenizer) -> None:
    text = "the film is fun . the plot is fun ."
    parse = parser.parse(text)
    encoded = encode_with_offsets(tokenizer, text, None, 6)  # [CLS] the film is fun [SEP]
    assert encoded.truncated == (True, False)
    alignment = align(parse, encoded, tokenizer.convert_ids_to_tokens(encoded.input_ids))
    assert alignment.entries == ["[CLS]", "the", "film", "is", "fun", "[SEP]"]
    assert (alignment.word_entry[4:] == -1).all() and alignment.owns[:4].all()


def test_a_slow_tokenizer_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "vocab.txt").write_text("\n".join(VOCAB))
    BertTokenizerLegacy(str(tmp_path / "vocab.txt")).save_pretrained(tmp_path)
    slow = AutoTokenizer.from_pretrained(tmp_path)
    with pytest.raises(InputError, match="offsets mapping"):
        encode_with_offsets(slow, "the film", None, None)
