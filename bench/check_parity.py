#!/usr/bin/env python3
"""Checks that torch_glm_train.GLM reproduces the glm-tiny fixture logits (tanh GELU, eval mode).

Usage: bench/.venv/bin/python bench/check_parity.py [tests/fixtures/glm-tiny]
Loads the fixture weights into the benchmark model and compares logits with `logits_gelu_tanh`
for every case that has `input_ids`, `position_ids` and `attention_mask_4d`.
"""

import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_glm_train as T  # noqa: E402


def read_safetensors(path: str) -> dict:
    """Minimal safetensors reader (no extra package): 8-byte header length, JSON header, raw data."""
    dtypes = {"F32": torch.float32, "F64": torch.float64, "I64": torch.int64, "I32": torch.int32}
    raw = open(path, "rb").read()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    body = raw[8 + n :]
    out = {}
    for k, v in header.items():
        if k == "__metadata__" or v["dtype"] not in dtypes:
            continue
        a, b = v["data_offsets"]
        out[k] = torch.frombuffer(bytearray(body[a:b]), dtype=dtypes[v["dtype"]]).reshape(v["shape"])
    return out


def main() -> None:
    d = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/glm-tiny"
    cfg = json.load(open(os.path.join(d, "config.json")))
    w = torch.load(os.path.join(d, "pytorch_model.bin"), map_location="cpu", weights_only=True)
    m = T.GLM(cfg["num_layers"], cfg["hidden_size"], cfg["num_attention_heads"], cfg["vocab_size"], cfg["max_sequence_length"])
    state = {}
    for k, v in w.items():
        k = k.removeprefix("transformer.").replace("attention.", "").replace("mlp.", "")
        state[k] = v
    m.load_state_dict(state, strict=True)
    m.eval()
    cases = read_safetensors(os.path.join(d, "cases.safetensors"))
    worst = 0.0
    n = 0
    for name in json.load(open(os.path.join(d, "cases.json")))["cases"]:
        keys = [f"{name}.{f}" for f in ("input_ids", "position_ids", "attention_mask_4d", "logits_gelu_tanh")]
        if not all(k in cases for k in keys):
            continue
        ids, pos, mask, want = (cases[k] for k in keys)
        with torch.no_grad():
            got = m(ids, pos, mask)
        err = (got - want).abs().max().item()
        print(f"{name}: max |Δlogit| = {err:.2e}")
        worst = max(worst, err)
        n += 1
    ok = n > 0 and worst <= 1e-4
    print(f"{n} cases, worst {worst:.2e}: {'OK' if ok else 'FAIL'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
