"""The pattern classifier on constructed maps of every type, clean and with noise."""

from __future__ import annotations

import numpy as np
import pytest
from headscope.engine.atlas.patterns import PATTERN_TYPES, PatternCounter, classify_map, pattern_shares


def rows_normalised(a: np.ndarray) -> np.ndarray:
    return a / a.sum(axis=1, keepdims=True)


def vertical(n: int) -> np.ndarray:
    a = np.zeros((n, n))
    a[:, 0] = 0.5  # [CLS]
    a[:, -1] = 0.5  # [SEP]
    return a


def diagonal(n: int) -> np.ndarray:
    a = np.zeros((n, n))
    for i in range(n):
        a[i, max(i - 1, 0)] += 0.8  # previous token (itself for the first)
        a[i, i] += 0.2
    return a


def vertical_diagonal(n: int) -> np.ndarray:
    return 0.5 * vertical(n) + 0.5 * diagonal(n)


def block(n: int, rng: np.random.Generator) -> tuple[np.ndarray, list[int]]:
    half = n // 2
    segments = [0] * half + [1] * (n - half)
    a = np.zeros((n, n))
    for i, s in enumerate(segments):
        inside = [j for j, t in enumerate(segments) if t == s]
        a[i, inside] = rng.dirichlet(np.ones(len(inside)))
    return a, segments


def heterogeneous(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.dirichlet(np.ones(n), size=n)


def noisy(a: np.ndarray, rng: np.random.Generator, amount: float) -> np.ndarray:
    """Mix each row with random attention: the map stays a valid attention map."""
    return (1 - amount) * a + amount * rng.dirichlet(np.ones(a.shape[1]), size=a.shape[0])


@pytest.mark.parametrize("n", [12, 20, 60])
def test_clean_maps_get_their_type(n: int) -> None:
    rng = np.random.default_rng(n)
    assert classify_map(vertical(n)) == "vertical"
    assert classify_map(diagonal(n)) == "diagonal"
    assert classify_map(vertical_diagonal(n)) == "vertical+diagonal"
    assert classify_map(heterogeneous(n, rng)) == "heterogeneous"
    assert classify_map(heterogeneous(n, rng), [0] * (n // 2) + [1] * (n - n // 2)) == "heterogeneous"


@pytest.mark.parametrize("n", [12, 20, 60])
def test_clean_block_maps_are_blocks(n: int) -> None:
    a, segments = block(n, np.random.default_rng(n))
    assert classify_map(a, segments) == "block"


def test_random_maps_over_short_inputs_stay_heterogeneous() -> None:
    """Chance peaks of a random 8-token map must not make vertical columns (the COLUMN_LIFT rule)."""
    rng = np.random.default_rng(8)
    kinds = [classify_map(heterogeneous(8, rng)) for _ in range(50)]
    assert kinds.count("heterogeneous") >= 45


def test_tiny_blocks_read_as_diagonal() -> None:
    """Two 3-token segments: most of a block's cells are in the diagonal band, so the band wins (documented)."""
    a, segments = block(6, np.random.default_rng(0))
    assert classify_map(a, segments) in ("diagonal", "vertical+diagonal")


@pytest.mark.parametrize("seed", range(5))
def test_noisy_maps_keep_their_type(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(12, 40))
    amount = 0.15
    assert classify_map(noisy(vertical(n), rng, amount)) == "vertical"
    assert classify_map(noisy(diagonal(n), rng, amount)) == "diagonal"
    assert classify_map(noisy(vertical_diagonal(n), rng, amount)) == "vertical+diagonal"
    a, segments = block(n, rng)
    assert classify_map(noisy(a, rng, amount), segments) == "block"


def test_pure_diagonal_has_no_vertical_share_and_vertical_no_diagonal_share() -> None:
    shares = pattern_shares(diagonal(15))
    assert shares["vertical"] == 0.0 and shares["diagonal"] == pytest.approx(1.0)
    shares = pattern_shares(vertical(15))
    assert shares["vertical"] == pytest.approx(1.0) and shares["diagonal"] == 0.0


def test_block_needs_both_segments_to_keep_attention_inside() -> None:
    """One big segment of random attention is not a block, even if most weight stays in it."""
    rng = np.random.default_rng(7)
    n = 30
    segments = [0] * 27 + [1] * 3
    assert classify_map(heterogeneous(n, rng), segments) == "heterogeneous"


def test_counter_gives_distributions_per_head_layer_and_model() -> None:
    rng = np.random.default_rng(3)
    n = 16
    counter = PatternCounter(2, 2)
    maps = np.stack([np.stack([vertical(n), diagonal(n)]), np.stack([heterogeneous(n, rng), vertical(n)])])
    counter.add(maps)
    counter.add(maps)
    result = counter.result()
    assert result["n"] == 2
    assert result["types"] == list(PATTERN_TYPES)
    by_head = {(h["layer"], h["head"]): h["counts"] for h in result["heads"]}
    assert by_head[(0, 0)]["vertical"] == 2 and by_head[(0, 1)]["diagonal"] == 2
    assert by_head[(1, 0)]["heterogeneous"] == 2
    assert result["layers"][1] == {"vertical": 2, "diagonal": 0, "vertical+diagonal": 0, "block": 0,
                                   "heterogeneous": 2}
    assert result["model"]["vertical"] == 4 and sum(result["model"].values()) == 8
