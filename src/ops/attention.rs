//! Fused scaled-dot-product attention with GLM's 0/1 mask, dropout and an analytic backward:
//! per (batch, head) `P = softmax((Q·Kᵀ·scale + bias)·M − 65504·(1−M))`, `O = dropout(P)·V`,
//! where the optional `bias` is a per-key logit offset (GLM-iprompt's attention re-weighting).
//!
//! One graph node instead of five (QKᵀ, softmax, dropout, PV and the transposed-K copy), so
//! the backward pass neither allocates nor accumulates the `[B, N, S, T]` score gradients
//! through candle's generic machinery. The forward pass keeps `P` (and the dropped `P'`) for
//! the backward pass when a backward can follow and they fit [`KEEP_LIMIT`]; otherwise the
//! backward recomputes them (as flash attention does). Work is split over (batch, head) pairs
//! with rayon. On CUDA the same op runs as cuBLAS GEMMs and two row kernels
//! (`src/ops/cuda/attention.rs`), keeping `P` and `P'` as well, so that its backward recomputes
//! neither (nor the dropout hash).

use super::dropout::Mask;
use super::softmax::{softmax_rows, softmax_rows_backward};
use super::{as_slice, float_dispatch, held, Float};
use candle_core::{CpuStorage, CustomOp3, Device, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::sync::{Arc, Mutex};

/// Attention over `q` `[B, N, S, d]`, `k`/`v` `[B, N, T, d]` with `mask` `[B or 1, 1, S, T]`,
/// scores scaled by `scale`, `bias` (`[B or 1, 1, 1, T]`) added to the scaled scores, dropout
/// `p` (in [0, 1)) on the probabilities (seeded, training only).
/// Differentiable with respect to `q`, `k` and `v`. f32 and f64 on the CPU; every float type on
/// CUDA (`cuda` feature). No queries (`S = 0`, or no rows) give an empty context; queries without
/// keys (`T = 0`) are an error (a softmax over nothing).
#[allow(clippy::too_many_arguments)]
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: &Tensor,
    bias: Option<&Tensor>,
    scale: f64,
    p: f64,
    seed: u64,
) -> Result<Tensor> {
    attention_keeping(q, k, v, mask, bias, scale, p, seed, keep_limit(q, q.dim(3)?))
}

/// An error unless the attention dropout `p` is in [0, 1) (a `p` of 1 would scale by 1/0).
fn check_p(p: f64, op: &str) -> Result<()> {
    if !(0.0..1.0).contains(&p) {
        candle_core::bail!("{op}: dropout p = {p} must be in [0, 1)");
    }
    Ok(())
}

/// The key bias as host rows `[B or 1][T]`, divided by `scale` (it is added before the scaling).
fn host_bias(bias: Option<&Tensor>, b: usize, t: usize, scale: f64) -> Result<Option<Arc<Vec<f64>>>> {
    let Some(bias) = bias else { return Ok(None) };
    let bd = bias.dims4()?;
    if bd.1 != 1 || bd.2 != 1 || bd.3 != t || (bd.0 != b && bd.0 != 1) {
        candle_core::bail!("attention: key bias {:?} does not fit [{b} or 1, 1, 1, {t}]", bias.dims());
    }
    let rows = bias.to_dtype(candle_core::DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
    Ok(Some(Arc::new(rows.into_iter().map(|x| x / scale).collect())))
}

/// [`attention`] keeping at most `keep_limit` bytes of probabilities for the backward pass.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attention_keeping(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: &Tensor,
    bias: Option<&Tensor>,
    scale: f64,
    p: f64,
    seed: u64,
    keep_limit: usize,
) -> Result<Tensor> {
    check_p(p, "attention")?;
    let (b, n, s, d) = q.dims4()?;
    let (kb, kn, t, kd) = k.dims4()?;
    if (kb, kn, kd) != (b, n, d) || v.dims() != k.dims() {
        candle_core::bail!("attention: q {:?}, k {:?}, v {:?} do not fit", q.dims(), k.dims(), v.dims());
    }
    let md = mask.dims4()?;
    if md.1 != 1 || md.2 != s || md.3 != t || (md.0 != b && md.0 != 1) {
        candle_core::bail!("attention: mask {:?} does not fit scores [{b}, {n}, {s}, {t}]", mask.dims());
    }
    if b > 0 && n > 0 && (s == 0 || d == 0) {
        // No queries, or heads of no channels: an empty context, before any device kernel (an
        // empty batch takes the op). Connected to all three inputs, which get zero gradients.
        let zero = (k.sum_all()? + v.sum_all()?.to_dtype(k.dtype())?)?.affine(0.0, 0.0)?.to_dtype(q.dtype())?;
        return q.broadcast_add(&zero);
    }
    if t == 0 && b * n * s > 0 {
        candle_core::bail!("attention: {s} queries but no keys to attend to (keys {:?})", k.dims());
    }
    let dt = q.dtype();
    let kept = keep(&[q, k, v], b * n * s * t, p, dt, keep_limit);
    let bias = host_bias(bias, b, t, scale)?;
    let op = Attention { mask: mask.to_dtype(dt)?.contiguous()?, bias, scale, p, seed, grad: None, out: None, packed_heads: None, kept };
    super::tape::apply_op3(&q.contiguous()?, &k.to_dtype(dt)?.contiguous()?, &v.to_dtype(dt)?.contiguous()?, op)
}

/// Attention straight from a fused projection `qkv` `[B, S, 3H]` (Q | K | V along the last
/// dimension, head `j` = channels `j·d..(j+1)·d` of each) to the context `[B, S, H]`: no
/// narrow, head split or merge copies. Same math, mask, bias and dropout as [`attention`].
/// No positions (`S = 0`) or no rows give an empty context.
pub fn attention_packed(qkv: &Tensor, heads: usize, mask: &Tensor, bias: Option<&Tensor>, scale: f64, p: f64, seed: u64) -> Result<Tensor> {
    check_p(p, "attention_packed")?;
    let (b, s, h3) = qkv.dims3()?;
    if heads == 0 || !h3.is_multiple_of(3 * heads) {
        candle_core::bail!("attention_packed: last dimension {h3} is not 3 × heads ({heads}) × head size");
    }
    let md = mask.dims4()?;
    if md.1 != 1 || md.2 != s || md.3 != s || (md.0 != b && md.0 != 1) {
        candle_core::bail!("attention_packed: mask {:?} does not fit [{b}, 1, {s}, {s}]", mask.dims());
    }
    if b > 0 && (s == 0 || h3 == 0) {
        // No positions (or heads of no channels): an empty context `[B, S, H]`, before any device
        // kernel (the CPU one would index into an empty input). An empty batch takes the op.
        return qkv.narrow(2, 0, h3 / 3)?.affine(1.0, 0.0);
    }
    let kept = keep(&[qkv], b * heads * s * s, p, qkv.dtype(), keep_limit(qkv, h3 / (3 * heads)));
    let bias = host_bias(bias, b, s, scale)?;
    let op = Attention {
        mask: mask.to_dtype(qkv.dtype())?.contiguous()?,
        bias,
        scale,
        p,
        seed,
        grad: None,
        out: None,
        packed_heads: Some(heads),
        kept,
    };
    let empty = Tensor::zeros(0, qkv.dtype(), qkv.device())?;
    super::tape::apply_op3(&qkv.contiguous()?, &empty, &empty.clone(), op)
}

/// Most bytes of probabilities one attention op keeps from its forward pass for its backward
/// pass (`P`, and `P'` with dropout); beyond it the backward recomputes them, so that long
/// sequences do not hold `[B, N, S, T]` buffers per layer.
const KEEP_LIMIT: usize = 64 << 20;

/// [`KEEP_LIMIT`] on a GPU, where memory is plentiful and a recomputation costs a GEMM: a
/// GLM-Base layer at batch 32 keeps 403 MB of bf16 probabilities (P and P'), and with them its
/// head-major Q, K and V (75 MB).
pub(crate) const CUDA_KEEP_LIMIT: usize = 1 << 30;

/// The limit for heads of `d` channels: none where flash attention may serve the call, which
/// keeps only each query row's log-sum-exp and one dropout bit per score (its GEMM fallback
/// applies [`CUDA_KEEP_LIMIT`] itself).
fn keep_limit(x: &Tensor, d: usize) -> usize {
    #[cfg(feature = "cuda")]
    if x.device().is_cuda() && super::cuda::flash::may_serve(x.dtype(), d) {
        return usize::MAX;
    }
    #[cfg(not(feature = "cuda"))]
    let _ = d;
    if x.device().is_cuda() {
        CUDA_KEEP_LIMIT
    } else {
        KEEP_LIMIT
    }
}

/// What the forward pass keeps for the backward pass.
enum KeptProbs {
    /// Per (batch, head) pair, `P` and (with dropout) the dropped `P'`, each `[S, T]` (CPU).
    Pairs(Vec<(Tensor, Option<Tensor>)>),
    /// `P` and (with dropout) `P'` of all pairs, `[pairs, S, T]` each, on the GPU.
    #[cfg(feature = "cuda")]
    Device(Box<super::cuda::attention::Kept>),
}

/// Whether `scores` probabilities in `dt` (P, and P' with dropout) fit `limit` bytes.
pub(crate) fn probs_fit(scores: usize, dropout: bool, dt: candle_core::DType, limit: usize) -> bool {
    let copies = if dropout { 2 } else { 1 };
    scores.saturating_mul(dt.size_in_bytes() * copies) <= limit
}

/// Where the forward pass leaves its probabilities, when a backward pass can follow and they fit.
fn keep(inputs: &[&Tensor], scores: usize, p: f64, dt: candle_core::DType, limit: usize) -> Option<Arc<Mutex<Option<KeptProbs>>>> {
    let fits = probs_fit(scores, p > 0.0, dt, limit);
    // A recording tape calls the backward later though its detached inputs track nothing.
    (fits && (inputs.iter().any(|t| t.track_op()) || super::tape::recording())).then(|| Arc::new(Mutex::new(None)))
}

#[derive(Clone)]
struct Attention {
    mask: Tensor,
    /// Key bias rows `[B or 1][T]`, already divided by `scale`.
    bias: Option<Arc<Vec<f64>>>,
    scale: f64,
    p: f64,
    seed: u64,
    /// Set for the backward kernel: the gradient of the output.
    grad: Option<Tensor>,
    /// Set for the backward kernel: the forward output (flash attention's backward reads it).
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    out: Option<Tensor>,
    /// `Some(heads)`: the first input is a packed `[B, S, 3H]` projection (the others unused).
    packed_heads: Option<usize>,
    /// The probabilities the forward pass keeps for the backward pass (see [`keep`]).
    kept: Option<Arc<Mutex<Option<KeptProbs>>>>,
}

/// `a (m×k) · b (k×n)` as a new `m×n` buffer, with explicit row/column strides, on this
/// thread (the caller parallelises over (batch, head) pairs).
#[allow(clippy::too_many_arguments)]
fn gemm<T: Float>(m: usize, n: usize, k: usize, a: &[T], a_rs: usize, a_cs: usize, b: &[T], b_rs: usize, b_cs: usize) -> Vec<T> {
    super::linear::Product { m, n, k, a, a_rs, a_cs, b, b_rs, b_cs }.to_vec(false)
}

/// Per-pair geometry: where each (batch, head) pair's Q, K, V and output rows live.
struct Dims {
    s: usize,
    t: usize,
    d: usize,
    heads: usize,
    mask_batches: usize,
    /// Packed `[B, S, 3H]` input and `[B, S, H]` output instead of `[B, N, S|T, d]` tensors.
    packed: bool,
}

impl Dims {
    fn hidden(&self) -> usize {
        self.heads * self.d
    }
    /// (offset, row stride) of Q, K, V of `pair` in their buffers.
    fn qkv(&self, pair: usize) -> [(usize, usize); 3] {
        if self.packed {
            let (b, h, hid) = (pair / self.heads, pair % self.heads, self.hidden());
            let base = b * self.s * 3 * hid + h * self.d;
            [(base, 3 * hid), (base + hid, 3 * hid), (base + 2 * hid, 3 * hid)]
        } else {
            [(pair * self.s * self.d, self.d), (pair * self.t * self.d, self.d), (pair * self.t * self.d, self.d)]
        }
    }
    /// (offset, row stride) of the output rows of `pair`.
    fn out(&self, pair: usize) -> (usize, usize) {
        if self.packed {
            let (b, h) = (pair / self.heads, pair % self.heads);
            (b * self.s * self.hidden() + h * self.d, self.hidden())
        } else {
            (pair * self.s * self.d, self.d)
        }
    }
}

super::math::simd_kernel! {
    /// `dp[i] ·= scale` where `pd[i] ≠ 0`, else 0: the dropout mask read back from the dropped `P'`.
    fn mask_like<T> [MaskLike] (dp: &'a mut [T], pd: &'a [T], scale: T) {
        let zero = T::of_f64(0.0);
        for (d, &p) in dp.iter_mut().zip(pd) {
            *d = if p != zero { *d * scale } else { zero };
        }
    }
}

/// Copies an `[rows, d]` block into `dst` at `offset` with row stride `rs`.
fn scatter<T: Float>(dst: &mut [T], block: &[T], offset: usize, rs: usize, d: usize) {
    for (i, row) in block.chunks(d).enumerate() {
        dst[offset + i * rs..offset + i * rs + d].copy_from_slice(row);
    }
}

impl Attention {
    /// Leaves what the forward pass computed for the backward pass, when one can follow.
    fn store(&self, probs: KeptProbs) -> Result<()> {
        if let Some(slot) = &self.kept {
            *slot.lock().map_err(|_| candle_core::Error::Msg("attention: poisoned lock".into()))? = Some(probs);
        }
        Ok(())
    }

    /// Geometry, number of pairs, output shape and gradient lengths `[dQ, dK, dV]` (packed:
    /// `[dQKV, 0, 0]`) for inputs of shapes `s1`, `s2`.
    fn geometry(&self, s1: &Shape, s2: &Shape) -> Result<(Dims, usize, Shape, [usize; 3])> {
        let mask_batches = self.mask.dims()[0];
        Ok(match self.packed_heads {
            Some(heads) => {
                let (b, s, h3) = s1.dims3()?;
                let d = h3 / (3 * heads);
                (Dims { s, t: s, d, heads, mask_batches, packed: true }, b * heads, Shape::from((b, s, h3 / 3)), [b * s * h3, 0, 0])
            }
            None => {
                let (b, heads, s, d) = s1.dims4()?;
                let t = s2.dims4()?.2;
                let (nq, nk) = (s1.elem_count(), s2.elem_count());
                (Dims { s, t, d, heads, mask_batches, packed: false }, b * heads, s1.clone(), [nq, nk, nk])
            }
        })
    }

    /// The mask rows of pair `pair` (`[S, T]`).
    fn mask_of<'a, T: Float>(&self, m: &'a [T], pair: usize, g: &Dims) -> &'a [T] {
        let b = if g.mask_batches == 1 { 0 } else { pair / g.heads };
        &m[b * g.s * g.t..(b + 1) * g.s * g.t]
    }

    /// Probabilities `P` (before dropout) of pair `pair`, `[S, T]`; `q`, `k` start at the pair's
    /// first row, with row strides `qs`, `ks`.
    #[allow(clippy::too_many_arguments)]
    fn probs<T: Float>(&self, pair: usize, q: &[T], qs: usize, k: &[T], ks: usize, m: &[T], g: &Dims) -> Vec<T> {
        let mut probs = gemm(g.s, g.t, g.d, q, qs, 1, k, 1, ks);
        if let Some(bias) = &self.bias {
            let b = if bias.len() == g.t { 0 } else { pair / g.heads };
            let row: Vec<T> = bias[b * g.t..(b + 1) * g.t].iter().map(|&x| T::of_f64(x)).collect();
            for r in probs.chunks_mut(g.t) {
                r.iter_mut().zip(&row).for_each(|(x, &b)| *x += b);
            }
        }
        softmax_rows(&mut probs, m, g.t, self.scale);
        probs
    }

    /// Applies the dropout mask of pair `pair` to `x` `[S, T]` in place (scaled kept values).
    fn drop<T: Float>(&self, x: &mut [T], pair: usize) {
        if self.p > 0.0 {
            Mask::new(self.seed, self.p).apply_in_place(x, (pair * x.len()) as u64);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn forward<T: Float>(&self, q: &[T], k: &[T], v: &[T], m: &[T], g: &Dims, pairs: usize, out_len: usize) -> Result<Vec<T>> {
        let keep = self.kept.is_some();
        // Per pair: the output rows, and P with P' when kept.
        type PairOut<T> = (Vec<T>, Option<(Vec<T>, Option<Vec<T>>)>);
        let blocks: Vec<PairOut<T>> = (0..pairs)
            .into_par_iter()
            .map(|pair| {
                let [(qo, qs), (ko, ks), (vo, vs)] = g.qkv(pair);
                let mut p = self.probs(pair, &q[qo..], qs, &k[ko..], ks, self.mask_of(m, pair, g), g);
                // With dropout and a kept P, the dropped P' is a copy; otherwise P is dropped in place.
                let pd = match (self.p > 0.0, keep) {
                    (true, true) => {
                        let mut pd = p.clone();
                        self.drop(&mut pd, pair);
                        Some(pd)
                    }
                    (true, false) => {
                        self.drop(&mut p, pair);
                        None
                    }
                    (false, _) => None,
                };
                let o = gemm(g.s, g.d, g.t, pd.as_deref().unwrap_or(&p), g.t, 1, &v[vo..], vs, 1);
                let kept = keep.then_some((p, pd));
                (o, kept)
            })
            .collect();
        let mut out = vec![T::of_f64(0.0); out_len];
        let mut kept = Vec::with_capacity(if keep { pairs } else { 0 });
        for (pair, (o, probs)) in blocks.into_iter().enumerate() {
            let (oo, os) = g.out(pair);
            scatter(&mut out, &o, oo, os, g.d);
            if let Some((p, pd)) = probs {
                let pd = pd.map(|pd| Tensor::from_vec(pd, (g.s, g.t), &Device::Cpu)).transpose()?;
                kept.push((Tensor::from_vec(p, (g.s, g.t), &Device::Cpu)?, pd));
            }
        }
        self.store(KeptProbs::Pairs(kept))?;
        Ok(out)
    }

    /// Gradients of one pair from its `P` and `P'` (`None`: no dropout, `P' = P`); `kept`:
    /// they come from the forward pass, so `P' ≠ 0` is the dropout mask (where `P = 0` the mask
    /// does not matter: those entries get a zero gradient either way).
    #[allow(clippy::too_many_arguments)]
    fn pair_backward<T: Float>(
        &self,
        pair: usize,
        io: [(&[T], usize); 4],
        mrows: &[T],
        g: &Dims,
        p: &[T],
        pd: Option<&[T]>,
        kept: bool,
    ) -> [Vec<T>; 3] {
        let [(qp, qs), (kp, ks), (vp, vs), (gp, os)] = io;
        // dV = P'ᵀ · dO
        let dv = gemm(g.t, g.d, g.s, pd.unwrap_or(p), 1, g.t, gp, os, 1);
        // dP' = dO · Vᵀ, then through dropout.
        let mut dp = gemm(g.s, g.t, g.d, gp, os, 1, vp, 1, vs);
        match (pd, kept) {
            (Some(pd), true) => mask_like(&mut dp, pd, T::of_f64(1.0 / (1.0 - self.p))),
            (Some(_), false) => self.drop(&mut dp, pair),
            (None, _) => {}
        }
        // dZ = P ⊙ (dP − Σ dP·P), times ∂z/∂s = scale·M.
        softmax_rows_backward(&mut dp, p, mrows, g.t, self.scale);
        // dQ = dS · K ; dK = dSᵀ · Q
        let dq = gemm(g.s, g.d, g.t, &dp, g.t, 1, kp, ks, 1);
        let dk = gemm(g.t, g.d, g.s, &dp, 1, g.t, qp, qs, 1);
        [dq, dk, dv]
    }

    /// Gradients: `[dQ | dK | dV]` one after the other, or `dQKV` `[B, S, 3H]` when packed.
    #[allow(clippy::too_many_arguments)]
    fn backward<T: Float>(&self, q: &[T], k: &[T], v: &[T], m: &[T], go: &[T], g: &Dims, pairs: usize, lens: [usize; 3]) -> Result<Vec<T>> {
        let kept = match &self.kept {
            Some(slot) => match &*slot.lock().map_err(|_| candle_core::Error::Msg("attention: poisoned lock".into()))? {
                Some(KeptProbs::Pairs(pairs)) => Some(pairs.clone()),
                _ => None,
            },
            None => None,
        };
        let blocks = (0..pairs)
            .into_par_iter()
            .map(|pair| {
                let [(qo, qs), (ko, ks), (vo, vs)] = g.qkv(pair);
                let (oo, os) = g.out(pair);
                let io = [(&q[qo..], qs), (&k[ko..], ks), (&v[vo..], vs), (&go[oo..], os)];
                let mrows = self.mask_of(m, pair, g);
                match kept.as_ref().map(|k| &k[pair]) {
                    Some((p, None)) => held::<T, _>(p, |p| Ok(self.pair_backward(pair, io, mrows, g, p, None, true))),
                    Some((p, Some(pd))) => {
                        held::<T, _>(p, |p| held::<T, _>(pd, |pd| Ok(self.pair_backward(pair, io, mrows, g, p, Some(pd), true))))
                    }
                    None => {
                        let p = self.probs(pair, io[0].0, qs, io[1].0, ks, mrows, g);
                        let pd = (self.p > 0.0).then(|| {
                            let mut pd = p.clone();
                            self.drop(&mut pd, pair);
                            pd
                        });
                        Ok(self.pair_backward(pair, io, mrows, g, &p, pd.as_deref(), false))
                    }
                }
            })
            .collect::<Result<Vec<[Vec<T>; 3]>>>()?;
        let mut out = vec![T::of_f64(0.0); lens.iter().sum()];
        for (pair, [dq, dk, dv]) in blocks.iter().enumerate() {
            if g.packed {
                let [(qo, qs), (ko, ks), (vo, vs)] = g.qkv(pair);
                scatter(&mut out, dq, qo, qs, g.d);
                scatter(&mut out, dk, ko, ks, g.d);
                scatter(&mut out, dv, vo, vs, g.d);
            } else {
                let (sd, td) = (g.s * g.d, g.t * g.d);
                out[pair * sd..(pair + 1) * sd].copy_from_slice(dq);
                out[lens[0] + pair * td..lens[0] + (pair + 1) * td].copy_from_slice(dk);
                out[lens[0] + lens[1] + pair * td..lens[0] + lens[1] + (pair + 1) * td].copy_from_slice(dv);
            }
        }
        Ok(out)
    }
}

impl CustomOp3 for Attention {
    fn name(&self) -> &'static str {
        if self.grad.is_some() {
            "wenhui-attention-backward"
        } else {
            "wenhui-attention"
        }
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (g, pairs, out_shape, lens) = self.geometry(l1.shape(), l2.shape())?;
        let out = float_dispatch!(s1, "attention", |T| {
            let q = as_slice::<T>(s1, l1)?;
            let (k, v) = if g.packed { (q, q) } else { (as_slice::<T>(s2, l2)?, as_slice::<T>(s3, l3)?) };
            held::<T, _>(&self.mask, |m| match &self.grad {
                None => self.forward(q, k, v, m, &g, pairs, out_shape.elem_count()),
                Some(go) => held::<T, _>(go, |go| self.backward(q, k, v, m, go, &g, pairs, lens)),
            })?
        });
        let shape = if self.grad.is_some() { Shape::from(lens.iter().sum::<usize>()) } else { out_shape };
        Ok((out, shape))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        use super::cuda::attention as gpu;
        let (g, pairs, out_shape, lens) = self.geometry(l1.shape(), l2.shape())?;
        let mask = self.mask.contiguous()?;
        let (mask_guard, mask_layout) = mask.storage_and_layout();
        let mask_storage = super::cuda::cuda_storage(&mask_guard, "attention: the mask")?;
        let params = gpu::Params {
            geometry: gpu::Geometry {
                batch: pairs / g.heads,
                heads: g.heads,
                s: g.s,
                t: g.t,
                d: g.d,
                mask_batches: g.mask_batches,
                packed: g.packed,
            },
            mask: (mask_storage, mask_layout),
            mask_id: mask.id(),
            bias: self.bias.as_deref().map(|b| b.as_slice()),
            scale: self.scale,
            dropout: if self.p > 0.0 { Mask::new(self.seed, self.p).kernel_params() } else { (0, 0, 1.0) },
        };
        let x = [(s1, l1), (s2, l2), (s3, l3)];
        match &self.grad {
            None => {
                let (out, probs) = gpu::forward(x, &params, self.kept.is_some())?;
                if let Some(probs) = probs {
                    self.store(KeptProbs::Device(Box::new(probs)))?;
                }
                Ok((out, out_shape))
            }
            Some(go) => {
                let (go_guard, go_layout) = go.storage_and_layout();
                let go_storage = super::cuda::cuda_storage(&go_guard, "attention backward: the output gradient")?;
                // P is used once: taken, not copied (a second backward pass recomputes it).
                let kept = match &self.kept {
                    Some(slot) => match slot.lock().map_err(|_| candle_core::Error::Msg("attention: poisoned lock".into()))?.take() {
                        Some(KeptProbs::Device(p)) => Some(*p),
                        _ => None,
                    },
                    None => None,
                };
                let out_guard = self.out.as_ref().map(Tensor::storage_and_layout);
                let out = match &out_guard {
                    Some((guard, layout)) => Some((super::cuda::cuda_storage(guard, "attention backward: the forward output")?, *layout)),
                    None => None,
                };
                let grads = gpu::backward(x, (go_storage, go_layout), out, &params, kept)?;
                Ok((grads, Shape::from(lens.iter().sum::<usize>())))
            }
        }
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let op = Attention { grad: Some(grad.contiguous()?), out: Some(res.clone()), ..self.clone() };
        let packed = q.apply_op3_no_bwd(k, v, &op)?;
        if self.packed_heads.is_some() {
            return Ok((Some(packed.reshape(q.shape())?), None, None));
        }
        let (nq, nk) = (q.elem_count(), k.elem_count());
        let dq = packed.narrow(0, 0, nq)?.reshape(q.shape())?;
        let dk = packed.narrow(0, nq, nk)?.reshape(k.shape())?;
        let dv = packed.narrow(0, nq + nk, nk)?.reshape(v.shape())?;
        Ok((Some(dq), Some(dk), Some(dv)))
    }
}
