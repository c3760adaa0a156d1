"""Task metrics as docs/api.md defines them: accuracy, F1 (binary: label 1 positive; macro otherwise), MCC."""

from __future__ import annotations

import numpy as np


def accuracy(gold: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.mean(gold == predicted)) if len(gold) else 0.0


def f1(gold: np.ndarray, predicted: np.ndarray, num_labels: int = 2) -> float:
    """Binary F1 with label 1 positive when there are two labels, macro-F1 otherwise."""
    classes = [1] if num_labels <= 2 else list(range(num_labels))
    scores = []
    for cls in classes:
        tp = np.sum((predicted == cls) & (gold == cls))
        fp = np.sum((predicted == cls) & (gold != cls))
        fn = np.sum((predicted != cls) & (gold == cls))
        denom = 2 * tp + fp + fn
        scores.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(scores))


def mcc(gold: np.ndarray, predicted: np.ndarray, num_labels: int = 2) -> float:
    """Matthews correlation (Gorodkin's multi-class form, equal to the binary one for two labels)."""
    size = max(num_labels, int(max(gold.max(initial=0), predicted.max(initial=0))) + 1)
    confusion = np.zeros((size, size), dtype=np.float64)
    np.add.at(confusion, (gold, predicted), 1)
    t = confusion.sum(axis=1)
    p = confusion.sum(axis=0)
    c = np.trace(confusion)
    s = confusion.sum()
    denom = np.sqrt((s * s - p @ p) * (s * s - t @ t))
    return float((c * s - t @ p) / denom) if denom else 0.0


METRICS = {"accuracy": accuracy, "f1": f1, "mcc": mcc}


def score(metric: str, gold: np.ndarray, predicted: np.ndarray, num_labels: int) -> float:
    if metric == "accuracy":
        return accuracy(gold, predicted)
    return METRICS[metric](gold, predicted, num_labels)
