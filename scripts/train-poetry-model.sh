#!/usr/bin/env bash
# Rebuilds the embedded poetry GLM (models/poetry-glm) and the judge model of `wenhui eval poems`
# from ../shared/data/poetry/tang_jintishi.jsonl, with wenhui alone. Usage:
#   scripts/train-poetry-model.sh [path/to/tang_jintishi.jsonl]
# Steps: a fixed 5% held-out split (never trained on) and two disjoint halves of the rest (generator,
# judge); a character tokenizer on the training halves; token corpora; the two pretraining runs; the
# export of both final checkpoints as f16 into models/poetry-glm and models/poetry-judge.
#
# The shipped models were pretrained on a GPU: scripts/gpu-train-poetry.sh on a lent H200 (both runs
# side by side, 391 s) after the data steps below. To finish from its unpacked exports, run this
# script with FROM_GPU=runs/gpu: the CPU pretraining is skipped. On CPUs alone the same configs see
# ≈ 48.7M tokens each: many hours on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data/poetry/tang_jintishi.jsonl}
W=${WENHUI:-target/release/wenhui}
TEMPLATE='题名：{title}；作者：{author}；体裁：{form}；正文：{text}'
[ -x "$W" ] || cargo build --release

$W data split --parts heldout=0.05,generator=0.475,judge=0.475 --seed 2021 -o runs/poetry-data "$DATA"
$W tokenizer train --kind chars --vocab-size 8000 --min-frequency 1 --template "$TEMPLATE" --force \
  -o runs/poetry-tok runs/poetry-data/generator.jsonl runs/poetry-data/judge.jsonl
for part in generator judge heldout; do
  $W data prepare --tokenizer runs/poetry-tok --template "$TEMPLATE" --overwrite \
    -o runs/poetry-corpus-$part runs/poetry-data/$part.jsonl
done
if [ -n "${FROM_GPU:-}" ]; then
  for m in generator judge; do
    dest=models/poetry-$m; [ $m = generator ] && dest=models/poetry-glm
    cp "$FROM_GPU/poetry-$m"/{config.json,model.safetensors,tokenizer.json,wenhui_tokenizer.json} "$dest/"
  done
  $W plot "$FROM_GPU/logs/metrics-generator.jsonl" -o models/poetry-glm/loss.png
else
  # The two runs are independent: on a 2-core machine run them side by side with one thread each.
  rm -rf runs/poetry-generator runs/poetry-judge   # fresh runs (pretrain refuses to start over a run)
  RAYON_NUM_THREADS=${THREADS:-1} $W pretrain --config examples/poetry-generator.toml &
  RAYON_NUM_THREADS=${THREADS:-1} $W pretrain --config examples/poetry-judge.toml &
  wait
  $W export runs/poetry-generator --dtype f16 --force -o models/poetry-glm
  $W export runs/poetry-judge --dtype f16 --force -o models/poetry-judge
  $W plot runs/poetry-generator/metrics.jsonl -o models/poetry-glm/loss.png
fi
# Held-out perplexity on the sentence layout the model was trained with (end punctuation left in
# Part A); the model card's numbers were measured with THUDM's layout, eval ppl's default.
for obj in glm-10b glm-large; do
  $W eval ppl --model models/poetry-glm --corpus runs/poetry-corpus-heldout --seq-len 128 --batch-size 32 --batches 58 --seed 0 --objective $obj --sentence-end-in-span false
done
# The evaluation of README.md (inverse prompting vs the search baseline, judged by models/poetry-judge):
$W eval poems --titles ../shared/data/poetry/eval/ip_poem_titles.jsonl assets/eval/heldout-titles.jsonl \
  --output runs/eval-gpu/report.json
