//! `y + b` for a bias `b` `[N]` broadcast over the leading dimensions of `y` `[.., N]`, whose
//! backward sums the gradient over rows in parallel (candle's broadcast backward reduces over
//! strided dimensions on one thread).

use super::{as_slice, float_dispatch, in_kernel_dtype, Float};
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// `y + b` over the last dimension. Differentiable with respect to both. With a last dimension
/// of 0 the result is empty (`y`'s shape) and the bias gradient is empty too.
pub fn add_bias(y: &Tensor, b: &Tensor) -> Result<Tensor> {
    let n = y.dim(candle_core::D::Minus1)?;
    if b.dims() != [n] {
        candle_core::bail!("add_bias: bias {:?} does not match the last dimension {n}", b.dims());
    }
    if n == 0 {
        // No columns: nothing to add (the kernels would split rows of no elements).
        return y.broadcast_add(&b.to_dtype(y.dtype())?);
    }
    in_kernel_dtype(y, |y| super::tape::apply_op2(&y.contiguous()?, &b.to_dtype(y.dtype())?.contiguous()?, AddBias))
}

struct AddBias;

fn add<T: Float>(y: &[T], b: &[T]) -> Vec<T> {
    let n = b.len();
    let mut out = y.to_vec();
    if n == 0 {
        // No columns, so `y` holds no elements either.
        return out;
    }
    out.par_chunks_mut(n * (4096 / n).max(1)).for_each(|c| c.chunks_mut(n).for_each(|r| r.iter_mut().zip(b).for_each(|(o, &bv)| *o += bv)));
    out
}

impl CustomOp2 for AddBias {
    fn name(&self) -> &'static str {
        "wenhui-add-bias"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let out = float_dispatch!(s1, "add_bias", |T| add::<T>(as_slice(s1, l1)?, as_slice(s2, l2)?));
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
        let out = super::cuda::float_kernel!(s1, "add_bias", |T| super::cuda::add_bias::<T>((s1, l1), (s2, l2))?);
        Ok((out, l1.shape().clone()))
    }

    fn bwd(&self, _y: &Tensor, b: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let db = grad.contiguous()?.apply_op1_no_bwd(&ColumnSum { n: b.dim(0)? })?;
        Ok((Some(grad.clone()), Some(db)))
    }
}

/// Sums `[rows, n]` over rows → `[n]`, in f64, with per-thread partial sums.
struct ColumnSum {
    n: usize,
}

pub(crate) fn column_sum<T: Float>(g: &[T], n: usize) -> Vec<T> {
    if n == 0 {
        // No columns: the sum of each is nothing.
        return Vec::new();
    }
    let rows_per = (16384 / n).max(1);
    let partial: Vec<Vec<f64>> = g
        .par_chunks(n * rows_per)
        .map(|c| {
            let mut acc = vec![0f64; n];
            c.chunks(n).for_each(|r| acc.iter_mut().zip(r).for_each(|(a, &v)| *a += v.as_f64()));
            acc
        })
        .collect();
    let mut total = vec![0f64; n];
    for p in partial {
        total.iter_mut().zip(p).for_each(|(a, v)| *a += v);
    }
    total.into_iter().map(T::of_f64).collect()
}

impl CustomOp1 for ColumnSum {
    fn name(&self) -> &'static str {
        "wenhui-column-sum"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let out = float_dispatch!(s, "column_sum", |T| column_sum::<T>(as_slice(s, l)?, self.n));
        Ok((out, Shape::from(self.n)))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, s: &candle_core::CudaStorage, l: &Layout) -> Result<(candle_core::CudaStorage, Shape)> {
        let out = super::cuda::float_kernel!(s, "column_sum", |T| super::cuda::column_sum::<T>((s, l), self.n)?);
        Ok((out, Shape::from(self.n)))
    }
}
