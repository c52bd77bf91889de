#!/usr/bin/env bash
# Stage 3 of scripts/train-lama-backbones.sh on a lent GPU: the three LAMA backbones (GLM blank
# infilling, BERT masked LM, GPT-2 causal LM) pretrained side by side on one GPU, the same budget
# each, then exported in f16 (small enough to bring back). Stages 1–2 (knowledge corpus and
# tokenizer) and stage 4 (probing) run on the CPU as that script does.
#
#   OUT=runs/lama-small scripts/gpu-lama-backbones.sh      # needs $OUT/corpus from stage 2
#
# Settings (environment): STEPS=8000 LAYERS=4 HIDDEN=256 HEADS=4 SEQ=64 BATCH=64 LR=1e-3
#   DROPOUT=0 (the corpus is to be memorised) SEED=0 LIMIT=300 (seconds per run: then SIGINT, which
#   saves a checkpoint; --foreground so only the run gets it — a second SIGINT aborts the save),
#   WENHUI=dist/wenhui-cuda
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/lama}
W=${WENHUI:-dist/wenhui-cuda}
STEPS=${STEPS:-8000}
[ -d "$OUT/corpus" ] || { echo "no $OUT/corpus: run stages 1-2 of scripts/train-lama-backbones.sh first" >&2; exit 2; }
for spec in glm:default bert:mlm gpt2:causal; do
  arch=${spec%%:*}
  objective=${spec#*:}
  rm -rf "$OUT/run-$arch-gpu"
  timeout --foreground -s INT "${LIMIT:-300}" "$W" --device cuda pretrain --quiet --corpus "$OUT/corpus" --out-dir "$OUT/run-$arch-gpu" \
    --arch "$arch" --objective "$objective" --layers "${LAYERS:-4}" --hidden "${HIDDEN:-256}" --heads "${HEADS:-4}" \
    --seq-len "${SEQ:-64}" --batch-size "${BATCH:-64}" --steps "$STEPS" --lr "${LR:-1e-3}" --dropout "${DROPOUT:-0}" \
    --seed "${SEED:-0}" --warmup-ratio 0.05 --min-lr-ratio 0.05 --eval-every $((STEPS / 8)) --save-every $((STEPS / 8)) \
    --log-every 50 >"$OUT/run-$arch-gpu.log" 2>&1 &
done
wait
for arch in glm bert gpt2; do
  tail -n 2 "$OUT/run-$arch-gpu.log"
  "$W" --dtype f16 export "$OUT/run-$arch-gpu" --force -o "$OUT/$arch-gpu"
done
