"""Old path of the CUDA kernel catalogue, now ``pydl.backend.cuda`` (issue 21), kept as a
re-export because ``tests/conftest.py`` on main imports ``nvrtc_version`` from here; update it
to ``from pydl.backend import cuda`` and delete this file."""

from .cuda import KERNEL_FILES, compile_file, instances, kernel_source  # noqa: F401
from .cuda.runtime import CompileError, nvrtc_version  # noqa: F401
