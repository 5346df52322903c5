"""What the checkpoint checksums cost: saving and loading a ~1 GB state with and without them.

    python benchmarks/bench_io.py [--size-mb 1024] [--dir /tmp]

Times, taking turns in the same run (the machine may be shared; each round starts with the
next operation): the CRC-32 of the whole state alone (no I/O), ``pydl.save`` with its checksums
and with hashing stubbed out, ``pydl.load`` with ``verify=True`` and ``verify=False``, and the
``safetensors`` package's own ``save_file``/``load_file`` on the same arrays as a reference
(fsynced too, as pydl.save is). A save's time is mostly the disk's (write, fsync, rename), and
on a shared disk it varies by several times from run to run; the hashing-alone row is the
steady measure of what the checksums add. Writes results/io_checkpoint.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np
from common import load_note, machine_info, print_table, write_results

import pydl
import pydl.io


def _rotated(fns, runs):
    """Like common.time_stats_interleaved, but each round starts one operation later: whoever
    writes first after a load pays the kernel's page reclaim, so a fixed order biases it."""
    names = list(fns)
    wall, cpu = {n: [] for n in names}, {n: [] for n in names}
    for r in range(runs):
        for name in names[r % len(names):] + names[:r % len(names)]:
            c0, t0 = time.process_time(), time.perf_counter()
            fns[name]()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    return {n: {"median_ms": 1e3 * statistics.median(wall[n]), "min_ms": 1e3 * min(wall[n]),
                "cpu_time_median_ms": 1e3 * statistics.median(cpu[n]), "runs": runs}
            for n in names}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size-mb", type=int, default=1024)
    p.add_argument("--dir", default=None, help="where to write the files (default: temp dir)")
    p.add_argument("--runs", type=int, default=6)
    args = p.parse_args(argv)
    start_load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None

    per = 64 * 2**20  # 64 MB tensors, as a large model's layers
    rng = np.random.default_rng(0)
    state = {f"layer{i}.weight": rng.standard_normal(per // 4, dtype=np.float32)
             for i in range(max(1, args.size_mb // 64))}
    nbytes = sum(a.nbytes for a in state.values())
    real_digest = pydl.io._digest

    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        # every save writes its own file, and the loads read files that no save rewrites
        path, plain, ref, loaded, ref_loaded = (
            os.path.join(d, f"{n}.safetensors") for n in ("a", "b", "ref", "load", "ref_load"))

        def save_unhashed():  # the same writer with hashing stubbed out: the cost of hashing
            pydl.io._digest = lambda arr: pydl.io._PLACEHOLDER
            try:
                pydl.save(state, plain)
            finally:
                pydl.io._digest = real_digest

        pydl.save(state, loaded)  # validate before timing: the round trip is exact
        back = pydl.load(loaded, as_tensors=False)
        assert all(np.array_equal(back[k], v) for k, v in state.items())
        del back
        fns = {"CRC-32 of the state alone": lambda: [real_digest(a) for a in state.values()],
               "save, checksums": lambda: pydl.save(state, path),
               "save, no hashing": save_unhashed,
               "load, verify=True": lambda: pydl.load(loaded, as_tensors=False),
               "load, verify=False": lambda: pydl.load(loaded, as_tensors=False, verify=False)}
        try:
            import safetensors.numpy as st

            def save_reference():  # fsynced like pydl.save, or its dirty pages slow the next
                st.save_file(state, ref)
                fd = os.open(ref, os.O_RDONLY)
                os.fsync(fd)
                os.close(fd)

            st.save_file(state, ref_loaded)
            fns["safetensors.save_file"] = save_reference
            fns["safetensors.load_file"] = lambda: st.load_file(ref_loaded)
        except ImportError:
            pass
        stats = _rotated(fns, args.runs)

    def ratio(a, b):
        return stats[a]["median_ms"] / stats[b]["median_ms"]

    rows = [[name, f"{s['median_ms'] / 1e3:.2f}", f"{nbytes / s['median_ms'] / 1e6:.2f}",
             f"{s['cpu_time_median_ms'] / 1e3:.2f}"] for name, s in stats.items()]
    table = print_table(["operation", "s (median)", "GB/s", "CPU s"], rows,
                        title=f"{nbytes / 2**30:.2f} GiB in {len(state)} tensors, "
                              f"{args.runs} interleaved runs each")
    ratios = {"crc32_alone_over_save_no_hashing": ratio("CRC-32 of the state alone",
                                                        "save, no hashing"),
              "save_checksums_over_no_hashing": ratio("save, checksums", "save, no hashing"),
              "load_verify_over_no_verify": ratio("load, verify=True", "load, verify=False")}
    if "safetensors.save_file" in stats:
        ratios["save_checksums_over_safetensors"] = ratio("save, checksums",
                                                          "safetensors.save_file")
        ratios["load_verify_over_safetensors"] = ratio("load, verify=True",
                                                       "safetensors.load_file")
    lines = [f"{k}: {v:.2f}" for k, v in ratios.items()]
    print("\n" + "\n".join(lines))
    note = load_note(start_load)
    print(f"machine: {note}")
    write_results("io_checkpoint",
                  {"bytes": nbytes, "tensors": len(state), "stats": stats, "ratios": ratios,
                   "machine": machine_info(machine_load=note)},
                  f"{table}\n\n" + "\n".join(f"- {x}" for x in lines) + f"\n\nmachine: {note}\n")


if __name__ == "__main__":
    main()
