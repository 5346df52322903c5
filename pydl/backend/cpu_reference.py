"""NumPy reference kernels of the protocol (see ``pydl.backend.base``): readable, the oracle.

Every kernel here is the plain NumPy statement of what the protocol entry computes. The C++
versions (``cpu_ext.py``) and the CUDA versions (``cuda.py``) are tested against these.
"""

from __future__ import annotations

import numpy as np


def matmul(a, b, trans_a=False, trans_b=False):
    """op(a) @ op(b) for 2-D or equally batched 3-D arrays."""
    if trans_a:
        a = np.swapaxes(a, -1, -2)
    if trans_b:
        b = np.swapaxes(b, -1, -2)
    return np.matmul(a, b)
