"""Second derivatives: gradgradcheck over the op tables of tests/test_ops_*.py on every
device, torch parity of Hessian-vector products, and the create_graph contract."""

import numpy as np
import pytest
from test_ops_elementwise import BROADCAST, UNARY
from test_ops_matmul import SHAPES as MATMUL_SHAPES
from test_ops_reduce import REDUCTIONS
from test_ops_shape import CASES as SHAPE_CASES

import pydl
from pydl.testing import assert_close, gradgradcheck

# ops whose backward is a fused kernel not yet differentiable: create_graph raises for them
NOT_DOUBLE_DIFFERENTIABLE = set()
# shape cases whose double backward is not implemented yet
SHAPE_NOT_YET = set()
# Functions whose outputs are never differentiable (comparisons, predicates): no backward
NON_DIFFERENTIABLE = {"Compare", "Predicate"}
BINARY = {
    "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b, "pow": lambda a, b: a.abs() ** b,
    "maximum": pydl.maximum, "minimum": pydl.minimum,
}


def leaf(arr, device):
    return pydl.tensor(arr, dtype=pydl.float64, device=device, requires_grad=True)


def _rng(seed=3):
    return np.random.default_rng(seed)


# -- gradgradcheck over the tables --------------------------------------------------------
@pytest.mark.parametrize("shape", [(), (5,), (3, 4)], ids=str)
@pytest.mark.parametrize("name", sorted(set(UNARY) - NOT_DOUBLE_DIFFERENTIABLE))
def test_unary_gradgradcheck(name, shape, device):
    fn, _, dom = UNARY[name]
    assert gradgradcheck(fn, [leaf(dom(_rng(), shape), device)])


@pytest.mark.parametrize("shapes", BROADCAST, ids=str)
@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_gradgradcheck(name, shapes, device):
    rng = _rng()
    a = leaf(rng.uniform(0.5, 1.5, shapes[0]) * rng.choice([-1, 1], shapes[0]), device)
    b = leaf(rng.uniform(0.5, 1.5, shapes[1]), device)
    assert gradgradcheck(BINARY[name], [a, b])


@pytest.mark.parametrize("dim", [None, 0, (0, 2)], ids=str)
@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("name", sorted(REDUCTIONS))
def test_reduction_gradgradcheck(name, dim, keepdim, device):
    fn = REDUCTIONS[name][0]
    x = leaf(_rng().standard_normal((3, 4, 2)), device)
    # reductions linear in x (sum, mean) have a zero second derivative: square the result
    assert gradgradcheck(lambda t: fn(t, dim, keepdim) ** 2, [x])


@pytest.mark.parametrize("name,shape,fn,ref", SHAPE_CASES, ids=[c[0] for c in SHAPE_CASES])
def test_shape_gradgradcheck(name, shape, fn, ref, device):
    if name in SHAPE_NOT_YET:
        pytest.skip(f"{name}: double backward not implemented yet")
    x = leaf(_rng().standard_normal(shape), device)
    # shape ops are linear: cube the result so the first gradient depends on x and its
    # graph runs through the op's recorded backward
    assert gradgradcheck(lambda t: fn(t) ** 3, [x])


@pytest.mark.parametrize("sa,sb", [s for s in MATMUL_SHAPES if 0 not in s[0] + s[1]], ids=str)
def test_matmul_gradgradcheck(sa, sb, device):
    rng = _rng()
    a, b = leaf(rng.standard_normal(sa), device), leaf(rng.standard_normal(sb), device)
    assert gradgradcheck(lambda p, q: pydl.matmul(p, q) ** 2, [a, b])


@pytest.mark.parametrize("key", [1, (slice(None), slice(None, None, 2)), [0, 2, 2],
                                 (slice(1, None), [3, 3, 0])], ids=str)
def test_getitem_gradgradcheck(key, device):
    x = leaf(_rng().standard_normal((3, 5)), device)
    assert gradgradcheck(lambda t: t[key] ** 3, [x])


# -- torch parity of second derivatives ---------------------------------------------------
def _hvp(lib, fn, xs, w, vs):
    """d/dxs of < d(sum w * fn(xs))/dxs , vs >, with pydl or torch."""
    if lib == "torch":
        import torch

        y = (fn(*xs) * torch.as_tensor(w)).sum()
        gs = torch.autograd.grad(y, xs, create_graph=True)
        z = sum((g * torch.as_tensor(v)).sum() for g, v in zip(gs, vs))
        if not z.requires_grad:  # torch's gradient is constant here: a zero derivative
            return [np.zeros(x.shape) for x in xs]
        out = torch.autograd.grad(z, xs, allow_unused=True, materialize_grads=True)
        return [(g.detach() + 0).numpy() for g in out]
    dev = xs[0].device
    y = (fn(*xs) * pydl.tensor(w, dtype=pydl.float64, device=dev)).sum()
    gs = pydl.autograd.grad(y, xs, create_graph=True)
    z = sum((g * pydl.tensor(v, dtype=pydl.float64, device=dev)).sum() for g, v in zip(gs, vs))
    return [np.asarray(g.detach()) for g in pydl.autograd.grad(z, xs)]


def _parity(fn_pydl, fn_torch, arrays, device):
    torch = pytest.importorskip("torch")
    rng = _rng(9)
    ours = [leaf(a, device) for a in arrays]
    theirs = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    w = rng.standard_normal(fn_pydl(*[leaf(a, device) for a in arrays]).shape)
    vs = [rng.standard_normal(a.shape) for a in arrays]
    got = _hvp("pydl", fn_pydl, ours, w, vs)
    want = _hvp("torch", fn_torch, theirs, w, vs)
    for g, e in zip(got, want):
        assert_close(g, e, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("name", sorted(set(UNARY) - NOT_DOUBLE_DIFFERENTIABLE))
def test_unary_second_derivative_torch_parity(name, device):
    from test_ops_elementwise import _torch_unary

    fn, _, dom = UNARY[name]
    _parity(fn, _torch_unary()[name], [dom(_rng(), (3, 4))], device)


@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_second_derivative_torch_parity(name, device):
    torch = pytest.importorskip("torch")
    ref = {"maximum": torch.maximum, "minimum": torch.minimum}.get(name, BINARY[name])
    rng = _rng()
    _parity(BINARY[name], ref, [rng.uniform(0.5, 1.5, (3, 1)) * rng.choice([-1, 1], (3, 1)),
                               rng.uniform(0.5, 1.5, (4,))], device)


@pytest.mark.parametrize("name", sorted(REDUCTIONS))
def test_reduction_second_derivative_torch_parity(name, device):
    torch = pytest.importorskip("torch")
    ours, _, theirs = REDUCTIONS[name]
    _parity(lambda t: ours(t, 1, False) ** 2, lambda t: theirs(torch, t, 1, False) ** 2,
            [_rng().standard_normal((3, 4, 2))], device)


class _TorchAsPydl:
    """The ``pydl.*`` names the shape and MORE cases use, answered by torch."""

    def __getattr__(self, name):
        import torch

        return {"pad": torch.nn.functional.pad}.get(name) or getattr(torch, name)


def _as_torch(fn):
    """``fn`` with the global ``pydl`` replaced by :class:`_TorchAsPydl`."""
    import types

    return types.FunctionType(fn.__code__, {**fn.__globals__, "pydl": _TorchAsPydl()},
                              fn.__name__, fn.__defaults__, fn.__closure__)


@pytest.mark.filterwarnings("ignore:The use of `x.T` on tensors:UserWarning")  # torch's
@pytest.mark.parametrize("name,shape,fn,ref", SHAPE_CASES, ids=[c[0] for c in SHAPE_CASES])
def test_shape_second_derivative_torch_parity(name, shape, fn, ref, device):
    pytest.importorskip("torch")
    tfn = _as_torch(fn)
    _parity(lambda t: fn(t) ** 3, lambda t: tfn(t) ** 3, [_rng().standard_normal(shape)], device)


@pytest.mark.parametrize("key", [1, (slice(None), slice(None, None, 2)), [0, 2, 2],
                                 (slice(1, None), [3, 3, 0])], ids=str)
def test_getitem_second_derivative_torch_parity(key, device):
    pytest.importorskip("torch")
    _parity(lambda t: t[key] ** 3, lambda t: t[key] ** 3, [_rng().standard_normal((3, 5))],
            device)


def test_matmul_second_derivative_torch_parity(device):
    rng = _rng()
    _parity(lambda a, b: (a @ b).tanh(), lambda a, b: (a @ b).tanh(),
            [rng.standard_normal((2, 3, 4)), rng.standard_normal((4, 5))], device)


# -- the create_graph contract ------------------------------------------------------------
def test_backward_create_graph_twice_through_shared_graph(device):
    x = leaf(np.array([0.5, -1.0, 2.0]), device)
    y = (x ** 3).sum()
    y.backward(create_graph=True)  # retain_graph defaults to create_graph
    g1 = x.grad
    assert g1.requires_grad
    assert_close(np.asarray(g1.detach()), 3 * np.array([0.5, -1.0, 2.0]) ** 2)
    y.backward(create_graph=True)  # the graph was retained: gradients accumulate
    assert_close(np.asarray(x.grad.detach()), 6 * np.array([0.5, -1.0, 2.0]) ** 2)
    x.grad = None
    g1.sum().backward()  # d/dx sum(3 x^2) = 6x
    assert_close(np.asarray(x.grad.detach()), 6 * np.array([0.5, -1.0, 2.0]))


def test_grad_returns_and_leaves_grad_untouched(device):
    x = leaf(np.array([1.0, 2.0]), device)
    (g,) = pydl.autograd.grad((x * x).sum(), [x], create_graph=True)
    assert x.grad is None and g.requires_grad
    (h,) = pydl.autograd.grad(g.sum(), x)
    assert_close(np.asarray(h), np.array([2.0, 2.0]))
    assert not h.requires_grad


def test_grad_without_create_graph_frees_the_graph(device):
    x = leaf(np.array([1.0, 2.0]), device)
    y = (x.exp()).sum()
    pydl.autograd.grad(y, [x])
    with pytest.raises(RuntimeError, match="second time"):
        pydl.autograd.grad(y, [x])


def test_grad_allow_unused(device):
    x, z = leaf(np.array([1.0]), device), leaf(np.array([2.0]), device)
    with pytest.raises(RuntimeError, match=r"input 1 \(shape \(1,\)\) was not used"):
        pydl.autograd.grad((x * 2).sum(), [x, z])
    gx, gz = pydl.autograd.grad((x * 2).sum(), [x, z], allow_unused=True)
    assert gz is None and np.asarray(gx).tolist() == [2.0]


def test_grad_non_scalar_outputs_need_grad_outputs(device):
    x = leaf(np.array([1.0, 2.0]), device)
    with pytest.raises(RuntimeError, match=r"grad: output 0 of shape \(2,\) needs a gradient"):
        pydl.autograd.grad(x * x, [x])
    (g,) = pydl.autograd.grad(x * x, [x], grad_outputs=pydl.ones_like(x))
    assert np.asarray(g).tolist() == [2.0, 4.0]
    with pytest.raises(RuntimeError, match=r"gradient of shape \(3,\) given for output 0"):
        pydl.autograd.grad(x * x, [x], grad_outputs=pydl.ones(3, dtype=pydl.float64))
    with pytest.raises(RuntimeError, match="input 0 .* does not require grad"):
        pydl.autograd.grad((x * x).sum(), [x.detach()])


def test_grad_outputs_with_a_graph_are_differentiated(device):
    x = leaf(np.array([1.5]), device)
    v = leaf(np.array([2.0]), device)
    (g,) = pydl.autograd.grad(x * x, [x], grad_outputs=v, create_graph=True)  # 2 x v
    gx, gv = pydl.autograd.grad(g.sum(), [x, v])
    assert np.asarray(gx).tolist() == [4.0] and np.asarray(gv).tolist() == [3.0]


class _Cube(pydl.autograd.Function):
    """A user Function whose backward works on arrays only (no ``double_backward``)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x ** 3

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 3 * x * x * g


def test_op_without_double_backward_raises_naming_it(device):
    x = leaf(_rng().standard_normal((2, 3)), device)
    (gx,) = pydl.autograd.grad(_Cube.apply(x).sum(), [x], create_graph=True)
    # the first derivative is still right, and has a graph
    assert_close(gx.detach(), 3 * np.asarray(x.detach()) ** 2)
    assert gx.requires_grad
    with pytest.raises(RuntimeError, match="_Cube: its backward is not differentiable yet"):
        pydl.autograd.grad(gx.sum(), [x])


def test_every_builtin_function_is_double_differentiable():
    """No differentiable Function of pydl.functions is left on the raw-array-only path."""
    import inspect

    import pydl.functions as fns
    from pydl.autograd import Function

    seen, missing = set(), []
    for module in list(vars(fns).values()):
        if not inspect.ismodule(module) or not module.__name__.startswith("pydl.functions"):
            continue
        for obj in vars(module).values():
            if inspect.isclass(obj) and issubclass(obj, Function) and obj is not Function \
                    and obj not in seen:
                seen.add(obj)
                if obj.backward is Function.backward:  # an abstract base (RecurrenceBase)
                    continue
                if not getattr(obj, "double_backward", False) and \
                        obj.__name__ not in NON_DIFFERENTIABLE:
                    missing.append(f"{module.__name__}.{obj.__name__}")
    assert len(seen) > 60
    assert not missing, missing


# -- kernel-backed ops whose create_graph backward composes differentiable ops -------------
F = pydl.nn.functional
KERNEL_OPS = {
    "softmax-last": (lambda x: F.softmax(x, dim=-1), (3, 5)),
    "softmax-dim0": (lambda x: F.softmax(x, dim=0), (4, 3, 2)),
    "softmax-0d": (lambda x: F.softmax(x, dim=0) * x, ()),
    "log_softmax-last": (lambda x: F.log_softmax(x, dim=-1), (3, 5)),
    "log_softmax-dim1": (lambda x: F.log_softmax(x, dim=1), (2, 4, 3)),
    "gelu": (F.gelu, (3, 4)),
    "gelu_tanh": (lambda x: F.gelu(x, approximate="tanh"), (3, 4)),
}


@pytest.mark.parametrize("name", sorted(KERNEL_OPS))
def test_kernel_op_gradgradcheck(name, device):
    fn, shape = KERNEL_OPS[name]
    assert gradgradcheck(fn, [leaf(_rng().standard_normal(shape), device)])


def test_kernel_op_second_derivative_torch_parity(device):
    torch = pytest.importorskip("torch")
    tf = torch.nn.functional
    x = _rng().standard_normal((3, 5))
    _parity(lambda t: F.softmax(t, dim=0), lambda t: tf.softmax(t, dim=0), [x], device)
    _parity(lambda t: F.log_softmax(t, dim=-1), lambda t: tf.log_softmax(t, dim=-1), [x],
            device)
    _parity(F.gelu, tf.gelu, [x], device)


def test_linear_and_dropout_gradgradcheck(device):
    rng = _rng()
    x, w, b = (leaf(rng.standard_normal(s), device) for s in [(2, 3, 4), (5, 4), (5,)])
    assert gradgradcheck(lambda p, q, r: F.linear(p, q, r).tanh(), [x, w, b])
    mask = pydl.tensor(rng.random((3, 4)) > 0.5, device=device)
    assert gradgradcheck(lambda p: F.dropout(p, 0.0) * p * mask, [leaf(rng.random((3, 4)), device)])


MORE = {
    "max-dim": (lambda x: x.max(dim=1)[0] ** 2, (3, 4)),
    "min-dim-keep": (lambda x: pydl.min(x, dim=0, keepdim=True)[0] ** 2, (3, 4)),
    "cumsum": (lambda x: x.cumsum(1) ** 3, (3, 4)),
    "cat": (lambda x: pydl.cat([x, x * 2], dim=1) ** 3, (2, 3)),
    "stack": (lambda x: pydl.stack([x, x.exp()], dim=0) ** 2, (2, 3)),
    "split": (lambda x: x.split(2, dim=1)[1] ** 3 + x.split(2, dim=1)[0].sum(), (2, 4)),
    "chunk-all": (lambda x: pydl.cat(x.chunk(2, dim=0), dim=1) ** 3, (4, 3)),
    "unbind": (lambda x: pydl.stack(x.unbind(0)[::-1]) ** 3, (3, 2)),
}


@pytest.mark.parametrize("name", sorted(MORE))
def test_more_ops_gradgradcheck(name, device):
    fn, shape = MORE[name]
    assert gradgradcheck(fn, [leaf(_rng().standard_normal(shape), device)])


@pytest.mark.parametrize("name", sorted(MORE))
def test_more_ops_second_derivative_torch_parity(name, device):
    pytest.importorskip("torch")
    fn, shape = MORE[name]
    _parity(fn, _as_torch(fn), [_rng().standard_normal(shape)], device)


def test_saving_outputs_makes_no_reference_cycle(device):
    import gc
    import weakref

    gc.disable()
    try:
        x = leaf(np.array([0.5, 1.0]), device)
        y = x.exp().sigmoid()  # both save their outputs
        ref = weakref.ref(y)
        (g,) = pydl.autograd.grad(y.sum(), [x], create_graph=True)
        (h,) = pydl.autograd.grad(g.sum(), [x])
        del y, g, h
        assert ref() is None  # freed by reference counting alone
    finally:
        gc.enable()


def test_third_derivative(device):
    """Gradients made with create_graph carry zero-derivative nodes (for constants such as
    the seed): they too are differentiable, so third derivatives work."""
    x = leaf(np.array([1.0, -2.0]), device)
    (g,) = pydl.autograd.grad((x ** 3 * x.relu()).sum(), [x], create_graph=True)
    (h,) = pydl.autograd.grad(g.sum(), [x], create_graph=True)
    (k,) = pydl.autograd.grad(h.sum(), [x])
    # d3/dx3 of x^3 relu(x): 24 x for x > 0, 0 for x < 0
    assert_close(np.asarray(k), np.array([24.0, 0.0]))
