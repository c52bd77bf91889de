#!/usr/bin/env bash
# Self-training of the embedded poetry GLM (inverse-prompting paper §4.4, spec inverse-prompting §9):
# the generator writes poems with inverse prompting for titles of its own training half, and is then
# fine-tuned on them mixed with the human poems of the same titles (examples/poetry-selftrain.toml).
# The judge and the held-out poems are never used. Run after scripts/train-poetry-model.sh (it makes
# runs/poetry-data). Usage:
#   scripts/self-train-poetry.sh            # generate, fine-tune, export into runs/poetry-selftrain-export
#   INSTALL=1 scripts/self-train-poetry.sh  # ... and replace models/poetry-glm with the result
# On 2 cores: ≈ 30–40 min of generation (867 poems, two processes side by side), ≈ 7 min of training.
# Measured (README, "Self-training"): the model's own search baseline gains more from it than inverse
# prompting does, so the shipped model is not self-trained.
set -euo pipefail
cd "$(dirname "$0")/.."
W=${WENHUI:-target/release/wenhui}
TEMPLATE='题名：{title}；作者：{author}；体裁：{form}；正文：{text}'
[ -x "$W" ] || cargo build --release

# Titles: a fixed 5% of the generator's half (867 poems).
$W data split --parts selftrain=0.05,rest=0.95 --seed 7 -o runs/st-data runs/poetry-data/generator.jsonl
mkdir -p runs/st
rm -f runs/st/titles-*.jsonl
split -n l/2 -d --additional-suffix=.jsonl runs/st-data/selftrain.jsonl runs/st/titles-
# Poems: inverse prompting with the built-in poem task, 五绝, the default author; line i of a file
# uses seed 1000 + i. One process per core.
for p in 00 01; do
  RAYON_NUM_THREADS=1 $W poem --titles runs/st/titles-$p.jsonl --form 五绝 --author 李白 --seed 1000 \
    --output runs/st/poems-$p.jsonl &
done
wait
$W data prepare --tokenizer models/poetry-glm --template "$TEMPLATE" --overwrite -o runs/poetry-corpus-selftrain \
  runs/st/poems-00.jsonl runs/st/poems-01.jsonl runs/st-data/selftrain.jsonl
rm -rf runs/poetry-selftrain   # a fresh run (this script's own output)
$W pretrain --config examples/poetry-selftrain.toml
$W export runs/poetry-selftrain --dtype f16 --force -o runs/poetry-selftrain-export
$W plot runs/poetry-selftrain/metrics.jsonl -o runs/poetry-selftrain-export/loss.png
if [ -n "${INSTALL:-}" ]; then
  cp runs/poetry-selftrain-export/{config.json,model.safetensors,tokenizer.json,wenhui_tokenizer.json} models/poetry-glm/
fi
