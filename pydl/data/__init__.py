"""Data: datasets, batching, and data shipped with pydl (no network access, ever)."""

from . import transforms
from .dataset import Dataset, Subset, TensorDataset, random_split
from .datasets import adding_problem, load_digits, load_text, moons, noisy_sine, two_spirals
from .loader import DataLoader, default_collate
from .mnist_files import FASHION_CLASSES, MNIST, FashionMNIST, fashion_mnist, find_data, mnist
from .readers import CIFAR10, read_idx

__all__ = [
    "Dataset", "Subset", "TensorDataset", "random_split", "DataLoader", "default_collate",
    "MNIST", "FashionMNIST", "CIFAR10", "read_idx", "transforms", "mnist", "fashion_mnist",
    "find_data", "FASHION_CLASSES",
    "load_digits", "load_text", "two_spirals", "moons", "noisy_sine", "adding_problem",
]
