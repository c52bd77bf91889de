//! The prompt-encoder module: parameters with peft's names and a differentiable forward pass
//! written with candle ops that record their backward (matmul, tanh, narrow, cat, index_select).

use super::{EncoderKind, LstmHead, PromptEncoderConfig};
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor, D};
use candle_nn::{Init, VarBuilder, VarMap};
use std::path::{Path, PathBuf};

/// `y = x Wᵀ + b` with torch's `[out, in]` layout.
#[derive(Debug, Clone)]
struct Linear {
    weight: Tensor,
    bias: Tensor,
}

impl Linear {
    /// PyTorch's default init: weight and bias uniform in ±1/√in.
    fn new(inp: usize, out: usize, vb: &VarBuilder, name: &str) -> Result<Self> {
        let bound = 1.0 / (inp as f64).sqrt();
        let init = Init::Uniform { lo: -bound, up: bound };
        Ok(Self { weight: get(vb, (out, inp), &format!("{name}.weight"), init)?, bias: get(vb, out, &format!("{name}.bias"), init)? })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.broadcast_matmul(&self.weight.t()?)?.broadcast_add(&self.bias)?)
    }
}

/// One direction of one LSTM layer.
#[derive(Debug, Clone)]
struct LstmCell {
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor,
    b_hh: Tensor,
}

/// The encoder's head after the embedding lookup.
#[derive(Debug, Clone)]
enum Head {
    /// `layers × [forward, reverse]` cells, then the two-layer MLP.
    Lstm { cells: Vec<[LstmCell; 2]>, mlp: [Linear; 2] },
    /// Three linear layers with ReLU between them.
    Mlp([Linear; 3]),
    /// No head.
    Embedding,
}

/// A P-tuning prompt encoder (see the [module docs](super)): maps pseudo-token indices `[B, T]`
/// to prompt embeddings `[B, T, D]`.
#[derive(Debug, Clone)]
pub struct PromptEncoder {
    cfg: PromptEncoderConfig,
    embedding: Tensor,
    head: Head,
    /// Parameters in a fixed order, with peft's names.
    params: Vec<(String, Tensor)>,
}

/// Where tensors built from a bare `VarBuilder` come from, for error messages.
const VB_SOURCE: &str = "<var-builder>";

/// `vb.get_with_hints`, with a wenhui error naming the tensor.
fn get(vb: &VarBuilder, shape: impl Into<candle_core::Shape>, name: &str, init: Init) -> Result<Tensor> {
    let shape = shape.into();
    vb.get_with_hints(shape.clone(), name, init).map_err(|e| {
        let full = if vb.prefix().is_empty() { name.to_string() } else { format!("{}.{name}", vb.prefix()) };
        let msg = match e {
            candle_core::Error::CannotFindTensor { .. } => "missing".to_string(),
            e => format!("expected shape {:?}: {e}", shape.dims()),
        };
        Error::tensor(VB_SOURCE, full, msg)
    })
}

/// `σ(x) = (1 + tanh(x/2)) / 2`: built from ops with a backward pass, exact in f32 to rounding.
fn sigmoid(x: &Tensor) -> Result<Tensor> {
    Ok(((x * 0.5)?.tanh()? + 1.0)?.affine(0.5, 0.0)?)
}

impl LstmCell {
    fn new(inp: usize, h: usize, vb: &VarBuilder, suffix: &str) -> Result<Self> {
        let bound = 1.0 / (h as f64).sqrt();
        let init = Init::Uniform { lo: -bound, up: bound };
        Ok(Self {
            w_ih: get(vb, (4 * h, inp), &format!("weight_ih_{suffix}"), init)?,
            w_hh: get(vb, (4 * h, h), &format!("weight_hh_{suffix}"), init)?,
            b_ih: get(vb, 4 * h, &format!("bias_ih_{suffix}"), init)?,
            b_hh: get(vb, 4 * h, &format!("bias_hh_{suffix}"), init)?,
        })
    }

    /// Runs the recurrence over `x [B, T, in]` (h0 = c0 = 0), backwards in time when `reverse`;
    /// returns `[B, T, h]` with each output at its own time index.
    fn run(&self, x: &Tensor, reverse: bool) -> Result<Tensor> {
        let (_, t_len, _) = x.dims3()?;
        let h = self.w_hh.dim(1)?;
        // Input projections of all steps at once: [B, T, 4h].
        let pre = x.broadcast_matmul(&self.w_ih.t()?)?.broadcast_add(&(&self.b_ih + &self.b_hh)?)?;
        let w_hh_t = self.w_hh.t()?;
        let mut outs: Vec<Tensor> = Vec::with_capacity(t_len);
        let mut state: Option<(Tensor, Tensor)> = None;
        // h0 = 0 still goes through W_hh, so W_hh gets its (zero) gradient even for a one-token
        // prompt, as in PyTorch (the optimizer rejects parameters without a gradient).
        let h0 = Tensor::zeros((x.dim(0)?, h), x.dtype(), x.device())?;
        for step in 0..t_len {
            let t = if reverse { t_len - 1 - step } else { step };
            let h_prev = state.as_ref().map_or(&h0, |(h_prev, _)| h_prev);
            let gates = (pre.narrow(1, t, 1)?.squeeze(1)? + h_prev.matmul(&w_hh_t)?)?;
            let i = sigmoid(&gates.narrow(1, 0, h)?)?;
            let f = sigmoid(&gates.narrow(1, h, h)?)?;
            let g = gates.narrow(1, 2 * h, h)?.tanh()?;
            let o = sigmoid(&gates.narrow(1, 3 * h, h)?)?;
            let c = match &state {
                Some((_, c_prev)) => ((f * c_prev)? + (i * g)?)?,
                None => (i * g)?,
            };
            let h_t = (o * c.tanh()?)?;
            outs.push(h_t.clone());
            state = Some((h_t, c));
        }
        if reverse {
            outs.reverse();
        }
        Ok(Tensor::stack(&outs, 1)?)
    }
}

impl PromptEncoder {
    /// Builds the encoder from `vb` with peft's parameter names (`embedding.weight`,
    /// `lstm_head.weight_ih_l0`, `lstm_head.weight_ih_l0_reverse`, …, `mlp_head.0.weight`, …).
    /// Every tensor must have the shape `cfg` implies; a fresh `VarMap`-backed `vb` is initialised
    /// like PyTorch (embedding N(0,1), LSTM and Linear uniform ±1/√fan).
    pub fn new(cfg: &PromptEncoderConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate(Path::new(VB_SOURCE))?;
        let (d, h) = (cfg.token_dim, cfg.hidden);
        let embedding = get(&vb, (cfg.rows(), d), "embedding.weight", Init::Randn { mean: 0.0, stdev: 1.0 })?;
        let mut params = vec![("embedding.weight".to_string(), embedding.clone())];
        let linear = |inp: usize, out: usize, name: String, params: &mut Vec<(String, Tensor)>| -> Result<Linear> {
            let l = Linear::new(inp, out, &vb, &name)?;
            params.push((format!("{name}.weight"), l.weight.clone()));
            params.push((format!("{name}.bias"), l.bias.clone()));
            Ok(l)
        };
        let head = match cfg.kind {
            EncoderKind::Embedding => Head::Embedding,
            EncoderKind::Mlp => Head::Mlp([
                linear(d, h, "mlp_head.0".into(), &mut params)?,
                linear(h, h, "mlp_head.2".into(), &mut params)?,
                linear(h, d, "mlp_head.4".into(), &mut params)?,
            ]),
            EncoderKind::Lstm => {
                let lvb = vb.pp("lstm_head");
                let mut cells = Vec::with_capacity(cfg.layers);
                for layer in 0..cfg.layers {
                    let inp = if layer == 0 { d } else { 2 * h };
                    let pair =
                        [LstmCell::new(inp, h, &lvb, &format!("l{layer}"))?, LstmCell::new(inp, h, &lvb, &format!("l{layer}_reverse"))?];
                    for (cell, suffix) in pair.iter().zip(["", "_reverse"]) {
                        for (kind, t) in
                            [("weight_ih", &cell.w_ih), ("weight_hh", &cell.w_hh), ("bias_ih", &cell.b_ih), ("bias_hh", &cell.b_hh)]
                        {
                            params.push((format!("lstm_head.{kind}_l{layer}{suffix}"), t.clone()));
                        }
                    }
                    cells.push(pair);
                }
                let mid = match cfg.lstm_head {
                    LstmHead::Peft => 2 * h,
                    LstmHead::FewGlue => h,
                };
                let mlp = [linear(2 * h, mid, "mlp_head.0".into(), &mut params)?, linear(mid, d, "mlp_head.2".into(), &mut params)?];
                Head::Lstm { cells, mlp }
            }
        };
        Ok(Self { cfg: cfg.clone(), embedding, head, params })
    }

    /// A freshly initialised, trainable encoder and the `VarMap` holding its parameters
    /// (names as in peft), on `device` in `dtype`.
    pub fn fresh(cfg: &PromptEncoderConfig, dtype: DType, device: &Device) -> Result<(Self, VarMap)> {
        let map = VarMap::new();
        let enc = Self::new(cfg, VarBuilder::from_varmap(&map, dtype, device))?;
        Ok((enc, map))
    }

    /// A freshly initialised encoder whose values depend only on `seed` (PyTorch's init rules:
    /// embedding N(0,1), LSTM uniform ±1/√h, Linear weight and bias uniform ±1/√in), so a training
    /// run is reproducible. Not yet trainable: see [`Self::to_trainable`].
    pub fn seeded(cfg: &PromptEncoderConfig, seed: u64, device: &Device) -> Result<Self> {
        use rand::SeedableRng;
        use rand_distr::{Distribution, Normal, Uniform};
        let (template, _) = Self::fresh(cfg, DType::F32, &Device::Cpu)?;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x9E37_79B9_7F4A_7C15);
        let mut tensors = std::collections::HashMap::new();
        let bad = |e: String| Error::input(format!("prompt-encoder init: {e}"));
        for (name, t) in template.named_tensors() {
            let n = t.elem_count();
            let values: Vec<f32> = if name == "embedding.weight" {
                let normal = Normal::new(0f32, 1.0).map_err(|e| bad(e.to_string()))?;
                (0..n).map(|_| normal.sample(&mut rng)).collect()
            } else {
                let fan = if name.starts_with("lstm_head.") {
                    cfg.hidden
                } else {
                    // `mlp_head.K.weight` is [out, in]; its bias shares the weight's fan-in.
                    let weight = format!("{}.weight", name.trim_end_matches(".bias").trim_end_matches(".weight"));
                    let w = template.named_tensors().iter().find(|(n, _)| *n == weight).map(|(_, w)| w.dim(1)).transpose()?;
                    w.ok_or_else(|| bad(format!("no weight for `{name}`")))?
                };
                let bound = 1.0 / (fan.max(1) as f32).sqrt();
                let uniform = Uniform::new_inclusive(-bound, bound).map_err(|e| bad(e.to_string()))?;
                (0..n).map(|_| uniform.sample(&mut rng)).collect()
            };
            tensors.insert(name.clone(), Tensor::from_vec(values, t.shape(), device)?);
        }
        Self::with_config(cfg, tensors, Path::new(VB_SOURCE))
    }

    /// A trainable copy of this encoder: every parameter becomes a `Var` in the returned `VarMap`.
    pub fn to_trainable(&self) -> Result<(Self, VarMap)> {
        let map = VarMap::new();
        {
            let mut data = map.data().lock().map_err(|_| Error::input("VarMap lock poisoned"))?;
            for (name, t) in &self.params {
                data.insert(name.clone(), candle_core::Var::from_tensor(&t.copy()?)?);
            }
        }
        let enc = Self::new(&self.cfg, VarBuilder::from_varmap(&map, self.embedding.dtype(), self.embedding.device()))?;
        Ok((enc, map))
    }

    /// The sizes of this encoder.
    pub fn config(&self) -> &PromptEncoderConfig {
        &self.cfg
    }

    /// All parameters with peft's names (no `prompt_encoder.default.` prefix).
    pub fn named_tensors(&self) -> &[(String, Tensor)] {
        &self.params
    }

    /// The embedding table `[rows, D]`.
    pub fn embedding(&self) -> &Tensor {
        &self.embedding
    }

    /// The device the parameters live on.
    pub fn device(&self) -> &Device {
        self.embedding.device()
    }

    /// Checks `indices`: an integer tensor `[B, T]` whose values are rows of `embedding.weight`.
    fn check_indices(&self, indices: &Tensor) -> Result<()> {
        if indices.rank() != 2 {
            return Err(Error::input(format!("prompt-encoder `indices`: expected shape [batch, tokens], got {:?}", indices.dims())));
        }
        if !matches!(indices.dtype(), DType::U8 | DType::U32 | DType::I64) {
            return Err(Error::input(format!("prompt-encoder `indices`: expected an integer dtype, got {:?}", indices.dtype())));
        }
        let rows = self.cfg.rows();
        let values = indices.to_dtype(DType::I64)?.flatten_all()?.to_vec1::<i64>()?;
        if let Some(bad) = values.iter().find(|&&v| v < 0 || v as u64 >= rows as u64) {
            return Err(Error::input(format!(
                "prompt-encoder `indices`: value {bad} is outside `embedding.weight`, which has {rows} rows (valid 0..{rows})"
            )));
        }
        Ok(())
    }

    /// Encodes `indices [B, T]` (integer, each < rows) into `[B, T, D]`. Differentiable with
    /// respect to every parameter. Each row is one sequence for the LSTM.
    pub fn forward(&self, indices: &Tensor) -> Result<Tensor> {
        self.check_indices(indices)?;
        let (b, t) = indices.dims2()?;
        let ids = indices.flatten_all()?.to_device(self.device())?;
        let mut x = self.embedding.index_select(&ids, 0)?.reshape((b, t, self.cfg.token_dim))?;
        match &self.head {
            Head::Embedding => {}
            Head::Mlp([l0, l2, l4]) => {
                x = l4.forward(&l2.forward(&l0.forward(&x)?.relu()?)?.relu()?)?;
            }
            Head::Lstm { cells, mlp: [l0, l2] } => {
                for [fwd, bwd] in cells {
                    x = Tensor::cat(&[fwd.run(&x, false)?, bwd.run(&x, true)?], D::Minus1)?;
                }
                x = l2.forward(&l0.forward(&x)?.relu()?)?;
            }
        }
        Ok(x)
    }

    /// What peft saves as `prompt_embeddings`: `forward(arange(rows))`, `[rows, D]`.
    pub fn prompt_embeddings(&self) -> Result<Tensor> {
        let rows = self.cfg.rows() as u32;
        let ids = Tensor::arange(0u32, rows, self.device())?.unsqueeze(0)?;
        Ok(self.forward(&ids)?.squeeze(0)?)
    }
}

/// Replaces the placeholder path of a tensor/config error raised while building from a
/// `VarBuilder` with the file the tensors came from.
pub(crate) fn at_path(e: Error, path: &Path) -> Error {
    let fix = |p: PathBuf| if p == Path::new(VB_SOURCE) { path.to_path_buf() } else { p };
    match e {
        Error::Tensor { path: p, tensor, msg } => Error::Tensor { path: fix(p), tensor, msg },
        Error::Config { path: p, field, msg } => Error::Config { path: fix(p), field, msg },
        e => e,
    }
}
