"""What ptxas makes of every CUDA kernel pydl launches, without a GPU.

    python benchmarks/kernel_report.py [--arch sm_80 sm_90] [--nvrtc 13] [--out DIR] [--filter RE]

The kernel list, the sources and the NVRTC options are the backend's own
(``pydl.backend.cuda.instances()``, ``kernel_source``, ``nvrtc_options``; block sizes from
``launch_block``). Each file is compiled once per architecture with ``-Xptxas=-v`` through the
NVRTC library chosen by ``--nvrtc`` (a CUDA major version such as 12 or 13, or a path; default
the newest installed), and the cubin is disassembled with ``cuobjdump -sass`` (pip package
``nvidia-cuda-cuobjdump``, in the ``test`` and ``kernels`` extras). Per kernel it reports
registers, spill stores/loads, static shared memory, the launch block, the theoretical
occupancy and what limits it, the widths of its global loads, and for the GEMM/conv kernels the
main loop: its length, the share of FFMA/DFMA/HMMA among its instructions, and ``prefetch``:
the fraction of a K-step's math that issues between the loop's global loads and the next
shared-memory store, or for cp.async (LDGSTS) the next wait for it (DEPBAR) (near 0 when
ptxas sinks the next tile's loads down to the store, so every step waits for memory; near 1
when they issue ahead of the math). ``--out DIR`` writes
kernels_sm80.md and kernels_sm90.md (and .json, and a .png when matplotlib is there). Exit
status 0; 2 when NVRTC or cuobjdump is missing or a file fails to compile. ``nvidia-cuda-
nvdisasm`` must be installed too (cuobjdump calls it).
"""

from __future__ import annotations

import argparse
import ctypes
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from pydl.backend import cuda as ck

ARCHS = ("sm_80", "sm_90")
# Per SM: registers, shared memory for blocks (largest carveout), threads, resident blocks.
SM_LIMITS = {
    "sm_80": {"regs": 65536, "smem": 164 * 1024, "threads": 2048, "blocks": 32},
    "sm_90": {"regs": 65536, "smem": 228 * 1024, "threads": 2048, "blocks": 32},
}
SMEM_PER_BLOCK_RESERVED = 1024
LOOP_KERNELS = re.compile(r"matmul|conv2d")
MATH_OPS = ("FFMA", "DFMA", "HMMA")


class ToolMissing(RuntimeError):
    """NVRTC or cuobjdump is not installed."""


# ----------------------------------------------------------------------------- the tools
def _lib_dirs():
    """site-packages/nvidia/*/lib and /bin folders of the running interpreter."""
    import site

    roots = [p for p in sys.path if p.endswith("site-packages")] + list(site.getsitepackages())
    found = []
    for root in dict.fromkeys(roots):
        found += glob.glob(os.path.join(root, "nvidia", "*"))
    return found


def nvrtc_libraries() -> dict[int, str]:
    """{CUDA major: path of libnvrtc.so.MAJOR} for every NVRTC wheel installed."""
    out = {}
    for d in _lib_dirs():
        for path in glob.glob(os.path.join(d, "lib", "libnvrtc.so.*")):
            m = re.search(r"libnvrtc\.so\.(\d+)", path)
            if m:
                out.setdefault(int(m.group(1)), path)
    return out


def _tool(name: str):
    for d in _lib_dirs():
        path = os.path.join(d, "bin", name)
        if os.access(path, os.X_OK):
            return path
    return shutil.which(name)


def cuobjdump() -> str:
    """cuobjdump's path; it disassembles through nvdisasm, which must be installed too."""
    path, nvdisasm = _tool("cuobjdump"), _tool("nvdisasm")
    if path is None or nvdisasm is None:
        raise ToolMissing("cuobjdump and nvdisasm are needed for the SASS: pip install "
                          "nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm (in pydl[test])")
    return path


class Nvrtc:
    """The NVRTC C API through ctypes, so that a chosen version (12 or 13) is used."""

    def __init__(self, which=None):
        libs = nvrtc_libraries()
        if which is not None and os.path.isfile(str(which)):
            path = str(which)
        elif not libs:
            raise ToolMissing("no NVRTC library: pip install nvidia-cuda-nvrtc (13) or "
                              "nvidia-cuda-nvrtc-cu12 (12)")
        elif which is None:
            path = libs[max(libs)]
        elif int(which) in libs:
            path = libs[int(which)]
        else:
            raise ToolMissing(f"NVRTC {which} is not installed (found {sorted(libs)})")
        for builtins in glob.glob(os.path.join(os.path.dirname(path), "libnvrtc-builtins.so*")):
            ctypes.CDLL(builtins, mode=ctypes.RTLD_GLOBAL)
        self.lib = ctypes.CDLL(path)
        self.lib.nvrtcGetErrorString.restype = ctypes.c_char_p
        major, minor = ctypes.c_int(), ctypes.c_int()
        self.lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
        self.version = f"{major.value}.{minor.value}"
        self.path = path

    def _ok(self, rc, what):
        if rc:
            raise RuntimeError(f"NVRTC {what}: {self.lib.nvrtcGetErrorString(rc).decode()}")

    def _text(self, prog, size_fn, get_fn):
        n = ctypes.c_size_t()
        self._ok(size_fn(prog, ctypes.byref(n)), "size")
        buf = ctypes.create_string_buffer(n.value)
        self._ok(get_fn(prog, buf), "get")
        return buf.raw[: n.value]

    def compile(self, source, name, options, exprs):
        """(log, cubin, {name expression: mangled name}); RuntimeError on a failed compile."""
        lib, prog = self.lib, ctypes.c_void_p()
        self._ok(lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), name.encode(),
                                        0, None, None), "createProgram")
        try:
            for e in exprs:
                self._ok(lib.nvrtcAddNameExpression(prog, e.encode()), "addNameExpression")
            opts = [o.encode() for o in options]
            rc = lib.nvrtcCompileProgram(prog, len(opts), (ctypes.c_char_p * len(opts))(*opts))
            log = self._text(prog, lib.nvrtcGetProgramLogSize, lib.nvrtcGetProgramLog)
            log = log.rstrip(b"\0").decode(errors="replace")
            if rc:
                raise RuntimeError(f"NVRTC {self.version} failed on {name}:\n{log}")
            lowered = {}
            for e in exprs:
                p = ctypes.c_char_p()
                self._ok(lib.nvrtcGetLoweredName(prog, e.encode(), ctypes.byref(p)), "lowered")
                lowered[e] = p.value.decode()
            cubin = self._text(prog, lib.nvrtcGetCUBINSize, lib.nvrtcGetCUBIN)
            return log, cubin, lowered
        finally:
            lib.nvrtcDestroyProgram(ctypes.byref(prog))


# ----------------------------------------------------------------------------- ptxas -v
_ENTRY = re.compile(r"Compiling entry function '([^']+)'")
_PROPS = re.compile(r"Function properties for (\S+)")
_SPILL = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")


def parse_ptxas(log: str) -> dict:
    """{mangled name: {regs, smem, stack, spill_st, spill_ld}} from a -Xptxas=-v log."""
    out, cur = {}, None
    for line in log.splitlines():
        m = _ENTRY.search(line) or _PROPS.search(line)
        if m:
            cur = out.setdefault(m.group(1), {"regs": 0, "smem": 0, "stack": 0,
                                              "spill_st": 0, "spill_ld": 0})
            continue
        if cur is None:
            continue
        m = _SPILL.search(line)
        if m:
            cur.update(stack=int(m.group(1)), spill_st=int(m.group(2)), spill_ld=int(m.group(3)))
        m = re.search(r"Used (\d+) registers", line)
        if m:
            cur["regs"] = int(m.group(1))
            sm = re.search(r"(\d+) bytes smem", line)
            cur["smem"] = int(sm.group(1)) if sm else 0
    return out


def occupancy(regs: int, smem: int, block: int, arch: str) -> tuple[float, str]:
    """(theoretical occupancy, the limiting resource) of ``block``-thread blocks."""
    lim = SM_LIMITS[arch]
    warps = -(-block // 32)
    # registers go to warps in 256-register units, from each of the 4 SM sub-partitions
    per_warp = -(-max(regs, 1) * 32 // 256) * 256
    blocks = {  # on a tie the first is named
        "threads": lim["threads"] // block,
        "blocks": lim["blocks"],
        "registers": (lim["regs"] // 4 // per_warp) * 4 // warps,
        "shared": lim["smem"] // (-(-(smem + SMEM_PER_BLOCK_RESERVED) // 128) * 128),
    }
    limit = min(blocks, key=blocks.get)
    return blocks[limit] * warps * 32 / lim["threads"], limit


# ----------------------------------------------------------------------------- SASS
_INSN = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)([^;]*);")


def sass_by_function(text: str) -> dict[str, list[tuple[int, str, str]]]:
    """{mangled name: [(address, opcode, operands)]} from ``cuobjdump -sass``."""
    funcs, cur = {}, None
    for line in text.splitlines():
        m = re.search(r"Function : (\S+)", line)
        if m:
            cur = funcs.setdefault(m.group(1), [])
            continue
        m = _INSN.search(line)
        if m and cur is not None:
            cur.append((int(m.group(1), 16), m.group(3), m.group(4)))
    return funcs


def load_width(op: str) -> int:
    """Bits per thread of a global load opcode (LDG.E.128 -> 128, LDG.E -> 32)."""
    for part in op.split(".")[1:]:
        if part in ("64", "128"):
            return int(part)
        if part in ("U8", "S8", "U16", "S16"):
            return int(part[1:])
    return 32


def main_loop(insns):
    """The backward-branch loop whose body holds the most FMA-pipe math, or None."""
    best = None
    for i, (addr, op, args) in enumerate(insns):
        if not op.startswith("BRA"):
            continue
        m = re.search(r"0x([0-9a-f]+)", args)
        if not m or int(m.group(1), 16) > addr:
            continue
        start = int(m.group(1), 16)
        body = [x for x in insns[: i + 1] if x[0] >= start]
        math = sum(op.split(".")[0] in MATH_OPS for _, op, _ in body)
        if best is None or math > best[1]:
            best = (body, math)
    return best[0] if best and best[1] else None


def loop_stats(body) -> dict:
    """Length, math share, load widths and prefetch cover of a main-loop body."""
    ops = [op for _, op, _ in body]
    base = [op.split(".")[0] for op in ops]
    math = [b in MATH_OPS for b in base]
    steps = max(1, sum(op.startswith("BAR.SYNC") or op == "BAR" for op in ops))
    per_step = sum(math) / steps
    # for each global load, the math issued before its data is needed (the loop wraps): an
    # LDG's at the next shared store of the registers it filled, a cp.async's (LDGSTS) at the
    # next wait for it (DEPBAR.LE; LDGDEPBAR only closes the group and waits for nothing)
    covers = []
    n = len(ops)
    for i, b in enumerate(base):
        if b not in ("LDG", "LDGSTS"):
            continue
        needed = "STS" if b == "LDG" else "DEPBAR"
        count = 0
        for j in range(1, n):
            k = (i + j) % n
            if base[k] == needed:
                break
            count += math[k]
        covers.append(count)
    mix = Counter(base)
    return {
        "loop_instructions": n,
        "math": sum(math),
        "math_share": sum(math) / n if n else 0.0,
        "loop_ldg": sum(b == "LDG" for b in base),
        "loop_lds": sum(b == "LDS" for b in base),
        "prefetch": (min(covers) / per_step if covers and per_step else None),
        "mix": dict(mix.most_common(8)),
    }


# ----------------------------------------------------------------------------- the report
def analyse(nv: Nvrtc, filename: str, arch: str, exprs, objdump: str) -> list[dict]:
    """One row per instance of ``exprs`` in ``filename`` compiled for ``arch``."""
    options = ck.nvrtc_options(arch) + ("-Xptxas=-v",)
    log, cubin, lowered = nv.compile(ck.kernel_source(filename), filename, options, exprs)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "k.cubin"
        path.write_bytes(cubin)
        env = dict(os.environ, NVDISASM_PATH=os.path.dirname(_tool("nvdisasm")))
        sass = subprocess.run([objdump, "-sass", str(path)], capture_output=True, text=True,
                              check=True, env=env).stdout
    ptxas, funcs = parse_ptxas(log), sass_by_function(sass)
    rows = []
    for e in exprs:
        info, insns = ptxas[lowered[e]], funcs.get(lowered[e], [])
        block = ck.launch_block(filename, e)
        occ, limit = occupancy(info["regs"], info["smem"], block, arch)
        widths = Counter(load_width(op) for _, op, _ in insns  # LDG and LDGSTS (cp.async)
                         if op.startswith("LDG") and not op.startswith("LDGDEPBAR"))
        row = {"kernel": e, "file": filename, "arch": arch, "nvrtc": nv.version, **info,
               "block": block, "occupancy": occ, "occupancy_limit": limit,
               "ldg_bits": {str(k): v for k, v in sorted(widths.items())}}
        if LOOP_KERNELS.search(e):
            body = main_loop(insns)
            row["loop"] = loop_stats(body) if body else None
        rows.append(row)
    return rows


def report(arch: str, nvrtc=None, pattern=None) -> list[dict]:
    """Rows for every launched instance (matching regex ``pattern``) compiled for ``arch``."""
    nv, objdump = Nvrtc(nvrtc), cuobjdump()
    rows = []
    for filename, exprs in ck.instances().items():
        exprs = [e for e in exprs if pattern is None or re.search(pattern, e)]
        if exprs:
            rows += analyse(nv, filename, arch, exprs, objdump)
    return rows


def _loop_cells(row):
    loop = row.get("loop")
    if not loop:
        return ["", "", ""]
    pre = loop["prefetch"]
    return [f"{loop['loop_instructions']}", f"{loop['math_share']:.0%}",
            "" if pre is None else f"{pre:.2f}"]


HEADER = ["kernel", "regs", "spill st/ld", "smem", "block", "occupancy", "LDG bits",
          "loop", "math", "prefetch"]


def table(rows) -> list[list[str]]:
    out = []
    for r in rows:
        bits = " ".join(f"{k}x{v}" for k, v in r["ldg_bits"].items())
        out.append([r["kernel"].removeprefix("pydl::"), str(r["regs"]),
                    f"{r['spill_st']}/{r['spill_ld']}", str(r["smem"]), str(r["block"]),
                    f"{r['occupancy']:.0%} ({r['occupancy_limit']})", bits, *_loop_cells(r)])
    return out


def markdown(rows, arch, version) -> str:
    lines = [f"# pydl CUDA kernels, {arch}, NVRTC {version}", "",
             "Made by `make kernels-report` (benchmarks/kernel_report.py) on a machine without "
             "a GPU: ptxas -v and cuobjdump -sass of every instance the backend launches. "
             "`LDG bits`: global loads by width (bits x count); `loop`/`math`: the GEMM/conv "
             "main loop's length in instructions and its FFMA/DFMA/HMMA share; `prefetch`: "
             "the share of a K-step's math issued while the next tile's loads are in flight.",
             "", "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(cells) + " |" for cells in table(rows)]
    return "\n".join(lines) + "\n"


def plot(rows, arch, version, path) -> bool:
    """Registers and spills of every kernel, and the GEMM/conv main-loop math share, as a
    PNG; False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    names = [r["kernel"].removeprefix("pydl::") for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(16, 0.16 * len(rows) + 1.5), sharey=True)
    y = range(len(rows))
    ax1.barh(y, [r["regs"] for r in rows], color="tab:blue", label="registers / thread")
    ax1.barh(y, [r["spill_st"] for r in rows], color="tab:red", label="spill stores (bytes)")
    ax1.set_yticks(list(y), names, fontsize=5)
    ax1.set_ylim(len(rows) - 0.5, -0.5)
    ax1.legend(fontsize=7, loc="lower right")
    share = [(r.get("loop") or {}).get("math_share", 0.0) for r in rows]
    ax2.barh(y, share, color="tab:green", label="main loop FFMA/DFMA/HMMA share")
    ax2.axvline(0.85, color="k", lw=0.5, ls="--")
    ax2.set_xlim(0, 1)
    ax2.legend(fontsize=7, loc="lower right")
    fig.suptitle(f"pydl CUDA kernels, {arch}, NVRTC {version} (ptxas -v, cuobjdump -sass)")
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    fig.savefig(path, dpi=60)
    plt.close(fig)
    return True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", nargs="+", default=list(ARCHS), choices=sorted(SM_LIMITS))
    ap.add_argument("--nvrtc", default=None, help="CUDA major (12, 13) or libnvrtc path")
    ap.add_argument("--filter", default=None, help="regex on the name expression")
    ap.add_argument("--out", type=Path, default=None, help="write kernels_smXX.md/.json here")
    args = ap.parse_args(argv)
    try:
        version = Nvrtc(args.nvrtc).version
        for arch in args.arch:
            rows = report(arch, args.nvrtc, args.filter)
            cells = [HEADER] + table(rows)
            widths = [max(len(c[i]) for c in cells) for i in range(len(HEADER))]
            print(f"\n# {arch}, NVRTC {version}")
            for c in cells:
                print("  ".join(x.ljust(w) for x, w in zip(c, widths)).rstrip())
            if args.out:
                args.out.mkdir(parents=True, exist_ok=True)
                stem = args.out / f"kernels_{arch.replace('_', '')}"
                stem.with_suffix(".md").write_text(markdown(rows, arch, version))
                stem.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")
                plot(rows, arch, version, stem.with_suffix(".png"))
    except (ToolMissing, RuntimeError) as exc:
        print(f"kernel_report: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
