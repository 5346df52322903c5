"""PyTorch's type promotion (pydl/dtypes.py): the promote_types table for every pair of dtypes
pydl has, result_type over dimensioned tensors, 0-d tensors and Python numbers, and the dtype
the binary ops actually compute in, all against torch."""

import itertools

import numpy as np
import pytest

import pydl

torch = pytest.importorskip("torch")

# pydl dtype -> torch dtype (bfloat16 joins when ml_dtypes is there)
DTYPES = {
    pydl.bool: torch.bool, pydl.int32: torch.int32, pydl.int64: torch.int64,
    pydl.float16: torch.float16, pydl.float32: torch.float32, pydl.float64: torch.float64,
}
try:
    import ml_dtypes

    BF16 = np.dtype(ml_dtypes.bfloat16)
    DTYPES[BF16] = torch.bfloat16
except ImportError:  # pragma: no cover - ml_dtypes ships with the test extra
    BF16 = None
TENSOR_DTYPES = [d for d in DTYPES if d != BF16]  # pydl tensors of bfloat16: issue 14
TO_PYDL = {v: k for k, v in DTYPES.items()}
PAIRS = list(itertools.product(DTYPES, repeat=2))


def _name(d):
    return str(DTYPES[d]).replace("torch.", "")


@pytest.mark.parametrize("a,b", PAIRS, ids=[f"{_name(a)}-{_name(b)}" for a, b in PAIRS])
def test_promote_types_table_matches_torch(a, b):
    assert pydl.promote_types(a, b) == TO_PYDL[torch.promote_types(DTYPES[a], DTYPES[b])]


def test_bfloat16_lattice():
    if BF16 is None:
        pytest.skip("ml_dtypes is not installed")
    assert pydl.promote_types(pydl.float16, BF16) == pydl.float32
    assert pydl.promote_types(BF16, pydl.int64) == BF16
    assert pydl.promote_types(BF16, pydl.float64) == pydl.float64


def _pydl_operand(kind, dtype):
    if kind == "dim":
        return pydl.ones(2, dtype=dtype) if dtype != BF16 else np.ones(2, dtype=dtype)
    return pydl.ones((), dtype=dtype) if dtype != BF16 else np.ones((), dtype=dtype)


def _torch_operand(kind, dtype):
    return torch.ones(2 if kind == "dim" else (), dtype=DTYPES[dtype])


SCALARS = [True, 3, 2.5]
KINDS = ["dim", "zero"]


@pytest.mark.parametrize("ka,kb", list(itertools.product(KINDS, repeat=2)))
def test_result_type_of_tensors_matches_torch(ka, kb):
    for a, b in PAIRS:
        got = pydl.result_type(_pydl_operand(ka, a), _pydl_operand(kb, b))
        want = torch.result_type(_torch_operand(ka, a), _torch_operand(kb, b))
        assert got == TO_PYDL[want], (ka, a, kb, b)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("scalar", SCALARS, ids=repr)
def test_result_type_with_python_numbers_matches_torch(kind, scalar):
    for d in DTYPES:
        got = pydl.result_type(_pydl_operand(kind, d), scalar)
        want = torch.result_type(_torch_operand(kind, d), scalar)
        assert got == TO_PYDL[want], (kind, d, scalar)
        assert pydl.result_type(scalar, _pydl_operand(kind, d)) == got


def test_result_type_examples():
    f32, f64 = pydl.ones(3), pydl.ones(3, dtype=pydl.float64)
    assert pydl.result_type(f32, f64) == pydl.float64
    assert pydl.result_type(f32, pydl.tensor(1.0, dtype=pydl.float64)) == pydl.float32
    assert pydl.result_type(pydl.ones(3, dtype=pydl.int32), 2.5) == pydl.float32
    assert pydl.result_type(pydl.ones(3, dtype=pydl.int32), 7) == pydl.int32
    assert pydl.result_type(pydl.tensor(True), 7) == pydl.int64
    with pytest.raises(TypeError, match="result_type"):
        pydl.result_type("a", f32)


OPS = {
    "add": (lambda a, b: a + b, lambda a, b: a + b),
    "sub": (lambda a, b: a - b, lambda a, b: a - b),
    "mul": (lambda a, b: a * b, lambda a, b: a * b),
    "div": (lambda a, b: a / b, lambda a, b: a / b),
    "maximum": (pydl.maximum, torch.maximum),
    "where": (lambda a, b: pydl.where(pydl.tensor(True), a, b),
              lambda a, b: torch.where(torch.tensor(True), a, b)),
    "cat": (lambda a, b: pydl.cat([a.reshape(-1), b.reshape(-1)]),
            lambda a, b: torch.cat([a.reshape(-1), b.reshape(-1)])),
}


@pytest.mark.parametrize("op", sorted(OPS))
@pytest.mark.parametrize("ka,kb", list(itertools.product(KINDS, repeat=2)))
def test_ops_compute_in_the_promoted_dtype(op, ka, kb, device):
    ours, theirs = OPS[op]
    for a, b in itertools.product(TENSOR_DTYPES, repeat=2):
        if op == "sub" and pydl.bool in (a, b):
            continue  # torch refuses bool subtraction; numpy too
        if op == "cat" and "zero" in (ka, kb):
            continue  # cat needs at least 1-D tensors
        ta, tb = _torch_operand(ka, a), _torch_operand(kb, b)
        pa = pydl.ones(2 if ka == "dim" else (), dtype=a, device=device)
        pb = pydl.ones(2 if kb == "dim" else (), dtype=b, device=device)
        want = TO_PYDL[theirs(ta, tb).dtype]
        assert ours(pa, pb).dtype == want, (op, ka, a, kb, b)


@pytest.mark.parametrize("scalar", SCALARS, ids=repr)
def test_ops_with_python_numbers_compute_in_the_promoted_dtype(scalar, device):
    for d in TENSOR_DTYPES:
        t = pydl.ones(2, dtype=d, device=device)
        tt = torch.ones(2, dtype=DTYPES[d])
        for ours, theirs in (OPS["add"], OPS["mul"], OPS["maximum"]):
            if ours is pydl.maximum:
                continue  # torch.maximum takes no Python numbers
            assert ours(t, scalar).dtype == TO_PYDL[theirs(tt, scalar).dtype], (d, scalar)
            assert ours(scalar, t).dtype == TO_PYDL[theirs(scalar, tt).dtype], (d, scalar)


def test_mixed_precision_gradients_flow_back_in_each_dtype(device):
    a = pydl.tensor([1.0, 2.0], device=device, requires_grad=True)
    b = pydl.tensor([3.0, 4.0], dtype=pydl.float64, device=device, requires_grad=True)
    y = a * b
    assert y.dtype == pydl.float64
    y.sum().backward()
    assert a.grad.dtype == pydl.float32 and a.grad.tolist() == [3.0, 4.0]
    assert b.grad.dtype == pydl.float64 and b.grad.tolist() == [1.0, 2.0]


def test_in_place_ops_keep_the_dtype_and_refuse_a_higher_category(device):
    f = pydl.ones(2, device=device)
    f += pydl.ones(2, dtype=pydl.float64, device=device)  # float64 result cast back, as torch
    assert f.dtype == pydl.float32 and f.tolist() == [2.0, 2.0]
    i = pydl.tensor([1, 2], device=device)
    i *= 3
    assert i.dtype == pydl.int64 and i.tolist() == [3, 6]
    for t, other in ((pydl.tensor([1, 2], device=device), 2.5),
                     (pydl.tensor([True, False], device=device), 1)):
        with pytest.raises(RuntimeError, match="can't be cast to the tensor's type"):
            t += other
        tt = torch.tensor(t.tolist())
        with pytest.raises(RuntimeError, match="can't be cast"):
            tt += other
