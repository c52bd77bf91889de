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

Data. With `--batches FILE` (written by `wenhui bench train --dump-batches FILE`), the exact batches
wenhui trains on, in its order: its blank-infilling samples (many spans, rows padded to a multiple
of 8, loss on every Part B target), ids [B,S'], 2D positions [B,2,S'], targets, loss mask and each
row's `sep`, from which the 0/1 mask is built as above (M[i,j] = 1 if j < sep else j <= i). The
shape flags, `--warmup` and `--steps` default to the file's (given ones must agree with its shape;
`--warmup W --steps K` with W + K below the file's count take its first W + K batches, which are the
batches of `wenhui bench train --warmup W --steps K` at that shape: its stream is seeded). Without
`--batches`, synthetic data shaped like GLM blank infilling: random tokens, one random `sep` per
row in [S/2, S), Part A positions 0..sep-1 with block position 0, Part B as one span standing at
the position of its [MASK] (sep - 1) with block positions 1, 2, ...; loss on Part B only; four such
batches reused in turn.

Logits. `--logit-rows all` (the default) computes the final LayerNorm and the output projection on
every position, then masks the loss, as the official GLM code does. `--logit-rows loss` gathers
the loss rows first and runs them on those rows only, as wenhui does (`with_logit_rows`): the same
loss, the equal-algorithm comparison.

Optimiser as in GLM pretraining: AdamW lr 1e-4, betas (0.9, 0.98), eps 1e-6, weight decay 0.1
except biases and LayerNorm weights; global grad-norm clipping at 1.0.

Prints ONE JSON line. Training: `step_ms` = median step time over the timed steps (after `--warmup`
untimed ones); a step's tokens = B x its longest row (`--batches`: B x max(lengths), the count
wenhui reports, Part A + Part B without the alignment padding; synthetic: B*S); tokens_per_s and
gflops = the timed steps' tokens and FLOPs over their total time. FLOPs as executed: with
`--logit-rows all` 6*params*tokens + 12*L*B*S^2*H (S the longest row); with `--logit-rows loss`
6*(params - V*H)*tokens + 6*V*H*loss_rows + 12*L*B*S^2*H (the output projection, the tied word
embedding V*H, runs on the loss rows only), wenhui's count.
With `--forward-only` (synthetic batches only): eval mode (no dropout), no autograd, median ms per
forward of B*S tokens, GFLOP/s counted as `wenhui bench forward` counts them
(24*L*H^2 + 4*S*L*H + 2*H*V per token).

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


DUMP_FORMAT = "wenhui-bench-train-batches"
SHAPE = ("layers", "hidden", "heads", "vocab", "seq", "batch")


def load_batches(path: str):
    """The header and batches of a `wenhui bench train --dump-batches` file (JSON lines), checked."""
    with open(path, encoding="utf-8") as f:
        lines = [line for line in f if line.strip()]
    if not lines:
        raise SystemExit(f"{path}: empty, not a wenhui batch dump")
    try:
        header, batches = json.loads(lines[0]), [json.loads(line) for line in lines[1:]]
    except json.JSONDecodeError as e:
        raise SystemExit(f"{path}: not JSON lines ({e}): not a wenhui batch dump, or a truncated one")
    if not isinstance(header, dict) or header.get("format") != DUMP_FORMAT or header.get("version") != 1:
        raise SystemExit(f"{path}: not a version-1 {DUMP_FORMAT} file (header {lines[0][:200]!r})")
    if len(batches) != header["batches"]:
        raise SystemExit(f"{path}: the header announces {header['batches']} batches, the file holds {len(batches)} (truncated?)")
    for i, b in enumerate(batches):
        rows, width = len(b["ids"]), len(b["ids"][0]) if b["ids"] else 0
        ok = rows == header["batch"] and all(
            len(b[k]) == rows for k in ("positions", "targets", "loss_mask", "seps", "lengths")
        ) and all(len(r) == width for k in ("ids", "targets", "loss_mask") for r in b[k]) and all(
            len(p) == 2 and len(p[0]) == width and len(p[1]) == width for p in b["positions"]
        ) and all(0 <= x <= width for x in b["seps"] + b["lengths"])
        if not ok:
            raise SystemExit(f"{path}: batch {i} is not [B={header['batch']}, S] throughout")
    return header, batches


def dumped_batch(b: dict, max_position: int):
    """Tensors of one dumped batch (ids, position_ids [B,2,S], 0/1 mask [B,1,S,S], targets,
    loss_mask) and its counts (tokens = B x longest row, that row length, loss rows)."""
    ids = torch.tensor(b["ids"], dtype=torch.long)
    position_ids = torch.tensor(b["positions"], dtype=torch.long)
    if int(position_ids.max()) > max_position:
        raise SystemExit(f"batch {b['index']}: position {int(position_ids.max())} beyond the model's tables (0..{max_position})")
    targets = torch.tensor(b["targets"], dtype=torch.long)
    loss_mask = torch.tensor(b["loss_mask"], dtype=torch.float32)
    seq = ids.shape[1]
    ar = torch.arange(seq)
    seps = torch.tensor(b["seps"], dtype=torch.long)
    # wenhui's Attention::Sep: query i sees key j when j < sep (Part A) or j <= i (causal).
    mask = ((ar.view(1, 1, seq) < seps.view(-1, 1, 1)) | (ar.view(1, 1, seq) <= ar.view(1, seq, 1))).float().unsqueeze(1)
    longest = max(b["lengths"])
    return (ids, position_ids, mask, targets, loss_mask), (len(b["ids"]) * longest, longest, int((loss_mask > 0).sum()))


def step_flops(params: int, a, tokens: int, longest: int, logit_rows: int, loss_only: bool) -> float:
    """FLOPs of a training step as executed (see the module docstring)."""
    attention = 12.0 * a.layers * a.batch * longest * longest * a.hidden
    if not loss_only:
        return 6.0 * params * tokens + attention
    projection = a.vocab * a.hidden
    return 6.0 * (params - projection) * tokens + 6.0 * projection * logit_rows + attention


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", metavar="FILE", help="train on the batches of `wenhui bench train --dump-batches FILE` (shape, warmup and steps from the file)")
    ap.add_argument("--layers", type=int, help="default 4 (or the --batches file's)")
    ap.add_argument("--hidden", type=int, help="default 256 (or the file's)")
    ap.add_argument("--heads", type=int, help="default 4 (or the file's)")
    ap.add_argument("--vocab", type=int, help="default 8000 (or the file's)")
    ap.add_argument("--seq", type=int, help="default 256 (or the file's)")
    ap.add_argument("--batch", type=int, help="default 8 (or the file's)")
    ap.add_argument("--steps", type=int, help="timed steps, default 10 (or the file's); their median step time is reported")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    ap.add_argument("--warmup", type=int, help="untimed steps before timing, default 2 (or the file's)")
    ap.add_argument("--logit-rows", choices=("all", "loss"), default="all",
                    help="all: logits on every position, then the masked loss (official GLM); loss: only the loss rows (as wenhui)")
    ap.add_argument("--forward-only", action="store_true", help="time eval-mode forwards without autograd instead of training steps")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--dtype", choices=("f32", "bf16"), default="f32", help="bf16: autocast mixed precision, f32 master weights")
    ap.add_argument("--tf32", action="store_true", help="allow TF32 matmuls on the GPU (default: off, IEEE f32)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    header, dumped = (None, None)
    if a.batches:
        if a.forward_only:
            ap.error("--forward-only runs on synthetic batches: drop --batches")
        header, dumped = load_batches(a.batches)
        for k in SHAPE:
            if getattr(a, k) is not None and getattr(a, k) != header[k]:
                ap.error(f"--{k} {getattr(a, k)} differs from {a.batches}'s {header[k]}: drop the flag or dump again")
            setattr(a, k, header[k])
        if a.warmup is None and a.steps is None:
            a.warmup, a.steps = header["warmup"], header["steps"]
        else:
            a.warmup = header["warmup"] if a.warmup is None else a.warmup
            a.steps = header["steps"] if a.steps is None else a.steps
        if a.warmup + a.steps > len(dumped):
            ap.error(f"--warmup {a.warmup} + --steps {a.steps} need more than the {len(dumped)} batches of {a.batches}")
    for k, v in zip(SHAPE + ("steps", "warmup"), (4, 256, 4, 8000, 256, 8, 10, 2)):
        if getattr(a, k) is None:
            setattr(a, k, v)
    if a.hidden % a.heads:
        ap.error(f"--hidden {a.hidden} is not divisible by --heads {a.heads}")
    if a.seq < 2 or a.steps < 1 or a.warmup < 0 or a.threads < 1:
        ap.error("need --seq >= 2, --steps >= 1, --warmup >= 0, --threads >= 1")
    device = pick_device(ap, a.device)
    cuda = device.type == "cuda"
    loss_only = a.logit_rows == "loss"

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
    # Every batch with its counts (tokens, longest row, loss rows) and, for --logit-rows loss, the
    # flat indices of its loss rows and their targets: made and on the device before timing.
    batches, counts = [], []
    if dumped is not None:
        for b in dumped[: a.warmup + a.steps]:
            tensors, count = dumped_batch(b, a.seq)
            batches.append(tuple(t.to(device) for t in tensors))
            counts.append(count)
    else:
        for _ in range(min(a.warmup + a.steps, 4)):
            tensors = glm_batch(a.batch, a.seq, a.vocab, gen)
            batches.append(tuple(t.to(device) for t in tensors))
            counts.append((tokens, a.seq, int((tensors[4] > 0).sum())))
    rows = [lm.flatten().nonzero().squeeze(1) for (_, _, _, _, lm) in batches]
    row_targets = [t.flatten().index_select(0, r) for (_, _, _, t, _), r in zip(batches, rows)]
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
        losses, per_step = [], []
        for i in range(a.warmup + a.steps):
            k = i % len(batches)
            ids, pos, mask, targets, loss_mask = batches[k]
            t = clock()
            opt.zero_grad(set_to_none=True)
            with autocast:
                logits = model(ids, pos, mask, rows=rows[k] if loss_only else None)
            if loss_only:
                loss = F.cross_entropy(logits.float(), row_targets[k])  # the mean over the loss rows, in f32
            else:
                loss = masked_lm_loss(logits, targets, loss_mask)  # upcasts the logits: CE in f32
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            losses.append(loss.item())
            elapsed = clock() - t
            n_tokens, longest, loss_rows = counts[k]
            logit_rows = loss_rows if loss_only else n_tokens
            flops = step_flops(params, a, n_tokens, longest, loss_rows, loss_only)
            per_step.append({"timed": i >= a.warmup, "tokens": n_tokens, "loss_rows": loss_rows, "logit_rows": logit_rows,
                             "flops": flops, "ms": round(elapsed * 1e3, 3)})
            if i >= a.warmup:
                times.append(elapsed)
        timed = [s for s in per_step if s["timed"]]
        total = sum(times)
        step = statistics.median(times)
        gflops = sum(s["flops"] for s in timed) / total / 1e9
        mean = lambda key: sum(s[key] for s in timed) / len(timed)  # noqa: E731
        report = {
            "impl": "pytorch",
            "torch": torch.__version__,
            "threads": a.threads,
            "tokens_per_s": round(sum(s["tokens"] for s in timed) / total, 1),
            "step_ms": round(step * 1e3, 3),
            "gflops": round(gflops, 2),
            "params": params,
            "loss_first": round(losses[0], 4),
            "loss_last": round(losses[-1], 4),
            "data": "wenhui-dump" if dumped is not None else "synthetic",
            "batches_file": a.batches,
            "logit_rows": a.logit_rows,
            "tokens_per_step": mean("tokens"),
            "loss_rows_per_step": mean("loss_rows"),
            "logit_rows_per_step": mean("logit_rows"),
            "flops_per_step": mean("flops"),
            "per_step": per_step,
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
