//! The CUDA kernels of the one-token decoding steps (`ops::decode`; part of the fused CUDA ops,
//! the default; `WENHUI_CUDA_OPS=composite` turns them off): at batch 1 a GLM-Large step is bound
//! by launches, about 22 per layer through candle's composites. Here a layer takes 8: the QKV
//! GEMM, one attention kernel that adds the QKV bias, appends the new key and value to the cache
//! and attends over the cached keys, the dense GEMM, its bias plus the residual plus the second
//! layer norm, the first MLP GEMM, its bias plus GELU, the second GEMM, its bias plus the residual
//! plus the next layer's first layer norm (or the final one). Inference only (no backward): the
//! model uses these ops only when no gradient can be asked for.

use super::{config, cuda_storage, launch_kernel, name, output, packed_cfg, view, KernelFloat, MODULE, PTX};
use crate::ops::launch;
use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::CudaSlice;
use candle_core::cuda_backend::cudarc::driver::PushKernelArg;
use candle_core::{CudaStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Tensor};

/// Appends the new token's key and value (from the QKV projection `y` `[B, 1, 3H]` before its
/// bias) to the cache buffers `k`, `v` (`[B, N, cap, d]`, `len` positions used) and attends over
/// the `len + 1` keys: the context `[B, 1, H]`. The caches are written in place.
pub(crate) struct DecodeAttention {
    pub qkv_bias: Tensor,
    pub k: Tensor,
    pub v: Tensor,
    /// `[B or 1, 1, 1, len + 1]` 0/1 mask and optional key bias, in the compute dtype.
    pub mask: Tensor,
    pub key_bias: Option<Tensor>,
    pub heads: usize,
    pub len: usize,
    pub scale: f64,
}

impl DecodeAttention {
    fn launch<T: KernelFloat>(&self, y: &CudaStorage, yl: &Layout) -> Result<CudaStorage> {
        let (b, one, h3) = yl.shape().dims3()?;
        let (kb, kn, cap, d) = self.k.dims4()?;
        if one != 1 || kb != b || kn != self.heads || h3 != 3 * self.heads * d || self.len >= cap || self.v.dims() != self.k.dims() {
            candle_core::bail!("decode attention: y {:?} does not fit the cache {:?} at {} positions", yl.dims(), self.k.dims(), self.len);
        }
        let t = self.len + 1;
        if !launch::decode_fits(d, t, T::DTYPE) {
            candle_core::bail!(
                "decode attention: head size {d} over {t} keys does not fit one block's threads and shared memory; use the usual attention (model::attention checks decode_fits first)"
            );
        }
        // The kernel reads rows of `t` mask and key-bias values for batch row b (or row 0).
        for (what, x) in [("mask", Some(&self.mask)), ("key bias", self.key_bias.as_ref())] {
            if let Some(x) = x {
                let (rows, one, one2, keys) = x.dims4()?;
                if one != 1 || one2 != 1 || keys != t || (rows != 1 && rows != b) {
                    candle_core::bail!("decode attention: {what} {:?} does not fit [1 or {b}, 1, 1, {t}]", x.dims());
                }
            }
        }
        let dev = y.device().clone();
        let (bg, bl) = self.qkv_bias.storage_and_layout();
        let (kg, kl) = self.k.storage_and_layout();
        let (vg, vl) = self.v.storage_and_layout();
        let (mg, ml) = self.mask.storage_and_layout();
        let key_bias = self.key_bias.as_ref().map(|k| k.storage_and_layout());
        let yv = view::<T>(y, yl)?;
        let bv = view::<T>(cuda_storage(&bg, "decode attention: the QKV bias")?, bl)?;
        let kv = view::<T>(cuda_storage(&kg, "decode attention: the key cache")?, kl)?;
        let vv = view::<T>(cuda_storage(&vg, "decode attention: the value cache")?, vl)?;
        let mv = view::<T>(cuda_storage(&mg, "decode attention: the mask")?, ml)?;
        let kbv = match &key_bias {
            Some((g, l)) => Some(view::<T>(cuda_storage(g, "decode attention: the key bias")?, l)?),
            None => None,
        };
        let mut out = output::<T>(&dev, b * self.heads * d)?;
        let f = dev.get_or_load_custom_func(&name::<T>("decode_attention"), MODULE, PTX)?;
        let mut l = f.builder();
        let null: u64 = 0;
        let mask_batches = self.mask.dims()[0] as i32;
        let kb_rows = self.key_bias.as_ref().map_or(0, |k| k.dims()[0] as i32);
        l.arg(&yv).arg(&bv).arg(&kv).arg(&vv).arg(&mv).arg(&mask_batches);
        match &kbv {
            Some(v) => l.arg(v),
            None => l.arg(&null),
        };
        let (heads, di, capi, len) = (self.heads as i32, d as i32, cap as i32, self.len as i32);
        l.arg(&kb_rows).arg(&mut out).arg(&heads).arg(&di).arg(&capi).arg(&len).arg(&self.scale);
        let cfg = config(launch::decode_attention(b, self.heads, d, t, T::DTYPE));
        // SAFETY: the argument list matches the kernel; y holds B × 3H elements, the caches
        // B × N × cap × d with len < cap, the mask and the key bias [B or 1] × (len + 1), out B × H.
        // The kernel writes position `len` of the caches through these read views (so cudarc records
        // a read, not a write: harmless on candle's single stream): the cache owns the buffers, and
        // nothing reads that position before this launch.
        unsafe { launch_kernel(&mut l, cfg) }?;
        Ok(T::wrap_cuda_slice(out, dev))
    }
}

impl CustomOp1 for DecodeAttention {
    fn name(&self) -> &'static str {
        "wenhui-decode-attention"
    }
    fn cpu_fwd(&self, _: &candle_core::CpuStorage, _: &Layout) -> Result<(candle_core::CpuStorage, Shape)> {
        candle_core::bail!("wenhui-decode-attention runs on CUDA only")
    }
    fn cuda_fwd(&self, y: &CudaStorage, yl: &Layout) -> Result<(CudaStorage, Shape)> {
        let (b, _, h3) = yl.shape().dims3()?;
        let out = match y.dtype() {
            DType::F32 => self.launch::<f32>(y, yl)?,
            DType::F64 => self.launch::<f64>(y, yl)?,
            DType::BF16 => self.launch::<half::bf16>(y, yl)?,
            DType::F16 => self.launch::<half::f16>(y, yl)?,
            other => candle_core::bail!("decode attention: unsupported dtype {other:?}"),
        };
        Ok((out, Shape::from((b, 1, h3 / 3))))
    }
}

/// `x + (y + b)` over the last dimension (`b` `[H]`, `y` and `x` `[.., H]`), then the layer norm of
/// that sum with γ `g` and β `beta`, in one row kernel: a sublayer's end and the next layer norm.
/// The output is `[2, ..]`: the sum (the new residual stream), then its normalised rows.
pub(crate) struct BiasResidualLayerNorm {
    pub b: Tensor,
    pub g: Tensor,
    pub beta: Tensor,
    pub eps: f64,
}

impl BiasResidualLayerNorm {
    fn launch<T: KernelFloat>(&self, y: (&CudaStorage, &Layout), x: (&CudaStorage, &Layout)) -> Result<CudaSlice<T>> {
        let h = y.1.dims().last().copied().unwrap_or(0);
        let n = y.1.shape().elem_count();
        let params = [&self.b, &self.g, &self.beta];
        if x.1.shape() != y.1.shape() || h == 0 || params.iter().any(|p| p.dims() != [h]) {
            candle_core::bail!(
                "bias residual layer norm: y {:?}, x {:?}, bias/γ/β {:?} do not fit",
                y.1.dims(),
                x.1.dims(),
                params.map(|p| p.dims().to_vec())
            );
        }
        let dev = y.0.device();
        let guards = params.map(|p| p.storage_and_layout());
        let mut views = Vec::with_capacity(3);
        for ((s, l), what) in guards.iter().zip(["bias", "γ", "β"]) {
            views.push(view::<T>(cuda_storage(s, &format!("bias residual layer norm: the {what}"))?, l)?);
        }
        let (yv, xv) = (view::<T>(y.0, y.1)?, view::<T>(x.0, x.1)?);
        let mut out = output::<T>(dev, 2 * n)?;
        {
            let (mut sum, mut normed) = out.split_at_mut(n);
            let rows = n / h;
            let plan = launch::layer_norm_rows(rows, h, super::warp_rows_allowed());
            let f = dev.get_or_load_custom_func(&plan.kernel("bias_residual_layer_norm", T::DTYPE.as_str()), MODULE, PTX)?;
            let mut l = f.builder();
            let (hi, e) = (h as i32, self.eps as f32);
            l.arg(&yv).arg(&views[0]).arg(&xv).arg(&views[1]).arg(&views[2]).arg(&mut sum).arg(&mut normed).arg(&hi).arg(&e);
            if plan.warp {
                l.arg(&rows);
            }
            // SAFETY: the arguments follow the kernel's signature (the warp kernel's ends in the
            // row count); y, x and each half of out hold rows × h elements, the bias, γ and β h each.
            unsafe { launch_kernel(&mut l, config(plan.launch)) }?;
        }
        Ok(out)
    }
}

impl CustomOp2 for BiasResidualLayerNorm {
    fn name(&self) -> &'static str {
        "wenhui-bias-residual-layer-norm"
    }
    fn cpu_fwd(
        &self,
        _: &candle_core::CpuStorage,
        _: &Layout,
        _: &candle_core::CpuStorage,
        _: &Layout,
    ) -> Result<(candle_core::CpuStorage, Shape)> {
        candle_core::bail!("wenhui-bias-residual-layer-norm runs on CUDA only")
    }
    fn cuda_fwd(&self, y: &CudaStorage, yl: &Layout, x: &CudaStorage, xl: &Layout) -> Result<(CudaStorage, Shape)> {
        let out = super::float_kernel!(y, "bias residual layer norm", |T| self.launch::<T>((y, yl), (x, xl))?);
        let mut dims = vec![2];
        dims.extend_from_slice(yl.dims());
        Ok((out, Shape::from(dims)))
    }
}

/// `gelu(y + b)` over the last dimension (`b` `[cols]`), `erf` or tanh form.
pub(crate) struct BiasGelu {
    pub erf: bool,
}

impl CustomOp2 for BiasGelu {
    fn name(&self) -> &'static str {
        "wenhui-bias-gelu"
    }
    fn cpu_fwd(
        &self,
        _: &candle_core::CpuStorage,
        _: &Layout,
        _: &candle_core::CpuStorage,
        _: &Layout,
    ) -> Result<(candle_core::CpuStorage, Shape)> {
        candle_core::bail!("wenhui-bias-gelu runs on CUDA only")
    }
    fn cuda_fwd(&self, y: &CudaStorage, yl: &Layout, b: &CudaStorage, bl: &Layout) -> Result<(CudaStorage, Shape)> {
        let n = yl.shape().elem_count();
        let cols = bl.shape().elem_count();
        if cols == 0 || !n.is_multiple_of(cols) {
            candle_core::bail!("bias gelu: y {:?} and b {:?} do not fit", yl.dims(), bl.dims());
        }
        let out = super::float_kernel!(y, "bias gelu", |T| {
            let dev = y.device();
            let mut out = output::<T>(dev, n)?;
            let (yv, bv) = (view::<T>(y, yl)?, view::<T>(b, bl)?);
            let f = dev.get_or_load_custom_func(&name::<T>("bias_gelu"), MODULE, PTX)?;
            let mut l = f.builder();
            let (c, erf) = (cols as i32, self.erf as i32);
            l.arg(&yv).arg(&bv).arg(&mut out).arg(&n).arg(&c).arg(&erf);
            // SAFETY: the arguments follow the kernel's signature; y and out hold n elements, b cols.
            unsafe { launch_kernel(&mut l, packed_cfg::<T>(n)) }?;
            out
        });
        Ok((out, yl.shape().clone()))
    }
}
