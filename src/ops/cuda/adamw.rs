//! The optimizer's side of the GPU: the gradients' global norm and the fused AdamW update
//! (`adamw_f32` in kernels.cu; the same math as `train::optim`'s host loop).
//!
//! Two ways to run them. One launch per parameter ([`sum_of_squares`], [`AdamWOp`]) is the
//! reference. The default, [`multi_tensor_step`], runs every parameter in one launch for the norm
//! and one for the update, over a table of device pointers: a GLM-Base step has about 150
//! parameters, so it saves some 300 launches and their host overhead, most of it exposed while
//! the GPU waits for the update (the norm is read back in between). `WENHUI_ADAMW_MULTI=0`
//! selects the per-parameter launches.

use super::{config, cuda_storage, elementwise_cfg, launch_kernel, view, KernelFloat, MODULE, PTX};
use crate::ops::launch::{self, AdamWJob, ADAMW_CHUNK, ADAMW_JOB_WORDS};
use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, DevicePtr, PushKernelArg};
use candle_core::cuda_backend::CudaStorageSlice;
use candle_core::{CudaStorage, DType, Layout, Result, Tensor};
use std::sync::OnceLock;

/// Hyper-parameters of one parameter's fused AdamW update: its own learning rate and decay
/// factor (`1 − lr·weight_decay`), and the step's shared ones.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AdamWStep {
    pub lr: f32,
    pub decay: f32,
    pub shared: SharedStep,
}

/// Updates the f32 weight `w` and its moments `mv` (`[m | v]`, 2n) in place from gradient `g`,
/// each read at its layout's offset (contiguous).
pub(crate) fn adamw(w: (&mut CudaStorage, &Layout), mv: (&CudaStorage, &Layout), g: (&CudaStorage, &Layout), s: &AdamWStep) -> Result<()> {
    let dev = w.0.device().clone();
    let n = g.1.shape().elem_count();
    if w.1.shape().elem_count() != n || mv.1.shape().elem_count() != 2 * n {
        candle_core::bail!(
            "adamw: weight {:?}, moments {:?} and gradient {:?} do not match (the moments hold twice the weight's elements)",
            w.1.dims(),
            mv.1.dims(),
            g.1.dims()
        );
    }
    let Some((wa, wb)) = w.1.contiguous_offsets() else { candle_core::bail!("adamw: the weight must be contiguous") };
    let mvv = view::<f32>(mv.0, mv.1)?;
    let gv = view::<f32>(g.0, g.1)?;
    let ws = match &mut w.0.slice {
        CudaStorageSlice::F32(d) => d,
        _ => candle_core::bail!("adamw: weights must be f32"),
    };
    let mut wv = ws.slice_mut(wa..wb);
    let f = dev.get_or_load_custom_func("adamw_f32", MODULE, PTX)?;
    let mut l = f.builder();
    // The kernel also writes the moments through their read view: they belong to the optimizer alone.
    l.arg(&mut wv).arg(&mvv).arg(&gv).arg(&n);
    let sh = &s.shared;
    l.arg(&s.lr).arg(&s.decay).arg(&sh.beta1).arg(&sh.beta2).arg(&sh.eps).arg(&sh.bc1).arg(&sh.bc2).arg(&sh.clip_scale);
    // SAFETY: w and g hold n floats, mv 2n (checked above), each from its layout's offset.
    unsafe { launch_kernel(&mut l, elementwise_cfg(n)) }?;
    Ok(())
}

/// Adds Σ g² of `g` (f32 or bf16) into the one-double accumulator `acc`.
pub(crate) fn sum_squares_into(g: (&CudaStorage, &Layout), acc: &mut CudaSlice<f64>) -> Result<()> {
    match &g.0.slice {
        CudaStorageSlice::F32(_) => sum_squares::<f32>(g, acc),
        CudaStorageSlice::BF16(_) => sum_squares::<half::bf16>(g, acc),
        _ => candle_core::bail!("gradient norm: gradients must be f32 or bf16 on CUDA"),
    }
}

fn sum_squares<T: KernelFloat>(g: (&CudaStorage, &Layout), acc: &mut CudaSlice<f64>) -> Result<()> {
    let dev = g.0.device().clone();
    let n = g.1.shape().elem_count();
    let v = view::<T>(g.0, g.1)?;
    let f = dev.get_or_load_custom_func(&super::name::<T>("sum_squares"), MODULE, PTX)?;
    let mut l = f.builder();
    l.arg(&v).arg(&n).arg(acc);
    // SAFETY: v holds n elements; acc one double.
    unsafe { launch_kernel(&mut l, config(launch::sum_squares(n))) }?;
    Ok(())
}

/// The fused AdamW update as an in-place op on the weight tensor (see [`adamw`]).
pub(crate) struct AdamWOp(pub AdamWStep);

impl candle_core::InplaceOp3 for AdamWOp {
    fn name(&self) -> &'static str {
        "wenhui-adamw"
    }

    fn cpu_fwd(
        &self,
        _: &mut candle_core::CpuStorage,
        _: &Layout,
        _: &candle_core::CpuStorage,
        _: &Layout,
        _: &candle_core::CpuStorage,
        _: &Layout,
    ) -> Result<()> {
        candle_core::bail!("wenhui-adamw runs on CUDA; the CPU update is train::optim's host loop")
    }

    fn cuda_fwd(&self, w: &mut CudaStorage, wl: &Layout, mv: &CudaStorage, mvl: &Layout, g: &CudaStorage, gl: &Layout) -> Result<()> {
        adamw((w, wl), (mv, mvl), (g, gl), &self.0)
    }
}

/// Σ over `tensors` of Σ x² (f32 or bf16 CUDA tensors), with one copy back to the host.
pub(crate) fn sum_of_squares(tensors: &[Tensor]) -> Result<f64> {
    let Some(first) = tensors.first() else { return Ok(0.0) };
    let candle_core::Device::Cuda(dev) = first.device() else { candle_core::bail!("sum_of_squares: CUDA tensors expected") };
    let mut acc = dev.alloc_zeros::<f64>(1)?;
    for t in tensors {
        let t = t.contiguous()?;
        let (storage, layout) = t.storage_and_layout();
        sum_squares_into((cuda_storage(&storage, "sum_of_squares: a gradient")?, layout), &mut acc)?;
    }
    Ok(dev.clone_dtoh(&acc)?[0])
}

/// Whether [`multi_tensor_step`] is on (`WENHUI_ADAMW_MULTI=0` turns it off; read once).
pub(crate) fn multi_tensor_allowed() -> bool {
    static ALLOWED: OnceLock<bool> = OnceLock::new();
    *ALLOWED.get_or_init(|| std::env::var("WENHUI_ADAMW_MULTI").map_or(true, |v| v != "0"))
}

/// One parameter of a [`multi_tensor_step`]: the f32 weight, its moments `[m | v]` (2n), its f32
/// gradient (n) and its own learning rate and decay factor (`1 − lr·weight_decay`).
pub(crate) struct MultiTensorParam {
    pub w: Tensor,
    pub mv: Tensor,
    pub g: Tensor,
    pub lr: f32,
    pub decay: f32,
}

/// The step's shared hyper-parameters, known once the global norm is: (β₁, β₂, ε, bias
/// corrections 1 − β₁ᵗ and 1 − β₂ᵗ, clip scale).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SharedStep {
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub bc1: f32,
    pub bc2: f32,
    pub clip_scale: f32,
}

/// Every parameter's AdamW update in two launches: Σ g² over all gradients, read back as the
/// global norm, which `shared` turns into the step's hyper-parameters (or an error, such as a
/// diverged norm, before anything is written), then the update of every weight and its moments
/// in place. Returns the norm. `None` when a tensor is not the contiguous f32 CUDA storage the
/// kernels need: the caller then takes the per-parameter launches.
pub(crate) fn multi_tensor_step(
    params: &[MultiTensorParam],
    shared: impl FnOnce(f64) -> crate::Result<SharedStep>,
) -> crate::Result<Option<f64>> {
    let Some(first) = params.first() else { return Ok(None) };
    let candle_core::Device::Cuda(dev) = first.w.device() else { return Ok(None) };
    // Storage guards first, then device pointers into them: the pointers' stream bookkeeping
    // borrows the guards, and both stay alive until both kernels are queued.
    let mut guards = Vec::with_capacity(params.len());
    for p in params {
        let n = p.g.elem_count();
        if p.w.elem_count() != n || p.mv.elem_count() != 2 * n {
            return Ok(None);
        }
        let mut three = Vec::with_capacity(3);
        for t in [&p.w, &p.mv, &p.g] {
            if t.dtype() != DType::F32 || !t.is_contiguous() || !t.device().same_device(first.w.device()) {
                return Ok(None);
            }
            three.push(t.storage_and_layout());
        }
        guards.push((three, n, p.lr, p.decay));
    }
    let stream = dev.cuda_stream();
    let mut records = Vec::with_capacity(3 * params.len());
    let mut jobs = Vec::with_capacity(params.len());
    for (three, n, lr, decay) in &guards {
        let mut pointers = [0u64; 3];
        for ((storage, layout), pointer) in three.iter().zip(&mut pointers) {
            let slice = match cuda_storage(storage, "AdamW: a parameter, moment or gradient")?.slice {
                CudaStorageSlice::F32(ref s) => s,
                _ => return Ok(None),
            };
            let (ptr, record) = slice.device_ptr(&stream);
            records.push(record);
            *pointer = ptr + 4 * layout.start_offset() as u64;
        }
        jobs.push(AdamWJob { pointers, n: *n, lr: *lr, decay: *decay });
    }
    // One weight under two names (tied parameters) would have two blocks updating it at once;
    // one launch per parameter updates it twice, in order, as the CPU does.
    let mut weights: Vec<u64> = jobs.iter().map(|j| j.pointers[0]).collect();
    weights.sort_unstable();
    if weights.windows(2).any(|w| w[0] == w[1]) {
        return Ok(None);
    }
    let (table, blocks) = launch::adamw_job_table(&jobs);
    if blocks == 0 {
        return Ok(None);
    }
    let table = dev.clone_htod(&table)?;
    let (jobs_view, chunks_view) = (table.slice(0..jobs.len() * ADAMW_JOB_WORDS), table.slice(jobs.len() * ADAMW_JOB_WORDS..));
    let cfg = config(launch::adamw_multi(blocks));
    let chunk = ADAMW_CHUNK as u64;

    // Both kernels loaded up front: after `shared` counts the step, only the launch can fail.
    let norm_kernel = dev.get_or_load_custom_func("sum_squares_multi_f32", MODULE, PTX)?;
    let update_kernel = dev.get_or_load_custom_func("adamw_multi_f32", MODULE, PTX)?;
    let mut acc = dev.alloc_zeros::<f64>(1)?;
    let mut l = norm_kernel.builder();
    l.arg(&jobs_view).arg(&chunks_view).arg(&chunk).arg(&mut acc);
    // SAFETY: the table holds one AdamWJob per parameter (pointers to n floats of gradient) and one
    // (job, chunk) word per block; acc is one double.
    unsafe { launch_kernel(&mut l, cfg) }?;
    let norm = dev.clone_dtoh(&acc)?[0].sqrt();

    let s = shared(norm)?;
    let mut l = update_kernel.builder();
    l.arg(&jobs_view).arg(&chunks_view).arg(&chunk);
    l.arg(&s.beta1).arg(&s.beta2).arg(&s.eps).arg(&s.bc1).arg(&s.bc2).arg(&s.clip_scale);
    // SAFETY: as above; each job's w and g hold n floats and its mv 2n, all contiguous f32. The
    // kernel writes w and mv through these pointers (taken for reading, under read locks): the
    // weights are updated in place as `AdamWOp` does, and the moments belong to the optimizer
    // alone. candle's one stream orders the writes after every earlier read; were candle to run
    // several streams (cudarc's multi-stream event tracking), these writes would go unrecorded.
    unsafe { launch_kernel(&mut l, cfg) }?;
    drop(records);
    Ok(Some(norm))
}
