#!/usr/bin/env bash
# Everything a lent GPU machine should run, in one call (see ../shared/gpu.md):
#   install (no build isolation, no network), the GPU tests, the tests again under
#   compute-sanitizer memcheck with CuPy's pool off, the kernel and training benchmarks, the
#   models' CPU vs GPU training times, and the plots. Logs and result files go to $OUT (or
#   ./gpu_session_out); a short summary is printed last.
#
#   bash benchmarks/gpu_session.sh              # everything (about 10 minutes on an H100)
#   STEPS="tests bench" bash benchmarks/gpu_session.sh
set -u
OUT=${OUT:-gpu_session_out}
mkdir -p "$OUT"
STEPS=${STEPS:-"install tests sanitizer bench train models plots"}
export PYTHONUNBUFFERED=1
# this run's tables are the ones to commit: write them over benchmarks/results
export PYDL_BENCH_RESULTS=$PWD/benchmarks/results
summary=()

step() {  # step NAME COMMAND...: run, log to $OUT/NAME.log, remember the exit status
    local name=$1; shift
    case " $STEPS " in *" $name "*) ;; *) return 0 ;; esac
    echo "== $name: $*"
    local start=$SECONDS
    "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    summary+=("$name: exit $rc in $((SECONDS - start)) s (log $OUT/$name.log)")
    tail -n 5 "$OUT/$name.log"
}

step install python3 -m pip install -q --no-build-isolation --no-deps -e .
step tests python3 -m pytest -m gpu -q -p no:cacheprovider
step sanitizer env PYDL_CUDA_NO_POOL=1 compute-sanitizer --tool memcheck --error-exitcode 1 \
    python3 -m pytest -q -p no:cacheprovider tests/test_cuda_kernels.py -m gpu -k "not mlp"
step bench python3 benchmarks/bench_gpu.py
step train python3 benchmarks/bench_train.py
step models python3 benchmarks/bench_models.py --epochs 3
step plots python3 benchmarks/plot.py
cp benchmarks/results/* "$OUT"/ 2>/dev/null
echo
printf '%s\n' "${summary[@]}"
