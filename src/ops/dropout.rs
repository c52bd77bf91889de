//! Inverted dropout with a counter-based mask: element `i` is dropped when
//! `hash(seed, i) < p`. The same seed gives the same mask on any number of threads, so a run
//! is reproducible and the backward pass recomputes the mask instead of storing it.

use super::{as_slice, float_dispatch, in_kernel_dtype, Float};
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

const CHUNK: usize = 8192;

/// An error unless `p` is a probability, in [0, 1] (NaN is not).
fn check_p(p: f64, op: &str) -> Result<()> {
    if !(0.0..=1.0).contains(&p) {
        candle_core::bail!("{op}: p = {p} is not a dropout probability in [0, 1]");
    }
    Ok(())
}

/// Drops each element with probability `p` and scales the rest by `1/(1−p)`; `p = 0` is the
/// identity and `p = 1` gives zeros, and a `p` outside [0, 1] (or NaN) is an error.
/// `seed` must differ between call sites and steps. Differentiable.
pub fn dropout(x: &Tensor, p: f64, seed: u64) -> Result<Tensor> {
    check_p(p, "dropout")?;
    if p <= 0.0 {
        return Ok(x.clone());
    }
    if p >= 1.0 {
        return x.zeros_like();
    }
    in_kernel_dtype(x, |x| super::tape::apply_op1(&x.contiguous()?, Dropout { p, seed }))
}

/// `x + dropout(y, p, seed)` as one graph node: the same mask and the same numbers as the two
/// ops, without the dropped copy of `y` as a node of its own (one gradient buffer and one pass
/// fewer per residual branch). The fused kernel runs on the CPU in f32/f64; elsewhere this is
/// the two ops. `p` as for [`dropout`].
pub fn residual_dropout(x: &Tensor, y: &Tensor, p: f64, seed: u64) -> Result<Tensor> {
    check_p(p, "residual_dropout")?;
    if x.dims() != y.dims() {
        candle_core::bail!("residual_dropout: x {:?} and y {:?} differ in shape", x.dims(), y.dims());
    }
    let fused = (super::fused_cpu(x) || super::cuda_fused(x)) && x.dtype() == y.dtype();
    if p <= 0.0 || p >= 1.0 || !fused {
        return x + dropout(y, p, seed)?;
    }
    residual_dropout_op(x, y, p, seed)
}

/// The fused node of [`residual_dropout`] on any device, without the `WENHUI_CUDA_OPS` gate (for
/// `bench parity`, and the layer stack's residuals, where p = 0 adds `y` as it is); `0 ≤ p < 1`
/// and equal shapes and dtypes.
pub(crate) fn residual_dropout_op(x: &Tensor, y: &Tensor, p: f64, seed: u64) -> Result<Tensor> {
    super::tape::apply_op2(&x.contiguous()?, &y.contiguous()?, ResidualDropout(Dropout { p, seed }))
}

#[derive(Clone, Copy)]
struct Dropout {
    p: f64,
    seed: u64,
}

/// SplitMix64: a fast, well-mixed hash of a counter.
#[inline(always)]
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

/// The mask of one dropout call, with the per-call parts of the hash computed once.
#[derive(Clone, Copy)]
pub(crate) struct Mask {
    seed_hash: u64,
    threshold: u64,
    p: f64,
}

impl Mask {
    pub(crate) fn new(seed: u64, p: f64) -> Self {
        Mask { seed_hash: splitmix(seed), threshold: threshold(p), p }
    }

    /// `(splitmix(seed), threshold, 1/(1 − p))`: what a CUDA kernel needs to drop exactly the
    /// elements this mask drops.
    #[cfg(any(feature = "cuda", test))]
    pub(crate) fn kernel_params(&self) -> (u64, u64, f64) {
        (self.seed_hash, self.threshold, 1.0 / (1.0 - self.p))
    }

    /// Whether element `i` survives.
    #[inline(always)]
    fn keeps(&self, i: u64) -> bool {
        splitmix(self.seed_hash ^ i.wrapping_mul(0xD6E8_FEB8_6659_FD93)) >> 11 >= self.threshold
    }

    /// `x[j] ·= 0 or 1/(1−p)` for the elements `first + j`, vectorized.
    pub(crate) fn apply_in_place<T: Float>(&self, x: &mut [T], first: u64) {
        apply_mask(x, *self, first, T::of_f64(1.0 / (1.0 - self.p)));
    }
}

super::math::simd_kernel! {
    /// [`Mask::apply_in_place`]'s loop.
    fn apply_mask<T> [ApplyMask] (x: &'a mut [T], mask: Mask, first: u64, scale: T) {
        let zero = T::of_f64(0.0);
        for (j, v) in x.iter_mut().enumerate() {
            *v = if mask.keeps(first + j as u64) { *v * scale } else { zero };
        }
    }
}

super::math::simd_kernel! {
    /// `o[j] += mask(y[j])` for the elements `first + j`, vectorized.
    fn add_masked<T> [AddMasked] (o: &'a mut [T], y: &'a [T], mask: Mask, first: u64, scale: T) {
        let zero = T::of_f64(0.0);
        for (j, (o, &v)) in o.iter_mut().zip(y).enumerate() {
            *o += if mask.keeps(first + j as u64) { v * scale } else { zero };
        }
    }
}

/// The op behind [`residual_dropout`].
struct ResidualDropout(Dropout);

impl CustomOp2 for ResidualDropout {
    fn name(&self) -> &'static str {
        "wenhui-residual-dropout"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let Dropout { p, seed } = self.0;
        let mask = Mask::new(seed, p);
        let out = float_dispatch!(s1, "residual_dropout", |T| {
            let mut out = as_slice::<T>(s1, l1)?.to_vec();
            let y = as_slice::<T>(s2, l2)?;
            let scale = T::of_f64(1.0 / (1.0 - p));
            out.par_chunks_mut(CHUNK).zip(y.par_chunks(CHUNK)).enumerate().for_each(|(c, (o, y))| {
                add_masked(o, y, mask, (c * CHUNK) as u64, scale);
            });
            out
        });
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
        let (mixed, threshold, scale) = Mask::new(self.0.seed, self.0.p).kernel_params();
        let out = super::cuda::float_kernel!(s1, "residual_dropout", |T| super::cuda::residual_dropout::<T>(
            (s1, l1),
            (s2, l2),
            mixed,
            threshold,
            scale
        )?);
        Ok((out, l1.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, _y: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(grad.clone()), Some(grad.contiguous()?.apply_op1_no_bwd(&self.0)?)))
    }
}

impl Dropout {
    fn apply<T: Float>(&self, x: &[T]) -> Vec<T> {
        let mask = Mask::new(self.seed, self.p);
        let mut out = x.to_vec();
        out.par_chunks_mut(CHUNK).enumerate().for_each(|(c, o)| mask.apply_in_place(o, (c * CHUNK) as u64));
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
        let (mixed, threshold, scale) = Mask::new(self.seed, self.p).kernel_params();
        let out = super::cuda::float_kernel!(s, "dropout", |T| super::cuda::dropout::<T>((s, l), mixed, threshold, scale)?);
        Ok((out, l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        // The same mask and scale applied to the gradient.
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(self)?))
    }
}
