#!/usr/bin/env bash
# `wenhui ptune`, `wenhui finetune` and `wenhui finetune --task seq2seq` on two devices, same seed,
# same data: the logged training losses and dev metrics must agree (f32; TF32 off). Part of
# scripts/gpu-check.sh (`cpu cuda`); `scripts/tune-parity.sh cpu cpu` checks the script itself and
# the CPU's determinism on any machine (.ci/run does, after the tests).
#
#   scripts/tune-parity.sh DEVICE_A DEVICE_B [OUT_DIR]     # default OUT_DIR: /tmp/tune-parity
#
# Backbone: tests/fixtures/glm-tiny (2 layers, hidden 64, random weights) over a character
# vocabulary; tasks: tests/fixtures/toy-cloze (as in tests/ptune.rs: the label letter is in the input)
# and, for seq2seq, reversing a string of `abcdef` (tests/seq2seq.rs).
# Tolerances: each logged loss (the mean of 10 steps) within 1e-3 relative at step 10, and after
# that within 2e-2 relative or 2e-3 absolute (Adam amplifies rounding differences over steps);
# dev accuracy within 0.1, dev loss within 2e-2 relative. Fine-tuning runs with backbone dropout
# off, since the two devices draw different dropout masks.
set -euo pipefail
cd "$(dirname "$0")/.."
A=${1:?usage: scripts/tune-parity.sh DEVICE_A DEVICE_B [OUT_DIR]}
B=${2:?usage: scripts/tune-parity.sh DEVICE_A DEVICE_B [OUT_DIR]}
D=${3:-/tmp/tune-parity}
BIN=${BIN:-target/release/wenhui}
rm -rf "$D" && mkdir -p "$D"

python3 - "$D" <<'EOF'
import random, sys
d = sys.argv[1]
open(f"{d}/chars.txt", "w").write("".join(c + "\n" for c in
    "abcdefghijklmnopqrstuvwxyz.,!?:'*-ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"))
# seq2seq: reverse a short string (tests/seq2seq.rs).
for name, seed in (("s2s-train", 3), ("s2s-dev", 4)):
    rng = random.Random(seed)
    with open(f"{d}/{name}.jsonl", "w") as f:
        for _ in range(64):
            w = "".join(rng.choice("abcdef") for _ in range(rng.randint(3, 5)))
            f.write(f'{{"source": "{w}", "target": "{w[::-1]}"}}\n')
open(f"{d}/s2s-chars.txt", "w").write("abcdef>\n")
letters = "abcdefghijklmnopqrstuvw"
for name, seed in (("train", 1), ("dev", 2)):
    rng = random.Random(seed)
    with open(f"{d}/{name}.jsonl", "w") as f:
        for _ in range(64):
            label = rng.choice("xz")
            w = "".join(rng.choice(letters) for _ in range(2)) + label + "".join(rng.choice(letters) for _ in range(2))
            f.write(f'{{"w": "{w}", "label": "{label}"}}\n')
EOF

# The seq2seq backbone: glm-tiny's weights with a character tokenizer over `abcdef>`.
mkdir -p "$D/s2s-model"
cp tests/fixtures/glm-tiny/config.json tests/fixtures/glm-tiny/model.safetensors "$D/s2s-model/"
"$BIN" tokenizer train --kind chars --vocab-size 64 --min-frequency 1 -o "$D/s2s-model" "$D/s2s-chars.txt" >/dev/null

common=(--task tests/fixtures/toy-cloze/toy.toml --model tests/fixtures/glm-tiny --tokenizer "$D/chars.txt"
  --train "$D/train.jsonl" --dev "$D/dev.jsonl" --max-steps 40 --batch-size 16 --eval-every 20 --seed 7 --quiet)
for side in A B; do
  dev=${!side}
  "$BIN" --device "$dev" ptune "${common[@]}" --prompt-lr 3e-3 -o "$D/ptune-$side" >"$D/ptune-$side.log" 2>&1 \
    || { cat "$D/ptune-$side.log" >&2; exit 1; }
  "$BIN" --device "$dev" finetune "${common[@]}" --dropout false --lm-lr 1e-3 --prompt-lr 3e-3 \
    -o "$D/finetune-$side" >"$D/finetune-$side.log" 2>&1 || { cat "$D/finetune-$side.log" >&2; exit 1; }
  "$BIN" --device "$dev" finetune --task seq2seq --model "$D/s2s-model" --train "$D/s2s-train.jsonl" \
    --dev "$D/s2s-dev.jsonl" --template '{source}>[MASK]' --max-source-len 12 --max-target-len 8 --steps 40 \
    --batch-size 16 --lr 3e-3 --dropout 0 --eval-every 20 --seed 7 -o "$D/seq2seq-$side" \
    >"$D/seq2seq-$side.log" 2>&1 || { cat "$D/seq2seq-$side.log" >&2; exit 1; }
done

python3 - "$D" "$A" "$B" <<'EOF'
import json, sys
d, a, b = sys.argv[1:]
def curve(run):
    rows = [json.loads(l) for l in open(f"{d}/{run}/metrics.jsonl")]
    dev = {r["step"]: r["dev"]["acc"] for r in rows if "dev" in r}        # cloze: dev accuracy
    dev.update({r["step"]: r["dev_loss"] for r in rows if "dev_loss" in r})  # seq2seq: dev loss
    return {r["step"]: r["loss"] for r in rows if "loss" in r}, dev
bad = 0
for mode in ("ptune", "finetune", "seq2seq"):
    (la, da), (lb, db) = curve(f"{mode}-A"), curve(f"{mode}-B")
    if sorted(la) != sorted(lb) or not la:
        print(f"FAIL {mode}: logged steps differ: {sorted(la)} vs {sorted(lb)}"); bad += 1; continue
    for step in sorted(la):
        diff = abs(la[step] - lb[step])
        tol = 1e-3 * abs(la[step]) if step <= 10 else max(2e-2 * abs(la[step]), 2e-3)
        ok = diff <= tol
        bad += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {mode} step {step:3d}: loss {la[step]:.6f} ({a}) vs {lb[step]:.6f} ({b}), |diff| {diff:.1e} ≤ {tol:.1e}")
    for step in sorted(da):
        tol = 2e-2 * abs(da[step]) if mode == "seq2seq" else 0.1
        ok = step in db and abs(da[step] - db[step]) <= tol
        bad += not ok
        what = "dev loss" if mode == "seq2seq" else "dev acc"
        print(f"{'ok  ' if ok else 'FAIL'} {mode} step {step:3d}: {what} {da[step]:.4f} ({a}) vs {db.get(step, float('nan')):.4f} ({b})")
print(f"tune parity {a} vs {b}: {'passed' if bad == 0 else f'{bad} failed'}")
sys.exit(1 if bad else 0)
EOF
