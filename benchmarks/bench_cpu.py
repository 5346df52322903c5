"""CPU kernels: the C++ extension (pydl._C) against the NumPy reference, in the same run.

For every kernel it first checks that the C++ result matches the reference, then times both
(median after warm-up) and prints ``kernel | shape | numpy ms | C++ ms | speedup``. A second
table gives pydl's Python overhead per op on tiny tensors (autograd bookkeeping, no real
math), next to PyTorch's when it is installed. Results go to benchmarks/results/cpu_kernels.json
and .md, with the machine's description.

    python benchmarks/bench_cpu.py                    # about a minute on 2 cores
    python benchmarks/bench_cpu.py --blas-threads 0   # leave OpenBLAS's threads alone

Both implementations call NumPy's matmul (OpenBLAS) for the GEMM of a convolution. By
default OpenBLAS runs single-threaded here: on a small machine that other processes also use,
its spinning threads stall for whole scheduler slices (a 0.2 ms GEMM measured 5 to 900 ms),
which buries the kernels being compared. The C++ kernels keep all their threads.
"""

from __future__ import annotations

import os
import sys
from functools import partial


def _blas_threads_from_argv(default: str = "1") -> str:
    """--blas-threads N (0: OpenBLAS's default); read before NumPy loads OpenBLAS."""
    for i, arg in enumerate(sys.argv):
        if arg.startswith("--blas-threads"):
            return arg.split("=", 1)[1] if "=" in arg else sys.argv[i + 1]
    return default


BLAS_THREADS = _blas_threads_from_argv()
if BLAS_THREADS != "0":
    os.environ["OPENBLAS_NUM_THREADS"] = BLAS_THREADS

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import (  # noqa: E402
    machine_info,
    print_table,
    time_stats,
    time_us_per_call,
    write_results,
)

import pydl  # noqa: E402
from pydl.backend import cpu  # noqa: E402

ref, ext = cpu.reference, cpu.extension
DTYPE = np.float32
RNG = np.random.default_rng(0)


def rand(*shape, low=-1.0, high=1.0):
    return RNG.uniform(low, high, size=shape).astype(DTYPE)


def as_tuple(out):
    return out if isinstance(out, tuple) else (out,)


def validate(name, got, want, scale=1.0):
    for g, w in zip(as_tuple(got), as_tuple(want), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4 * scale, atol=1e-5 * scale,
                                   err_msg=f"{name}: C++ and reference disagree")


# ----------------------------------------------------------------------------- cases
# Each case: (kernel, shape label, run(kernels) -> outputs, tolerance scale). ``run`` takes
# the kernel module (reference or extension) and closes over prepared inputs.


def conv_cases():
    layers = [
        ("LeNet conv1", (64, 1, 28, 28), (6, 1, 5, 5), (1, 1), (0, 0), 1),
        ("LeNet conv2", (64, 6, 12, 12), (16, 6, 5, 5), (1, 1), (0, 0), 1),
        ("3x3 p1", (32, 64, 16, 16), (64, 64, 3, 3), (1, 1), (1, 1), 1),
        ("3x3 s2 p1", (32, 32, 32, 32), (64, 32, 3, 3), (2, 2), (1, 1), 1),
        ("depthwise 3x3", (32, 64, 16, 16), (64, 1, 3, 3), (1, 1), (1, 1), 64),
    ]
    for label, xs, ws, stride, padding, groups in layers:
        x, w = rand(*xs), rand(*ws)
        args = (stride, padding, (1, 1), groups)
        gy = rand(*ref.conv2d_forward(x, w, *args).shape)
        shape = f"{label}: x{xs} w{ws}"
        yield ("conv2d_forward", shape, lambda k, x=x, w=w, a=args: k.conv2d_forward(x, w, *a), 1)
        yield ("conv2d_backward_data", shape,
               lambda k, gy=gy, w=w, xs=xs, a=args: k.conv2d_backward_data(gy, w, xs, *a), 1)
        yield ("conv2d_backward_weight", shape,
               lambda k, gy=gy, x=x, ws=ws, a=args: k.conv2d_backward_weight(gy, x, ws, *a), 10)


def _ref_im2col(x, k, p, out_hw):
    """The reference's im2col (N, 1, C*kH*kW, P), rearranged to the C++ layout (C*kH*kW, N*P)."""
    cols = ref._im2col(x, k, (1, 1), p, (1, 1), 1, out_hw)
    return cols[:, 0].transpose(1, 0, 2).reshape(-1, x.shape[0] * out_hw[0] * out_hw[1])


def _ref_col2im(cols, xs, k, p, out_hw):
    """The reference's col2im of C++-layout columns."""
    c6 = cols.reshape(xs[1], k[0], k[1], xs[0], *out_hw).transpose(3, 0, 1, 2, 4, 5)
    padded = (xs[2] + 2 * p[0], xs[3] + 2 * p[1])
    return np.ascontiguousarray(ref._col2im(c6, padded, (1, 1), (1, 1), p, out_hw))


def _ext_im2col(x, k, p, out_hw):
    cols = np.empty((x.shape[1] * k[0] * k[1], x.shape[0] * out_hw[0] * out_hw[1]), DTYPE)
    ext._C.im2col(x, cols, k, (1, 1), p, (1, 1))
    return cols


def _ext_col2im(cols, xs, k, p, out_hw):
    gx = np.empty(xs, DTYPE)
    ext._C.col2im(cols, gx, k, (1, 1), p, (1, 1))
    return gx


def im2col_cases():
    """im2col / col2im alone: the C++ kernels against the reference's strided-view versions."""
    for label, xs, k, p in [("LeNet conv2", (64, 6, 12, 12), (5, 5), (0, 0)),
                            ("3x3 p1", (32, 64, 16, 16), (3, 3), (1, 1))]:
        x = rand(*xs)
        out_hw = (xs[2] + 2 * p[0] - k[0] + 1, xs[3] + 2 * p[1] - k[1] + 1)
        cols = _ext_im2col(x, k, p, out_hw)
        shape = f"{label}: x{xs} k{k}"
        yield ("im2col", shape, lambda kn, a=(x, k, p, out_hw):
               (_ref_im2col if kn is ref else _ext_im2col)(*a), 1)
        yield ("col2im", shape, lambda kn, a=(cols, xs, k, p, out_hw):
               (_ref_col2im if kn is ref else _ext_col2im)(*a), 1)


def pool_cases():
    for xs, k, s, p in [((64, 6, 24, 24), (2, 2), (2, 2), (0, 0)),
                        ((32, 64, 32, 32), (3, 3), (2, 2), (1, 1))]:
        x = rand(*xs)
        shape = f"x{xs} k{k} s{s} p{p}"
        y, idx = ref.max_pool2d_forward(x, k, s, p)
        gy = rand(*y.shape)
        yield ("max_pool2d_forward", shape,
               lambda kn, x=x, k=k, s=s, p=p: kn.max_pool2d_forward(x, k, s, p), 1)
        yield ("max_pool2d_backward", shape,
               lambda kn, gy=gy, idx=idx, xs=xs: kn.max_pool2d_backward(gy, idx, xs), 1)
        yield ("avg_pool2d_forward", shape,
               lambda kn, x=x, k=k, s=s, p=p: kn.avg_pool2d_forward(x, k, s, p), 1)
        yield ("avg_pool2d_backward", shape,
               lambda kn, gy=gy, xs=xs, k=k, s=s, p=p: kn.avg_pool2d_backward(gy, xs, k, s, p), 1)


def softmax_cases():
    for shape in [(256, 4096), (4096, 10)]:
        x, gy = rand(*shape, low=-10, high=10), rand(*shape)
        y, ly = ref.softmax_forward(x), ref.log_softmax_forward(x)
        label = str(shape)
        yield "softmax_forward", label, lambda k, x=x: k.softmax_forward(x), 1
        yield "softmax_backward", label, lambda k, gy=gy, y=y: k.softmax_backward(gy, y), 1
        yield "log_softmax_forward", label, lambda k, x=x: k.log_softmax_forward(x), 1
        yield ("log_softmax_backward", label,
               lambda k, gy=gy, y=ly: k.log_softmax_backward(gy, y), 1)


def xent_cases():
    for n, c, weighted, eps in [(256, 1000, True, 0.1), (256, 10, False, 0.0),
                                (4096, 10, False, 0.0)]:
        logits = rand(n, c, low=-5, high=5)
        target = RNG.integers(0, c, n).astype(np.int64)
        target[::17] = -100
        weight = rand(c, low=0.5, high=1.5) if weighted else None
        _, lse = ref.cross_entropy_forward(logits, target, weight, -100, eps)
        g = rand(n)
        label = f"({n}, {c})" + (" weight, smoothing 0.1" if weighted else "")
        yield ("cross_entropy_forward", label,
               lambda k, a=(logits, target, weight, -100, eps): k.cross_entropy_forward(*a), 10)
        yield ("cross_entropy_backward", label,
               lambda k, a=(g, logits, lse, target, weight, -100, eps):
               k.cross_entropy_backward(*a), 1)


MLP_SHAPES = [(256, 784), (256,), (128, 256), (128,), (10, 128), (10,)]
CNN_SHAPES = [(64, 64, 3, 3)] * 8 + [(64,)] * 16 + [(128, 64, 3, 3), (128, 128, 3, 3)] * 4 + [
    (1000, 512), (1000,)]


def optimizer_cases():
    steps = {
        "sgd_step": (1, lambda k, p, g, s: k.sgd_step(
            p, g, s[0], lr=0.01, momentum=0.9, dampening=0.0, weight_decay=1e-4,
            nesterov=False, maximize=False, first_step=False)),
        "adam_step (AdamW)": (2, lambda k, p, g, s: k.adam_step(
            p, g, s[0], s[1], None, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
            weight_decay=0.01, step=10, amsgrad=False, decoupled_weight_decay=True,
            maximize=False)),
        "rmsprop_step": (1, lambda k, p, g, s: k.rmsprop_step(
            p, g, s[0], None, None, lr=1e-3, alpha=0.99, eps=1e-8, weight_decay=0.0,
            momentum=0.0, centered=False, maximize=False)),
        "adagrad_step": (1, lambda k, p, g, s: k.adagrad_step(
            p, g, s[0], lr=1e-2, lr_decay=0.0, weight_decay=0.0, eps=1e-10, step=10,
            maximize=False)),
    }
    for label, shapes in [("MLP 784-256-128-10", MLP_SHAPES), ("CNN-like", CNN_SHAPES)]:
        count = sum(int(np.prod(s)) for s in shapes)
        params = [rand(*s) for s in shapes]
        grads = [rand(*s) for s in shapes]
        for name, (n_states, step) in steps.items():
            states = [[np.abs(rand(*s)) for s in shapes] for _ in range(n_states)]
            yield (name, f"{label}, {len(shapes)} tensors, {count:,} params",
                   partial(_step_copies, step, params, grads, states), 1,
                   partial(_step_in_place, step, grads, [a.copy() for a in params],
                           [[a.copy() for a in st] for st in states]))


def _step_copies(step, params, grads, states, kernels):
    """One step on fresh copies (for validation: both implementations see the same state)."""
    p = [a.copy() for a in params]
    step(kernels, p, grads, [[a.copy() for a in st] for st in states])
    return tuple(p)


def _step_in_place(step, grads, params, states, kernels):
    """One step in place (for timing: no copies)."""
    step(kernels, params, grads, states)


def activation_cases():
    """GELU at a Transformer MLP's size (batch 64 x 32 tokens, 256 wide), and erf alone."""
    shape = (64 * 32, 256)
    x, gy = rand(*shape, low=-5, high=5), rand(*shape)
    _, cdf = ref.gelu_forward(x)
    label = str(shape)
    yield "erf", label, lambda k, x=x: k.erf(x), 1
    yield "gelu_forward", label, lambda k, x=x: k.gelu_forward(x), 1
    yield ("gelu_backward", label,
           lambda k, gy=gy, x=x, cdf=cdf: k.gelu_backward(gy, x, cdf), 1)


def all_cases():
    for gen in (conv_cases, im2col_cases, pool_cases, softmax_cases, xent_cases,
                activation_cases, optimizer_cases):
        for case in gen():
            yield case if len(case) == 5 else case + (None,)


# ----------------------------------------------------------------------------- overhead


def overhead_rows():
    """Microseconds per op on 4-element tensors: forward with a graph, forward + backward."""
    a = pydl.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
    b = pydl.tensor([0.5, 1.5, 2.5, 3.5], requires_grad=True)
    ops = {"mul": lambda x, y: x * y, "add": lambda x, y: x + y,
           "exp": lambda x, y: pydl.exp(x)}
    try:
        import torch

        ta = torch.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
        tb = torch.tensor([0.5, 1.5, 2.5, 3.5], requires_grad=True)
        tops = {"mul": lambda x, y: x * y, "add": lambda x, y: x + y,
                "exp": lambda x, y: torch.exp(x)}
    except ImportError:
        torch = None
    rows = []
    for name, op in ops.items():
        fwd = time_us_per_call(lambda op=op: op(a, b))
        both = time_us_per_call(lambda op=op: op(a, b).sum().backward(), calls=1000)
        row = {"op": name, "pydl_forward_us": fwd, "pydl_forward_backward_us": both}
        if torch is not None:
            top = tops[name]
            row["torch_forward_us"] = time_us_per_call(lambda top=top: top(ta, tb))
            row["torch_forward_backward_us"] = time_us_per_call(
                lambda top=top: top(ta, tb).sum().backward(), calls=1000)
        rows.append(row)
    return rows


def main():
    if ext is None:
        sys.exit("the C++ extension pydl._C is not built: pip install -e . (see README)")
    results = []
    for name, shape, run, scale, timed in all_cases():
        validate(f"{name} {shape}", run(ext), run(ref), scale)
        s_ref = time_stats(partial(timed or run, ref), max_runs=20)
        s_ext = time_stats(partial(timed or run, ext), max_runs=50)
        t_ref, t_ext = s_ref["median_ms"], s_ext["median_ms"]
        results.append({"kernel": name, "shape": shape, "numpy_ms": t_ref, "cpp_ms": t_ext,
                        "speedup": t_ref / t_ext, "numpy_min_ms": s_ref["min_ms"],
                        "cpp_min_ms": s_ext["min_ms"]})
        print(f"{name:24s} {shape:50s} {t_ref:9.3f} {t_ext:9.3f} {t_ref / t_ext:6.1f}x",
              flush=True)
    headers = ["kernel", "shape", "numpy ms", "C++ ms", "speedup"]
    rows = [[r["kernel"], r["shape"], f"{r['numpy_ms']:.3f}", f"{r['cpp_ms']:.3f}",
             f"{r['speedup']:.1f}x"] for r in results]
    kernels_md = print_table(headers, rows, "C++ kernels vs the NumPy reference (float32)")

    overhead = overhead_rows()
    oh_headers = ["op (4 elements)", "pydl fwd us", "pydl fwd+bwd us", "torch fwd us",
                  "torch fwd+bwd us"]
    oh_rows = [[r["op"], f"{r['pydl_forward_us']:.1f}", f"{r['pydl_forward_backward_us']:.1f}",
                f"{r['torch_forward_us']:.1f}" if "torch_forward_us" in r else "not run",
                f"{r['torch_forward_backward_us']:.1f}" if "torch_forward_us" in r
                else "not run"] for r in overhead]
    overhead_md = print_table(oh_headers, oh_rows,
                              "Python overhead per op (fwd: y = op(a, b) with autograd on; "
                              "fwd+bwd: op(a, b).sum().backward())")

    info = machine_info(cpp_threads=ext.num_threads(),
                        openblas_threads=os.environ.get("OPENBLAS_NUM_THREADS", "default"),
                        extension_build=dict(ext._C.build_info()), dtype=np.dtype(DTYPE).name)
    try:
        import torch

        info["torch"] = torch.__version__
    except ImportError:
        pass
    below = [r for r in results if r["speedup"] < 2.0]
    summary = (f"{len(results) - len(below)} of {len(results)} kernels reach the >= 2x target"
               + (": below it " + ", ".join(f"{r['kernel']} ({r['shape']}, "
                                            f"{r['speedup']:.1f}x)" for r in below)
                  if below else "."))
    if "torch" not in info:
        summary += (" The overhead rows have no PyTorch column: PyTorch is not installed "
                    "(pip install torch).")
    print("\n" + summary)
    machine = "\n".join(f"- {k}: {v}" for k, v in info.items())
    markdown = (f"# CPU kernels: C++ (pydl._C) vs NumPy reference\n\n{machine}\n\n"
                f"Median of repeated runs after warm-up; each C++ result validated against the "
                f"reference first. The conv2d rows include the GEMM, which both sides run "
                f"in NumPy's matmul (OpenBLAS, {os.environ.get('OPENBLAS_NUM_THREADS', 'default')}"
                f" thread(s)); the C++ part of a convolution is im2col / col2im (its own rows), "
                f"or the direct loops of depthwise layers.\n\n{kernels_md}\n\n{summary}\n\n"
                f"## Python overhead per op (tiny tensors)\n\n{overhead_md}\n")
    paths = write_results("cpu_kernels", {"machine": info, "kernels": results,
                                          "overhead": overhead}, markdown)
    print("\nwrote " + " and ".join(paths))


if __name__ == "__main__":
    main()
