"""The documented architectures, each a page of code built only from ``pydl.nn``."""

from .cnn import CNN, ResidualBlock
from .mlp import MLP
from .perceptron import Perceptron
from .rnn import SequenceRegressor

__all__ = ["Perceptron", "MLP", "CNN", "ResidualBlock", "SequenceRegressor"]
