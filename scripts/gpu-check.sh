#!/usr/bin/env bash
# ONE prepared run for a lent NVIDIA GPU machine (H100/H200, CUDA 13 driver, python3 with torch,
# no Rust, no network). Build the binary first, here: scripts/build-cuda.sh → dist/wenhui-cuda.xz,
# and carry `dist` to the machine (`scripts/device-slim.sh on` before the device call, `off` after:
# the working tree and dist/ must fit the tool's 64 MiB). Then, in the repository root there:
#
#   scripts/gpu-check.sh                # parity + gradients + benchmarks, full logs under $OUT
#   GPU_CHECK_QUICK=1 scripts/gpu-check.sh   # small benchmark shapes (a first smoke run)
#   GPU_CHECK_STEPS="parity train" scripts/gpu-check.sh   # only some parts (see `want` below)
#
# 1. `wenhui --device cuda bench parity`: every fused op forward+backward (f32 with TF32 off
#    ≤ 1e-3, bf16 relative ≤ 3e-2), the official GLM dumps' logits, one training step (every
#    parameter gets a gradient; gradients and the fused AdamW match the CPU).
# 2. Pretraining step, GLM-Base shape (H=768, L=12, N=12, S=512, V=30592, batch 32, bf16):
#    `wenhui bench train` vs bench/torch_glm_train.py (PyTorch eager, same math, same GPU), on the
#    same batches: wenhui writes the 1 warmup + 5 timed batches of its runs (`--dump-batches
#    --dump-only`, on the CPU, seeded: $OUT/train-batches.json has their tokens, loss rows and
#    FLOPs) and PyTorch trains on them (`--batches`), logits on every row as the official GLM code
#    (train-torch.jsonl) and on the loss rows only as wenhui (train-torch-loss-rows.jsonl).
# 3. Generation with the K/V cache, GLM-Large shape (H=1024, L=24, N=16, V=30592), context 512,
#    128 new tokens, bf16, batch 1 and 32: `wenhui bench generate --decode-only` vs
#    bench/torch_glm_generate.py.
# 4. CLI smoke on the GPU: `poem` with the embedded model, `pretrain` a few steps (checkpoint
#    written and resumed) when runs/poetry-corpus-generator was carried.
# 5. `ptune` and `finetune` on the GPU against the CPU (scripts/tune-parity.sh cpu cuda).
# Steps 1–3 run twice: with candle's composite CUDA layers (`WENHUI_CUDA_OPS=composite`) and with
# the fused ops, the default since they passed and were faster on an H200 (2026-11-28; attention
# as cuBLAS GEMMs + two row kernels, linear, residual dropout; decoding steps as eight launches per
# layer; src/ops/cuda/). Batch-1 generation runs once more with cudarc's per-allocation CUDA
# events kept (WENHUI_CUDA_EVENTS=1, generate-1-wenhui-events.jsonl; off by default since
# 2026-11-28, unmeasured). Files without "-fused" in their name hold the composite runs. The
# training step runs twice more: with the fused ops one graph node each (`WENHUI_LAYER_STACK=0`,
# train-wenhui-per-op.jsonl), and with the layer stack (src/model/stack.rs) but neither the
# cublasLt GEMMs nor the multi-tensor AdamW (train-wenhui-no-lt.jsonl), against the default,
# and once more with flash attention (WENHUI_FLASH_ATTENTION=1, src/ops/cuda/flash.cuh; opt-in
# until measured: train-wenhui-flash.jsonl, parity-flash.txt, kernels-train-wenhui-flash.txt),
# and with flash attention computing every tile (WENHUI_FLASH_SKIP=0: train-wenhui-flash-all.jsonl).
# 6. Per-kernel GPU time (CUPTI, dist/libwenhui_kernel_profile.so preloaded) of 3 training steps
#    (wenhui composite, wenhui fused, PyTorch) and of batch-1 decoding (wenhui, PyTorch): where
#    the time goes, for the next optimisation. Skipped when the library was not carried.
# A short table is printed last (and kept in $OUT/summary.txt); every log is packed into
# $OUT/logs.tar.xz (default $OUT: gpu-out/). GPU_CHECK_PACK=0 leaves the logs unpacked, so a later
# run into the same $OUT adds to them; GPU_CHECK_DEADLINE=EPOCH_SECONDS skips every part that would
# start after that time (a device call must end inside its limit, table and logs included).
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/gpu-env.sh
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
W() { "$BIN" "$@"; }
status=0

step() { echo "== $1" >&2; }
# GPU_CHECK_STEPS picks parts (default: all), so one run can be split over two device calls of
# at most 600 s each, e.g. "parity train generate" then "profile smoke tune" (with OUT kept apart).
STEPS=${GPU_CHECK_STEPS:-parity train generate smoke profile tune}
want() {
  [[ " $STEPS " == *" $1 "* ]] || return 1
  if [ -n "${GPU_CHECK_DEADLINE:-}" ] && [ "$(date +%s)" -ge "$GPU_CHECK_DEADLINE" ]; then
    echo "== $1: skipped, past GPU_CHECK_DEADLINE" >&2
    return 1
  fi
}

if want parity; then
  step "parity (f32 TF32 off, bf16) with candle's composite layers"
  WENHUI_CUDA_OPS=composite W --device cuda bench parity --half bf16 2>&1 | tee "$OUT/parity.txt"
  if [ "${PIPESTATUS[0]}" -ne 0 ]; then
    status=1
    # The multi-tensor AdamW (new since the last GPU run) is the one fused piece composite uses.
    step "parity, composite, WENHUI_ADAMW_MULTI=0 (a failure above: the multi-tensor AdamW?)"
    WENHUI_CUDA_OPS=composite WENHUI_ADAMW_MULTI=0 W --device cuda bench parity --half bf16 >"$OUT/parity-per-param-adamw.txt" 2>&1
  fi
  step "parity with flash attention (WENHUI_FLASH_ATTENTION=1: the d64 attention cases, the rest as fused)"
  WENHUI_CUDA_OPS=fused WENHUI_FLASH_ATTENTION=1 W --device cuda bench parity --half bf16 >"$OUT/parity-flash.txt" 2>&1 || status=1
  step "parity with the fused CUDA ops in the model (fixture logits, decoding, training step)"
  WENHUI_CUDA_OPS=fused W --device cuda bench parity --half bf16 2>&1 | tee "$OUT/parity-fused.txt"
  if [ "${PIPESTATUS[0]}" -ne 0 ]; then
    status=1
    # Pin the failure: again without the cublasLt GEMMs, without the layer stack, without the
    # multi-tensor AdamW, and with a block per row in layer norm and attention (all new since
    # the last GPU run; the composite run above rules out the rest).
    step "parity, fused, WENHUI_CUBLASLT=0 (a fused-ops failure above: which part?)"
    WENHUI_CUDA_OPS=fused WENHUI_CUBLASLT=0 W --device cuda bench parity --half bf16 >"$OUT/parity-fused-no-cublaslt.txt" 2>&1
    step "parity, fused, WENHUI_LAYER_STACK=0"
    WENHUI_CUDA_OPS=fused WENHUI_LAYER_STACK=0 W --device cuda bench parity --half bf16 >"$OUT/parity-fused-per-op.txt" 2>&1
    step "parity, fused, WENHUI_ADAMW_MULTI=0"
    WENHUI_CUDA_OPS=fused WENHUI_ADAMW_MULTI=0 W --device cuda bench parity --half bf16 >"$OUT/parity-fused-per-param-adamw.txt" 2>&1
    step "parity, fused, WENHUI_WARP_ROWS=0"
    WENHUI_CUDA_OPS=fused WENHUI_WARP_ROWS=0 W --device cuda bench parity --half bf16 >"$OUT/parity-fused-block-rows.txt" 2>&1
  fi
fi

if [ -n "${GPU_CHECK_QUICK:-}" ]; then
  TRAIN="--layers 4 --hidden 256 --heads 4 --vocab 8000 --seq 256 --batch 8"
  GEN="--layers 4 --hidden 256 --heads 4 --vocab 8000 --prompt 128 --new-tokens 16"
else
  TRAIN="--layers 12 --hidden 768 --heads 12 --vocab 30592 --seq 512 --batch 32"
  GEN="--layers 24 --hidden 1024 --heads 16 --vocab 30592 --prompt 512 --new-tokens 128"
fi

# The batches of `bench train $TRAIN --steps 5` (1 warmup + 5 timed; the profile's `--steps 3` runs
# train on the first 4), written once for PyTorch: outside $OUT, which is packed.
TRAIN_BATCHES="$(mktemp -d)/train-batches.jsonl"
train_batches() {
  [ -s "$TRAIN_BATCHES" ] && return 0
  W bench train $TRAIN --steps 5 --dump-batches "$TRAIN_BATCHES" --dump-only >"$OUT/train-batches.json" 2>&1 && return 0
  echo "== no batch dump (see $OUT/train-batches.json): PyTorch trains on its own synthetic batches (tokens not comparable)" >&2
  return 1
}

if want train; then
  step "train step: the batches (wenhui --dump-batches --dump-only, CPU)"
  if train_batches; then TORCH_DATA="--batches $TRAIN_BATCHES --warmup 1"; else TORCH_DATA="--warmup 2"; fi
  step "train step, bf16: wenhui with candle's composite layers"
  WENHUI_CUDA_OPS=composite W --device cuda --dtype bf16 bench train $TRAIN --steps 5 2>&1 | tee "$OUT/train-wenhui.jsonl"
  step "train step, bf16: wenhui with the fused CUDA ops, one graph node per op"
  WENHUI_CUDA_OPS=fused WENHUI_LAYER_STACK=0 W --device cuda --dtype bf16 bench train $TRAIN --steps 5 2>&1 | tee "$OUT/train-wenhui-per-op.jsonl"
  step "train step, bf16: the default less the cublasLt GEMMs and the multi-tensor AdamW"
  WENHUI_CUDA_OPS=fused WENHUI_CUBLASLT=0 WENHUI_ADAMW_MULTI=0 W --device cuda --dtype bf16 bench train $TRAIN --steps 5 2>&1 | tee "$OUT/train-wenhui-no-lt.jsonl"
  step "train step, bf16: wenhui with the fused CUDA ops, the layers as one node (the default)"
  WENHUI_CUDA_OPS=fused W --device cuda --dtype bf16 bench train $TRAIN --steps 5 2>&1 | tee "$OUT/train-wenhui-fused.jsonl"
  step "train step, bf16: the default with flash attention (WENHUI_FLASH_ATTENTION=1)"
  WENHUI_CUDA_OPS=fused WENHUI_FLASH_ATTENTION=1 W --device cuda --dtype bf16 bench train $TRAIN --steps 5 2>&1 | tee "$OUT/train-wenhui-flash.jsonl"
  step "train step, bf16: flash attention without skipping masked tiles (WENHUI_FLASH_SKIP=0)"
  WENHUI_CUDA_OPS=fused WENHUI_FLASH_ATTENTION=1 WENHUI_FLASH_SKIP=0 W --device cuda --dtype bf16 bench train $TRAIN --steps 5 2>&1 | tee "$OUT/train-wenhui-flash-all.jsonl"
  step "train step, bf16: pytorch eager (logits on every row, as the official GLM code)"
  python3 bench/torch_glm_train.py $TRAIN --steps 5 $TORCH_DATA --device cuda --dtype bf16 2>&1 | tee "$OUT/train-torch.jsonl"
  step "train step, bf16: pytorch eager, logits on the loss rows only (as wenhui)"
  python3 bench/torch_glm_train.py $TRAIN --steps 5 $TORCH_DATA --logit-rows loss --device cuda --dtype bf16 2>&1 | tee "$OUT/train-torch-loss-rows.jsonl"
fi

for B in 1 32; do
  want generate || break
  step "generate, bf16, batch $B: wenhui with candle's composite layers"
  WENHUI_CUDA_OPS=composite W --device cuda --dtype bf16 bench generate $GEN --batch $B --decode-only --reps 2 2>&1 | tee "$OUT/generate-$B-wenhui.jsonl"
  step "generate, bf16, batch $B: wenhui with the fused CUDA ops (decoding kernels)"
  WENHUI_CUDA_OPS=fused W --device cuda --dtype bf16 bench generate $GEN --batch $B --decode-only --reps 2 2>&1 | tee "$OUT/generate-$B-wenhui-fused.jsonl"
  if [ "$B" = 1 ]; then
    step "generate, bf16, batch 1: fused, with cudarc's per-allocation CUDA events (WENHUI_CUDA_EVENTS=1)"
    WENHUI_CUDA_OPS=fused WENHUI_CUDA_EVENTS=1 W --device cuda --dtype bf16 bench generate $GEN --batch 1 --decode-only --reps 2 2>&1 | tee "$OUT/generate-1-wenhui-events.jsonl"
  fi
  step "generate, bf16, batch $B: pytorch eager"
  python3 bench/torch_glm_generate.py $GEN --batch $B --device cuda --dtype bf16 --reps 2 --warmup 1 2>&1 | tee "$OUT/generate-$B-torch.jsonl"
done

want smoke && step "cli smoke: poem on the GPU (embedded model, f32)"
want smoke && { W --device cuda poem --title 虹桥机场 --seed 1 2>&1 | tee "$OUT/poem.txt" || status=1; }
if want smoke && [ -d runs/poetry-corpus-generator ]; then
  step "cli smoke: pretrain on the GPU (bf16 mixed), then resume"
  rm -rf /tmp/pt-smoke
  W --device cuda --dtype bf16 pretrain --config examples/poetry-generator.toml --out-dir /tmp/pt-smoke \
    --steps 40 --save-every 20 --eval-every 20 --log-every 10 --quiet 2>&1 | tee "$OUT/pretrain.txt" || status=1
  W --device cuda --dtype bf16 pretrain --resume /tmp/pt-smoke --steps 60 --quiet 2>&1 | tee -a "$OUT/pretrain.txt" || status=1
  cp /tmp/pt-smoke/metrics.jsonl "$OUT/pretrain-metrics.jsonl" 2>/dev/null
fi

PROF=$PWD/dist/libwenhui_kernel_profile.so
if want profile && [ -f "$PROF" ]; then
  profile() { want profile || return 0; local name=$1; shift; LD_PRELOAD=$PROF WENHUI_KERNEL_PROFILE="$OUT/kernels-$name.txt" "$@" >/dev/null 2>"$OUT/kernels-$name.log"; }
  step "kernel profiles (CUPTI): 3 training steps, 16 decoding steps"
  WENHUI_CUDA_OPS=composite profile train-wenhui W --device cuda --dtype bf16 bench train $TRAIN --steps 3
  WENHUI_CUDA_OPS=fused profile train-wenhui-fused W --device cuda --dtype bf16 bench train $TRAIN --steps 3
  WENHUI_CUDA_OPS=fused WENHUI_FLASH_ATTENTION=1 profile train-wenhui-flash W --device cuda --dtype bf16 bench train $TRAIN --steps 3
  if train_batches; then TORCH_PROFILE_DATA="--batches $TRAIN_BATCHES"; else TORCH_PROFILE_DATA=""; fi
  profile train-torch python3 bench/torch_glm_train.py $TRAIN --steps 3 --warmup 1 $TORCH_PROFILE_DATA --device cuda --dtype bf16
  GEN16="${GEN/--new-tokens 128/--new-tokens 16}"
  WENHUI_CUDA_OPS=composite profile generate-1-wenhui W --device cuda --dtype bf16 bench generate $GEN16 --batch 1 --decode-only --reps 1
  WENHUI_CUDA_OPS=fused profile generate-1-wenhui-fused W --device cuda --dtype bf16 bench generate $GEN16 --batch 1 --decode-only --reps 1
  profile generate-1-torch python3 bench/torch_glm_generate.py $GEN16 --batch 1 --device cuda --dtype bf16 --reps 1 --warmup 0
fi

if want tune; then
  step "ptune and finetune: the GPU against the CPU (scripts/tune-parity.sh)"
  BIN="$BIN" scripts/tune-parity.sh cpu cuda 2>&1 | tee "$OUT/tune-parity.txt"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
fi

# The table: one line per benchmark, wenhui beside PyTorch.
python3 - "$OUT" <<'EOF' | tee "$OUT/summary.txt"
import json, sys, os
out = sys.argv[1]
def last_json(name):
    try:
        lines = [l for l in open(os.path.join(out, name)) if l.startswith("{")]
        return json.loads(lines[-1]) if lines else None
    except OSError:
        return None
gpu = open(os.path.join(out, "gpu.txt")).read().strip()
print(f"GPU: {gpu}")
t = last_json("train-torch.jsonl")
tl = last_json("train-torch-loss-rows.jsonl")
def vs(w, t):
    """Both speed-ups, > 1 when wenhui is faster, and a warning when the batches differ."""
    note = ""
    if t.get("data") != "wenhui-dump":
        note = " [pytorch on synthetic batches: tokens not comparable]"
    elif w.get("tokens_per_step") != t.get("tokens_per_step") or w.get("logit_rows_per_step") != t.get("loss_rows_per_step"):
        note = f" [other batches: tokens/step {w.get('tokens_per_step')} vs {t.get('tokens_per_step')}]"
    return (f"ratio {w['tokens_per_s']/t['tokens_per_s']:.2f}x tok/s, {t['step_ms']/w['step_ms']:.2f}x step time "
            f"(>1 = wenhui faster){note}")
for label, name in ((" (composite)", "train-wenhui.jsonl"), (" (fused, per-op nodes)", "train-wenhui-per-op.jsonl"),
                    (" (fused, stack, no cublasLt, per-parameter AdamW)", "train-wenhui-no-lt.jsonl"),
                    (" (fused, layer stack: the default)", "train-wenhui-fused.jsonl"),
                    (" (the default with flash attention)", "train-wenhui-flash.jsonl"),
                    (" (flash attention, every tile computed)", "train-wenhui-flash-all.jsonl")):
    w = last_json(name)
    if w and t:
        print(f"train step bf16{label}: wenhui {w['tokens_per_s']:.0f} tok/s {w['tflops']:.1f} TFLOP/s "
              f"(step {w['step_ms']:.1f} ms: fwd {w['forward_ms']:.1f}, bwd {w['backward_ms']:.1f}, adamw {w['optimizer_ms']:.1f}) | "
              f"pytorch {t['tokens_per_s']:.0f} tok/s {t.get('tflops', t['gflops']/1e3):.1f} TFLOP/s (step {t['step_ms']:.1f} ms) | {vs(w, t)}")
w = last_json("train-wenhui-fused.jsonl")
if w and tl:
    print(f"train step bf16, pytorch with logits on the loss rows only (as wenhui): {tl['tokens_per_s']:.0f} tok/s "
          f"{tl.get('tflops', tl['gflops']/1e3):.1f} TFLOP/s (step {tl['step_ms']:.1f} ms) | the default wenhui: {vs(w, tl)}")
for b in (1, 32):
    t = last_json(f"generate-{b}-torch.jsonl")
    for label, name in ((" (composite)", f"generate-{b}-wenhui.jsonl"), (" (fused ops)", f"generate-{b}-wenhui-fused.jsonl"),
                        (" (fused, CUDA events kept)", f"generate-{b}-wenhui-events.jsonl")):
        w = last_json(name)
        if w and t and w.get("decode"):
            d = w["decode"]
            print(f"generate bf16 batch {b}{label}: wenhui {d['tokens_per_s']:.0f} tok/s ({d['decode_ms_per_token']:.2f} ms/step) | "
                  f"pytorch {t['tokens_per_s']:.0f} tok/s ({t['decode_ms_per_token']:.2f} ms/step) | ratio {d['tokens_per_s']/t['tokens_per_s']:.2f}x")
fails = []
for label, name in (("parity, composite", "parity.txt"),
                    ("parity, composite, per-parameter AdamW", "parity-per-param-adamw.txt"),
                    ("parity, fused ops", "parity-fused.txt"),
                    ("parity, flash attention", "parity-flash.txt"),
                    ("parity, fused, no cublasLt", "parity-fused-no-cublaslt.txt"),
                    ("parity, fused, per-op nodes", "parity-fused-per-op.txt"),
                    ("parity, fused, per-parameter AdamW", "parity-fused-per-param-adamw.txt")):
    if name not in ("parity.txt", "parity-fused.txt", "parity-flash.txt") and not os.path.exists(os.path.join(out, name)):
        continue  # only run to pin a failure
    path = os.path.join(out, name)
    p = open(path).read().splitlines() if os.path.exists(path) else []
    bad = [l for l in p if l.startswith("FAIL")]
    fails += [f"{label}: {l}" for l in bad]
    print(f"{label}: {sum(l.startswith('ok') for l in p)} ok, {len(bad)} failed")
tp = os.path.join(out, "tune-parity.txt")
tune = [l for l in open(tp) if l.startswith(("tune parity", "FAIL"))] if os.path.exists(tp) else ["tune parity: not run\n"]
print("".join(tune), end="")
for l in fails:
    print("  " + l)
for name in ("train-wenhui", "train-wenhui-fused", "train-wenhui-flash", "train-torch", "generate-1-wenhui", "generate-1-wenhui-fused", "generate-1-torch"):
    path = os.path.join(out, f"kernels-{name}.txt")
    if os.path.exists(path):
        lines = open(path).read().splitlines()
        print(f"kernels {name}: " + (lines[0] if lines else "empty"))
        for l in lines[2:10]:
            print("  " + l)
EOF
# The device tool returns at most 8 files: every log goes back in one tarball beside the table.
[ "${GPU_CHECK_PACK:-1}" = 0 ] || (cd "$OUT" && tar -cJf logs.tar.xz --exclude summary.txt --exclude logs.tar.xz -- * && find . -maxdepth 1 -type f \
  ! -name summary.txt ! -name logs.tar.xz -delete)
exit $status
