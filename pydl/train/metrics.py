"""Metrics on NumPy arrays: accuracy, top-k, precision, recall, F1, MAE, MSE, confusion matrix.

``y_pred`` may be class scores/logits (N, C) (the arg-max is the prediction), probabilities
(N,) or (N, 1) for binary problems (thresholded at 0.5), or labels (N,).
"""

from __future__ import annotations

import numpy as np

__all__ = ["accuracy", "top_k_accuracy", "precision", "recall", "f1_score", "mae", "mse",
           "confusion_matrix", "get_metric", "to_labels"]


def to_labels(y_pred, threshold=0.5):
    """Predicted class labels from scores (N, C), binary probabilities (N,)/(N, 1), or labels."""
    y_pred = np.asarray(y_pred)
    if y_pred.ndim == 2 and y_pred.shape[1] > 1:
        return y_pred.argmax(axis=1)
    y_pred = y_pred.reshape(len(y_pred))
    if y_pred.dtype.kind == "f":
        return (y_pred > threshold).astype(np.int64)
    return y_pred.astype(np.int64)


def _true_labels(y_true):
    y_true = np.asarray(y_true)
    if y_true.ndim == 2 and y_true.shape[1] > 1:  # one-hot
        return y_true.argmax(axis=1)
    return y_true.reshape(len(y_true)).astype(np.int64)


def accuracy(y_true, y_pred) -> float:
    """Fraction of samples whose predicted class equals the true class."""
    t, p = _true_labels(y_true), to_labels(y_pred)
    if len(t) != len(p):
        raise ValueError(f"accuracy: {len(t)} targets but {len(p)} predictions")
    return float((t == p).mean()) if len(t) else 0.0


def top_k_accuracy(y_true, y_pred, k: int = 5) -> float:
    """Fraction of samples whose true class is among the ``k`` highest scores."""
    scores = np.asarray(y_pred)
    if scores.ndim != 2:
        raise ValueError(f"top_k_accuracy needs scores of shape (N, C), got {scores.shape}")
    top = np.argsort(-scores, axis=1)[:, :k]
    return float((top == _true_labels(y_true)[:, None]).any(axis=1).mean())


def confusion_matrix(y_true, y_pred, num_classes: int | None = None) -> np.ndarray:
    """Counts ``m[i, j]`` of samples of true class i predicted as class j."""
    t, p = _true_labels(y_true), to_labels(y_pred)
    n = num_classes or int(max(t.max(initial=0), p.max(initial=0)) + 1)
    m = np.zeros((n, n), dtype=np.int64)
    np.add.at(m, (t, p), 1)
    return m


def _per_class(y_true, y_pred):
    m = confusion_matrix(y_true, y_pred).astype(np.float64)
    tp = np.diag(m)
    with np.errstate(invalid="ignore", divide="ignore"):
        prec = np.where(m.sum(0) > 0, tp / m.sum(0), 0.0)
        rec = np.where(m.sum(1) > 0, tp / m.sum(1), 0.0)
    return prec, rec, m


def precision(y_true, y_pred, average="macro"):
    """Precision per class (average=None), macro-averaged, or of class 1 (average='binary')."""
    prec, _, _ = _per_class(y_true, y_pred)
    return _average(prec, average)


def recall(y_true, y_pred, average="macro"):
    """Recall per class (average=None), macro-averaged, or of class 1 (average='binary')."""
    _, rec, _ = _per_class(y_true, y_pred)
    return _average(rec, average)


def f1_score(y_true, y_pred, average="macro"):
    """Harmonic mean of precision and recall, per class then averaged."""
    prec, rec, _ = _per_class(y_true, y_pred)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(prec + rec > 0, 2 * prec * rec / (prec + rec), 0.0)
    return _average(f1, average)


def _average(values, average):
    if average is None:
        return values
    if average == "macro":
        return float(values.mean()) if len(values) else 0.0
    if average == "binary":
        return float(values[1]) if len(values) > 1 else 0.0
    raise ValueError(f"average must be 'macro', 'binary' or None, got {average!r}")


def mae(y_true, y_pred) -> float:
    """Mean absolute error."""
    return float(np.mean(np.abs(np.asarray(y_pred, np.float64) - np.asarray(y_true, np.float64))))


def mse(y_true, y_pred) -> float:
    """Mean squared error."""
    return float(np.mean((np.asarray(y_pred, np.float64) - np.asarray(y_true, np.float64)) ** 2))


_BY_NAME = {
    "accuracy": accuracy, "acc": accuracy,
    "top_k_accuracy": top_k_accuracy, "top5": top_k_accuracy,
    "precision": precision, "recall": recall, "f1": f1_score, "f1_score": f1_score,
    "mae": mae, "mean_absolute_error": mae, "mse": mse, "mean_squared_error": mse,
}


def get_metric(metric):
    """(name, function(y_true, y_pred) -> float) for a metric name or function."""
    if callable(metric):
        return getattr(metric, "__name__", "metric"), metric
    fn = _BY_NAME.get(str(metric).lower())
    if fn is None:
        raise ValueError(f"unknown metric {metric!r}; known: {sorted(_BY_NAME)}")
    return str(metric).lower(), fn
