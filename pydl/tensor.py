"""The Tensor: an n-dimensional array on a device, with an optional gradient.

A Tensor wraps one backend array (``numpy.ndarray`` on the CPU, ``cupy.ndarray`` on a GPU) in
``.data``. Operators and methods call the functions in ``pydl.functions``, which build the
autograd graph (see ``pydl.autograd``). Creation functions (``pydl.tensor``, ``zeros``,
``randn``...) live in ``pydl.creation``.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np

from . import autograd
from .backend import Device, as_device, backend_of, device_of

__all__ = ["Tensor", "float32", "float64", "int32", "int64", "bool_", "float16", "bfloat16"]

float16 = np.dtype("float16")
#: bfloat16 is ml_dtypes' NumPy dtype (8 exponent bits, 7 mantissa bits), on both devices.
#: Its ``kind`` is "V", not "f": ask ``is_floating_dtype`` whether a dtype is a float.
bfloat16 = np.dtype(ml_dtypes.bfloat16)
float32 = np.dtype("float32")
float64 = np.dtype("float64")
int32 = np.dtype("int32")
int64 = np.dtype("int64")
bool_ = np.dtype("bool")

_DTYPE_NAMES = {
    "float16": float16, "half": float16,
    "bfloat16": bfloat16,
    "float32": float32, "float": float32,
    "float64": float64, "double": float64,
    "int32": int32, "int": int32,
    "int64": int64, "long": int64,
    "bool": bool_,
}
_SUPPORTED = (float16, bfloat16, float32, float64, int32, int64, bool_)
#: the float dtypes narrower than float32, computed with float32 accumulation
LOW_PRECISION = (float16, bfloat16)


def is_floating_dtype(dtype) -> bool:
    """True for float16, bfloat16, float32 and float64 (bfloat16's NumPy kind is "V")."""
    return dtype.kind == "f" or dtype == bfloat16


def as_dtype(dtype) -> np.dtype:
    """Normalize a dtype given as a name, a NumPy dtype, a Python type or a pydl dtype."""
    if dtype is None:
        return None
    if isinstance(dtype, str):
        key = dtype.replace("pydl.", "")
        if key in _DTYPE_NAMES:
            return _DTYPE_NAMES[key]
    if dtype is float:
        return float32
    if dtype is int:
        return int64
    if dtype is bool:
        return bool_
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"unknown dtype {dtype!r}") from None
    if dt not in _SUPPORTED:
        raise TypeError(
            f"dtype {dt} is not supported: use float16, bfloat16, float32, float64, int32, "
            "int64 or bool"
        )
    return dt


def dtype_name(dtype) -> str:
    return "pydl." + ("bool" if np.dtype(dtype) == bool_ else str(np.dtype(dtype)))


_functions = None


def _F():
    """``pydl.functions`` (imported on first use: it imports this module)."""
    global _functions
    if _functions is None:
        from . import functions

        _functions = functions
    return _functions


class Tensor:
    """An n-dimensional array with reverse-mode autograd.

    >>> x = pydl.tensor([1.0, 2.0, 3.0], requires_grad=True)
    >>> (x * x).sum().backward()
    >>> x.grad
    tensor([2., 4., 6.])
    """

    __slots__ = (
        "data", "grad", "_requires_grad", "_ctx", "_out_index", "_version", "_view", "name",
        "__weakref__",
    )
    __array_priority__ = 1000  # numpy scalars on the left defer to our operators

    def __init__(self, data, dtype=None, device=None, requires_grad=False):
        from .creation import _to_array

        array = _to_array(data, dtype=dtype, device=device)
        self._init(array, requires_grad)

    def _init(self, array, requires_grad):
        self.data = array
        self.grad = None
        self._ctx = None
        self._out_index = 0
        self._version = [0]  # shared with views: one in-place write bumps them all
        self._view = None  # (root, fn, root's node) when this tensor is a view: functions/views.py
        self.name = None
        self._requires_grad = False
        if requires_grad:
            self.requires_grad = True

    @classmethod
    def _make(cls, array, requires_grad=False):
        t = cls.__new__(cls)
        t.data = array
        t.grad = None
        t._ctx = None
        t._out_index = 0
        t._version = [0]
        t._view = None
        t.name = None
        t._requires_grad = requires_grad
        return t

    @classmethod
    def _make_leaf(cls, array, requires_grad=False):
        t = cls._make(array, False)
        if requires_grad:
            t.requires_grad = True
        return t

    # -- attributes ----------------------------------------------------------------------
    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, flag: bool):
        if flag and not is_floating_dtype(self.data.dtype):
            raise RuntimeError(
                f"only floating-point tensors can require gradients, not {dtype_name(self.dtype)}"
            )
        if not flag and self._ctx is not None:
            raise RuntimeError(
                "requires_grad can only be turned off on leaf tensors; use .detach() instead"
            )
        self._requires_grad = bool(flag)

    def requires_grad_(self, flag: bool = True) -> Tensor:
        self.requires_grad = flag
        return self

    @property
    def is_leaf(self) -> bool:
        return self._ctx is None

    @property
    def grad_fn(self):
        return None if self._ctx is None else self._ctx._fn

    @property
    def shape(self) -> tuple:
        return tuple(self.data.shape)

    def size(self, dim=None):
        return self.shape if dim is None else self.shape[dim]

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def device(self) -> Device:
        return device_of(self.data)

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def ndim(self) -> int:
        return self.data.ndim

    def dim(self) -> int:
        return self.data.ndim

    def numel(self) -> int:
        return int(self.data.size)

    def element_size(self) -> int:
        return self.data.dtype.itemsize

    @property
    def T(self) -> Tensor:
        return _F().permute(self, tuple(reversed(range(self.ndim))))

    @property
    def mT(self) -> Tensor:
        return _F().transpose(self, -2, -1)

    def is_floating_point(self) -> bool:
        return is_floating_dtype(self.data.dtype)

    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    # -- conversion ----------------------------------------------------------------------
    def numpy(self) -> np.ndarray:
        """The data as a NumPy array (a copy from the GPU; shared memory on the CPU)."""
        if self.requires_grad:
            raise RuntimeError(
                "can't call numpy() on a tensor that requires grad; use .detach().numpy()"
            )
        return backend_of(self.data).to_numpy(self.data)

    def item(self):
        if self.data.size != 1:
            raise ValueError(
                f"item() needs a tensor with one element, this one has shape {self.shape}"
            )
        return backend_of(self.data).to_numpy(self.data).reshape(()).item()

    def tolist(self):
        return backend_of(self.data).to_numpy(self.data).tolist()

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __bool__(self):
        if self.data.size != 1:
            raise RuntimeError(
                f"the truth value of a tensor with {self.data.size} elements is ambiguous; "
                "use .any() or .all()"
            )
        return bool(self.item())

    def __index__(self):
        if self.data.dtype.kind not in "iu" or self.data.size != 1:
            raise TypeError("only integer tensors of a single element can be used as an index")
        return int(self.item())

    def __array__(self, dtype=None, copy=None):
        arr = backend_of(self.data).to_numpy(self.data)
        return arr if dtype is None else arr.astype(dtype)

    # -- DLPack / CUDA array interface (pydl/backend/dlpack.py) -------------------------
    def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):
        """A DLPack capsule sharing this tensor's memory (the array-API protocol).

        ``stream`` is the consumer's CUDA stream (the producer makes it wait for pydl's
        current stream); ``max_version``, ``dl_device`` and ``copy`` as the standard says. As
        in PyTorch, a tensor that requires grad is refused: export ``t.detach()``, whose data
        is the same memory. Writes through the consumer are not seen by autograd's in-place
        checks. Use ``numpy.from_dlpack(t)``, ``torch.from_dlpack(t)``, ``cupy.from_dlpack(t)``.
        """
        self._check_exportable("__dlpack__", BufferError)
        from .backend import dlpack

        return dlpack.export(self.data, stream, max_version, dl_device, copy)

    def __dlpack_device__(self) -> tuple:
        """``(device_type, device_id)``: ``(1, 0)`` on the CPU, ``(2, index)`` on CUDA."""
        from .backend import dlpack

        return dlpack.dlpack_device(self.data)

    @property
    def __cuda_array_interface__(self) -> dict:
        """Numba's CUDA array interface (version 3) of a CUDA tensor's memory, shared; a CPU
        tensor has none (``hasattr`` is False)."""
        from .backend import dlpack

        interface = dlpack.cuda_array_interface(self.data)  # AttributeError first, for hasattr
        self._check_exportable("__cuda_array_interface__", RuntimeError)
        return interface

    def _check_exportable(self, what, error):
        # PyTorch's rule and error types: BufferError from __dlpack__, RuntimeError from CAI
        if self._requires_grad:
            raise error(f"{what}: can't export a tensor that requires grad (autograd would "
                        "not see writes through the other library); export tensor.detach(), "
                        "which shares the memory")

    def to(self, *args, dtype=None, device=None, copy=False) -> Tensor:
        """Move to a device and/or convert dtype: ``t.to("cuda")``, ``t.to(pydl.float64)``."""
        for a in args:
            if isinstance(a, Tensor):
                device, dtype = a.device, a.dtype
            elif isinstance(a, Device) or (
                isinstance(a, str) and a.split(":")[0] in ("cpu", "cuda")
            ):
                device = a
            else:
                dtype = a
        out = self
        if dtype is not None:
            dt = as_dtype(dtype)
            if dt != out.dtype:
                out = _F().cast(out, dt)
        if device is not None:
            dev = as_device(device)
            if dev != out.device:
                out = _F().to_device(out, dev)
        if copy and out is self:
            out = self.clone()
        return out

    def cpu(self) -> Tensor:
        return self.to("cpu")

    def cuda(self, device=None) -> Tensor:
        if device is None:
            return self.to("cuda")
        return self.to(as_device(f"cuda:{device}" if isinstance(device, int) else device))

    def float(self) -> Tensor:
        return self.to(float32)

    def double(self) -> Tensor:
        return self.to(float64)

    def half(self) -> Tensor:
        """This tensor in float16 (values beyond +-65504 become +-inf, as IEEE rounding says)."""
        return self.to(float16)

    def bfloat16(self) -> Tensor:
        """This tensor in bfloat16 (float32's range, 8 significant bits)."""
        return self.to(bfloat16)

    def long(self) -> Tensor:
        return self.to(int64)

    def int(self) -> Tensor:
        return self.to(int32)

    def bool(self) -> Tensor:
        return self.to(bool_)

    def type(self, dtype) -> Tensor:
        return self.to(as_dtype(dtype))

    def detach(self) -> Tensor:
        """A tensor sharing this data, cut from the graph."""
        t = Tensor._make(self.data, False)
        t._version = self._version
        return t

    def detach_(self) -> Tensor:
        self._ctx = None
        self._requires_grad = False
        return self

    def clone(self) -> Tensor:
        return _F().clone(self)

    def contiguous(self) -> Tensor:
        return _F().contiguous(self)

    def is_contiguous(self) -> bool:
        return bool(self.data.flags.c_contiguous)

    # -- autograd ------------------------------------------------------------------------
    def backward(self, gradient=None, retain_graph=None, create_graph=False) -> None:
        """Accumulate the gradient of this tensor into the ``.grad`` of every leaf.

        ``create_graph=True`` records the backward pass, so ``.grad`` can be differentiated
        again; ``retain_graph`` defaults to ``create_graph``.
        """
        autograd.backward([self], None if gradient is None else [gradient], retain_graph,
                          create_graph)

    def register_hook(self, hook):
        """Call ``hook(grad)`` each time the gradient for this tensor is computed; a
        non-None return replaces the gradient. Returns a handle with ``remove()``."""
        from .autograd.hooks import register_hook

        return register_hook(self, hook)

    def register_post_accumulate_grad_hook(self, hook):
        """On a leaf: call ``hook(tensor)`` after backward has updated ``tensor.grad``."""
        from .autograd.hooks import register_post_accumulate_grad_hook

        return register_post_accumulate_grad_hook(self, hook)

    def retain_grad(self) -> None:
        """Keep ``.grad`` for this non-leaf tensor after backward."""
        if self._ctx is None:
            return
        if self._ctx._retained is None:
            self._ctx._retained = {}
        self._ctx._retained[self._out_index] = self

    def zero_(self) -> Tensor:
        return self.fill_(0)

    # -- in-place ------------------------------------------------------------------------
    # Three paths. _inplace: a raw write with no graph (under no_grad, or nothing requires
    # grad). _rebase: an in-place op recorded by autograd (self gets the op's node).
    # _rebase_view: the same for a view, which also re-points its root's graph (views.py).
    def _bump(self):
        self._version[0] += 1

    def _check_writable(self):
        for n, stride in zip(self.data.shape, self.data.strides):
            if stride == 0 and n > 1:
                raise RuntimeError(
                    f"in-place write into a tensor of shape {self.shape} whose elements share "
                    "memory (an expand()/broadcast_to() view): one write would land in several "
                    "elements. Write into a .clone() instead."
                )
        if not getattr(self.data.flags, "writeable", True):  # (CuPy arrays have no such flag)
            raise RuntimeError(
                f"in-place write into a read-only tensor of shape {self.shape} (e.g. the "
                "diagonal() of an expand()/broadcast_to() view, or memory NumPy marks "
                "read-only). Write into a .clone() instead."
            )

    def _needs_graph(self, args=()):
        """Whether an in-place op on self (with ``args``) must be recorded by autograd."""
        if not autograd.is_grad_enabled():
            return False
        if self._requires_grad or any(isinstance(a, Tensor) and a._requires_grad for a in args):
            return True
        return self._view is not None and self._view[0]._requires_grad

    def _check_not_leaf(self):
        if self._ctx is None and self._requires_grad:
            raise RuntimeError(
                "a leaf tensor that requires grad is used in an in-place operation; wrap it in "
                "`with pydl.no_grad():` (as optimizers do) or work on a clone"
            )
        if self._view is not None:
            root = self._view[0]
            if root._ctx is None and root._requires_grad:
                raise RuntimeError(
                    f"a view of a leaf tensor that requires grad (shape {root.shape}) is used "
                    "in an in-place operation; wrap it in `with pydl.no_grad():` or work on a "
                    "clone of the leaf"
                )

    def _check_no_alias(self, args):
        """Refuse ``x.op_(y)`` where y reads memory that the write to x changes."""
        for a in args:
            if not isinstance(a, Tensor) or a._version is not self._version or a is self:
                continue
            xp = backend_of(self.data).xp
            overlap = xp.may_share_memory(self.data, a.data)
            if overlap and xp is np:
                try:
                    overlap = np.shares_memory(self.data, a.data, max_work=10**6)
                except Exception:  # noqa: BLE001 - TooHardError: too costly to decide
                    overlap = True
            if overlap:
                raise RuntimeError(
                    f"in-place operation on a tensor of shape {self.shape} reads an argument of "
                    f"shape {a.shape} that overlaps the memory being written; pass a .clone() "
                    "of the argument"
                )

    def _inplace(self, write):
        """Run ``write(data, xp)`` on the data with no graph (grad mode off, or no graph)."""
        self._check_writable()
        if self._needs_graph():
            self._check_not_leaf()
            raise RuntimeError(
                "this in-place operation is not differentiable and the tensor is part of an "
                "autograd graph; run it under `with pydl.no_grad():` or on a .detach()ed tensor"
            )
        write(self.data, backend_of(self.data).xp)
        self._bump()
        return self

    def _sync_view(self):
        """If this is a view whose root was written in place since, rebuild its graph."""
        if self._view is not None and self._view[0]._ctx is not self._view[2]:
            self._refresh_view()

    def _refresh_view(self):
        """Rebuild this view's graph as ``ViewOf(root)`` after its root was written in place."""
        from .functions.views import ViewOf

        root, fn, _ = self._view
        if not autograd.is_grad_enabled():
            return
        if root._requires_grad:
            v = ViewOf.apply(root, fn)
            self._ctx, self._out_index, self._requires_grad = v._ctx, 0, True
        self._view = (root, fn, root._ctx)

    def _rebase(self, fn, *args):
        """In-place op with autograd: compute ``fn(self, *args)`` and make self its output."""
        self._check_writable()
        if not self._needs_graph(args):
            with autograd.no_grad():
                out = fn(self, *args)
            self._write_result(out)
            return self
        self._check_not_leaf()
        self._check_no_alias(args)
        self._sync_view()
        # the old value gets its own buffer and version counter: the write below must not
        # change what the new node computed from (ops that saved self itself still see the
        # version bump and raise at backward)
        old = Tensor._make(self.data.copy(), self._requires_grad)
        old._ctx, old._out_index = self._ctx, self._out_index
        out = fn(old, *(old if a is self else a for a in args))  # x.mul_(x) reads the old x
        self._write_result(out)
        if out._ctx is not None:
            # the op read its arguments before the write; those that share our version counter
            # (other views of the same memory, checked not to overlap) are still what it saw
            out._ctx._saved_versions = tuple(
                (box, box[0] if box is self._version else v, shape)
                for box, v, shape in out._ctx._saved_versions
            )
        if self._view is None:
            self._ctx, self._out_index = out._ctx, out._out_index
            self._requires_grad = out._requires_grad
            return self
        # a view: its root now holds the new values in the view's region
        from .functions.views import CopySlices, ViewOf

        root, view_fn, _ = self._view
        r = CopySlices.apply(root, out, view_fn)
        root._ctx, root._out_index, root._requires_grad = r._ctx, 0, r._requires_grad
        v = ViewOf.apply(root, view_fn)
        self._ctx, self._out_index, self._requires_grad = v._ctx, 0, v._requires_grad
        self._view = (root, view_fn, root._ctx)
        return self

    def _write_result(self, out):
        from .dtypes import category

        if out.dtype != self.dtype and category(out.dtype) > category(self.dtype):
            # PyTorch's rule for in-place ops: the promoted result must not need a higher
            # category than the tensor written into (int += 2.5 raises; float32 += float64 is
            # fine)
            raise RuntimeError(
                f"in-place result type {dtype_name(out.dtype)} can't be cast to the tensor's "
                f"type {dtype_name(self.dtype)}"
            )
        if out.shape != self.shape:
            raise RuntimeError(
                f"in-place result of shape {out.shape} cannot be written into a tensor of "
                f"shape {self.shape}"
            )
        self.data[...] = out.data.astype(self.dtype, copy=False)
        self._bump()

    def _overwrite(self, make):
        """Replace every element with ``make()`` (an array); recorded when there's a graph."""
        if self._needs_graph():
            xp = backend_of(self.data).xp
            keep = Tensor._make(xp.zeros(self.shape, dtype=bool))
            return self._rebase(lambda t: _F().where(keep, t, Tensor._make(make())))
        return self._inplace(lambda d, xp: d.__setitem__(..., make()))

    def add_(self, other, alpha=1):
        if alpha != 1:
            other = other * alpha
        return self._rebase(_F().add, other)

    def sub_(self, other, alpha=1):
        if alpha != 1:
            other = other * alpha
        return self._rebase(_F().sub, other)

    def mul_(self, other):
        return self._rebase(_F().mul, other)

    def div_(self, other):
        return self._rebase(_F().div, other)

    def pow_(self, other):
        return self._rebase(_F().pow, other)

    def clamp_(self, min=None, max=None):  # noqa: A002
        return self._rebase(lambda t: _F().clamp(t, min, max))

    def fill_(self, value):
        v = value.item() if isinstance(value, Tensor) else value
        if self._needs_graph():
            return self._overwrite(lambda: backend_of(self.data).xp.full(self.shape, v, self.dtype))
        return self._inplace(lambda d, xp: d.fill(v) if d.ndim else d.__setitem__((), v))

    def copy_(self, src):
        src = src if isinstance(src, Tensor) else Tensor(src, dtype=self.dtype, device=self.device)
        try:
            fits = np.broadcast_shapes(src.shape, self.shape) == tuple(self.shape)
        except ValueError:
            fits = False
        if not fits:
            raise RuntimeError(f"copy_: a source of shape {tuple(src.shape)} cannot be "
                               f"broadcast to the tensor's shape {tuple(self.shape)}")
        if src.device != self.device:
            src = src.to(self.device)
        # where(False, t, s): self's old values get gradient 0 and, unlike s + 0 * t, cannot
        # leak into the result (0 * inf and 0 * nan are nan)
        keep = Tensor._make(backend_of(self.data).xp.zeros((), dtype=bool))
        return self._rebase(
            lambda t, s: _F().where(keep, t, _F().broadcast_to(s, t.shape).to(t.dtype)), src)

    def uniform_(self, a=0.0, b=1.0):
        from .creation import rand

        r = rand(*self.shape, dtype=self.dtype, device=self.device)
        return self._overwrite(lambda: r.data * (b - a) + a)

    def normal_(self, mean=0.0, std=1.0):
        from .creation import randn

        r = randn(*self.shape, dtype=self.dtype, device=self.device)
        return self._overwrite(lambda: r.data * std + mean)

    def __iadd__(self, other):
        return self.add_(other)

    def __isub__(self, other):
        return self.sub_(other)

    def __imul__(self, other):
        return self.mul_(other)

    def __itruediv__(self, other):
        return self.div_(other)

    def __setitem__(self, key, value):
        if not self._needs_graph((value,)):  # no graph to keep: write straight into the buffer
            self._check_writable()
            _F().indexing._write_inplace(self, key, value)
            return
        self._rebase(lambda t, v: _F().index_put(t, key, v), value)

    # -- operators -----------------------------------------------------------------------
    def __add__(self, other):
        return _F().add(self, other)

    def __radd__(self, other):
        return _F().add(other, self)

    def __sub__(self, other):
        return _F().sub(self, other)

    def __rsub__(self, other):
        return _F().sub(other, self)

    def __mul__(self, other):
        return _F().mul(self, other)

    def __rmul__(self, other):
        return _F().mul(other, self)

    def __truediv__(self, other):
        return _F().div(self, other)

    def __rtruediv__(self, other):
        return _F().div(other, self)

    def __floordiv__(self, other):
        return _F().floor_divide(self, other)

    def __rfloordiv__(self, other):
        return _F().floor_divide(other, self)

    def __mod__(self, other):
        return _F().remainder(self, other)

    def __rmod__(self, other):
        return _F().remainder(other, self)

    def __pow__(self, other):
        return _F().pow(self, other)

    def __rpow__(self, other):
        return _F().pow(other, self)

    def __matmul__(self, other):
        return _F().matmul(self, other)

    def __rmatmul__(self, other):
        return _F().matmul(other, self)

    def __neg__(self):
        return _F().neg(self)

    def __pos__(self):
        return self

    def __abs__(self):
        return _F().abs(self)

    def __lt__(self, other):
        return _F().lt(self, other)

    def __le__(self, other):
        return _F().le(self, other)

    def __gt__(self, other):
        return _F().gt(self, other)

    def __ge__(self, other):
        return _F().ge(self, other)

    def __eq__(self, other):  # elementwise, as in PyTorch and NumPy
        return _F().eq(self, other)

    def __ne__(self, other):
        return _F().ne(self, other)

    def __invert__(self):
        return _F().logical_not(self)

    def __and__(self, other):
        return _F().logical_and(self, other)

    def __or__(self, other):
        return _F().logical_or(self, other)

    def __xor__(self, other):
        return _F().logical_xor(self, other)

    __hash__ = object.__hash__

    def __getitem__(self, key):
        return _F().getitem(self, key)

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self.shape[0]))

    # -- printing ------------------------------------------------------------------------
    def __repr__(self):
        arr = backend_of(self.data).to_numpy(self.data)
        shown = arr.astype(float32) if arr.dtype == bfloat16 else arr  # NumPy prints its floats
        body = np.array2string(
            shown, separator=", ", prefix="tensor(", threshold=1000, edgeitems=3,
            precision=4, floatmode="maxprec_equal" if shown.dtype.kind == "f" else "maxprec",
        )
        extras = []
        if self.device.type != "cpu":
            extras.append(f"device='{self.device}'")
        if arr.dtype not in (float32, int64, bool_) or arr.size == 0:
            extras.append(f"dtype={dtype_name(arr.dtype)}")
        if arr.size == 0:
            body = "[]" if arr.ndim == 1 else f"[], size={tuple(arr.shape)}"
        if self._ctx is not None:
            extras.append(f"grad_fn=<{self._ctx._fn.__name__}Backward>")
        elif self.requires_grad:
            extras.append("requires_grad=True")
        return "tensor(" + body + "".join(", " + e for e in extras) + ")"

    __str__ = __repr__


autograd._Tensor = Tensor  # Function.apply checks isinstance without importing (cycle)

#: Tensor methods that are the pydl function of the same name with the tensor first:
#: ``x.exp()`` is ``pydl.exp(x)``, ``x.sum(dim=1)`` is ``pydl.sum(x, dim=1)``. The functions
#: live in pydl/functions/<family>.py (they import this module), so pydl/functions/__init__.py
#: sets these attributes on Tensor once they exist; methods defined in the class above win.
FUNCTION_METHODS = (
    # arith.py
    "add", "sub", "mul", "div", "neg", "pow",
    # indexing.py
    "gather", "scatter", "scatter_add", "index_select", "take_along_dim", "masked_fill",
    "masked_fill_", "masked_select", "index_put", "index_put_",
    # matmul.py
    "matmul", "mm", "bmm", "dot", "outer", "inner",
    # reduce.py
    "sum", "mean", "max", "min", "amax", "amin", "var", "std", "logsumexp", "argmax",
    "argmin", "prod", "all", "any", "cumsum", "norm",
    # shape.py
    "reshape", "view", "view_as", "reshape_as", "flatten", "unflatten", "transpose",
    "swapaxes", "swapdims", "t", "permute", "movedim", "moveaxis", "squeeze", "unsqueeze",
    "expand", "expand_as", "broadcast_to", "split", "chunk", "unbind", "narrow", "flip",
    "repeat", "tile",
    # softmax.py
    "softmax", "log_softmax",
    # unary.py
    "exp", "log", "log1p", "sqrt", "rsqrt", "reciprocal", "square", "abs", "sign", "sin",
    "cos", "tanh", "sigmoid", "erf", "relu", "clamp", "clip", "maximum", "minimum", "lt",
    "le", "gt", "ge", "eq", "ne", "logical_not", "logical_and", "logical_or", "logical_xor",
    "isnan", "isinf", "isfinite",
    # elementwise_extra.py
    "tan", "sinh", "cosh", "asin", "acos", "atan", "arcsin", "arccos", "arctan", "log2",
    "exp2", "log10", "floor", "ceil", "round", "trunc", "fix", "lerp", "logaddexp", "copysign",
    "fmod", "remainder", "floor_divide", "isclose",
    # sorting.py
    "sort", "argsort", "msort", "topk", "cumprod", "cummax", "cummin", "logcumsumexp",
    # scatter_reduce.py
    "scatter_reduce",
    # structure.py
    "triu", "tril", "roll", "diagonal", "diag", "repeat_interleave", "unfold", "nonzero",
)
