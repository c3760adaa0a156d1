"""Per-head statistics on constructed attention maps whose answers are known by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from headscope.engine.atlas.stats import (
    StatsAccumulator,
    behaviour_labels,
    head_sums,
    is_punctuation,
)

TOKENS = ["[CLS]", "the", "film", ",", "fun", ".", "[SEP]"]
N = len(TOKENS)


def one_hot_rows(targets: list[int]) -> np.ndarray:
    """A map whose query i puts all its weight on key targets[i]."""
    a = np.zeros((N, N))
    a[np.arange(N), targets] = 1.0
    return a


def stats_of(head: np.ndarray, tokens: list[str] = TOKENS) -> dict[str, float]:
    accumulator = StatsAccumulator(1, 1, "[SEP]")
    accumulator.add(head[None, None], tokens)
    return accumulator.result()["heads"][0]


def test_uniform_map_has_log_n_entropy_and_shares_by_count() -> None:
    stats = stats_of(np.full((N, N), 1 / N))
    assert stats["entropy"] == pytest.approx(math.log(N))
    assert stats["to_cls"] == pytest.approx(1 / N)
    assert stats["to_sep"] == pytest.approx(1 / N)
    assert stats["to_punct"] == pytest.approx(2 / N)  # "," and "."
    assert stats["confidence"] == pytest.approx(1 / N)
    # the first query has no previous token, the last no next one: 0 there
    assert stats["to_prev"] == pytest.approx((N - 1) / N / N)
    assert stats["to_next"] == pytest.approx((N - 1) / N / N)


def test_previous_token_head_gets_previous_and_positional_labels() -> None:
    stats = stats_of(one_hot_rows([0, 0, 1, 2, 3, 4, 5]))
    assert stats["to_prev"] == pytest.approx(6 / 7)
    assert stats["to_self"] == pytest.approx(1 / 7)  # query 0 can only look at itself
    assert stats["entropy"] == pytest.approx(0.0)
    assert stats["confidence"] == pytest.approx(1.0)
    assert stats["argmax_prev"] == pytest.approx(6 / 7)
    # 6 of 7 argmaxes at offset -1 is under Voita's 90 %: "previous" (Clark) but not "positional"
    assert stats["labels"] == ["previous"]
    longer = StatsAccumulator(1, 1, "[SEP]")
    longer.add(np.eye(12, k=-1)[None, None] + np.eye(12)[None, None] * (np.arange(12) == 0), ["x"] * 12)
    assert set(longer.result()["heads"][0]["labels"]) == {"previous", "positional"}


def test_sep_and_cls_heads_are_labelled_by_clark_thresholds() -> None:
    sep_head = stats_of(one_hot_rows([6] * N))
    assert sep_head["to_sep"] == pytest.approx(1.0)
    assert sep_head["labels"] == ["sep"] or set(sep_head["labels"]) == {"sep"}
    cls_head = stats_of(one_hot_rows([0] * N))
    assert cls_head["to_cls"] == pytest.approx(1.0)
    assert "cls" in cls_head["labels"] and "sep" not in cls_head["labels"]


def test_thresholds_are_strict_and_broad_needs_entropy_above_3_8() -> None:
    base = {"entropy": 3.8, "to_prev": 0.5, "to_next": 0.2, "to_cls": 0.6, "to_sep": 0.61, "to_period": 0.0,
            "to_comma": 0.0, "to_punct": 0.0, "argmax_prev": 0.5, "argmax_next": 0.0}
    assert behaviour_labels(base) == ["sep"]
    assert "broad" in behaviour_labels({**base, "entropy": 3.81})


def test_each_token_weighs_the_same_across_examples() -> None:
    """A 7-token example with to_cls 1 and a 3-token example with to_cls 0: the mean is 7/10, not 1/2."""
    accumulator = StatsAccumulator(1, 1, "[SEP]")
    accumulator.add(one_hot_rows([0] * N)[None, None], TOKENS)
    short = np.zeros((3, 3))
    short[:, 2] = 1.0
    accumulator.add(short[None, None], ["[CLS]", "fun", "[SEP]"])
    result = accumulator.result()
    assert result["n"] == 2
    assert result["heads"][0]["to_cls"] == pytest.approx(7 / 10)
    assert result["heads"][0]["to_sep"] == pytest.approx(3 / 10)


def test_punctuation_is_every_character_unicode_punctuation() -> None:
    assert is_punctuation(".") and is_punctuation("...") and is_punctuation("##,") and is_punctuation("«")
    assert not is_punctuation("[CLS]") and not is_punctuation("a.") and not is_punctuation("$")


def test_head_sums_counts_rows() -> None:
    sums, rows = head_sums(np.full((2, N, N), 1 / N), TOKENS, "[SEP]")
    assert rows == N and sums.shape[0] == 2
