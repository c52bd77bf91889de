#!/usr/bin/env bash
# Compares one GLM training step: `wenhui bench train` (candle) vs bench/torch_glm_train.py (PyTorch eager),
# on the same batches.
#
# Usage: bench/compare_train.sh [--layers L] [--hidden H] [--heads N] [--vocab V] [--seq S]
#                               [--batch B] [--steps K] [--threads T] [--warmup W] [--runs R]
#                               [--logit-rows all|loss|both]
# Defaults: L=4 H=256 N=4 V=8000 S=256 B=8 K=10 T=2 W=2, R=3 runs each, --logit-rows all.
# wenhui first writes the batches of its run (`bench train --dump-batches FILE --dump-only`: W warmup
# + K timed blank-infilling batches, seeded, so every wenhui run trains on exactly these), and the
# torch script trains on that file (`--batches FILE`): the same ids, positions, masks, targets and
# loss rows, the same tokens counted (B × the longest row of each batch). PyTorch computes the logits
# on every position by default, as the official GLM code does (--logit-rows all), or only on the loss
# rows, as wenhui does (--logit-rows loss: the equal-algorithm comparison); both: one run of each.
# The two are run alternately R times each; every run is printed, then the median over runs of each
# figure and the speed-ups, both > 1 when wenhui is faster: tokens/s wenhui / PyTorch, step time
# PyTorch / wenhui. GFLOP/s are as executed by each (see bench/README.md).
# Threads: PyTorch gets --threads T, wenhui RAYON_NUM_THREADS=T.
# Environment: PYTHON (default bench/.venv/bin/python), CARGO_TARGET_DIR as usual.
# Benchmark on a quiet machine: check `uptime` first; the load is printed with the results.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
python="${PYTHON:-$here/.venv/bin/python}"

layers=4 hidden=256 heads=4 vocab=8000 seq=256 batch=8 steps=10 threads=2 warmup=2 runs=3 logit_rows=all
while [[ $# -gt 0 ]]; do
  [[ $# -ge 2 ]] || { echo "error: $1 needs a value" >&2; exit 2; }
  case "$1" in
    --layers) layers=$2 ;; --hidden) hidden=$2 ;; --heads) heads=$2 ;; --vocab) vocab=$2 ;;
    --seq) seq=$2 ;; --batch) batch=$2 ;; --steps) steps=$2 ;; --threads) threads=$2 ;;
    --warmup) warmup=$2 ;; --runs) runs=$2 ;; --logit-rows) logit_rows=$2 ;;
    *) echo "error: unknown option $1 (see the header of $0)" >&2; exit 2 ;;
  esac
  shift 2
done
case "$logit_rows" in
  all | loss) modes=("$logit_rows") ;;
  both) modes=(all loss) ;;
  *) echo "error: --logit-rows is all, loss or both (got $logit_rows)" >&2; exit 2 ;;
esac
[[ -x "$python" ]] || { echo "error: no Python at $python: install the venv as bench/README.md says, or set PYTHON" >&2; exit 2; }

shape=(--layers "$layers" --hidden "$hidden" --heads "$heads" --vocab "$vocab" --seq "$seq" --batch "$batch")
cd "$root"
cargo build --release --quiet
# The binary itself, not `cargo run`: no rebuild or lock wait between runs.
wenhui="${CARGO_TARGET_DIR:-$root/target}/release/wenhui"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
batches="$tmp/batches.jsonl"
"$wenhui" bench train "${shape[@]}" --warmup "$warmup" --steps "$steps" --dump-batches "$batches" --dump-only >"$tmp/dump.json"
echo "batches: $(cat "$tmp/dump.json")" >&2
echo "load before: $(uptime)" >&2

results=()
for ((r = 1; r <= runs; r++)); do
  line=$(RAYON_NUM_THREADS="$threads" "$wenhui" bench train "${shape[@]}" --warmup "$warmup" --steps "$steps" | tail -n 1)
  echo "wenhui  run $r: $line" >&2
  results+=("wenhui" "$line")
  for mode in "${modes[@]}"; do
    line=$("$python" "$here/torch_glm_train.py" --batches "$batches" --threads "$threads" --logit-rows "$mode" | tail -n 1)
    echo "pytorch ($mode logit rows) run $r: $line" >&2
    results+=("pytorch-$mode" "$line")
  done
done
echo "load after: $(uptime)" >&2

# Per run and medians, with the speed-ups (plain python3: only json and statistics are needed).
python3 - "${results[@]}" <<'EOF'
import json, statistics, sys
args = sys.argv[1:]
runs = {}
for name, line in zip(args[::2], args[1::2]):
    runs.setdefault(name, []).append(json.loads(line))
keys = ("step_ms", "tokens_per_s", "gflops")
w = runs["wenhui"]
for name, rs in runs.items():
    if name != "wenhui":
        for a, b in zip(w, rs):  # the same batches: the same tokens and loss rows
            if a["tokens_per_step"] != b["tokens_per_step"] or a["logit_rows_per_step"] != b["loss_rows_per_step"]:
                print(f"WARNING: {name} counted other batches than wenhui: tokens/step {b['tokens_per_step']} vs "
                      f"{a['tokens_per_step']}, loss rows/step {b['loss_rows_per_step']} vs {a['logit_rows_per_step']}")
label = {"wenhui": "wenhui", "pytorch-all": "pytorch (logits on all rows)", "pytorch-loss": "pytorch (logits on loss rows)"}
print(f"tokens/step {w[0]['tokens_per_step']:.1f}, loss (logit) rows/step {w[0]['logit_rows_per_step']:.1f}; "
      "speed-ups > 1 = wenhui faster (tokens/s wenhui/pytorch, step time pytorch/wenhui)")
print(f"{'':32} {'run':>3} {'step ms':>9} {'tokens/s':>10} {'GFLOP/s':>8}   {'speed-up tokens/s':>17} {'step time':>9}")
med = {}
for name, rs in runs.items():
    for i, r in enumerate(rs):
        ratio = "" if name == "wenhui" else f"   {w[i]['tokens_per_s'] / r['tokens_per_s']:17.3f} {r['step_ms'] / w[i]['step_ms']:9.3f}"
        print(f"{label.get(name, name):32} {i + 1:3} {r['step_ms']:9.2f} {r['tokens_per_s']:10.1f} {r['gflops']:8.2f}{ratio}")
    med[name] = {k: statistics.median(float(r[k]) for r in rs) for k in keys}
for name, m in med.items():
    ratio = "" if name == "wenhui" else (f"   {med['wenhui']['tokens_per_s'] / m['tokens_per_s']:17.3f} "
                                         f"{m['step_ms'] / med['wenhui']['step_ms']:9.3f}")
    print(f"{label.get(name, name):32} {'med':>3} {m['step_ms']:9.2f} {m['tokens_per_s']:10.1f} {m['gflops']:8.2f}{ratio}")
EOF
