#!/usr/bin/env bash
# One accelerator call: fine-tune each family's committed adapter on the GPU (the shipped recipe,
# python -m lua_core.train.finetune), evaluate the result there, and return the weights, logs and reports.
#
#   here:    python -m scripts.device_kit --family sd15,sdxl,sd3,flux1,flux2 --lossless-val --val-images 24 \
#                --val-crop 512 --init-from weights --budget-mib B --out .device_kit
#            (B: 64 MiB less what travels besides; see lua_core/train/README.md for moving the bundled
#            weights and docs/eval aside during the call)
#   device:  run(command="FAMILIES='sd15 sdxl' TEACHER=vae bash scripts/train_device.sh", carry=[".device_kit"])
#   here:    one <family>.tar per family comes back (at most 8 files travel back): best.safetensors (the best
#            EMA), finetune.log, metrics.jsonl and, with EVAL_PATHS, eval/{holdout,val}/results.*
#
# A kit with init/ starts each family from its network part there (the bundled adapter without its tiny
# autoencoder; it is put back from the kit's shared/vae), else from weights/lua_light_<family>.safetensors.
# Validation and evaluation there score PSNR, LPIPS and latent fidelity (DISTS's VGG does not travel);
# best.safetensors is chosen on the validation score.  The evaluation runs on the kit's lossless
# validation crops (24 held-out photographs at 512 px, 24 val images at native size): the same images
# as ``python -m lua_core.eval --images holdout`` and ``--images '${shared}/data/val' --native`` here.
# Environment: FAMILIES (sdxl), TEACHER (tae|vae, default tae), DEVICE (cuda), TRAIN_SECONDS (420 per family),
# BATCH (16), VAL_EVERY (250), THREADS (8), EVAL_PATHS (empty: no evaluation), EVAL_COUNT (24), EXTRA_SETS (more --set KEY=JSON
# words, e.g. "lpips_x2=0.5"), VAE (a full VAE file or folder, carried: the decoder in the loss, the VAE
# teacher's encoder and the judge instead of the tiny autoencoder), VAE_BACKEND (comfy|diffusers), PYTHON.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
KIT="$PWD/.device_kit"
FAMILIES=${FAMILIES:-${FAMILY:-sdxl}}
if [ ! -d "$KIT/shared/vae" ] || [ ! -f "$KIT/metrics/lpips_alex.safetensors" ]; then
    echo "no device kit at $KIT: run 'python -m scripts.device_kit --family ...' and carry .device_kit" >&2
    exit 2
fi
export LUA_SHARED_DIR="$KIT/shared" LUA_METRICS_DIR="$KIT/metrics" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
OUT_DIR=${OUT:-$PWD/.cache/device_out}
mkdir -p "$OUT_DIR"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | tee "$OUT_DIR/gpu.txt"
status=0
for FAMILY in $FAMILIES; do
    RUN="$PWD/.cache/device_runs/$FAMILY"
    rm -rf "$RUN"
    mkdir -p "$RUN"
    init="weights/lua_light_${FAMILY}.safetensors"
    if [ -f "$KIT/init/$FAMILY.safetensors" ]; then
        init="$PWD/.cache/device_init/lua_light_${FAMILY}.safetensors"  # the bundled name, as the run records it
        "$PY" -m scripts.device_kit --restore-init "$KIT/init/$FAMILY.safetensors" "$FAMILY" "$init" >/dev/null || exit 3
    fi
    sets=(--set "batch=${BATCH:-16}" --set "val_every=${VAL_EVERY:-250}" --set "teacher=\"${TEACHER:-tae}\""
          --set "holdout_dir=\"$KIT/shared/data/holdout\"")
    for s in ${EXTRA_SETS:-}; do sets+=(--set "$s"); done
    vae=()
    [ -n "${VAE:-}" ] && vae=(--vae "$VAE" --vae-backend "${VAE_BACKEND:-comfy}")
    start=$(date +%s)
    "$PY" -m lua_core.train.finetune --family "$FAMILY" --init "$init" --out "$RUN" --device "${DEVICE:-cuda}" \
        --threads "${THREADS:-8}" --seconds "${TRAIN_SECONDS:-420}" --validate-at-end "${sets[@]}" "${vae[@]}" > "$RUN/finetune.log" 2>&1
    rc=$?
    [ $rc -ne 0 ] && status=$rc
    echo "$FAMILY fine-tune: exit $rc after $(( $(date +%s) - start )) s"
    tail -n 2 "$RUN/finetune.log" | cut -c1-400
    if [ -f "$RUN/best.safetensors" ] && [ -n "${EVAL_PATHS:-}" ]; then
        for set in holdout val; do
            "$PY" -m lua_core.eval --checkpoint "$RUN/best.safetensors" --images "$KIT/shared/data/$set" --native \
                --images-count "${EVAL_COUNT:-24}" --crop 512 --paths "$EVAL_PATHS" --device "${DEVICE:-cuda}" --quiet \
                "${vae[@]}" --out "$RUN/eval/$set" || status=4
        done
    fi
    (cd "$RUN" && tar -cf "$OUT_DIR/$FAMILY.tar" finetune.log $(ls -d metrics.jsonl best.safetensors eval 2>/dev/null))
    echo "$FAMILY done at $(( $(date +%s) - start )) s"
done
ls -la "$OUT_DIR"
exit $status
