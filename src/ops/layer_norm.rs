//! Layer normalisation over the last dimension, `y = (x - mean) / sqrt(var + eps) * gamma + beta`,
//! with an analytic backward for x, gamma and beta.

use super::{as_slice, float_dispatch, in_kernel_dtype, rows_per_task, Float};
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Layer norm of `x` over its last dimension with affine `gamma`, `beta` (both `[H]`).
/// Differentiable with respect to all three. With `H = 0` the result is empty (`x`'s shape),
/// still connected to all three inputs for a backward pass.
pub fn layer_norm(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> Result<Tensor> {
    let h = x.dim(candle_core::D::Minus1)?;
    if gamma.dims() != [h] || beta.dims() != [h] {
        candle_core::bail!("layer_norm: gamma {:?} / beta {:?} do not match hidden size {h}", gamma.dims(), beta.dims());
    }
    if h == 0 {
        // No features: nothing to normalise (the kernels would split rows of no elements).
        let dt = x.dtype();
        return x.broadcast_mul(&gamma.to_dtype(dt)?)?.broadcast_add(&beta.to_dtype(dt)?);
    }
    in_kernel_dtype(x, |x| {
        let dt = x.dtype();
        super::tape::apply_op3(&x.contiguous()?, &gamma.to_dtype(dt)?.contiguous()?, &beta.to_dtype(dt)?.contiguous()?, LayerNorm { eps })
    })
}

struct LayerNorm {
    eps: f64,
}

fn mean_rstd<T: Float>(row: &[T], eps: f64) -> (f64, f64) {
    let n = row.len() as f64;
    let mean = row.iter().map(|v| v.as_f64()).sum::<f64>() / n;
    let var = row.iter().map(|v| (v.as_f64() - mean).powi(2)).sum::<f64>() / n;
    (mean, 1.0 / (var + eps).sqrt())
}

fn forward<T: Float>(x: &[T], g: &[T], b: &[T], eps: f64) -> Vec<T> {
    let h = g.len();
    let mut out = vec![T::of_f64(0.0); x.len()];
    out.par_chunks_mut(h * rows_per_task(h)).zip(x.par_chunks(h * rows_per_task(h))).for_each(|(o, xs)| {
        for (orow, xrow) in o.chunks_mut(h).zip(xs.chunks(h)) {
            let (mean, rstd) = mean_rstd(xrow, eps);
            for i in 0..h {
                let xhat = (xrow[i].as_f64() - mean) * rstd;
                orow[i] = T::of_f64(xhat * g[i].as_f64() + b[i].as_f64());
            }
        }
    });
    out
}

impl CustomOp3 for LayerNorm {
    fn name(&self) -> &'static str {
        "wenhui-layer-norm"
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
        let out = float_dispatch!(s1, "layer_norm", |T| forward::<T>(as_slice(s1, l1)?, as_slice(s2, l2)?, as_slice(s3, l3)?, self.eps));
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
        let out = super::cuda::float_kernel!(s1, "layer_norm", |T| super::cuda::layer_norm::<T>((s1, l1), (s2, l2), (s3, l3), self.eps)?);
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let h = gamma.dim(0)?;
        let rows = x.elem_count() / h;
        // One fused pass returns [rows + 2, h]: dx rows, then dgamma, then dbeta.
        let packed = x.apply_op3_no_bwd(gamma, &grad.contiguous()?, &LayerNormBackward { eps: self.eps })?;
        let dx = packed.narrow(0, 0, rows)?.reshape(x.shape())?;
        let dgamma = packed.get(rows)?;
        let dbeta = packed.get(rows + 1)?;
        Ok((Some(dx), Some(dgamma), Some(dbeta)))
    }
}

struct LayerNormBackward {
    eps: f64,
}

fn backward<T: Float>(x: &[T], g: &[T], dy: &[T], eps: f64) -> Vec<T> {
    let h = g.len();
    let rows = x.len() / h;
    let chunk = h * rows_per_task(h);
    let mut out = vec![T::of_f64(0.0); (rows + 2) * h];
    let (dx, _) = out.split_at_mut(rows * h);
    // Each task writes its dx rows and returns partial sums for dgamma / dbeta.
    let partials: Vec<(Vec<f64>, Vec<f64>)> = dx
        .par_chunks_mut(chunk)
        .zip(x.par_chunks(chunk).zip(dy.par_chunks(chunk)))
        .map(|(dxc, (xc, dyc))| {
            let mut dg = vec![0f64; h];
            let mut db = vec![0f64; h];
            let mut xhat = vec![0f64; h];
            for ((dxr, xr), dyr) in dxc.chunks_mut(h).zip(xc.chunks(h)).zip(dyc.chunks(h)) {
                let (mean, rstd) = mean_rstd(xr, eps);
                let (mut sum_dyg, mut sum_dyg_xhat) = (0f64, 0f64);
                for i in 0..h {
                    xhat[i] = (xr[i].as_f64() - mean) * rstd;
                    let dyi = dyr[i].as_f64();
                    let dyg = dyi * g[i].as_f64();
                    sum_dyg += dyg;
                    sum_dyg_xhat += dyg * xhat[i];
                    dg[i] += dyi * xhat[i];
                    db[i] += dyi;
                }
                let n = h as f64;
                for i in 0..h {
                    let dyg = dyr[i].as_f64() * g[i].as_f64();
                    dxr[i] = T::of_f64(rstd * (dyg - sum_dyg / n - xhat[i] * sum_dyg_xhat / n));
                }
            }
            (dg, db)
        })
        .collect();
    let (mut dg, mut db) = (vec![0f64; h], vec![0f64; h]);
    for (pg, pb) in partials {
        dg.iter_mut().zip(pg).for_each(|(a, b)| *a += b);
        db.iter_mut().zip(pb).for_each(|(a, b)| *a += b);
    }
    for i in 0..h {
        out[rows * h + i] = T::of_f64(dg[i]);
        out[(rows + 1) * h + i] = T::of_f64(db[i]);
    }
    out
}

impl CustomOp3 for LayerNormBackward {
    fn name(&self) -> &'static str {
        "wenhui-layer-norm-backward"
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
        let h = l2.shape().elem_count();
        let rows = l1.shape().elem_count() / h;
        let out = float_dispatch!(s1, "layer_norm backward", |T| backward::<T>(
            as_slice(s1, l1)?,
            as_slice(s2, l2)?,
            as_slice(s3, l3)?,
            self.eps
        ));
        Ok((out, Shape::from((rows + 2, h))))
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
        let h = l2.shape().elem_count();
        let rows = l1.shape().elem_count() / h;
        let out = super::cuda::float_kernel!(s1, "layer_norm backward", |T| super::cuda::layer_norm_backward::<T>(
            (s1, l1),
            (s2, l2),
            (s3, l3),
            self.eps
        )?);
        Ok((out, Shape::from((rows + 2, h))))
    }
}
