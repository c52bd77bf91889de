#!/usr/bin/env bash
# `wenhui ptune` and `wenhui finetune` on two devices, same seed, same data: the logged training
# losses and dev accuracies must agree (f32; TF32 off). Part of scripts/gpu-check.sh (`cpu cuda`);
# `scripts/tune-parity.sh cpu cpu` checks the script itself (and determinism) on any machine.
#
#   scripts/tune-parity.sh DEVICE_A DEVICE_B [OUT_DIR]     # default OUT_DIR: /tmp/tune-parity
#
# Backbone: tests/fixtures/glm-tiny (2 layers, hidden 64, random weights) over a character
# vocabulary; task: the synthetic cloze task of tests/ptune.rs (the label letter is in the input).
# Tolerances: each logged loss (the mean of 10 steps) within 1e-3 relative at step 10, and after
# that within 2e-2 relative or 2e-3 absolute (Adam amplifies rounding differences over steps);
# dev accuracy within 0.1. Finetune runs
# with backbone dropout off, since the two devices draw different dropout masks.
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
open(f"{d}/toy.toml", "w").write('''name = "toy"
fields = ["w"]
template = "[P*3] {w} [P*3] [MASK] ."
metrics = ["acc"]
[[verbalizer]]
label = "x"
words = ["x"]
[[verbalizer]]
label = "z"
words = ["z"]
''')
letters = "abcdefghijklmnopqrstuvw"
for name, seed in (("train", 1), ("dev", 2)):
    rng = random.Random(seed)
    with open(f"{d}/{name}.jsonl", "w") as f:
        for _ in range(64):
            label = rng.choice("xz")
            w = "".join(rng.choice(letters) for _ in range(2)) + label + "".join(rng.choice(letters) for _ in range(2))
            f.write(f'{{"w": "{w}", "label": "{label}"}}\n')
EOF

common=(--task "$D/toy.toml" --model tests/fixtures/glm-tiny --tokenizer "$D/chars.txt"
  --train "$D/train.jsonl" --dev "$D/dev.jsonl" --max-steps 40 --batch-size 16 --eval-every 20 --seed 7 --quiet)
for side in A B; do
  dev=${!side}
  "$BIN" --device "$dev" ptune "${common[@]}" --prompt-lr 3e-3 -o "$D/ptune-$side" >"$D/ptune-$side.log" 2>&1 \
    || { cat "$D/ptune-$side.log" >&2; exit 1; }
  "$BIN" --device "$dev" finetune "${common[@]}" --dropout false --lm-lr 1e-3 --prompt-lr 3e-3 \
    -o "$D/finetune-$side" >"$D/finetune-$side.log" 2>&1 || { cat "$D/finetune-$side.log" >&2; exit 1; }
done

python3 - "$D" "$A" "$B" <<'EOF'
import json, sys
d, a, b = sys.argv[1:]
def curve(run):
    rows = [json.loads(l) for l in open(f"{d}/{run}/metrics.jsonl")]
    return ({r["step"]: r["loss"] for r in rows if "loss" in r},
            {r["step"]: r["dev"]["acc"] for r in rows if "dev" in r})
bad = 0
for mode in ("ptune", "finetune"):
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
        ok = step in db and abs(da[step] - db[step]) <= 0.1
        bad += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {mode} step {step:3d}: dev acc {da[step]:.3f} ({a}) vs {db.get(step, float('nan')):.3f} ({b})")
print(f"tune parity {a} vs {b}: {'passed' if bad == 0 else f'{bad} failed'}")
sys.exit(1 if bad else 0)
EOF
