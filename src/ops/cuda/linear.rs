//! The CUDA side of the fused linear op ([`crate::ops::linear`], [`crate::ops::linear_no_bias`]):
//! `y = x·Wᵀ + b` with the weight read through a transposed view (no copy), and the backward's
//! `dx = dy·W`, `dW = dyᵀ·x`, `db = Σ_rows dy` packed as the CPU op packs them. One graph node
//! instead of candle's transpose, reshape, matmul, reshape and bias nodes, each of which would
//! allocate and accumulate an activation-sized gradient buffer.

use super::{column_sum, float_kernel, output, view, KernelFloat};
use candle_core::backend::{BackendDevice, BackendStorage};
use candle_core::cuda_backend::cudarc::cublaslt::{CudaBlasLT, Matmul, MatmulConfig};
use candle_core::cuda_backend::DeviceId;
use candle_core::{CudaDevice, CudaStorage, DType, Layout, Result};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// `x [rows, in] · wᵀ + b` (an empty `b`: no bias) as `[rows, out]`.
pub(crate) fn forward(x: (&CudaStorage, &Layout), w: (&CudaStorage, &Layout), b: (&CudaStorage, &Layout)) -> Result<CudaStorage> {
    let (out, inp) = w.1.shape().dims2()?;
    let rows = x.1.shape().elem_count() / inp.max(1);
    let xl = Layout::contiguous_with_offset((rows, inp), x.1.start_offset());
    let wl = Layout::contiguous_with_offset((out, inp), w.1.start_offset());
    let has_bias = b.1.shape().elem_count() > 0;
    if has_bias && rows > 0 && epilogue_allowed() && aligned(&[(x.0, &xl), (w.0, &wl), b]) {
        match forward_with_epilogue((x.0, &xl), (w.0, &wl), b, (rows, out, inp)) {
            Ok(Some(y)) => return Ok(y),
            Ok(None) => {}
            Err(e) => give_up(&e),
        }
    }
    let y = x.0.matmul(w.0, (1, rows, out, inp), &xl, &wl.transpose(0, 1)?)?;
    if !has_bias {
        return Ok(y);
    }
    let yl = Layout::contiguous((rows, out));
    Ok(float_kernel!(y, "linear bias", |T| super::add_bias::<T>((&y, &yl), b)?))
}

/// `x·wᵀ + b` in half precision as one cublasLt GEMM with the bias added in its epilogue (as
/// PyTorch's `F.linear` does), instead of a GEMM and a bias kernel that reads and writes the
/// output again (5.4 ms of a 135 ms GLM-Base step on an H200). `None` for f32 and f64: candle's
/// cuBLAS call keeps f32 exact unless `--tf32` (cudarc's cublasLt computes f32 in TF32).
fn forward_with_epilogue(
    x: (&CudaStorage, &Layout),
    w: (&CudaStorage, &Layout),
    b: (&CudaStorage, &Layout),
    (rows, out, inp): (usize, usize, usize),
) -> Result<Option<CudaStorage>> {
    let dev = x.0.device();
    let y = match x.0.dtype() {
        DType::BF16 => CudaStorage::wrap_cuda_slice(gemm_bias::<half::bf16>(dev, x, w, b, (rows, out, inp))?, dev.clone()),
        DType::F16 => CudaStorage::wrap_cuda_slice(gemm_bias::<half::f16>(dev, x, w, b, (rows, out, inp))?, dev.clone()),
        _ => return Ok(None),
    };
    Ok(Some(y))
}

fn gemm_bias<T: KernelFloat>(
    dev: &CudaDevice,
    x: (&CudaStorage, &Layout),
    w: (&CudaStorage, &Layout),
    b: (&CudaStorage, &Layout),
    (rows, out, inp): (usize, usize, usize),
) -> Result<candle_core::cuda_backend::cudarc::driver::CudaSlice<T>>
where
    CudaBlasLT: Matmul<T>,
{
    let (xv, wv, bv) = (view::<T>(x.0, x.1)?, view::<T>(w.0, w.1)?, view::<T>(b.0, b.1)?);
    let mut y = output::<T>(dev, rows * out)?;
    // Column-major, as cuBLAS sees row-major buffers: yᵀ [out × rows] = W [out × in] (stored as
    // [in × out], hence transposed) · xᵀ [in × rows], the bias one value per row of yᵀ.
    let cfg = MatmulConfig {
        transa: true,
        transb: false,
        transc: false,
        m: out as u64,
        n: rows as u64,
        k: inp as u64,
        alpha: 1.0,
        lda: inp as i64,
        ldb: inp as i64,
        beta: 0.0,
        ldc: out as i64,
        stride_a: None,
        stride_b: None,
        stride_c: None,
        stride_bias: None,
        batch_size: None,
    };
    let lt = blas_lt(dev)?;
    // SAFETY: w holds out × in elements, x rows × in, the bias out and y rows × out, as `cfg` says.
    unsafe { lt.matmul(cfg, &wv, &xv, &mut y, Some(&bv), None) }.map_err(|e| candle_core::Error::Msg(format!("cublasLt: {e:?}")))?;
    Ok(y)
}

/// Set after the first failure of the epilogue GEMM: later calls go straight to GEMM + bias.
static FAILED: AtomicBool = AtomicBool::new(false);

/// Whether the cublasLt path is on: not after a failure, and not with `WENHUI_GEMM_EPILOGUE=0`
/// (read once), so that a parity failure can be pinned on it or ruled out.
fn epilogue_allowed() -> bool {
    static ALLOWED: OnceLock<bool> = OnceLock::new();
    !FAILED.load(Ordering::Relaxed) && *ALLOWED.get_or_init(|| std::env::var("WENHUI_GEMM_EPILOGUE").map_or(true, |v| v != "0"))
}

/// Whether every operand starts 256 bytes into its allocation (device allocations are
/// 256-byte aligned): cublasLt's kernel choice assumes that alignment unless told otherwise, and a
/// misaligned operand could fault instead of failing cleanly.
fn aligned(operands: &[(&CudaStorage, &Layout)]) -> bool {
    operands.iter().all(|(s, l)| (l.start_offset() * s.dtype().size_in_bytes()).is_multiple_of(256))
}

/// The cublasLt handle of a device, on candle's stream (made on first use).
fn blas_lt(dev: &CudaDevice) -> Result<Arc<CudaBlasLT>> {
    static HANDLES: OnceLock<Mutex<HashMap<DeviceId, Arc<CudaBlasLT>>>> = OnceLock::new();
    let mut handles =
        HANDLES.get_or_init(Default::default).lock().map_err(|_| candle_core::Error::Msg("cublasLt: poisoned lock".into()))?;
    if let Some(h) = handles.get(&dev.id()) {
        return Ok(h.clone());
    }
    let h = Arc::new(CudaBlasLT::new(dev.cuda_stream()).map_err(|e| candle_core::Error::Msg(format!("cublasLt: {e:?}")))?);
    handles.insert(dev.id(), h.clone());
    Ok(h)
}

/// Turns the epilogue GEMM off for the process after its first failure, with a warning (the
/// GEMM-then-bias path takes over).
fn give_up(e: &candle_core::Error) {
    if !FAILED.swap(true, Ordering::Relaxed) {
        tracing::warn!("cublasLt GEMM with a bias epilogue failed ({e}); using a GEMM and a bias kernel from now on");
    }
}

/// `[dx | dW | db]` packed (`db` only with a bias), from the output gradient `dy` `[rows, out]`.
pub(crate) fn backward(
    x: (&CudaStorage, &Layout),
    w: (&CudaStorage, &Layout),
    dy: (&CudaStorage, &Layout),
    bias: bool,
) -> Result<CudaStorage> {
    let (out, inp) = w.1.shape().dims2()?;
    let rows = x.1.shape().elem_count() / inp.max(1);
    let xl = Layout::contiguous_with_offset((rows, inp), x.1.start_offset());
    let wl = Layout::contiguous_with_offset((out, inp), w.1.start_offset());
    let dyl = Layout::contiguous_with_offset((rows, out), dy.1.start_offset());
    // dx (rows×in) = dy (rows×out) · w (out×in)
    let dx = dy.0.matmul(w.0, (1, rows, inp, out), &dyl, &wl)?;
    // dW (out×in) = dyᵀ (out×rows) · x (rows×in)
    let dw = dy.0.matmul(x.0, (1, out, inp, rows), &dyl.transpose(0, 1)?, &xl)?;
    let (nx, nw) = (rows * inp, out * inp);
    let len = nx + nw + if bias { out } else { 0 };
    // SAFETY: the three copies below write all `len` elements.
    let mut packed = unsafe { dx.device().alloc_uninit(&len.into(), dx.dtype())? };
    dx.copy_strided_src(&mut packed, 0, &Layout::contiguous(nx))?;
    dw.copy_strided_src(&mut packed, nx, &Layout::contiguous(nw))?;
    if bias {
        let db = float_kernel!(dy.0, "linear bias gradient", |T| column_sum::<T>((dy.0, &dyl), out)?);
        db.copy_strided_src(&mut packed, nx + nw, &Layout::contiguous(out))?;
    }
    Ok(packed)
}
