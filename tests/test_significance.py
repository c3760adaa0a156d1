"""The significance module against hand-computed cases and against scipy/sklearn where they run the same
test or metric."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from headscope.engine import metrics, significance
from scipy.stats import binomtest, bootstrap
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef


def paired_predictions(n: int = 400, flips: float = 0.05, seed: int = 3, labels: int = 2):
    rng = np.random.default_rng(seed)
    gold = rng.integers(0, labels, n)
    baseline = np.where(rng.random(n) < 0.85, gold, (gold + 1) % labels)
    masked = baseline.copy()
    changed = rng.random(n) < flips
    masked[changed] = (masked[changed] + 1 + (rng.random(changed.sum()) < 0.3)) % labels
    return gold, baseline, masked


# -- metrics from confusion counts: one rule for one vector and for many ---------------------------------
@pytest.mark.parametrize("labels", [2, 3])
def test_batched_metrics_equal_sklearn_row_by_row(labels: int) -> None:
    rng = np.random.default_rng(0)
    gold = rng.integers(0, labels, 60)
    rows = rng.integers(0, labels, (5, 60))
    size = metrics.label_count(labels, gold, rows)
    matrix = metrics.confusion(gold, rows, size)
    average = "binary" if labels == 2 else "macro"
    for row, acc, f1, mcc in zip(rows, metrics.from_confusion("accuracy", matrix, labels),
                                 metrics.from_confusion("f1", matrix, labels),
                                 metrics.from_confusion("mcc", matrix, labels), strict=True):
        assert acc == pytest.approx(accuracy_score(gold, row))
        assert f1 == pytest.approx(f1_score(gold, row, average=average, zero_division=0))
        assert mcc == pytest.approx(matthews_corrcoef(gold, row))
        assert metrics.f1(gold, row, labels) == pytest.approx(f1)
        assert metrics.mcc(gold, row, labels) == pytest.approx(mcc)


# -- McNemar -------------------------------------------------------------------------------------------
def test_mcnemar_exact_by_hand_and_against_scipy() -> None:
    assert significance.mcnemar_exact(0, 0) == 1.0
    assert significance.mcnemar_exact(3, 0) == pytest.approx(0.25)  # 2 * (1/2)^3
    assert significance.mcnemar_exact(1, 1) == pytest.approx(1.0)
    assert significance.mcnemar_exact(5, 1) == pytest.approx(2 * (1 + 6) / 64)  # 2 * P(X <= 1), X ~ B(6, 1/2)
    for r2w, w2r in [(12, 3), (40, 61), (0, 9)]:
        assert significance.mcnemar_exact(r2w, w2r) == pytest.approx(binomtest(r2w, r2w + w2r, 0.5).pvalue)


def test_accuracy_significance_counts_the_discordant_examples() -> None:
    gold = np.array([1, 1, 1, 0, 0, 0, 1, 0])
    baseline = np.array([1, 1, 1, 0, 1, 0, 0, 0])  # 6 right
    masked = np.array([0, 0, 1, 0, 0, 0, 0, 0])  # examples 0, 1 right -> wrong; 4 wrong -> right
    result = significance.significance("accuracy", gold, baseline, masked, 2)
    assert (result["right_to_wrong"], result["wrong_to_right"]) == (2, 1)
    assert result["test"] == "mcnemar-exact"
    assert result["p_value"] == pytest.approx(1.0)  # 2 * P(X >= 2), X ~ B(3, 1/2) = 2 * 4/8, capped
    assert result["resamples"] == significance.RESAMPLES
    low, high = result["ci95"]
    assert low <= -1 / 8 <= high


# -- the permutation test --------------------------------------------------------------------------------
def test_permutation_p_value_matches_the_exact_enumeration() -> None:
    """Three examples differ; masked F1 is 0, baseline 1. Of the 8 swap patterns only 'none' and 'all'
    reach |delta| = 1, so the exact p is 2/8; R rounds estimate it within binomial noise."""
    gold = np.array([1, 1, 1, 0])
    baseline = np.array([1, 1, 1, 0])
    masked = np.array([0, 0, 0, 0])
    contrast, swappable = significance.swap_statistic("f1", gold, baseline, masked, 2)
    assert swappable == 3
    every = np.array(list(itertools.product([False, True], repeat=3)))
    assert np.count_nonzero(np.abs(contrast(every)) >= 1 - 1e-12) == 2
    rounds = 4000
    p = significance.permutation_p_value(contrast, swappable, -1.0, rounds)
    assert (p * (1 + rounds)) == pytest.approx(round(p * (1 + rounds)))  # (1 + k) / (1 + R)
    assert abs(p - 0.25) < 4 * np.sqrt(0.25 * 0.75 / rounds)


def test_permutation_on_accuracy_agrees_with_mcnemar() -> None:
    """For accuracy the permutation test is a sign test of the discordant examples, i.e. McNemar."""
    gold, baseline, masked = paired_predictions(n=600, flips=0.04)  # 12 right -> wrong, 3 wrong -> right
    contrast, swappable = significance.swap_statistic("accuracy", gold, baseline, masked, 2)
    observed = metrics.accuracy(gold, masked) - metrics.accuracy(gold, baseline)
    rounds = 20000
    permuted = significance.permutation_p_value(contrast, swappable, observed, rounds)
    exact = significance.mcnemar_exact(*significance.flip_counts(gold, baseline, masked))
    assert 0.001 < exact < 0.9
    assert abs(permuted - exact) < 4 * np.sqrt(exact * (1 - exact) / rounds) + 1 / rounds


def test_no_differing_prediction_means_p_one_and_a_zero_interval() -> None:
    gold, baseline, _ = paired_predictions()
    for metric in ("accuracy", "f1", "mcc"):
        result = significance.significance(metric, gold, baseline, baseline.copy(), 2)
        assert result["p_value"] == 1.0
        assert result["ci95"] == [0.0, 0.0]


@pytest.mark.parametrize("metric", ["f1", "mcc"])
def test_permutation_rounds_grow_with_the_family(metric: str) -> None:
    assert significance.rounds_for(1) == 1000
    assert significance.rounds_for(72) == 2880
    gold, baseline, masked = paired_predictions()
    for family in (1, 72):
        p = significance.delta_test(metric, gold, baseline, masked, 2, family_size=family)[1]
        rounds = significance.rounds_for(family)
        assert p * (1 + rounds) == pytest.approx(round(p * (1 + rounds)))


# -- the bootstrap interval --------------------------------------------------------------------------------
def test_bootstrap_interval_agrees_with_scipy_paired_percentile_bootstrap() -> None:
    gold, baseline, masked = paired_predictions(n=800, flips=0.08)
    ours = significance.significance("accuracy", gold, baseline, masked, 2)["ci95"]

    def delta(g, b, m, axis=-1):
        return np.mean(m == g, axis=axis) - np.mean(b == g, axis=axis)

    theirs = bootstrap((gold, baseline, masked), delta, paired=True, vectorized=True, n_resamples=20000,
                       method="percentile", rng=np.random.default_rng(1)).confidence_interval
    observed = delta(gold, baseline, masked)
    assert ours[0] < observed < ours[1]
    assert ours[0] == pytest.approx(theirs.low, abs=0.004)
    assert ours[1] == pytest.approx(theirs.high, abs=0.004)


def test_same_numbers_whatever_the_order_and_the_block_size(monkeypatch: pytest.MonkeyPatch) -> None:
    gold, baseline, masked = paired_predictions(labels=3)
    first = {m: significance.significance(m, gold, baseline, masked, 3) for m in ("accuracy", "f1", "mcc")}
    significance.significance("f1", *paired_predictions(seed=9), 2)  # another request in between
    monkeypatch.setattr(significance, "BLOCK_ELEMENTS", 97)  # many small blocks
    again = {m: significance.significance(m, gold, baseline, masked, 3) for m in reversed(("accuracy", "f1", "mcc"))}
    assert again == first
    assert first["f1"]["test"] == first["mcc"]["test"] == "paired-permutation"


# -- Holm ---------------------------------------------------------------------------------------------------
def test_holm_by_hand() -> None:
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> monotone 0.06 for the last
    assert significance.holm([0.01, 0.04, 0.03, 0.005]).tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert significance.holm([0.6, 0.9]).tolist() == [1.0, 1.0]  # capped at 1
    assert significance.holm([[0.01, 0.011]]).round(12).tolist() == [[0.02, 0.02]]  # shape kept, monotone
    fields = significance.holm_fields([[0.001, 0.5], [0.02, 0.012]])
    assert np.allclose(fields["p_holm"], [[0.004, 0.5], [0.04, 0.036]])
    assert fields["significant"] == [[True, False], [True, True]]
    assert fields["p_value"] == [[0.001, 0.5], [0.02, 0.012]]


def test_family_p_values_use_the_family_rounds() -> None:
    gold, baseline, masked = paired_predictions()
    rows = np.stack([masked, baseline, masked])
    p = significance.family_p_values("mcc", gold, baseline, rows, 2)
    assert p[1] == 1.0 and p[0] == p[2]
    assert p[0] == significance.delta_test("mcc", gold, baseline, masked, 2, family_size=3)[1]
    assert significance.family_p_values("accuracy", gold, baseline, rows, 2)[0] == pytest.approx(
        binomtest(*(lambda a, b: (a, a + b))(*significance.flip_counts(gold, baseline, masked)), 0.5).pvalue)
