//! Cross-entropy per row, `logsumexp(z) − z[target]`, fused with its backward
//! `(softmax(z) − onehot(target))·g`: no `[N, V]` log-softmax is materialised.

use super::{as_slice, float_dispatch, in_kernel_dtype, math, Float};
use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Per-row cross-entropy of `logits` `[N, V]` against `targets` `[N]` (u32). Returns `[N]`.
/// Differentiable with respect to `logits`. Rows to ignore are masked by the caller
/// (multiply by a 0/1 weight), so any in-range target is accepted.
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let (n, v) = logits.dims2()?;
    if targets.dims() != [n] {
        candle_core::bail!("cross_entropy: targets {:?} do not match logits [{n}, {v}]", targets.dims());
    }
    let targets = targets.to_dtype(DType::U32)?.contiguous()?;
    let max = targets.max(0)?.to_scalar::<u32>()?;
    if n > 0 && max as usize >= v {
        candle_core::bail!("cross_entropy: target id {max} is out of range for {v} classes");
    }
    in_kernel_dtype(logits, |x| super::tape::apply_op2(&x.contiguous()?, &targets, CrossEntropy))
}

struct CrossEntropy;

fn forward<T: Float>(z: &[T], t: &[u32], v: usize) -> Vec<T> {
    z.par_chunks(v)
        .zip(t.par_iter())
        .map(|(row, &tg)| {
            T::of_f64({
                let (max, lse) = row_log_sum_exp(row);
                max + lse - row[tg as usize].as_f64()
            })
        })
        .collect()
}

impl CustomOp2 for CrossEntropy {
    fn name(&self) -> &'static str {
        "wenhui-cross-entropy"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, v) = l1.shape().dims2()?;
        let t = as_slice::<u32>(s2, l2)?;
        let out = float_dispatch!(s1, "cross_entropy", |T| forward::<T>(as_slice(s1, l1)?, t, v));
        Ok((out, Shape::from(n)))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let n = l1.shape().dims2()?.0;
        let out = super::cuda::float_kernel!(s1, "cross_entropy", |T| super::cuda::cross_entropy::<T>((s1, l1), (s2, l2))?);
        Ok((out, Shape::from(n)))
    }

    fn bwd(&self, logits: &Tensor, targets: &Tensor, res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = grad.to_dtype(logits.dtype())?.contiguous()?;
        if logits.device().is_cpu() {
            // The CPU kernel takes each row's loss too: `loss + z[target]` is the row's
            // log-sum-exp, so the backward needs one pass over the row instead of three.
            let g_and_loss = Tensor::stack(&[&g, &res.to_dtype(logits.dtype())?], 1)?;
            return Ok((Some(logits.apply_op3_no_bwd(targets, &g_and_loss, &CrossEntropyBackward)?), None));
        }
        Ok((Some(logits.apply_op3_no_bwd(targets, &g, &CrossEntropyBackward)?), None))
    }
}

math::simd_kernel! {
    /// `(max, log Σ exp(z − max))` of a row, accumulated in f64, vectorized.
    fn row_log_sum_exp<T> [RowLogSumExp] (row: &'a [T]) -> (f64, f64) {
        let m = math::max(row);
        (m.as_f64(), math::sum_map_f64(row, |v| (v - m).exp()).ln())
    }
}

math::simd_kernel! {
    /// `o = softmax(row) · g` given the row's log-sum-exp `lse`, vectorized. The row's max is
    /// subtracted first and `lse − max` after, which keeps large logits exact.
    fn softmax_times<T> [SoftmaxTimes] (o: &'a mut [T], row: &'a [T], lse: f64, g: T) {
        let max = math::max(row);
        let rel = T::of_f64(lse - max.as_f64());
        for (o, &zv) in o.iter_mut().zip(row) {
            *o = ((zv - max) - rel).exp() * g;
        }
    }
}

/// `∂loss/∂z = (softmax(z) − onehot(target))·g` for CPU rows: input 3 is `[N, 2]` = (g, loss) per
/// row, and the row's log-sum-exp is `loss + z[target]`.
struct CrossEntropyBackward;

fn backward<T: Float>(z: &[T], t: &[u32], g_loss: &[T], v: usize) -> Vec<T> {
    let mut out = vec![T::of_f64(0.0); z.len()];
    out.par_chunks_mut(v).zip(z.par_chunks(v)).zip(t.par_iter().zip(g_loss.par_chunks(2))).for_each(|((o, row), (&tg, gl))| {
        let (gr, t) = (gl[0], tg as usize);
        softmax_times(o, row, gl[1].as_f64() + row[t].as_f64(), gr);
        o[t] -= gr;
    });
    out
}

impl CustomOp3 for CrossEntropyBackward {
    fn name(&self) -> &'static str {
        "wenhui-cross-entropy-backward"
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
        let (_, v) = l1.shape().dims2()?;
        let t = as_slice::<u32>(s2, l2)?;
        let out = float_dispatch!(s1, "cross_entropy backward", |T| backward::<T>(as_slice(s1, l1)?, t, as_slice(s3, l3)?, v));
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
        let out = super::cuda::float_kernel!(s1, "cross_entropy backward", |T| super::cuda::cross_entropy_backward::<T>(
            (s1, l1),
            (s2, l2),
            (s3, l3)
        )?);
        Ok((out, l1.shape().clone()))
    }
}
