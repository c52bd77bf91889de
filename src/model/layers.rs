//! Small building blocks with explicit initialisation, so a model built from a fresh `VarMap`
//! starts from the reference code's init (normal σ = 0.02, LN γ = 1, β = 0).

use crate::ops;
use crate::Result;
use candle_core::Tensor;
use candle_nn::{Init, VarBuilder};

/// Normal init with standard deviation `std`.
pub(crate) fn normal(std: f64) -> Init {
    Init::Randn { mean: 0.0, stdev: std }
}

/// `x [.., in] @ w [in, out]` as one 2D GEMM over all leading rows (one big matmul is faster
/// than a batched one with a broadcast weight).
pub(crate) fn rows_matmul(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let dims = x.dims();
    let (inp, out) = w.dims2()?;
    let rows = x.elem_count() / inp;
    let y = x.contiguous()?.reshape((rows, inp))?.matmul(w)?;
    let mut shape = dims.to_vec();
    *shape.last_mut().expect("rank ≥ 1") = out;
    Ok(y.reshape(shape)?)
}

/// Logits `x · tableᵀ` against a (tied) embedding table `[V, H]`.
///
/// With the fused ops this is one node ([`ops::linear_no_bias`]). In training, candle's matmul
/// against `tableᵀ` would send the table's gradient through a transposed view and a strided
/// accumulation. In CPU decoding it packed the whole table for a few rows every step, where the
/// fused op's dot products stream it once (4 rows, GLM-Base: 19.2–20.5 → 15.2–16.1 ms per
/// step). GPU inference keeps cuBLAS through candle's matmul, as measured on the H200.
pub(crate) fn tied_logits(x: &Tensor, table: &Tensor) -> Result<Tensor> {
    let fused = ops::fused_cpu(x) || (table.track_op() && ops::cuda_fused(x));
    if fused && x.dtype() == table.dtype() {
        return Ok(ops::linear_no_bias(x, table)?);
    }
    rows_matmul(x, &table.t()?)
}

/// `y = x Wᵀ + b` with torch's `[out, in]` weight layout.
#[derive(Debug, Clone)]
pub(crate) struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    pub(crate) fn new(inp: usize, out: usize, std: f64, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints((out, inp), "weight", normal(std))?;
        let bias = vb.get_with_hints(out, "bias", Init::Const(0.0))?;
        Ok(Self { weight, bias: Some(bias) })
    }
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if let (Some(b), true) = (&self.bias, ops::fused_cpu(x) || ops::cuda_fused(x)) {
            return Ok(ops::linear(x, &self.weight, b)?);
        }
        // Mixed precision: the (f32 master) weight is cast to the activations' dtype here, so
        // its gradient flows back through the cast.
        let y = rows_matmul(x, &self.weight.to_dtype(x.dtype())?.t()?)?;
        Ok(match &self.bias {
            Some(b) => ops::add_bias(&y, b)?,
            None => y,
        })
    }
    /// Whether the weight or the bias records gradients.
    pub(crate) fn tracks(&self) -> bool {
        self.weight.track_op() || self.bias.as_ref().is_some_and(|b| b.track_op())
    }

    /// The weight, then the bias if any.
    pub(crate) fn params(&self) -> Vec<&Tensor> {
        std::iter::once(&self.weight).chain(&self.bias).collect()
    }

    /// This layer computing with `p` (shaped as [`Self::params`]) instead of its own parameters.
    pub(crate) fn with_params(&self, p: &[Tensor]) -> Self {
        Self { weight: p[0].clone(), bias: self.bias.as_ref().map(|_| p[1].clone()) }
    }

    /// `x·Wᵀ` without the bias (a decoding step adds it inside a fused kernel).
    pub(crate) fn product(&self, x: &Tensor) -> Result<Tensor> {
        rows_matmul(x, &self.weight.to_dtype(x.dtype())?.t()?)
    }

    /// The bias (every layer built by [`Linear::new`] has one).
    pub(crate) fn bias(&self) -> Result<&Tensor> {
        self.bias.as_ref().ok_or_else(|| crate::Error::input("linear layer without a bias"))
    }

    /// `s = residual + self.forward(x)` and `norm(s)`: a decoding step's sublayer end and the next
    /// layer norm, the bias, sum and norm in one CUDA kernel (see [`ops::decode`]).
    pub(crate) fn forward_residual_norm(&self, x: &Tensor, residual: &Tensor, norm: &LayerNorm) -> Result<(Tensor, Tensor)> {
        let (w, b) = (&norm.weight, &norm.bias);
        Ok(ops::decode::bias_residual_layer_norm(&self.product(x)?, self.bias()?, residual, w, b, norm.eps)?)
    }

    /// `gelu(self.forward(x))` with the bias and the GELU in one CUDA kernel (a decoding step, see
    /// [`ops::decode`]).
    pub(crate) fn forward_gelu_step(&self, x: &Tensor, gelu: Gelu) -> Result<Tensor> {
        Ok(ops::decode::bias_gelu(&self.product(x)?, self.bias()?, gelu == Gelu::Erf)?)
    }

    /// `gelu(self.forward(x))`, as one fused node on the CPU (see [`ops::linear_gelu`]).
    pub(crate) fn forward_gelu(&self, x: &Tensor, gelu: Gelu) -> Result<Tensor> {
        if let (Some(b), true) = (&self.bias, ops::fused_cpu(x)) {
            return Ok(ops::linear_gelu(x, &self.weight, b, gelu == Gelu::Erf)?);
        }
        gelu.forward(&self.forward(x)?)
    }
}

/// GPT-2's `Conv1D`: `y = x W + b` with the weight stored `[in, out]`.
#[derive(Debug, Clone)]
pub(crate) struct Conv1D {
    weight: Tensor,
    bias: Tensor,
}

impl Conv1D {
    pub(crate) fn new(inp: usize, out: usize, std: f64, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints((inp, out), "weight", normal(std))?;
        let bias = vb.get_with_hints(out, "bias", Init::Const(0.0))?;
        Ok(Self { weight, bias })
    }
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(ops::add_bias(&rows_matmul(x, &self.weight)?, &self.bias)?)
    }
}

/// Affine layer norm over the last dimension, with a recorded backward (see [`ops::layer_norm`]).
#[derive(Debug, Clone)]
pub(crate) struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    pub(crate) fn new(size: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints(size, "weight", Init::Const(1.0))?;
        let bias = vb.get_with_hints(size, "bias", Init::Const(0.0))?;
        Ok(Self { weight, bias, eps })
    }
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(ops::layer_norm(x, &self.weight, &self.bias, self.eps)?)
    }
    /// γ and β.
    pub(crate) fn params(&self) -> Vec<&Tensor> {
        vec![&self.weight, &self.bias]
    }
    /// This layer norm computing with `p` = [γ, β] instead of its own parameters.
    pub(crate) fn with_params(&self, p: &[Tensor]) -> Self {
        Self { weight: p[0].clone(), bias: p[1].clone(), eps: self.eps }
    }
    /// Whether γ or β records gradients.
    pub(crate) fn tracks(&self) -> bool {
        self.weight.track_op() || self.bias.track_op()
    }
}

/// An embedding table, `[rows, dim]`.
#[derive(Debug, Clone)]
pub(crate) struct Embedding {
    weight: Tensor,
}

impl Embedding {
    pub(crate) fn new(rows: usize, dim: usize, std: f64, vb: VarBuilder) -> Result<Self> {
        Ok(Self { weight: vb.get_with_hints((rows, dim), "weight", normal(std))? })
    }
    pub(crate) fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        Ok(ops::embedding(&self.weight, ids)?)
    }
    pub(crate) fn weight(&self) -> &Tensor {
        &self.weight
    }
}

/// Dropout probabilities of a training step and its seed (`None` = inference).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dropouts {
    /// On attention probabilities.
    pub attn: f64,
    /// On embeddings and sublayer outputs.
    pub hidden: f64,
    /// Step seed.
    pub seed: Option<u64>,
}

impl Dropouts {
    /// Call site `k` (0..4) of layer `layer`; site 0 of "layer" `usize::MAX` is the embedding.
    pub(crate) fn site(layer: usize, k: u64) -> u64 {
        (layer as u64).wrapping_add(1).wrapping_mul(8).wrapping_add(k)
    }
    /// Attention-probability dropout arguments for layer `layer`.
    pub(crate) fn attention(&self, layer: usize) -> (f64, Option<u64>, u64) {
        (self.attn, self.seed, Self::site(layer, 1))
    }
    /// `x + dropout(y)` with the hidden dropout of site `k` of layer `layer`, as one node (a
    /// residual branch).
    pub(crate) fn residual(&self, x: &Tensor, y: &Tensor, layer: usize, k: u64) -> Result<Tensor> {
        match self.seed {
            Some(s) if self.hidden > 0.0 => Ok(ops::residual_dropout(x, y, self.hidden, super::dropout_seed(s, Self::site(layer, k)))?),
            // A recording tape (`model::stack`) takes fused ops only; p = 0 keeps every element.
            _ if ops::tape::recording() => Ok(ops::residual_dropout_op(x, y, 0.0, 0)?),
            _ => Ok((x + y)?),
        }
    }
}

/// What every block of a forward pass shares.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LayerCtx<'a> {
    /// Attention heads.
    pub heads: usize,
    /// GELU variant.
    pub gelu: Gelu,
    /// The 0/1 attention mask.
    pub mask: &'a Tensor,
    /// The `[B or 1, 1, 1, T]` attention logit bias toward keys, if any.
    pub bias: Option<&'a Tensor>,
    /// Dropout of this step.
    pub drop: Dropouts,
}

/// The GELU variants the reference codes use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Gelu {
    /// `0.5x(1 + tanh(√(2/π)(x + 0.044715x³)))`: Megatron / THUDM training code, GPT-2 `gelu_new`.
    #[default]
    Tanh,
    /// `0.5x(1 + erf(x/√2))`: the Hugging Face hub port of GLM, BERT.
    Erf,
}

impl Gelu {
    pub(crate) fn forward(self, x: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Gelu::Tanh => ops::gelu_tanh(x)?,
            Gelu::Erf => ops::gelu_erf(x)?,
        })
    }
}
