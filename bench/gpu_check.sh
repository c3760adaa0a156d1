#!/usr/bin/env bash
# The GPU check of issue 6: the engine's GPU checks (bench/gpu_checks.py, the same functions as
# tests/test_gpu.py, run without pytest), then the speed benchmark on a randomly initialised
# bert-base-sized classifier (bench/gpu_bench.py), in under 5 minutes on one H100.
#
#   bash bench/gpu_check.sh                # full size on CUDA, quick size on CPU
#   bash bench/gpu_check.sh --size quick   # extra arguments go to bench.gpu_bench
#
# Needs python3 with torch and transformers, nothing else, and no network: no test runner (the checks are
# plain assertions) and no installed headscope (the checkout's backend/ is put on PYTHONPATH as the
# package headscope when it is not importable).
# Results go to $OUT when set (the GPU machine's return folder), else bench/results/.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
PYTHON="${PYTHON:-python3}"
RESULTS="${OUT:-bench/results}"
mkdir -p "$RESULTS"
started=$(date +%s)

if ! "$PYTHON" -c "import headscope.engine" 2>/dev/null; then
  site=$(mktemp -d)
  ln -s "$PWD/backend" "$site/headscope"  # the repository's backend/ is the package headscope
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # bench.* and tests.helpers

"$PYTHON" - <<'EOF'
import platform, torch, transformers
cuda = torch.cuda.is_available()
print(f"python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}")
print(f"device: {torch.cuda.get_device_name(0) if cuda else 'no CUDA: CPU only (quick size, CUDA tests skipped)'}")
if cuda:
    free, total = torch.cuda.mem_get_info(0)
    print(f"memory: {free / 2**30:.1f} GiB free of {total / 2**30:.1f} GiB")
EOF

echo "== engine GPU checks (bench/gpu_checks.py)"
timeout 150 "$PYTHON" -m bench.gpu_checks 2>&1 | tee "$RESULTS/gpu_tests.txt"
tests_status=${PIPESTATUS[0]}

echo "== speed benchmark (bench/gpu_bench.py)"
timeout 240 "$PYTHON" -m bench.gpu_bench --out "$RESULTS/gpu_bench.json" "$@"
bench_status=$?

echo "== done in $(( $(date +%s) - started )) s: tests exit $tests_status, benchmark exit $bench_status"
[ "$tests_status" -eq 0 ] && [ "$bench_status" -eq 0 ]
