#!/usr/bin/env bash
# One short check for a machine with an accelerator (< 10 min on one GPU): the sharded train
# step at a ~125M-parameter shape (D=768, 12 layers, L=1024, vocab 32k, batch 32, bf16 compute,
# f32 master weights), FSDP over every device, then tokens/s and MFU against the chip's
# published bf16 peak (lm/flops.py). Needs a Python whose jax sees the accelerator
# (e.g. `pip install -r requirements.txt "jax[cuda12]==0.10.2"`); PYTHON picks it.
#
#   bash benchmarks/accelerator_check.sh            # prints a table and one JSON line
#   PYTHON=.venv/bin/python bash benchmarks/accelerator_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
export TF_CPP_MIN_LOG_LEVEL=3 XLA_PYTHON_CLIENT_PREALLOCATE=false
"$PY" - <<'PY'
import jax
d = jax.devices()
print(f"jax {jax.__version__}: {len(d)} x {d[0].device_kind} ({d[0].platform})")
if d[0].platform == "cpu":
    print("no accelerator visible to jax: this check is for GPU/TPU hosts "
          "(on a CPU use benchmarks/step_throughput.py)")
PY
"$PY" - <<'PY' || { echo "jax sees no accelerator: skipping the 125M step"; exit 0; }
import jax, sys
sys.exit(jax.devices()[0].platform == "cpu")
PY
for remat in none full; do  # remat=full is the fallback if the activations do not fit
  timeout 240 "$PY" benchmarks/step_throughput.py --shapes=125m --dtype=bfloat16 \
      --all_devices --no_overhead --remat="$remat" && break
done
# lm-eval adapter at the 125M shape: requests/s and one local task, beside the step's tokens/s
timeout 360 "$PY" benchmarks/harness_throughput.py --shapes=125m --dtype=bfloat16 --quick \
    || echo "harness_throughput failed or timed out (exit $?)"
# The token store's feed rate at the same row shape (one host thread, synthetic splits), beside
# the step's tokens/s above: whether one host core feeds this accelerator
timeout 120 "$PY" benchmarks/store_throughput.py --feed=1024,32 \
    || echo "store_throughput --feed failed or timed out (exit $?)"
