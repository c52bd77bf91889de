#!/usr/bin/env bash
# Compares one GLM training step: `wenhui bench train` (candle) vs bench/torch_glm_train.py (PyTorch eager).
#
# Usage: bench/compare_train.sh [--layers L] [--hidden H] [--heads N] [--vocab V] [--seq S]
#                               [--batch B] [--steps K] [--threads T] [--warmup W] [--runs R]
# Defaults are the torch script's: L=4 H=256 N=4 V=8000 S=256 B=8 K=10 T=2 W=2, R=3 runs each.
# The two are run alternately R times each; the median over runs of each reported figure is printed
# with the ratio wenhui / PyTorch. Threads: PyTorch gets --threads T, wenhui RAYON_NUM_THREADS=T.
# --warmup only reaches the torch script (`wenhui bench train` takes just the model/step flags).
# Environment: PYTHON (default bench/.venv/bin/python), CARGO_TARGET_DIR as usual.
# Benchmark on a quiet machine: check `uptime` first; the load is printed with the results.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
python="${PYTHON:-$here/.venv/bin/python}"

layers=4 hidden=256 heads=4 vocab=8000 seq=256 batch=8 steps=10 threads=2 warmup=2 runs=3
while [[ $# -gt 0 ]]; do
  [[ $# -ge 2 ]] || { echo "error: $1 needs a value" >&2; exit 2; }
  case "$1" in
    --layers) layers=$2 ;; --hidden) hidden=$2 ;; --heads) heads=$2 ;; --vocab) vocab=$2 ;;
    --seq) seq=$2 ;; --batch) batch=$2 ;; --steps) steps=$2 ;; --threads) threads=$2 ;;
    --warmup) warmup=$2 ;; --runs) runs=$2 ;;
    *) echo "error: unknown option $1 (see the header of $0)" >&2; exit 2 ;;
  esac
  shift 2
done
[[ -x "$python" ]] || { echo "error: no Python at $python: install the venv as bench/README.md says, or set PYTHON" >&2; exit 2; }

shape=(--layers "$layers" --hidden "$hidden" --heads "$heads" --vocab "$vocab" --seq "$seq" --batch "$batch" --steps "$steps")
cd "$root"
cargo build --release --quiet
echo "load before: $(uptime)" >&2

wenhui_out=() torch_out=()
for ((r = 1; r <= runs; r++)); do
  line=$(RAYON_NUM_THREADS="$threads" cargo run --release --quiet -- bench train "${shape[@]}" | tail -n 1)
  echo "wenhui  run $r: $line" >&2
  wenhui_out+=("$line")
  line=$("$python" "$here/torch_glm_train.py" "${shape[@]}" --threads "$threads" --warmup "$warmup" | tail -n 1)
  echo "pytorch run $r: $line" >&2
  torch_out+=("$line")
done
echo "load after: $(uptime)" >&2

# Medians and ratios (plain python3: only json and statistics are needed).
python3 - "$runs" "${wenhui_out[@]}" "${torch_out[@]}" <<'EOF'
import json, statistics, sys
runs = int(sys.argv[1])
lines = sys.argv[2:]
impls = {"wenhui": [json.loads(l) for l in lines[:runs]], "pytorch": [json.loads(l) for l in lines[runs:]]}
keys = ("tokens_per_s", "step_ms", "gflops")
med = {name: {k: statistics.median(float(r[k]) for r in rs) for k in keys} for name, rs in impls.items()}
print(f"{'':8} {'tokens/s':>12} {'step ms':>10} {'GFLOP/s':>9}   (median of {runs} runs)")
for name, m in med.items():
    print(f"{name:8} {m['tokens_per_s']:12.1f} {m['step_ms']:10.2f} {m['gflops']:9.2f}")
w, t = med["wenhui"], med["pytorch"]
print(f"ratio wenhui/pytorch: tokens/s {w['tokens_per_s'] / t['tokens_per_s']:.3f}, step time {w['step_ms'] / t['step_ms']:.3f}")
EOF
