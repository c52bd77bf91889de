#!/usr/bin/env bash
# Three small backbones for LAMA knowledge probing (issue 7), pretrained by wenhui on a knowledge
# corpus built from the LAMA facts, at the same budget each (same shape, steps, batch, sequence
# length, learning rate and seed): GLM (blank infilling), BERT-style (masked LM), GPT-2-style
# (causal LM); then the manual-template baseline of `wenhui probe lama` on each. Usage:
#   scripts/train-lama-backbones.sh [path/to/lama]          (default ../shared/data/lama)
# Settings (environment): OUT=runs/lama STEPS=4000 LAYERS=4 HIDDEN=256 HEADS=4 SEQ=128 BATCH=32
#   LR=5e-4 VOCAB=16000 REPEATS=4 SEED=0 RELATIONS=all (e.g. P19,P36 for a quick run)
#   THREADS=1 (rayon threads per run; the three runs go side by side), WENHUI=target/release/wenhui
#   PT_EPOCHS=100 PT_PATIENCE=20 PT_LR=1e-3 (P-tuning per relation: `probe lama --mode ptune`)
# Budget (measured 2026-11-26, 1 rayon thread each, shared 2-core CPU, niced): at the defaults a step is
#   4,096 tokens; GLM ≈ 550, BERT ≈ 790, GPT-2 ≈ 465 tokens/s, i.e. 5–9 s per step; the full corpus
#   (all 41 relations, REPEATS=4, BPE 16k) is 3.08M tokens ≈ 750 steps per epoch. Several epochs are
#   needed to store the facts: on CPU use RELATIONS=<a few> or a GPU; the full setting is hours per model.
# Smoke test: STEPS=3 LAYERS=1 HIDDEN=32 HEADS=2 SEQ=32 BATCH=2 VOCAB=2000 RELATIONS=P19,P36 OUT=/tmp/lama-smoke
set -euo pipefail
cd "$(dirname "$0")/.."
LAMA=${1:-../shared/data/lama}
W=${WENHUI:-target/release/wenhui}
OUT=${OUT:-runs/lama}
STEPS=${STEPS:-4000}
LAYERS=${LAYERS:-4}
HIDDEN=${HIDDEN:-256}
HEADS=${HEADS:-4}
SEQ=${SEQ:-128}
BATCH=${BATCH:-32}
LR=${LR:-5e-4}
VOCAB=${VOCAB:-16000}
REPEATS=${REPEATS:-4}
SEED=${SEED:-0}
RELATIONS=${RELATIONS:-all}
[ -x "$W" ] || cargo build --release
mkdir -p "$OUT"

# 1. The knowledge corpus: every fact of every split in ParaRel paraphrases, never the manual template.
REL_FLAG=()
[ "$RELATIONS" = all ] || REL_FLAG=(--relations "$RELATIONS")
$W probe corpus --force --lama "$LAMA" -o "$OUT/knowledge.txt" --repeats "$REPEATS" --seed "$SEED" "${REL_FLAG[@]}" --json \
  > "$OUT/knowledge.json"
# 2. One cased byte-level BPE tokenizer and one token corpus shared by the three backbones.
$W tokenizer train --kind bpe --vocab-size "$VOCAB" --min-frequency 2 --force -o "$OUT/tok" "$OUT/knowledge.txt"
$W data prepare --tokenizer "$OUT/tok" --overwrite -o "$OUT/corpus" "$OUT/knowledge.txt"

# 3. The three pretraining runs, side by side, the same budget each.
for spec in glm:default bert:mlm gpt2:causal; do
  arch=${spec%%:*}
  objective=${spec#*:}
  rm -rf "$OUT/run-$arch"   # a fresh run (this script's own output; pretrain refuses to start over a run)
  RAYON_NUM_THREADS=${THREADS:-1} $W pretrain --quiet --corpus "$OUT/corpus" --out-dir "$OUT/run-$arch" \
    --arch "$arch" --objective "$objective" --layers "$LAYERS" --hidden "$HIDDEN" --heads "$HEADS" \
    --seq-len "$SEQ" --batch-size "$BATCH" --steps "$STEPS" --lr "$LR" --seed "$SEED" \
    --eval-every $((STEPS > 10 ? STEPS / 10 : 1)) --save-every $((STEPS > 4 ? STEPS / 4 : 1)) --log-every 10 \
    > "$OUT/run-$arch.log" 2>&1 &
done
wait
for arch in glm bert gpt2; do
  tail -n 1 "$OUT/run-$arch.log"
  $W export "$OUT/run-$arch" --force -o "$OUT/$arch"
done

# 4. The manual-template baseline and P-tuning on each (LAMA's common vocabulary, and the 29k one).
for arch in glm bert gpt2; do
  for vocab in common 29k; do
    $W probe lama --quiet --model "$OUT/$arch" --lama "$LAMA" --relations "$RELATIONS" --vocab "$vocab" --mode ptune \
      --epochs "${PT_EPOCHS:-100}" --patience "${PT_PATIENCE:-20}" --lr "${PT_LR:-1e-3}" \
      --output "$OUT/results-$arch-ptune-$vocab" --json > "$OUT/probe-$arch-ptune-$vocab.json"
    printf '%-5s %-4s ptune  ' "$arch" "$vocab"
    # The same settings: the saved results are reused (other settings would be refused).
    $W probe lama --quiet --model "$OUT/$arch" --lama "$LAMA" --relations "$RELATIONS" --vocab "$vocab" --mode ptune \
      --epochs "${PT_EPOCHS:-100}" --patience "${PT_PATIENCE:-20}" --lr "${PT_LR:-1e-3}" \
      --output "$OUT/results-$arch-ptune-$vocab" | tail -n 1
    $W probe lama --quiet --model "$OUT/$arch" --lama "$LAMA" --relations "$RELATIONS" --vocab "$vocab" \
      --output "$OUT/results-$arch-manual-$vocab" --json > "$OUT/probe-$arch-manual-$vocab.json"
    printf '%-5s %-4s manual ' "$arch" "$vocab"
    $W probe lama --quiet --model "$OUT/$arch" --lama "$LAMA" --relations "$RELATIONS" --vocab "$vocab" \
      --output "$OUT/results-$arch-manual-$vocab" | tail -n 1
  done
done
