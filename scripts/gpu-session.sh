#!/usr/bin/env bash
# ONE device call that does both GPU jobs inside the tool's 600 s, for a session with little device
# time: it trains poetry models (scripts/gpu-train-poetry.sh, configured by its variables) and, while
# the first trains, runs the parity part of scripts/gpu-check.sh beside it (correctness only, so
# sharing the GPU costs nothing but a little training speed); once training is done, the timed
# benchmarks run on the idle GPU, each part only if it starts before the deadline.
#
#   RUNS="judge@2023 judge@2024" STEPS=2400 TRAIN_SECONDS=440 SESSION_SECONDS=560 \
#     scripts/gpu-session.sh                      # carry dist and runs/poetry-corpus-judge
#
# SESSION_SECONDS (default 560): when everything must be over; benchmark parts start only until
# 50 s before it, and the last is cut off at it. GPU_CHECK_STEPS after training (default
# "train generate profile"). Returns: $OUT/train (report.txt, models.tar.xz.part-*, unpack as in
# gpu-train-poetry.sh) and $OUT/check (summary.txt, logs.tar.xz with the training console too):
# at most 7 files, inside the tool's 8.
set -uo pipefail
cd "$(dirname "$0")/.."
T0=$(date +%s)
END=$((T0 + ${SESSION_SECONDS:-560}))
ROOT=${OUT:-gpu-out}
CHECK=$ROOT/check
mkdir -p "$ROOT/train" "$CHECK"
# Unpack the binary once, here: the two scripts below would both unpack it at the same moment.
OUT=$CHECK . scripts/gpu-env.sh

OUT=$ROOT/train scripts/gpu-train-poetry.sh >"$CHECK/train-console.txt" 2>&1 &
TRAIN=$!
OUT=$CHECK GPU_CHECK_STEPS=parity GPU_CHECK_PACK=0 scripts/gpu-check.sh
parity=$?
wait "$TRAIN"
train=$?
echo "== training exit $train after $(($(date +%s) - T0)) s; parity exit $parity" >&2
cat "$ROOT/train/report.txt" >&2

left=$((END - $(date +%s)))
if [ "$left" -gt 60 ]; then
  OUT=$CHECK GPU_CHECK_STEPS=${GPU_CHECK_STEPS:-train generate profile} GPU_CHECK_PACK=0 \
    GPU_CHECK_DEADLINE=$((END - 50)) timeout -s KILL "$left" scripts/gpu-check.sh
  bench=$?
else
  echo "== benchmarks skipped: $left s left" >&2
  bench=skipped
fi
echo "== benchmarks exit $bench after $(($(date +%s) - T0)) s" >&2
(cd "$CHECK" && tar -cJf logs.tar.xz --exclude summary.txt --exclude logs.tar.xz -- * && find . -maxdepth 1 -type f \
  ! -name summary.txt ! -name logs.tar.xz -delete)
[ "$parity" = 0 ] && [ "$train" = 0 ]
