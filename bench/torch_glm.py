"""GLM in PyTorch eager, written from the spec (shared/specs/glm-spec.md §1); shared by the
training (torch_glm_train.py) and generation (torch_glm_generate.py) reference benchmarks.

* x0 = word_emb[ids] + pos_emb[pos] + block_pos_emb[block]; dropout 0.1
* L pre-LN blocks (LayerNorm eps 1e-5):
    a = LN1(x); QKV = a @ Wqkv^T + b (one fused H->3H Linear, split contiguously)
    s = Q @ (K^T / sqrt(d)); s = s * M + (-65504) * (1 - M)   (M = 0/1 GLM mask)
    P = dropout(softmax(s)); h = x + dropout(dense(P @ V))
    x = h + dropout(W2 gelu_tanh(W1 LN2(h)))                   (4H MLP)
* logits = LN_final(x) @ word_emb^T (tied, no bias)

Plain eager ops on purpose (explicit matmuls, no F.scaled_dot_product_attention, no
torch.compile): the benchmarks measure PyTorch eager running the same math as wenhui.
"""

import math
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

MASK_FILL = -65504.0
LN_EPS = 1e-5
DROPOUT = 0.1

# One layer's preallocated key and value cache, each [B, N, max_len, d].
LayerCache = Tuple[torch.Tensor, torch.Tensor]


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

    def forward(self, x: torch.Tensor, mask: torch.Tensor, cache: Optional[LayerCache] = None, past: int = 0) -> torch.Tensor:
        """`mask` is 0/1 `[B or 1, 1, S, past + S]`. With `cache`, this call's keys/values are written
        into it at positions past..past+S-1 and the queries attend to cache[:past + S]."""
        b, s, h = x.shape
        n = self.heads
        d = h // n
        qkv = self.query_key_value(self.input_layernorm(x))
        q, k, v = qkv.split(h, dim=-1)  # contiguous thirds: Q | K | V

        def heads(t: torch.Tensor) -> torch.Tensor:  # [B,S,H] -> [B,N,S,d], head j = channels j*d..(j+1)*d
            return t.view(b, s, n, d).transpose(1, 2)

        q, k, v = heads(q), heads(k), heads(v)
        if cache is None:
            scores = torch.matmul(q, k.transpose(-1, -2) / math.sqrt(d))
        else:
            k_cache, v_cache = cache
            k_cache[:, :, past : past + s] = k  # in place: no reallocation per step
            v_cache[:, :, past : past + s] = v
            k, v = k_cache[:, :, : past + s], v_cache[:, :, : past + s]
            # Same product; scaling the one new query instead of the whole cached K^T every step.
            scores = torch.matmul(q / math.sqrt(d), k.transpose(-1, -2))
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
        self.heads = heads
        self.word_embeddings = nn.Embedding(vocab, hidden)
        self.position_embeddings = nn.Embedding(max_seq + 1, hidden)
        self.block_position_embeddings = nn.Embedding(max_seq + 1, hidden)
        for emb in (self.word_embeddings, self.position_embeddings, self.block_position_embeddings):
            nn.init.normal_(emb.weight, 0.0, 0.02)
        out_std = 0.02 / math.sqrt(2.0 * layers)
        self.layers = nn.ModuleList(Block(hidden, heads, out_std) for _ in range(layers))
        self.final_layernorm = nn.LayerNorm(hidden, eps=LN_EPS)

    def forward(
        self,
        ids: torch.Tensor,
        position_ids: torch.Tensor,
        mask: torch.Tensor,
        caches: Optional[List[LayerCache]] = None,
        past: int = 0,
        last_only: bool = False,
        rows: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """ids [B,S], position_ids [B,2,S], 0/1 mask [B or 1,1,S,past+S] -> logits [B,S,V]
        ([B,1,V] with `last_only`: a generation step only needs the last position's logits;
        [n,V] with `rows`, n indices into the flattened B*S positions: the final LayerNorm and the
        output projection run on those rows only, as wenhui's loss computes them)."""
        x = self.word_embeddings(ids) + self.position_embeddings(position_ids[:, 0]) + self.block_position_embeddings(position_ids[:, 1])
        x = F.dropout(x, DROPOUT, self.training)
        for i, layer in enumerate(self.layers):
            x = layer(x, mask, None if caches is None else caches[i], past)
        if last_only:
            x = x[:, -1:]
        if rows is not None:
            x = x.flatten(0, 1).index_select(0, rows)
        return F.linear(self.final_layernorm(x), self.word_embeddings.weight)

    def new_cache(self, batch: int, max_len: int) -> List[LayerCache]:
        """Preallocated K/V cache: per layer two [B, N, max_len, d] tensors on the model's device/dtype."""
        w = self.word_embeddings.weight
        n, d = self.heads, w.shape[1] // self.heads
        return [
            (w.new_empty(batch, n, max_len, d), w.new_empty(batch, n, max_len, d)) for _ in self.layers
        ]


def pick_device(ap, name: str) -> torch.device:
    """`cpu` or `cuda`; a clear argparse error when CUDA is asked for and torch cannot see a GPU."""
    if name == "cuda" and not torch.cuda.is_available():
        ap.error(
            f"--device cuda: torch.cuda.is_available() is False (torch {torch.__version__}, "
            f"built for CUDA {torch.version.cuda}); run on the GPU machine or use --device cpu"
        )
    return torch.device(name)


def set_tf32(enabled: bool) -> None:
    """TF32 for f32 matmuls/convolutions on the GPU (off by default: f32 means IEEE f32)."""
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def synchronize(device: torch.device) -> None:
    """Waits for queued GPU work, so the clock measures compute and not kernel launches."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
