"""pydl.autograd.functional against torch.autograd.functional (float64)."""

import numpy as np
import pytest

import pydl
from pydl.autograd import functional as AF
from pydl.testing import assert_close

torch = pytest.importorskip("torch")
TF = torch.autograd.functional


def _f(lib):
    def f(x, w):  # a small nonlinear map R^(3) x R^(2,3) -> R^(2)
        return (w @ x).tanh() * x.sum()
    return f


def _scalar(lib):
    def s(x, w):
        return ((w @ x).sin() ** 2).sum() + (x ** 3).sum()
    return s


def _inputs(device):
    rng = np.random.default_rng(5)
    xa, wa = rng.standard_normal(3), rng.standard_normal((2, 3))
    ours = (pydl.tensor(xa, dtype=pydl.float64, device=device),
            pydl.tensor(wa, dtype=pydl.float64, device=device))
    theirs = (torch.tensor(xa), torch.tensor(wa))
    return ours, theirs, rng


def _close(a, b):
    if isinstance(b, (tuple, list)):
        assert len(a) == len(b)
        for p, q in zip(a, b):
            _close(p, q)
        return
    assert_close(np.asarray(a.detach()), b.detach().numpy(), rtol=1e-10, atol=1e-12)


def test_vjp_jvp(device):
    ours, theirs, rng = _inputs(device)
    v = rng.standard_normal(2)
    _close(AF.vjp(_f(pydl), ours, pydl.tensor(v, dtype=pydl.float64, device=device)),
           TF.vjp(_f(torch), theirs, torch.tensor(v)))
    vs = [rng.standard_normal(3), rng.standard_normal((2, 3))]
    _close(AF.jvp(_f(pydl), ours, [pydl.tensor(a, dtype=pydl.float64, device=device)
                                   for a in vs]),
           TF.jvp(_f(torch), theirs, tuple(torch.tensor(a) for a in vs)))


def test_hvp_hessian_jacobian(device):
    ours, theirs, rng = _inputs(device)
    vs = [rng.standard_normal(3), rng.standard_normal((2, 3))]
    _close(AF.hvp(_scalar(pydl), ours, [pydl.tensor(a, dtype=pydl.float64, device=device)
                                        for a in vs]),
           TF.hvp(_scalar(torch), theirs, tuple(torch.tensor(a) for a in vs)))
    _close(AF.hessian(_scalar(pydl), ours), TF.hessian(_scalar(torch), theirs))
    _close(AF.jacobian(_f(pydl), ours), TF.jacobian(_f(torch), theirs))
    _close(AF.hessian(lambda x: (x ** 4).sum(), ours[0]),
           TF.hessian(lambda x: (x ** 4).sum(), theirs[0]))


def test_functional_leaves_inputs_alone_and_checks_arguments(device):
    ours, _, _ = _inputs(device)
    x = ours[0].requires_grad_()
    AF.hessian(lambda t: (t ** 3).sum(), x)
    assert x.grad is None
    with pytest.raises(RuntimeError, match="single element"):
        AF.hvp(lambda t: t ** 2, x, pydl.ones_like(x))
    with pytest.raises(ValueError, match="expected 1 tensors, got 2"):
        AF.hvp(lambda t: (t ** 2).sum(), x, [pydl.ones_like(x)] * 2)
