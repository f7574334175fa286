#!/usr/bin/env bash
# One-shot BERT-Base pre-training benchmark on a GPU machine with JAX but no TensorFlow/Keras.
#
#     bash benchmarks/gpu_run.sh            # from the repository root, .gpuwheels/ present
#
# 1. Installs the wheels in .gpuwheels/ (keras 3.15.1, keras-hub 0.32.0 and the few
#    dependencies a JAX machine lacks: namex, optree, tokenizers) into /tmp/pylib with
#    no network and no dependency resolution, leaving the machine's environment alone
#    (falls back to unzipping the wheels if pip is unusable).
# 2. Prints the card, driver, Python and JAX versions.
# 3. Runs benchmarks/gpu_pretrain_jax.py (KERAS_BACKEND=jax) under `timeout`, and if it
#    produced no result at all, once more with small batches in the time left.
# Everything is also written to $OUT/gpu_run.log and the results to $OUT/gpu_pretrain.json.
# Total wall time is bounded at about 7 minutes (GPU_RUN_BUDGET_S, default 400 s).
# GPU_RUN_EXTRA_ARGS is appended to the benchmark's options (e.g. "--cpu" to try this
# script on a machine without a GPU); PYTHON picks the interpreter (default python3).

set -u -o pipefail
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
export OUT
if [[ -z "${GPU_RUN_LOGGING:-}" ]]; then
    # Run this same script again with everything (set -x included) copied to the log.
    GPU_RUN_LOGGING=1 bash "$0" "$@" 2>&1 | tee "$OUT/gpu_run.log"
    exit "${PIPESTATUS[0]}"
fi
START=$SECONDS
TOTAL_BUDGET=${GPU_RUN_BUDGET_S:-400}   # seconds for the whole script
set -x

PY=${PYTHON:-python3}
WHEELS=.gpuwheels
LIB=/tmp/pylib

# --- diagnostics that cannot fail the run ----------------------------------------
date -u || true
uname -a || true
nvidia-smi -L || true
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,power.limit --format=csv || true
command -v "$PY" || true
"$PY" --version || true
ls -la "$WHEELS" || echo "WARNING: $WHEELS missing: pass it in carry"

# --- keras + keras-hub from the wheelhouse, into a private directory --------------
rm -rf "$LIB" && mkdir -p "$LIB"
if ! PIP_CONFIG_FILE=/dev/null "$PY" -m pip install --isolated --no-index --no-deps --no-compile \
        --disable-pip-version-check --target "$LIB" "$WHEELS"/*.whl; then
    echo "pip install failed; unpacking the wheels directly (a wheel is a zip of importable files)"
    rm -rf "$LIB" && mkdir -p "$LIB"
    for wheel in "$WHEELS"/*.whl; do
        "$PY" -m zipfile -e "$wheel" "$LIB" || echo "WARNING: could not unpack $wheel"
    done
fi
ls "$LIB" || true

export KERAS_BACKEND=jax
export PYTHONPATH="$LIB:$PWD${PYTHONPATH:+:$PYTHONPATH}"
# Keep TensorFlow/torch from grabbing GPU memory if anything imports them anyway.
export TF_FORCE_GPU_ALLOW_GROWTH=true

"$PY" - <<'EOF' || echo "WARNING: environment check failed (see above)"
import importlib, sys
print("python", sys.version.split()[0], sys.executable)
for name in ("numpy", "jax", "jaxlib", "ml_dtypes", "optree", "keras", "keras_hub"):
    try:
        module = importlib.import_module(name)
        print(f"  {name} {getattr(module, '__version__', '?')} from {getattr(module, '__file__', '?')}")
    except Exception as error:  # report every missing piece, not only the first
        print(f"  {name}: IMPORT FAILED: {type(error).__name__}: {error}")
import jax
print("devices:", jax.devices())
import keras
print("keras backend:", keras.backend.backend())
EOF

# --- the benchmark -----------------------------------------------------------------
remaining() { echo $(( TOTAL_BUDGET - (SECONDS - START) )); }
LIMIT=$(( $(remaining) - 15 ))
status=0
timeout --signal=TERM --kill-after=10 "$LIMIT" "$PY" benchmarks/gpu_pretrain_jax.py \
    --batch-sizes 64 128 256 512 --steps 10 --windows 4 --warmup 3 --budget-s $(( LIMIT - 40 )) ${GPU_RUN_EXTRA_ARGS:-} || status=$?
echo "benchmark exit status: $status"

# Exit status 3 means JAX sees no GPU: smaller batches would not help.
if (( status != 3 )) && ! grep -q '"examples_per_s"' "$OUT/gpu_pretrain.json" 2>/dev/null; then
    LIMIT=$(( $(remaining) - 5 ))
    if (( LIMIT > 100 )); then
        echo "no result yet: retrying with small batches in the ${LIMIT} s left"
        mv -f "$OUT/gpu_pretrain.json" "$OUT/gpu_pretrain.first_try.json" 2>/dev/null || true
        timeout --signal=TERM --kill-after=10 "$LIMIT" "$PY" benchmarks/gpu_pretrain_jax.py \
            --batch-sizes 32 64 --steps 10 --windows 3 --warmup 2 --budget-s $(( LIMIT - 60 )) ${GPU_RUN_EXTRA_ARGS:-} || status=$?
        echo "fallback exit status: $status"
    else
        echo "no result and only $(remaining) s left: no retry"
    fi
fi

nvidia-smi --query-gpu=name,memory.used,memory.total,temperature.gpu,power.draw --format=csv || true
cat "$OUT/gpu_pretrain.json" 2>/dev/null || echo "no $OUT/gpu_pretrain.json"
echo "gpu_run.sh finished in $(( SECONDS - START )) s"
exit "$status"
