#!/usr/bin/env bash
# One accelerator call: train the five light adapters side by side on one GPU from the device kit,
# export each (EMA, fp16), and pack weights, metrics and logs into $OUT/device_run.tar.gz.
# Evaluation stays on this side (CPU): the model cards' figures must reproduce without a GPU.
#
#   here:    python scripts/device_kit.py --out .device_kit          (42.8 MiB; ../shared does not travel)
#   device:  run(command="bash scripts/train_device.sh", carry=[".device_kit"], timeout_s=600)
#   here:    tar -xzf <files_at>/device_run.tar.gz -C .cache/device_run
#            python -m lua_core.eval --checkpoint .cache/device_run/<family>/lua_light_<family>.safetensors ...
#
# Each family runs its CPU recipe (configs/train/<family>_light_cpu.json: teacher Stage I, joint,
# pixel) with more data, bigger batches and full 256 px crops. A run still going after
# TRAIN_SECONDS is stopped and its latest checkpoint (every 200 steps) exported, so the call ends
# inside its limit whatever the throughput; metrics.jsonl says how far each got.
# Environment: FAMILIES, DEVICE (cuda), TRAIN_SECONDS (450), SAMPLES (4096), LATENT_STEPS (3000),
# JOINT_STEPS (300), PIXEL_STEPS (3000), LATENT_BATCH (64), PIXEL_BATCH (16), THREADS (3), CHECKPOINT_EVERY (200), PYTHON.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
KIT="$PWD/.device_kit/shared"
if [ ! -d "$KIT/vae" ]; then
    echo "no device kit at $KIT: run 'python scripts/device_kit.py --out .device_kit' and carry .device_kit" >&2
    exit 2
fi
export LUA_SHARED_DIR="$KIT" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
OUT_DIR=${OUT:-$PWD/.cache/device_out}
RUNS="$PWD/.cache/device_runs"
FAMILIES=${FAMILIES:-"flux1 sd15 sdxl sd3 flux2"}
mkdir -p "$OUT_DIR" "$RUNS"

sets=(
    --set "data.num_samples=${SAMPLES:-4096}" --set data.shard_size=256 --set data.encode_batch=64
    --set "stages.0.steps=${LATENT_STEPS:-3000}" --set "stages.0.batch_size=${LATENT_BATCH:-64}"
    --set "stages.1.steps=${JOINT_STEPS:-300}" --set "stages.1.batch_size=${PIXEL_BATCH:-16}" --set stages.1.crop=null
    --set "stages.2.steps=${PIXEL_STEPS:-3000}" --set "stages.2.batch_size=${PIXEL_BATCH:-16}" --set stages.2.crop=null
    --set "checkpoint.every=${CHECKPOINT_EVERY:-200}" --set checkpoint.val_every=1000 --set checkpoint.log_every=50
)
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | tee "$RUNS/gpu.txt"
start=$(date +%s)
for fam in $FAMILIES; do
    timeout --signal=TERM "${TRAIN_SECONDS:-450}" "$PY" -m lua_core.train --config "configs/train/${fam}_light_cpu.json" \
        --device "${DEVICE:-cuda}" --threads "${THREADS:-3}" --out "$RUNS/$fam" --no-progress "${sets[@]}" \
        > "$RUNS/$fam.log" 2>&1 &
done
wait
echo "training: $(( $(date +%s) - start )) s"
status=0
for fam in $FAMILIES; do
    weights="$RUNS/$fam/lua_light_${fam}.safetensors"
    if ! grep -q '"final_val"' "$RUNS/$fam.log"; then
        echo "$fam: stopped at the time limit; exporting its latest checkpoint"
        "$PY" -m lua_core.train --config "configs/train/${fam}_light_cpu.json" --device "${DEVICE:-cuda}" \
            --out "$RUNS/$fam" --export-only "${sets[@]}" >> "$RUNS/$fam.log" 2>&1 || true
    fi
    if [ -f "$weights" ]; then
        echo "$fam: $(grep -c '"kind": "train"' "$RUNS/$fam/metrics.jsonl") train records; last validation:"
        grep '"kind": "val"' "$RUNS/$fam/metrics.jsonl" | tail -n 1
    else
        echo "$fam: no weights (see $fam.log)"; tail -n 20 "$RUNS/$fam.log"; status=1
    fi
done
tar -czf "$OUT_DIR/device_run.tar.gz" -C "$RUNS" --exclude='state' --exclude='*.pt' .
ls -la "$OUT_DIR"
exit $status
