#!/usr/bin/env bash
# The full LSLD training run (denoise -> 20 epochs with per-epoch validation -> test) on an
# LLP-sized synthetic world (10,000 train videos) on the GPU; prints the card and the time.
# Usage (from the repo root, on a machine with a GPU): bash bench/gpu_train.sh [WORLD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
exec "$PY" -m bench.train_bench --device cuda --full ${1:+--world-dir "$1"}
