//! GELU in both variants the reference codes use, element-wise over rayon chunks, with backward.
//!
//! tanh: `0.5x(1 + tanh(k(x + 0.044715x³)))`, `k = √(2/π)` (THUDM/Megatron, GPT-2 `gelu_new`);
//! erf: `0.5x(1 + erf(x/√2))` (Hugging Face GLM port, BERT).

use super::{as_slice, float_dispatch, in_kernel_dtype, math, Float};
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

const K: f64 = 0.797_884_560_802_865_4; // √(2/π)
const C: f64 = 0.044_715;
const CHUNK: usize = 8192;

/// tanh-approximation GELU, differentiable.
pub fn gelu_tanh(x: &Tensor) -> Result<Tensor> {
    in_kernel_dtype(x, |x| super::tape::apply_op1(&x.contiguous()?, Gelu { erf: false }))
}

/// Exact (erf) GELU, differentiable.
pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    in_kernel_dtype(x, |x| super::tape::apply_op1(&x.contiguous()?, Gelu { erf: true }))
}

struct Gelu {
    erf: bool,
}

#[inline(always)]
fn value<T: Float>(x: T, erf: bool) -> T {
    let half = T::of_f64(0.5);
    let one = T::of_f64(1.0);
    if erf {
        half * x * (one + (x * T::of_f64(std::f64::consts::FRAC_1_SQRT_2)).erf())
    } else {
        half * x * (one + (T::of_f64(K) * (x + T::of_f64(C) * x * x * x)).tanh())
    }
}

#[inline(always)]
fn derivative<T: Float>(x: T, erf: bool) -> T {
    let half = T::of_f64(0.5);
    let one = T::of_f64(1.0);
    if erf {
        let pdf = (T::of_f64(-0.5) * x * x).exp() * T::of_f64(0.398_942_280_401_432_7); // φ(x)
        half * (one + (x * T::of_f64(std::f64::consts::FRAC_1_SQRT_2)).erf()) + x * pdf
    } else {
        let t = (T::of_f64(K) * (x + T::of_f64(C) * x * x * x)).tanh();
        half * (one + t) + half * x * (one - t * t) * T::of_f64(K) * (one + T::of_f64(3.0 * C) * x * x)
    }
}

math::simd_kernel! {
    /// `o = gelu(x)` over one chunk, vectorized (the `erf` test is hoisted out of the loop).
    fn gelu_chunk<T> [GeluChunk] (o: &'a mut [T], xs: &'a [T], erf: bool) {
        if erf {
            o.iter_mut().zip(xs).for_each(|(o, &v)| *o = value(v, true));
        } else {
            o.iter_mut().zip(xs).for_each(|(o, &v)| *o = value(v, false));
        }
    }
}

math::simd_kernel! {
    /// `o = g · gelu'(x)` over one chunk, vectorized.
    fn gelu_grad_chunk<T> [GeluGradChunk] (o: &'a mut [T], xs: &'a [T], gs: &'a [T], erf: bool) {
        if erf {
            o.iter_mut().zip(xs).zip(gs).for_each(|((o, &v), &g)| *o = g * derivative(v, true));
        } else {
            o.iter_mut().zip(xs).zip(gs).for_each(|((o, &v), &g)| *o = g * derivative(v, false));
        }
    }
}

/// `gelu(x)` of a slice, multi-threaded.
pub(crate) fn forward<T: Float>(x: &[T], erf: bool) -> Vec<T> {
    let mut out = vec![T::of_f64(0.0); x.len()];
    out.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(o, xs)| gelu_chunk(o, xs, erf));
    out
}

impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "wenhui-gelu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let erf = self.erf;
        let out = float_dispatch!(s, "gelu", |T| forward::<T>(as_slice(s, l)?, erf));
        Ok((out, l.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, s: &candle_core::CudaStorage, l: &Layout) -> Result<(candle_core::CudaStorage, Shape)> {
        let out = super::cuda::float_kernel!(s, "gelu", |T| super::cuda::gelu::<T>((s, l), self.erf)?);
        Ok((out, l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(backward_of(x, grad, self.erf)?))
    }
}

/// `g ⊙ gelu'(x)` (no graph node): the backward of a GELU whose input is `x`.
pub(crate) fn backward_of(x: &Tensor, g: &Tensor, erf: bool) -> Result<Tensor> {
    x.apply_op2_no_bwd(&g.contiguous()?, &GeluBackward { erf })
}

struct GeluBackward {
    erf: bool,
}

fn backward<T: Float>(x: &[T], g: &[T], erf: bool) -> Vec<T> {
    let mut out = vec![T::of_f64(0.0); x.len()];
    out.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK).zip(g.par_chunks(CHUNK))).for_each(|(o, (xs, gs))| {
        gelu_grad_chunk(o, xs, gs, erf);
    });
    out
}

impl CustomOp2 for GeluBackward {
    fn name(&self) -> &'static str {
        "wenhui-gelu-backward"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let out = float_dispatch!(s1, "gelu backward", |T| backward::<T>(as_slice(s1, l1)?, as_slice(s2, l2)?, self.erf));
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
        let out = super::cuda::float_kernel!(s1, "gelu backward", |T| super::cuda::gelu_backward::<T>((s1, l1), (s2, l2), self.erf)?);
        Ok((out, l1.shape().clone()))
    }
}
