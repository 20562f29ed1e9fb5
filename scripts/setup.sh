#!/usr/bin/env bash
# Create .venv and install lsld-engine into it.
#   scripts/setup.sh          core: metrics, denoising, training, figures (CPU torch, matplotlib)
#   scripts/setup.sh full     everything the test suite needs: encoders (open_clip, laion_clap),
#                             media (PyAV), ONNX Runtime, Ray Data + pyarrow (scale out, Parquet),
#                             matplotlib, pytest; as root on Debian/Ubuntu also the chromium
#                             package (the report tests open pages in it)
# Environment: PYTHON (default python3); LSLD_TORCH overrides the torch requirement, e.g.
#   LSLD_TORCH="torch torchvision" scripts/setup.sh full     # a CUDA machine: newest CUDA build
# LSLD_TORCH_INDEX adds a package index for torch, e.g. PyTorch's CPU wheel index on a machine
# without a GPU (PyPI's Linux x86-64 torch wheels are CUDA builds: 3.2 GB of NVIDIA libraries and
# 0.9 GB of triton in the .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-core}"
py="${PYTHON:-python3}"
# One torch for both modes, so core and full give the same training numbers; torchvision (open_clip
# needs it) must match torch exactly.
TORCH_VERSION=2.14.1
TORCHVISION_VERSION=0.29.1
[ -x .venv/bin/python ] || "$py" -m venv .venv
pip() {
  # The machine's local package mirror warns about every folder it lacks; keep real errors only.
  .venv/bin/python -m pip install -q --disable-pip-version-check "$@" 2> >(grep -v "is ignored: it is neither" >&2)
}
install_torch() {
  # $@: the torch packages to install (torch, or torch and torchvision), at the pinned versions.
  local index=() want=() cpu=() pkg
  [ -n "${LSLD_TORCH_INDEX:-}" ] && index=(--extra-index-url "$LSLD_TORCH_INDEX")
  for pkg in "$@"; do
    want+=("$pkg==$(version_of "$pkg")"); cpu+=("$pkg==$(version_of "$pkg")+cpu")
  done
  if ! command -v nvidia-smi >/dev/null 2>&1; then
    # No GPU: a CPU build where an index offers one (no NVIDIA libraries, no triton: measured
    # 4.1 GB of the CUDA build's 5.8 GB core .venv).
    if pip "${index[@]}" "${cpu[@]}" 2>/dev/null; then
      echo "installed the CPU build of ${cpu[*]}" >&2; return
    fi
    echo "note: no CPU build of ${want[*]} on the package indexes; installing the default (CUDA) build," \
         "about 4 GB more (set LSLD_TORCH_INDEX to PyTorch's CPU wheel index for a light install)" >&2
  fi
  pip "${index[@]}" "${want[@]}"
}
version_of() { case "$1" in torch) echo "$TORCH_VERSION" ;; torchvision) echo "$TORCHVISION_VERSION" ;; esac; }
case "$mode" in
  core)
    if [ -n "${LSLD_TORCH:-}" ]; then pip $LSLD_TORCH; else install_torch torch; fi
    # [plot]: the main job draws curves.png in its run folder.
    pip -e ".[plot]"
    ;;
  full)
    if [ -n "${LSLD_TORCH:-}" ]; then pip $LSLD_TORCH; else install_torch torch torchvision; fi
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
