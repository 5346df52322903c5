"""MLP: a fully connected network (ANN / DNN) with any number of hidden layers."""

from __future__ import annotations

from .. import nn

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU,
                "elu": nn.ELU, "silu": nn.SiLU, "leaky_relu": nn.LeakyReLU}


class MLP(nn.Module):
    """Linear layers with an activation between them, optional batch norm and dropout.

    Each hidden layer is Linear -> [BatchNorm1d] -> activation -> [Dropout]; the last layer
    is a plain Linear producing logits (or regression outputs).

    >>> net = MLP(64, [128, 64], 10, activation="relu", dropout=0.1)
    >>> net(pydl.randn(32, 64)).shape
    (32, 10)
    """

    def __init__(self, in_features: int, hidden: list[int], out_features: int,
                 activation: str = "relu", dropout: float = 0.0, batch_norm: bool = False):
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; known: {sorted(_ACTIVATIONS)}")
        layers, width = [nn.Flatten()], in_features
        for h in hidden:
            layers.append(nn.Linear(width, h))
            if batch_norm:
                layers.append(nn.BatchNorm1d(h))
            layers.append(_ACTIVATIONS[activation]())
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, out_features))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)
