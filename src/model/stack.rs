//! A training pass's layer stack as one candle node (the default wherever the fused ops run).
//!
//! The layers run on detached copies of their input and of their parameters while
//! [`crate::ops::tape`] records the fused ops; one node over (the input, the concatenated
//! parameters) then stands for all of them in candle's graph. Its backward replays the tape: the
//! same ops' own backward kernels, but each gradient is kept as it arrives instead of being added
//! into a fresh zero buffer as candle's backward does for every node, and the parameters'
//! gradients are written straight into one buffer. The numbers are the per-op path's: same
//! kernels, same order within each op.
//!
//! `WENHUI_LAYER_STACK=0` turns it off (per-op nodes, for comparison; see [`enabled`]).

use crate::ops::tape::Tape;
use crate::Result;
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Tensor, TensorId};
use std::collections::HashMap;
use std::sync::Mutex;

/// Parameters start at multiples of this many elements in the concatenation: 256 bytes in bf16,
/// the alignment cuBLAS allocations have and cublasLt's kernel choice assumes by default.
const ALIGN: usize = 128;

/// Where `WENHUI_LAYER_STACK` leaves the stack: on, off, or the default for the device.
fn setting() -> Option<bool> {
    static FROM_ENV: std::sync::OnceLock<Option<bool>> = std::sync::OnceLock::new();
    *FROM_ENV.get_or_init(|| match std::env::var("WENHUI_LAYER_STACK").as_deref() {
        Ok("1") | Ok("on") => Some(true),
        Ok("0") | Ok("off") => Some(false),
        Ok(other) => {
            tracing::warn!("WENHUI_LAYER_STACK={other}: expected 0/off or 1/on; using the default");
            None
        }
        Err(_) => None,
    })
}

thread_local! {
    /// A per-thread override of [`setting`] (tests compare both paths side by side).
    static OVERRIDE: std::cell::Cell<Option<bool>> = const { std::cell::Cell::new(None) };
}

/// Runs `f` with the stack forced on or off on this thread.
#[cfg(test)]
pub(crate) fn with_stack<R>(on: bool, f: impl FnOnce() -> R) -> R {
    let before = OVERRIDE.with(|o| o.replace(Some(on)));
    let out = f();
    OVERRIDE.with(|o| o.set(before));
    out
}

/// Whether a training pass over `x` runs its layers as one node: wherever the fused ops take
/// `x` (CPU f32/f64, and CUDA with the fused ops), unless `WENHUI_LAYER_STACK=0`. On the CPU it
/// measured 6% faster per step at the poetry models' shape (6 × 384, batch 64 × 128 tokens:
/// 2,244 vs 2,392 ms, medians of five) and the same at `bench train`'s default shape.
pub(crate) fn enabled(x: &Tensor) -> bool {
    if !(crate::ops::cuda_fused(x) || crate::ops::fused_cpu(x)) {
        return false;
    }
    OVERRIDE.with(|o| o.get()).or_else(setting).unwrap_or(true)
}

/// Runs `forward(input, params)` recorded on a tape and returns its output as one graph node
/// over `x` and `params`. `forward` gets detached `x` and views of the parameters (in `x`'s
/// dtype) in `params`' order, and may use only the fused ops of [`crate::ops`] (anything else
/// fails with an error naming the op).
pub(crate) fn run(x: &Tensor, params: &[&Tensor], forward: impl FnOnce(&Tensor, &[Tensor]) -> Result<Tensor>) -> Result<Tensor> {
    let dt = x.dtype();
    let tracked = params.iter().any(|p| p.track_op());
    // The graph sees one parameter tensor: the concatenation (candle splits its gradient back),
    // each parameter starting at a multiple of ALIGN elements, as GEMMs want their operands. It
    // is made in the parameters' own dtype when they share one (mixed precision: f32 master
    // weights), and cast to the compute dtype in one pass outside the graph; the node then casts
    // the parameters' gradients back in one pass too, where per-parameter casts in the graph
    // took a launch each way per parameter.
    let stored = params.first().map(|p| p.dtype()).filter(|d| params.iter().all(|p| p.dtype() == *d)).unwrap_or(dt);
    let mut starts = Vec::with_capacity(params.len());
    let flat = if tracked {
        let mut parts = Vec::with_capacity(2 * params.len());
        let mut at = 0;
        for p in params {
            starts.push(at);
            parts.push(p.to_dtype(stored)?.flatten_all()?);
            at += p.elem_count();
            let gap = at.next_multiple_of(ALIGN) - at;
            if gap > 0 {
                parts.push(Tensor::zeros(gap, stored, x.device())?);
                at += gap;
            }
        }
        Tensor::cat(&parts, 0)?
    } else {
        Tensor::zeros(0, stored, x.device())?
    };
    let (flat_c, xd) = (flat.detach().to_dtype(dt)?, x.detach());
    let mut views = Vec::with_capacity(params.len());
    let mut offsets = HashMap::new();
    for (i, p) in params.iter().enumerate() {
        let view = match starts.get(i) {
            Some(&at) => {
                let v = flat_c.narrow(0, at, p.elem_count())?.reshape(p.shape())?;
                offsets.insert(v.id(), at);
                v
            }
            None => p.to_dtype(dt)?.detach(),
        };
        views.push(view);
    }
    let leaves: Vec<&Tensor> = std::iter::once(&xd).chain(&views).collect();
    let (out, tape) = Tape::record(&leaves, || forward(&xd, &views))?;
    if !tape.recorded_output(&out) {
        // The backward pass starts from the output's op: without one, every gradient would be lost.
        return Err(crate::Error::input("layer stack: the output was not made by a recorded fused op; run with WENHUI_LAYER_STACK=0"));
    }
    #[cfg(test)]
    RUNS.with(|r| r.set(r.get() + 1));
    tracing::trace!(ops = tape.len(), "layer stack recorded");
    let node = Stack { out: out.clone(), saved: Mutex::new(Some(Saved { tape, x: xd.id(), offsets, compute: dt })) };
    Ok(x.apply_op2(&flat, node)?)
}

/// What the backward pass needs.
struct Saved {
    tape: Tape,
    /// The detached input.
    x: TensorId,
    /// Offset of each parameter view in the concatenation.
    offsets: HashMap<TensorId, usize>,
    /// The dtype the layers computed in (the parameters' gradients arrive in it).
    compute: DType,
}

/// The node: its forward hands out a copy of the recorded output (one per pass), its backward
/// replays the tape.
struct Stack {
    out: Tensor,
    saved: Mutex<Option<Saved>>,
}

impl CustomOp2 for Stack {
    fn name(&self) -> &'static str {
        "wenhui-layer-stack"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (s, l) = self.out.storage_and_layout();
        match &*s {
            candle_core::Storage::Cpu(c) => Ok((crate::ops::strided_copy(c, l)?, l.shape().clone())),
            _ => candle_core::bail!("layer stack: the recorded output is not on the CPU"),
        }
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        _: &candle_core::CudaStorage,
        _: &Layout,
        _: &candle_core::CudaStorage,
        _: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        let (s, l) = self.out.storage_and_layout();
        match &*s {
            candle_core::Storage::Cuda(c) => Ok((crate::ops::strided_copy(c, l)?, l.shape().clone())),
            _ => candle_core::bail!("layer stack: the recorded output is not on the GPU"),
        }
    }

    fn bwd(&self, x: &Tensor, flat: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let saved = self.saved.lock().map_err(|_| candle_core::Error::Msg("layer stack: poisoned lock".into()))?.take();
        let Some(Saved { tape, x: xid, offsets, compute }) = saved else {
            candle_core::bail!("layer stack: a second backward pass through one forward pass; run the forward pass again")
        };
        // Parameter gradients land in one buffer as each is complete (a view of a larger backward
        // buffer would otherwise keep that buffer alive to the end).
        let dflat = if flat.elem_count() > 0 { Some(Tensor::zeros(flat.elem_count(), compute, flat.device())?) } else { None };
        let mut dx = None;
        tape.backward(&self.out, grad.clone(), |id, g| {
            if id == xid {
                dx = Some(g);
            } else if let (Some(&at), Some(d)) = (offsets.get(&id), &dflat) {
                d.slice_set(&g.contiguous()?.flatten_all()?, 0, at)?;
            }
            Ok(())
        })?;
        let dx = dx.map(|g| g.reshape(x.shape())).transpose()?;
        Ok((dx, dflat.map(|d| d.to_dtype(flat.dtype())).transpose()?))
    }
}

#[cfg(test)]
thread_local! {
    /// Stacks run on this thread (tests check that the stack path was taken).
    static RUNS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::glm::GlmConfig;
    use crate::model::{Attention, BackboneInput, Gelu, ModelConfig};
    use candle_core::{DType, Device, Var};

    type TestResult<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

    /// One training pass: its loss, every parameter's gradient (by name), and how many stacks ran.
    struct Pass {
        loss: f32,
        grads: Vec<(String, Tensor)>,
        runs: usize,
    }

    /// One training pass with the stack on or off.
    fn pass(cfg: &ModelConfig, stack: bool, seed: Option<u64>, master: DType) -> TestResult<Pass> {
        let dev = Device::Cpu;
        let (vars, mut model) = cfg.build_trainable(Some(cfg.init_weights(3)?), master, &dev)?;
        // f64 master weights with f32 compute: the mixed-precision path (bf16 on a GPU).
        model.set_compute_dtype(DType::F32)?;
        let ids = Tensor::new(&[[5u32, 9, 1, 33, 7, 2, 11], [3, 3, 8, 21, 30, 1, 0]], &dev)?;
        let mut input = BackboneInput::ids(ids).with_attention(Attention::Sep(vec![4, 3]));
        if let Some(s) = seed {
            input = input.with_dropout(s);
        }
        let before = RUNS.with(|r| r.get());
        let (loss, grads) = with_stack(stack, || -> TestResult<_> {
            let logits = model.forward(&input, None)?.logits.to_dtype(DType::F32)?;
            let weights = Tensor::arange(0f32, logits.elem_count() as f32, &dev)?.reshape(logits.shape())?.sin()?;
            let loss = (logits * weights)?.sum_all()?;
            let grads = loss.backward()?;
            Ok((loss.to_scalar::<f32>()?, grads))
        })?;
        let runs = RUNS.with(|r| r.get()) - before;
        let data = vars.data().lock().map_err(|_| "poisoned lock")?;
        let mut out = Vec::new();
        for (n, v) in data.iter() {
            out.push((n.clone(), grads.get(v.as_tensor()).ok_or(format!("{n}: no gradient"))?.clone()));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Pass { loss, grads: out, runs })
    }

    /// A trainable `layers`-layer GLM (H = 16) from seeded weights, on the CPU in f32.
    fn trainable_glm(layers: usize, seed: u64) -> TestResult<(ModelConfig, Box<dyn crate::model::Backbone>)> {
        let cfg = ModelConfig::Glm(GlmConfig::new(layers, 16, 2, 40, 12));
        let (_vars, model) = cfg.build_trainable(Some(cfg.init_weights(seed)?), DType::F32, &Device::Cpu)?;
        Ok((cfg, model))
    }

    fn max_abs(a: &Tensor) -> TestResult<f64> {
        Ok(crate::ops::max_abs_diff(a, &a.zeros_like()?)?)
    }

    #[test]
    fn the_stack_gives_every_parameter_the_per_op_gradient() -> TestResult {
        // H = 12: parameters of 12 and 36 elements leave alignment gaps in the concatenation.
        // f64 master weights computing in f32: the parameters' casts and their gradients' casts
        // back happen inside the node (one pass each way), per parameter on the per-op path.
        let cases = [
            (Gelu::Tanh, 3, 16, 2, DType::F32),
            (Gelu::Erf, 3, 16, 2, DType::F32),
            (Gelu::Tanh, 2, 12, 3, DType::F32),
            (Gelu::Tanh, 2, 12, 3, DType::F64),
        ];
        for (gelu, layers, hidden, heads, master) in cases {
            let mut glm = GlmConfig::new(layers, hidden, heads, 40, 12);
            glm.gelu = gelu;
            let cfg = ModelConfig::Glm(glm);
            for seed in [Some(7), None] {
                let Pass { loss: loss_a, grads: a, runs: runs_a } = pass(&cfg, false, seed, master)?;
                let Pass { loss: loss_b, grads: b, runs: runs_b } = pass(&cfg, true, seed, master)?;
                assert_eq!((runs_a, runs_b), (0, 1), "the stack path runs only when on");
                assert!((loss_a - loss_b).abs() <= 1e-5 * loss_a.abs().max(1.0), "loss {loss_a} vs {loss_b}");
                assert_eq!(a.len(), cfg.parameter_shapes().len());
                for ((name, ga), (_, gb)) in a.iter().zip(&b) {
                    assert_eq!((ga.dtype(), gb.dtype()), (master, master), "{name}: gradients in the master dtype");
                    let (ga, gb) = (&ga.to_dtype(DType::F32)?, &gb.to_dtype(DType::F32)?);
                    let scale = max_abs(ga)?;
                    assert!(scale > 0.0, "{name}: zero gradient");
                    let d = max_abs(&(ga - gb)?)?;
                    assert!(d <= 1e-5 * scale.max(1.0), "{name} ({gelu:?}, seed {seed:?}): stack differs by {d} (scale {scale})");
                }
            }
        }
        Ok(())
    }

    #[test]
    fn frozen_layers_pass_the_gradient_to_trainable_inputs() -> TestResult {
        // P-tuning's case: the language model is frozen, the input embeddings are trained.
        let cfg = ModelConfig::Glm(GlmConfig::new(2, 16, 2, 40, 12));
        let dev = Device::Cpu;
        let model = cfg.build_frozen(cfg.init_weights(4)?, DType::F32, &dev)?;
        let emb = Var::from_tensor(&Tensor::randn(0f32, 0.1, (2, 5, 16), &dev)?)?;
        let grad = |stack: bool| {
            with_stack(stack, || -> TestResult<Tensor> {
                let input = BackboneInput::embeddings(emb.as_tensor().clone()).with_attention(Attention::Sep(vec![3, 5])).with_dropout(3);
                let loss = model.forward(&input, None)?.logits.sqr()?.sum_all()?;
                Ok(loss.backward()?.get(emb.as_tensor()).ok_or("the input gets no gradient")?.clone())
            })
        };
        let before = RUNS.with(|r| r.get());
        let (a, b) = (grad(false)?, grad(true)?);
        assert_eq!(RUNS.with(|r| r.get()) - before, 1);
        let (scale, d) = (max_abs(&a)?, max_abs(&(&a - &b)?)?);
        assert!(scale > 0.0 && d <= 1e-5 * scale.max(1.0), "input gradient differs by {d}");
        Ok(())
    }

    #[test]
    fn a_second_backward_through_one_pass_is_an_error_not_a_wrong_gradient() -> TestResult {
        let (_cfg, model) = trainable_glm(1, 5)?;
        let dev = Device::Cpu;
        with_stack(true, || -> TestResult {
            let input = BackboneInput::ids(Tensor::new(&[[1u32, 2, 3]], &dev)?).with_dropout(1);
            let loss = model.forward(&input, None)?.logits.sum_all()?;
            loss.backward()?;
            let err = loss.backward().expect_err("the tape is spent").to_string();
            assert!(err.contains("second backward"), "{err}");
            Ok(())
        })
    }

    #[test]
    fn an_output_no_recorded_op_made_is_an_error_not_a_lost_gradient() -> TestResult {
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 3, 8), &Device::Cpu)?)?;
        let err = run(x.as_tensor(), &[], |x, _| Ok(x.clone())).expect_err("the input itself").to_string();
        assert!(err.contains("not made by a recorded"), "{err}");
        let err = run(x.as_tensor(), &[], |x, _| Ok((crate::ops::gelu_tanh(x)? * 2.0)?)).expect_err("a candle op last").to_string();
        assert!(err.contains("not made by a recorded"), "{err}");
        let ok = run(x.as_tensor(), &[], |x, _| Ok(crate::ops::gelu_tanh(x)?))?;
        let g = ok.sum_all()?.backward()?;
        assert!(g.get(x.as_tensor()).is_some(), "a recorded output passes the gradient on");
        Ok(())
    }

    #[test]
    fn inference_and_cached_passes_never_take_the_stack() -> TestResult {
        let (cfg, trainable) = trainable_glm(2, 6)?;
        let dev = Device::Cpu;
        let frozen = cfg.build_frozen(cfg.init_weights(6)?, DType::F32, &dev)?;
        let before = RUNS.with(|r| r.get());
        with_stack(true, || -> TestResult {
            let input = BackboneInput::ids(Tensor::new(&[[1u32, 2, 3]], &dev)?);
            frozen.forward(&input, None)?;
            let mut cache = crate::model::KvCache::new(2);
            trainable.forward(&input, Some(&mut cache))?;
            Ok(())
        })?;
        assert_eq!(RUNS.with(|r| r.get()), before, "nothing to train through: per-op path");
        Ok(())
    }
}
