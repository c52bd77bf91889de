//! Inverted dropout with a counter-based mask: element `i` is dropped when
//! `hash(seed, i) < p`. The same seed gives the same mask on any number of threads, so a run
//! is reproducible and the backward pass recomputes the mask instead of storing it.

use super::{as_slice, float_dispatch, in_kernel_dtype, Float};
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

const CHUNK: usize = 8192;

/// Drops each element with probability `p` and scales the rest by `1/(1−p)`.
/// `seed` must differ between call sites and steps. Differentiable.
pub fn dropout(x: &Tensor, p: f64, seed: u64) -> Result<Tensor> {
    if p <= 0.0 {
        return Ok(x.clone());
    }
    if p >= 1.0 {
        return x.zeros_like();
    }
    in_kernel_dtype(x, |x| x.contiguous()?.apply_op1(Dropout { p, seed }))
}

#[derive(Clone, Copy)]
struct Dropout {
    p: f64,
    seed: u64,
}

/// SplitMix64: a fast, well-mixed hash of a counter.
fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Elements whose 53-bit hash falls below this are dropped.
fn threshold(p: f64) -> u64 {
    (p * (1u64 << 53) as f64) as u64
}

/// Whether element `i` of a dropout with seed `seed` survives: `0` when dropped, `1/(1−p)` when kept.
pub(crate) fn keep_scale(seed: u64, p: f64, i: u64) -> f64 {
    if splitmix(splitmix(seed) ^ i.wrapping_mul(0xD6E8_FEB8_6659_FD93)) >> 11 < threshold(p) {
        0.0
    } else {
        1.0 / (1.0 - p)
    }
}

impl Dropout {
    fn apply<T: Float>(&self, x: &[T]) -> Vec<T> {
        let mut out = vec![T::of_f64(0.0); x.len()];
        out.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).enumerate().for_each(|(c, (o, xs))| {
            for (j, (o, &v)) in o.iter_mut().zip(xs).enumerate() {
                *o = v * T::of_f64(keep_scale(self.seed, self.p, (c * CHUNK + j) as u64));
            }
        });
        out
    }
}

impl CustomOp1 for Dropout {
    fn name(&self) -> &'static str {
        "wenhui-dropout"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let out = float_dispatch!(s, "dropout", |T| self.apply::<T>(as_slice(s, l)?));
        Ok((out, l.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, s: &candle_core::CudaStorage, l: &Layout) -> Result<(candle_core::CudaStorage, Shape)> {
        // The same mask as the CPU: the kernel hashes the element index with splitmix(seed).
        let (mixed, threshold, scale) = (splitmix(self.seed), threshold(self.p), 1.0 / (1.0 - self.p));
        let out = super::cuda::float_kernel!(s, "dropout", |T| super::cuda::dropout::<T>((s, l), mixed, threshold, scale)?);
        Ok((out, l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        // The same mask and scale applied to the gradient.
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(self)?))
    }
}
