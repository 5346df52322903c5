"""SequenceRegressor: an RNN, LSTM or GRU that reads a whole sequence and predicts from its end.

A recurrent network keeps a hidden state ``h_t`` and updates it once per time step from the
new input and the previous state, with the *same* weights at every step:

    plain RNN   h_t = tanh(W_ih x_t + W_hh h_{t-1} + b)
    LSTM        a cell state c_t = f_t * c_{t-1} + i_t * g_t that gates write to and read from
    GRU         h_t = (1 - z_t) * n_t + z_t * h_{t-1}, an update gate z_t mixing old and new

After the last step ``h_T`` has to summarize everything the prediction needs, so the model
reads the top layer's final hidden state with one ``Linear`` layer. Training unrolls the
recurrence and backpropagates through time; the gradient reaching step ``t`` from the end is
a product of ``T - t`` Jacobians. In the plain RNN that product shrinks (or explodes)
geometrically, so it learns to use inputs far back slowly, if at all. The gated cells carry
their memory through an additive path (``c_t`` in the LSTM, ``z_t * h_{t-1}`` in the GRU) whose
gradient is the gate value itself, close to 1 when the gate chooses to keep; that is why they
solve long-range tasks such as the adding problem.

An LSTM whose forget gates start half closed (PyTorch's default init puts them near
sigmoid(0) = 0.5) forgets half of its cell every step until training opens them, so its
memory starts out short. ``forget_bias=1.0`` (the default here, as Keras's
``unit_forget_bias``) starts them at sigmoid(1) = 0.73, which shortens the plateau at the start
of training on long sequences. ``forget_bias=None`` keeps PyTorch's initialization.
"""

from __future__ import annotations

from .. import nn
from ..autograd import no_grad

_CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class SequenceRegressor(nn.Module):
    """Sequence -> prediction: a stack of recurrent layers, then Linear on the last hidden state.

    ``cell`` is ``"rnn"`` (Elman, tanh), ``"lstm"`` or ``"gru"``. Inputs are batch-first,
    ``(N, L, input_size)``; the output is ``(N, output_size)``.

    >>> net = SequenceRegressor("lstm", input_size=2, hidden_size=64, output_size=1)
    >>> net(pydl.randn(8, 50, 2)).shape
    (8, 1)
    """

    def __init__(self, cell: str = "lstm", input_size: int = 1, hidden_size: int = 64,
                 num_layers: int = 1, output_size: int = 1, dropout: float = 0.0,
                 forget_bias: float | None = 1.0):
        super().__init__()
        if cell not in _CELLS:
            raise ValueError(f"unknown cell {cell!r}; known: {sorted(_CELLS)}")
        self.cell = cell
        self.rnn = _CELLS[cell](input_size, hidden_size, num_layers=num_layers,
                                batch_first=True, dropout=dropout)
        self.head = nn.Linear(hidden_size, output_size)
        if cell == "lstm" and forget_bias is not None:
            # gate order is i, f, g, o: the forget gate's bias is the second quarter
            H = hidden_size
            with no_grad():
                for layer in range(num_layers):
                    getattr(self.rnn, f"bias_ih_l{layer}")[H:2 * H] = forget_bias
                    getattr(self.rnn, f"bias_hh_l{layer}")[H:2 * H] = 0.0

    def forward(self, x):
        out, _ = self.rnn(x)  # out: (N, L, hidden), the top layer's state at every step
        return self.head(out[:, -1])
