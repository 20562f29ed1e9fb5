# Sourced by the one-call GPU scripts (bench/gpu_*.sh): pick the Python, install carried wheels.
# The lent GPU machines lack PyAV, open_clip_torch, laion_clap, torchlibrosa (+ ftfy, wcwidth):
# put their manylinux wheels in .whl/ and carry `.whl`; they are installed into /tmp/site.
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
