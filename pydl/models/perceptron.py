"""Perceptron: one neuron, y = output(w . x + b), the oldest neural network (Rosenblatt, 1958)."""

from __future__ import annotations

from .. import nn
from ..autograd import no_grad


class Perceptron(nn.Module):
    """One neuron over ``in_features`` inputs, for two classes labelled 0 and 1.

    ``output="step"``: the classic perceptron. It fires (1) when ``w . x + b > 0``; it has no
    useful gradient, so it learns with the perceptron rule, :meth:`perceptron_update`.
    ``output="sigmoid"``: a smooth neuron giving P(class 1); train it by gradient descent on
    binary cross-entropy like any other module (this is logistic regression).

    Either way the decision boundary ``w . x + b = 0`` is a straight line (a hyperplane), so a
    perceptron can only separate classes that a line separates: it cannot learn XOR.

    >>> p = Perceptron(2)
    >>> p(pydl.randn(5, 2)).shape      # 0/1 outputs
    (5, 1)
    >>> p.predict(pydl.randn(5, 2)).shape
    (5,)
    """

    def __init__(self, in_features: int, output: str = "step"):
        super().__init__()
        if output not in ("step", "sigmoid"):
            raise ValueError(f"Perceptron output must be 'step' or 'sigmoid', got {output!r}")
        self.output = output
        self.linear = nn.Linear(in_features, 1)

    def forward(self, x):
        z = self.linear(x)  # (N, 1): w . x + b
        if self.output == "step":
            return (z > 0).float()
        return z.sigmoid()

    def predict(self, x):
        """Class labels (N,) as int64: 1 where ``w . x + b > 0`` (probability > 0.5), else 0."""
        with no_grad():
            return (self.linear(x) > 0).long().reshape(-1)

    def perceptron_update(self, x, y, lr: float = 1.0) -> int:
        """One step of the perceptron learning rule on a batch; returns how many were wrong.

        For each example the error ``y - y_hat`` is 0 when it is right, and +1 or -1 when it
        is wrong; the rule moves the weights towards the misclassified inputs:
        ``w += lr * sum(error * x)``, ``b += lr * sum(error)``. With a batch of one example at
        a time this is Rosenblatt's rule, which stops changing once every point is right, and
        gets there in finitely many steps whenever the classes are linearly separable.
        """
        if self.output != "step":
            raise RuntimeError("perceptron_update is the rule for output='step'; train a "
                               "sigmoid neuron with a loss and an optimizer")
        with no_grad():
            error = y.reshape(-1, 1).to(x.dtype) - self(x)  # (N, 1), entries -1, 0 or 1
            self.linear.weight.add_(lr * (error.T @ x))     # (1, in_features)
            self.linear.bias.add_(lr * error.sum(dim=0))    # (1,)
            return int((error != 0).sum().item())
