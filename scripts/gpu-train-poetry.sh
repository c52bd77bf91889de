#!/usr/bin/env bash
# ONE prepared run for a lent NVIDIA GPU machine: pretrains poetry GLMs (examples/poetry-$RUN.toml)
# in bf16 mixed precision inside a fixed wall-clock budget, and sends back each model exported as
# f16 from its checkpoint of lowest validation loss. It is the GPU form of the pretraining step of
# scripts/train-poetry-model.sh.
#
# Here (no GPU): scripts/build-cuda.sh, then the data steps of scripts/train-poetry-model.sh
# (runs/poetry-corpus-*). Carry dist/ and the corpora (`scripts/device-slim.sh on` before the
# device call, `off` after: the working tree and dist/ must fit the tool's 64 MiB); on the GPU machine:
#
#   TRAIN_SECONDS=420 scripts/gpu-train-poetry.sh                       # generator and judge
#   RUNS="judge generator" SHARE=never MAX_STEPS=3400 TRAIN_SECONDS=480 scripts/gpu-train-poetry.sh
#   RUNS="judge@2023 judge@2024" SHARE=never MAX_STEPS=2400 TRAIN_SECONDS=480 scripts/gpu-train-poetry.sh
#   RUNS="judge@2023 judge@2024" STEPS=2400 TRAIN_SECONDS=440 scripts/gpu-train-poetry.sh   # no probe
#
# A run is a config name (examples/poetry-NAME.toml); NAME@SEED trains that config with another
# seed, into runs/poetry-NAME-sSEED (judge@2023: a second judge trained the same way).
#
# 1. A 40-step probe of the first run alone, then (with several runs, unless SHARE=never) of all of
#    them side by side. They train side by side if that slows a step by at most SHARE_SLOWDOWN
#    (default 1.25×), else one after another, each alone with an equal share of the budget.
# 2. Steps = min(MAX_STEPS or the configs' steps, 0.93 · its budget / step time), rounded down to
#    whole hundreds (0.93: validation and checkpoints every 100 steps are outside the probe). The
#    cosine schedule ends where the run ends; `timeout -s INT` is only a guard: Ctrl-C saves a
#    checkpoint.
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
RUNS=${RUNS:-generator judge}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/report.txt"
W() { "$BIN" --device cuda --dtype bf16 "$@"; }
# A run's config, seed flag and output directory name (see NAME@SEED above).
config() { echo "examples/poetry-${1%@*}.toml"; }
seed_flag() { case $1 in *@*) echo "--seed ${1#*@}" ;; esac; }
out_name() { case $1 in *@*) echo "poetry-${1%@*}-s${1#*@}" ;; *) echo "poetry-$1" ;; esac; }

# probe NAME RUN...: 40 steps of the runs side by side, into /tmp/probe-NAME-RUN.
probe() {
  local name=$1; shift
  for r in "$@"; do
    rm -rf "/tmp/probe-$name-$r"
    # shellcheck disable=SC2046  # seed_flag is empty or two words
    W pretrain --config "$(config "$r")" $(seed_flag "$r") --out-dir "/tmp/probe-$name-$r" --steps 40 \
      --save-every 40 --eval-every 1000 --log-every 10 --quiet >"$LOGS/probe-$name-$r.txt" 2>&1 &
  done
  wait
}
FIRST=${RUNS%% *}
# STEPS=N: exactly N steps per run, one run after another, no probe (the budget only guards).
if [ -n "${STEPS:-}" ]; then
  set -- $RUNS
  PLAN="$STEPS $((BUDGET / $#)) sequential"
  echo "== $RUNS: $STEPS steps each, one after another (STEPS given: no probe)" >&2
else
echo "== probe: 40 steps of $FIRST alone" >&2
probe alone "$FIRST"
if [ "$RUNS" != "$FIRST" ] && [ "${SHARE:-auto}" != never ]; then
  echo "== probe: 40 steps of $RUNS side by side" >&2
  probe shared $RUNS
fi
PLAN=$(python3 - "$BUDGET" "${MAX_STEPS:-0}" "${SHARE_SLOWDOWN:-1.25}" $RUNS <<'EOF'
import json, sys, re
budget, max_steps, share = float(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
runs = sys.argv[4:]
def step_s(name, rs):
    worst = 0.0
    for r in rs:
        rows = [json.loads(l) for l in open(f"/tmp/probe-{name}-{r}/metrics.jsonl") if '"elapsed_s"' in l]
        t = {row["step"]: row["elapsed_s"] for row in rows}
        worst = max(worst, (t[40] - t[20]) / 20)
    return worst
# The first run's step alone stands for every run's: the poetry configs share one shape.
alone = step_s("alone", runs[:1])
# One after another, each alone with its share of the budget, unless sharing the GPU pays.
mode, step, each = "sequential", alone, budget / len(runs)
if len(runs) > 1:
    try:
        shared = step_s("shared", runs)
        print(f"step {alone*1000:.1f} ms alone, {shared*1000:.1f} ms side by side", file=sys.stderr)
        if shared <= share * alone:
            mode, step, each = "shared", shared, budget
    except (OSError, KeyError) as e:
        print(f"no side-by-side probe ({e}): the runs train one after another", file=sys.stderr)
cfg = lambda r: int(re.search(r"^steps\s*=\s*(\d+)", open(f"examples/poetry-{r.split('@')[0]}.toml").read(), re.M).group(1))
cap = max_steps or min(cfg(r) for r in runs)
steps = max(100, min(cap, int(0.93 * each / step) // 100 * 100))
print(f"{' '.join(runs)} {mode}: {step*1000:.1f} ms per step → {steps} steps each", file=sys.stderr)
print(steps, int(each), mode)
EOF
) || { echo "probe failed" >&2; exit 1; }
fi
read -r STEPS EACH MODE <<<"$PLAN"
echo "runs $RUNS ($MODE)" >>"$OUT/report.txt"
echo "steps $STEPS" >>"$OUT/report.txt"

# train RUN: the pretraining run (in the foreground; `&` puts it beside the others).
train() {
  rm -rf "runs/$(out_name "$1")"
  # The binary is named again here (not W): timeout runs programs, not shell functions.
  # shellcheck disable=SC2046
  timeout --foreground -s INT $((EACH + 45)) \
    "$BIN" --device cuda --dtype bf16 pretrain --config "$(config "$1")" $(seed_flag "$1") \
    --out-dir "runs/$(out_name "$1")" --steps "$STEPS" --quiet \
    >"$LOGS/train-$1.txt" 2>&1
}
echo "== train: $STEPS steps each, $MODE" >&2
start=$(date +%s)
for r in $RUNS; do
  if [ "$MODE" = shared ]; then train "$r" & else train "$r"; fi
done
wait
echo "trained in $(( $(date +%s) - start )) s" >>"$OUT/report.txt"

echo "== export the checkpoint of lowest validation loss, f16" >&2
for r in $RUNS; do
  run="runs/$(out_name "$r")"
  cp "$run/metrics.jsonl" "$LOGS/metrics-$r.jsonl"
  best=$(python3 - "$run" <<'EOF'
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
  "$BIN" export "$run/checkpoints/$best" --dtype f16 --force -o "/tmp/export/$(out_name "$r")" || exit 1
done
