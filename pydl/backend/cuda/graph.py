"""CUDA graphs: record the GPU work of a training step once, then replay it with one launch.

``pydl.cuda.CUDAGraph`` and ``pydl.cuda.graph`` (defined here, re-exported there) are the
user's face; docs/kernels.md ("CUDA graphs") has the walk-through. During a capture nothing
runs: CuPy records every kernel launch and copy issued on a side stream, and ``replay``
launches the recorded graph with one call, so a step costs one launch from Python instead of
hundreds.

A replay repeats each recorded launch with the same arguments at the same addresses. What
that asks of the backend, and how this module provides it:

- Memory. Arrays allocated during the capture come from a memory pool owned by the graph.
  Nothing else allocates from that pool, so the memory a replay writes stays the graph's.
  Arrays made before the capture (parameters, optimizer state, the static inputs) are the
  user's and must outlive the graph; device tables the backend caches are kept by it.
- Host-to-device copies. CuPy stages ``cupy.asarray(numpy_array)`` through a pinned buffer it
  reuses afterwards, which a replay would then read. The backend's own tables therefore go
  through ``upload``, whose pinned buffers the graph keeps. Any other such copy during a
  capture raises: the pinned-memory allocator is swapped for one that refuses, and restored
  to CuPy's default pool afterwards.
- Per-step scalars. The fused optimizer kernels (csrc/cuda/optim.cu) read their scalars from
  a small device array when given one. During the capture each optimizer launch gets such an
  array (a *slot*). Before every replay the graph runs each captured optimizer's ``step()``
  again in *refresh* mode, where the backend writes that step's scalars (a scheduled learning
  rate, Adam's bias corrections) into the slots instead of launching anything. The Python side
  of those optimizers (step counts) is rolled back at the end of the capture, which ran no
  step, so replay k is step k, as in eager mode.
- Refused, with a GraphError: random numbers (each replay would repeat the same draws), reads
  back to the host (``.item()``, printing a tensor), optimizer state created during the
  capture (run one eager step first), and a second capture while one is under way. The
  cross-entropy target check, a host read, is skipped during a capture.

Not yet run on a GPU: written on machines without one. tests/test_cuda_graph.py (marked
``gpu``) holds the checks owed: replays equal eager steps, for SGD and AdamW with a scheduler.
"""

from __future__ import annotations

import contextlib

import numpy as np

from .. import register_optimizer_step_hook

__all__ = ["CUDAGraph", "graph", "GraphError", "GraphedStep"]


class GraphError(RuntimeError):
    """Something in a captured step cannot be recorded in (or replayed from) a CUDA graph."""


_active = None  # the CUDAGraph capturing or refreshing right now, or None
REFRESHED = object()  # scalar_slot's answer in refresh mode: scalars written, launch nothing


def _cupy(check=False):
    from .runtime import cupy, ensure_available

    if check:  # once per capture; the backend's own calls come after its checks
        ensure_available()
    return cupy


# ----------------------------------------------------------------------------- backend hooks
def active() -> bool:
    """True while a graph is recording or refreshing its optimizer scalars."""
    return _active is not None


def capturing() -> bool:
    """True while a capture is recording (the backend then avoids host reads)."""
    return _active is not None and _active._mode == "capture"


def refuse(what: str) -> None:
    """Raise GraphError if a capture is under way: ``what`` cannot be recorded."""
    if capturing():
        raise GraphError(f"{what} cannot be captured in a CUDA graph: {_REASONS.get(what, '')}")


_REASONS = {
    "random numbers": "every replay would repeat the draws of the capture. Capture the model "
                      "in eval mode (no dropout), or keep random ops out of the captured step",
}


def keep(value):
    """Hand ``value`` (a device array the recorded launches read) to the capturing graph."""
    if capturing():
        _active._keep.append(value)
    return value


def upload(host: np.ndarray):
    """``cupy.asarray(host)``, also safe inside a capture (the pinned source stays alive)."""
    cupy = _cupy()
    if not capturing():
        return cupy.asarray(host)
    host = np.ascontiguousarray(host)
    mem = cupy.cuda.pinned_memory.PinnedMemory(max(host.nbytes, 1))
    pinned = np.frombuffer(cupy.cuda.pinned_memory.PinnedMemoryPointer(mem, 0), host.dtype,
                           host.size).reshape(host.shape)
    pinned[...] = host
    out = cupy.empty(host.shape, host.dtype)
    if host.nbytes:
        out.data.copy_from_host_async(pinned.ctypes.data, host.nbytes,
                                      cupy.cuda.get_current_stream())
    _active._keep.extend((mem, pinned, out))
    return out


def scalar_slot(values, dtype, key):
    """Where a fused optimizer launch should read its scalars from.

    Outside graphs: None (the scalars go as kernel arguments). Capturing: a new device array
    of ``len(values)`` (the slot), recorded with ``key`` (the launch's parameter addresses).
    Refreshing: writes ``values`` into the next slot, checks it belongs to the same
    parameters, and returns REFRESHED (the caller launches nothing).
    """
    g = _active
    if g is None:
        return None
    cupy = _cupy()
    dtype = np.dtype(dtype)
    if g._mode == "capture":
        slot = cupy.empty(len(values), dtype)
        g._slots.append((slot, key))
        return slot
    if g._next_slot >= len(g._slots) or g._slots[g._next_slot][1] != key:
        raise GraphError(
            "the optimizer steps differently from the captured step (a parameter lost its "
            "gradient, was added, or changed dtype): capture the step again")
    slot = g._slots[g._next_slot][0]
    g._next_slot += 1
    slot.set(np.asarray(values, dtype), stream=cupy.cuda.get_current_stream())
    return REFRESHED


def optimizer_step(optimizer) -> None:
    """Called by ``Optimizer.step`` before it updates anything (a no-op outside captures).

    Registered below as an optimizer step hook, so the optimizer need not import this module.
    """
    g = _active
    if g is None or g._mode != "capture":
        return
    if id(optimizer) not in g._snapshots:
        g._snapshots[id(optimizer)] = _snapshot(optimizer)
    g._optimizers.append(optimizer)


register_optimizer_step_hook(optimizer_step)


def _snapshot(optimizer):
    """The optimizer's Python-side state: step counters and which state entries exist."""
    scalars = {
        id(p): {k: v for k, v in st.items() if isinstance(v, (int, float, np.number))}
        for p, st in optimizer.state.items()
    }
    keys = {id(p): set(st) for p, st in optimizer.state.items()}
    return optimizer._step_count, scalars, keys


def _restore(optimizer, snapshot) -> str | None:
    """Roll the optimizer back to ``snapshot``; an error message if its state grew.

    State entries made during the capture are dropped: their memory was never written (the
    capture ran nothing), so an eager step must not find them.
    """
    step_count, scalars, keys = snapshot
    now = {id(p): set(st) for p, st in optimizer.state.items()}
    optimizer._step_count = step_count
    for p in list(optimizer.state):
        st = optimizer.state[p]
        if id(p) not in keys:
            del optimizer.state[p]
            continue
        for key in set(st) - keys[id(p)]:
            del st[key]
        st.update(scalars[id(p)])
    if now != keys:
        return (f"{type(optimizer).__name__} created its state (momentum buffers, moment "
                "estimates) during the capture, which would reset it on every replay: run "
                "the step once eagerly before capturing it (a warm-up)")
    return None


# ----------------------------------------------------------------------------- the graph
class CUDAGraph:
    """A recorded sequence of GPU work, replayed with one launch (``torch.cuda.CUDAGraph``).

    >>> g = pydl.cuda.CUDAGraph()
    >>> train_step(x_static, y_static)          # warm-up: one eager step
    >>> with pydl.cuda.graph(g):
    ...     loss = train_step(x_static, y_static)   # recorded, not run
    >>> for x, y in loader:
    ...     x_static.copy_(x); y_static.copy_(y)
    ...     g.replay()                          # one step, on the new batch
    ...     print(loss.item())

    The tensors the recorded step reads (the static inputs, parameters, optimizer state) keep
    their memory: fill them in place (``copy_``) between replays. The tensors it made
    (``loss``, the ``.grad`` of each parameter) are rewritten by every replay. Call
    ``zero_grad()`` inside the recorded step: a step that accumulates into the gradients of
    the warm-up would add to those same old values on every replay.
    """

    def __init__(self):
        self._graph = None
        self._mode = None
        self._reset_state()

    def _reset_state(self):
        self._pool = self._stream = self._exit = None
        self._keep, self._slots, self._optimizers, self._snapshots = [], [], [], {}
        self._next_slot = 0

    # -- capture ---------------------------------------------------------------------------
    def capture_begin(self) -> None:
        global _active
        cupy = _cupy(check=True)
        if _active is not None:
            raise GraphError("a CUDA graph capture is already under way")
        if self._graph is not None:
            raise GraphError("this CUDAGraph already holds a capture: call reset() first")
        self._reset_state()
        self._pool = cupy.cuda.MemoryPool()
        self._stream = cupy.cuda.Stream(non_blocking=True)
        # the recorded work comes after whatever is queued on the current stream
        self._stream.wait_event(cupy.cuda.get_current_stream().record())
        stack = contextlib.ExitStack()
        stack.enter_context(self._stream)
        stack.enter_context(cupy.cuda.using_allocator(self._pool.malloc))
        cupy.cuda.set_pinned_memory_allocator(_refuse_pinned)
        stack.callback(cupy.cuda.set_pinned_memory_allocator,
                       cupy.get_default_pinned_memory_pool().malloc)
        self._exit = stack
        try:
            self._stream.begin_capture()
        except BaseException:
            stack.close()
            raise
        self._mode, _active = "capture", self

    def capture_end(self) -> None:
        if _active is not self or self._mode != "capture":
            raise GraphError("capture_end() without capture_begin() on this graph")
        try:
            recorded = self._stream.end_capture()
        except Exception as exc:  # noqa: BLE001 - a CUDA error invalidated the capture
            self._abort()
            raise _explain(exc) from exc
        try:
            self._finish()
        except GraphError:
            self._reset_state()
            raise
        self._graph = recorded

    def _abort(self) -> None:
        """End a capture that raised: discard what was recorded, put everything back."""
        with contextlib.suppress(Exception):  # fails when the capture already ended
            self._stream.end_capture()
        with contextlib.suppress(GraphError):
            if _active is self:
                self._finish()
        self._reset_state()

    def _finish(self) -> None:
        global _active
        _active, self._mode = None, None
        self._exit.close()
        errors = [_restore(opt, self._snapshots.pop(id(opt)))
                  for opt in self._optimizers if id(opt) in self._snapshots]
        errors = [e for e in errors if e]
        if errors:
            raise GraphError(errors[0])

    # -- replay ----------------------------------------------------------------------------
    def replay(self) -> None:
        """Run the recorded work once more, on the current stream (asynchronous)."""
        global _active
        if self._graph is None:
            raise GraphError("nothing recorded: capture with `with pydl.cuda.graph(g): ...`")
        if _active is not None:
            raise GraphError("replay() inside a capture")
        if self._optimizers:
            _active, self._mode, self._next_slot = self, "refresh", 0
            try:
                for opt in self._optimizers:
                    opt.step()
            finally:
                _active, self._mode = None, None
            if self._next_slot != len(self._slots):
                raise GraphError("the optimizer steps differently from the captured step: "
                                 "capture the step again")
        self._graph.launch()

    def reset(self) -> None:
        """Forget the recording and free its memory (tensors it made become invalid)."""
        if _active is self:
            raise GraphError("reset() during this graph's capture")
        self._graph = None
        self._reset_state()

    def pool(self):
        """The CuPy memory pool holding the arrays made during the capture."""
        return self._pool


def _refuse_pinned(size):
    raise GraphError(
        "a host-to-device copy (e.g. a tensor made from a list or NumPy array, or an index "
        "array on the host) cannot be captured in a CUDA graph: CuPy stages it through a "
        "buffer that a replay would read after it is reused. Make such tensors before the "
        "capture, on the GPU")


def _explain(exc: Exception) -> Exception:
    """A CUDA error raised by a call that capture forbids, as a GraphError saying so."""
    if isinstance(exc, GraphError):
        return exc
    text = str(exc)
    if "captur" in text.lower() or "not permitted" in text.lower():
        return GraphError(
            f"a CUDA call that cannot be captured ran during the capture ({text}). Usually a "
            "read back to the host: .item(), float(t), printing a tensor, .numpy(), or an "
            "operation that checks values on the host")
    return exc


@contextlib.contextmanager
def graph(cuda_graph: CUDAGraph):
    """Record the GPU work of the ``with`` block into ``cuda_graph`` (``torch.cuda.graph``)."""
    cuda_graph.capture_begin()
    try:
        yield cuda_graph
    except BaseException as exc:
        cuda_graph._abort()
        explained = _explain(exc) if isinstance(exc, Exception) else exc
        if explained is exc:
            raise
        raise explained from exc
    cuda_graph.capture_end()


class GraphedStep:
    """``fn(*inputs)`` (a whole training step) recorded once, replayed on each new batch.

    ``inputs`` are CUDA tensors of the shapes every batch will have. Construction runs
    ``warmup`` eager steps on them (real steps: they update the model) and then records one.
    Calling the step copies its arguments into the inputs, replays, and returns ``fn``'s
    outputs: the same tensors every call, holding this step's values.

    >>> step = pydl.cuda.GraphedStep(train_step, x0, y0)
    >>> for x, y in loader:
    ...     loss = step(x, y)
    """

    def __init__(self, fn, *inputs, warmup: int = 1):
        if warmup < 1:
            raise ValueError("GraphedStep needs at least one warm-up step (optimizer state)")
        for i, t in enumerate(inputs):
            if getattr(getattr(t, "device", None), "type", None) != "cuda":
                raise GraphError(f"GraphedStep: input {i} is not a CUDA tensor "
                                 f"({getattr(t, 'device', type(t).__name__)})")
        self.fn, self.inputs = fn, inputs
        for _ in range(warmup):
            fn(*inputs)
        self.graph = CUDAGraph()
        with graph(self.graph):
            self.outputs = fn(*inputs)

    def __call__(self, *args):
        if len(args) != len(self.inputs):
            raise TypeError(f"GraphedStep takes {len(self.inputs)} inputs, got {len(args)}")
        for i, (static, new) in enumerate(zip(self.inputs, args, strict=True)):
            if tuple(new.shape) != tuple(static.shape):
                raise ValueError(f"GraphedStep: input {i} has shape {tuple(new.shape)}; the "
                                 f"step was recorded for {tuple(static.shape)}")
            static.copy_(new)
        self.graph.replay()
        return self.outputs
