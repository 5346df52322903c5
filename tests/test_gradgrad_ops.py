"""Second derivatives of the kernel-backed and indexing ops (conv, pooling, norms, losses,
RNN cells and sequences, embedding, gather/scatter, views written in place, pad modes, prod,
interpolate): gradgradcheck in float64 and torch parity of Hessian-vector products.

Each case is written once against a small "library" object (``L.F`` is pydl's or torch's
``nn.functional``), so the same code runs on pydl (every device) and on torch.
"""

import numpy as np
import pytest
from test_gradgrad import _hvp, leaf

import pydl
from pydl.testing import assert_close, gradgradcheck


class _Pydl:
    """pydl's side of a case: functional API, int tensors and constants on ``device``."""

    def __init__(self, device):
        self.F, self.m, self.device = pydl.nn.functional, pydl, device

    def ints(self, a):
        return pydl.tensor(np.asarray(a, dtype=np.int64), device=self.device)

    def const(self, a):
        return pydl.tensor(np.asarray(a, dtype=np.float64), dtype=pydl.float64,
                           device=self.device)

    def mask(self, a):
        return pydl.tensor(np.asarray(a, dtype=bool), device=self.device)


class _Torch:
    def __init__(self):
        import torch

        self.F, self.m, self.torch = torch.nn.functional, torch, torch

    def ints(self, a):
        return self.torch.tensor(np.asarray(a, dtype=np.int64))

    def const(self, a):
        return self.torch.tensor(np.asarray(a, dtype=np.float64))

    def mask(self, a):
        return self.torch.tensor(np.asarray(a, dtype=bool))


def _u(lo=-1.0, hi=1.0):
    return lambda rng, s: rng.uniform(lo, hi, s)


def _n(rng, s):
    return rng.standard_normal(s)


def _with_zeros(rng, s):
    a = rng.standard_normal(s)
    a.reshape(-1)[[1, 2, 6]] = 0.0  # for (3, 4): two zeros in row 0, one in row 1
    return a


def _probs(rng, s):
    p = rng.uniform(0.1, 1.0, s)
    return p / p.sum(axis=1, keepdims=True)


def _inplace_slices(L, x):
    y = x * 1
    y[:, 1] = x[:, 0] ** 2  # CopySlices
    return y * x


def _inplace_view(L, x):
    y = x * 1
    v = y[0]  # a view made before the write: ViewOf after it
    y[1:].mul_(x[:2] + 2)
    return v.exp() * y.sum()


TARGET = [1, 0, 4, 2]
T_2D = [[1, 0, 2], [2, 2, 0]]
W5 = [0.5, 1.0, 2.0, 1.5, 0.7]
IDX = [[0, 2, 2], [3, 1, 0], [1, 1, 4]]

# name: (fn(L, *inputs), [(shape, sampler)], torch-parity) ---------------------------------
CASES = {
    # convolutions
    "conv2d": (lambda L, x, w, b: L.F.conv2d(x, w, b, stride=2, padding=1),
               [((2, 3, 5, 5), _n), ((4, 3, 3, 3), _n), ((4,), _n)]),
    "conv2d-same-groups": (lambda L, x, w: L.F.conv2d(x, w, padding="same", dilation=2, groups=2),
                           [((1, 4, 5, 6), _n), ((4, 2, 2, 3), _n)]),
    "conv2d-same-even": (lambda L, x, w: L.F.conv2d(x, w, padding="same"),
                         [((1, 2, 4, 5), _n), ((3, 2, 2, 2), _n)]),
    "conv1d": (lambda L, x, w: L.F.conv1d(x, w, stride=2, padding=1),
               [((2, 3, 7), _n), ((4, 3, 3), _n)]),
    "conv_transpose2d": (lambda L, x, w, b: L.F.conv_transpose2d(x, w, b, stride=2, padding=1,
                                                                 output_padding=1),
                         [((2, 3, 3, 4), _n), ((3, 2, 3, 3), _n), ((2,), _n)]),
    "conv_transpose2d-outpad-dilation": (lambda L, x, w: L.F.conv_transpose2d(
        x, w, dilation=2, output_padding=1), [((1, 2, 3, 3), _n), ((2, 2, 2, 2), _n)]),
    "conv_transpose1d-groups": (lambda L, x, w: L.F.conv_transpose1d(x, w, stride=2, groups=2,
                                                                     dilation=2),
                                [((1, 4, 5), _n), ((4, 1, 3), _n)]),
    # pooling
    "max_pool2d-ceil": (lambda L, x: L.F.max_pool2d(x, 3, 2, 1, ceil_mode=True),
                        [((2, 2, 6, 5), _n)]),
    "max_pool2d-dilated": (lambda L, x: L.F.max_pool2d(x, 2, 1, 1, dilation=2),
                           [((1, 2, 5, 5), _n)]),
    "max_pool1d": (lambda L, x: L.F.max_pool1d(x, 3, 2), [((2, 3, 8), _n)]),
    "avg_pool2d": (lambda L, x: L.F.avg_pool2d(x, 3, 2, 1, ceil_mode=True,
                                              count_include_pad=False), [((2, 2, 6, 5), _n)]),
    "avg_pool2d-divisor": (lambda L, x: L.F.avg_pool2d(x, 2, divisor_override=3),
                           [((1, 2, 4, 6), _n)]),
    "avg_pool1d": (lambda L, x: L.F.avg_pool1d(x, 2), [((2, 3, 6), _n)]),
    "adaptive_avg_pool2d": (lambda L, x: L.F.adaptive_avg_pool2d(x, (3, 2)),
                            [((2, 2, 5, 7), _n)]),
    "adaptive_avg_pool2d-even": (lambda L, x: L.F.adaptive_avg_pool2d(x, 2),
                                 [((1, 2, 4, 4), _n)]),
    "adaptive_max_pool2d": (lambda L, x: L.F.adaptive_max_pool2d(x, (3, 2)),
                            [((1, 2, 5, 7), _n)]),
    # normalisations
    "batch_norm-train": (lambda L, x, w, b: L.F.batch_norm(x, None, None, w, b, training=True),
                         [((4, 3, 2), _n), ((3,), _n), ((3,), _n)]),
    "batch_norm-eval": (lambda L, x, w, b: L.F.batch_norm(
        x, L.const([0.1, -0.2, 0.3]), L.const([1.5, 0.5, 2.0]), w, b),
        [((4, 3, 2), _n), ((3,), _n), ((3,), _n)]),
    "layer_norm": (lambda L, x, w, b: L.F.layer_norm(x, (4,), w, b),
                   [((2, 3, 4), _n), ((4,), _n), ((4,), _n)]),
    "layer_norm-2d-plain": (lambda L, x: L.F.layer_norm(x, (3, 4)), [((2, 3, 4), _n)]),
    "group_norm": (lambda L, x, w, b: L.F.group_norm(x, 2, w, b),
                   [((2, 4, 3), _n), ((4,), _n), ((4,), _n)]),
    "instance_norm": (lambda L, x: L.F.instance_norm(x), [((2, 3, 5), _n)]),
    # classification losses
    "cross_entropy": (lambda L, x: L.F.cross_entropy(x, L.ints(TARGET)), [((4, 5), _n)]),
    "cross_entropy-weight-smooth-ignore": (lambda L, x: L.F.cross_entropy(
        x, L.ints([1, -100, 4, 2]), weight=L.const(W5), label_smoothing=0.2),
        [((4, 5), _n)]),
    "cross_entropy-spatial-sum": (lambda L, x: L.F.cross_entropy(x, L.ints(T_2D),
                                                                 reduction="sum"),
                                  [((2, 3, 3), _n)]),
    "cross_entropy-none": (lambda L, x: L.F.cross_entropy(x, L.ints(TARGET), reduction="none"),
                           [((4, 5), _n)]),
    "cross_entropy-probs": (lambda L, x, t: L.F.cross_entropy(x, t, label_smoothing=0.1),
                            [((3, 4), _n), ((3, 4), _probs)]),
    "nll_loss": (lambda L, x: L.F.nll_loss(x, L.ints(TARGET), weight=L.const(W5)),
                 [((4, 5), _n)]),
    "nll_loss-spatial-none": (lambda L, x: L.F.nll_loss(x, L.ints(T_2D), reduction="none"),
                              [((2, 3, 3), _n)]),
    # regression and binary losses
    "mse_loss": (lambda L, x, t: L.F.mse_loss(x, t), [((3, 4), _n), ((3, 4), _n)]),
    "l1_loss": (lambda L, x, t: L.F.l1_loss(x, t, reduction="sum"), [((3, 4), _n), ((3, 4), _n)]),
    "huber_loss": (lambda L, x, t: L.F.huber_loss(x, t, delta=0.7),
                   [((3, 4), _n), ((3, 4), _n)]),
    "smooth_l1_loss": (lambda L, x, t: L.F.smooth_l1_loss(x, t, beta=0.5, reduction="none"),
                       [((3, 4), _n), ((3, 4), _n)]),
    "binary_cross_entropy": (lambda L, p, y, w: L.F.binary_cross_entropy(p, y, w),
                             [((3, 4), _u(0.1, 0.9)), ((3, 4), _u(0, 1)), ((4,), _u(0.5, 2))]),
    "bce_with_logits": (lambda L, x, y, w, pw: L.F.binary_cross_entropy_with_logits(
        x, y, w, pos_weight=pw), [((3, 4), _n), ((3, 4), _u(0, 1)), ((4,), _u(0.5, 2)),
                                  ((4,), _u(0.5, 2))]),
    "bce_with_logits-plain": (lambda L, x, y: L.F.binary_cross_entropy_with_logits(
        x, y, reduction="sum"), [((3, 4), _n), ((3, 4), _u(0, 1))]),
    "kl_div": (lambda L, x, t: L.F.kl_div(x, t, reduction="batchmean"),
               [((3, 4), _n), ((3, 4), _u(0.1, 1))]),
    "kl_div-log_target": (lambda L, x, t: L.F.kl_div(x, t, reduction="sum", log_target=True),
                          [((3, 4), _n), ((3, 4), _n)]),
    # lookups and indexing
    "embedding": (lambda L, w: L.F.embedding(L.ints([[0, 2], [4, 2]]), w), [((5, 3), _n)]),
    "embedding-padding_idx": (lambda L, w: L.F.embedding(L.ints([[0, 2], [4, 2]]), w,
                                                         padding_idx=2), [((5, 3), _n)]),
    "gather": (lambda L, x: L.m.gather(x, 1, L.ints(IDX)), [((3, 5), _n)]),
    "take_along_dim": (lambda L, x: L.m.take_along_dim(x, L.ints([[0], [4], [2]]), 1),
                       [((3, 5), _n)]),
    "scatter": (lambda L, x, s: L.m.scatter(x, 1, L.ints(IDX)[:, :1], s),
                [((3, 5), _n), ((3, 1), _n)]),
    "scatter_add": (lambda L, x, s: L.m.scatter_add(x, 1, L.ints(IDX), s),
                    [((3, 5), _n), ((3, 3), _n)]),
    "index_select": (lambda L, x: L.m.index_select(x, 1, L.ints([4, 0, 0, 2])),
                     [((3, 5), _n)]),
    "masked_fill": (lambda L, x, v: L.m.masked_fill(x, L.mask([[1, 0, 0], [0, 1, 1]]), v),
                    [((2, 3), _n), ((), _n)]),
    "index_put": (lambda L, x, v: L.m.index_put(x, (L.ints([0, 2]),), v),
                  [((3, 4), _n), ((4,), _n)]),
    "index_put-accumulate": (lambda L, x, v: L.m.index_put(x, (L.ints([0, 2, 0]),), v,
                                                           accumulate=True),
                             [((3, 4), _n), ((3, 4), _n)]),
    "setitem-copyslices": (_inplace_slices, [((3, 4), _n)]),
    "setitem-viewof": (_inplace_view, [((3, 4), _n)]),
    # shape and resampling
    "pad-reflect": (lambda L, x: L.F.pad(x, (2, 1, 1, 2), mode="reflect"), [((1, 2, 3, 4), _n)]),
    "pad-replicate": (lambda L, x: L.F.pad(x, (1, 2), mode="replicate"), [((2, 3, 4), _n)]),
    "pad-circular": (lambda L, x: L.F.pad(x, (1, 2, 2, 0), mode="circular"),
                     [((1, 2, 3, 4), _n)]),
    "prod-dim": (lambda L, x: L.m.prod(x, 1), [((3, 4), _n)]),
    "prod-zeros": (lambda L, x: L.m.prod(x, 1), [((3, 4), _with_zeros)]),
    "prod-all": (lambda L, x: L.m.prod(x), [((2, 3), _u(0.5, 1.5))]),
    "interpolate-bilinear": (lambda L, x: L.F.interpolate(x, size=(5, 3), mode="bilinear"),
                             [((1, 2, 3, 4), _n)]),
    "interpolate-bilinear-ac": (lambda L, x: L.F.interpolate(x, scale_factor=2, mode="bilinear",
                                                             align_corners=True),
                                [((1, 1, 3, 2), _n)]),
    "interpolate-nearest-block": (lambda L, x: L.F.interpolate(x, scale_factor=2),
                                  [((1, 2, 2, 3), _n)]),
    "interpolate-nearest": (lambda L, x: L.F.interpolate(x, size=(5, 4)), [((1, 2, 3, 3), _n)]),
}


# torch refuses a gradient for the BCE weights (and pos_weight): its side writes them out
TORCH_SIDE = {
    "binary_cross_entropy": lambda L, p, y, w: (
        L.F.binary_cross_entropy(p, y, reduction="none") * w).mean(),
    "bce_with_logits": lambda L, x, y, w, pw: (
        ((1 - y) * x + (1 + (pw - 1) * y) * L.F.softplus(-x)) * w).mean(),
}
# the padding row gets no gradient by definition (as in PyTorch), so the mixed derivative
# with the incoming gradient u is not a true derivative there: checked without u
WITHOUT_U = {"embedding-padding_idx"}


def _arrays(specs, seed=5):
    rng = np.random.default_rng(seed)
    return [sampler(rng, shape) for shape, sampler in specs]


@pytest.mark.parametrize("name", sorted(CASES))
def test_op_gradgradcheck(name, device):
    """The full Hessian of tanh(op(x) * u): the op's double backward in x and its backward's
    dependence on the incoming gradient u (through the recorded backward)."""
    fn, specs = CASES[name]
    L = _Pydl(device)
    xs = [leaf(a, device) for a in _arrays(specs)]
    if name in WITHOUT_U:
        assert gradgradcheck(lambda *a: fn(L, *a).tanh(), xs)
        return
    with pydl.no_grad():
        shape = fn(L, *xs).shape
    u = leaf(np.random.default_rng(7).standard_normal(shape), device)
    assert gradgradcheck(lambda *a: (fn(L, *a[:-1]) * a[-1]).tanh(), xs + [u])


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
@pytest.mark.parametrize("name", sorted(CASES))
def test_op_second_derivative_torch_parity(name, device):
    torch = pytest.importorskip("torch")
    fn, specs = CASES[name]
    arrays = _arrays(specs)
    ours = [leaf(a, device) for a in arrays]
    theirs = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    rng = np.random.default_rng(9)
    with pydl.no_grad():
        w = rng.standard_normal(fn(_Pydl(device), *[leaf(a, device) for a in arrays]).shape)
    vs = [rng.standard_normal(a.shape) for a in arrays]
    got = _hvp("pydl", lambda *a: fn(_Pydl(device), *a), ours, w, vs)
    tfn = TORCH_SIDE.get(name, fn)
    want = _hvp("torch", lambda *a: tfn(_Torch(), *a), theirs, w, vs)
    for g, e in zip(got, want, strict=True):
        assert_close(g, e, rtol=1e-9, atol=1e-11)


# -- the recurrent layers: pydl and torch modules with the same weights -----------------------
RNN_CASES = {
    "LSTMCell": ("LSTMCell", {}, (2, 3), 2),
    "GRUCell": ("GRUCell", {}, (2, 3), 1),
    "RNNCell": ("RNNCell", {}, (2, 3), 1),
    "LSTM": ("LSTM", {"num_layers": 2}, (5, 2, 3), 3),
    "LSTM-bidirectional-batch_first": ("LSTM", {"bidirectional": True, "batch_first": True},
                                       (2, 4, 3), 3),
    "LSTM-proj": ("LSTM", {"proj_size": 2}, (4, 2, 3), 3),
    "GRU": ("GRU", {"bidirectional": True}, (4, 2, 3), 2),
    "RNN-relu": ("RNN", {"nonlinearity": "relu"}, (4, 2, 3), 2),
    "RNN-tanh": ("RNN", {}, (4, 2, 3), 2),
}


def _rnn_pair(name, device):
    cls, kw, xshape, n_out = RNN_CASES[name]
    ours = getattr(pydl.nn, cls)(3, 4, **kw).double().to(device)
    return cls, kw, xshape, n_out, ours


def _rnn_outputs(out):
    """(output, h) or (output, (h, c)) or h or (h, c) flattened to a tuple of tensors."""
    flat = []
    for o in out if isinstance(out, tuple) else (out,):
        flat.extend(o if isinstance(o, tuple) else (o,))
    return flat


@pytest.mark.parametrize("name", sorted(RNN_CASES))
def test_rnn_gradgradcheck(name, device):
    _, _, xshape, _, module = _rnn_pair(name, device)
    x = leaf(np.random.default_rng(2).standard_normal(xshape), device)
    params = list(module.parameters())  # the checker perturbs them in place

    def fn(x, *ps):
        return tuple(o.tanh() for o in _rnn_outputs(module(x)))

    assert gradgradcheck(fn, [x, *params[:2]])


@pytest.mark.parametrize("name", sorted(RNN_CASES))
def test_rnn_second_derivative_torch_parity(name, device):
    torch = pytest.importorskip("torch")
    cls, kw, xshape, _, module = _rnn_pair(name, device)
    ref = getattr(torch.nn, cls)(3, 4, **kw).double()
    names = [n for n, _ in ref.named_parameters()]
    ours_named = dict(module.named_parameters())
    with torch.no_grad():
        for n, p in ref.named_parameters():
            p.copy_(torch.as_tensor(np.asarray(ours_named[n].detach().cpu())))
    x = np.random.default_rng(2).standard_normal(xshape)
    rng = np.random.default_rng(4)

    def ours_fn(xt, *ps):
        for n, p in zip(names, ps):
            setattr_param(module, n, p)
        return sum((o * o).sum() for o in _rnn_outputs(module(xt)))

    def theirs_fn(xt, *ps):
        out = torch.func.functional_call(ref, dict(zip(names, ps)), (xt,))
        return sum((o * o).sum() for o in _rnn_outputs(out))

    arrays = [x] + [np.asarray(ours_named[n].detach().cpu()) for n in names]
    vs = [rng.standard_normal(a.shape) for a in arrays]
    ours = [leaf(a, device) for a in arrays]
    theirs = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    got = _hvp("pydl", ours_fn, ours, np.float64(1.0), vs)
    want = _hvp("torch", theirs_fn, theirs, np.float64(1.0), vs)
    for g, e in zip(got, want, strict=True):
        assert_close(g, e, rtol=1e-8, atol=1e-10)


def setattr_param(module, dotted, value):
    """Point ``module``'s parameter ``dotted`` at the tensor ``value`` (for a functional call)."""
    *path, last = dotted.split(".")
    for part in path:
        module = getattr(module, part)
    module._parameters[last] = value


# -- to(device) ---------------------------------------------------------------------------------
@pytest.mark.gpu
def test_to_device_gradgradcheck():
    x = leaf(np.random.default_rng(0).standard_normal((3, 4)), "cpu")
    assert gradgradcheck(lambda t: (t.to("cuda").tanh() * t.to("cuda")).to("cpu"), [x])


def test_to_device_second_derivative_on_one_device(device):
    """``to`` the same device is the identity in both orders of derivative."""
    x = leaf(np.random.default_rng(0).standard_normal((3, 4)), device)
    assert gradgradcheck(lambda t: pydl.functions.convert.to_device(t, device).sin() * t, [x])


# -- composed backwards: any order, and the in-place guard --------------------------------------
THIRD_ORDER = {
    "layer_norm": lambda x: pydl.nn.functional.layer_norm(x, (4,)),
    "cross_entropy": lambda x: pydl.nn.functional.cross_entropy(x, pydl.tensor([1, 3, 0])),
    "conv2d": lambda x: pydl.nn.functional.conv2d(x.reshape(1, 1, 3, 4), x.reshape(1, 1, 3, 4)[
        :, :, :2, :2] * 1),
    "lstm_cell": lambda x: pydl.functions.rnn.LSTMPointwise.apply(x.repeat(1, 1), x[:, :1])[0],
}


@pytest.mark.parametrize("name", sorted(THIRD_ORDER))
def test_third_derivative(name, device):
    """gradgradcheck of a create_graph gradient: the third derivative of the op."""
    fn = THIRD_ORDER[name]
    x = leaf(np.random.default_rng(3).standard_normal((3, 4)), device)
    w = np.random.default_rng(8).standard_normal(np.shape(fn(x.detach())))

    def first(t):
        with pydl.enable_grad():  # gradgradcheck also calls it under no_grad
            y = (fn(t) * pydl.tensor(w, dtype=pydl.float64, device=device)).sum()
            (g,) = pydl.autograd.grad(y, [t], create_graph=True)
        return g

    assert gradgradcheck(first, [x])


def test_composed_backward_refuses_an_input_modified_in_place(device):
    x = leaf(np.random.default_rng(0).standard_normal((2, 4)), device)
    h = x * 1
    y = pydl.nn.functional.layer_norm(h, (4,)).pow(3).sum()
    h.mul_(2)  # h gets a new graph node; layer_norm's composed backward would read it
    with pytest.raises(RuntimeError, match=r"Normalize: input 0 \(shape \(2, 4\)\) was modified"):
        pydl.autograd.grad(y, [x], create_graph=True)
    # the first-order path never reads h (it saved what it needs)
    (g,) = pydl.autograd.grad(pydl.nn.functional.layer_norm(x * 1, (4,)).pow(3).sum(), [x])
    assert g.shape == (2, 4)


# -- end to end: a gradient penalty through a small convolutional critic ------------------------
def _critic(L, x, w1, b1, gw, gb, w2, w3, b3):
    h = L.F.leaky_relu(L.F.group_norm(L.F.conv2d(x, w1, b1, padding=1), 2, gw, gb), 0.2)
    h = L.F.avg_pool2d(L.F.conv_transpose2d(L.F.max_pool2d(h, 2), w2, stride=2), 2)
    return L.F.linear(h.flatten(1), w3, b3)


def _penalty_grads(L, grad, arrays, make):
    x, *params = [make(a) for a in arrays]
    out = _critic(L, x, *params)
    (gx,) = grad(out.sum(), [x], create_graph=True)
    norms = (gx.flatten(1) ** 2).sum(1).sqrt()
    penalty = ((norms - 1) ** 2).mean() + L.F.cross_entropy(out, L.ints([0, 2, 1]))
    return [np.asarray(g.detach().cpu() if hasattr(g, "cpu") else g.detach())
            for g in grad(penalty, params)]


def test_gradient_penalty_through_a_conv_critic_matches_torch(device):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(11)
    shapes = [(3, 2, 6, 6), (4, 2, 3, 3), (4,), (4,), (4,), (4, 3, 2, 2), (3, 27), (3,)]
    arrays = [rng.standard_normal(s) * (0.5 if len(s) > 1 else 1) for s in shapes]
    ours = _penalty_grads(_Pydl(device), pydl.autograd.grad, arrays, lambda a: leaf(a, device))
    theirs = _penalty_grads(_Torch(), torch.autograd.grad, arrays,
                            lambda a: torch.tensor(a, requires_grad=True))
    for g, e in zip(ours, theirs, strict=True):
        assert_close(g, e, rtol=1e-8, atol=1e-10)
