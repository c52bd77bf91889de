//! Fused CPU operations that record their backward pass.
//!
//! candle-nn's fused `layer_norm` / `softmax_last_dim` are built without a backward pass, so a
//! model that uses them trains silently wrong (only the output head gets gradients). The ops here
//! are candle `CustomOp`s with `bwd`, multi-threaded over rows with rayon, for f32 and f64
//! (f64 makes finite-difference checks meaningful). Other dtypes are computed in f32.

mod attention;
mod bias;
mod cached_attention;
mod cross_entropy;
#[cfg(feature = "cuda")]
pub(crate) mod cuda;
#[cfg(all(test, target_os = "linux"))]
mod cuda_emu;
pub(crate) mod decode;
mod dropout;
mod embedding;
mod gelu;
mod kv_rows;
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
pub(crate) mod launch;
mod layer_norm;
mod linear;
pub(crate) mod math;
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
pub(crate) mod permute;
mod softmax;
pub(crate) mod tape;

pub(crate) use attention::attention_keeping;
pub use attention::{attention, attention_packed};
pub use bias::add_bias;
pub(crate) use cached_attention::cached_attention;
pub use cross_entropy::{cross_entropy, cross_entropy_f32};
pub(crate) use dropout::residual_dropout_op;
pub use dropout::{dropout, residual_dropout};
pub use embedding::embedding;
pub use gelu::{gelu_erf, gelu_tanh};
pub(crate) use kv_rows::{move_rows_in_place, moves_in_place};
pub use layer_norm::layer_norm;
pub use linear::{linear, linear_gelu, linear_no_bias};
pub use softmax::{masked_softmax, MASKED_SCORE};

use candle_core::{CpuStorage, DType, Layout, Result, Tensor, WithDType};

/// The largest `|a − b|` over all elements, read as f64 on the CPU; NaN when any difference is NaN
/// (a NaN in either, or ∞ − ∞), so that `max_abs_diff(a, b)? <= tol` fails on it. candle's own
/// `max_all` skips NaNs after the first element (`NaN < x` is false), which would let a NaN
/// in a model's output pass a parity check. An error when the shapes differ.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f64> {
    if a.dims() != b.dims() {
        candle_core::bail!("max_abs_diff: shapes differ: {:?} vs {:?}", a.dims(), b.dims());
    }
    let values = |t: &Tensor| t.to_device(&candle_core::Device::Cpu)?.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>();
    let (a, b) = (values(a)?, values(b)?);
    Ok(a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, |m, d| if m.is_nan() || d.is_nan() { f64::NAN } else { m.max(d) }))
}

/// Runs a kernel for the float type of a CPU storage: `T` is bound to `f32` or `f64` inside
/// `$body` (which returns a `Vec<T>`), and the result is wrapped back into a `CpuStorage`.
macro_rules! float_dispatch {
    ($storage:expr, $name:literal, |$t:ident| $body:expr) => {
        match $storage {
            candle_core::CpuStorage::F32(_) => {
                type $t = f32;
                candle_core::CpuStorage::F32($body)
            }
            candle_core::CpuStorage::F64(_) => {
                type $t = f64;
                candle_core::CpuStorage::F64($body)
            }
            _ => candle_core::bail!(concat!($name, ": unsupported dtype")),
        }
    };
}
pub(crate) use float_dispatch;

/// The float types the CPU kernels are written for.
pub(crate) trait Float:
    WithDType
    + Copy
    + Send
    + Sync
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::AddAssign
{
    fn as_f64(self) -> f64;
    fn of_f64(v: f64) -> Self;
    /// `exp`, `tanh`, `erf` in the type's own precision (f32 math is several times faster).
    fn exp(self) -> Self;
    fn tanh(self) -> Self;
    fn erf(self) -> Self;
}
impl Float for f32 {
    fn as_f64(self) -> f64 {
        self as f64
    }
    fn of_f64(v: f64) -> Self {
        v as f32
    }
    #[inline(always)]
    fn exp(self) -> Self {
        math::exp_f32(self)
    }
    #[inline(always)]
    fn tanh(self) -> Self {
        // 1 − 2/(e^{2x} + 1): one expf instead of glibc's slower tanhf; the absolute error stays
        // at f32 rounding (≈1e-7), which is all GELU needs.
        let x = self.clamp(-15.0, 15.0);
        1.0 - 2.0 / (math::exp_f32(2.0 * x) + 1.0)
    }
    fn erf(self) -> Self {
        candle_core::cpu::erf::erf_f32(self)
    }
}
impl Float for f64 {
    fn as_f64(self) -> f64 {
        self
    }
    fn of_f64(v: f64) -> Self {
        v
    }
    fn exp(self) -> Self {
        f64::exp(self)
    }
    fn tanh(self) -> Self {
        f64::tanh(self)
    }
    fn erf(self) -> Self {
        candle_core::cpu::erf::erf_f64(self)
    }
}

/// The contiguous data of `storage` under `layout`, or an error if it is strided.
pub(crate) fn as_slice<'a, T: WithDType>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [T]> {
    let data = T::cpu_storage_as_slice(storage)?;
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("wenhui op: input must be contiguous"),
    }
}

/// Whether the fused CPU kernels take `x` as it is: a CPU tensor in f32 or f64. Callers use the
/// fused op then, and candle's ops (or the CUDA kernels) otherwise.
pub fn fused_cpu(x: &Tensor) -> bool {
    x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64)
}

/// Whether the model runs its layers on a CUDA tensor through the fused ops ([`attention_packed`],
/// [`linear`], [`linear_no_bias`] for tied logits, [`residual_dropout`]), one graph node each,
/// instead of candle's composites: the default since `scripts/gpu-check.sh` verified them on an
/// H200 (76/76 parity checks) and timed them faster in every benchmark (training 1.50×, decoding
/// 1.10–1.36× the composites, 2026-11-28). `WENHUI_CUDA_OPS=composite` keeps candle's ops, for
/// comparison; [`crate::device::set_cuda_ops`] (the CLI's `--cuda-ops`) takes precedence, and the
/// variable is read once per process. The ops themselves run on CUDA either way.
pub fn cuda_fused(x: &Tensor) -> bool {
    use crate::device::CudaOps;
    static FROM_ENV: std::sync::OnceLock<CudaOps> = std::sync::OnceLock::new();
    if !x.device().is_cuda() {
        return false;
    }
    let ops = crate::device::chosen_cuda_ops().unwrap_or_else(|| {
        *FROM_ENV.get_or_init(|| match std::env::var("WENHUI_CUDA_OPS") {
            Err(_) => CudaOps::Fused,
            Ok(v) => crate::device::parse_cuda_ops(&v).unwrap_or_else(|e| {
                tracing::warn!("WENHUI_CUDA_OPS: {e}; using fused");
                CudaOps::Fused
            }),
        })
    });
    ops == CudaOps::Fused
}

/// Runs `f` in f32 when `x` has a dtype the kernels do not cover, casting back afterwards.
/// The CUDA kernels also cover bf16 and f16.
pub(crate) fn in_kernel_dtype(x: &Tensor, f: impl Fn(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
    match x.dtype() {
        DType::F32 | DType::F64 => f(x),
        DType::BF16 | DType::F16 if x.device().is_cuda() => f(x),
        other => f(&x.to_dtype(DType::F32)?)?.to_dtype(other),
    }
}

/// Runs `f` on the CPU slice of a tensor an op holds besides its inputs (a mask, an output
/// gradient handed to a backward kernel).
pub(crate) fn held<T: WithDType, R>(t: &Tensor, f: impl FnOnce(&[T]) -> Result<R>) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        candle_core::Storage::Cpu(c) => f(as_slice::<T>(c, layout)?),
        _ => candle_core::bail!("wenhui op: this kernel runs on CPU tensors only"),
    }
}

/// A fresh contiguous copy of the view `l` of a storage, on its device (candle's strided copy).
pub(crate) fn strided_copy<S>(s: &S, l: &Layout) -> Result<S>
where
    S: candle_core::backend::BackendStorage,
    S::Device: candle_core::backend::BackendDevice<Storage = S>,
{
    use candle_core::backend::BackendDevice;
    // SAFETY: `copy_strided_src` writes every element of the new buffer before it is read.
    let mut dst = unsafe { s.device().alloc_uninit(l.shape(), s.dtype())? };
    s.copy_strided_src(&mut dst, 0, l)?;
    Ok(dst)
}

/// Rows per rayon task: enough work per task to amortise scheduling.
pub(crate) fn rows_per_task(row_len: usize) -> usize {
    (16384 / row_len.max(1)).max(1)
}

#[cfg(test)]
mod tests;
