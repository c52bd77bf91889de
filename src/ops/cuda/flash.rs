//! Flash attention on CUDA (`flash.cuh`): the fused attention op's forward and backward passes
//! without the `[pairs, S, T]` score buffers. Tensor-core tiles of 64 queries × 64 keys, an
//! online softmax, and a backward that recomputes P from each row's log-sum-exp and reads the
//! forward's dropout decisions from a bit mask (`FlashKept`); a packed
//! `[B, S, 3H]` projection is read, and its gradient written, in place (no head split or
//! merge copies). Same math, mask, key bias and dropout hash as the GEMM path
//! (`ops::cuda::attention`), with P' and dS rounded once to the storage type as the operands
//! of their products.
//!
//! Without a key bias, tiles whose mask is all 0 are skipped (flags from `flash_tiles`, computed
//! once per mask tensor: the layers of a pass share it); `WENHUI_FLASH_SKIP=0` computes them all.
//!
//! Serves bf16 and f16 heads of 64 channels (every GLM: Base, Large, 2B, 10B) when
//! `WENHUI_FLASH_ATTENTION=1`; opt-in until a GPU has measured it against the GEMM path.
//! Everything else takes the GEMM path.

use super::attention::{alloc_like, device_bias, Geometry, Params};
use super::{config, launch_kernel, view, KernelFloat, MODULE, PTX};
use crate::ops::launch::{self, FlashLayout};
use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{
    CudaSlice, CudaStream, CudaView, DevicePtr, DevicePtrMut, LaunchArgs, PushKernelArg, SyncOnDrop,
};
use candle_core::{CudaStorage, DType, Layout, Result, Shape, TensorId};
use std::sync::{Arc, Mutex};

/// Whether `WENHUI_FLASH_ATTENTION=1` asks for flash attention.
fn requested() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("WENHUI_FLASH_ATTENTION").is_ok_and(|v| v == "1"))
}

/// The compute capability the kernels were compiled for (build.rs): `mma.sync` needs sm_80.
fn tensor_cores() -> bool {
    // "90", or "90a" for the architecture-specific target.
    let digits = |c: &str| c.chars().take_while(char::is_ascii_digit).collect::<String>();
    option_env!("WENHUI_CUDA_COMPUTE_CAP").and_then(|c| digits(c).parse::<u32>().ok()).is_some_and(|c| c >= 80)
}

/// Whether flash attention may serve heads of `d` channels in `dtype` (asked for, sm_80+,
/// bf16/f16, 64 channels); [`serves`] decides per call.
pub(crate) fn may_serve(dtype: DType, d: usize) -> bool {
    requested() && tensor_cores() && matches!(dtype, DType::BF16 | DType::F16) && d == launch::FLASH_HEAD
}

/// Whether flash attention serves a call: [`may_serve`], Q, K and V starting on 16-byte
/// boundaries (the kernels load rows in 16-byte packs), and a grid that fits.
pub(crate) fn serves(x: &[(&CudaStorage, &Layout); 3], g: &Geometry) -> bool {
    let offsets_aligned =
        if g.packed { x[0].1.start_offset().is_multiple_of(8) } else { x.iter().all(|(_, l)| l.start_offset().is_multiple_of(8)) };
    may_serve(x[0].0.dtype(), g.d) && offsets_aligned && launch::flash_fits(g.pairs(), g.s, g.t)
}

/// The kernels' strides and gradient offsets for this call, as i64 kernel arguments.
fn layout(g: &Geometry) -> (FlashLayout, [i64; 9]) {
    let l = FlashLayout::new(g.packed, (g.batch, g.heads, g.s, g.t, g.d));
    let mut strides = [0i64; 9];
    for (slot, v) in strides.iter_mut().zip(l.q.iter().chain(&l.kv).chain(&l.out)) {
        *slot = *v as i64;
    }
    (l, strides)
}

/// Element offsets of Q, K and V: in the one packed projection, or in their own storages.
fn input_offsets(x: &[(&CudaStorage, &Layout); 3], g: &Geometry) -> [usize; 3] {
    if g.packed {
        let o = x[0].1.start_offset();
        [o, o + g.hidden(), o + 2 * g.hidden()]
    } else {
        [0, 1, 2].map(|i| x[i].1.start_offset())
    }
}

/// The scalar arguments every flash kernel ends with (`FA_ARGS` in flash.cuh), after the mask
/// and the key bias.
struct Scalars {
    mask_batches: i32,
    bias_rows: i32,
    heads: i32,
    s: i32,
    t: i32,
    scale: f64,
    mixed_seed: u64,
    threshold: u64,
    keep_scale: f64,
    null: u64,
}

impl Scalars {
    fn new(p: &Params, bias_rows: i32) -> Result<Self> {
        let g = &p.geometry;
        let int = |v: usize, what: &str| {
            i32::try_from(v).map_err(|_| candle_core::Error::Msg(format!("flash attention: {what} {v} exceeds i32")))
        };
        let (mixed_seed, threshold, keep_scale) = p.dropout;
        Ok(Self {
            mask_batches: int(g.mask_batches, "mask batches")?,
            bias_rows,
            heads: int(g.heads, "heads")?,
            s: int(g.s, "queries")?,
            t: int(g.t, "keys")?,
            scale: p.scale,
            mixed_seed,
            threshold,
            keep_scale,
            null: 0,
        })
    }

    /// Pushes the mask, the key bias, the scalars and the tile flags' address (`tiles`, 0: none).
    fn push<'a, T: KernelFloat>(
        &'a self,
        b: &mut LaunchArgs<'a>,
        mask: &'a CudaView<'a, T>,
        bias: Option<&'a CudaSlice<f64>>,
        tiles: &'a u64,
    ) {
        b.arg(mask).arg(&self.mask_batches);
        match bias {
            Some(bias) => b.arg(bias),
            None => b.arg(&self.null),
        };
        b.arg(&self.bias_rows).arg(&self.heads).arg(&self.s).arg(&self.t).arg(&self.scale);
        b.arg(&self.mixed_seed).arg(&self.threshold).arg(&self.keep_scale).arg(tiles);
    }
}

/// Device addresses of Q, K and V (with their offsets), and the guards that keep them valid.
fn input_pointers<'a, T: KernelFloat>(
    x: &[(&'a CudaStorage, &Layout); 3],
    g: &Geometry,
    stream: &'a Arc<CudaStream>,
) -> Result<([u64; 3], Vec<SyncOnDrop<'a>>)> {
    let offsets = input_offsets(x, g);
    let size = std::mem::size_of::<T>() as u64;
    let mut pointers = [0u64; 3];
    let mut records = Vec::with_capacity(3);
    for (i, ptr) in pointers.iter_mut().enumerate() {
        let storage = if g.packed { x[0].0 } else { x[i].0 };
        let (base, record) = T::as_cuda_slice(storage)?.device_ptr(stream);
        records.push(record);
        *ptr = base + offsets[i] as u64 * size;
    }
    Ok((pointers, records))
}

fn pushed_strides<'a>(b: &mut LaunchArgs<'a>, strides: &'a [i64; 9]) {
    for v in strides {
        b.arg(v);
    }
}

/// What the forward pass keeps for the backward pass: each query row's log-sum-exp, with
/// dropout the dropout decisions as bits (`launch::flash_bits_len` words), and the tile skip
/// flags it used.
pub(crate) struct FlashKept {
    lse: CudaSlice<f32>,
    bits: Option<CudaSlice<u32>>,
    tiles: Option<Arc<CudaSlice<u8>>>,
}

/// Whether tiles whose mask is all 0 are skipped (`WENHUI_FLASH_SKIP=0`: no, for comparison).
fn skipping() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("WENHUI_FLASH_SKIP").as_deref() != Ok("0"))
}

/// Tile skip flags by mask: (the mask tensor's id, mask batches, S, T). A TensorId is never
/// reused, so a hit is the same mask; the few most recent masks are kept (a training step has one).
type TileKey = (TensorId, usize, usize, usize);
static TILE_FLAGS: Mutex<Vec<(TileKey, Arc<CudaSlice<u8>>)>> = Mutex::new(Vec::new());
const TILE_FLAGS_KEPT: usize = 4;

/// The tile skip flags for this call's mask (`flash_tiles`), from the cache or computed; none
/// with a key bias (a −∞ bias could leave a row's visible keys below the masked score) or when
/// skipping is off.
fn tile_flags<T: KernelFloat>(p: &Params, scalars: &Scalars, dev: &candle_core::CudaDevice) -> Result<Option<Arc<CudaSlice<u8>>>> {
    if p.bias.is_some() || !skipping() {
        return Ok(None);
    }
    let g = &p.geometry;
    let key = (p.mask_id, g.mask_batches, g.s, g.t);
    let poisoned = |_| candle_core::Error::Msg("flash attention: poisoned tile flag cache".into());
    if let Some((_, flags)) = TILE_FLAGS.lock().map_err(poisoned)?.iter().find(|(k, _)| *k == key) {
        return Ok(Some(flags.clone()));
    }
    let stream = dev.cuda_stream();
    // SAFETY: flash_tiles writes every flag before any kernel reads it (same stream).
    let mut flags = unsafe { dev.alloc::<u8>(launch::flash_tiles_len(g.mask_batches, g.s, g.t)) }?;
    let mask = view::<T>(p.mask.0, p.mask.1)?;
    {
        let f = dev.get_or_load_custom_func(&format!("flash_tiles_{}", T::DTYPE.as_str()), MODULE, PTX)?;
        let (ptr, _record) = flags.device_ptr_mut(&stream);
        let mut b = f.builder();
        b.arg(&mask).arg(&scalars.s).arg(&scalars.t).arg(&ptr);
        // SAFETY: the arguments match flash_tiles' signature; the mask holds [mask batches] × S × T
        // values, the flags one byte per (query tile, key tile) of each mask batch.
        unsafe { launch_kernel(&mut b, config(launch::flash_tiles(g.s, g.mask_batches))) }?;
    }
    let flags = Arc::new(flags);
    let mut cache = TILE_FLAGS.lock().map_err(poisoned)?;
    if cache.len() >= TILE_FLAGS_KEPT {
        cache.remove(0);
    }
    cache.push((key, flags.clone()));
    Ok(Some(flags))
}

/// The device address of the optional tile flags (0: none) and its guard.
fn tiles_ptr<'a>(tiles: Option<&'a Arc<CudaSlice<u8>>>, stream: &'a Arc<CudaStream>) -> (u64, Option<SyncOnDrop<'a>>) {
    match tiles {
        Some(t) => {
            let (ptr, record) = t.device_ptr(stream);
            (ptr, Some(record))
        }
        None => (0, None),
    }
}

/// The device address of an optional buffer (0: the kernels' null) and its guard (a write
/// record, also for a buffer a kernel only reads: every buffer here lives on the one stream).
fn optional_ptr<'a, V>(buf: Option<&'a mut CudaSlice<V>>, stream: &'a Arc<CudaStream>) -> (u64, Option<SyncOnDrop<'a>>) {
    match buf {
        Some(b) => {
            let (ptr, record) = b.device_ptr_mut(stream);
            (ptr, Some(record))
        }
        None => (0, None),
    }
}

/// The forward pass: the output (`[B, S, H]` when packed, else `[B, N, S, d]`) and, when `keep`,
/// what the backward pass reads.
pub(crate) fn forward(x: [(&CudaStorage, &Layout); 3], p: &Params, keep: bool) -> Result<(CudaStorage, Option<FlashKept>)> {
    match x[0].0.dtype() {
        DType::BF16 => forward_typed::<half::bf16>(x, p, keep),
        DType::F16 => forward_typed::<half::f16>(x, p, keep),
        other => candle_core::bail!("flash attention: unsupported dtype {other:?}"),
    }
}

fn forward_typed<T: KernelFloat>(x: [(&CudaStorage, &Layout); 3], p: &Params, keep: bool) -> Result<(CudaStorage, Option<FlashKept>)> {
    let g = &p.geometry;
    let dev = x[0].0.device().clone();
    let stream = dev.cuda_stream();
    let shape = if g.packed { Shape::from((g.batch, g.s, g.hidden())) } else { Shape::from((g.pairs(), g.s, g.d)) };
    let mut out = alloc_like(x[0].0, &shape)?;
    // SAFETY: the kernel writes every row's log-sum-exp, and the words of the bits of every tile
    // it does not skip, before the backward pass reads them; the backward skips the same tiles
    // (the same flags), so it never reads a word that was not written.
    let mut lse = if keep { Some(unsafe { dev.alloc::<f32>(g.pairs() * g.s) }?) } else { None };
    let words = launch::flash_bits_len(g.pairs(), g.s, g.t);
    let mut bits = if keep && p.dropout.1 > 0 { Some(unsafe { dev.alloc::<u32>(words) }?) } else { None };
    let (bias, bias_rows) = device_bias(&dev, p)?;
    let scalars = Scalars::new(p, bias_rows)?;
    let mask = view::<T>(p.mask.0, p.mask.1)?;
    let (_, strides) = layout(g);
    let tiles = tile_flags::<T>(p, &scalars, &dev)?;
    let f = dev.get_or_load_custom_func(&format!("flash_fwd_{}", T::DTYPE.as_str()), MODULE, PTX)?;
    {
        let (inputs, _records) = input_pointers::<T>(&x, g, &stream)?;
        let (o, _o_record) = T::as_cuda_slice_mut(&mut out)?.device_ptr_mut(&stream);
        let (l, _l_record) = optional_ptr(lse.as_mut(), &stream);
        let (bits_ptr, _bits_record) = optional_ptr(bits.as_mut(), &stream);
        let (tiles_ptr, _tiles_record) = tiles_ptr(tiles.as_ref(), &stream);
        let mut b = f.builder();
        b.arg(&inputs[0]).arg(&inputs[1]).arg(&inputs[2]).arg(&o).arg(&l).arg(&bits_ptr);
        pushed_strides(&mut b, &strides);
        scalars.push(&mut b, &mask, bias.as_ref(), &tiles_ptr);
        // SAFETY: the arguments match flash_fwd's signature; Q, K, V, the output and the
        // log-sum-exp rows hold the elements their strides address for pairs × S (T) rows, the
        // bits one word per thread per (query tile, key tile).
        unsafe { launch_kernel(&mut b, config(launch::flash(g.s, g.pairs()))) }?;
    }
    Ok((out, lse.map(|lse| FlashKept { lse, bits, tiles })))
}

/// The backward pass from the output gradient `grad`: `dQKV` `[B, S, 3H]` when packed, else
/// `[dQ | dK | dV]`. `kept`: the forward pass's output and what it kept (else recomputed).
pub(crate) fn backward(
    x: [(&CudaStorage, &Layout); 3],
    grad: (&CudaStorage, &Layout),
    kept: Option<(&CudaStorage, &Layout, FlashKept)>,
    p: &Params,
) -> Result<CudaStorage> {
    match x[0].0.dtype() {
        DType::BF16 => backward_typed::<half::bf16>(x, grad, kept, p),
        DType::F16 => backward_typed::<half::f16>(x, grad, kept, p),
        other => candle_core::bail!("flash attention: unsupported dtype {other:?}"),
    }
}

fn backward_typed<T: KernelFloat>(
    x: [(&CudaStorage, &Layout); 3],
    grad: (&CudaStorage, &Layout),
    kept: Option<(&CudaStorage, &Layout, FlashKept)>,
    p: &Params,
) -> Result<CudaStorage> {
    let g = &p.geometry;
    let recomputed;
    let (out, out_offset, FlashKept { lse, mut bits, tiles }) = match kept {
        Some((out, layout, kept)) => (out, layout.start_offset(), kept),
        None => {
            let (out, kept) = forward_typed::<T>(x, p, true)?;
            recomputed = out;
            (&recomputed, 0, kept.ok_or_else(|| candle_core::Error::Msg("flash attention: the forward pass kept nothing".into()))?)
        }
    };
    let dev = x[0].0.device().clone();
    let stream = dev.cuda_stream();
    let (pairs, rows) = (g.pairs(), g.pairs() * g.s);
    let size = std::mem::size_of::<T>() as u64;
    let (fl, strides) = layout(g);
    let suffix = T::DTYPE.as_str();
    let (bias, bias_rows) = device_bias(&dev, p)?;
    let scalars = Scalars::new(p, bias_rows)?;
    // D = Σ dO ⊙ O per query row.
    // SAFETY: flash_bwd_dot writes every row before the other kernels read it.
    let mut dd = unsafe { dev.alloc::<f32>(rows) }?;
    let (o_ptr, _o_record) = T::as_cuda_slice(out)?.device_ptr(&stream);
    let o_ptr = o_ptr + out_offset as u64 * size;
    let (go_ptr, _go_record) = T::as_cuda_slice(grad.0)?.device_ptr(&stream);
    let go_ptr = go_ptr + grad.1.start_offset() as u64 * size;
    {
        let f = dev.get_or_load_custom_func(&format!("flash_bwd_dot_{suffix}"), MODULE, PTX)?;
        let (d_ptr, _d_record) = dd.device_ptr_mut(&stream);
        let (d, n) = (launch::FLASH_HEAD as i32, rows);
        let mut b = f.builder();
        b.arg(&o_ptr).arg(&go_ptr).arg(&d_ptr);
        for v in strides[6..].iter().chain(&strides[6..]) {
            b.arg(v);
        }
        b.arg(&scalars.heads).arg(&scalars.s).arg(&d).arg(&n);
        // SAFETY: the arguments match flash_bwd_dot's signature; the output and its gradient
        // share the output's strides; D holds pairs × S rows.
        unsafe { launch_kernel(&mut b, config(launch::flash_dot(rows))) }?;
    }
    // The gradients: laid out like the packed projection, or [dQ | dK | dV].
    let shape = if g.packed { Shape::from((g.batch, g.s, 3 * g.hidden())) } else { Shape::from(fl.grad_len) };
    let mut grads = alloc_like(x[0].0, &shape)?;
    let [dq_at, dk_at, dv_at] = fl.grads;
    let mask = view::<T>(p.mask.0, p.mask.1)?;
    {
        let (inputs, _records) = input_pointers::<T>(&x, g, &stream)?;
        let (l_ptr, _l_record) = lse.device_ptr(&stream);
        let (d_ptr, _d_record) = dd.device_ptr(&stream);
        let (bits_ptr, _bits_record) = optional_ptr(bits.as_mut(), &stream);
        let (tiles_ptr, _tiles_record) = tiles_ptr(tiles.as_ref(), &stream);
        let (base, _g_record) = T::as_cuda_slice_mut(&mut grads)?.device_ptr_mut(&stream);
        let (dq, dk, dv) = (base + dq_at as u64 * size, base + dk_at as u64 * size, base + dv_at as u64 * size);
        let kv = dev.get_or_load_custom_func(&format!("flash_bwd_kv_{suffix}"), MODULE, PTX)?;
        let mut b = kv.builder();
        b.arg(&inputs[0]).arg(&inputs[1]).arg(&inputs[2]).arg(&go_ptr).arg(&l_ptr).arg(&d_ptr).arg(&bits_ptr).arg(&dk).arg(&dv);
        pushed_strides(&mut b, &strides);
        scalars.push(&mut b, &mask, bias.as_ref(), &tiles_ptr);
        // SAFETY: the arguments match flash_bwd_kv's signature; dK and dV are written through the
        // strides of K and V inside `grads`, which holds Q, K and V's element counts.
        unsafe { launch_kernel(&mut b, config(launch::flash(g.t, pairs))) }?;
        let q = dev.get_or_load_custom_func(&format!("flash_bwd_q_{suffix}"), MODULE, PTX)?;
        let mut b = q.builder();
        b.arg(&inputs[0]).arg(&inputs[1]).arg(&inputs[2]).arg(&go_ptr).arg(&l_ptr).arg(&d_ptr).arg(&bits_ptr).arg(&dq);
        pushed_strides(&mut b, &strides);
        scalars.push(&mut b, &mask, bias.as_ref(), &tiles_ptr);
        // SAFETY: as above, dQ through the strides of Q.
        unsafe { launch_kernel(&mut b, config(launch::flash(g.s, pairs))) }?;
    }
    Ok(grads)
}
