//! The one-token decoding steps of a GLM layer (inference only, no backward). On CUDA with the
//! fused ops each is one kernel (`ops::cuda::decode`), since a batch-1 step is bound by kernel
//! launches; on the CPU they are the plain ops they fuse, so the model's decoding path also runs,
//! and is tested, without a GPU.

use super::{gelu_erf, gelu_tanh, layer_norm};
use candle_core::{Result, Tensor};

/// Whether one-token steps on `x`'s device take the decoding steps: on CUDA with the fused ops
/// (the default). On the CPU only inside [`on_cpu_in_tests`].
pub(crate) fn enabled(x: &Tensor) -> bool {
    super::cuda_fused(x) || (x.device().is_cpu() && cpu_forced())
}

#[cfg(test)]
thread_local! {
    static ON_CPU: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Calls of [`bias_residual_layer_norm`] on this thread, so tests see the steps ran.
    static SUBLAYER_ENDS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

#[cfg(test)]
fn cpu_forced() -> bool {
    ON_CPU.with(|c| c.get())
}

#[cfg(not(test))]
fn cpu_forced() -> bool {
    false
}

/// Runs `f` with the decoding steps on for CPU tensors of this thread (the tests compare the
/// model's decoding path with its usual one, which the CPU takes otherwise), and counts the
/// sublayer ends ([`bias_residual_layer_norm`]) it ran.
#[cfg(test)]
pub(crate) fn on_cpu_in_tests<R>(f: impl FnOnce() -> R) -> (R, usize) {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            ON_CPU.with(|c| c.set(false));
        }
    }
    ON_CPU.with(|c| c.set(true));
    SUBLAYER_ENDS.with(|c| c.set(0));
    let _reset = Reset;
    let r = f();
    (r, SUBLAYER_ENDS.with(|c| c.get()))
}

/// `gelu(y + b)` over the last dimension (`b` `[cols]`), `erf` or tanh form.
pub(crate) fn bias_gelu(y: &Tensor, b: &Tensor, erf: bool) -> Result<Tensor> {
    let b = b.to_dtype(y.dtype())?;
    #[cfg(feature = "cuda")]
    if y.device().is_cuda() {
        return y.contiguous()?.apply_op2_no_bwd(&b.contiguous()?, &super::cuda::decode::BiasGelu { erf });
    }
    let z = y.broadcast_add(&b)?;
    if erf {
        gelu_erf(&z)
    } else {
        gelu_tanh(&z)
    }
}

/// `x + (y + b)` over the last dimension (a projection's bias and the residual), and the layer
/// norm of that sum with γ `g` and β `beta`: (the new residual stream, its normalised rows).
pub(crate) fn bias_residual_layer_norm(
    y: &Tensor,
    b: &Tensor,
    x: &Tensor,
    g: &Tensor,
    beta: &Tensor,
    eps: f64,
) -> Result<(Tensor, Tensor)> {
    #[cfg(test)]
    SUBLAYER_ENDS.with(|c| c.set(c.get() + 1));
    let dt = y.dtype();
    let (b, x, g, beta) = (b.to_dtype(dt)?, x.to_dtype(dt)?, g.to_dtype(dt)?, beta.to_dtype(dt)?);
    #[cfg(feature = "cuda")]
    if y.device().is_cuda() {
        let op = super::cuda::decode::BiasResidualLayerNorm { b: b.contiguous()?, g: g.contiguous()?, beta: beta.contiguous()?, eps };
        let both = y.contiguous()?.apply_op2_no_bwd(&x.contiguous()?, &op)?;
        return Ok((both.get(0)?, both.get(1)?));
    }
    let sum = (x + y.broadcast_add(&b)?)?;
    let normed = layer_norm(&sum, &g, &beta, eps)?;
    Ok((sum, normed))
}
