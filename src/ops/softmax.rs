//! Masked, scaled softmax over attention scores, the GLM way:
//! `z = (s·scale)·m + MASKED_SCORE·(1 − m)`, `p = softmax(z)` over the last dimension.
//!
//! Masked entries are *replaced* by −65504 (the fp16 minimum, as the official code does) rather
//! than −∞, so a fully masked row stays finite (uniform). The mask is `[B or 1, 1, S, T]` and is
//! shared by all heads; the scores are `[B, N, S, T]`.

use super::{as_slice, float_dispatch, in_kernel_dtype, math, Float};
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// The score given to masked positions before the softmax.
pub const MASKED_SCORE: f64 = -65504.0;

/// `softmax((scores·scale)·mask + MASKED_SCORE·(1 − mask))` over the last dimension.
/// `scores` is `[B, N, S, T]`, `mask` is `[B, 1, S, T]` or `[1, 1, S, T]` with 0/1 entries.
/// Differentiable with respect to `scores`. With no keys (`T = 0`) the result is empty.
pub fn masked_softmax(scores: &Tensor, mask: &Tensor, scale: f64) -> Result<Tensor> {
    let (b, _n, s, t) = scores.dims4()?;
    let (mb, one, ms, mt) = mask.dims4()?;
    if one != 1 || ms != s || mt != t || (mb != b && mb != 1) {
        candle_core::bail!("masked_softmax: mask {:?} does not fit scores {:?}", mask.dims(), scores.dims());
    }
    if t == 0 {
        // Rows of no scores: an empty result (the kernel would split rows of no elements).
        return scores.affine(1.0, 0.0);
    }
    in_kernel_dtype(scores, |x| super::tape::apply_op2(&x.contiguous()?, &mask.to_dtype(x.dtype())?.contiguous()?, MaskedSoftmax { scale }))
}

struct MaskedSoftmax {
    scale: f64,
}

/// The mask row that score row `row` (of `[B, N, S, T]` flattened to rows) reads.
fn mask_row_index(row: usize, heads_rows: usize, rows_per_batch_mask: usize, mask_batches: usize) -> usize {
    // row = ((b * N) + n) * S + s ; mask row = (b' * S + s) with b' = b or 0.
    let s_len = rows_per_batch_mask;
    let s = row % s_len;
    let b = row / heads_rows;
    let b = if mask_batches == 1 { 0 } else { b };
    b * s_len + s
}

fn forward<T: Float>(x: &[T], m: &[T], dims: &[usize], mask_batches: usize, scale: f64) -> Vec<T> {
    let (n, s, t) = (dims[1], dims[2], dims[3]);
    let mut out = vec![T::of_f64(0.0); x.len()];
    out.par_chunks_mut(t).zip(x.par_chunks(t)).enumerate().for_each(|(row, (o, xr))| {
        let mr = mask_row_index(row, n * s, s, mask_batches);
        o.copy_from_slice(xr);
        softmax_rows(o, &m[mr * t..(mr + 1) * t], t, scale);
    });
    out
}

/// One row in place: `z = (s·scale)·m + MASKED_SCORE·(1 − m)`, then softmax (sums in f64).
#[inline(always)]
pub(super) fn softmax_row_in_place<T: Float>(row: &mut [T], mask: &[T], scale: f64) {
    let (scale, masked, one) = (T::of_f64(scale), T::of_f64(MASKED_SCORE), T::of_f64(1.0));
    for (z, &mv) in row.iter_mut().zip(mask) {
        *z = *z * scale * mv + masked * (one - mv);
    }
    let max = math::max(row);
    for z in row.iter_mut() {
        *z = (*z - max).exp();
    }
    let inv = T::of_f64(1.0 / math::sum_f64(row));
    row.iter_mut().for_each(|z| *z *= inv);
}

math::simd_kernel! {
    /// Rows of `t` scores in place (each with its mask row): [`softmax_row_in_place`], vectorized.
    pub(crate) fn softmax_rows<T> [SoftmaxRows] (rows: &'a mut [T], mask: &'a [T], t: usize, scale: f64) {
        for (row, mrow) in rows.chunks_mut(t).zip(mask.chunks(t)) {
            softmax_row_in_place(row, mrow, scale);
        }
    }
}

math::simd_kernel! {
    /// The softmax backward of rows of `t`, in place over the output gradient `dp`:
    /// `dz = p ⊙ (dp − Σ dp·p) · scale · mask`.
    pub(crate) fn softmax_rows_backward<T> [SoftmaxRowsBackward] (dp: &'a mut [T], p: &'a [T], mask: &'a [T], t: usize, scale: f64) {
        let scale = T::of_f64(scale);
        for ((dr, pr), mr) in dp.chunks_mut(t).zip(p.chunks(t)).zip(mask.chunks(t)) {
            let dot = T::of_f64(math::dot_f64(dr, pr));
            for ((dv, &pv), &mv) in dr.iter_mut().zip(pr).zip(mr) {
                *dv = pv * (*dv - dot) * scale * mv;
            }
        }
    }
}

impl CustomOp2 for MaskedSoftmax {
    fn name(&self) -> &'static str {
        "wenhui-masked-softmax"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let dims = l1.dims();
        let mb = l2.dims()[0];
        let out = float_dispatch!(s1, "masked_softmax", |T| forward::<T>(as_slice(s1, l1)?, as_slice(s2, l2)?, dims, mb, self.scale));
        Ok((out, l1.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let d = softmax_dims(l1.dims(), l2.dims()[0]);
        let out =
            super::cuda::float_kernel!(s1, "masked_softmax", |T| super::cuda::masked_softmax::<T>((s1, l1), (s2, l2), &d, self.scale)?);
        Ok((out, l1.shape().clone()))
    }

    fn bwd(&self, _scores: &Tensor, mask: &Tensor, probs: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let ds = probs.apply_op3_no_bwd(&grad.contiguous()?, mask, &MaskedSoftmaxBackward { scale: self.scale })?;
        Ok((Some(ds), None))
    }
}

struct MaskedSoftmaxBackward {
    scale: f64,
}

fn backward<T: Float>(p: &[T], g: &[T], m: &[T], dims: &[usize], mask_batches: usize, scale: f64) -> Vec<T> {
    let (n, s, t) = (dims[1], dims[2], dims[3]);
    let mut out = vec![T::of_f64(0.0); p.len()];
    out.par_chunks_mut(t).zip(p.par_chunks(t).zip(g.par_chunks(t))).enumerate().for_each(|(row, (o, (pr, gr)))| {
        let mr = mask_row_index(row, n * s, s, mask_batches);
        let mrow = &m[mr * t..(mr + 1) * t];
        o.copy_from_slice(gr);
        softmax_rows_backward(o, pr, mrow, t, scale);
    });
    out
}

impl CustomOp3 for MaskedSoftmaxBackward {
    fn name(&self) -> &'static str {
        "wenhui-masked-softmax-backward"
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
        let dims = l1.dims();
        let mb = l3.dims()[0];
        let out = match s1 {
            CpuStorage::F32(_) => {
                CpuStorage::F32(backward::<f32>(as_slice(s1, l1)?, as_slice(s2, l2)?, as_slice(s3, l3)?, dims, mb, self.scale))
            }
            CpuStorage::F64(_) => {
                CpuStorage::F64(backward::<f64>(as_slice(s1, l1)?, as_slice(s2, l2)?, as_slice(s3, l3)?, dims, mb, self.scale))
            }
            _ => candle_core::bail!("masked_softmax backward: unsupported dtype"),
        };
        Ok((out, l1.shape().clone()))
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
        let d = softmax_dims(l1.dims(), l3.dims()[0]);
        let out = super::cuda::float_kernel!(s1, "masked_softmax backward", |T| super::cuda::masked_softmax_backward::<T>(
            (s1, l1),
            (s2, l2),
            (s3, l3),
            &d,
            self.scale
        )?);
        Ok((out, l1.shape().clone()))
    }
}

/// Scores `[B, N, S, T]` and the mask's batch count, for the CUDA kernels.
#[cfg(feature = "cuda")]
fn softmax_dims(dims: &[usize], mask_batches: usize) -> super::cuda::SoftmaxDims {
    super::cuda::SoftmaxDims { heads: dims[1], s: dims[2], t: dims[3], mask_batches }
}
