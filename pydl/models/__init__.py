"""The documented architectures, each a page of code built only from ``pydl.nn``."""

from .cnn import CNN, ResidualBlock
from .mlp import MLP
from .rnn import SequenceRegressor

__all__ = ["MLP", "CNN", "ResidualBlock", "SequenceRegressor"]
