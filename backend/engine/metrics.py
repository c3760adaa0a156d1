"""Task metrics as docs/api.md defines them: accuracy, F1 (binary: label 1 positive; macro otherwise), MCC.

Every metric is computed from a confusion matrix ``[..., gold, predicted]``, so the same rule scores one
prediction vector and, in :mod:`headscope.engine.significance`, thousands of resampled or permuted ones
at once (leading axes are rounds).
"""

from __future__ import annotations

import numpy as np


def confusion(gold: np.ndarray, predicted: np.ndarray, size: int) -> np.ndarray:
    """Counts ``[..., size, size]`` (gold x predicted) over the last axis of `predicted` (and `gold`, which
    may be one vector shared by every row)."""
    predicted = np.asarray(predicted, dtype=np.int64)
    gold = np.broadcast_to(np.asarray(gold, dtype=np.int64), predicted.shape)
    lead = predicted.shape[:-1]
    rows = int(np.prod(lead)) if lead else 1
    codes = gold.reshape(rows, -1) * size + predicted.reshape(rows, -1)
    codes = codes + (np.arange(rows, dtype=np.int64) * size * size)[:, None]
    counts = np.bincount(codes.ravel(), minlength=rows * size * size)
    return counts.reshape(*lead, size, size).astype(np.float64)


def accuracy_from_confusion(matrix: np.ndarray) -> np.ndarray:
    total = matrix.sum(axis=(-2, -1))
    correct = np.trace(matrix, axis1=-2, axis2=-1)
    return np.divide(correct, total, out=np.zeros_like(correct), where=total > 0)


def f1_from_confusion(matrix: np.ndarray, num_labels: int = 2) -> np.ndarray:
    """Binary F1 with label 1 positive when there are two labels, macro-F1 otherwise."""
    classes = [1] if num_labels <= 2 else list(range(num_labels))
    scores = []
    for cls in classes:
        tp = matrix[..., cls, cls]
        fp = matrix[..., :, cls].sum(axis=-1) - tp
        fn = matrix[..., cls, :].sum(axis=-1) - tp
        denom = 2 * tp + fp + fn
        scores.append(np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0))
    return np.mean(scores, axis=0)


def mcc_from_confusion(matrix: np.ndarray) -> np.ndarray:
    """Matthews correlation (Gorodkin's multi-class form, equal to the binary one for two labels)."""
    t = matrix.sum(axis=-1)  # per gold class
    p = matrix.sum(axis=-2)  # per predicted class
    c = np.trace(matrix, axis1=-2, axis2=-1)
    s = matrix.sum(axis=(-2, -1))
    tp_ = (t * p).sum(axis=-1)
    denom = np.sqrt((s * s - (p * p).sum(axis=-1)) * (s * s - (t * t).sum(axis=-1)))
    return np.divide(c * s - tp_, denom, out=np.zeros_like(c), where=denom > 0)


def from_confusion(metric: str, matrix: np.ndarray, num_labels: int) -> np.ndarray:
    """The metric of each confusion matrix in ``[..., K, K]``."""
    if metric == "accuracy":
        return accuracy_from_confusion(matrix)
    if metric == "f1":
        return f1_from_confusion(matrix, num_labels)
    if metric == "mcc":
        return mcc_from_confusion(matrix)
    raise ValueError(f"unknown metric {metric!r}; allowed: {', '.join(METRICS)}")


def label_count(num_labels: int, *arrays: np.ndarray) -> int:
    """Confusion size: the model's labels, or more if an array holds a larger id."""
    return max([num_labels, *(int(np.max(a, initial=0)) + 1 for a in arrays)])


def accuracy(gold: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.mean(gold == predicted)) if len(gold) else 0.0


def f1(gold: np.ndarray, predicted: np.ndarray, num_labels: int = 2) -> float:
    """Binary F1 with label 1 positive when there are two labels, macro-F1 otherwise."""
    size = label_count(num_labels, gold, predicted)
    return float(f1_from_confusion(confusion(gold, predicted, size), num_labels))


def mcc(gold: np.ndarray, predicted: np.ndarray, num_labels: int = 2) -> float:
    """Matthews correlation (Gorodkin's multi-class form, equal to the binary one for two labels)."""
    return float(mcc_from_confusion(confusion(gold, predicted, label_count(num_labels, gold, predicted))))


METRICS = {"accuracy": accuracy, "f1": f1, "mcc": mcc}


def score(metric: str, gold: np.ndarray, predicted: np.ndarray, num_labels: int) -> float:
    if metric == "accuracy":
        return accuracy(gold, predicted)
    return METRICS[metric](gold, predicted, num_labels)
