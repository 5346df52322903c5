"""The recurrent-cell family (``csrc/cuda/rnn.cu``): the pointwise part of one LSTM / GRU
step (``lstm_cell_forward`` ... ``gru_cell_backward``), one thread per (sample, unit).

The kernels want C-contiguous arrays; a gate array the protocol updates in place, or an
output the caller passes, that is not contiguous goes through a contiguous copy that is
written back.
"""

from __future__ import annotations

import numpy as np

from . import runtime as rt

SOURCE = "rnn.cu"
KINDS = ("lstm_cell_forward", "lstm_cell_backward", "gru_cell_forward", "gru_cell_backward")



def instances() -> list[str]:
    """Every rnn.cu instance the backend may launch."""
    return rt.typed_instances(KINDS)


def _cell_launch(kind, gates, arrays, hidden):
    """Launch ``kind`` over N * hidden threads; ``gates`` gives the dtype and N."""
    total = gates.shape[0] * hidden
    if total:
        rt.launch(SOURCE, rt.typed_name(kind, rt.CTYPES[np.dtype(gates.dtype)]),
                  (rt.grid_1d(total),), rt.BLOCK,
                  tuple(arrays) + (np.int64(total), np.int32(hidden)))


def _output(given, shape, dtype):
    """Where a kernel writes an output: ``given`` when usable as is, else a new array."""
    return given if given is not None and given.flags.c_contiguous else rt.empty(shape, dtype)


def _write_back(given, out):
    """``given`` holding ``out`` (the caller's array, when it passed one), else ``out``."""
    if given is None:
        return out
    if given is not out:
        given[...] = out
    return given


@rt.on_device
def lstm_cell_forward(gates, c_prev):
    """(h, c, tanh_c) of one LSTM step; gates (N, 4H) becomes the activations, in place."""
    rt.float_pair("lstm_cell_forward", gates, c_prev)
    hidden = gates.shape[1] // 4
    work = rt.contig(gates)
    h, c, tanh_c = (rt.empty((gates.shape[0], hidden), gates.dtype) for _ in range(3))
    _cell_launch("lstm_cell_forward", work, (work, rt.contig(c_prev), h, c, tanh_c), hidden)
    _write_back(gates, work)
    return h, c, tanh_c


@rt.on_device
def lstm_cell_backward(dh, dc, acts, tanh_c, c_prev, dgates=None):
    """(dgates (N, 4H), dc_prev) of one LSTM step."""
    rt.float_pair("lstm_cell_backward", acts, dh, dc, tanh_c, c_prev)
    hidden = acts.shape[1] // 4
    acts = rt.contig(acts)
    out = _output(dgates, acts.shape, acts.dtype)
    dc_prev = rt.empty((acts.shape[0], hidden), acts.dtype)
    _cell_launch("lstm_cell_backward", acts, (rt.contig(dh), rt.contig(dc), acts,
                                              rt.contig(tanh_c), rt.contig(c_prev), out, dc_prev),
                 hidden)
    return _write_back(dgates, out), dc_prev


@rt.on_device
def gru_cell_forward(xg, hg, h_prev):
    """(h, n) of one GRU step; hg[:, :2H] becomes r, z, in place."""
    rt.float_pair("gru_cell_forward", hg, xg, h_prev)
    hidden = hg.shape[1] // 3
    work = rt.contig(hg)
    h, n = (rt.empty((hg.shape[0], hidden), hg.dtype) for _ in range(2))
    _cell_launch("gru_cell_forward", work, (rt.contig(xg), work, rt.contig(h_prev), h, n), hidden)
    _write_back(hg, work)
    return h, n


@rt.on_device
def gru_cell_backward(dh, rzh, n, h_prev, dxg=None, dhg=None):
    """(dxg, dhg, dh_prev) of one GRU step (dh_prev: the direct path dh * z only)."""
    rt.float_pair("gru_cell_backward", rzh, dh, n, h_prev)
    hidden = rzh.shape[1] // 3
    rzh = rt.contig(rzh)
    out_x, out_h = (_output(o, rzh.shape, rzh.dtype) for o in (dxg, dhg))
    dh_prev = rt.empty((rzh.shape[0], hidden), rzh.dtype)
    _cell_launch("gru_cell_backward", rzh, (rt.contig(dh), rzh, rt.contig(n), rt.contig(h_prev),
                                            out_x, out_h, dh_prev), hidden)
    return _write_back(dxg, out_x), _write_back(dhg, out_h), dh_prev
