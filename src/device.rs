//! Where tensors live and what they are computed in: `--device cpu|cuda|cuda:N` and
//! `--dtype f32|bf16|f16`, shared by the CLI and the library's benchmarks.

use crate::{Error, Result};
use candle_core::{DType, Device};

static DEFAULT: std::sync::RwLock<Option<(Device, DType)>> = std::sync::RwLock::new(None);

/// Sets the process-wide default device and compute dtype (the CLI's `--device`, `--dtype`):
/// what [`crate::model::LoadOptions::default`] and pretraining use.
pub fn set_default(device: Device, dtype: DType) {
    if let Ok(mut d) = DEFAULT.write() {
        *d = Some((device, dtype));
    }
}

/// The default device (the CPU unless [`set_default`] chose another).
pub fn default_device() -> Device {
    DEFAULT.read().ok().and_then(|d| d.as_ref().map(|(dev, _)| dev.clone())).unwrap_or(Device::Cpu)
}

/// The default compute dtype (f32 unless [`set_default`] chose another).
pub fn default_dtype() -> DType {
    DEFAULT.read().ok().and_then(|d| d.as_ref().map(|(_, dt)| *dt)).unwrap_or(DType::F32)
}

/// The default device for work that computes in f32 only (P-tuning, fine-tuning: no mixed
/// precision yet); an error naming `what` when a half compute dtype was chosen.
pub fn f32_device(what: &str) -> Result<Device> {
    if default_dtype() != DType::F32 {
        return Err(Error::input(format!("{what} computes in f32 (on the CPU or a GPU): drop --dtype")));
    }
    Ok(default_device())
}

/// Refuses work that needs more than the machine's memory (`bytes`, a rough estimate: parameters,
/// optimizer state, activations), before it allocates: far beyond the memory the allocator aborts
/// the process with no message, or the kernel kills it. Checked on the CPU against the machine's
/// total memory (Linux; elsewhere nothing is checked); `what` names the work, `hint` what to lower.
pub fn ensure_fits(device: &Device, bytes: f64, what: &str, hint: &str) -> Result<()> {
    if !device.is_cpu() {
        return Ok(());
    }
    let total_kb = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines().find(|l| l.starts_with("MemTotal:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse::<f64>().ok())
    });
    match total_kb {
        Some(kb) if bytes > kb * 1024.0 => Err(Error::input(format!(
            "{what} needs about {:.1} GB, more than this machine's {:.1} GB of memory: {hint}",
            bytes / 1e9,
            kb * 1024.0 / 1e9
        ))),
        _ => Ok(()),
    }
}

/// Parses `cpu`, `cuda` (= `cuda:0`) or `cuda:N`. CUDA needs a binary built with the `cuda`
/// feature (scripts/build-cuda.sh); otherwise the error says so.
pub fn parse_device(spec: &str) -> Result<Device> {
    let spec = spec.trim().to_ascii_lowercase();
    let ordinal = match spec.as_str() {
        "cpu" => return Ok(Device::Cpu),
        "cuda" | "gpu" => 0,
        s => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => n,
            _ => return Err(Error::input(format!("unknown device `{spec}`: use cpu, cuda or cuda:N"))),
        },
    };
    if !cfg!(feature = "cuda") {
        return Err(Error::input(format!(
            "device `{spec}`: this wenhui was built without CUDA; build it with scripts/build-cuda.sh (cargo feature `cuda`)"
        )));
    }
    let device = Device::new_cuda(ordinal).map_err(|e| Error::input(format!("cannot open CUDA device {ordinal}: {e}")))?;
    #[cfg(feature = "cuda")]
    {
        keep_freed_memory(&device)?;
        if let Device::Cuda(d) = &device {
            // cudarc gives every allocation two CUDA events (created and destroyed with it) to
            // order work across streams; it records or waits on them only once a context has
            // several streams, and candle and wenhui run everything on this one stream. So they
            // were pure host time: four driver calls per tensor, a few µs per kernel launch of a
            // launch-bound batch-1 decoding step.
            // `WENHUI_CUDA_EVENTS=1` keeps them, for comparison.
            if std::env::var("WENHUI_CUDA_EVENTS").map_or(true, |v| v != "1") {
                // SAFETY: nothing here creates a second stream, so no cross-stream ordering is lost.
                unsafe { d.disable_event_tracking() };
            }
        }
    }
    Ok(device)
}

/// Lets the device's memory pool keep what is freed instead of returning it to the driver at
/// every synchronisation (the default release threshold is 0): a training step frees and
/// re-allocates gigabytes of activations, which would otherwise be mapped again every step.
#[cfg(feature = "cuda")]
fn keep_freed_memory(device: &Device) -> Result<()> {
    use candle_core::cuda_backend::cudarc::driver::{result, sys};
    let Device::Cuda(d) = device else { return Ok(()) };
    let stream = d.cuda_stream();
    let ctx = stream.context();
    let fail = |e: result::DriverError| Error::input(format!("CUDA memory pool: {e}"));
    ctx.bind_to_thread().map_err(fail)?;
    let mut threshold = u64::MAX;
    // SAFETY: the device handle comes from a live context; the attribute takes a u64.
    unsafe {
        let pool = result::device::get_default_mem_pool(ctx.cu_device()).map_err(fail)?;
        result::mem_pool::set_attribute(
            pool,
            sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
            (&mut threshold as *mut u64).cast(),
        )
        .map_err(fail)?;
    }
    Ok(())
}

/// Parses `f32`, `bf16` or `f16`.
pub fn parse_dtype(spec: &str) -> Result<DType> {
    match spec.trim().to_ascii_lowercase().as_str() {
        "f32" | "fp32" | "float32" => Ok(DType::F32),
        "bf16" | "bfloat16" => Ok(DType::BF16),
        "f16" | "fp16" | "float16" | "half" => Ok(DType::F16),
        other => Err(Error::input(format!("unknown dtype `{other}`: use f32, bf16 or f16"))),
    }
}

/// Checks that a model can compute in `dtype` on `device`: f32 anywhere, f64 on the CPU too
/// (its kernels take it, for exact gradient checks), bf16/f16 on a GPU only (the CPU kernels
/// would only round-trip through f32, slower and no smaller), and never an integer type.
pub fn check_dtype(device: &Device, dtype: DType) -> Result<()> {
    if !matches!(dtype, DType::F32 | DType::F64 | DType::BF16 | DType::F16) {
        return Err(Error::input(format!("{dtype:?} is not a compute dtype: models compute in f32 (bf16 or f16 on a GPU)")));
    }
    if device.is_cpu() && !matches!(dtype, DType::F32 | DType::F64) {
        return Err(Error::input(format!("{dtype:?} compute needs a GPU (--device cuda); the CPU computes in f32")));
    }
    Ok(())
}

/// GPU matrix-product precision: TF32 for f32 products when `tf32`, and reduced-precision
/// accumulation for bf16/f16 products (as PyTorch allows by default). No effect on the CPU.
pub fn set_matmul_precision(tf32: bool) {
    candle_core::cuda::set_gemm_reduced_precision_f32(tf32);
    candle_core::cuda::set_gemm_reduced_precision_bf16(true);
    candle_core::cuda::set_gemm_reduced_precision_f16(true);
}

/// How the models run their layers on a GPU (see [`crate::ops::cuda_fused`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CudaOps {
    /// candle's composite ops (matmul, softmax, … one graph node each), for comparison.
    Composite,
    /// wenhui's fused ops, one graph node per layer with a hand-written backward, and decoding
    /// steps in eight launches per layer: the default (its ten-launch predecessor was verified and faster on an H200).
    Fused,
}

/// 0: not chosen (the `WENHUI_CUDA_OPS` environment variable decides), 1: composite, 2: fused.
static CUDA_OPS: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Chooses the CUDA layer path for this process, over `WENHUI_CUDA_OPS` (the CLI's `--cuda-ops`).
/// Call it before the first model runs. No effect on the CPU.
pub fn set_cuda_ops(ops: CudaOps) {
    CUDA_OPS.store(if ops == CudaOps::Fused { 2 } else { 1 }, std::sync::atomic::Ordering::Relaxed);
}

/// The layer path chosen by [`set_cuda_ops`], if any.
pub(crate) fn chosen_cuda_ops() -> Option<CudaOps> {
    match CUDA_OPS.load(std::sync::atomic::Ordering::Relaxed) {
        1 => Some(CudaOps::Composite),
        2 => Some(CudaOps::Fused),
        _ => None,
    }
}

/// Parses `composite` or `fused` (the `--cuda-ops` and `WENHUI_CUDA_OPS` values).
pub fn parse_cuda_ops(s: &str) -> Result<CudaOps> {
    match s {
        "composite" => Ok(CudaOps::Composite),
        "fused" => Ok(CudaOps::Fused),
        other => Err(crate::Error::input(format!("unknown CUDA layer path `{other}`: use `composite` or `fused`"))),
    }
}

/// Waits for queued GPU work (timings); a no-op on the CPU.
pub fn synchronize(device: &Device) -> Result<()> {
    Ok(device.synchronize()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuda_ops_parse_and_leave_the_cpu_alone() -> std::result::Result<(), Box<dyn std::error::Error>> {
        assert_eq!(parse_cuda_ops("fused")?, CudaOps::Fused);
        assert_eq!(parse_cuda_ops("composite")?, CudaOps::Composite);
        let err = parse_cuda_ops("flash").unwrap_err().to_string();
        assert!(err.contains("`flash`") && err.contains("composite") && err.contains("fused"), "{err}");
        // The choice only concerns CUDA tensors.
        set_cuda_ops(CudaOps::Fused);
        assert_eq!(chosen_cuda_ops(), Some(CudaOps::Fused));
        assert!(!crate::ops::cuda_fused(&candle_core::Tensor::zeros(2, DType::F32, &Device::Cpu)?));
        Ok(())
    }

    #[test]
    fn parses_devices_and_dtypes() {
        assert!(parse_device("cpu").is_ok_and(|d| d.is_cpu()));
        assert!(parse_device("tpu").is_err());
        assert!(parse_device("cuda:x").is_err());
        if !cfg!(feature = "cuda") {
            let e = parse_device("cuda:1").err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains("build-cuda.sh"), "{e}");
        }
        assert_eq!(parse_dtype("BF16").ok(), Some(DType::BF16));
        assert_eq!(parse_dtype("fp16").ok(), Some(DType::F16));
        assert!(parse_dtype("int8").is_err());
        assert!(check_dtype(&Device::Cpu, DType::BF16).is_err());
        assert!(check_dtype(&Device::Cpu, DType::F32).is_ok());
        assert!(check_dtype(&Device::Cpu, DType::F64).is_ok());
        let e = check_dtype(&Device::Cpu, DType::U32).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("U32") && e.contains("f32"), "{e}");
    }
}
