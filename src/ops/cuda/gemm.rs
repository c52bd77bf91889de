//! Batched GEMMs that write into a slice of a larger buffer: candle's `matmul` always allocates
//! its output, so a result that belongs inside another buffer (the attention backward's dQ, dK and
//! dV, one after the other) took a copy. In half precision this makes the very call candle
//! makes (`cublasGemmStridedBatchedEx`, the same compute type and scalars), with the output
//! pointer in place; f32 and f64, and any cuBLAS error, take candle's GEMM and a copy.

use crate::ops::launch::StridedGemm;
use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::cublas::{result::gemm_strided_batched_ex, sys};
use candle_core::cuda_backend::cudarc::driver::{DevicePtr, DevicePtrMut};
use candle_core::cuda_backend::CudaStorageSlice as S;
use candle_core::{CudaStorage, Layout, Result};
use std::sync::atomic::{AtomicBool, Ordering};

/// A `[pairs, rows, cols]` contiguous operand at element `offset` of `storage`, read as it is or
/// transposed (`[pairs, cols, rows]`).
#[derive(Clone, Copy)]
pub(crate) struct Operand<'a> {
    pub storage: &'a CudaStorage,
    pub offset: usize,
    pub transposed: bool,
}

impl<'a> Operand<'a> {
    pub fn new(storage: &'a CudaStorage, offset: usize, transposed: bool) -> Self {
        Self { storage, offset, transposed }
    }

    /// The view candle's `matmul` takes for this operand as `[pairs, rows, cols]`.
    fn layout(&self, pairs: usize, rows: usize, cols: usize) -> Result<Layout> {
        if self.transposed {
            Layout::contiguous_with_offset((pairs, cols, rows), self.offset).transpose(1, 2)
        } else {
            Ok(Layout::contiguous_with_offset((pairs, rows, cols), self.offset))
        }
    }
}

/// `out[at..at + pairs·m·n]` = `op(a) · op(b)` for every pair, row-major: `op(a)` `[m, k]`,
/// `op(b)` `[k, n]`.
pub(crate) fn matmul_into(
    out: &mut CudaStorage,
    at: usize,
    a: Operand,
    b: Operand,
    (pairs, m, n, k): (usize, usize, usize, usize),
) -> Result<()> {
    if !IN_PLACE_FAILED.load(Ordering::Relaxed) {
        match in_place(out, at, a, b, (pairs, m, n, k))? {
            InPlace::Done => return Ok(()),
            InPlace::Skipped => {}
            InPlace::CublasFailed(e) => {
                if !IN_PLACE_FAILED.swap(true, Ordering::Relaxed) {
                    tracing::warn!("in-place batched GEMM failed in cuBLAS ({e}); using candle's GEMM and a copy from now on");
                }
            }
        }
    }
    let c = a.storage.matmul(b.storage, (pairs, m, n, k), &a.layout(pairs, m, k)?, &b.layout(pairs, k, n)?)?;
    c.copy_strided_src(out, at, &Layout::contiguous(pairs * m * n))
}

/// Set after the first cuBLAS error of [`in_place`]: later calls go to candle's GEMM and a copy.
static IN_PLACE_FAILED: AtomicBool = AtomicBool::new(false);

fn op(transposed: bool) -> sys::cublasOperation_t {
    if transposed {
        sys::cublasOperation_t::CUBLAS_OP_T
    } else {
        sys::cublasOperation_t::CUBLAS_OP_N
    }
}

/// What [`in_place`] did; other errors (operands that do not fit) are its `Err`.
enum InPlace {
    Done,
    /// Not bf16/f16: left to candle.
    Skipped,
    /// cuBLAS refused the call.
    CublasFailed(String),
}

/// The GEMM straight into `out` in bf16/f16.
fn in_place(out: &mut CudaStorage, at: usize, a: Operand, b: Operand, (pairs, m, n, k): (usize, usize, usize, usize)) -> Result<InPlace> {
    use candle_core::cuda_backend::{gemm_reduced_precision_bf16, gemm_reduced_precision_f16};
    let g = StridedGemm::new(a.transposed, b.transposed, m, n, k);
    let int = |v: usize| i32::try_from(v).map_err(|_| candle_core::Error::Msg(format!("GEMM dimension {v} exceeds i32")));
    let (gm, gn, gk, lda, ldb, ldc, batch) = (int(g.m)?, int(g.n)?, int(g.k)?, int(g.lda)?, int(g.ldb)?, int(g.ldc)?, int(pairs)?);
    let dev = out.device().clone();
    let stream = dev.cuda_stream();
    let blas = dev.cublas_handle();
    // Scalars as candle passes them: f32 for a 32-bit compute type, f16 for CUBLAS_COMPUTE_16F.
    let (one32, zero32) = (1f32, 0f32);
    let (one16, zero16) = (half::f16::ONE, half::f16::ZERO);
    let f32_scalars = (std::ptr::from_ref(&one32).cast(), std::ptr::from_ref(&zero32).cast());
    macro_rules! run {
        ($t:ty, $data:expr, $compute:expr, $scalars:expr) => {{
            let (av, bv) = (
                <$t as candle_core::cuda_backend::CudaDType>::as_cuda_slice(a.storage)?,
                <$t as candle_core::cuda_backend::CudaDType>::as_cuda_slice(b.storage)?,
            );
            let c = <$t as candle_core::cuda_backend::CudaDType>::as_cuda_slice_mut(out)?;
            let (na, nb, nc) = (a.offset + pairs * m * k, b.offset + pairs * k * n, at + pairs * m * n);
            if av.len() < na || bv.len() < nb || c.len() < nc {
                candle_core::bail!(
                    "in-place GEMM: operands of {} and {} elements, output {}, for [{pairs}, {m}, {n}] × {k}",
                    av.len(),
                    bv.len(),
                    c.len()
                );
            }
            let (av, bv) = (av.slice(a.offset..na), bv.slice(b.offset..nb));
            let mut cv = c.slice_mut(at..nc);
            let (alpha, beta) = $scalars;
            let (pa, _ga) = av.device_ptr(&stream);
            let (pb, _gb) = bv.device_ptr(&stream);
            let (pc, _gc) = cv.device_ptr_mut(&stream);
            // SAFETY: the views hold pairs × (m·k, k·n, m·n) elements as the strides and leading
            // dimensions of `g` address them (checked above); cuBLAS's first operand is B.
            let call = unsafe {
                gemm_strided_batched_ex(
                    *blas.handle(),
                    op(g.transa),
                    op(g.transb),
                    gm,
                    gn,
                    gk,
                    alpha,
                    pb as *const _,
                    $data,
                    lda,
                    g.stride_a as i64,
                    pa as *const _,
                    $data,
                    ldb,
                    g.stride_b as i64,
                    beta,
                    pc as *mut _,
                    $data,
                    ldc,
                    g.stride_c as i64,
                    batch,
                    $compute,
                    sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT_TENSOR_OP,
                )
            };
            if let Err(e) = call {
                return Ok(InPlace::CublasFailed(format!("{e:?}")));
            }
        }};
    }
    use sys::cublasComputeType_t as C;
    use sys::cudaDataType_t as D;
    match &out.slice {
        S::BF16(_) => {
            let compute = if gemm_reduced_precision_bf16() { C::CUBLAS_COMPUTE_32F_FAST_16BF } else { C::CUBLAS_COMPUTE_32F };
            run!(half::bf16, D::CUDA_R_16BF, compute, f32_scalars)
        }
        S::F16(_) => {
            if gemm_reduced_precision_f16() {
                let f16_scalars = (std::ptr::from_ref(&one16).cast(), std::ptr::from_ref(&zero16).cast());
                run!(half::f16, D::CUDA_R_16F, C::CUBLAS_COMPUTE_16F, f16_scalars)
            } else {
                run!(half::f16, D::CUDA_R_16F, C::CUBLAS_COMPUTE_32F, f32_scalars)
            }
        }
        _ => return Ok(InPlace::Skipped),
    }
    Ok(InPlace::Done)
}
