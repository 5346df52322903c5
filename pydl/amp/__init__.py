"""Mixed precision: ``autocast`` (which dtype each op runs in) and ``GradScaler`` (loss
scaling for float16), with PyTorch's names (``torch.amp``). See docs/mixed_precision.md.

>>> with pydl.autocast("cpu", dtype=pydl.bfloat16):
...     loss = loss_fn(model(x), y)          # matmuls in bfloat16, the loss in float32
>>> loss.backward()                         # gradients in each parameter's dtype
"""

from .autocast import FLOAT32, LOW, autocast, get_autocast_dtype, is_autocast_enabled, op_policy
from .grad_scaler import GradScaler

__all__ = ["autocast", "GradScaler", "is_autocast_enabled", "get_autocast_dtype", "op_policy",
           "LOW", "FLOAT32"]
