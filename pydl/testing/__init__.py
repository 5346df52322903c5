"""Public testing helpers: numerical gradient checks and tensor comparison.

>>> x = pydl.randn(3, 4, dtype=pydl.float64, requires_grad=True)
>>> pydl.testing.gradcheck(lambda t: (t * t).sum(), [x])
True
"""

from .gradcheck import assert_close, gradcheck, gradgradcheck, numerical_grad

__all__ = ["gradcheck", "gradgradcheck", "numerical_grad", "assert_close"]
