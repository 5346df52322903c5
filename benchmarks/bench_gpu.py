"""GPU kernels: pydl's hand-written CUDA kernels against the reference libraries, same run.

Every row first validates pydl's result against the reference (or the NumPy oracle), then
times both with CUDA events (warm-up, then the median of many runs). Compute-bound kernels
report TFLOP/s and the ratio to the reference (cuBLAS through ``cupy.matmul`` with TF32 off,
cuDNN through torch with TF32 off); memory-bound ones report GB/s and the fraction of the
device-to-device copy bandwidth measured at the start of the same run (and the speed ratio
to ``torch.softmax`` / ``torch.optim.AdamW(fused=True)`` where torch is installed).

    python benchmarks/bench_gpu.py                  # everything (a few minutes on an H100)
    python benchmarks/bench_gpu.py --only matmul,softmax --quick

Writes benchmarks/results/gpu_kernels.json and .md naming the GPU, driver, CUDA, CuPy and
NVRTC versions. Without a GPU it prints why and exits with status 0.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import machine_info, markdown_table, print_table, write_results  # noqa: E402

try:
    import cupy
except ImportError:  # pragma: no cover - depends on the machine
    cupy = None

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None

RNG = np.random.default_rng(0)
QUICK = False
SMOKE = False  # --smoke: tiny shapes, to check this script itself (no meaningful timings)


# ----------------------------------------------------------------------------- timing
def time_gpu_ms(fn, *, warmup=3, runs=20, min_time=0.2):
    """Median milliseconds of ``fn()`` between two CUDA events on the current stream.

    torch's default stream is the same legacy stream, so torch work is timed the same way.
    """
    for _ in range(warmup):
        fn()
    cupy.cuda.runtime.deviceSynchronize()
    start, end = cupy.cuda.Event(), cupy.cuda.Event()
    times = []
    began = time.perf_counter()
    while len(times) < runs or (time.perf_counter() - began < min_time and len(times) < 500):
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(cupy.cuda.get_elapsed_time(start, end))
        if QUICK and len(times) >= 5:
            break
    return statistics.median(times)


def rand(*shape, dtype=np.float32):
    return cupy.asarray(RNG.standard_normal(shape).astype(dtype))


def max_rel_err(got, want):
    got, want = cupy.asnumpy(got).astype(np.float64), np.asarray(want, np.float64)
    if hasattr(want, "get"):
        want = want.get()
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30))


def torch_of(a):
    return torch.from_dlpack(a)


def have_torch_cuda():
    return torch is not None and torch.cuda.is_available()


# ----------------------------------------------------------------------------- rows
ROWS = []


def row(group, name, shape, *, ours_ms, ref_ms=None, ref_name="", work=None, unit="",
        copy_gbps=None, target="", err=None, note=""):
    """Record one table row. ``work``: FLOPs (unit TFLOP/s) or bytes (unit GB/s)."""
    entry = {"group": group, "kernel": name, "shape": shape, "ours_ms": ours_ms,
             "reference": ref_name, "ref_ms": ref_ms, "max_rel_err": err, "target": target,
             "note": note}
    if work is not None and ours_ms:
        scale = 1e-9 if unit == "TFLOP/s" else 1e-6
        entry["ours_rate"] = work / ours_ms * scale
        entry["ref_rate"] = work / ref_ms * scale if ref_ms else None
        entry["unit"] = unit
    if ref_ms and ours_ms:
        entry["speed_vs_ref"] = ref_ms / ours_ms
    if copy_gbps and unit == "GB/s" and ours_ms:
        entry["fraction_of_copy"] = entry["ours_rate"] / copy_gbps
    ROWS.append(entry)
    rate = f"{entry['ours_rate']:.1f} {unit}" if "ours_rate" in entry else ""
    vs = f"{entry['speed_vs_ref']:.2f}x {ref_name}" if "speed_vs_ref" in entry else ""
    frac = f"{entry['fraction_of_copy']:.2f} of copy" if "fraction_of_copy" in entry else ""
    print(f"  {name:28s} {shape:28s} {ours_ms:9.4f} ms  {rate:16s} {vs:24s} {frac}", flush=True)
    return entry


def validated(name, err, tol):
    if err is None or err <= tol:
        return True
    print(f"  {name}: INVALID (max relative error {err:.2e} > {tol:.0e}); not timed")
    ROWS.append({"kernel": name, "invalid": True, "max_rel_err": err})
    return False


def measure_copy_bandwidth():
    n = 1 << (16 if SMOKE else 26 if QUICK else 28)
    src = cupy.ones(n, np.float32)
    dst = cupy.empty_like(src)
    ms = time_gpu_ms(lambda: cupy.copyto(dst, src))
    gbps = 2 * src.nbytes / ms * 1e-6
    print(f"device-to-device copy: {gbps:.0f} GB/s (read + write, {src.nbytes >> 20} MiB)")
    return gbps


# ----------------------------------------------------------------------------- benchmarks
def bench_matmul(be, copy_gbps):
    from cupy._core import _routines_linalg as linalg

    sizes = [(4096, 4096, 4096), (8192, 8192, 8192)] if not QUICK else [(2048, 2048, 2048)]
    odd = [(64, 128, 784), (1000, 17, 1000), (256, 1024, 1024), (1000, 1000, 1000),
           (128, 4096, 4096)]
    if SMOKE:
        sizes, odd = [(130, 120, 70)], [(64, 128, 784)]
    previous = linalg.get_compute_type(np.float32)
    for tf32 in (False, True):
        for m, n, k in sizes + ([] if tf32 else odd):
            a, b = rand(m, k), rand(k, n)
            be.set_allow_tf32(tf32)
            linalg.set_compute_type(np.float32, linalg.COMPUTE_TYPE_TF32 if tf32
                                    else linalg.COMPUTE_TYPE_PEDANTIC)
            try:
                want = cupy.matmul(a, b)
                err = max_rel_err(be.matmul(a, b), want)
                name = "matmul TF32" if tf32 else "SGEMM fp32"
                if not validated(name, err, 1e-2 if tf32 else 1e-4):
                    continue
                ours = time_gpu_ms(lambda a=a, b=b: be.matmul(a, b))
                ref = time_gpu_ms(lambda a=a, b=b: cupy.matmul(a, b))
            finally:
                be.set_allow_tf32(False)
                linalg.set_compute_type(np.float32, previous)
            square = m == n == k and m >= 4096
            target = (">= 0.50 (0.80) of cuBLAS TF32" if tf32 else
                      ">= 0.90 (1.0) of cuBLAS" if square else ">= 0.8 (1.0) of cuBLAS")
            row("matmul", name, f"{m}x{n}x{k}", ours_ms=ours, ref_ms=ref,
                ref_name="cuBLAS TF32" if tf32 else "cuBLAS", work=2.0 * m * n * k,
                unit="TFLOP/s", target=target, err=err)


def bench_conv(be, copy_gbps):
    from pydl.backend.cpu import reference as ref

    layers = [(32, 64, 56, 64), (32, 128, 28, 128), (32, 256, 14, 256), (32, 512, 7, 512)]
    if QUICK:
        layers = layers[:2]
    if SMOKE:
        layers = [(3, 8, 7, 16)]
    if have_torch_cuda():
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.benchmark = True
    for layer in layers:
        _bench_conv_layer(be, ref, *layer)


def _bench_conv_layer(be, ref, n, c, hw, o):
    args = ((1, 1), (1, 1), (1, 1), 1)
    x, w = rand(n, c, hw, hw), rand(o, c, 3, 3)
    shape = f"x({n},{c},{hw},{hw}) w({o},{c},3,3)"
    flops = 2.0 * n * o * hw * hw * c * 9
    gy = rand(n, o, hw, hw)
    # validation on the first two samples against the float64 NumPy reference
    xs, gys, wh = x[:2], gy[:2], w.get().astype(np.float64)
    xh, gyh = xs.get().astype(np.float64), gys.get().astype(np.float64)
    checks = {
        "conv2d forward": (be.conv2d_forward(xs, w, *args), ref.conv2d_forward(xh, wh, *args)),
        "conv2d backward data": (be.conv2d_backward_data(gys, w, xs.shape, *args),
                                 ref.conv2d_backward_data(gyh, wh, xh.shape, *args)),
        "conv2d backward weight": (be.conv2d_backward_weight(gys, xs, w.shape, *args),
                                   ref.conv2d_backward_weight(gyh, xh, wh.shape, *args)),
    }
    runs = {
        "conv2d forward": lambda: be.conv2d_forward(x, w, *args),
        "conv2d backward data": lambda: be.conv2d_backward_data(gy, w, x.shape, *args),
        "conv2d backward weight": lambda: be.conv2d_backward_weight(gy, x, w.shape, *args),
    }
    refs = {}
    if have_torch_cuda():
        tx, tw, tgy = torch_of(x), torch_of(w), torch_of(gy)
        refs = {
            "conv2d forward": lambda: torch.nn.functional.conv2d(tx, tw, padding=1),
            "conv2d backward data": lambda: torch.nn.grad.conv2d_input(tx.shape, tw, tgy,
                                                                       padding=1),
            "conv2d backward weight": lambda: torch.nn.grad.conv2d_weight(tx, tw.shape, tgy,
                                                                          padding=1),
        }
    for name, ours_fn in runs.items():
        err = max_rel_err(*checks[name])
        if not validated(name, err, 1e-4):
            continue
        ours = time_gpu_ms(ours_fn)
        ref_ms = time_gpu_ms(refs[name]) if name in refs else None
        target = ">= 0.70 (1.0) of cuDNN" if "forward" in name else ">= 0.60 (1.0) of cuDNN"
        row("conv2d", name, shape, ours_ms=ours, ref_ms=ref_ms,
            ref_name="cuDNN" if ref_ms else "", work=flops, unit="TFLOP/s", target=target,
            err=err, note="" if ref_ms else "torch not installed: no cuDNN reference")


def bench_softmax(be, copy_gbps):
    from pydl.backend.cpu import reference as ref

    shapes = [(8192, 4096), (4096, 8192), (1024, 32768), (65536, 128)]
    if QUICK:
        shapes = shapes[:2]
    if SMOKE:
        shapes = [(70, 4100), (9, 20000), (300, 40)]
    for rows, cols in shapes:
        _bench_softmax_shape(be, ref, copy_gbps, rows, cols)


def _bench_softmax_shape(be, ref, copy_gbps, rows, cols):
    x, gy = rand(rows, cols), rand(rows, cols)
    y = be.softmax_forward(x)
    ly = be.log_softmax_forward(x)
    shape = f"{rows}x{cols}"
    head = slice(0, 64)  # validated rows
    xh, gyh = x[head].get().astype(np.float64), gy[head].get().astype(np.float64)
    yh, lyh = y[head].get().astype(np.float64), ly[head].get().astype(np.float64)
    cases = [  # name, ours, validation (got, want), torch reference, bytes moved
        ("softmax forward", lambda x=x: be.softmax_forward(x),
         (y[head], ref.softmax_forward(xh)), "softmax", 2 * x.nbytes),
        ("log_softmax forward", lambda x=x: be.log_softmax_forward(x),
         (ly[head], ref.log_softmax_forward(xh)), "log_softmax", 2 * x.nbytes),
        ("softmax backward", lambda gy=gy, y=y: be.softmax_backward(gy, y),
         (be.softmax_backward(gy[head], y[head]), ref.softmax_backward(gyh, yh)), None,
         3 * x.nbytes),
        ("log_softmax backward", lambda gy=gy, y=ly: be.log_softmax_backward(gy, y),
         (be.log_softmax_backward(gy[head], ly[head]), ref.log_softmax_backward(gyh, lyh)),
         None, 3 * x.nbytes),
    ]
    for name, ours_fn, (got, want), torch_name, nbytes in cases:
        err = max_rel_err(got, want)
        if not validated(name, err, 1e-5):
            continue
        ours = time_gpu_ms(ours_fn)
        ref_ms = None
        if torch_name and have_torch_cuda():
            tx, fn = torch_of(x), getattr(torch, torch_name)
            ref_ms = time_gpu_ms(lambda tx=tx, fn=fn: fn(tx, -1))
        wide = cols >= 4096
        row("softmax", name, shape, ours_ms=ours, ref_ms=ref_ms,
            ref_name="torch" if ref_ms else "", work=nbytes, unit="GB/s",
            copy_gbps=copy_gbps, err=err,
            target=(">= 0.80 (0.90) of copy" + ("; >= 1.0x (1.3x) torch" if torch_name
                                                else "")) if wide else "")
    target = cupy.asarray(RNG.integers(0, cols, rows))
    th = target[head].get()
    loss, lse = be.cross_entropy_forward(x, target, None, -100, 0.0)
    want_loss, want_lse = ref.cross_entropy_forward(xh, th, None, -100, 0.0)
    err = max(max_rel_err(loss[head], want_loss), max_rel_err(lse[head], want_lse))
    if validated("cross_entropy forward", err, 1e-5):
        be.set_target_checks(False)  # time the kernel, not the host read of the flag
        try:
            ours = time_gpu_ms(lambda x=x, t=target: be.cross_entropy_forward(
                x, t, None, -100, 0.0))
        finally:
            be.set_target_checks(True)
        row("softmax", "cross_entropy forward", shape, ours_ms=ours, work=x.nbytes,
            unit="GB/s", copy_gbps=copy_gbps, target=">= 0.80 (0.90) of copy", err=err,
            note="reads the logits once")
    g = cupy.ones(rows, np.float32)
    got = be.cross_entropy_backward(g[head], x[head], lse[head], target[head], None, -100,
                                    0.0)
    want = ref.cross_entropy_backward(np.ones(len(th)), xh, lse[head].get().astype(np.float64),
                                      th, None, -100, 0.0)
    err = max_rel_err(got, want)
    if validated("cross_entropy backward", err, 1e-5):
        ceb = lambda: be.cross_entropy_backward(g, x, lse, target, None, -100,  # noqa: E731
                                                0.0)
        row("softmax", "cross_entropy backward", shape, ours_ms=time_gpu_ms(ceb),
            work=2 * x.nbytes, unit="GB/s", copy_gbps=copy_gbps, err=err,
            target=">= 0.80 (0.90) of copy")


def bench_pool(be, copy_gbps):
    from pydl.backend.cpu import reference as ref

    shapes = [(64, 64, 112, 112), (32, 256, 28, 28)] if not QUICK else [(16, 64, 56, 56)]
    if SMOKE:
        shapes = [(3, 4, 11, 12)]
    for shape in shapes:
        _bench_pool_shape(be, ref, copy_gbps, shape)


def _bench_pool_shape(be, ref, copy_gbps, shape):
    x = rand(*shape)
    label = "x".join(map(str, shape))
    xs = x[:2]
    xh = xs.get().astype(np.float64)
    for name, k, s, p in (("max_pool2d", (3, 3), (2, 2), (1, 1)),
                          ("avg_pool2d", (2, 2), (2, 2), (0, 0))):
        if name == "max_pool2d":
            y, arg = be.max_pool2d_forward(x, k, s, p)
            gy = rand(*y.shape)
            want_y, want_arg = ref.max_pool2d_forward(xh, k, s, p)
            ys, args_s = be.max_pool2d_forward(xs, k, s, p)
            err = max(max_rel_err(ys, want_y),
                      max_rel_err(be.max_pool2d_backward(gy[:2], args_s, xs.shape),
                                  ref.max_pool2d_backward(gy[:2].get().astype(np.float64),
                                                          want_arg, xh.shape)))
            fwd = lambda x=x, k=k, s=s, p=p: be.max_pool2d_forward(x, k, s, p)  # noqa: E731
            bwd = lambda gy=gy, a=arg: be.max_pool2d_backward(gy, a, x.shape)  # noqa: E731
            fwd_bytes = x.nbytes + y.nbytes + arg.nbytes
            bwd_bytes = gy.nbytes + arg.nbytes + 2 * x.nbytes  # zero fill + scatter
        else:
            y = be.avg_pool2d_forward(x, k, s, p)
            gy = rand(*y.shape)
            gyh = gy[:2].get().astype(np.float64)
            err = max(max_rel_err(be.avg_pool2d_forward(xs, k, s, p),
                                  ref.avg_pool2d_forward(xh, k, s, p)),
                      max_rel_err(be.avg_pool2d_backward(gy[:2], xs.shape, k, s, p),
                                  ref.avg_pool2d_backward(gyh, xh.shape, k, s, p)))
            fwd = lambda x=x, k=k, s=s, p=p: be.avg_pool2d_forward(x, k, s, p)  # noqa: E731
            bwd = lambda gy=gy, k=k, s=s, p=p: be.avg_pool2d_backward(  # noqa: E731
                gy, x.shape, k, s, p)
            fwd_bytes = x.nbytes + y.nbytes
            bwd_bytes = gy.nbytes + x.nbytes
        if not validated(name, err, 1e-5):
            continue
        row("pool", f"{name} forward", label, ours_ms=time_gpu_ms(fwd), work=fwd_bytes,
            unit="GB/s", copy_gbps=copy_gbps, target=">= 0.75 (0.85) of copy", err=err)
        row("pool", f"{name} backward", label, ours_ms=time_gpu_ms(bwd), work=bwd_bytes,
            unit="GB/s", copy_gbps=copy_gbps, target=">= 0.75 (0.85) of copy", err=err)


def _model_sizes():
    """Parameter sizes of a ResNet-50-like model (about 25M parameters, 161 tensors)."""
    sizes = []
    for c in (64, 128, 256, 512):
        for _ in range(10):
            sizes += [c * c * 9, c, c]
    sizes += [2048 * 1000, 1000]
    total = sum(sizes)
    scale = 25_000_000 / total
    return [max(1, int(s * scale)) for s in sizes]


def bench_optim(be, copy_gbps):
    sizes = _model_sizes() if not QUICK else _model_sizes()[:40]
    if SMOKE:
        sizes = [s // 1000 + 1 for s in sizes[:12]]
    params = [rand(s) for s in sizes]
    grads = [rand(s) for s in sizes]
    m = [cupy.zeros(s, np.float32) for s in sizes]
    v = [cupy.zeros(s, np.float32) for s in sizes]
    count = sum(sizes)
    label = f"{count / 1e6:.1f}M params, {len(sizes)} tensors"
    kw = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01, step=1,
              amsgrad=False, decoupled_weight_decay=True, maximize=False)
    from pydl.backend.cpu import reference as ref

    few = [[a[:4096].copy() for a in lst[:6]] for lst in (params, grads, m, v)]
    host = [[a.get() for a in lst] for lst in few]
    be.adam_step(*few, None, **kw)
    ref.adam_step(*host, None, **kw)
    err = max(max_rel_err(a, b) for a, b in zip(few[0], host[0], strict=True))
    if not validated("AdamW step", err, 1e-5):
        return
    adamw = lambda: be.adam_step(params, grads, m, v, None, **kw)  # noqa: E731
    ours = time_gpu_ms(adamw)
    ref = None
    if have_torch_cuda():
        tp = [torch.nn.Parameter(torch_of(p.copy())) for p in params]
        for t, g in zip(tp, grads, strict=True):
            t.grad = torch_of(g)
        opt = torch.optim.AdamW(tp, lr=1e-3, weight_decay=0.01, fused=True)
        ref = time_gpu_ms(opt.step)
    row("optim", "AdamW step (fused)", label, ours_ms=ours, ref_ms=ref,
        ref_name="torch fused" if ref else "", work=28.0 * count, unit="GB/s",
        copy_gbps=copy_gbps, target=">= 0.80 (0.90) of copy; >= 1.0x (1.2x) torch", err=err)
    sgd = lambda: be.sgd_step(params, grads, m, lr=0.1, momentum=0.9, dampening=0.0,  # noqa: E731
                              weight_decay=0.0, nesterov=False, maximize=False,
                              first_step=False)
    row("optim", "SGD-momentum step", label, ours_ms=time_gpu_ms(sgd), work=20.0 * count,
        unit="GB/s", copy_gbps=copy_gbps, target=">= 0.80 (0.90) of copy")


def bench_overhead(be, copy_gbps):
    import pydl

    a = pydl.ones(4, device="cuda", requires_grad=True)
    b = pydl.ones(4, device="cuda")

    def op():
        return a * b + b

    for _ in range(200):
        op()
    cupy.cuda.runtime.deviceSynchronize()
    calls = 2000
    t0 = time.perf_counter()
    for _ in range(calls):
        op()
    cupy.cuda.runtime.deviceSynchronize()
    us = (time.perf_counter() - t0) / (2 * calls) * 1e6
    ROWS.append({"group": "overhead", "kernel": "Python overhead per op", "shape": "(4,) mul/add",
                 "us_per_op": us, "target": "<= 15 us (8 us)"})
    print(f"  Python overhead per op (autograd + launch): {us:.1f} us")


def bench_mlp_step(be, copy_gbps):
    """784-256-128-10 MLP, cross-entropy, AdamW: pydl eager vs PyTorch eager, same sizes."""
    import pydl
    from pydl import nn, optim

    for batch in (64, 1024):
        x = rand(batch, 784)
        y = cupy.asarray(RNG.integers(0, 10, batch))
        model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                              nn.Linear(128, 10)).to("cuda")
        opt = optim.AdamW(model.parameters(), lr=1e-3)
        xt, yt = pydl.tensor(x, device="cuda"), pydl.tensor(y, device="cuda")

        def step(model=model, opt=opt, xt=xt, yt=yt):
            opt.zero_grad()
            nn.functional.cross_entropy(model(xt), yt).backward()
            opt.step()

        ours = time_gpu_ms(step)
        ref = None
        if have_torch_cuda():
            tm = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(),
                                     torch.nn.Linear(256, 128), torch.nn.ReLU(),
                                     torch.nn.Linear(128, 10)).cuda()
            topt = torch.optim.AdamW(tm.parameters(), lr=1e-3)
            tx, ty = torch_of(x), torch_of(y)

            def tstep(tm=tm, topt=topt, tx=tx, ty=ty):
                topt.zero_grad()
                torch.nn.functional.cross_entropy(tm(tx), ty).backward()
                topt.step()

            ref = time_gpu_ms(tstep)
        row("train", "MLP training step (eager)", f"784-256-128-10, batch {batch}",
            ours_ms=ours, ref_ms=ref, ref_name="torch eager" if ref else "",
            target=">= 0.8x (1.0x) torch eager" if batch == 1024 else
            ">= 1.0x (2.0x) torch eager, with CUDA graphs (not captured here)")


BENCHES = {"matmul": bench_matmul, "conv": bench_conv, "softmax": bench_softmax,
           "pool": bench_pool, "optim": bench_optim, "overhead": bench_overhead,
           "mlp": bench_mlp_step}


# ----------------------------------------------------------------------------- report
def environment():
    props = cupy.cuda.runtime.getDeviceProperties(0)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]

    def ver(v):
        return f"{v // 1000}.{v % 1000 // 10}"

    from pydl.backend import cuda as cuda_backend

    info = machine_info(
        gpu=name, sms=props["multiProcessorCount"],
        driver=ver(cupy.cuda.runtime.driverGetVersion()),
        cuda_runtime=ver(cupy.cuda.runtime.runtimeGetVersion()), cupy=cupy.__version__,
        nvrtc=".".join(map(str, cuda_backend.nvrtc_version())),
    )
    if torch is not None:
        info["torch"] = torch.__version__
    return info


def _fmt(v, spec):
    return "" if v is None else format(v, spec)


def table_rows():
    out = []
    for r in ROWS:
        if r.get("invalid"):
            out.append([r["kernel"], "", "INVALID", "", "", "", "", ""])
        elif r.get("failed"):
            out.append([r["kernel"], "", "FAILED", "", "", "", "", r["failed"][:60]])
        elif "us_per_op" in r:
            out.append([r["kernel"], r["shape"], f"{r['us_per_op']:.1f} us", "", "", "", "",
                        r["target"]])
        else:
            out.append([r["kernel"], r["shape"], _fmt(r["ours_ms"], ".4f"),
                        _fmt(r.get("ref_ms"), ".4f"),
                        f"{r['ours_rate']:.1f} {r['unit']}" if "ours_rate" in r else "",
                        _fmt(r.get("speed_vs_ref"), ".2f") + ("x " + r["reference"]
                                                                if r.get("speed_vs_ref") else ""),
                        _fmt(r.get("fraction_of_copy"), ".2f"), r["target"]])
    return out


HEADERS = ["kernel", "shape", "pydl ms", "ref ms", "pydl rate", "speed vs ref", "of copy BW",
           "target (stretch)"]


def main(argv=None):
    global QUICK, SMOKE
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="comma-separated: " + ",".join(BENCHES))
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer runs")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny shapes: checks the script, not the GPU (implies --no-write)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    QUICK, SMOKE = args.quick or args.smoke, args.smoke
    args.no_write = args.no_write or args.smoke
    import pydl.cuda

    if not pydl.cuda.is_available():
        reason = "CuPy is not installed" if cupy is None else "no usable CUDA GPU"
        print(f"bench_gpu: {reason}; nothing to measure (the GPU rows stay owed).")
        return 0
    from pydl.backend import cuda as be

    env = environment()
    print(f"{env['gpu']} ({env['sms']} SMs), driver {env['driver']}, CUDA {env['cuda_runtime']}, "
          f"CuPy {env['cupy']}, NVRTC {env['nvrtc']}")
    t0 = time.perf_counter()
    be.precompile()
    print(f"compiled every kernel in {time.perf_counter() - t0:.1f} s (cached on disk by CuPy)")
    copy_gbps = measure_copy_bandwidth()
    chosen = [s for s in args.only.split(",") if s] or list(BENCHES)
    for key in chosen:
        print(f"\n[{key}]", flush=True)
        t0 = time.perf_counter()
        try:
            BENCHES[key](be, copy_gbps)
        except Exception as exc:  # noqa: BLE001 - report it and measure the other groups
            print(f"  {key} FAILED: {type(exc).__name__}: {exc}")
            ROWS.append({"group": key, "kernel": key, "failed": f"{type(exc).__name__}: {exc}"})
        print(f"  ({time.perf_counter() - t0:.0f} s)")
    print_table(HEADERS, table_rows(), title="pydl CUDA kernels")
    if not args.no_write:
        notes = ("Median of CUDA-event timings after warm-up; every result validated first. "
                 "Ratios > 1 mean pydl is faster. 'of copy BW' is the kernel's bytes moved "
                 f"per second over the copy bandwidth measured in the same run "
                 f"({copy_gbps:.0f} GB/s).")
        md = ["# GPU kernels: pydl vs reference libraries", ""]
        md += [f"- {k}: {v}" for k, v in env.items()]
        md += ["", notes, "", markdown_table(HEADERS, table_rows())]
        paths = write_results("gpu_kernels", {"env": env, "copy_gbps": copy_gbps, "rows": ROWS},
                              "\n".join(md))
        print("\nwrote " + " and ".join(paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
