"""DLPack export and import for backend arrays (NumPy on the CPU, CuPy on CUDA).

The device side of ``Tensor.__dlpack__`` and ``pydl.from_dlpack``. The protocol is the one the
array-API standard describes: the consumer asks the producer for ``__dlpack_device__()``, then
calls ``__dlpack__(stream=..., max_version=..., dl_device=..., copy=...)`` and gets a capsule
that shares the producer's memory.

CUDA stream handshake (producer side): ``stream`` names the consumer's stream. ``None`` and
``1`` mean the legacy default stream, ``2`` the per-thread default stream, ``-1`` "do not
synchronize", any other integer a ``cudaStream_t``; ``0`` is ambiguous and refused. Unless it is
``-1`` or pydl's current stream (CuPy's current stream), the producer records an event on its
current stream and makes the consumer's stream wait for it, so the consumer never reads the
array before the work that writes it has finished.
"""

from __future__ import annotations

import numpy as np

#: DLPack device types (dlpack.h, DLDeviceType)
DL_CPU, DL_CUDA, DL_CUDA_HOST = 1, 2, 3
_DEVICE_NAMES = {1: "CPU", 2: "CUDA", 3: "CUDA host", 4: "OpenCL", 7: "Vulkan", 8: "Metal",
                 9: "VPI", 10: "ROCm", 11: "ROCm host", 13: "CUDA managed", 14: "oneAPI"}


def device_name(device_type: int) -> str:
    return _DEVICE_NAMES.get(int(device_type), f"device type {device_type}")


def _is_cupy(array) -> bool:
    return type(array).__module__.startswith("cupy")


def dlpack_device(array) -> tuple[int, int]:
    """``(device_type, device_id)`` of a backend array, as ``__dlpack_device__`` returns it."""
    if _is_cupy(array):
        return (DL_CUDA, array.device.id)
    return (DL_CPU, 0)


def cuda_array_interface(array) -> dict:
    """The ``__cuda_array_interface__`` of a CUDA array (CuPy's); AttributeError elsewhere."""
    if not _is_cupy(array):
        raise AttributeError("__cuda_array_interface__ exists only on CUDA tensors; this one "
                             f"is on the {device_name(dlpack_device(array)[0])}")
    return array.__cuda_array_interface__


def _check_dl_device(array, dl_device, copy):
    """Whether exporting to ``dl_device`` needs a host copy; raise where it cannot be done."""
    if dl_device is None:
        return False
    target = (int(dl_device[0]), int(dl_device[1]))
    here = dlpack_device(array)
    if target == here:
        return False
    if target[0] == DL_CPU and here[0] == DL_CUDA:
        if copy is False:
            raise BufferError(
                "__dlpack__: exporting a CUDA tensor to the CPU needs a copy, but copy=False")
        return True
    raise BufferError(
        f"__dlpack__: cannot export a {device_name(here[0])} tensor to "
        f"{device_name(target[0])} (device {target[1]}); move it with .to() first")


def _consumer_stream(cupy, stream):
    """The CuPy stream object the consumer named (None for "do not synchronize")."""
    if stream == -1:
        return None
    if stream is None or stream == 1:
        return cupy.cuda.Stream.null
    if stream == 2:
        return cupy.cuda.Stream.ptds
    if stream == 0:
        raise ValueError("__dlpack__: stream=0 is ambiguous for CUDA; pass 1 (legacy default "
                         "stream), 2 (per-thread default stream) or a cudaStream_t")
    return cupy.cuda.ExternalStream(int(stream))


def export(array, stream=None, max_version=None, dl_device=None, copy=None):
    """A DLPack capsule for ``array`` (shared memory unless ``copy`` or ``dl_device`` asks)."""
    if stream is not None and not isinstance(stream, int):
        raise TypeError(f"__dlpack__: stream must be an int or None, got {type(stream).__name__}")
    if max_version is not None and (not isinstance(max_version, tuple) or len(max_version) != 2
                                    or not all(isinstance(v, int) for v in max_version)):
        raise TypeError(f"__dlpack__: max_version must be a (major, minor) pair, got "
                        f"{max_version!r}")
    if copy not in (None, True, False):
        raise TypeError(f"__dlpack__: copy must be True, False or None, got {copy!r}")
    to_host = _check_dl_device(array, dl_device, copy)
    if not _is_cupy(array):
        if stream is not None:
            raise BufferError(f"__dlpack__: a CPU tensor takes stream=None, got {stream}")
        return _export_numpy(array, max_version, copy)
    import cupy

    if to_host:
        # the copy to the host synchronizes with pydl's stream; the consumer is on the CPU
        return _export_numpy(cupy.asnumpy(array), max_version, None)
    consumer = _consumer_stream(cupy, stream)
    producer = cupy.cuda.get_current_stream()
    if copy:
        array = array.copy()  # enqueued on the producer's stream, so the wait below covers it
    if consumer is not None and consumer.ptr != producer.ptr:
        consumer.wait_event(producer.record())
    # CuPy's own export, told not to synchronize again (stream=-1: we did, above)
    try:
        return array.__dlpack__(stream=-1, max_version=max_version)
    except TypeError:  # CuPy 13: no max_version; its legacy export never synchronizes
        return array.toDlpack()


def _export_numpy(array: np.ndarray, max_version, copy):
    if copy:
        array = array.copy()
    try:
        return array.__dlpack__(max_version=max_version)
    except TypeError:  # NumPy < 2.1 knows only the legacy, unversioned capsule
        return array.__dlpack__()


def import_array(obj, copy=None):
    """The backend array (NumPy or CuPy) sharing memory with a DLPack producer ``obj``."""
    if not hasattr(obj, "__dlpack__") or not hasattr(obj, "__dlpack_device__"):
        if type(obj).__name__ == "PyCapsule":
            raise TypeError("from_dlpack: pass the array object itself (any object with "
                            "__dlpack__ and __dlpack_device__), not a DLPack capsule")
        raise TypeError(f"from_dlpack: {type(obj).__name__} does not implement the DLPack "
                        "protocol (__dlpack__ and __dlpack_device__)")
    if copy not in (None, True, False):
        raise TypeError(f"from_dlpack: copy must be True, False or None, got {copy!r}")
    device_type, device_id = obj.__dlpack_device__()
    if device_type in (DL_CPU, DL_CUDA_HOST):
        if copy is None:
            array = np.from_dlpack(obj)
        else:
            array = np.from_dlpack(obj, copy=copy)
    elif device_type == DL_CUDA:
        from . import get_backend

        cupy = get_backend(f"cuda:{device_id}").xp
        with cupy.cuda.Device(device_id):
            # CuPy asks the producer for a capsule on CuPy's current stream (pydl's stream),
            # which is the handshake above seen from the consumer's side
            array = cupy.from_dlpack(obj)
            if copy:
                array = array.copy()
    else:
        raise BufferError(f"from_dlpack: pydl has no {device_name(device_type)} device "
                          f"(DLPack device type {device_type}); move the array to the CPU or "
                          "to CUDA first")
    return array
