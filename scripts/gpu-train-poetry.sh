#!/usr/bin/env bash
# ONE prepared run for a lent NVIDIA GPU machine: pretrains the embedded poetry GLM and its judge
# (examples/poetry-{generator,judge}.toml) side by side in bf16 mixed precision, inside a fixed
# wall-clock budget, and sends back both models exported as f16 from their checkpoint of lowest
# validation loss. It is the GPU form of the pretraining step of scripts/train-poetry-model.sh.
#
# Here (no GPU): scripts/build-cuda.sh, then the data steps of scripts/train-poetry-model.sh
# (runs/poetry-corpus-{generator,judge}). Carry dist/ and both corpora; on the GPU machine:
#
#   TRAIN_SECONDS=420 scripts/gpu-train-poetry.sh
#
# 1. A 40-step probe of both runs side by side measures the step time while they share the GPU.
# 2. Steps = min(the configs' steps, TRAIN_SECONDS / step time), rounded down to whole hundreds,
#    for both runs (the cosine schedule ends where the run ends; `timeout -s INT` is only a guard:
#    Ctrl-C saves a checkpoint).
# 3. Each run's checkpoint of lowest validation loss is exported as f16. The exports, metrics and
#    logs come back as one xz tarball split into 15 MiB parts (the device tool returns at most 8
#    files of ≤ 16 MiB), beside report.txt. Unpack here:
#      mkdir -p runs/gpu && cat gpu-out/models.tar.xz.part-* | xz -d | tar -x -C runs/gpu
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/gpu-env.sh
BUDGET=${TRAIN_SECONDS:-420}
LOGS=/tmp/export/logs
rm -rf /tmp/export && mkdir -p "$LOGS"
# Whatever happens, the logs (and the exports, once made) come back.
pack() {
  tail -n 3 "$LOGS"/*.txt >>"$OUT/report.txt" 2>/dev/null
  tar -C /tmp/export -cf - . | xz -1 -T4 >/tmp/models.tar.xz
  split -b 15M -d /tmp/models.tar.xz "$OUT/models.tar.xz.part-"
  ls -l "$OUT"
  cat "$OUT/report.txt"
}
trap pack EXIT
RUNS="generator judge"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/report.txt"
W() { "$BIN" --device cuda --dtype bf16 "$@"; }

echo "== probe: 40 steps of both runs side by side" >&2
for r in $RUNS; do
  rm -rf "/tmp/probe-$r"
  W pretrain --config "examples/poetry-$r.toml" --out-dir "/tmp/probe-$r" --steps 40 \
    --save-every 40 --eval-every 1000 --log-every 10 --quiet >"$LOGS/probe-$r.txt" 2>&1 &
done
wait
STEPS=$(python3 - "$BUDGET" $RUNS <<'EOF'
import json, sys, re
budget, runs = float(sys.argv[1]), sys.argv[2:]
step_s = 0.0
for r in runs:
    rows = [json.loads(l) for l in open(f"/tmp/probe-{r}/metrics.jsonl") if '"elapsed_s"' in l]
    t = {row["step"]: row["elapsed_s"] for row in rows}
    step_s = max(step_s, (t[40] - t[20]) / 20)
cfg_steps = min(int(re.search(r"^steps\s*=\s*(\d+)", open(f"examples/poetry-{r}.toml").read(), re.M).group(1)) for r in runs)
steps = min(cfg_steps, int(budget / step_s) // 100 * 100)
print(f"step {step_s*1000:.1f} ms side by side → {steps} steps", file=sys.stderr)
print(max(steps, 100))
EOF
) || { echo "probe failed" >&2; exit 1; }
echo "steps $STEPS" >>"$OUT/report.txt"

echo "== train: $STEPS steps each, side by side" >&2
start=$(date +%s)
for r in $RUNS; do
  rm -rf "runs/poetry-$r"
  # The binary is named again here (not W): timeout runs programs, not shell functions.
  timeout --foreground -s INT $((BUDGET + 90)) \
    "$BIN" --device cuda --dtype bf16 pretrain --config "examples/poetry-$r.toml" --steps "$STEPS" --quiet \
    >"$LOGS/train-$r.txt" 2>&1 &
done
wait
echo "trained in $(( $(date +%s) - start )) s" >>"$OUT/report.txt"

echo "== export the checkpoint of lowest validation loss, f16" >&2
for r in $RUNS; do
  cp "runs/poetry-$r/metrics.jsonl" "$LOGS/metrics-$r.jsonl"
  best=$(python3 - "runs/poetry-$r" <<'EOF'
import json, os, sys
run = sys.argv[1]
have = {int(d[5:]) for d in os.listdir(f"{run}/checkpoints") if d.startswith("step-") and d[5:].isdigit()}
vals = [json.loads(l) for l in open(f"{run}/metrics.jsonl") if '"val_loss"' in l]
vals = [(v["val_loss"], v["step"]) for v in vals if v["step"] in have]
loss, step = min(vals) if vals else (float("nan"), max(have))
print(f"{run}: best validation loss {loss:.4f} at step {step}", file=sys.stderr)
print(f"step-{step:08d}")
EOF
)
  echo "$r $best" >>"$OUT/report.txt"
  "$BIN" export "runs/poetry-$r/checkpoints/$best" --dtype f16 --force -o "/tmp/export/poetry-$r" || exit 1
done
