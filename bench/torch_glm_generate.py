#!/usr/bin/env python3
"""PyTorch eager reference for wenhui's batched greedy decode loop (`wenhui bench generate --batch B`).

A random-init GLM (torch_glm.py, the same math as torch_glm_train.py) generates as GLM's long
generation does, with a preallocated K/V cache:

* prefill: one forward over the prompt (`--prompt` tokens, ending in [gMASK]) as Part A: all-ones
  mask, positions 0..P-1, block positions 0. Every layer writes its K/V into the cache; only the
  last position's logits are computed; their argmax is the first token.
* `--new-tokens` decoding steps: a forward of each row's one new token against the cache (it sees
  every earlier token: causal for the generated part), standing at the [gMASK] position P-1 with
  block positions 1, 2, 3, ...; the argmax of its logits is the next token.

The cache is `[B, N, P + new_tokens, d]` per layer for K and for V, allocated before the clock starts
and written in place, so the timing is eager compute and not torch.cat reallocation. bf16/f16 cast
the weights (pure inference under torch.inference_mode()); f32 disables TF32 unless `--tf32`.

Prints ONE JSON line: medians over `--reps` timed generations after `--warmup` untimed ones;
prefill_ms = the prompt pass (with its argmax), decode_ms_per_token = (total - prefill) / new_tokens,
tokens_per_s = B * new_tokens / total seconds (prompt pass included), as wenhui reports them.
"""

import argparse
import json
import os
import statistics
import time

import torch

from torch_glm import GLM, pick_device, set_tf32, synchronize

DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}


def prompts(batch: int, prompt: int, vocab: int, gen: torch.Generator) -> torch.Tensor:
    """`batch` rows of random context tokens, each ending in the same stand-in [gMASK] id."""
    ids = torch.randint(0, vocab - 1, (batch, prompt), generator=gen)
    ids[:, -1] = vocab - 1
    return ids


@torch.inference_mode()
def generate(model: GLM, ids: torch.Tensor, new_tokens: int, caches, masks, step_positions, device) -> tuple:
    """Prefill + greedy decode; returns (prefill seconds, total seconds, tokens [B, new_tokens])."""
    b, p = ids.shape
    prompt_positions, prompt_mask = masks["positions"], masks["prompt"]
    t0 = time.perf_counter()
    logits = model(ids, prompt_positions, prompt_mask, caches, past=0, last_only=True)
    next_ids = logits.argmax(dim=-1)  # [B, 1]
    synchronize(device)
    t1 = time.perf_counter()
    out = []
    for step in range(new_tokens):
        past = p + step
        # Query past+step sees all past + 1 keys: the all-ones row of the (causal) mask.
        logits = model(next_ids, step_positions[step], masks["ones"][..., : past + 1], caches, past=past, last_only=True)
        next_ids = logits.argmax(dim=-1)
        out.append(next_ids)
    # The tokens come back to the host once, at the end (as wenhui's loop does).
    tokens = torch.cat(out, dim=1).cpu() if out else torch.empty(b, 0, dtype=torch.long)
    synchronize(device)
    return t1 - t0, time.perf_counter() - t0, tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--vocab", type=int, default=30592)
    ap.add_argument("--prompt", type=int, default=512, help="context tokens, [gMASK] included")
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--dtype", choices=tuple(DTYPES), default="f32", help="weights and compute dtype")
    ap.add_argument("--tf32", action="store_true", help="allow TF32 matmuls on the GPU for --dtype f32 (default: off)")
    ap.add_argument("--reps", type=int, default=3, help="timed generations (the median is reported)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed generations before timing")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads (CPU)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if a.hidden % a.heads:
        ap.error(f"--hidden {a.hidden} is not divisible by --heads {a.heads}")
    if a.prompt < 2 or a.new_tokens < 1 or a.batch < 1 or a.reps < 1 or a.warmup < 0 or a.vocab < 2 or a.threads < 1:
        ap.error("need --prompt >= 2, --new-tokens, --batch, --reps, --threads >= 1, --warmup >= 0, --vocab >= 2")
    device = pick_device(ap, a.device)
    dtype = DTYPES[a.dtype]
    cuda = device.type == "cuda"

    load_before = round(os.getloadavg()[0], 2)
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    if cuda:
        set_tf32(a.tf32)
    gen = torch.Generator().manual_seed(a.seed)
    b, p, n = a.batch, a.prompt, a.new_tokens
    with device:  # parameters initialised directly on the device, then cast
        model = GLM(a.layers, a.hidden, a.heads, a.vocab, max(p, n)).to(dtype).eval()
    params = sum(t.numel() for t in model.parameters())

    # Everything a generation needs is built before the clock starts.
    ids = prompts(b, p, a.vocab, gen).to(device)
    ar = torch.arange(p, device=device)
    masks = {
        "positions": torch.stack([ar, torch.zeros_like(ar)]).expand(b, 2, p),  # Part A: 0..P-1, block 0
        "prompt": torch.ones(1, 1, p, p, device=device, dtype=dtype),  # Part A is bidirectional
        "ones": torch.ones(1, 1, 1, p + n, device=device, dtype=dtype),
    }
    # Step s: position P-1 (the [gMASK]), block position s+1.
    step_positions = torch.tensor([[[p - 1], [s + 1]] for s in range(n)], device=device).unsqueeze(1).expand(n, b, 2, 1)
    caches = model.new_cache(b, p + n)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)

    prefill, total = [], []
    for rep in range(a.warmup + a.reps):
        t_prefill, t_total, tokens = generate(model, ids, n, caches, masks, step_positions, device)
        if rep >= a.warmup:
            prefill.append(t_prefill)
            total.append(t_total)
    assert tokens.shape == (b, n)
    prefill_s, total_s = statistics.median(prefill), statistics.median(total)

    report = {
        "impl": "pytorch",
        "torch": torch.__version__,
        "config": {
            "layers": a.layers, "hidden": a.hidden, "heads": a.heads, "vocab": a.vocab,
            "prompt": p, "new_tokens": n, "batch": b, "reps": a.reps, "warmup": a.warmup,
        },
        "device": a.device,
        "dtype": a.dtype,
        "gpu": torch.cuda.get_device_name(device) if cuda else None,
        "params": params,
        "prefill_ms": round(prefill_s * 1e3, 3),
        "decode_ms_per_token": round((total_s - prefill_s) * 1e3 / n, 3),
        "total_ms": round(total_s * 1e3, 3),
        "tokens_per_s": round(b * n / total_s, 1),
    }
    if cuda:
        report["tf32"] = a.tf32
        report["peak_mem_gb"] = round(torch.cuda.max_memory_allocated(device) / 1e9, 2)
    else:
        report["threads"] = a.threads
    report["load_avg_1m_before"] = load_before
    print(json.dumps(report))


if __name__ == "__main__":
    main()
