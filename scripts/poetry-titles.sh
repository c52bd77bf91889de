#!/usr/bin/env bash
# Poem → title generation (README "Seq2seq and language modelling"): the held-out split of the
# embedded poetry GLM (scripts/train-poetry-model.sh: heldout=0.05, seed 2021), seq2seq pairs
# {source: poem text, target: title}, fine-tuning from models/poetry-glm on its own training half
# (minus 300 dev poems for early stopping), ROUGE on the held-out poems next to two baselines.
# PARTS=ptune (or "finetune ptune") P-tunes the frozen model instead (ptune --task seq2seq: eight
# pseudo tokens before the same template) and scores it next to the model without tuning.
# Usage: scripts/poetry-titles.sh [path/to/tang_jintishi.jsonl]
#   (env: STEPS, TEST_LIMIT, THREADS, PARTS=finetune|ptune|"finetune ptune", PT_STEPS, PT_LR)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data/poetry/tang_jintishi.jsonl}
W=${WENHUI:-target/release/wenhui}
STEPS=${STEPS:-300}
TEST_LIMIT=${TEST_LIMIT:-0}
OUT=runs/poetry-titles
[ -x "$W" ] || cargo build --release
mkdir -p $OUT

# The same split as the embedded model (deterministic), then {source, target} pairs.
$W data split --parts heldout=0.05,generator=0.475,judge=0.475 --seed 2021 -o runs/poetry-data "$DATA"
python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
def pairs(part):
    with open(f"runs/poetry-data/{part}.jsonl", encoding="utf-8") as f:
        return [{"source": p["text"], "target": p["title"]} for p in map(json.loads, f) if p["title"].strip() and p["text"].strip()]
gen = pairs("generator")
for name, rows in [("train", gen[300:]), ("dev", gen[:300]), ("test", pairs("heldout"))]:
    with open(f"{out}/{name}.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    print(name, len(rows))
PY

LAYOUT=(--template '题名：[sMASK]；正文：{source}' --max-source-len 100 --max-target-len 24)
DECODE=(--num-beams 5 --length-penalty 0.7 --no-repeat-ngram-size 3 --rouge-tokenizer chars)
PARTS=${PARTS:-finetune}
evaluate() {
  echo "== $*"
  RAYON_NUM_THREADS=${THREADS:-2} $W eval seq2seq "$@" --data $OUT/test.jsonl --limit "$TEST_LIMIT" "${DECODE[@]}" --json \
    | tee -a $OUT/results.jsonl
}
if [[ " $PARTS " == *" ptune "* ]]; then
  rm -rf $OUT/ptune
  RAYON_NUM_THREADS=${THREADS:-2} $W ptune --task seq2seq --model models/poetry-glm --train $OUT/train.jsonl --dev $OUT/dev.jsonl \
    -o $OUT/ptune --template '[P*8]题名：[sMASK]；正文：{source}' --max-source-len 100 --max-target-len 24 "${DECODE[@]}" \
    --steps "${PT_STEPS:-200}" --batch-size 16 --lr "${PT_LR:-1e-3}" --eval-every 100 --metric loss --seed 2021
  evaluate --model models/poetry-glm "${LAYOUT[@]}"
  evaluate --model $OUT/ptune/best   # its template and prompt come from the run
fi
[[ " $PARTS " == *" finetune "* ]] || exit 0
rm -rf $OUT/run   # a fresh run (finetune refuses to start over a run)
RAYON_NUM_THREADS=${THREADS:-2} $W finetune --task seq2seq --train $OUT/train.jsonl --dev $OUT/dev.jsonl -o $OUT/run \
  "${LAYOUT[@]}" "${DECODE[@]}" --steps "$STEPS" --batch-size 32 --lr 5e-4 --warmup 0.06 --label-smoothing 0.1 \
  --eval-every 100 --metric loss --patience 3 --seed 2021

for sys in "--baseline lead-chars:2" "--baseline lead-chars:4" "--model models/poetry-glm" "--model $OUT/run/best"; do
  # shellcheck disable=SC2086 # $sys is two words
  evaluate $sys "${LAYOUT[@]}"
done
