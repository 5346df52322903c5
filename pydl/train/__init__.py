"""Keras-style training: ``Model``/``Sequential`` with compile, fit, evaluate, predict;
callbacks; metrics; training curves and confusion matrices. ``pydl.nn`` never imports this."""

from . import callbacks, metrics
from .callbacks import (
    Callback,
    CSVLogger,
    EarlyStopping,
    LearningRateScheduler,
    ModelCheckpoint,
    ReduceLROnPlateau,
    TerminateOnNaN,
)
from .history import History, plot_confusion_matrix
from .metrics import confusion_matrix
from .model import Model, Sequential, get_loss, get_optimizer, resolve_device

__all__ = [
    "Model", "Sequential", "History", "Callback", "EarlyStopping", "ModelCheckpoint",
    "LearningRateScheduler", "ReduceLROnPlateau", "CSVLogger", "TerminateOnNaN",
    "confusion_matrix", "plot_confusion_matrix", "get_loss", "get_optimizer", "metrics",
    "callbacks", "resolve_device",
]
