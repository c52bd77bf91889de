//! Cross-entropy per row, `logsumexp(z) − z[target]`, fused with its backward
//! `(softmax(z) − onehot(target))·g`: no `[N, V]` log-softmax is materialised.

use super::{as_slice, float_dispatch, math, Float};
use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Per-row cross-entropy of `logits` `[N, V]` against `targets` `[N]` (u32). Returns `[N]` in
/// the logits' dtype. Differentiable with respect to `logits`. Rows to ignore are masked by the
/// caller (multiply by a 0/1 weight), so any in-range target is accepted. No rows give an empty
/// result (whatever `V`); rows over no classes (`V = 0`) are an error, as no target fits.
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    cross_entropy_f32(logits, targets)?.to_dtype(logits.dtype())
}

/// [`cross_entropy`] with the losses in f32 (f64 for f64 logits) whatever the logits' dtype:
/// the losses of the logits' f32 upcast, as mixed-precision training takes them. On a GPU,
/// half-precision logits are read as they are (no f32 copy of `[N, V]` each way) and their
/// gradient comes back in their dtype.
pub fn cross_entropy_f32(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let (n, v) = logits.dims2()?;
    if targets.dims() != [n] {
        candle_core::bail!("cross_entropy: targets {:?} do not match logits [{n}, {v}]", targets.dims());
    }
    if !targets.dtype().is_int() {
        candle_core::bail!("cross_entropy: targets must be integer class ids, got {:?}", targets.dtype());
    }
    if v == 0 {
        if n > 0 {
            candle_core::bail!("cross_entropy: {n} rows over 0 classes: no target fits");
        }
        // No rows over no classes: an empty loss (the kernel would split rows of no elements).
        let out = match logits.dtype() {
            DType::F64 => DType::F64,
            _ => DType::F32,
        };
        return logits.sum(1)?.to_dtype(out);
    }
    let targets = targets.to_dtype(DType::U32)?.contiguous()?;
    if n > 0 {
        let max = targets.max(0)?.to_scalar::<u32>()?;
        if max as usize >= v {
            candle_core::bail!("cross_entropy: target id {max} is out of range for {v} classes");
        }
    }
    let logits = match logits.dtype() {
        DType::F32 | DType::F64 => logits.clone(),
        DType::BF16 | DType::F16 if logits.device().is_cuda() => logits.clone(),
        _ => logits.to_dtype(DType::F32)?,
    };
    super::tape::apply_op2(&logits.contiguous()?, &targets, CrossEntropy)
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
        use super::cuda::cross_entropy as ce;
        use candle_core::cuda_backend::CudaStorageSlice as S;
        use half::{bf16, f16};
        let n = l1.shape().dims2()?.0;
        let (z, t) = ((s1, l1), (s2, l2));
        let slice = match &s1.slice {
            S::F32(_) => S::F32(ce::<f32, f32>(z, t)?),
            S::F64(_) => S::F64(ce::<f64, f64>(z, t)?),
            S::BF16(_) => S::F32(ce::<bf16, f32>(z, t)?),
            S::F16(_) => S::F32(ce::<f16, f32>(z, t)?),
            _ => candle_core::bail!("cross_entropy: unsupported dtype on CUDA"),
        };
        Ok((candle_core::CudaStorage { slice, device: s1.device.clone() }, Shape::from(n)))
    }

    fn bwd(&self, logits: &Tensor, targets: &Tensor, res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        // The backward takes each row's loss too, in the loss's dtype: `loss + z[target]` is the
        // row's log-sum-exp, so it reads each row once instead of three times.
        let g_and_loss = Tensor::stack(&[&grad.to_dtype(res.dtype())?, res], 1)?;
        Ok((Some(logits.apply_op3_no_bwd(targets, &g_and_loss, &CrossEntropyBackward)?), None))
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

/// `∂loss/∂z = (softmax(z) − onehot(target))·g`: input 3 is `[N, 2]` = (g, loss) per row in the
/// loss's dtype, and the row's log-sum-exp is `loss + z[target]`.
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
        use super::cuda::cross_entropy_backward as ceb;
        use candle_core::cuda_backend::CudaStorageSlice as S;
        use half::{bf16, f16};
        let (z, t, gl) = ((s1, l1), (s2, l2), (s3, l3));
        let slice = match &s1.slice {
            S::F32(_) => S::F32(ceb::<f32, f32>(z, t, gl)?),
            S::F64(_) => S::F64(ceb::<f64, f64>(z, t, gl)?),
            S::BF16(_) => S::BF16(ceb::<bf16, f32>(z, t, gl)?),
            S::F16(_) => S::F16(ceb::<f16, f32>(z, t, gl)?),
            _ => candle_core::bail!("cross_entropy backward: unsupported dtype on CUDA"),
        };
        Ok((candle_core::CudaStorage { slice, device: s1.device.clone() }, l1.shape().clone()))
    }
}
