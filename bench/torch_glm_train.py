#!/usr/bin/env python3
"""PyTorch eager reference for `wenhui bench train`: one GLM training step on the CPU or a GPU.

The model (torch_glm.py) follows the GLM spec (shared/specs/glm-spec.md §1) and was written from it:

* x0 = word_emb[ids] + pos_emb[pos] + block_pos_emb[block]; dropout 0.1
* L pre-LN blocks (LayerNorm eps 1e-5):
    a = LN1(x); QKV = a @ Wqkv^T + b (one fused H->3H Linear, split contiguously)
    s = Q @ (K^T / sqrt(d)); s = s * M + (-65504) * (1 - M)   (M = 0/1 GLM mask from `sep`)
    P = dropout(softmax(s)); h = x + dropout(dense(P @ V))
    x = h + dropout(W2 gelu_tanh(W1 LN2(h)))                   (4H MLP)
* logits = LN_final(x) @ word_emb^T (tied, no bias)
* loss = sum(CE(logits, targets) * loss_mask) / sum(loss_mask), loss_mask = 1 on Part B only

Synthetic data is shaped like GLM blank infilling: random tokens, one random `sep` per row in
[S/2, S), Part A positions 0..sep-1 with block position 0, Part B as one span standing at the
position of its [MASK] (sep - 1) with block positions 1, 2, ...; loss on Part B only.

Optimiser as in GLM pretraining: AdamW lr 1e-4, betas (0.9, 0.98), eps 1e-6, weight decay 0.1
except biases and LayerNorm weights; global grad-norm clipping at 1.0.

Prints ONE JSON line. Training: median step time over `--steps` timed steps after `--warmup`
untimed ones, tokens_per_s = B*S / step time, gflops = (6*params*B*S + 12*L*B*S^2*H) / step time.
With `--forward-only`: eval mode (no dropout), no autograd, median ms per forward of B*S tokens,
GFLOP/s counted as `wenhui bench forward` counts them (24*L*H^2 + 4*S*L*H + 2*H*V per token).

`--device cuda`: model and data on the GPU, fused AdamW, every timed step ends with
torch.cuda.synchronize(). `--dtype bf16` is mixed precision as wenhui trains: f32 master weights and
AdamW state, forward/backward under torch.autocast(bfloat16), the cross-entropy in f32. `--dtype f32`
on the GPU disables TF32 unless `--tf32` is given.
"""

import argparse
import contextlib
import json
import os
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

# The model lives in torch_glm.py (shared with torch_glm_generate.py); re-exported here for
# check_parity.py and other importers of this module.
from torch_glm import DROPOUT, GLM, LN_EPS, MASK_FILL, Block, pick_device, set_tf32, synchronize  # noqa: F401


def glm_batch(batch: int, seq: int, vocab: int, gen: torch.Generator):
    """Random GLM blank-infilling batch: ids, position_ids [B,2,S], 0/1 mask [B,1,S,S], targets, loss_mask."""
    ids = torch.randint(0, vocab, (batch, seq), generator=gen)
    targets = torch.randint(0, vocab, (batch, seq), generator=gen)
    seps = torch.randint(seq // 2, seq, (batch,), generator=gen)
    ar = torch.arange(seq)
    position_ids = torch.zeros(batch, 2, seq, dtype=torch.long)
    mask = torch.zeros(batch, 1, seq, seq)
    loss_mask = torch.zeros(batch, seq)
    causal = torch.tril(torch.ones(seq, seq))
    for r, sep in enumerate(seps.tolist()):
        in_b = ar >= sep
        # Part A: positions 0..sep-1, block 0. Part B: one span at its [MASK] position (sep-1), blocks 1..n.
        position_ids[r, 0] = torch.where(in_b, torch.full_like(ar, sep - 1), ar)
        position_ids[r, 1] = torch.where(in_b, ar - sep + 1, torch.zeros_like(ar))
        m = causal.clone()
        m[:, :sep] = 1.0  # every query sees all of Part A; Part B is causal within itself
        mask[r, 0] = m
        loss_mask[r] = in_b.float()
    return ids, position_ids, mask, targets, loss_mask


def masked_lm_loss(logits: torch.Tensor, targets: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
    ce = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="none")
    return (ce * loss_mask.flatten()).sum() / loss_mask.sum()


def param_groups(model: nn.Module, weight_decay: float):
    """Weight decay on every weight except biases and LayerNorm weights (as GLM does)."""
    decay, no_decay = [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            (no_decay if isinstance(module, nn.LayerNorm) or name == "bias" else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=8000)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=10, help="timed steps (the median is reported)")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps before timing")
    ap.add_argument("--forward-only", action="store_true", help="time eval-mode forwards without autograd instead of training steps")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--dtype", choices=("f32", "bf16"), default="f32", help="bf16: autocast mixed precision, f32 master weights")
    ap.add_argument("--tf32", action="store_true", help="allow TF32 matmuls on the GPU (default: off, IEEE f32)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if a.hidden % a.heads:
        ap.error(f"--hidden {a.hidden} is not divisible by --heads {a.heads}")
    if a.seq < 2 or a.steps < 1 or a.warmup < 0 or a.threads < 1:
        ap.error("need --seq >= 2, --steps >= 1, --warmup >= 0, --threads >= 1")
    device = pick_device(ap, a.device)
    cuda = device.type == "cuda"

    load_before = round(os.getloadavg()[0], 2)  # benchmark on a quiet machine: this should be well below 1
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    if cuda:
        set_tf32(a.tf32)
    gen = torch.Generator().manual_seed(a.seed)
    with device:  # parameters initialised directly on the device
        model = GLM(a.layers, a.hidden, a.heads, a.vocab, a.seq)
    params = sum(p.numel() for p in model.parameters())
    tokens = a.batch * a.seq
    batches = [
        tuple(t.to(device) for t in glm_batch(a.batch, a.seq, a.vocab, gen)) for _ in range(min(a.warmup + a.steps, 4))
    ]
    # Mixed precision: weights stay f32, autocast runs matmuls/linears in bf16 (softmax, LayerNorm
    # and the loss in f32, as autocast's op lists say).
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16) if a.dtype == "bf16" else contextlib.nullcontext()
    )
    times = []

    def clock() -> float:
        synchronize(device)
        return time.perf_counter()

    if a.forward_only:
        model.eval()
        with torch.inference_mode():
            for i in range(a.warmup + a.steps):
                ids, pos, mask, _, _ = batches[i % len(batches)]
                t = clock()
                with autocast:
                    model(ids, pos, mask)
                if i >= a.warmup:
                    times.append(clock() - t)
        ms = statistics.median(times) * 1e3
        h, l, v = a.hidden, a.layers, a.vocab
        flops = tokens * (24.0 * l * h * h + 4.0 * a.seq * l * h + 2.0 * h * v)
        gflops = flops / (ms / 1e3) / 1e9
        report = {
            "impl": "pytorch",
            "torch": torch.__version__,
            "threads": a.threads,
            "mode": "forward",
            "forward_ms": round(ms, 3),
            "forward_tokens_per_s": round(tokens / (ms / 1e3), 1),
            "forward_gflops": round(gflops, 2),
            "params": params,
        }
    else:
        model.train()
        # fused=True: one kernel for the whole update on the GPU, PyTorch eager's fastest AdamW.
        opt = torch.optim.AdamW(param_groups(model, 0.1), lr=1e-4, betas=(0.9, 0.98), eps=1e-6, fused=cuda or None)
        losses = []
        for i in range(a.warmup + a.steps):
            ids, pos, mask, targets, loss_mask = batches[i % len(batches)]
            t = clock()
            opt.zero_grad(set_to_none=True)
            with autocast:
                logits = model(ids, pos, mask)
            loss = masked_lm_loss(logits, targets, loss_mask)  # upcasts the logits: CE in f32
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            losses.append(loss.item())
            if i >= a.warmup:
                times.append(clock() - t)
        step = statistics.median(times)
        flops = 6.0 * params * tokens + 12.0 * a.layers * a.batch * a.seq * a.seq * a.hidden
        gflops = flops / step / 1e9
        report = {
            "impl": "pytorch",
            "torch": torch.__version__,
            "threads": a.threads,
            "tokens_per_s": round(tokens / step, 1),
            "step_ms": round(step * 1e3, 3),
            "gflops": round(gflops, 2),
            "params": params,
            "loss_first": round(losses[0], 4),
            "loss_last": round(losses[-1], 4),
        }
    report["load_avg_1m_before"] = load_before
    report.update({k: getattr(a, k) for k in ("layers", "hidden", "heads", "vocab", "seq", "batch", "steps", "warmup")})
    report.update({"device": a.device, "dtype": a.dtype})
    if cuda:
        report.update({
            "gpu": torch.cuda.get_device_name(device),
            "tf32": a.tf32,
            "tflops": round(gflops / 1e3, 2),
            "peak_mem_gb": round(torch.cuda.max_memory_allocated(device) / 1e9, 2),
        })
    print(json.dumps(report))


if __name__ == "__main__":
    main()
