#!/usr/bin/env bash
# One-call GPU benchmark of the device pixel path (NOT YET RUN: written without a GPU): `parse` clips/s for the
# naive pipeline, CPU decode + GPU pixels, and NVDEC, with 1/8/16 decode workers, random-weight
# real-size towers in fp16; prints the card, the CPU count and a table (bench/gpu_decode.py).
#
# Usage (repo root, on the lent GPU machine):   bash bench/gpu_decode.sh [N_CLIPS] [WORKERS] [MODES]
#   N_CLIPS default 96, WORKERS default 1,8,16, MODES default naive,device,nvdec.
# Results: $OUT/gpu_decode.json, $OUT/gpu_decode.txt and $OUT/gpu_decode.log when $OUT is set.
# Budget: ~1 min for the clips + up to 9 runs; each run is capped at RUN_TIMEOUT (default 120 s)
# and the whole script at TOTAL_TIMEOUT (default 540 s), so it fits one 10-minute device call.
# PyAV, open_clip_torch, laion_clap, torchlibrosa (+ ftfy, wcwidth) are not installed on the lent
# machines: put their manylinux cp312 wheels in .whl/ and carry `.whl` (see bench/gpu_parse.sh).
set -uo pipefail
cd "$(dirname "$0")/.."
N=${1:-96}
W=${2:-1,8,16}
MODES=${3:-naive,device,nvdec}
source bench/gpu_env.sh
LOG=${OUT:+$OUT/gpu_decode.log}
LOG=${LOG:-/dev/null}
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "nvidia-smi: none"
  echo "CPUs: $(nproc)   clips: $N   workers: $W   modes: $MODES"
  "$PY" -c "import av, torch; from av.codec.hwaccel import hwdevices_available as h; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), '| PyAV', av.__version__, 'hw devices', h())" \
    || { echo "missing packages: see the header of bench/gpu_decode.sh"; exit 2; }
  timeout -k 10 "${TOTAL_TIMEOUT:-540}" "$PY" -m bench.gpu_decode --videos "$N" --workers "$W" --modes "$MODES" \
    --run-timeout "${RUN_TIMEOUT:-120}"
  echo "exit code: $?"
} 2>&1 | tee "$LOG"
