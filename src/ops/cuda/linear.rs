//! The CUDA side of the fused linear op ([`crate::ops::linear`], [`crate::ops::linear_no_bias`]):
//! `y = x·Wᵀ + b` with the weight read through a transposed view (no copy), and the backward's
//! `dx = dy·W`, `dW = dyᵀ·x`, `db = Σ_rows dy` packed as the CPU op packs them. One graph node
//! instead of candle's transpose, reshape, matmul, reshape and bias nodes, each of which would
//! allocate and accumulate an activation-sized gradient buffer.

use super::{column_sum, float_kernel};
use candle_core::backend::{BackendDevice, BackendStorage};
use candle_core::{CudaStorage, Layout, Result};

/// `x [rows, in] · wᵀ + b` (an empty `b`: no bias) as `[rows, out]`.
pub(crate) fn forward(x: (&CudaStorage, &Layout), w: (&CudaStorage, &Layout), b: (&CudaStorage, &Layout)) -> Result<CudaStorage> {
    let (out, inp) = w.1.shape().dims2()?;
    let rows = x.1.shape().elem_count() / inp.max(1);
    let xl = Layout::contiguous_with_offset((rows, inp), x.1.start_offset());
    let wt = Layout::contiguous_with_offset((out, inp), w.1.start_offset()).transpose(0, 1)?;
    let y = x.0.matmul(w.0, (1, rows, out, inp), &xl, &wt)?;
    if b.1.shape().elem_count() == 0 {
        return Ok(y);
    }
    let yl = Layout::contiguous((rows, out));
    Ok(float_kernel!(y, "linear bias", |T| super::add_bias::<T>((&y, &yl), b)?))
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
