#!/usr/bin/env bash
# Everything a lent GPU machine should run, in one call that fits in 10 minutes including the
# install (see ../shared/gpu.md): install (no build isolation, no network), the machine's
# description, the GPU tests, a subset of the kernel tests under compute-sanitizer memcheck
# with CuPy's pool off, the kernel benchmarks at their target sizes, the training-step
# comparison, and the plots. Each step has its own time limit (LIMIT_<step> seconds; a step
# that runs out is logged as exit 124 and the session goes on), so the whole run stays under
# ~560 s. Logs and result files go to $OUT (or ./gpu_session_out); result tables and
# gpu_machine.md are written to benchmarks/results/ (commit them together); a short summary is
# printed last.
#
#   bash benchmarks/gpu_session.sh              # everything (about 9-10 minutes on an H100)
#   STEPS="tests bench" bash benchmarks/gpu_session.sh
#   STEPS="models" bash benchmarks/gpu_session.sh   # each model's CPU vs GPU time (long)
set -u
OUT=${OUT:-gpu_session_out}
mkdir -p "$OUT"
STEPS=${STEPS:-"install machine tests sanitizer bench train plots"}
# seconds per step (sum 560): the GPU tests, memcheck on a subset, the benchmarks
LIMIT_install=${LIMIT_install:-60}
LIMIT_machine=${LIMIT_machine:-15}
LIMIT_tests=${LIMIT_tests:-150}
LIMIT_sanitizer=${LIMIT_sanitizer:-100}
LIMIT_bench=${LIMIT_bench:-150}
LIMIT_train=${LIMIT_train:-60}
LIMIT_plots=${LIMIT_plots:-25}
LIMIT_models=${LIMIT_models:-300}
# the memcheck subset (171 of the 561 GPU cases): FP32 matmul at every size with two of the
# four transposes (both tile plans, the edges), conv2d, pooling and Adam; SANITIZE_K="not mlp"
# checks them all when there is time
SANITIZE_K=${SANITIZE_K:-"(matmul and float32 and (False-False or True-True)) or conv or pool or adam"}
export PYTHONUNBUFFERED=1
# this run's tables are the ones to commit: write them over benchmarks/results
export PYDL_BENCH_RESULTS=$PWD/benchmarks/results
summary=()

step() {  # step NAME COMMAND...: run, log to $OUT/NAME.log, remember the exit status
    local name=$1; shift
    case " $STEPS " in *" $name "*) ;; *) return 0 ;; esac
    echo "== $name: $*"
    local start=$SECONDS limit=LIMIT_$name
    if declare -F "$1" >/dev/null; then  # a shell function of this script (quick)
        "$@" >"$OUT/$name.log" 2>&1
    else
        timeout --kill-after=10 "${!limit:-300}" "$@" >"$OUT/$name.log" 2>&1
    fi
    local rc=$?
    summary+=("$name: exit $rc in $((SECONDS - start)) s (log $OUT/$name.log)")
    tail -n 5 "$OUT/$name.log"
}

step install python3 -m pip install -q --no-build-isolation --no-deps -e .
machine() {  # the GPU, driver, CUDA, CuPy and torch versions and the date, as markdown
    {
        echo "# GPU session machine"
        echo
        echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
        echo "- commit: $(git rev-parse --short HEAD 2>/dev/null)"
        echo "- GPU: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader)"
        python3 -c 'import cupy, sys; r = cupy.cuda.runtime
print(f"- CUDA runtime {r.runtimeGetVersion()}, driver API {r.driverGetVersion()}, "
      f"CuPy {cupy.__version__}, Python {sys.version.split()[0]}")'
        python3 -c 'import torch; print(f"- torch {torch.__version__} (CUDA {torch.version.cuda})")'
        python3 -m pydl info
    } >benchmarks/results/gpu_machine.md
    cat benchmarks/results/gpu_machine.md
}
step machine machine
step tests python3 -m pytest -m gpu -q -p no:cacheprovider
step sanitizer env PYDL_CUDA_NO_POOL=1 compute-sanitizer --tool memcheck --error-exitcode 1 \
    python3 -m pytest -q -p no:cacheprovider tests/test_cuda_kernels.py -m gpu -k "$SANITIZE_K"
step bench python3 benchmarks/bench_gpu.py
step train python3 benchmarks/bench_train.py --quick
step models python3 benchmarks/bench_models.py --epochs 3
step plots python3 benchmarks/plot.py
cp benchmarks/results/* "$OUT"/ 2>/dev/null
echo
printf '%s\n' "${summary[@]}"
