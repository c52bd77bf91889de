//! The CUDA side of the fused attention op ([`crate::ops::attention`],
//! [`crate::ops::attention_packed`]): cuBLAS GEMMs for `Q·Kᵀ`, `P'·V` and the four backward
//! products (dQ, dK and dV written in place into the one gradient buffer, `ops/cuda/gemm.rs`),
//! and two row kernels (`attn_probs_fwd`: bias, mask, softmax and dropout in one pass;
//! `attn_probs_bwd`: dropout and softmax backward in one pass). The `[pairs, S, T]` buffers are
//! the scores, overwritten by `P`, and with dropout `P'` next to it; in the backward pass `P`,
//! `P'` and `dP'`, overwritten by `dS`. The graph holds one node instead of the composite's
//! seven, each with its own gradient buffer. `P` and `P'` (and a packed projection's head-major
//! Q, K, V) are kept for the backward pass when they fit; else `P'` is recomputed from `P` with
//! the same counter hash. Numbers and dropout masks are the CPU op's.

use super::gemm::{matmul_into, Operand};
use super::{config, launch_kernel, view, warp_rows_allowed, KernelFloat, MODULE, PTX};
use crate::ops::launch;
use candle_core::backend::{BackendDevice, BackendStorage};
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, PushKernelArg};
use candle_core::{CudaDevice, CudaStorage, DType, Layout, Result, Shape};

/// Shapes of one attention call: `pairs = batch · heads` (batch, head) pairs of `[S, d]`
/// queries against `[T, d]` keys and values.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Geometry {
    pub batch: usize,
    pub heads: usize,
    pub s: usize,
    pub t: usize,
    pub d: usize,
    /// 1 when every batch row shares the mask, else `batch`.
    pub mask_batches: usize,
    /// The input is one `[B, S, 3H]` projection and the output `[B, S, H]` (else `[B, N, S|T, d]`).
    pub packed: bool,
}

impl Geometry {
    pub(crate) fn pairs(&self) -> usize {
        self.batch * self.heads
    }
    pub(crate) fn hidden(&self) -> usize {
        self.heads * self.d
    }
    fn scores(&self) -> Shape {
        Shape::from((self.pairs(), self.s, self.t))
    }
}

/// Everything about the call besides Q, K, V.
pub(crate) struct Params<'a> {
    pub geometry: Geometry,
    /// The 0/1 mask `[B or 1, 1, S, T]` in the inputs' dtype.
    pub mask: (&'a CudaStorage, &'a Layout),
    /// The mask tensor's id: what flash attention keys its tile skip flags by (the layers of a
    /// pass share one mask).
    pub mask_id: candle_core::TensorId,
    /// Key bias rows `[B or 1][T]`, already divided by `scale`.
    pub bias: Option<&'a [f64]>,
    pub scale: f64,
    /// The dropout hash: `(splitmix(seed), threshold, 1/(1 − p))`, threshold 0 without dropout.
    pub dropout: (u64, u64, f64),
}

/// Q, K and V as `[pairs, S|T, d]` storages with their layouts.
struct Inputs {
    owned: Option<[CudaStorage; 3]>,
    layouts: [Layout; 3],
}

impl Inputs {
    /// Splits a packed projection into head-major copies; unpacked inputs are used in place.
    fn new(x: [(&CudaStorage, &Layout); 3], g: &Geometry) -> Result<Self> {
        let (pairs, s, t, d) = (g.pairs(), g.s, g.t, g.d);
        if !g.packed {
            let layouts = [
                Layout::contiguous_with_offset((pairs, s, d), x[0].1.start_offset()),
                Layout::contiguous_with_offset((pairs, t, d), x[1].1.start_offset()),
                Layout::contiguous_with_offset((pairs, t, d), x[2].1.start_offset()),
            ];
            return Ok(Self { owned: None, layouts });
        }
        let (qkv, l) = x[0];
        let h = g.hidden();
        let split = |part: usize| -> Result<CudaStorage> {
            // Head n of row (b, i) starts at ((b·S + i)·3H + part·H + n·d).
            let src = Layout::new(Shape::from((g.batch, g.heads, s, d)), vec![s * 3 * h, d, 3 * h, 1], l.start_offset() + part * h);
            copy(qkv, &src)
        };
        let owned = [split(0)?, split(1)?, split(2)?];
        let layouts = [0, 1, 2].map(|_| Layout::contiguous((pairs, s, d)));
        Ok(Self { owned: Some(owned), layouts })
    }

    /// The split a forward pass kept, else as [`Inputs::new`] makes them.
    fn reuse(kept: Option<[CudaStorage; 3]>, x: [(&CudaStorage, &Layout); 3], g: &Geometry) -> Result<Self> {
        match kept {
            Some(owned) if g.packed => {
                Ok(Self { owned: Some(owned), layouts: [0, 1, 2].map(|_| Layout::contiguous((g.pairs(), g.s, g.d))) })
            }
            _ => Self::new(x, g),
        }
    }

    fn get<'a>(&'a self, x: &[(&'a CudaStorage, &'a Layout); 3], i: usize) -> (&'a CudaStorage, &'a Layout) {
        match &self.owned {
            Some(o) => (&o[i], &self.layouts[i]),
            None => (x[i].0, &self.layouts[i]),
        }
    }
}

/// A contiguous copy of the strided view `src` of `x`: the head split and merge layouts take
/// wenhui's `permute_rows` kernel (candle's general strided copy ran at a sixth of the memory
/// bandwidth there); anything else candle's copy.
fn copy(x: &CudaStorage, src: &Layout) -> Result<CudaStorage> {
    match super::permute_rows(x, src)? {
        Some(out) => Ok(out),
        None => crate::ops::strided_copy(x, src),
    }
}

/// `a · b` for `[pairs, m, k]` and `[pairs, k, n]` views (either may be a transposed layout).
fn matmul(a: (&CudaStorage, &Layout), b: (&CudaStorage, &Layout), pairs: usize, m: usize, n: usize, k: usize) -> Result<CudaStorage> {
    a.0.matmul(b.0, (pairs, m, n, k), a.1, b.1)
}

/// `[pairs, rows, cols]` contiguous, transposed to `[pairs, cols, rows]` (a view, no copy).
fn transposed(pairs: usize, rows: usize, cols: usize, offset: usize) -> Result<Layout> {
    Layout::contiguous_with_offset((pairs, rows, cols), offset).transpose(1, 2)
}

/// What the forward pass keeps for the backward pass (boxed by its holder, `ops::attention`).
#[allow(clippy::large_enum_variant)]
pub(crate) enum Kept {
    /// `P` and, with dropout, the dropped `P'` (`[pairs, S, T]` each), and, for a packed
    /// projection, its head-major Q, K and V, so that the backward does not split the projection
    /// again (three `[B, S, H]` copies per layer).
    Probs { probs: CudaStorage, dropped: Option<CudaStorage>, heads: Option<[CudaStorage; 3]> },
    /// Flash attention's log-sum-exp per query row and dropout bits (`ops/cuda/flash.rs`).
    Flash(super::flash::FlashKept),
}

/// The forward pass: the output (`[B, N, S, d]`, or `[B, S, H]` when packed) and, when `keep`,
/// the probabilities for the backward pass.
pub(crate) fn forward(x: [(&CudaStorage, &Layout); 3], p: &Params, keep: bool) -> Result<(CudaStorage, Option<Kept>)> {
    let g = &p.geometry;
    if g.pairs() == 0 || g.s == 0 {
        // No query rows (an empty batch): an empty output, and no GEMM with a zero dimension.
        // (At least one element: as `output`, no zero-byte device allocation.)
        return Ok((x[0].0.device().zeros_impl(&Shape::from(1), x[0].0.dtype())?, None));
    }
    if super::flash::serves(&x, g) {
        let (out, lse) = super::flash::forward(x, p, keep)?;
        return Ok((out, lse.map(Kept::Flash)));
    }
    // The op lifts its keep limit where flash attention may serve; a call it does not serve
    // (misaligned inputs, too many pairs) keeps P and P' only within the GEMM path's limit.
    use crate::ops::attention::{probs_fit, CUDA_KEEP_LIMIT};
    let keep = keep && probs_fit(g.scores().elem_count(), p.dropout.1 > 0, x[0].0.dtype(), CUDA_KEEP_LIMIT);
    let inputs = Inputs::new(x, g)?;
    let (q, k, v) = (inputs.get(&x, 0), inputs.get(&x, 1), inputs.get(&x, 2));
    let scores_l = Layout::contiguous(g.scores());
    let mut probs = matmul(q, (k.0, &transposed(g.pairs(), g.t, g.d, k.1.start_offset())?), g.pairs(), g.s, g.t, g.d)?;
    let dropout = p.dropout.1 > 0;
    let mut dropped = if dropout && keep { Some(alloc_like(&probs, &g.scores())?) } else { None };
    // mode: 0 = P in place, 1 = P' in place, 3 = P in place and P' apart.
    let mode = match (dropout, keep) {
        (false, _) => 0,
        (true, false) => 1,
        (true, true) => 3,
    };
    probs_rows(&mut probs, dropped.as_mut(), p, mode)?;
    let weights = dropped.as_ref().unwrap_or(&probs);
    let out = matmul((weights, &scores_l), v, g.pairs(), g.s, g.d, g.t)?;
    let out = if g.packed {
        // [B, N, S, d] → [B, S, N, d] = [B, S, H].
        let (b, n, s, d) = (g.batch, g.heads, g.s, g.d);
        copy(&out, &Layout::new(Shape::from((b, s, n, d)), vec![n * s * d, d, s * d, 1], 0))?
    } else {
        out
    };
    let kept = (keep && mode != 1).then(|| Kept::Probs { probs, dropped, heads: inputs.owned });
    Ok((out, kept))
}

/// The backward pass from the output gradient `grad`: `[dQ | dK | dV]` one after the other, or
/// `dQKV` `[B, S, 3H]` when packed. `kept`: what the forward pass kept (else recomputed); `out`:
/// the forward output, which flash attention's backward reads.
pub(crate) fn backward(
    x: [(&CudaStorage, &Layout); 3],
    grad: (&CudaStorage, &Layout),
    out: Option<(&CudaStorage, &Layout)>,
    p: &Params,
    kept: Option<Kept>,
) -> Result<CudaStorage> {
    let g = &p.geometry;
    if g.pairs() == 0 || g.s == 0 {
        // No query rows: every gradient sums nothing (dK and dV of any keys are zeros).
        let len = if g.packed { g.batch * g.s * 3 * g.hidden() } else { g.pairs() * (g.s + 2 * g.t) * g.d };
        return grad.0.device().zeros_impl(&Shape::from(len.max(1)), grad.0.dtype());
    }
    // The output gradient is read in 16-byte packs too; a forward pass that was flash leaves no
    // P, which the GEMM path then recomputes.
    if super::flash::serves(&x, g) && grad.1.start_offset().is_multiple_of(8) {
        let kept = match (kept, out) {
            (Some(Kept::Flash(kept)), Some((o, l))) if l.is_contiguous() => Some((o, l, kept)),
            _ => None,
        };
        return super::flash::backward(x, grad, kept, p);
    }
    let (pairs, s, t, d) = (g.pairs(), g.s, g.t, g.d);
    let (kept, heads) = match kept {
        Some(Kept::Probs { probs, dropped, heads }) => (Some((probs, dropped)), heads),
        Some(Kept::Flash(_)) | None => (None, None),
    };
    let inputs = Inputs::reuse(heads, x, g)?;
    let (q, k, v) = (inputs.get(&x, 0), inputs.get(&x, 1), inputs.get(&x, 2));
    let split = if g.packed {
        // [B, S, H] → [B, N, S, d].
        let h = g.hidden();
        Some(copy(grad.0, &Layout::new(Shape::from((g.batch, g.heads, s, d)), vec![s * h, d, h, 1], grad.1.start_offset()))?)
    } else {
        None
    };
    let (go, go_l) = match &split {
        Some(o) => (o, Layout::contiguous((pairs, s, d))),
        None => (grad.0, Layout::contiguous_with_offset((pairs, s, d), grad.1.start_offset())),
    };
    let (probs, kept_dropped) = match kept {
        Some(kept) => kept,
        None => {
            let mut probs = matmul(q, (k.0, &transposed(pairs, t, d, k.1.start_offset())?), pairs, s, t, d)?;
            probs_rows(&mut probs, None, p, 0)?;
            (probs, None)
        }
    };
    let scores_l = Layout::contiguous(g.scores());
    let dropped = match (kept_dropped, p.dropout) {
        (Some(kept), _) => Some(kept),
        // Recomputed from P with the forward pass's mask (the same hash).
        (None, (mixed, threshold, scale)) if threshold > 0 => {
            Some(super::float_kernel!(probs, "attention dropout", |T| super::dropout::<T>((&probs, &scores_l), mixed, threshold, scale)?))
        }
        _ => None,
    };
    // [dQ | dK | dV], each GEMM writing its part in place (ops/cuda/gemm.rs).
    let (nq, nk) = (pairs * s * d, pairs * t * d);
    let mut all = alloc_like(go, &Shape::from(nq + 2 * nk))?;
    // dV = P'ᵀ · dO
    let weights = dropped.as_ref().unwrap_or(&probs);
    matmul_into(&mut all, nq + nk, Operand::new(weights, 0, true), Operand::new(go, go_l.start_offset(), false), (pairs, t, d, s))?;
    // dP' = dO · Vᵀ, then dS over it.
    let mut ds = matmul((go, &go_l), (v.0, &transposed(pairs, t, d, v.1.start_offset())?), pairs, s, t, d)?;
    probs_backward_rows(&mut ds, &probs, dropped.as_ref(), p)?;
    drop((probs, dropped));
    // dQ = dS · K ; dK = dSᵀ · Q
    matmul_into(&mut all, 0, Operand::new(&ds, 0, false), Operand::new(k.0, k.1.start_offset(), false), (pairs, s, d, t))?;
    matmul_into(&mut all, nq, Operand::new(&ds, 0, true), Operand::new(q.0, q.1.start_offset(), false), (pairs, t, d, s))?;
    if !g.packed {
        return Ok(all);
    }
    // [3, B, N, S, d] → [B, S, 3, N, d] = [B, S, 3H].
    let (b, n) = (g.batch, g.heads);
    copy(&all, &Layout::new(Shape::from((b, s, 3, n, d)), vec![n * s * d, d, b * n * s * d, s * d, 1], 0))
}

/// An uninitialised buffer of `shape` in the dtype and on the device of `like`.
pub(super) fn alloc_like(like: &CudaStorage, shape: &Shape) -> Result<CudaStorage> {
    // SAFETY: every caller writes all elements before reading any.
    unsafe { like.device().alloc_uninit(shape, like.dtype()) }
}

/// The key bias rows on the device (f64, rounded to the arithmetic type in the kernel, as the
/// CPU rounds them), and how many rows there are (0: none).
pub(super) fn device_bias(dev: &CudaDevice, p: &Params) -> Result<(Option<CudaSlice<f64>>, i32)> {
    match p.bias {
        None => Ok((None, 0)),
        Some(rows) => {
            let n = (rows.len() / p.geometry.t.max(1)) as i32;
            Ok((Some(dev.clone_htod(rows)?), n))
        }
    }
}

/// Runs `attn_probs_fwd` over the score rows of `scores` (see the kernel for `mode`).
fn probs_rows(scores: &mut CudaStorage, dropped: Option<&mut CudaStorage>, p: &Params, mode: i32) -> Result<()> {
    match scores.dtype() {
        DType::F32 => probs_rows_typed::<f32>(scores, dropped, p, mode),
        DType::F64 => probs_rows_typed::<f64>(scores, dropped, p, mode),
        DType::BF16 => probs_rows_typed::<half::bf16>(scores, dropped, p, mode),
        DType::F16 => probs_rows_typed::<half::f16>(scores, dropped, p, mode),
        other => candle_core::bail!("attention: unsupported dtype {other:?} on CUDA"),
    }
}

fn probs_rows_typed<T: KernelFloat>(scores: &mut CudaStorage, dropped: Option<&mut CudaStorage>, p: &Params, mode: i32) -> Result<()> {
    let dev = scores.device().clone();
    let g = &p.geometry;
    let (bias, bias_rows) = device_bias(&dev, p)?;
    let mask = view::<T>(p.mask.0, p.mask.1)?;
    let rows = g.pairs() * g.s;
    let plan = launch::attention_rows(rows, g.t, warp_rows_allowed());
    let f = dev.get_or_load_custom_func(&plan.kernel("attn_probs_fwd", T::DTYPE.as_str()), MODULE, PTX)?;
    let sc = T::as_cuda_slice_mut(scores)?;
    let pd = match dropped {
        Some(d) => Some(T::as_cuda_slice_mut(d)?),
        None => None,
    };
    let null: u64 = 0;
    let mut l = f.builder();
    l.arg(sc);
    match pd {
        Some(pd) => l.arg(pd),
        None => l.arg(&null),
    };
    l.arg(&mask);
    match &bias {
        Some(b) => l.arg(b),
        None => l.arg(&null),
    };
    let (heads, sl, t, mb, sc) = (g.heads as i32, g.s as i32, g.t as i32, g.mask_batches as i32, p.scale);
    let (mixed, threshold, keep_scale) = p.dropout;
    l.arg(&bias_rows).arg(&heads).arg(&sl).arg(&t).arg(&mb).arg(&sc).arg(&mixed).arg(&threshold).arg(&keep_scale).arg(&mode);
    if plan.warp {
        l.arg(&rows);
    }
    // SAFETY: the argument list matches the kernel's signature (the warp kernel's ends in the row
    // count); the score buffers hold pairs × S × T elements, the mask [B or 1] × S × T, the bias
    // bias_rows × T.
    unsafe { launch_kernel(&mut l, config(plan.launch)) }?;
    Ok(())
}

/// Runs `attn_probs_bwd`: `dp` (the gradient of `P'`) becomes the gradient of the scores, from
/// `P` and the dropped `P'` (`None` without dropout).
fn probs_backward_rows(dp: &mut CudaStorage, probs: &CudaStorage, dropped: Option<&CudaStorage>, p: &Params) -> Result<()> {
    match dp.dtype() {
        DType::F32 => probs_backward_typed::<f32>(dp, probs, dropped, p),
        DType::F64 => probs_backward_typed::<f64>(dp, probs, dropped, p),
        DType::BF16 => probs_backward_typed::<half::bf16>(dp, probs, dropped, p),
        DType::F16 => probs_backward_typed::<half::f16>(dp, probs, dropped, p),
        other => candle_core::bail!("attention: unsupported dtype {other:?} on CUDA"),
    }
}

fn probs_backward_typed<T: KernelFloat>(
    dp: &mut CudaStorage,
    probs: &CudaStorage,
    dropped: Option<&CudaStorage>,
    p: &Params,
) -> Result<()> {
    let dev = dp.device().clone();
    let g = &p.geometry;
    let mask = view::<T>(p.mask.0, p.mask.1)?;
    let pv = T::as_cuda_slice(probs)?;
    let pd = dropped.map(|d| T::as_cuda_slice(d)).transpose()?;
    let rows = g.pairs() * g.s;
    let plan = launch::attention_rows(rows, g.t, warp_rows_allowed());
    let f = dev.get_or_load_custom_func(&plan.kernel("attn_probs_bwd", T::DTYPE.as_str()), MODULE, PTX)?;
    let d = T::as_cuda_slice_mut(dp)?;
    let null: u64 = 0;
    let mut l = f.builder();
    l.arg(d).arg(pv);
    match pd {
        Some(pd) => l.arg(pd),
        None => l.arg(&null),
    };
    let (heads, sl, t, mb, sc) = (g.heads as i32, g.s as i32, g.t as i32, g.mask_batches as i32, p.scale);
    l.arg(&mask).arg(&heads).arg(&sl).arg(&t).arg(&mb).arg(&sc);
    if plan.warp {
        l.arg(&rows);
    }
    // SAFETY: the argument list matches the kernel's signature (see above); dp, probs and (when
    // given) the dropped probabilities hold pairs × S × T elements; a null `pd` means P' = P.
    unsafe { launch_kernel(&mut l, config(plan.launch)) }?;
    Ok(())
}
