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


def test_mixed_float_dtypes_promote_and_grads_keep_each_dtype(device):
    # PyTorch's promotion: float32 meets float64 in float64; each leaf's gradient comes back
    # in its own dtype. matmul does not promote (as torch.mm): it raises naming both.
    a = leaf([1.0], device, dtype=pydl.float32)
    b = leaf([1.0], device, dtype=pydl.float64)
    for op in (lambda: a + b, lambda: a * b, lambda: pydl.maximum(a, b),
               lambda: pydl.where(pydl.tensor([True], device=device), a, b)):
        a.grad = b.grad = None
        y = op()
        assert y.dtype == pydl.float64
        y.sum().backward()
        assert a.grad.dtype == pydl.float32 and b.grad.dtype == pydl.float64
    with pytest.raises(TypeError, match="pydl.float32.*pydl.float64"):
        a.reshape(1, 1) @ b.reshape(1, 1)


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


# -- in-place writes through views (functions/views.py), against torch -----------------------
# Each scenario runs the same program on pydl and torch: x is a float64 leaf; the program
# derives a non-leaf, writes into views of it in place, and returns a scalar loss.
def _scenario_slice_mul(m, x):
    y = x * 1
    y[0:2].mul_(0)
    return (y * y).sum()


def _scenario_two_views(m, x):
    y = x * 2
    u, v = y[2:], y[0:2]
    v.mul_(3)
    return u.sum() + (y * y).sum()


def _scenario_transposed_row(m, x):
    y = (x * 1).reshape(2, 3)
    y.t()[1].add_(y.t()[0] * 2)
    return (y ** 2).sum()


def _scenario_copy_into_zeros(m, x):
    b = m.zeros(6, dtype=x.dtype)
    b[1:4].copy_(x[:3] * 5)
    return (b * m.arange(6, dtype=x.dtype)).sum()


def _scenario_view_of_view(m, x):
    y = (x + 1).reshape(2, 3)
    row = y[1]
    row[1:].mul_(x[:2] * 2)
    return (y.exp()).sum()


def _scenario_setitem_then_use_earlier_view(m, x):
    y = x * 3
    head = y[:3]
    y[3:] = x[3:] ** 2
    y[1] = 0.0
    return (head * head).sum() + y.sum()


def _scenario_stale_node_before_write(m, x):
    y = x * 1
    z = y + 2              # uses y before the write: must get y's old gradient path
    y[0:3].mul_(4)
    return (z * z).sum() + y.sum()


VIEW_SCENARIOS = [_scenario_slice_mul, _scenario_two_views, _scenario_transposed_row,
                  _scenario_copy_into_zeros, _scenario_view_of_view,
                  _scenario_setitem_then_use_earlier_view, _scenario_stale_node_before_write]


@pytest.mark.parametrize("scenario", VIEW_SCENARIOS, ids=lambda f: f.__name__[10:])
def test_inplace_through_views_matches_torch(scenario, device):
    torch = pytest.importorskip("torch")
    x0 = np.random.default_rng(3).standard_normal(6)
    x = pydl.tensor(x0, dtype=pydl.float64, device=device, requires_grad=True)
    loss = scenario(pydl, x)
    loss.backward()
    xt = torch.tensor(x0, requires_grad=True)
    loss_t = scenario(torch, xt)
    loss_t.backward()
    assert_close(loss.item(), loss_t.item(), rtol=1e-12, atol=1e-12)
    assert_close(x.grad.cpu().numpy(), xt.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_inplace_into_split_piece(device):
    # torch refuses in-place writes into split() outputs; pydl records them like any view
    x0 = np.linspace(-1, 1, 6)
    x = pydl.tensor(x0, dtype=pydl.float64, device=device, requires_grad=True)
    y = x.sin()
    a, _ = y.split(3)
    a.mul_(2)
    (y * y).sum().backward()
    sc = np.sin(x0) * np.cos(x0)
    assert_close(x.grad.cpu().numpy(), np.concatenate([8 * sc[:3], 2 * sc[3:]]), rtol=1e-12)


def test_inplace_through_view_of_leaf_raises(device):
    w = pydl.ones(4, device=device, requires_grad=True)
    with pytest.raises(RuntimeError, match="view of a leaf tensor that requires grad"):
        w[1:3].mul_(2)
    with pytest.raises(RuntimeError, match="view of a leaf"):
        w.reshape(2, 2)[0] = 5.0
    with pydl.no_grad():  # what optimizers and init functions do
        w[1:3].mul_(2)
    assert w.detach().cpu().numpy().tolist() == [1, 2, 2, 1]


def test_inplace_into_expanded_view_raises(device):
    e = pydl.ones(3, device=device).expand(2, 3)
    with pytest.raises(RuntimeError, match="share\\s+memory"):
        e.add_(1)
    with pytest.raises(RuntimeError, match="share\\s+memory"):
        e[0] = 2.0


def test_non_differentiable_inplace_on_graph_tensor_is_recorded_as_overwrite(device):
    x = pydl.ones(4, device=device, requires_grad=True)
    y = x * 2
    y[:2].normal_()        # values no longer depend on x there
    y.sum().backward()
    assert x.grad.cpu().numpy().tolist() == [0, 0, 2, 2]


def test_inplace_with_itself_or_overlapping_argument(device):
    x = pydl.tensor([1.0, 2.0, 3.0], dtype=pydl.float64, device=device, requires_grad=True)
    y = x * 1
    y.mul_(y)                      # y = x**2, reading the old y
    y.sum().backward()
    assert x.grad.cpu().numpy().tolist() == [2.0, 4.0, 6.0]
    y = x * 1
    with pytest.raises(RuntimeError, match="overlaps the memory being written"):
        y[1:].mul_(y[:2])


def test_inplace_reading_another_view_of_same_memory(device):
    # torch refuses this at backward (the argument shares the written tensor's version
    # counter); pydl checks the regions don't overlap and keeps it. Compare with the
    # same computation written out of place.
    x0 = np.linspace(-1, 1, 6)
    x = pydl.tensor(x0, dtype=pydl.float64, device=device, requires_grad=True)
    y = (x + 1).reshape(2, 3)
    y[1, 1:].mul_(y[0, :2])
    y.exp().sum().backward()
    g_inplace = x.grad.cpu().numpy()
    x.grad = None
    y0 = x + 1
    y_ref = pydl.cat([y0[:4], y0[4:] * y0[:2]])
    y_ref.exp().sum().backward()
    assert_close(g_inplace, x.grad.cpu().numpy(), rtol=1e-12)


def test_copy_into_nan_and_inf_overwrites_them(device):
    """copy_ replaces every element: old nan/inf values must not leak (0 * inf is nan)."""
    x = pydl.tensor([float("nan"), float("inf"), -float("inf")], device=device)
    x.copy_(pydl.tensor([1.0, 2.0, 3.0]))
    np.testing.assert_array_equal(x.cpu().numpy(), [1.0, 2.0, 3.0])
    w = pydl.tensor([float("inf"), 1.0, 1.0], requires_grad=True, device=device)
    y = w * 1
    src = pydl.tensor([4.0, 5.0, 6.0], requires_grad=True, device=device)
    y.copy_(src)
    (y * 2).sum().backward()
    np.testing.assert_array_equal(y.detach().cpu().numpy(), [4.0, 5.0, 6.0])
    np.testing.assert_array_equal(w.grad.cpu().numpy(), [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(src.grad.cpu().numpy(), [2.0, 2.0, 2.0])


def test_copy_from_a_shape_that_does_not_broadcast_names_copy_():
    x = pydl.zeros(2, 3)
    for bad in (pydl.ones(4), pydl.ones(2, 2, 3)):
        with pytest.raises(RuntimeError, match=r"copy_: a source of shape .* \(2, 3\)"):
            x.copy_(bad)
    x.copy_(pydl.ones(1, 3))
    np.testing.assert_array_equal(x.numpy(), np.ones((2, 3)))


def test_same_device_names_the_op_and_both_devices():
    from types import SimpleNamespace

    from pydl.autograd import same_device

    cpu = SimpleNamespace(device=pydl.Device("cpu"))
    gpu = SimpleNamespace(device=pydl.Device("cuda:1"))
    same_device("add", cpu, cpu)
    with pytest.raises(RuntimeError, match=r"index_put: .* cpu and cuda:1"):
        same_device("index_put", cpu, cpu, gpu)


def test_function_methods_declared_in_tensor_py_are_bound():
    from pydl import functions
    from pydl.tensor import FUNCTION_METHODS, Tensor

    assert len(set(FUNCTION_METHODS)) == len(FUNCTION_METHODS)
    for name in FUNCTION_METHODS:
        assert getattr(Tensor, name) is getattr(functions, name), name
    x = pydl.tensor([[1.0, -2.0]])
    assert_close(x.abs().sum(dim=1), pydl.tensor([3.0]))
