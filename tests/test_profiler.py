"""pydl.profiler: rows per op, backward op and kernel; work counts; restore on exit; trace; log."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import pydl
from pydl import nn
from pydl.autograd import Function
from pydl.backend import cpu


def _rows(prof):
    return {(r.kind, r.name): r for r in prof.key_averages()}


def test_ops_kernels_and_backward_are_recorded():
    a = pydl.randn(6, 5, requires_grad=True)
    b = pydl.randn(5, 4, requires_grad=True)
    with pydl.profiler.profile() as prof:
        for _ in range(3):
            y = (a @ b).sum()
        y.backward()
    rows = _rows(prof)
    matmul_op = next(r for (kind, name), r in rows.items() if kind == "op" and "Mat" in name)
    assert matmul_op.calls == 3 and matmul_op.impl == "NumPy"
    kernel = rows[("kernel", "matmul")]
    assert kernel.calls == 3 + 2  # three forwards, then dA and dB in the one backward
    assert kernel.flops == 3 * 2 * 6 * 4 * 5 + 2 * (2 * 6 * 5 * 4)
    assert any(kind == "backward" for kind, _ in rows)
    for r in rows.values():
        assert 0 <= r.self_ns <= r.total_ns
    assert matmul_op.total_ns >= matmul_op.self_ns  # the kernel's time is not its self time
    text = prof.table(sort_by="total_time", row_limit=3)
    assert text.count("\n") == 3 + 5 - 1 and "GFLOP/s" in prof.table()


def test_conv_and_optimizer_rates_and_implementation():
    conv = nn.Conv2d(2, 3, 3)
    opt = pydl.optim.SGD(conv.parameters(), lr=0.1, momentum=0.9)
    x = pydl.randn(2, 2, 7, 7)
    try:
        cpu.use_extension(False)
        with pydl.profiler.profile() as prof:
            conv(x).sum().backward()
            opt.step()
    finally:
        cpu.use_extension(True)
    rows = _rows(prof)
    fwd = rows[("kernel", "conv2d_forward")]
    assert fwd.impl == "NumPy reference"
    assert fwd.flops == 2 * (2 * 3 * 5 * 5) * (2 * 3 * 3)
    params = 3 * 2 * 3 * 3 * 4 + 3 * 4  # float32 weight and bias bytes
    assert rows[("kernel", "sgd_step")].bytes == 2 * 3 * params - params
    assert "GB/s" in rows[("kernel", "sgd_step")].rate()
    if cpu.extension is not None:
        with pydl.profiler.profile() as prof:
            conv(x)
        assert _rows(prof)[("kernel", "conv2d_forward")].impl == "C++"


def test_nothing_stays_patched_after_the_profile():
    apply = Function.__dict__["apply"]
    table = dict(cpu.implementations)
    with pydl.profiler.profile():
        assert Function.__dict__["apply"] is not apply
        assert cpu.implementations["matmul"] is not table["matmul"]
        with pydl.profiler.profile():  # nested: both record, one set of wrappers
            pass
    assert Function.__dict__["apply"] is apply
    assert cpu.implementations == table
    assert all(cpu.implementations[k] is table[k] for k in table)
    x = pydl.ones(2, requires_grad=True)
    (x * x).sum().backward()  # and everything still works
    assert x.grad.numpy().tolist() == [2.0, 2.0]


def test_chrome_trace(tmp_path):
    x = pydl.randn(3, 3, requires_grad=True)
    with pydl.profiler.profile() as prof:
        (x @ x).relu().sum().backward()
    path = tmp_path / "trace.json"
    prof.export_chrome_trace(path)
    events = json.loads(path.read_text())["traceEvents"]
    assert len(events) == len(prof.records)
    assert {e["ph"] for e in events} == {"X"}
    assert {"op", "kernel", "backward"} <= {e["cat"] for e in events}
    assert all(e["dur"] >= 0 and e["ts"] >= 0 for e in events)


def test_bad_sort_key():
    with pydl.profiler.profile() as prof:
        pydl.ones(2) + 1
    with pytest.raises(ValueError, match="unknown sort_by 'speed'"):
        prof.table(sort_by="speed")


def test_kernel_log_environment_variable():
    code = "import pydl; a = pydl.ones(4, 4); a @ a; a @ a"
    env = dict(os.environ, PYDL_KERNEL_LOG="1")
    err = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stderr
    lines = [line for line in err.splitlines() if line.startswith("pydl kernel matmul")]
    assert len(lines) == 2 and "ms" in lines[0] and "GFLOP/s" in lines[0]
    # with the log on, a profile still puts Function.apply back when it ends
    code = ("import pydl; from pydl.autograd import Function; a = Function.__dict__['apply'];"
            "p = pydl.profiler.profile(); p.__enter__(); p.__exit__(None, None, None);"
            "assert Function.__dict__['apply'] is a; print('restored')")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "restored"
    env["PYDL_KERNEL_LOG"] = "0"
    err = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stderr
    assert "pydl kernel" not in err


def test_results_unchanged_by_profiling():
    x = pydl.randn(4, 5, requires_grad=True)
    w = pydl.randn(5, 3, requires_grad=True)
    plain = (x @ w).tanh().sum()
    plain.backward()
    g = x.grad.numpy().copy()
    x.grad = None
    with pydl.profiler.profile():
        prof_loss = (x @ w).tanh().sum()
        prof_loss.backward()
    np.testing.assert_array_equal(x.grad.numpy(), g)
    assert prof_loss.item() == plain.item()
