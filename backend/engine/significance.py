"""How sure a score difference is: the tests, the interval and the multiple-testing correction of
docs/api.md ("Significance on every score").

A delta compares two prediction vectors on the same examples (the baseline's and the mask's), so every
test here is paired:

- accuracy: McNemar's exact test, a two-sided binomial test of the examples that went right -> wrong
  against those that went wrong -> right (:func:`mcnemar_exact`);
- F1, MCC (not sums over examples): a paired permutation test that swaps, with probability 1/2, the two
  predictions of each example on which they differ (:func:`permutation_p_value`);
- every delta: a paired-bootstrap 95 % interval over resampled examples (:func:`bootstrap_interval`);
- a sweep's family of tests: Holm's step-down adjustment (:func:`holm`).

Each test and interval draws from its own ``numpy.random.default_rng(0)``, in blocks whose size depends
only on the data, so the same request always answers the same numbers whatever the order of requests,
the chunking of a job or the worker that ran it. No web imports: the CLI and the Python API use this too.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from headscope.engine import metrics
from scipy.stats import binomtest

RESAMPLES = 1000  # bootstrap resamples for every interval; also the least permutation rounds
ROUNDS_PER_TEST = 40  # permutation rounds per test of the family: R = max(RESAMPLES, 40 m)
ALPHA = 0.05
SEED = 0
BLOCK_ELEMENTS = 1 << 21  # rounds x examples drawn at once: bounds memory, never changes the numbers
TIE_TOLERANCE = 1e-12


def rounds_for(family_size: int, resamples: int = RESAMPLES) -> int:
    """Permutation rounds for one test of a family of `family_size`: enough that Holm's smallest
    threshold (alpha / m) lies well above the test's resolution 1 / (1 + R)."""
    return max(resamples, ROUNDS_PER_TEST * max(1, family_size))


def _blocks(rounds: int, width: int) -> list[int]:
    """Round counts per block, a function of the data's size only (so numbers never depend on memory)."""
    per_block = max(1, BLOCK_ELEMENTS // max(1, width))
    return [min(per_block, rounds - start) for start in range(0, rounds, per_block)]


def mcnemar_exact(right_to_wrong: int, wrong_to_right: int) -> float:
    """Two-sided exact binomial test of `right_to_wrong` successes in the discordant pairs at 1/2; 1.0 when
    there are none (scipy.stats.binomtest)."""
    discordant = right_to_wrong + wrong_to_right
    if discordant == 0:
        return 1.0
    return float(binomtest(right_to_wrong, discordant, 0.5, alternative="two-sided").pvalue)


def permutation_p_value(contrast: Callable[[np.ndarray], np.ndarray], swappable: int, observed: float,
                        rounds: int) -> float:
    """Paired permutation test of a contrast between two conditions measured on the same units.

    `contrast(swaps)` takes a bool array ``[block, swappable]`` (True = exchange the unit's two conditions
    in that round) and returns the contrast of each round ``[block]``. Units whose two conditions agree
    cannot change the contrast and are left out by the caller. p = (1 + rounds whose |contrast| >=
    |observed| - 1e-12) / (1 + rounds), from its own ``default_rng(0)``.
    """
    if swappable == 0:
        return 1.0
    rng = np.random.default_rng(SEED)
    extreme = 0
    threshold = abs(observed) - TIE_TOLERANCE
    for block in _blocks(rounds, swappable):
        swaps = rng.random((block, swappable)) < 0.5
        extreme += int(np.count_nonzero(np.abs(contrast(swaps)) >= threshold))
    return (1 + extreme) / (1 + rounds)


def bootstrap_interval(statistic: Callable[[np.ndarray], np.ndarray], n: int,
                       resamples: int = RESAMPLES) -> list[float]:
    """The 2.5th and 97.5th percentiles of `statistic(indices)` over `resamples` paired bootstrap resamples.

    `statistic` takes example indices ``[block, n]`` (each row one resample, drawn with replacement) and
    returns the statistic of each row; its own ``default_rng(0)``.
    """
    if n == 0:
        return [0.0, 0.0]
    rng = np.random.default_rng(SEED)
    values = np.concatenate([statistic(rng.integers(0, n, size=(block, n))) for block in _blocks(resamples, n)])
    low, high = np.percentile(values, [2.5, 97.5])
    return [float(low), float(high)]


def holm(p_values: np.ndarray | list) -> np.ndarray:
    """Holm's step-down adjusted p-values, in the shape given: the i-th smallest of m is multiplied by
    (m - i + 1), made non-decreasing in that order, and capped at 1."""
    p = np.asarray(p_values, dtype=np.float64)
    flat = p.ravel()
    m = flat.size
    if m == 0:
        return p.copy()
    order = np.argsort(flat, kind="stable")
    scaled = np.minimum(1.0, flat[order] * (m - np.arange(m)))
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted.reshape(p.shape)


def holm_fields(p_values: np.ndarray | list, alpha: float = ALPHA) -> dict:
    """The sweep fields in the shape of `p_values`: ``p_value``, ``p_holm`` and ``significant``."""
    p = np.asarray(p_values, dtype=np.float64)
    adjusted = holm(p)
    return {"p_value": p.tolist(), "p_holm": adjusted.tolist(), "significant": (adjusted <= alpha).tolist()}


# -- the significance of one mask's delta ------------------------------------------------------------------
def delta_statistic(metric: str, gold: np.ndarray, baseline: np.ndarray, masked: np.ndarray,
                    num_labels: int) -> Callable[[np.ndarray], np.ndarray]:
    """``indices [rows, n] -> metric(masked) - metric(baseline)`` on each row's examples, both from one
    joint count of (gold, baseline, masked) per row."""
    size = metrics.label_count(num_labels, gold, baseline, masked)
    codes = (gold.astype(np.int64) * size + baseline) * size + masked  # one code per example

    def statistic(indices: np.ndarray) -> np.ndarray:
        rows = indices.shape[0]
        offsets = (np.arange(rows, dtype=np.int64) * size**3)[:, None]
        joint = np.bincount((codes[indices] + offsets).ravel(), minlength=rows * size**3)
        joint = joint.reshape(rows, size, size, size).astype(np.float64)  # [row, gold, baseline, masked]
        return (metrics.from_confusion(metric, joint.sum(axis=2), num_labels)
                - metrics.from_confusion(metric, joint.sum(axis=3), num_labels))

    return statistic


def swap_statistic(metric: str, gold: np.ndarray, baseline: np.ndarray, masked: np.ndarray,
                   num_labels: int) -> tuple[Callable[[np.ndarray], np.ndarray], int]:
    """The permutation contrast of a delta: ``swaps [rows, d] -> delta`` with the two predictions of the d
    examples where they differ exchanged where True; and d."""
    size = metrics.label_count(num_labels, gold, baseline, masked)
    differ = baseline != masked
    fixed = metrics.confusion(gold[~differ], baseline[~differ], size)  # the same in both conditions
    g, b, m = gold[differ], baseline[differ], masked[differ]

    def statistic(swaps: np.ndarray) -> np.ndarray:
        new_masked = np.where(swaps, b, m)
        new_baseline = np.where(swaps, m, b)
        return (metrics.from_confusion(metric, fixed + metrics.confusion(g, new_masked, size), num_labels)
                - metrics.from_confusion(metric, fixed + metrics.confusion(g, new_baseline, size), num_labels))

    return statistic, int(differ.sum())


def flip_counts(gold: np.ndarray, baseline: np.ndarray, masked: np.ndarray) -> tuple[int, int]:
    """(right_to_wrong, wrong_to_right): examples the baseline gets right and the mask wrong, and the reverse."""
    base_right, masked_right = baseline == gold, masked == gold
    return int(np.sum(base_right & ~masked_right)), int(np.sum(~base_right & masked_right))


def delta_test(metric: str, gold: np.ndarray, baseline: np.ndarray, masked: np.ndarray, num_labels: int, *,
               family_size: int = 1, resamples: int = RESAMPLES) -> tuple[str, float]:
    """The test's name and unadjusted p-value for ``metric(masked) - metric(baseline)``: McNemar's exact test
    for accuracy, the paired permutation test with ``rounds_for(family_size)`` rounds otherwise."""
    if metric == "accuracy":
        return "mcnemar-exact", mcnemar_exact(*flip_counts(gold, baseline, masked))
    contrast, swappable = swap_statistic(metric, gold, baseline, masked, num_labels)
    observed = metrics.score(metric, gold, masked, num_labels) - metrics.score(metric, gold, baseline, num_labels)
    return "paired-permutation", permutation_p_value(contrast, swappable, observed,
                                                     rounds_for(family_size, resamples))


def _int_arrays(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    return tuple(np.asarray(a, dtype=np.int64) for a in arrays)


def significance(metric: str, gold: np.ndarray, baseline: np.ndarray, masked: np.ndarray, num_labels: int, *,
                 family_size: int = 1, resamples: int = RESAMPLES) -> dict:
    """The ``significance`` object of docs/api.md for ``metric(masked) - metric(baseline)`` on paired
    predictions: test, p_value, right_to_wrong, wrong_to_right, ci95, resamples."""
    gold, baseline, masked = _int_arrays(gold, baseline, masked)
    right_to_wrong, wrong_to_right = flip_counts(gold, baseline, masked)
    test, p_value = delta_test(metric, gold, baseline, masked, num_labels, family_size=family_size,
                               resamples=resamples)
    ci95 = bootstrap_interval(delta_statistic(metric, gold, baseline, masked, num_labels), len(gold), resamples)
    return {"test": test, "p_value": p_value, "right_to_wrong": right_to_wrong, "wrong_to_right": wrong_to_right,
            "ci95": ci95, "resamples": resamples}


def family_p_values(metric: str, gold: np.ndarray, baseline: np.ndarray, masked: np.ndarray,
                    num_labels: int) -> np.ndarray:
    """Unadjusted p-values of each mask of a family (``masked [masks, n]``) against one baseline, with the
    permutation rounds the family's size asks for (feed them to :func:`holm_fields`)."""
    gold, baseline, masked = _int_arrays(gold, baseline, masked)
    return np.array([delta_test(metric, gold, baseline, row, num_labels, family_size=len(masked))[1]
                     for row in masked])
