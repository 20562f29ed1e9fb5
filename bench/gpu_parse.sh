#!/usr/bin/env bash
# One-call GPU benchmark of `lsld-engine parse` / `extract`: synthetic 10-s 640x360 H.264+AAC clips,
# random-weight REAL-size towers (CLIP ViT-B/16, CLAP HTSAT-tiny) + HAN in fp16 autocast on CUDA;
# prints the card, the CPU count, and clips/s of the serial loop vs the overlapped pipeline.
#
# Usage (repo root, on a machine with a GPU):   bash bench/gpu_parse.sh [N_CLIPS] [WORKERS]
#   N_CLIPS default 96 (8 distinct clips, copied), WORKERS default CPUs - 1.
# Budget: ~1 min to write the clips + ~2-4 min of runs on a 16-core H100/H200 box.
# On the lent machines PyAV, open_clip_torch, laion_clap, torchlibrosa (+ ftfy, wcwidth) are not
# installed: put their manylinux cp312 wheels in .whl/ (see /work/.library/device/README.md) and
# carry `.whl`; this script installs them into /tmp/site when the folder exists.
set -uo pipefail
cd "$(dirname "$0")/.."
N=${1:-96}
W=${2:-$(( $(nproc) - 1 ))}
source bench/gpu_env.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
echo "CPUs: $(nproc)   clips: $N   decode workers: $W"
"$PY" - <<'PY' || { echo "missing packages: see the header of bench/gpu_parse.sh"; exit 2; }
import av, open_clip, torch, torchlibrosa  # noqa: F401
print("torch", torch.__version__, "cuda", torch.cuda.is_available(), "| PyAV", av.__version__)
PY
# parse and extract: serial loop vs pipeline, same warmed-up fp16 backend
"$PY" -m bench.parse_bench --device cuda --precision fp16 --size real --videos "$N" --workers "$W"
# the pipeline alone with toy encoders: the decode-bound ceiling of this machine
"$PY" -m bench.parse_bench --toy --videos "$N" --workers "$W" --only parse
