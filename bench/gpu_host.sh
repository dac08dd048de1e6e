#!/usr/bin/env bash
# On the GPU host (the device tool's machine): install the carried wheels beside the host's own torch,
# run the GPU tests, then the full benchmark; what they print and the JSON land in $OUT.
#
#   device tool: carry ["wheelhouse"], command "bash bench/gpu_host.sh", timeout_s 600
#   BENCH_ARGS overrides the benchmark's arguments (default: the issue's command); HOST_PYTHON the
#   interpreter whose torch to use (default python3); WHEELS the wheel folder (default wheelhouse).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/gpu-out}"
mkdir -p "$OUT"
HOST_PYTHON="${HOST_PYTHON:-python3}"  # the interpreter that has the host's torch
[ -x /tmp/gpuenv/bin/python ] || "$HOST_PYTHON" -m venv --system-site-packages /tmp/gpuenv  # beside its torch
/tmp/gpuenv/bin/pip install --quiet --no-index --no-deps "${WHEELS:-wheelhouse}"/*.whl 2>&1 | tail -3
export PYTHONPATH="$PWD:$PWD/api_client"
PY=/tmp/gpuenv/bin/python
$PY -c "import sys, torch; print(sys.version.split()[0], 'torch', torch.__version__,
    torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA device')" | tee "$OUT/host.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >> "$OUT/host.txt" 2>&1
TESTS_REQUIRE_GPU=1 timeout 150 $PY -m pytest -q -m gpu tests/gpu/test_gpu.py -p no:cacheprovider 2>&1 | tail -15 | tee "$OUT/gpu-tests.txt"
# shellcheck disable=SC2086
timeout 420 $PY bench/run.py ${BENCH_ARGS:---device cuda --arch resnet50 --images 12000 --batch 256 --scale 1,2,4} \
    --json-out "$OUT/bench.json" > "$OUT/bench.txt" 2> "$OUT/bench.log"
echo "bench exit $?"
tail -40 "$OUT/bench.txt"
