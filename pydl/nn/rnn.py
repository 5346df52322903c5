"""Recurrent layers: ``RNN``, ``LSTM``, ``GRU`` and their single-step cells.

Everything matches PyTorch: constructor arguments, parameter names
(``weight_ih_l{k}[_reverse]``, ``weight_hh_l{k}``, ``bias_ih_l{k}``, ``bias_hh_l{k}``, and
``weight_hr_l{k}`` for an LSTM with ``proj_size``), gate order (LSTM: i, f, g, o; GRU: r, z, n),
input/output layouts and the default initialization U(-1/sqrt(hidden), 1/sqrt(hidden)), so a
``state_dict`` copied from ``torch.nn.LSTM`` gives the same outputs.

How a layer runs (the speed-relevant choices)
---------------------------------------------
For each layer and direction the input projection ``x_t W_ih^T + b_ih`` does not depend on
the recurrence, so it is computed for *all* time steps with one matrix product over the
whole ``(L, N, H_in)`` input (for LSTM and RNN ``b_hh`` is folded into it as well). Only the
recurrent part ``h_{t-1} W_hh^T`` loops over time, inside one Function per layer and
direction (``LSTMSequence``, ``GRUSequence``, ``RNNSequence`` in pydl/functions/rnn.py):
forward does one small matmul and the gate arithmetic per step on raw arrays and saves the
activations; backward is backpropagation through time in one loop (one ``dgates_t W_hh``
matmul per step) and then forms ``dW_hh`` with a single large ``(G, T*N) @ (T*N, H)``
product instead of T small ones. The autograd graph therefore has a handful of nodes per
layer, not a dozen per time step, so Python overhead stays flat and a 1,000-step unroll
backpropagates like any other.
The gate arithmetic of a step is one backend kernel (``lstm_cell_forward`` / ``_backward``,
``gru_cell_forward`` / ``_backward``; one pass in C++ on the CPU): forward builds the gates in
the saved activation buffer and the kernel turns them into activations in place, backward
writes the gate gradients straight into the whole-sequence buffer. The cells
(``LSTMCell``...) use the same kernels through one Function per step (``LSTMPointwise``,
``GRUPointwise``) after the two matmuls.
"""

from __future__ import annotations

import math

from .. import autograd
from .. import functions as _ops
from ..creation import rand, zeros
from ..functions import rnn as _rnn
from ..tensor import Tensor
from . import functional as F
from .module import Module
from .parameter import Parameter

__all__ = ["RNNBase", "RNN", "LSTM", "GRU", "RNNCellBase", "RNNCell", "LSTMCell", "GRUCell"]


# -- helpers -------------------------------------------------------------------------------
def _uniform(shape, bound, dtype, device):
    with autograd.no_grad():
        t = rand(*shape, dtype=dtype, device=device) * (2.0 * bound) - bound
    return Parameter(t)


def _activation(name):
    if name in ("tanh", "relu"):
        fn = getattr(_ops, name, None) or getattr(F, name, None)
        return fn if fn is not None else (lambda x: getattr(x, name)())
    raise ValueError(f"unknown nonlinearity {name!r}: expected 'tanh' or 'relu'")


def _linear(x, w, b=None):
    return F.linear(x, w, b)


# -- cells ---------------------------------------------------------------------------------
class RNNCellBase(Module):
    """Shared constructor of the cells: ``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``."""

    def __init__(self, input_size, hidden_size, bias, num_chunks, device=None, dtype=None):
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        G = num_chunks * hidden_size
        stdv = 1.0 / math.sqrt(hidden_size) if hidden_size > 0 else 0.0
        self.weight_ih = _uniform((G, input_size), stdv, dtype, device)
        self.weight_hh = _uniform((G, hidden_size), stdv, dtype, device)
        if bias:
            self.bias_ih = _uniform((G,), stdv, dtype, device)
            self.bias_hh = _uniform((G,), stdv, dtype, device)
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)

    def reset_parameters(self):
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0.0
        with autograd.no_grad():
            for p in self.parameters():
                p.uniform_(-stdv, stdv)

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        nl = getattr(self, "nonlinearity", "tanh")
        if nl != "tanh":
            s += f", nonlinearity={nl!r}"
        return s

    def _prepare(self, input, hx):
        """Check the input, add a batch dim to unbatched input, default the state to zeros."""
        if input.ndim not in (1, 2):
            raise ValueError(
                f"{type(self).__name__}: expected input of shape (N, {self.input_size}) or "
                f"({self.input_size},), got {tuple(input.shape)}"
            )
        if input.shape[-1] != self.input_size:
            raise ValueError(
                f"{type(self).__name__}: input has {input.shape[-1]} features, expected "
                f"{self.input_size} (input shape {tuple(input.shape)})"
            )
        batched = input.ndim == 2
        if not batched:
            input = input.unsqueeze(0)
        return input, batched

    def _state(self, hx, input, batched, what="hx"):
        N = input.shape[0]
        if hx is None:
            return zeros(N, self.hidden_size, dtype=input.dtype, device=input.device)
        expected = (N, self.hidden_size) if batched else (self.hidden_size,)
        if tuple(hx.shape) != expected:
            raise ValueError(
                f"{type(self).__name__}: {what} has shape {tuple(hx.shape)}, expected "
                f"{expected} for input of shape "
                f"{tuple(input.shape) if batched else tuple(input.shape[1:])}"
            )
        return hx if batched else hx.unsqueeze(0)


class RNNCell(RNNCellBase):
    """An Elman cell: h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh) (or relu).

    ``forward(input, hx=None)``: input (N, H_in) or (H_in,), hx (N, H) or (H,), zeros if
    omitted. Returns h' with hx's shape.
    """

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", device=None,
                 dtype=None):
        super().__init__(input_size, hidden_size, bias, 1, device=device, dtype=dtype)
        _activation(nonlinearity)
        self.nonlinearity = nonlinearity

    def forward(self, input, hx=None):
        input, batched = self._prepare(input, hx)
        h = self._state(hx, input, batched)
        pre = _linear(input, self.weight_ih, self.bias_ih) + _linear(h, self.weight_hh,
                                                                      self.bias_hh)
        out = _activation(self.nonlinearity)(pre)
        return out if batched else out.squeeze(0)


class LSTMCell(RNNCellBase):
    """A long short-term memory cell (gates i, f, g, o, as PyTorch).

    ``forward(input, hx=None)``: hx is a tuple (h, c), zeros if omitted. Returns (h', c').
    """

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, 4, device=device, dtype=dtype)

    def forward(self, input, hx=None):
        input, batched = self._prepare(input, hx)
        if hx is None:
            h = c = self._state(None, input, batched)
        else:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise ValueError("LSTMCell: hx must be a tuple (h_0, c_0)")
            h = self._state(hx[0], input, batched, "h_0")
            c = self._state(hx[1], input, batched, "c_0")
        gates = _linear(input, self.weight_ih, self.bias_ih) + _linear(h, self.weight_hh,
                                                                        self.bias_hh)
        h, c = _rnn.LSTMPointwise.apply(gates, c)
        if not batched:
            h, c = h.squeeze(0), c.squeeze(0)
        return h, c


class GRUCell(RNNCellBase):
    """A gated recurrent unit cell (gates r, z, n, as PyTorch).

    n = tanh(W_in x + b_in + r * (W_hn h + b_hn)), h' = (1 - z) * n + z * h.
    """

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, 3, device=device, dtype=dtype)

    def forward(self, input, hx=None):
        input, batched = self._prepare(input, hx)
        h = self._state(hx, input, batched)
        xg = _linear(input, self.weight_ih, self.bias_ih)
        hg = _linear(h, self.weight_hh, self.bias_hh)
        out = _rnn.GRUPointwise.apply(xg, hg, h)
        return out if batched else out.squeeze(0)


# -- multi-layer recurrent layers ----------------------------------------------------------
class RNNBase(Module):
    """Shared code of ``RNN``, ``LSTM`` and ``GRU`` (see the module docstring for the design).

    Arguments, as PyTorch: ``input_size``, ``hidden_size``, ``num_layers=1``, ``bias=True``,
    ``batch_first=False``, ``dropout=0.0`` (on the outputs of every layer but the last, in
    training mode only), ``bidirectional=False``, ``proj_size=0`` (LSTM only).

    Input (L, N, H_in), or (N, L, H_in) with ``batch_first``, or unbatched (L, H_in).
    Output (L, N, D * H_out) in the same layout, where D = 2 if bidirectional; h_n has shape
    (D * num_layers, N, H_out) whatever ``batch_first`` says.
    """

    _GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}

    def __init__(self, mode, input_size, hidden_size, num_layers=1, bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, proj_size=0,
                 device=None, dtype=None):
        super().__init__()
        if mode not in self._GATES:
            raise ValueError(f"unknown RNN mode {mode!r}")
        if not isinstance(hidden_size, int) or hidden_size <= 0:
            raise ValueError(f"hidden_size must be a positive integer, got {hidden_size!r}")
        if not isinstance(num_layers, int) or num_layers <= 0:
            raise ValueError(f"num_layers must be a positive integer, got {num_layers!r}")
        if isinstance(dropout, bool) or not 0.0 <= float(dropout) <= 1.0:
            raise ValueError(f"dropout must be a number in [0, 1], got {dropout!r}")
        if proj_size < 0:
            raise ValueError(f"proj_size must be non-negative, got {proj_size}")
        if proj_size >= hidden_size:
            raise ValueError(f"proj_size ({proj_size}) must be smaller than hidden_size "
                             f"({hidden_size})")
        if proj_size and mode != "LSTM":
            raise ValueError("proj_size is only supported by LSTM")
        self.mode = mode
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.proj_size = proj_size
        num_directions = 2 if bidirectional else 1
        real_hidden = proj_size if proj_size > 0 else hidden_size
        G = self._GATES[mode] * hidden_size
        stdv = 1.0 / math.sqrt(hidden_size)
        self._flat_weights_names = []
        for layer in range(num_layers):
            layer_in = input_size if layer == 0 else real_hidden * num_directions
            for direction in range(num_directions):
                sfx = f"_l{layer}" + ("_reverse" if direction == 1 else "")
                shapes = [("weight_ih", (G, layer_in)), ("weight_hh", (G, real_hidden))]
                if bias:
                    shapes += [("bias_ih", (G,)), ("bias_hh", (G,))]
                if proj_size > 0:
                    shapes += [("weight_hr", (proj_size, hidden_size))]
                for name, shape in shapes:
                    setattr(self, name + sfx, _uniform(shape, stdv, dtype, device))
                    self._flat_weights_names.append(name + sfx)

    def reset_parameters(self):
        stdv = 1.0 / math.sqrt(self.hidden_size)
        with autograd.no_grad():
            for p in self.parameters():
                p.uniform_(-stdv, stdv)

    @property
    def all_weights(self):
        """Parameters per layer and direction: [[w_ih, w_hh, b_ih, b_hh(, w_hr)], ...]."""
        per = len(self._flat_weights_names) // (self.num_layers * (2 if self.bidirectional else 1))
        flat = [getattr(self, n) for n in self._flat_weights_names]
        return [flat[i:i + per] for i in range(0, len(flat), per)]

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        if self.mode == "RNN_RELU":
            s += ", nonlinearity='relu'"
        return s

    # -- forward -------------------------------------------------------------------------
    def _params(self, layer, direction):
        sfx = f"_l{layer}" + ("_reverse" if direction == 1 else "")
        get = lambda name: getattr(self, name + sfx, None)
        return get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh"), get("weight_hr")

    def _check_input(self, input):
        name = type(self).__name__
        if not isinstance(input, Tensor):
            raise TypeError(f"{name}: expected a Tensor input, got {type(input).__name__}")
        if input.ndim not in (2, 3):
            raise ValueError(
                f"{name}: expected input of 3 dims ((L, N, H_in) or (N, L, H_in) with "
                f"batch_first) or 2 dims (L, H_in, unbatched), got shape {tuple(input.shape)}"
            )
        if input.shape[-1] != self.input_size:
            raise ValueError(
                f"{name}: input has {input.shape[-1]} features, expected input_size="
                f"{self.input_size} (input shape {tuple(input.shape)})"
            )
        tdim = 1 if (self.batch_first and input.ndim == 3) else 0
        if input.shape[tdim] == 0:
            raise ValueError(f"{name}: the input sequence is empty (shape {tuple(input.shape)})")

    def _check_state(self, h, expected, what, batched):
        if tuple(h.shape) != expected:
            raise ValueError(
                f"{type(self).__name__}: {what} has shape {tuple(h.shape)}, expected {expected}"
                + ("" if batched else " for unbatched input")
            )

    def forward(self, input, hx=None):
        self._check_input(input)
        batched = input.ndim == 3
        is_lstm = self.mode == "LSTM"
        D = 2 if self.bidirectional else 1
        H = self.hidden_size
        H_out = self.proj_size if self.proj_size > 0 else H
        if not batched:
            input = input.unsqueeze(1)  # (L, 1, H_in)
        tdim = 1 if (self.batch_first and batched) else 0
        N = input.shape[1 - tdim]
        n_states = self.num_layers * D

        # initial states: lists of (N, H_out) / (N, H) tensors, or None for zeros
        h0 = c0 = None
        if hx is not None:
            if is_lstm:
                if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                    raise ValueError("LSTM: hx must be a tuple (h_0, c_0)")
                h_init, c_init = hx
            else:
                if isinstance(hx, (tuple, list)):
                    raise ValueError(f"{type(self).__name__}: hx must be a tensor, not a tuple")
                h_init, c_init = hx, None
            sh = (n_states, N, H_out) if batched else (n_states, H_out)
            self._check_state(h_init, sh, "h_0", batched)
            if not batched:
                h_init = h_init.unsqueeze(1)
            h0 = _rnn.unbind_all(h_init, 0)
            if is_lstm:
                sc = (n_states, N, H) if batched else (n_states, H)
                self._check_state(c_init, sc, "c_0", batched)
                if not batched:
                    c_init = c_init.unsqueeze(1)
                c0 = _rnn.unbind_all(c_init, 0)

        layer_input = input
        h_n, c_n = [], []
        for layer in range(self.num_layers):
            outs = []
            for direction in range(D):
                k = layer * D + direction
                w_ih, w_hh, b_ih, b_hh, w_hr = self._params(layer, direction)
                h = h0[k] if h0 is not None else zeros(N, H_out, dtype=input.dtype,
                                                       device=input.device)
                c = None
                if is_lstm:
                    c = c0[k] if c0 is not None else zeros(N, H, dtype=input.dtype,
                                                           device=input.device)
                hs, h, c = self._run_direction(layer_input, tdim, direction == 1, h, c,
                                               w_ih, w_hh, b_ih, b_hh, w_hr)
                outs.append(hs)
                h_n.append(h)
                if is_lstm:
                    c_n.append(c)
            # directions joined on features
            layer_output = outs[0] if D == 1 else _ops.cat(outs, dim=-1)
            if self.dropout > 0 and self.training and layer < self.num_layers - 1:
                layer_output = F.dropout(layer_output, p=self.dropout, training=True)
            layer_input = layer_output

        output = layer_input
        hn = _ops.stack(h_n, dim=0)
        cn = _ops.stack(c_n, dim=0) if is_lstm else None
        if not batched:
            output = output.squeeze(1)
            hn = hn.squeeze(1)
            cn = cn.squeeze(1) if is_lstm else None
        return (output, (hn, cn)) if is_lstm else (output, hn)

    def _run_direction(self, x, tdim, reverse, h, c, w_ih, w_hh, b_ih, b_hh, w_hr):
        """One layer, one direction. Returns (outputs (time along tdim), h_T, c_T)."""
        mode = self.mode
        # input projection for all steps at once: one matmul over (L, N, H_in); for LSTM and
        # RNN b_hh is folded in here too, so the time loop adds no bias
        if mode != "GRU" and b_ih is not None:
            xproj = _linear(x, w_ih, b_ih + b_hh)
        else:
            xproj = _linear(x, w_ih, b_ih)
        if mode == "LSTM":
            return _rnn.LSTMSequence.apply(xproj, h, c, w_hh, w_hr, tdim=tdim, reverse=reverse)
        if mode == "GRU":
            hs, h = _rnn.GRUSequence.apply(xproj, h, w_hh, b_hh, tdim=tdim, reverse=reverse)
        else:
            hs, h = _rnn.RNNSequence.apply(xproj, h, w_hh, tdim=tdim, reverse=reverse,
                                       relu=mode == "RNN_RELU")
        return hs, h, None


class RNN(RNNBase):
    """A multi-layer Elman RNN: h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh).

    ``RNN(input_size, hidden_size, num_layers=1, nonlinearity='tanh', bias=True,
    batch_first=False, dropout=0.0, bidirectional=False)``; ``forward(input, h_0=None)``
    returns ``(output, h_n)``.

    >>> rnn = pydl.nn.RNN(10, 20, num_layers=2)
    >>> out, h_n = rnn(pydl.randn(5, 3, 10))   # out (5, 3, 20), h_n (2, 3, 20)
    """

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, device=None, dtype=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"unknown nonlinearity {nonlinearity!r}: expected 'tanh' or 'relu'")
        mode = "RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU"
        super().__init__(mode, input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, device=device, dtype=dtype)
        self.nonlinearity = nonlinearity


class LSTM(RNNBase):
    """A multi-layer long short-term memory RNN (gates i, f, g, o, as PyTorch).

    ``LSTM(input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
    bidirectional=False, proj_size=0)``; ``forward(input, (h_0, c_0)=None)`` returns
    ``(output, (h_n, c_n))``. With ``proj_size > 0`` the hidden state is projected by
    ``weight_hr_l{k}`` to ``proj_size`` features.

    >>> lstm = pydl.nn.LSTM(10, 20, batch_first=True)
    >>> out, (h, c) = lstm(pydl.randn(3, 5, 10))   # out (3, 5, 20), h and c (1, 3, 20)
    """

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, proj_size=0, device=None, dtype=None):
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, proj_size, device=device, dtype=dtype)


class GRU(RNNBase):
    """A multi-layer gated recurrent unit RNN (gates r, z, n, as PyTorch).

    n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn)); h_t = (1 - z_t) n_t + z_t h_{t-1}.
    ``forward(input, h_0=None)`` returns ``(output, h_n)``.
    """

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, device=None, dtype=None):
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, device=device, dtype=dtype)
