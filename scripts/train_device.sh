#!/usr/bin/env bash
# One accelerator call: continue one family's shipped adapter with the fine-tune (the shipped recipe,
# python -m lua_core.train.finetune) on the GPU, and return its best and latest EMA weights, metrics and log.
# Evaluation and release stay on this side (CPU), so the model cards' figures reproduce without a GPU.
#
#   here:    python scripts/device_kit.py --family sdxl --out .device_kit   (fills what the 64 MiB travel limit leaves)
#   device:  run(command="FAMILY=sdxl bash scripts/train_device.sh", carry=[".device_kit"], timeout_s=600)
#   here:    the files come back as best.safetensors, latest.safetensors, metrics.jsonl, finetune.log;
#            bash .cache/eval_cand.sh-style evaluation, then scripts/release_finetuned.py (lua_core/train/README.md)
#
# It starts from weights/lua_light_<family>.safetensors (the committed best) in a fresh run folder, so
# a second call continues from whatever was committed in between. Validation there scores PSNR and
# LPIPS only (DISTS's VGG does not fit the kit); best.safetensors is chosen on that score.
# Environment: FAMILY (sdxl), DEVICE (cuda), TRAIN_SECONDS (420), BATCH (16), VAL_EVERY (250),
# THREADS (8), EXTRA_SETS (more --set KEY=JSON words, e.g. "encoder_lr=5e-5 lpips_x2=0.5"), PYTHON.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
KIT="$PWD/.device_kit"
FAMILY=${FAMILY:-sdxl}
if [ ! -d "$KIT/shared/vae" ] || [ ! -f "$KIT/metrics/lpips_alex.safetensors" ]; then
    echo "no device kit at $KIT: run 'python scripts/device_kit.py --family $FAMILY' and carry .device_kit" >&2
    exit 2
fi
export LUA_SHARED_DIR="$KIT/shared" LUA_METRICS_DIR="$KIT/metrics" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
OUT_DIR=${OUT:-$PWD/.cache/device_out}
RUN="$PWD/.cache/device_runs/$FAMILY"
rm -rf "$RUN"
mkdir -p "$OUT_DIR" "$RUN"

sets=(--set "batch=${BATCH:-16}" --set "val_every=${VAL_EVERY:-250}"
      --set "holdout_dir=\"$KIT/shared/data/holdout\"")
for s in ${EXTRA_SETS:-}; do sets+=(--set "$s"); done
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | tee "$RUN/gpu.txt"
start=$(date +%s)
"$PY" -m lua_core.train.finetune --family "$FAMILY" --init "weights/lua_light_${FAMILY}.safetensors" \
    --out "$RUN" --device "${DEVICE:-cuda}" --threads "${THREADS:-8}" --seconds "${TRAIN_SECONDS:-420}" --validate-at-end "${sets[@]}" \
    > "$RUN/finetune.log" 2>&1
status=$?
echo "fine-tune: exit $status after $(( $(date +%s) - start )) s"
tail -n 3 "$RUN/finetune.log"
for f in best.safetensors latest.safetensors metrics.jsonl finetune.log gpu.txt; do
    [ -f "$RUN/$f" ] && cp "$RUN/$f" "$OUT_DIR/$f"
done
ls -la "$OUT_DIR"
exit $status
