//! The CUDA side of the fused linear op ([`crate::ops::linear`], [`crate::ops::linear_no_bias`]):
//! `y = x·Wᵀ + b` with the weight read through a transposed view (no copy), and the backward's
//! `dx = dy·W`, `dW = dyᵀ·x`, `db = Σ_rows dy` packed as the CPU op packs them. One graph node
//! instead of candle's transpose, reshape, matmul, reshape and bias nodes, each of which would
//! allocate and accumulate an activation-sized gradient buffer.
//!
//! In bf16/f16 the GEMMs go through cublasLt: the forward adds the bias in the GEMM's epilogue,
//! and the backward's GEMMs write straight into the packed gradient. Both need 256-byte-aligned
//! operands, turn off after a first failure, and `WENHUI_CUBLASLT=0` turns them off outright
//! (then candle's cuBLAS GEMMs, a bias kernel and packing copies do the same work).

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
    if rows == 0 || out == 0 {
        // Nothing to compute (an empty batch): no GEMM with a zero dimension for cuBLAS.
        // (At least one element: as `output`, no zero-byte device allocation.)
        return x.0.device().zeros_impl(&(rows * out).max(1).into(), x.0.dtype());
    }
    if has_bias && inp > 0 && cublaslt_allowed() && aligned(&[(x.0, &xl), (w.0, &wl), b]) {
        match forward_with_epilogue((x.0, &xl), (w.0, &wl), b, (rows, out, inp))? {
            Lt::Done(y) => return Ok(y),
            Lt::Skipped => {}
            Lt::Failed(e) => give_up(&e),
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
/// output again (5.4 ms of a 135 ms GLM-Base step on an H200). Skipped for f32 and f64: candle's
/// cuBLAS call keeps f32 exact unless `--tf32` (cudarc's cublasLt computes f32 in TF32).
fn forward_with_epilogue(
    x: (&CudaStorage, &Layout),
    w: (&CudaStorage, &Layout),
    b: (&CudaStorage, &Layout),
    (rows, out, inp): (usize, usize, usize),
) -> Result<Lt<CudaStorage>> {
    let dev = x.0.device();
    Ok(match x.0.dtype() {
        DType::BF16 => gemm_bias::<half::bf16>(dev, x, w, b, (rows, out, inp))?.map(|y| CudaStorage::wrap_cuda_slice(y, dev.clone())),
        DType::F16 => gemm_bias::<half::f16>(dev, x, w, b, (rows, out, inp))?.map(|y| CudaStorage::wrap_cuda_slice(y, dev.clone())),
        _ => Lt::Skipped,
    })
}

/// The outcome of a cublasLt path whose other errors (out of memory, a failed kernel) are the
/// `Err` around it: done, not taken (f32 and f64), or failed in cublasLt itself, after which the
/// caller turns cublasLt off and takes candle's GEMMs.
enum Lt<T> {
    Done(T),
    Skipped,
    Failed(candle_core::Error),
}

impl<T> Lt<T> {
    fn map<U>(self, f: impl FnOnce(T) -> U) -> Lt<U> {
        match self {
            Lt::Done(t) => Lt::Done(f(t)),
            Lt::Skipped => Lt::Skipped,
            Lt::Failed(e) => Lt::Failed(e),
        }
    }
}

/// Runs one cublasLt call; on failure the enclosing function returns `Ok(Lt::Failed(..))`.
macro_rules! lt_call {
    ($call:expr) => {
        if let Err(e) = $call {
            return Ok(Lt::Failed(candle_core::Error::Msg(format!("cublasLt: {e:?}"))));
        }
    };
}

fn gemm_bias<T: KernelFloat>(
    dev: &CudaDevice,
    x: (&CudaStorage, &Layout),
    w: (&CudaStorage, &Layout),
    b: (&CudaStorage, &Layout),
    (rows, out, inp): (usize, usize, usize),
) -> Result<Lt<candle_core::cuda_backend::cudarc::driver::CudaSlice<T>>>
where
    CudaBlasLT: Matmul<T>,
{
    let (xv, wv, bv) = (view::<T>(x.0, x.1)?, view::<T>(w.0, w.1)?, view::<T>(b.0, b.1)?);
    let mut y = output::<T>(dev, rows * out)?;
    let cfg = forward_config(rows, out, inp);
    let lt = match blas_lt(dev) {
        Ok(lt) => lt,
        Err(e) => return Ok(Lt::Failed(e)),
    };
    // SAFETY: w holds out × in elements, x rows × in, the bias out and y rows × out, as `cfg` says.
    lt_call!(unsafe { lt.matmul(cfg, &wv, &xv, &mut y, Some(&bv), None) });
    Ok(Lt::Done(y))
}

/// Set after the first failure of a cublasLt GEMM: later calls go straight to candle's cuBLAS.
static FAILED: AtomicBool = AtomicBool::new(false);

/// Whether the cublasLt paths are on: not after a failure, and not with `WENHUI_CUBLASLT=0`
/// (read once), so that a parity failure can be pinned on them or ruled out.
fn cublaslt_allowed() -> bool {
    static ALLOWED: OnceLock<bool> = OnceLock::new();
    !FAILED.load(Ordering::Relaxed) && *ALLOWED.get_or_init(|| std::env::var("WENHUI_CUBLASLT").map_or(true, |v| v != "0"))
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

/// Turns the cublasLt GEMMs off for the process after their first failure, with a warning
/// (candle's cuBLAS GEMMs, the bias kernel and the packing copies take over).
fn give_up(e: &candle_core::Error) {
    if !FAILED.swap(true, Ordering::Relaxed) {
        tracing::warn!("cublasLt GEMM failed ({e}); using candle's cuBLAS GEMMs from now on");
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
    // The dW part of the packed buffer starts nx elements in: cublasLt wants it 256-byte aligned.
    let dw_aligned = (rows * inp * dy.0.dtype().size_in_bytes()).is_multiple_of(256);
    let (nx, nw) = (rows * inp, out * inp);
    if rows == 0 || out == 0 {
        // An empty batch (or no outputs): dx is empty or zero, and dW and db sum no rows, so all is zeros.
        return dy.0.device().zeros_impl(&(nx + nw + if bias { out } else { 0 }).max(1).into(), dy.0.dtype());
    }
    if inp > 0 && dw_aligned && cublaslt_allowed() && aligned(&[(x.0, &xl), (w.0, &wl), (dy.0, &dyl)]) {
        let dims = (rows, out, inp);
        let dev = dy.0.device();
        let packed = match dy.0.dtype() {
            DType::BF16 => packed_backward::<half::bf16>(dev, (x.0, &xl), (w.0, &wl), (dy.0, &dyl), dims, bias)?
                .map(|y| CudaStorage::wrap_cuda_slice(y, dev.clone())),
            DType::F16 => packed_backward::<half::f16>(dev, (x.0, &xl), (w.0, &wl), (dy.0, &dyl), dims, bias)?
                .map(|y| CudaStorage::wrap_cuda_slice(y, dev.clone())),
            _ => Lt::Skipped,
        };
        match packed {
            Lt::Done(p) => return Ok(p),
            Lt::Skipped => {}
            Lt::Failed(e) => give_up(&e),
        }
    }
    // dx (rows×in) = dy (rows×out) · w (out×in)
    let dx = dy.0.matmul(w.0, (1, rows, inp, out), &dyl, &wl)?;
    // dW (out×in) = dyᵀ (out×rows) · x (rows×in)
    let dw = dy.0.matmul(x.0, (1, out, inp, rows), &dyl.transpose(0, 1)?, &xl)?;
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

/// The half-precision backward as two cublasLt GEMMs that write `dx` and `dW` into their places
/// in the packed buffer, and the bias gradient's column sums into its tail: no packing copies
/// (about 1.5 ms of activation-sized traffic per GLM-Base step on an H200).
fn packed_backward<T: KernelFloat>(
    dev: &CudaDevice,
    x: (&CudaStorage, &Layout),
    w: (&CudaStorage, &Layout),
    dy: (&CudaStorage, &Layout),
    (rows, out, inp): (usize, usize, usize),
    bias: bool,
) -> Result<Lt<candle_core::cuda_backend::cudarc::driver::CudaSlice<T>>>
where
    CudaBlasLT: Matmul<T>,
{
    let (xv, wv, dyv) = (view::<T>(x.0, x.1)?, view::<T>(w.0, w.1)?, view::<T>(dy.0, dy.1)?);
    let (nx, nw) = (rows * inp, out * inp);
    let len = nx + nw + if bias { out } else { 0 };
    let mut packed = output::<T>(dev, len)?;
    let lt = match blas_lt(dev) {
        Ok(lt) => lt,
        Err(e) => return Ok(Lt::Failed(e)),
    };
    let (dx_cfg, dw_cfg) = backward_configs(rows, out, inp);
    {
        let mut dx = packed.slice_mut(0..nx);
        // SAFETY: W holds out × in elements, dy rows × out, and dx rows × in, as `dx_cfg` says.
        lt_call!(unsafe { lt.matmul(dx_cfg, &wv, &dyv, &mut dx, None, None) });
    }
    {
        let mut dw = packed.slice_mut(nx..nx + nw);
        // SAFETY: x holds rows × in elements, dy rows × out, and dW out × in, as `dw_cfg` says.
        lt_call!(unsafe { lt.matmul(dw_cfg, &xv, &dyv, &mut dw, None, None) });
    }
    if bias {
        let mut db = packed.slice_mut(nx + nw..len);
        super::column_sums::<T>(dev, None, &dyv, None, &mut db, rows, out)?;
    }
    Ok(Lt::Done(packed))
}

/// A cublasLt configuration of `C [m × n] = op(A) · op(B)` over whole, contiguous buffers, so
/// every leading dimension is the stored matrix's column-major row count: `k` or `m` for A,
/// `n` or `k` for B (transposed or not), `m` for C.
fn gemm_config(transa: bool, transb: bool, m: usize, n: usize, k: usize) -> MatmulConfig {
    MatmulConfig {
        transa,
        transb,
        transc: false,
        m: m as u64,
        n: n as u64,
        k: k as u64,
        alpha: 1.0,
        lda: (if transa { k } else { m }) as i64,
        ldb: (if transb { n } else { k }) as i64,
        beta: 0.0,
        ldc: m as i64,
        stride_a: None,
        stride_b: None,
        stride_c: None,
        stride_bias: None,
        batch_size: None,
    }
}

/// The forward GEMM, column-major as cuBLAS sees the row-major buffers: `yᵀ [out × rows] =
/// W [out × in] (its buffer, [in × out], transposed) · xᵀ [in × rows]`, the bias one value per
/// row of `yᵀ`.
fn forward_config(rows: usize, out: usize, inp: usize) -> MatmulConfig {
    gemm_config(true, false, out, rows, inp)
}

/// The backward's two GEMMs, column-major as cuBLAS sees the row-major buffers: `dxᵀ [in × rows]
/// = Wᵀ [in × out] · dyᵀ [out × rows]`, both operands the buffers as they are; `dWᵀ [in × out] =
/// xᵀ [in × rows] · dy [rows × out]`, dy's buffer transposed.
fn backward_configs(rows: usize, out: usize, inp: usize) -> (MatmulConfig, MatmulConfig) {
    (gemm_config(false, false, inp, rows, out), gemm_config(false, true, inp, out, rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `C = op(A) · op(B)` as cuBLAS defines it on column-major buffers (element (r, c) of a
    /// matrix with leading dimension ld at r + c·ld; op transposes when asked), for the fields
    /// of `cfg` that cudarc's `matmul` passes on.
    fn column_major_gemm(cfg: &MatmulConfig, a: &[f64], b: &[f64]) -> Vec<f64> {
        let (m, n, k) = (cfg.m as usize, cfg.n as usize, cfg.k as usize);
        let at = |i: usize, p: usize| if cfg.transa { a[p + i * cfg.lda as usize] } else { a[i + p * cfg.lda as usize] };
        let bt = |p: usize, j: usize| if cfg.transb { b[j + p * cfg.ldb as usize] } else { b[p + j * cfg.ldb as usize] };
        let mut c = vec![0.0; cfg.ldc as usize * n];
        for j in 0..n {
            for i in 0..m {
                c[i + j * cfg.ldc as usize] = (0..k).map(|p| at(i, p) * bt(p, j)).sum();
            }
        }
        c
    }

    /// The GEMM configurations give `y = x·Wᵀ`, `dx = dy·W` and `dW = dyᵀ·x` on row-major
    /// buffers (no GPU is needed; this pins the m/n/k/ld/transpose arithmetic).
    #[test]
    fn gemm_configs_compute_y_dx_and_dw() {
        let (rows, out, inp) = (5, 3, 4);
        let x: Vec<f64> = (0..rows * inp).map(|i| (i as f64 * 0.37).sin()).collect();
        let w: Vec<f64> = (0..out * inp).map(|i| (i as f64 * 0.71).cos()).collect();
        let dy: Vec<f64> = (0..rows * out).map(|i| (i as f64 * 1.3).sin()).collect();
        let y = column_major_gemm(&forward_config(rows, out, inp), &w, &x);
        assert_eq!(y.len(), rows * out);
        for r in 0..rows {
            for o in 0..out {
                let want: f64 = (0..inp).map(|i| x[r * inp + i] * w[o * inp + i]).sum();
                assert!((y[r * out + o] - want).abs() < 1e-12, "y[{r}, {o}]");
            }
        }
        let (dx_cfg, dw_cfg) = backward_configs(rows, out, inp);
        let dx = column_major_gemm(&dx_cfg, &w, &dy);
        let dw = column_major_gemm(&dw_cfg, &x, &dy);
        assert_eq!((dx.len(), dw.len()), (rows * inp, out * inp));
        for r in 0..rows {
            for i in 0..inp {
                let want: f64 = (0..out).map(|o| dy[r * out + o] * w[o * inp + i]).sum();
                assert!((dx[r * inp + i] - want).abs() < 1e-12, "dx[{r}, {i}]");
            }
        }
        for o in 0..out {
            for i in 0..inp {
                let want: f64 = (0..rows).map(|r| dy[r * out + o] * x[r * inp + i]).sum();
                assert!((dw[o * inp + i] - want).abs() < 1e-12, "dW[{o}, {i}]");
            }
        }
    }
}
