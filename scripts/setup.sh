#!/usr/bin/env bash
# Create .venv and install lsld-engine into it.
#   scripts/setup.sh          core: metrics, denoising, training, figures (CPU torch, matplotlib)
#   scripts/setup.sh full     everything the test suite needs: encoders (open_clip, laion_clap),
#                             media (PyAV), ONNX Runtime, Ray Data + pyarrow (scale out, Parquet),
#                             matplotlib, pytest; as root on Debian/Ubuntu also the chromium
#                             package (the report tests open pages in it)
# Environment: PYTHON (default python3), LSLD_TORCH overrides the torch requirement, e.g.
#   LSLD_TORCH="torch torchvision" scripts/setup.sh full     # a CUDA machine: newest CUDA build
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-core}"
py="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$py" -m venv .venv
pip() {
  # The machine's local package mirror warns about every folder it lacks; keep real errors only.
  .venv/bin/python -m pip install -q --disable-pip-version-check "$@" 2> >(grep -v "is ignored: it is neither" >&2)
}
case "$mode" in
  core)
    # 2.13.0 has a CPU wheel on this kind of machine; a bare 'torch' would pull a multi-GB CUDA build.
    pip ${LSLD_TORCH:-torch==2.13.0}
    # [plot]: the main job draws curves.png in its run folder.
    pip -e ".[plot]"
    ;;
  full)
    # open_clip needs torchvision, and torchvision must match torch exactly.
    pip ${LSLD_TORCH:-torch==2.14.1 torchvision==0.29.1}
    pip -e ".[all]"
    # laion_clap pins numpy<2 but runs on numpy 2; its real needs come from the [clap] extra.
    pip --no-deps "laion_clap==1.1.7"
    # The HTML-report tests open the page in real headless Chromium; they skip when it is absent.
    if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
      if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        echo "installing chromium (apt-get) for the report tests" >&2
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
          || echo "note: installing chromium failed; the report tests will skip" >&2
      else
        echo "note: chromium not found and not installable here (needs root + apt-get); the report tests will skip" >&2
      fi
    fi
    ;;
  *) echo "usage: scripts/setup.sh [core|full]" >&2; exit 2 ;;
esac
echo "lsld-engine installed in .venv ($mode)" >&2
