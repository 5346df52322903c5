"""The autograd engine itself: graph walking, accumulation, retain_graph, pydl.grad, grad
modes, detach, in-place ops and version checks, anomaly mode, error messages, retain_grad and
user-defined Functions."""

import numpy as np
import pytest

import pydl
from pydl.testing import assert_close, gradcheck


def leaf(values, device, dtype=pydl.float64, requires_grad=True):
    return pydl.tensor(values, dtype=dtype, device=device, requires_grad=requires_grad)


def host(t):
    return np.asarray(t.detach())


# -- graph walking -----------------------------------------------------------------------------
def test_chain_of_100k_ops_has_no_recursion_limit(device):
    x = leaf([1.0, 2.0], device)
    y = x
    for _ in range(50_000):
        y = y * 1.0
        y = y + 0.0
    y.sum().backward()
    assert host(x.grad).tolist() == [1.0, 1.0]


def test_diamond_graph_accumulates_both_paths(device):
    x = leaf([1.0, 2.0], device)
    a = x * 3
    b = x * x
    (a + b).sum().backward()  # d/dx (3x + x^2) = 3 + 2x
    assert host(x.grad).tolist() == [5.0, 7.0]


def test_gradients_accumulate_across_backward_calls(device):
    x = leaf([1.0, 2.0], device)
    (x * x).sum().backward()
    (x * 3).sum().backward()
    assert host(x.grad).tolist() == [5.0, 7.0]
    x.grad = None
    (x * 3).sum().backward()
    assert host(x.grad).tolist() == [3.0, 3.0]


def test_leaf_backward_and_is_leaf(device):
    x = leaf(2.0, device)
    assert x.is_leaf and x.grad_fn is None
    x.backward()
    assert host(x.grad) == 1.0
    y = x * 2
    assert not y.is_leaf and y.grad_fn.__name__ == "Mul" and y.requires_grad


def test_ops_on_tensors_without_grad_record_nothing(device):
    a = leaf([1.0], device, requires_grad=False)
    y = a.exp() * 2
    assert not y.requires_grad and y.grad_fn is None
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.sum().backward()


# -- retain_graph ------------------------------------------------------------------------------
def test_second_backward_needs_retain_graph(device):
    x = leaf([1.0, 2.0], device)
    y = (x.exp() * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="second time.*retain_graph=True"):
        y.backward()


def test_retain_graph_allows_second_backward(device):
    x = leaf([1.0, 2.0], device)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    assert host(x.grad).tolist() == [4.0, 8.0]


# -- pydl.grad ---------------------------------------------------------------------------------
def test_grad_returns_without_touching_dot_grad(device):
    x = leaf([1.0, 2.0], device)
    w = leaf([3.0, 4.0], device)
    y = (x * x * w).sum()
    gx, gw = pydl.grad(y, [x, w])
    assert host(gx).tolist() == [6.0, 16.0] and host(gw).tolist() == [1.0, 4.0]
    assert x.grad is None and w.grad is None
    assert not gx.requires_grad


def test_grad_options(device):
    x = leaf([1.0, 2.0], device)
    z = leaf([5.0], device)
    y = x * 2
    (g,) = pydl.grad(y, x, grad_outputs=leaf([1.0, 10.0], device, requires_grad=False),
                     retain_graph=True)
    assert host(g).tolist() == [2.0, 20.0]
    with pytest.raises(RuntimeError, match="allow_unused"):
        pydl.grad(y.sum(), [x, z], retain_graph=True)
    gx, gz = pydl.grad(y.sum(), [x, z], allow_unused=True)
    assert gz is None and host(gx).tolist() == [2.0, 2.0]
    with pytest.raises(RuntimeError, match="does not require grad"):
        pydl.grad((x * 2).sum(), [leaf([1.0], device, requires_grad=False)])


def test_grad_of_intermediate(device):
    x = leaf([1.0, 2.0], device)
    h = x * 3
    y = (h * h).sum()
    (gh,) = pydl.grad(y, [h])
    assert host(gh).tolist() == [6.0, 12.0]
    assert x.grad is None


# -- grad modes --------------------------------------------------------------------------------
def test_no_grad_and_enable_grad_as_contexts(device):
    x = leaf([1.0], device)
    with pydl.no_grad():
        assert not pydl.is_grad_enabled()
        y = x * 2
        with pydl.enable_grad():
            z = x * 2
        w = x * 2
    assert pydl.is_grad_enabled()
    assert not y.requires_grad and z.requires_grad and not w.requires_grad
    with pydl.set_grad_enabled(False):
        assert not (x * 2).requires_grad
    with pydl.set_grad_enabled(True):
        assert (x * 2).requires_grad


def test_grad_modes_as_decorators(device):
    x = leaf([1.0], device)

    @pydl.no_grad()
    def frozen(t):
        return t * 2

    @pydl.enable_grad()
    def recorded(t):
        return t * 2

    assert not frozen(x).requires_grad
    with pydl.no_grad():
        assert recorded(x).requires_grad
        assert not frozen(x).requires_grad
    assert pydl.is_grad_enabled()


def test_grad_mode_restored_after_exception():
    with pytest.raises(ValueError):
        with pydl.no_grad():
            raise ValueError("boom")
    assert pydl.is_grad_enabled()


# -- detach ------------------------------------------------------------------------------------
def test_detach_shares_data_and_cuts_graph(device):
    x = leaf([1.0, 2.0], device)
    y = x * 2
    d = y.detach()
    assert not d.requires_grad and d.grad_fn is None
    (y * d).sum().backward()  # d is a constant: dy/dx * d = 2 * (2x)
    assert host(x.grad).tolist() == [4.0, 8.0]
    d.fill_(0.0)
    assert host(y).tolist() == [0.0, 0.0]  # same memory


# -- in-place ops ------------------------------------------------------------------------------
def test_inplace_on_plain_tensors(device):
    t = pydl.tensor([1.0, 2.0], device=device)
    t += 1
    t.add_(pydl.tensor([1.0, 1.0], device=device), alpha=2)
    t.mul_(2)
    assert host(t).tolist() == [8.0, 10.0]
    t -= 1
    t /= 2
    assert host(t).tolist() == [3.5, 4.5]
    t.zero_()
    assert host(t).tolist() == [0.0, 0.0]


def test_inplace_on_non_leaf_keeps_gradient(device):
    x = leaf([1.0, 2.0], device)
    a = x * 2
    a += 1
    a.add_(x)  # a = 3x + 1
    assert a.grad_fn is not None and not a.is_leaf
    a.sum().backward()
    assert host(x.grad).tolist() == [3.0, 3.0]


def test_inplace_mul_and_clamp_on_non_leaf(device):
    x = leaf([1.0, 2.0], device)
    a = x * 1
    a.mul_(3)
    a.clamp_(0.0, 5.0)
    a.sum().backward()
    assert host(x.grad).tolist() == [3.0, 0.0]


def test_zero_on_non_leaf_cuts_gradient(device):
    x = leaf([1.0, 2.0], device)
    a = x * 2
    a.zero_()
    (a + x).sum().backward()
    assert host(x.grad).tolist() == [1.0, 1.0]


def test_modifying_a_saved_tensor_raises_at_backward(device):
    x = leaf([1.0, 2.0], device)
    a = x * 1
    b = a * a  # Mul saves a
    a.mul_(2)
    with pytest.raises(RuntimeError, match="Mul.*modified by an in-place operation"):
        b.sum().backward()


def test_modifying_under_no_grad_is_still_detected(device):
    x = leaf([1.0, 2.0], device)
    a = x * 1
    b = a.log()  # Log saves its input
    with pydl.no_grad():
        a += 1
    with pytest.raises(RuntimeError, match="Log.*in-place"):
        b.sum().backward()


def test_inplace_on_leaf_requiring_grad_raises(device):
    x = leaf([1.0, 2.0], device)
    for op in (lambda t: t.add_(1), lambda t: t.mul_(2), lambda t: t.zero_(),
               lambda t: t.__iadd__(1)):
        with pytest.raises(RuntimeError, match="leaf tensor that requires grad"):
            op(x)
    with pydl.no_grad():  # what optimizers do
        x.mul_(2)
        x -= 1
    assert host(x).tolist() == [1.0, 3.0] and x.requires_grad and x.is_leaf


def test_zero_dim_results_are_writable(device):
    x = leaf(2.0, device)
    y = x * 3
    y.add_(1)
    assert host(y) == 7.0
    x2 = leaf(2.0, device)
    (x2 * x2).backward()
    x2.grad.zero_()
    assert host(x2.grad) == 0.0


# -- anomaly mode ------------------------------------------------------------------------------
def test_detect_anomaly_names_forward_op(device):
    x = leaf([1.0, 2.0], device)
    with np.errstate(invalid="ignore"):
        with pydl.detect_anomaly():
            y = x * 2
            with pytest.raises(FloatingPointError, match="Log.forward produced NaN"):
                pydl.log(y - 3)
        assert np.isnan(host(pydl.log(x - 3))[0])  # outside the mode: silently NaN


def test_detect_anomaly_names_backward_op(device):
    x = leaf([0.0, 1.0], device)
    with np.errstate(divide="ignore", invalid="ignore"):
        with pydl.detect_anomaly():
            y = (x.sqrt() * 0).sum()  # forward is finite; Sqrt.backward gives 0/0
            with pytest.raises(FloatingPointError, match="Sqrt.backward produced NaN"):
                y.backward()


def test_detect_anomaly_as_decorator(device):
    @pydl.detect_anomaly()
    def f(t):
        return pydl.log(t)

    with np.errstate(divide="ignore"):
        with pytest.raises(FloatingPointError, match="Log.forward produced Inf"):
            f(leaf([0.0], device))


# -- error messages ----------------------------------------------------------------------------
def test_backward_on_non_scalar_needs_gradient(device):
    x = leaf([1.0, 2.0], device)
    y = x * 2
    with pytest.raises(RuntimeError, match=r"shape \(2,\) needs a gradient"):
        y.backward()
    y.backward(pydl.tensor([1.0, 0.5], dtype=pydl.float64, device=device))
    assert host(x.grad).tolist() == [2.0, 1.0]
    with pytest.raises(RuntimeError, match=r"gradient of shape \(3,\)"):
        (x * 2).backward(pydl.ones(3, dtype=pydl.float64, device=device))


def test_mixed_float_dtypes_raise_naming_both(device):
    a = leaf([1.0], device, dtype=pydl.float32)
    b = leaf([1.0], device, dtype=pydl.float64)
    for op in (lambda: a + b, lambda: a * b, lambda: pydl.maximum(a, b),
               lambda: pydl.where(pydl.tensor([True], device=device), a, b)):
        with pytest.raises(TypeError, match="pydl.float32.*pydl.float64"):
            op()


# -- retain_grad -------------------------------------------------------------------------------
def test_retain_grad_on_non_leaf(device):
    x = leaf([1.0, 2.0], device)
    h = x * 3
    h.retain_grad()
    other = x * 2
    (h * h + other).sum().backward()
    assert host(h.grad).tolist() == [6.0, 12.0]
    assert other.grad is None  # not retained
    assert host(x.grad).tolist() == [20.0, 38.0]
    x.retain_grad()  # a no-op on leaves


# -- user-defined Functions --------------------------------------------------------------------
class Cube(pydl.Function):
    @staticmethod
    def forward(ctx, a, scale):
        ctx.save_for_backward(a)
        ctx.scale = scale
        return scale * a * a * a

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return g * 3 * ctx.scale * a * a, None


class SplitSigns(pydl.Function):
    """Two outputs: the positive and the negative part."""

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return a * (a > 0), a * (a <= 0)

    @staticmethod
    def backward(ctx, g_pos, g_neg):
        (a,) = ctx.saved_tensors
        return g_pos * (a > 0) + g_neg * (a <= 0)


def test_custom_function(device):
    x = leaf([1.0, -2.0, 0.5], device)
    y = Cube.apply(x, 2.0)
    assert y.grad_fn is Cube
    assert_close(host(y), 2 * np.array([1.0, -2.0, 0.5]) ** 3)
    y.sum().backward()
    assert_close(host(x.grad), 6 * np.array([1.0, -2.0, 0.5]) ** 2)
    assert gradcheck(lambda t: Cube.apply(t, 2.0), [x])


def test_custom_function_with_two_outputs(device):
    x = leaf([1.5, -2.0, 0.5], device)
    pos, neg = SplitSigns.apply(x)
    (pos * 2).sum().backward()  # only one output used: the other's gradient is zero
    assert host(x.grad).tolist() == [2.0, 0.0, 2.0]
    assert gradcheck(lambda t: SplitSigns.apply(t), [x])


def test_custom_function_wrong_gradient_count_is_reported(device):
    class Bad(pydl.Function):
        @staticmethod
        def forward(ctx, a, b):
            return a + b

        @staticmethod
        def backward(ctx, g):
            return g

    x = leaf([1.0], device)
    with pytest.raises(RuntimeError, match="Bad.backward returned 1 gradients but forward took 2"):
        Bad.apply(x, x).sum().backward()
