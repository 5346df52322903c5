"""The documented architectures, each a page of code built only from ``pydl.nn``."""

from .cnn import CNN, LeNet5, ResidualBlock
from .diffusion import DDPM, UNet
from .gan import GAN, Discriminator, Generator
from .mlp import MLP
from .perceptron import Perceptron
from .rnn import SequenceRegressor
from .transformer import CharTransformer, TransformerClassifier
from .vae import VAE

__all__ = ["Perceptron", "MLP", "CNN", "LeNet5", "ResidualBlock", "SequenceRegressor",
           "TransformerClassifier", "CharTransformer", "GAN", "Generator", "Discriminator", "VAE",
           "DDPM", "UNet"]
