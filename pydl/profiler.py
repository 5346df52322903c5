"""A profiler: where a step's time goes, per op and per backend kernel.

>>> import pydl
>>> with pydl.profiler.profile() as prof:
...     loss = model(x).sum(); loss.backward()
>>> print(prof.table(sort_by="self_time"))
>>> prof.export_chrome_trace("trace.json")      # open in chrome://tracing or Perfetto

Three kinds of rows: ``op`` (a Function's forward, from ``Function.apply``), ``backward`` (its
backward, during ``loss.backward()``) and ``kernel`` (a protocol kernel of the backend:
``matmul``, ``conv2d_forward``, ``adam_step``...). Each row gives calls, self time (without the
rows nested in it), total time, self time's share, the implementation that ran (``C++``,
``NumPy reference``, ``CUDA kernel``, ``cuBLAS``, ``NumPy``/``CuPy`` for ops) and, for matmul,
convolutions, softmax and the optimizer steps, the achieved GFLOP/s or GB/s. CUDA rows also
get their device time, measured with CUDA events on pydl's current stream (read once, when the
profile ends), and the rates use it.

Off, the profiler costs nothing: entering a profile swaps ``Function.apply``, each Function's
``backward`` and the backends' kernel entries for timed wrappers, and leaving it puts the
originals back; no code path checks a flag. ``PYDL_KERNEL_LOG=1`` (or a file path) installs the
kernel wrappers for the whole process and writes one line per kernel call (to stderr, or
appended to the file); on CUDA each logged kernel is synchronized to time it.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time

from . import autograd
from .backend import protocol

__all__ = ["profile", "ProfileRow", "kernel_log_enabled"]

_perf = time.perf_counter_ns
_local = threading.local()
_active: list = []  # the profiles recording now (innermost last)
_log_file = None  # where PYDL_KERNEL_LOG writes, when set
_installs = 0  # profiles + the log: the wrappers stay while this is > 0
_saved: list = []  # (owner, attribute or key, original, kind): the kernel wrappers' originals
_saved_ops: list = []  # the same for Function.apply and the backwards (only while profiling)


# ---------------------------------------------------------------------------- work counts
def _nbytes(a) -> int:
    return int(getattr(a, "nbytes", 0) or 0)


def _list_bytes(x) -> int:
    return sum(_nbytes(a) for a in x) if isinstance(x, (list, tuple)) else 0


def _matmul_work(args, out):
    a, trans_a = args[0], (args[2] if len(args) > 2 else False)
    k = a.shape[-2] if trans_a else a.shape[-1]
    return 2 * int(out.size) * int(k), 0


def _conv_work(w_shape, gy_or_out):
    per_output = int(w_shape[1]) * int(w_shape[2]) * int(w_shape[3])
    return 2 * int(gy_or_out.size) * per_output, 0


def _optim_work(args, out):
    # every list read once, params and states written once (grads are read only)
    lists = [a for a in args if isinstance(a, (list, tuple))]
    return 0, 2 * sum(_list_bytes(x) for x in lists) - _list_bytes(lists[1])


#: kernel -> (flops, bytes) from its positional args and its result; rates need one or both
_WORK = {
    "matmul": _matmul_work,
    "conv2d_forward": lambda args, out: _conv_work(args[1].shape, out),
    "conv2d_backward_data": lambda args, out: _conv_work(args[1].shape, args[0]),
    "conv2d_backward_weight": lambda args, out: _conv_work(args[2], args[0]),
    "softmax_forward": lambda args, out: (0, _nbytes(args[0]) + _nbytes(out)),
    "log_softmax_forward": lambda args, out: (0, _nbytes(args[0]) + _nbytes(out)),
    "softmax_backward": lambda args, out: (0, _nbytes(args[0]) * 2 + _nbytes(out)),
    "log_softmax_backward": lambda args, out: (0, _nbytes(args[0]) * 2 + _nbytes(out)),
    "sgd_step": _optim_work,
    "adam_step": _optim_work,
    "rmsprop_step": _optim_work,
    "adagrad_step": _optim_work,
}


# ---------------------------------------------------------------------------- records
class _Record:
    __slots__ = ("name", "kind", "impl", "start", "end", "child", "flops", "bytes", "tid",
                 "cuda", "cuda_ms", "parent")

    def __init__(self, name, kind, impl):
        self.name, self.kind, self.impl = name, kind, impl
        self.child = 0
        self.flops = self.bytes = 0
        self.cuda = None
        self.cuda_ms = None
        self.tid = threading.get_ident()


def _cupy_of(args):
    for a in args:
        if type(a).__module__.startswith("cupy"):
            return sys.modules["cupy"]
        if isinstance(a, (list, tuple)) and a and type(a[0]).__module__.startswith("cupy"):
            return sys.modules["cupy"]
    return None


def _begin(name, kind, impl, args):
    rec = _Record(name, kind, impl)
    stack = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    rec.parent = stack[-1] if stack else None
    stack.append(rec)
    cupy = _cupy_of(args)
    if cupy is not None:
        start = cupy.cuda.Event()
        start.record()
        rec.cuda = (cupy, start, None)
    rec.start = _perf()
    return rec


def _end(rec, args, out):
    if rec.cuda is not None:
        cupy, start, _ = rec.cuda
        stop = cupy.cuda.Event()
        stop.record()
        rec.cuda = (cupy, start, stop)
    rec.end = _perf()
    _local.stack.pop()
    if rec.parent is not None:
        rec.parent.child += rec.end - rec.start
    work = _WORK.get(rec.name) if rec.kind == "kernel" else None
    if work is not None:
        try:
            rec.flops, rec.bytes = work(args, out)
        except (AttributeError, IndexError, TypeError):  # an unusual call: no rate
            pass
    for prof in _active:
        prof._records.append(rec)
    if _log_file is not None and rec.kind == "kernel":
        _log(rec)


def _log(rec):
    if rec.cuda is not None:
        rec.cuda[2].synchronize()
        ms = rec.cuda[0].cuda.get_elapsed_time(rec.cuda[1], rec.cuda[2])
    else:
        ms = (rec.end - rec.start) / 1e6
    rate = _rate_text(rec.flops, rec.bytes, ms)
    _log_file.write(f"pydl kernel {rec.name:24s} {rec.impl:16s} {ms:10.4f} ms {rate}\n")
    _log_file.flush()


def _rate_text(flops, nbytes, ms):
    if not ms or ms <= 0:
        return ""
    if flops:
        return f"{flops / ms / 1e6:.2f} GFLOP/s"
    if nbytes:
        return f"{nbytes / ms / 1e6:.2f} GB/s"
    return ""


# ---------------------------------------------------------------------------- wrappers
def _timed(fn, name, kind, impl):
    def run(*args, **kwargs):
        rec = _begin(name, kind, impl, args)
        out = None
        try:
            out = fn(*args, **kwargs)
            return out
        finally:
            _end(rec, args, out)

    run.__wrapped__ = fn
    run.__name__ = getattr(fn, "__name__", name)
    return run


def _cpu_impl(fn) -> str:
    return "C++" if getattr(fn, "__module__", "").endswith(".ext") else "NumPy reference"


def _install_kernels():
    cpu = sys.modules.get("pydl.backend.cpu")
    if cpu is None:
        from .backend import cpu
    table = cpu.implementations
    for kernel in protocol.KERNELS:
        fn = table[kernel]
        _saved.append((table, kernel, fn, "item"))
        table[kernel] = _timed(fn, kernel, "kernel", _cpu_impl(fn))
    cuda = sys.modules.get("pydl.backend.cuda")
    if cuda is not None:  # only when it is in use: profiling never starts CUDA
        cublas = cuda.get_matmul_backend() == "cupy"
        for kernel in protocol.KERNELS:
            fn = getattr(cuda, kernel)
            impl = "cuBLAS" if (kernel == "matmul" and cublas) else "CUDA kernel"
            _saved.append((cuda, kernel, fn, "attr"))
            setattr(cuda, kernel, _timed(fn, kernel, "kernel", impl))


def _function_classes():
    seen, todo = [], [autograd.Function]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            if sub not in seen:
                seen.append(sub)
                todo.append(sub)
    return seen


def _install_ops():
    original = autograd.Function.__dict__["apply"]
    apply = original.__func__

    def profiled_apply(cls, *args, **kwargs):
        rec = _begin(cls.__name__, "op", _op_impl(args), ())
        out = None
        try:
            out = apply(cls, *args, **kwargs)
            return out
        finally:
            _end(rec, (), out)

    _saved_ops.append((autograd.Function, "apply", original, "attr"))
    autograd.Function.apply = classmethod(profiled_apply)
    for cls in _function_classes():
        backward = cls.__dict__.get("backward")
        if isinstance(backward, staticmethod):
            fn = backward.__func__
            _saved_ops.append((cls, "backward", backward, "attr"))
            cls.backward = staticmethod(_timed(fn, cls.__name__, "backward", "-"))


def _op_impl(args) -> str:
    for a in args:
        data = getattr(a, "data", None)
        if data is not None and hasattr(data, "shape"):
            return "CuPy" if type(data).__module__.startswith("cupy") else "NumPy"
    return "-"


def _install(ops: bool):
    global _installs
    if _installs == 0:
        _install_kernels()
    _installs += 1
    if ops and not _saved_ops:
        _install_ops()


def _restore(saved: list):
    while saved:
        owner, key, original, kind = saved.pop()
        if kind == "item":
            owner[key] = original
        else:
            setattr(owner, key, original)


def _uninstall():
    global _installs
    _installs -= 1
    if not _active:  # no profile open: ops go back (the kernel log needs only the kernels)
        _restore(_saved_ops)
    if _installs == 0:
        _restore(_saved)


def kernel_log_enabled() -> bool:
    """True when ``PYDL_KERNEL_LOG`` made the profiler log every kernel call."""
    return _log_file is not None


def _start_log(target: str):
    global _log_file
    _log_file = sys.stderr if target in ("1", "stderr", "true", "yes") else open(target, "a")
    _install(ops=False)


# ---------------------------------------------------------------------------- results
class ProfileRow:
    """One line of ``profile.table``: totals over the calls of one (kind, name, impl)."""

    __slots__ = ("kind", "name", "impl", "calls", "self_ns", "total_ns", "cuda_ms", "flops",
                 "bytes")

    def __init__(self, kind, name, impl):
        self.kind, self.name, self.impl = kind, name, impl
        self.calls = self.self_ns = self.total_ns = self.flops = self.bytes = 0
        self.cuda_ms = None

    @property
    def self_ms(self) -> float:
        return self.self_ns / 1e6

    @property
    def total_ms(self) -> float:
        return self.total_ns / 1e6

    def rate(self) -> str:
        """Achieved GFLOP/s or GB/s, over the CUDA time where measured, else host time."""
        return _rate_text(self.flops, self.bytes,
                          self.cuda_ms if self.cuda_ms is not None else self.total_ms)


_SORT_KEYS = {
    "self_time": lambda r: -r.self_ns, "self_cpu_time_total": lambda r: -r.self_ns,
    "total_time": lambda r: -r.total_ns, "cpu_time_total": lambda r: -r.total_ns,
    "cuda_time": lambda r: -(r.cuda_ms or 0.0), "cuda_time_total": lambda r: -(r.cuda_ms or 0.0),
    "calls": lambda r: -r.calls, "count": lambda r: -r.calls,
    "name": lambda r: (r.name, r.kind),
}


class profile:  # noqa: N801 - torch.profiler.profile's spelling
    """Record ops, backward ops and kernels while the ``with`` block runs.

    >>> with pydl.profiler.profile() as prof:
    ...     model(x).sum().backward()
    >>> print(prof.table(sort_by="total_time", row_limit=10))
    """

    def __init__(self):
        self._records: list = []
        self._t0 = None

    def __enter__(self):
        _install(ops=True)
        _active.append(self)
        self._t0 = _perf()
        return self

    def __exit__(self, *exc):
        _active.remove(self)
        _uninstall()
        for rec in self._records:
            if rec.cuda is not None and rec.cuda_ms is None:
                cupy, start, stop = rec.cuda
                stop.synchronize()
                rec.cuda_ms = cupy.cuda.get_elapsed_time(start, stop)
                rec.cuda = None  # drop the events
        return False

    @property
    def records(self) -> list:
        return list(self._records)

    def key_averages(self) -> list[ProfileRow]:
        """One ``ProfileRow`` per (kind, name, implementation), in first-seen order."""
        rows: dict = {}
        for rec in self._records:
            key = (rec.kind, rec.name, rec.impl)
            row = rows.get(key)
            if row is None:
                row = rows[key] = ProfileRow(*key)
            row.calls += 1
            row.total_ns += rec.end - rec.start
            row.self_ns += rec.end - rec.start - rec.child
            row.flops += rec.flops
            row.bytes += rec.bytes
            if rec.cuda_ms is not None:
                row.cuda_ms = (row.cuda_ms or 0.0) + rec.cuda_ms
        return list(rows.values())

    def table(self, sort_by: str = "self_time", row_limit: int | None = None) -> str:
        """The rows as a text table, sorted by ``sort_by`` (``self_time``, ``total_time``,
        ``cuda_time``, ``calls`` or ``name``; PyTorch's ``self_cpu_time_total`` etc. work too)."""
        if sort_by not in _SORT_KEYS:
            raise ValueError(f"table: unknown sort_by {sort_by!r}; use one of "
                             f"{', '.join(sorted(_SORT_KEYS))}")
        rows = sorted(self.key_averages(), key=_SORT_KEYS[sort_by])
        if row_limit is not None:
            rows = rows[:row_limit]
        all_self = sum(r.self_ns for r in self.key_averages()) or 1
        has_cuda = any(r.cuda_ms is not None for r in rows)
        header = ["Name", "Kind", "Implementation", "Calls", "Self ms", "Total ms", "Self %"]
        header += ["CUDA ms"] if has_cuda else []
        header += ["Rate"]
        body = []
        for r in rows:
            line = [r.name, r.kind, r.impl, str(r.calls), f"{r.self_ms:.3f}",
                    f"{r.total_ms:.3f}", f"{100 * r.self_ns / all_self:.1f}"]
            if has_cuda:
                line.append("" if r.cuda_ms is None else f"{r.cuda_ms:.3f}")
            line.append(r.rate())
            body.append(line)
        widths = [max(len(x[i]) for x in [header] + body) for i in range(len(header))]
        left = {0, 1, 2}

        def fmt(line):
            return "  ".join(c.ljust(w) if i in left else c.rjust(w)
                             for i, (c, w) in enumerate(zip(line, widths))).rstrip()

        rule = "-" * len(fmt(header))
        wall = (max((r.end for r in self._records), default=self._t0) - self._t0) / 1e6
        lines = [rule, fmt(header), rule] + [fmt(b) for b in body] + [rule]
        lines.append(f"Self time total: {all_self / 1e6:.3f} ms over {len(self._records)} "
                     f"records; wall time in the profile: {wall:.3f} ms")
        return "\n".join(lines)

    def export_chrome_trace(self, path) -> None:
        """Write the records as a Chrome trace (``chrome://tracing``, ui.perfetto.dev).

        Host spans go on their thread's track; CUDA device times go on a ``cuda`` track,
        drawn from each kernel's host start (events give durations, not a shared clock).
        """
        events = []
        for rec in self._records:
            ts = (rec.start - self._t0) / 1e3
            args = {"implementation": rec.impl}
            if rec.flops:
                args["flops"] = rec.flops
            if rec.bytes:
                args["bytes"] = rec.bytes
            events.append({"name": rec.name, "cat": rec.kind, "ph": "X", "ts": ts,
                           "dur": (rec.end - rec.start) / 1e3, "pid": os.getpid(),
                           "tid": rec.tid, "args": args})
            if rec.cuda_ms is not None and rec.kind == "kernel":
                events.append({"name": rec.name, "cat": "cuda", "ph": "X", "ts": ts,
                               "dur": rec.cuda_ms * 1e3, "pid": os.getpid(), "tid": "cuda",
                               "args": args})
        with open(path, "w") as f:
            json.dump({"traceEvents": events, "displayTimeUnit": "ms"}, f)


_env_log = os.environ.get("PYDL_KERNEL_LOG")
if _env_log and _env_log != "0":
    _start_log(_env_log)
