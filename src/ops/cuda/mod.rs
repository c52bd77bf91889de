//! The CUDA side of the fused ops: launches of the kernels in `kernels.cu` (compiled to PTX by
//! build.rs and loaded by the driver on first use). Each function here is the `cuda_fwd` of the
//! CPU op of the same name in `src/ops`, with the same inputs, outputs and math; f32, bf16, f16
//! and f64 storage, arithmetic in f32 (f64 for f64).

pub(crate) mod adamw;
pub(crate) mod attention;
pub(crate) mod decode;
pub(crate) mod flash;
pub(crate) mod gemm;
pub(crate) mod linear;

use super::launch::{self, Launch};
use super::permute::PermutePlan;
use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{
    CudaSlice, CudaView, DeviceRepr, LaunchArgs, LaunchConfig, PushKernelArg, ValidAsZeroBits,
};
use candle_core::cuda_backend::{CudaDType, CudaStorageSlice, WrapErr};
use candle_core::{CudaDevice, CudaStorage, Layout, Result, WithDType};

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/wenhui_kernels.ptx"));
const MODULE: &str = "wenhui";

/// The float types the kernels are instantiated for.
pub(crate) trait KernelFloat: CudaDType + DeviceRepr + WithDType + ValidAsZeroBits {}
impl<T: CudaDType + DeviceRepr + WithDType + ValidAsZeroBits> KernelFloat for T {}

/// Runs `$body` with `$t` bound to the float type of `$storage`, wrapping the returned
/// `CudaSlice<$t>` back into a storage of the same device.
macro_rules! float_kernel {
    ($storage:expr, $name:literal, |$t:ident| $body:expr) => {{
        use candle_core::cuda_backend::CudaStorageSlice as S;
        let slice = match &$storage.slice {
            S::F32(_) => {
                type $t = f32;
                S::F32($body)
            }
            S::F64(_) => {
                type $t = f64;
                S::F64($body)
            }
            S::F16(_) => {
                type $t = half::f16;
                S::F16($body)
            }
            S::BF16(_) => {
                type $t = half::bf16;
                S::BF16($body)
            }
            _ => candle_core::bail!(concat!($name, ": unsupported dtype on CUDA")),
        };
        candle_core::CudaStorage { slice, device: $storage.device.clone() }
    }};
}
pub(crate) use float_kernel;

/// The contiguous data of a storage under its layout.
pub(crate) fn view<'a, T: KernelFloat>(s: &'a CudaStorage, l: &Layout) -> Result<CudaView<'a, T>> {
    let data = T::as_cuda_slice(s)?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(data.slice(a..b)),
        None => candle_core::bail!("wenhui cuda op: input must be contiguous"),
    }
}

fn u32_view<'a>(s: &'a CudaStorage, l: &Layout) -> Result<CudaView<'a, u32>> {
    match (&s.slice, l.contiguous_offsets()) {
        (CudaStorageSlice::U32(d), Some((a, b))) => Ok(d.slice(a..b)),
        _ => candle_core::bail!("wenhui cuda op: targets must be contiguous u32"),
    }
}

fn name<T: WithDType>(root: &str) -> String {
    format!("{root}_{}", T::DTYPE.as_str())
}

/// The CUDA storage behind `s`, the storage guard of a tensor an op holds besides its inputs (a
/// mask, an output gradient, a cache); `what` names it in the error.
pub(crate) fn cuda_storage<'a>(s: &'a candle_core::Storage, what: &str) -> Result<&'a CudaStorage> {
    match s {
        candle_core::Storage::Cuda(c) => Ok(c),
        _ => candle_core::bail!("{what} is not on the CUDA device of the op's inputs"),
    }
}

/// cudarc's form of a launch planned in [`crate::ops::launch`].
fn config(l: Launch) -> LaunchConfig {
    let ([gx, gy, gz], [bx, by, bz]) = (l.grid, l.block);
    LaunchConfig { grid_dim: (gx, gy, gz), block_dim: (bx, by, bz), shared_mem_bytes: l.shared }
}

/// Whether the warp-per-row kernels may run (`WENHUI_WARP_ROWS=0` keeps one block per row, the
/// kernels measured before them; read once).
pub(crate) fn warp_rows_allowed() -> bool {
    static ALLOWED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ALLOWED.get_or_init(|| std::env::var("WENHUI_WARP_ROWS").map_or(true, |v| v != "0"))
}

/// Launches the kernel `l` is built for with `cfg`, or nothing when the grid has no blocks: an
/// input without rows leaves such a launch nothing to do, and CUDA rejects an empty grid.
///
/// # Safety
/// As cudarc's `LaunchArgs::launch`: the arguments match the kernel's parameters, and the
/// buffers hold what the kernel reads and writes.
unsafe fn launch_kernel(l: &mut LaunchArgs<'_>, cfg: LaunchConfig) -> Result<()> {
    if !launch::has_blocks(cfg.grid_dim) {
        return Ok(());
    }
    // SAFETY: the caller's.
    unsafe { l.launch(cfg) }.w()?;
    Ok(())
}

fn rows_cfg(rows: usize, n: usize) -> LaunchConfig {
    config(launch::rows(rows, n))
}

fn elementwise_cfg(n: usize) -> LaunchConfig {
    config(launch::elementwise(n))
}

/// The launch of an element-wise map of kernels.cu over `n` elements of `T` (16-byte packs).
fn packed_cfg<T>(n: usize) -> LaunchConfig {
    config(launch::elementwise_packed(n, std::mem::size_of::<T>()))
}

/// Uninitialised device memory for a kernel that writes every element.
fn output<T: KernelFloat>(dev: &CudaDevice, n: usize) -> Result<CudaSlice<T>> {
    // SAFETY: every caller launches a kernel that writes all `n` elements before any read.
    unsafe { dev.alloc::<T>(n.max(1)) }
}

/// Layer norm forward over rows of `h`.
pub(crate) fn layer_norm<T: KernelFloat>(
    x: (&CudaStorage, &Layout),
    g: (&CudaStorage, &Layout),
    b: (&CudaStorage, &Layout),
    eps: f64,
) -> Result<CudaSlice<T>> {
    let dev = x.0.device();
    let h = g.1.shape().elem_count();
    let n = x.1.shape().elem_count();
    let mut y = output::<T>(dev, n)?;
    let (xv, gv, bv) = (view::<T>(x.0, x.1)?, view::<T>(g.0, g.1)?, view::<T>(b.0, b.1)?);
    let rows = n / h.max(1);
    let plan = launch::layer_norm_rows(rows, h, warp_rows_allowed());
    let f = dev.get_or_load_custom_func(&plan.kernel("layer_norm_fwd", T::DTYPE.as_str()), MODULE, PTX)?;
    let mut l = f.builder();
    let (hi, e) = (h as i32, eps as f32);
    l.arg(&xv).arg(&gv).arg(&bv).arg(&mut y).arg(&hi).arg(&e);
    if plan.warp {
        l.arg(&rows);
    }
    // SAFETY: argument list matches the kernel's signature (the warp kernel's ends in the row
    // count); buffers hold rows × h elements.
    unsafe { launch_kernel(&mut l, config(plan.launch)) }?;
    Ok(y)
}

/// Layer norm backward: `[rows + 2, h]` = dx rows, then dγ, then dβ (the CPU op's layout).
pub(crate) fn layer_norm_backward<T: KernelFloat>(
    x: (&CudaStorage, &Layout),
    g: (&CudaStorage, &Layout),
    dy: (&CudaStorage, &Layout),
    eps: f64,
) -> Result<CudaSlice<T>> {
    let dev = x.0.device();
    let h = g.1.shape().elem_count();
    let rows = x.1.shape().elem_count() / h.max(1);
    let mut out = output::<T>(dev, (rows + 2) * h)?;
    let mut stats = dev.alloc_zeros::<f64>(2 * rows.max(1))?;
    let (xv, gv, dyv) = (view::<T>(x.0, x.1)?, view::<T>(g.0, g.1)?, view::<T>(dy.0, dy.1)?);
    {
        let plan = launch::layer_norm_rows(rows, h, warp_rows_allowed());
        let f = dev.get_or_load_custom_func(&plan.kernel("layer_norm_bwd_dx", T::DTYPE.as_str()), MODULE, PTX)?;
        let mut dx = out.slice_mut(0..rows * h);
        let mut l = f.builder();
        let (hi, e) = (h as i32, eps as f32);
        l.arg(&xv).arg(&gv).arg(&dyv).arg(&mut dx).arg(&mut stats).arg(&hi).arg(&e);
        if plan.warp {
            l.arg(&rows);
        }
        // SAFETY: as above; stats holds 2 × rows doubles.
        unsafe { launch_kernel(&mut l, config(plan.launch)) }?;
    }
    {
        let mut tail = out.slice_mut(rows * h..(rows + 2) * h);
        column_sums::<T>(dev, Some(&xv), &dyv, Some(&stats), &mut tail, rows, h)?;
    }
    Ok(out)
}

/// Column sums of `dy` `[rows, h]` into `dst`: with `x` and `stats`, two rows (Σ dy·x̂, Σ dy);
/// without, one row (Σ dy).
fn column_sums<T: KernelFloat>(
    dev: &CudaDevice,
    x: Option<&CudaView<'_, T>>,
    dy: &CudaView<'_, T>,
    stats: Option<&CudaSlice<f64>>,
    dst: &mut candle_core::cuda_backend::cudarc::driver::CudaViewMut<'_, T>,
    rows: usize,
    h: usize,
) -> Result<()> {
    let blocks = launch::column_blocks(rows);
    let mut part = dev.alloc_zeros::<f64>(blocks * 2 * h.max(1))?;
    let (rows_i, h_i, rpb) = (rows as i32, h as i32, launch::COLUMN_ROWS_PER_BLOCK as i32);
    {
        let plan = launch::column_partial(rows, h, std::mem::size_of::<T>());
        let f = dev.get_or_load_custom_func(&plan.kernel(T::DTYPE.as_str()), MODULE, PTX)?;
        let mut l = f.builder();
        // A null pointer tells the kernel there is no x̂ term.
        let null: u64 = 0;
        match (x, stats) {
            (Some(x), Some(s)) => l.arg(x).arg(dy).arg(s),
            _ => l.arg(&null).arg(dy).arg(&null),
        };
        l.arg(&mut part).arg(&rows_i).arg(&h_i).arg(&rpb);
        // SAFETY: part holds blocks × 2 × h doubles; x/dy rows × h elements.
        unsafe { launch_kernel(&mut l, config(plan.launch)) }?;
    }
    let f = dev.get_or_load_custom_func(&name::<T>("column_final"), MODULE, PTX)?;
    let mut l = f.builder();
    let (blocks_i, first, slots) = (blocks as i32, if stats.is_some() { 0i32 } else { 1 }, if stats.is_some() { 2i32 } else { 1 });
    l.arg(&part).arg(dst).arg(&blocks_i).arg(&h_i).arg(&first).arg(&slots);
    // SAFETY: dst holds slots × h elements.
    unsafe { launch_kernel(&mut l, config(launch::column_final(h))) }?;
    Ok(())
}

/// Σ over rows of `g` `[rows, n]` → `[n]` (the bias gradient).
pub(crate) fn column_sum<T: KernelFloat>(g: (&CudaStorage, &Layout), n: usize) -> Result<CudaSlice<T>> {
    let dev = g.0.device();
    let rows = g.1.shape().elem_count() / n.max(1);
    let mut out = output::<T>(dev, n)?;
    let gv = view::<T>(g.0, g.1)?;
    {
        let mut dst = out.slice_mut(0..n);
        column_sums::<T>(dev, None, &gv, None, &mut dst, rows, n)?;
    }
    Ok(out)
}

/// Geometry of a masked softmax: scores `[B, N, S, T]`, mask `[B or 1, 1, S, T]`.
pub(crate) struct SoftmaxDims {
    pub heads: usize,
    pub s: usize,
    pub t: usize,
    pub mask_batches: usize,
}

/// `softmax(s·scale·m + MASKED·(1 − m))` per row.
pub(crate) fn masked_softmax<T: KernelFloat>(
    s: (&CudaStorage, &Layout),
    m: (&CudaStorage, &Layout),
    d: &SoftmaxDims,
    scale: f64,
) -> Result<CudaSlice<T>> {
    let dev = s.0.device();
    let n = s.1.shape().elem_count();
    let mut p = output::<T>(dev, n)?;
    let (sv, mv) = (view::<T>(s.0, s.1)?, view::<T>(m.0, m.1)?);
    let f = dev.get_or_load_custom_func(&name::<T>("masked_softmax_fwd"), MODULE, PTX)?;
    let mut l = f.builder();
    let (heads, sl, t, mb, sc) = (d.heads as i32, d.s as i32, d.t as i32, d.mask_batches as i32, scale as f32);
    l.arg(&sv).arg(&mv).arg(&mut p).arg(&heads).arg(&sl).arg(&t).arg(&mb).arg(&sc);
    // SAFETY: signature matches; p holds n elements.
    unsafe { launch_kernel(&mut l, rows_cfg(n / d.t.max(1), d.t)) }?;
    Ok(p)
}

/// Masked softmax backward from the probabilities `p` and output gradient `g`.
pub(crate) fn masked_softmax_backward<T: KernelFloat>(
    p: (&CudaStorage, &Layout),
    g: (&CudaStorage, &Layout),
    m: (&CudaStorage, &Layout),
    d: &SoftmaxDims,
    scale: f64,
) -> Result<CudaSlice<T>> {
    let dev = p.0.device();
    let n = p.1.shape().elem_count();
    let mut ds = output::<T>(dev, n)?;
    let (pv, gv, mv) = (view::<T>(p.0, p.1)?, view::<T>(g.0, g.1)?, view::<T>(m.0, m.1)?);
    let f = dev.get_or_load_custom_func(&name::<T>("masked_softmax_bwd"), MODULE, PTX)?;
    let mut l = f.builder();
    let (heads, sl, t, mb, sc) = (d.heads as i32, d.s as i32, d.t as i32, d.mask_batches as i32, scale as f32);
    l.arg(&pv).arg(&gv).arg(&mv).arg(&mut ds).arg(&heads).arg(&sl).arg(&t).arg(&mb).arg(&sc);
    // SAFETY: signature matches; ds holds n elements.
    unsafe { launch_kernel(&mut l, rows_cfg(n / d.t.max(1), d.t)) }?;
    Ok(ds)
}

/// GELU (`erf` or tanh form) forward.
pub(crate) fn gelu<T: KernelFloat>(x: (&CudaStorage, &Layout), erf: bool) -> Result<CudaSlice<T>> {
    let dev = x.0.device();
    let n = x.1.shape().elem_count();
    let mut y = output::<T>(dev, n)?;
    let xv = view::<T>(x.0, x.1)?;
    let f = dev.get_or_load_custom_func(&name::<T>("gelu_fwd"), MODULE, PTX)?;
    let mut l = f.builder();
    let (nn, e) = (n, erf as i32);
    l.arg(&xv).arg(&mut y).arg(&nn).arg(&e);
    // SAFETY: signature matches; y holds n elements.
    unsafe { launch_kernel(&mut l, packed_cfg::<T>(n)) }?;
    Ok(y)
}

/// GELU backward: `g · gelu'(x)`.
pub(crate) fn gelu_backward<T: KernelFloat>(x: (&CudaStorage, &Layout), g: (&CudaStorage, &Layout), erf: bool) -> Result<CudaSlice<T>> {
    let dev = x.0.device();
    let n = x.1.shape().elem_count();
    let mut dx = output::<T>(dev, n)?;
    let (xv, gv) = (view::<T>(x.0, x.1)?, view::<T>(g.0, g.1)?);
    let f = dev.get_or_load_custom_func(&name::<T>("gelu_bwd"), MODULE, PTX)?;
    let mut l = f.builder();
    let (nn, e) = (n, erf as i32);
    l.arg(&xv).arg(&gv).arg(&mut dx).arg(&nn).arg(&e);
    // SAFETY: signature matches; dx holds n elements.
    unsafe { launch_kernel(&mut l, packed_cfg::<T>(n)) }?;
    Ok(dx)
}

/// `y + b` over the last dimension.
pub(crate) fn add_bias<T: KernelFloat>(y: (&CudaStorage, &Layout), b: (&CudaStorage, &Layout)) -> Result<CudaSlice<T>> {
    let dev = y.0.device();
    let n = y.1.shape().elem_count();
    let cols = b.1.shape().elem_count();
    let mut out = output::<T>(dev, n)?;
    let (yv, bv) = (view::<T>(y.0, y.1)?, view::<T>(b.0, b.1)?);
    let f = dev.get_or_load_custom_func(&name::<T>("add_bias_fwd"), MODULE, PTX)?;
    let mut l = f.builder();
    let (nn, c) = (n, cols as i32);
    l.arg(&yv).arg(&bv).arg(&mut out).arg(&nn).arg(&c);
    // SAFETY: signature matches; out holds n elements.
    unsafe { launch_kernel(&mut l, packed_cfg::<T>(n)) }?;
    Ok(out)
}

/// A contiguous copy of the strided view `src` of `x` in one `permute_rows` launch (see
/// [`PermutePlan`]), or `None` where the plan does not apply (the caller copies then).
pub(crate) fn permute_rows(x: &CudaStorage, src: &Layout) -> Result<Option<CudaStorage>> {
    let Some(plan) = PermutePlan::new(src, x.dtype().size_in_bytes()) else { return Ok(None) };
    Ok(Some(float_kernel!(x, "permute_rows", |T| permute_rows_typed::<T>(x, src, &plan)?)))
}

fn permute_rows_typed<T: KernelFloat>(x: &CudaStorage, src: &Layout, plan: &PermutePlan) -> Result<CudaSlice<T>> {
    let dev = x.device();
    let mut out = output::<T>(dev, src.shape().elem_count())?;
    // The kernel reads from the view's first element (word-aligned, as the plan checked).
    let from = T::as_cuda_slice(x)?.slice(src.start_offset()..);
    let f = dev.get_or_load_custom_func(&format!("permute_rows_w{}", plan.word), MODULE, PTX)?;
    let (words, row) = (plan.len(), plan.row);
    let ([_, d1, d2, d3], [s0, s1, s2, s3]) = (plan.dims, plan.strides);
    let mut l = f.builder();
    l.arg(&from).arg(&mut out).arg(&words).arg(&row).arg(&d1).arg(&d2).arg(&d3).arg(&s0).arg(&s1).arg(&s2).arg(&s3);
    // SAFETY: signature matches; out holds the view's elements = `words` words of `plan.word`
    // bytes, and every read stays inside the view (the plan's strides are the layout's).
    unsafe { launch_kernel(&mut l, elementwise_cfg(words)) }?;
    Ok(out)
}

/// Dropout with the CPU op's counter hash: `mixed_seed` = splitmix(seed), `threshold` as on the CPU.
pub(crate) fn dropout<T: KernelFloat>(x: (&CudaStorage, &Layout), mixed_seed: u64, threshold: u64, scale: f64) -> Result<CudaSlice<T>> {
    let dev = x.0.device();
    let n = x.1.shape().elem_count();
    let mut y = output::<T>(dev, n)?;
    let xv = view::<T>(x.0, x.1)?;
    let f = dev.get_or_load_custom_func(&name::<T>("dropout_fwd"), MODULE, PTX)?;
    let mut l = f.builder();
    l.arg(&xv).arg(&mut y).arg(&n).arg(&mixed_seed).arg(&threshold).arg(&scale);
    // SAFETY: signature matches; y holds n elements.
    unsafe { launch_kernel(&mut l, packed_cfg::<T>(n)) }?;
    Ok(y)
}

/// `x + dropout(y)` with the same hash and scale as [`dropout`].
pub(crate) fn residual_dropout<T: KernelFloat>(
    x: (&CudaStorage, &Layout),
    y: (&CudaStorage, &Layout),
    mixed_seed: u64,
    threshold: u64,
    scale: f64,
) -> Result<CudaSlice<T>> {
    let dev = x.0.device();
    let n = x.1.shape().elem_count();
    let mut out = output::<T>(dev, n)?;
    let (xv, yv) = (view::<T>(x.0, x.1)?, view::<T>(y.0, y.1)?);
    let f = dev.get_or_load_custom_func(&name::<T>("residual_dropout_fwd"), MODULE, PTX)?;
    let mut l = f.builder();
    l.arg(&xv).arg(&yv).arg(&mut out).arg(&n).arg(&mixed_seed).arg(&threshold).arg(&scale);
    // SAFETY: signature matches; x, y and out hold n elements.
    unsafe { launch_kernel(&mut l, packed_cfg::<T>(n)) }?;
    Ok(out)
}

/// Per-row cross-entropy of logits `[N, V]` (in `T`) against u32 targets, as `W`: f32, or f64
/// for f64 logits (the kernel's arithmetic type, so half-precision losses are not rounded).
pub(crate) fn cross_entropy<T: KernelFloat, W: KernelFloat>(
    z: (&CudaStorage, &Layout),
    t: (&CudaStorage, &Layout),
) -> Result<CudaSlice<W>> {
    let dev = z.0.device();
    let (rows, v) = z.1.shape().dims2()?;
    let mut loss = output::<W>(dev, rows)?;
    let (zv, tv) = (view::<T>(z.0, z.1)?, u32_view(t.0, t.1)?);
    let f = dev.get_or_load_custom_func(&name::<T>("cross_entropy_fwd"), MODULE, PTX)?;
    let mut l = f.builder();
    let vi = v as i32;
    l.arg(&zv).arg(&tv).arg(&mut loss).arg(&vi);
    // SAFETY: signature matches (the loss in the kernel's arithmetic type, W); loss holds rows elements.
    unsafe { launch_kernel(&mut l, rows_cfg(rows, v)) }?;
    Ok(loss)
}

/// Cross-entropy backward: `(softmax(z) − onehot(t))·g` per row, from `gl` `[N, 2]` = (g, loss)
/// per row in `W` (as [`cross_entropy`] gives the loss).
pub(crate) fn cross_entropy_backward<T: KernelFloat, W: KernelFloat>(
    z: (&CudaStorage, &Layout),
    t: (&CudaStorage, &Layout),
    gl: (&CudaStorage, &Layout),
) -> Result<CudaSlice<T>> {
    let dev = z.0.device();
    let (rows, v) = z.1.shape().dims2()?;
    if gl.1.shape().dims() != [rows, 2] {
        candle_core::bail!("cross_entropy backward: (g, loss) {:?} does not fit {rows} rows", gl.1.dims());
    }
    let mut dz = output::<T>(dev, rows * v)?;
    let (zv, tv, gv) = (view::<T>(z.0, z.1)?, u32_view(t.0, t.1)?, view::<W>(gl.0, gl.1)?);
    let f = dev.get_or_load_custom_func(&name::<T>("cross_entropy_bwd"), MODULE, PTX)?;
    let mut l = f.builder();
    let vi = v as i32;
    l.arg(&zv).arg(&tv).arg(&gv).arg(&mut dz).arg(&vi);
    // SAFETY: signature matches (gl in the kernel's arithmetic type, W); gl holds 2 × rows
    // elements, dz rows × v.
    unsafe { launch_kernel(&mut l, rows_cfg(rows, v)) }?;
    Ok(dz)
}

/// Rows `w[ids]` of a `[V, h]` table.
pub(crate) fn embedding<T: KernelFloat>(w: (&CudaStorage, &Layout), ids: (&CudaStorage, &Layout), h: usize) -> Result<CudaSlice<T>> {
    let dev = w.0.device();
    let n = ids.1.shape().elem_count();
    let mut out = output::<T>(dev, n * h)?;
    let (wv, iv) = (view::<T>(w.0, w.1)?, u32_view(ids.0, ids.1)?);
    let f = dev.get_or_load_custom_func(&name::<T>("embedding_fwd"), MODULE, PTX)?;
    let mut l = f.builder();
    let hi = h as i32;
    l.arg(&wv).arg(&iv).arg(&mut out).arg(&n).arg(&hi);
    // SAFETY: signature matches; out holds n × h elements; ids were range-checked by the caller.
    unsafe { launch_kernel(&mut l, elementwise_cfg(n * h)) }?;
    Ok(out)
}

/// The `[v, h]` gradient of an embedding table from the rows' gradient `g` `[n, h]`.
pub(crate) fn embedding_backward<T: KernelFloat>(
    g: (&CudaStorage, &Layout),
    ids: (&CudaStorage, &Layout),
    v: usize,
) -> Result<CudaSlice<T>> {
    let dev = g.0.device();
    let n = ids.1.shape().elem_count();
    // From the shape, not the element count: with no ids there are no rows to divide by.
    let h = g.1.shape().dims2()?.1;
    let mut dw = dev.alloc_zeros::<T>((v * h).max(1))?;
    let (gv, iv) = (view::<T>(g.0, g.1)?, u32_view(ids.0, ids.1)?);
    let f = dev.get_or_load_custom_func(&name::<T>("embedding_bwd"), MODULE, PTX)?;
    let mut l = f.builder();
    let hi = h as i32;
    l.arg(&gv).arg(&iv).arg(&mut dw).arg(&n).arg(&hi);
    // SAFETY: signature matches; dw holds v × h zeros.
    unsafe { launch_kernel(&mut l, elementwise_cfg(n * h)) }?;
    Ok(dw)
}
