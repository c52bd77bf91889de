#!/usr/bin/env python3
"""PyTorch eager reference for `wenhui bench train`: one GLM training step on the CPU.

The model follows the GLM spec (shared/specs/glm-spec.md §1) and was written from it:

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
"""

import argparse
import json
import math
import os
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

MASK_FILL = -65504.0
LN_EPS = 1e-5
DROPOUT = 0.1


class Block(nn.Module):
    """One pre-LN GLM transformer layer."""

    def __init__(self, hidden: int, heads: int, out_std: float):
        super().__init__()
        self.heads = heads
        self.input_layernorm = nn.LayerNorm(hidden, eps=LN_EPS)
        self.query_key_value = nn.Linear(hidden, 3 * hidden)
        self.dense = nn.Linear(hidden, hidden)
        self.post_attention_layernorm = nn.LayerNorm(hidden, eps=LN_EPS)
        self.dense_h_to_4h = nn.Linear(hidden, 4 * hidden)
        self.dense_4h_to_h = nn.Linear(4 * hidden, hidden)
        for lin, std in ((self.query_key_value, 0.02), (self.dense, out_std), (self.dense_h_to_4h, 0.02), (self.dense_4h_to_h, out_std)):
            nn.init.normal_(lin.weight, 0.0, std)
            nn.init.zeros_(lin.bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, s, h = x.shape
        n = self.heads
        d = h // n
        qkv = self.query_key_value(self.input_layernorm(x))
        q, k, v = qkv.split(h, dim=-1)  # contiguous thirds: Q | K | V

        def heads(t: torch.Tensor) -> torch.Tensor:  # [B,S,H] -> [B,N,S,d], head j = channels j*d..(j+1)*d
            return t.view(b, s, n, d).transpose(1, 2)

        q, k, v = heads(q), heads(k), heads(v)
        scores = torch.matmul(q, k.transpose(-1, -2) / math.sqrt(d))
        scores = scores * mask + MASK_FILL * (1.0 - mask)
        probs = F.dropout(torch.softmax(scores, dim=-1), DROPOUT, self.training)
        ctx = torch.matmul(probs, v).transpose(1, 2).reshape(b, s, h)
        x = x + F.dropout(self.dense(ctx), DROPOUT, self.training)
        mlp = self.dense_4h_to_h(F.gelu(self.dense_h_to_4h(self.post_attention_layernorm(x)), approximate="tanh"))
        return x + F.dropout(mlp, DROPOUT, self.training)


class GLM(nn.Module):
    """GLM: 2D position embeddings, pre-LN blocks, final LN, logits tied to the word embeddings."""

    def __init__(self, layers: int, hidden: int, heads: int, vocab: int, max_seq: int):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab, hidden)
        self.position_embeddings = nn.Embedding(max_seq + 1, hidden)
        self.block_position_embeddings = nn.Embedding(max_seq + 1, hidden)
        for emb in (self.word_embeddings, self.position_embeddings, self.block_position_embeddings):
            nn.init.normal_(emb.weight, 0.0, 0.02)
        out_std = 0.02 / math.sqrt(2.0 * layers)
        self.layers = nn.ModuleList(Block(hidden, heads, out_std) for _ in range(layers))
        self.final_layernorm = nn.LayerNorm(hidden, eps=LN_EPS)

    def forward(self, ids: torch.Tensor, position_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.word_embeddings(ids) + self.position_embeddings(position_ids[:, 0]) + self.block_position_embeddings(position_ids[:, 1])
        x = F.dropout(x, DROPOUT, self.training)
        for layer in self.layers:
            x = layer(x, mask)
        return F.linear(self.final_layernorm(x), self.word_embeddings.weight)


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
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if a.hidden % a.heads:
        ap.error(f"--hidden {a.hidden} is not divisible by --heads {a.heads}")
    if a.seq < 2 or a.steps < 1 or a.warmup < 0 or a.threads < 1:
        ap.error("need --seq >= 2, --steps >= 1, --warmup >= 0, --threads >= 1")

    load_before = round(os.getloadavg()[0], 2)  # benchmark on a quiet machine: this should be well below 1
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    gen = torch.Generator().manual_seed(a.seed)
    model = GLM(a.layers, a.hidden, a.heads, a.vocab, a.seq)
    params = sum(p.numel() for p in model.parameters())
    tokens = a.batch * a.seq
    batches = [glm_batch(a.batch, a.seq, a.vocab, gen) for _ in range(min(a.warmup + a.steps, 4))]
    times = []

    if a.forward_only:
        model.eval()
        with torch.inference_mode():
            for i in range(a.warmup + a.steps):
                ids, pos, mask, _, _ = batches[i % len(batches)]
                t = time.perf_counter()
                model(ids, pos, mask)
                if i >= a.warmup:
                    times.append(time.perf_counter() - t)
        ms = statistics.median(times) * 1e3
        h, l, v = a.hidden, a.layers, a.vocab
        flops = tokens * (24.0 * l * h * h + 4.0 * a.seq * l * h + 2.0 * h * v)
        report = {
            "impl": "pytorch",
            "torch": torch.__version__,
            "threads": a.threads,
            "mode": "forward",
            "forward_ms": round(ms, 3),
            "forward_tokens_per_s": round(tokens / (ms / 1e3), 1),
            "forward_gflops": round(flops / (ms / 1e3) / 1e9, 2),
            "params": params,
        }
    else:
        model.train()
        opt = torch.optim.AdamW(param_groups(model, 0.1), lr=1e-4, betas=(0.9, 0.98), eps=1e-6)
        losses = []
        for i in range(a.warmup + a.steps):
            ids, pos, mask, targets, loss_mask = batches[i % len(batches)]
            t = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss = masked_lm_loss(model(ids, pos, mask), targets, loss_mask)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            losses.append(loss.item())
            if i >= a.warmup:
                times.append(time.perf_counter() - t)
        step = statistics.median(times)
        flops = 6.0 * params * tokens + 12.0 * a.layers * a.batch * a.seq * a.seq * a.hidden
        report = {
            "impl": "pytorch",
            "torch": torch.__version__,
            "threads": a.threads,
            "tokens_per_s": round(tokens / step, 1),
            "step_ms": round(step * 1e3, 3),
            "gflops": round(flops / step / 1e9, 2),
            "params": params,
            "loss_first": round(losses[0], 4),
            "loss_last": round(losses[-1], 4),
        }
    report["load_avg_1m_before"] = load_before
    report.update({k: getattr(a, k) for k in ("layers", "hidden", "heads", "vocab", "seq", "batch", "steps", "warmup")})
    print(json.dumps(report))


if __name__ == "__main__":
    main()
