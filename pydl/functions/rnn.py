"""The Functions of the recurrent layers (``pydl.nn.RNN`` / ``LSTM`` / ``GRU`` and their
cells): one graph node per layer and direction for a whole sequence, and one per cell step.

Under ``create_graph`` (gradient penalties, Hessian-vector products) the fused kernels'
backwards are not differentiable; each Function's backward then is the VJP of a reference
written with pydl's differentiable ops (``sigmoid``, ``tanh``, ``matmul``; the ``_ref_*``
functions below), through ``functions/_composed.py``. The training path is unchanged.

Each sequence Function runs one layer in one direction over all T steps: forward loops over
time doing one ``h_{t-1} W_hh^T`` matmul and the backend's cell kernel per step
(``lstm_cell_forward`` / ``gru_cell_forward``) and saves the activations; backward runs
backpropagation through time in one loop and forms the weight gradients with a single large
matmul over all T * N rows. See pydl/nn/rnn.py for how the layers use them.
"""

from __future__ import annotations

from ..autograd import Function
from ..backend import backend_of
from ..tensor import Tensor
from ._composed import composed_vjp, graph_inputs, keep_constants


class Unbind(Function):
    """Split a tensor into its slices along ``dim`` (views); backward stacks them once."""

    double_backward = True

    @staticmethod
    def forward(ctx, x, dim=0):
        ctx.dim = dim
        ctx.xp = backend_of(x).xp
        index = [slice(None)] * x.ndim
        out = []
        for i in range(x.shape[dim]):
            index[dim] = i
            out.append(x[tuple(index)])
        return tuple(out)

    @staticmethod
    def backward(ctx, *grads):
        if isinstance(grads[0], Tensor):
            from .shape import stack

            return stack(list(grads), dim=ctx.dim)
        return ctx.xp.stack(grads, axis=ctx.dim)


def unbind_all(x, dim: int = 0):
    """The slices of ``x`` along ``dim`` as a tuple of tensors, one graph node for all."""
    return Unbind.apply(x, dim=dim)  # forward returns a tuple, so apply does too


class LSTMPointwise(Function):
    """One LSTM step after the matmuls: ``gates`` (N, 4H) in order i, f, g, o, and c_{t-1}.

    Returns (o * tanh(c_t), c_t) with c_t = f * c_{t-1} + i * g (the backend's
    ``lstm_cell_forward`` / ``lstm_cell_backward``).
    """

    double_backward = True

    @staticmethod
    def forward(ctx, gates, c_prev):
        keep_constants(ctx, gates, c_prev)
        be = backend_of(gates)
        acts = be.xp.array(gates, order="C", copy=True)  # the kernel works in place
        h, c, tanh_c = be.lstm_cell_forward(acts, c_prev)
        ctx.save_for_backward(acts, tanh_c, c_prev)
        ctx.be = be
        return h, c

    @staticmethod
    def backward(ctx, gh, gc):
        if isinstance(gh, Tensor):
            ga, gcp = composed_vjp(_ref_lstm_cell, graph_inputs(ctx, 2), [gh, gc])
            return ga, gcp if ctx.needs_input_grad[1] else None
        acts, tanh_c, c_prev = ctx.saved_tensors
        dgates, dc_prev = ctx.be.lstm_cell_backward(gh, gc, acts, tanh_c, c_prev)
        return dgates, dc_prev if ctx.needs_input_grad[1] else None


class GRUPointwise(Function):
    """One GRU step after the matmuls (the backend's ``gru_cell_forward`` / ``_backward``).

    ``xg`` = W_ih x + b_ih and ``hg`` = W_hh h + b_hh, both (N, 3H) in order r, z, n;
    r = sigmoid(x_r + h_r), z = sigmoid(x_z + h_z), n = tanh(x_n + r * h_n),
    h_t = (1 - z) * n + z * h_{t-1}.
    """

    double_backward = True

    @staticmethod
    def forward(ctx, xg, hg, h_prev):
        keep_constants(ctx, xg, hg, h_prev)
        be = backend_of(xg)
        rzh = be.xp.array(hg, order="C", copy=True)  # the kernel writes r, z over it
        h, n = be.gru_cell_forward(xg, rzh, h_prev)
        ctx.save_for_backward(rzh, n, h_prev)
        ctx.be = be
        return h

    @staticmethod
    def backward(ctx, gh):
        if isinstance(gh, Tensor):
            got = composed_vjp(_ref_gru_cell, graph_inputs(ctx, 3), [gh])
            return tuple(g if n else None for g, n in zip(got, ctx.needs_input_grad))
        rzh, n, h_prev = ctx.saved_tensors
        dxg, dhg, dh_prev = ctx.be.gru_cell_backward(gh, rzh, n, h_prev)
        need = ctx.needs_input_grad
        return (dxg if need[0] else None, dhg if need[1] else None,
                dh_prev if need[2] else None)


class RecurrenceBase(Function):
    """Shared helpers of the whole-sequence recurrences below.

    Each runs one layer in one direction over all T steps as a single graph node: forward
    loops over time doing one ``h_{t-1} W_hh^T`` matmul per step and saves the activations;
    backward runs backpropagation through time in one loop (one ``dgates_t W_hh`` matmul per
    step) and then forms the weight gradients with a single large matmul over all T * N rows,
    instead of T small ones. ``xproj`` is the precomputed input projection, time along
    ``tdim``; the step order is reversed for the backward direction of a bidirectional layer.
    """

    @staticmethod
    def _steps(T, reverse):
        return range(T - 1, -1, -1) if reverse else range(T)

    @staticmethod
    def _weight_grad(be, d_all, x_all):
        """sum over t of d_t^T x_t, as one (G, T*N) @ (T*N, K) product."""
        G, K = d_all.shape[-1], x_all.shape[-1]
        return be.matmul(d_all.reshape(-1, G), x_all.reshape(-1, K), trans_a=True)


class LSTMSequence(RecurrenceBase):
    """LSTM recurrence: xproj (with b_ih + b_hh), h0, c0, w_hh, optional w_hr -> (hs, h_T, c_T)."""

    double_backward = True

    @staticmethod
    def forward(ctx, xproj, h0, c0, w_hh, w_hr, tdim=0, reverse=False):
        keep_constants(ctx, xproj, h0, c0, w_hh, w_hr)
        be = backend_of(xproj)
        xp = be.xp
        xs = xp.moveaxis(xproj, tdim, 0)
        T, N, G = xs.shape
        H = G // 4
        Hout = w_hh.shape[1]
        dt = xproj.dtype
        acts = xp.empty((T, N, G), dtype=dt)  # i, f, g, o after their nonlinearities
        tcs = xp.empty((T, N, H), dtype=dt)  # tanh(c_t)
        c_prev = xp.empty((T, N, H), dtype=dt)
        h_prev = xp.empty((T, N, Hout), dtype=dt)
        hs = xp.empty((T, N, Hout), dtype=dt)
        ms = xp.empty((T, N, H), dtype=dt) if w_hr is not None else None
        h, c = h0, c0
        for t in RecurrenceBase._steps(T, reverse):
            h_prev[t] = h
            c_prev[t] = c
            # the gates are built in acts[t], which the cell kernel turns into activations
            a = acts[t]
            xp.add(xs[t], be.matmul(h, w_hh, trans_b=True), out=a)
            m, c, tcs[t] = be.lstm_cell_forward(a, c)
            if w_hr is not None:
                ms[t] = m
                h = be.matmul(m, w_hr, trans_b=True)
            else:
                h = m
            hs[t] = h
        ctx.save_for_backward(acts, tcs, c_prev, h_prev, ms, w_hh, w_hr)
        ctx.tdim, ctx.reverse = tdim, reverse
        out = xp.ascontiguousarray(xp.moveaxis(hs, 0, tdim)) if tdim else hs
        return out, xp.array(h, copy=True), xp.array(c, copy=True)

    @staticmethod
    def backward(ctx, g_hs, g_h, g_c):
        if isinstance(g_hs, Tensor):
            tdim, reverse = ctx.tdim, ctx.reverse

            def ref(xproj, h0, c0, w_hh, w_hr):
                return _ref_lstm_sequence(xproj, h0, c0, w_hh, w_hr, tdim, reverse)

            got = composed_vjp(ref, graph_inputs(ctx, 5), [g_hs, g_h, g_c])
            return tuple(g if n else None for g, n in zip(got, ctx.needs_input_grad))
        acts, tcs, c_prev, h_prev, ms, w_hh, w_hr = ctx.saved_tensors
        be = backend_of(g_hs)
        xp = be.xp
        g_hs = xp.moveaxis(g_hs, ctx.tdim, 0)
        dgates = xp.empty_like(acts)
        dhs = xp.empty_like(h_prev) if w_hr is not None else None
        dh, dc = g_h, g_c
        for t in RecurrenceBase._steps(acts.shape[0], not ctx.reverse):
            dh = dh + g_hs[t]
            if w_hr is not None:
                dhs[t] = dh
                dm = be.matmul(dh, w_hr)
            else:
                dm = dh
            d = dgates[t]
            _, dc = be.lstm_cell_backward(dm, dc, acts[t], tcs[t], c_prev[t], dgates=d)
            dh = be.matmul(d, w_hh)
        d_whh = RecurrenceBase._weight_grad(be, dgates, h_prev)
        d_whr = RecurrenceBase._weight_grad(be, dhs, ms) if w_hr is not None else None
        dx = xp.moveaxis(dgates, 0, ctx.tdim) if ctx.tdim else dgates
        return dx, dh, dc, d_whh, d_whr


class GRUSequence(RecurrenceBase):
    """GRU recurrence: xproj (with b_ih), h0, w_hh, b_hh -> (hs, h_T)."""

    double_backward = True

    @staticmethod
    def forward(ctx, xproj, h0, w_hh, b_hh, tdim=0, reverse=False):
        keep_constants(ctx, xproj, h0, w_hh, b_hh)
        be = backend_of(xproj)
        xp = be.xp
        xs = xp.ascontiguousarray(xp.moveaxis(xproj, tdim, 0))  # the cell kernel reads rows
        T, N, G = xs.shape
        H = G // 3
        dt = xproj.dtype
        rzh = xp.empty((T, N, G), dtype=dt)  # r, z, W_hn h + b_hn
        ns = xp.empty((T, N, H), dtype=dt)
        h_prev = xp.empty((T, N, H), dtype=dt)
        hs = xp.empty((T, N, H), dtype=dt)
        h = h0
        for t in RecurrenceBase._steps(T, reverse):
            h_prev[t] = h
            # W_hh h + b_hh is built in rzh[t]; the cell kernel writes r, z over its first 2H
            hg = rzh[t]
            if b_hh is not None:
                xp.add(be.matmul(h, w_hh, trans_b=True), b_hh, out=hg)
            else:
                hg[...] = be.matmul(h, w_hh, trans_b=True)
            h, ns[t] = be.gru_cell_forward(xs[t], hg, h)
            hs[t] = h
        ctx.save_for_backward(rzh, ns, h_prev, w_hh)
        ctx.tdim, ctx.reverse, ctx.has_bias = tdim, reverse, b_hh is not None
        out = xp.ascontiguousarray(xp.moveaxis(hs, 0, tdim)) if tdim else hs
        return out, xp.array(h, copy=True)

    @staticmethod
    def backward(ctx, g_hs, g_h):
        if isinstance(g_hs, Tensor):
            tdim, reverse = ctx.tdim, ctx.reverse

            def ref(xproj, h0, w_hh, b_hh):
                return _ref_gru_sequence(xproj, h0, w_hh, b_hh, tdim, reverse)

            got = composed_vjp(ref, graph_inputs(ctx, 4), [g_hs, g_h])
            return tuple(g if n else None for g, n in zip(got, ctx.needs_input_grad))
        rzh, ns, h_prev, w_hh = ctx.saved_tensors
        be = backend_of(g_hs)
        xp = be.xp
        g_hs = xp.moveaxis(g_hs, ctx.tdim, 0)
        T, N, H = ns.shape
        dxg = xp.empty((T, N, 3 * H), dtype=ns.dtype)
        dhg = xp.empty((T, N, 3 * H), dtype=ns.dtype)
        dh = g_h
        for t in RecurrenceBase._steps(T, not ctx.reverse):
            dh = dh + g_hs[t]
            _, _, dh_direct = be.gru_cell_backward(dh, rzh[t], ns[t], h_prev[t], dxg=dxg[t],
                                                   dhg=dhg[t])
            dh = be.matmul(dhg[t], w_hh)
            dh += dh_direct
        d_whh = RecurrenceBase._weight_grad(be, dhg, h_prev)
        d_bhh = dhg.sum(axis=(0, 1)) if ctx.has_bias else None
        dx = xp.moveaxis(dxg, 0, ctx.tdim) if ctx.tdim else dxg
        return dx, dh, d_whh, d_bhh


class RNNSequence(RecurrenceBase):
    """Elman recurrence: xproj (with b_ih + b_hh), h0, w_hh -> (hs, h_T); tanh or relu."""

    double_backward = True

    @staticmethod
    def forward(ctx, xproj, h0, w_hh, tdim=0, reverse=False, relu=False):
        keep_constants(ctx, xproj, h0, w_hh)
        be = backend_of(xproj)
        xp = be.xp
        xs = xp.moveaxis(xproj, tdim, 0)
        T, N, H = xs.shape
        h_prev = xp.empty((T, N, H), dtype=xproj.dtype)
        hs = xp.empty((T, N, H), dtype=xproj.dtype)
        h = h0
        for t in RecurrenceBase._steps(T, reverse):
            h_prev[t] = h
            pre = xs[t] + be.matmul(h, w_hh, trans_b=True)
            h = xp.maximum(pre, 0) if relu else xp.tanh(pre)
            hs[t] = h
        ctx.save_for_backward(hs, h_prev, w_hh)
        ctx.tdim, ctx.reverse, ctx.relu = tdim, reverse, relu
        out = xp.ascontiguousarray(xp.moveaxis(hs, 0, tdim)) if tdim else hs
        return out, xp.array(h, copy=True)

    @staticmethod
    def backward(ctx, g_hs, g_h):
        if isinstance(g_hs, Tensor):
            tdim, reverse, relu = ctx.tdim, ctx.reverse, ctx.relu

            def ref(xproj, h0, w_hh):
                return _ref_rnn_sequence(xproj, h0, w_hh, tdim, reverse, relu)

            got = composed_vjp(ref, graph_inputs(ctx, 3), [g_hs, g_h])
            return tuple(g if n else None for g, n in zip(got, ctx.needs_input_grad))
        hs, h_prev, w_hh = ctx.saved_tensors
        be = backend_of(g_hs)
        xp = be.xp
        g_hs = xp.moveaxis(g_hs, ctx.tdim, 0)
        dpre = xp.empty_like(hs)
        dh = g_h
        for t in RecurrenceBase._steps(hs.shape[0], not ctx.reverse):
            dh = dh + g_hs[t]
            h = hs[t]
            dpre[t] = dh * (h > 0) if ctx.relu else dh * (1.0 - h * h)
            dh = be.matmul(dpre[t], w_hh)
        d_whh = RecurrenceBase._weight_grad(be, dpre, h_prev)
        dx = xp.moveaxis(dpre, 0, ctx.tdim) if ctx.tdim else dpre
        return dx, dh, d_whh


# -- references with differentiable ops (the create_graph backward) ---------------------------
def _ref_lstm_cell(gates, c_prev):
    """(o * tanh(c), c) with c = f * c_prev + i * g; gates in order i, f, g, o."""
    i, f, g, o = gates.chunk(4, dim=-1)
    c = f.sigmoid() * c_prev + i.sigmoid() * g.tanh()
    return o.sigmoid() * c.tanh(), c


def _ref_gru_cell(xg, hg, h_prev):
    """(1 - z) * n + z * h_prev, with r, z, n as in :class:`GRUPointwise`."""
    xr, xz, xn = xg.chunk(3, dim=-1)
    hr, hz, hn = hg.chunk(3, dim=-1)
    r, z = (xr + hr).sigmoid(), (xz + hz).sigmoid()
    n = (xn + r * hn).tanh()
    return (1 - z) * n + z * h_prev


def _time_steps(xproj, tdim, reverse):
    xs = xproj.unbind(tdim)
    order = range(len(xs) - 1, -1, -1) if reverse else range(len(xs))
    return xs, order


def _stack_steps(hs, tdim):
    from .shape import stack

    return stack(hs, dim=tdim)


def _ref_lstm_sequence(xproj, h0, c0, w_hh, w_hr, tdim, reverse):
    xs, order = _time_steps(xproj, tdim, reverse)
    h, c, hs = h0, c0, [None] * len(xs)
    for t in order:
        m, c = _ref_lstm_cell(xs[t] + h @ w_hh.mT, c)
        h = m @ w_hr.mT if w_hr is not None else m
        hs[t] = h
    return _stack_steps(hs, tdim), h, c


def _ref_gru_sequence(xproj, h0, w_hh, b_hh, tdim, reverse):
    xs, order = _time_steps(xproj, tdim, reverse)
    h, hs = h0, [None] * len(xs)
    for t in order:
        hg = h @ w_hh.mT
        h = _ref_gru_cell(xs[t], hg + b_hh if b_hh is not None else hg, h)
        hs[t] = h
    return _stack_steps(hs, tdim), h


def _ref_rnn_sequence(xproj, h0, w_hh, tdim, reverse, relu):
    xs, order = _time_steps(xproj, tdim, reverse)
    h, hs = h0, [None] * len(xs)
    for t in order:
        pre = xs[t] + h @ w_hh.mT
        h = pre.relu() if relu else pre.tanh()
        hs[t] = h
    return _stack_steps(hs, tdim), h
