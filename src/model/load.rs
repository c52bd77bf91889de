//! From a directory on disk to a ready `dyn Backbone`: config, weights, validation.

use super::bert::{Bert, BertConfig};
use super::checkpoint::{Checkpoint, CheckpointFormat};
use super::glm::{Glm, GlmConfig};
use super::gpt2::{Gpt2, Gpt2Config};
use super::layers::Gelu;
use super::{Backbone, ModelKind};
use crate::error::read_text;
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A model's hyper-parameters, whichever the architecture.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(untagged)]
pub enum ModelConfig {
    /// GLM.
    Glm(GlmConfig),
    /// GPT-2.
    Gpt2(Gpt2Config),
    /// BERT masked LM.
    Bert(BertConfig),
}

/// The most layers a config may describe.
pub const MAX_LAYERS: usize = 1024;

/// The widest hidden size a config may describe (GPT-3 175B: 12,288).
pub(crate) const MAX_HIDDEN: usize = 1 << 20;
/// The largest vocabulary or segment table a config may describe.
pub(crate) const MAX_ROWS: usize = 1 << 24;
/// The longest position table a config may describe: position ids are u32 (a table this long
/// is refused by the parameter bound or the memory check anyway, with a clearer message).
pub(crate) const MAX_POSITIONS: usize = u32::MAX as usize - 1;
/// The most parameters a config may describe in all (GLM-130B: 1.3·10¹¹).
pub(crate) const MAX_PARAMETERS: usize = 1 << 40;

/// Where a config built in code (not read from a file) is named in errors.
pub(crate) const IN_CODE: &str = "<model config>";

/// Checks that the size `field` is at least 1 and at most `max` (a damaged or mistyped config;
/// it also keeps every product of sizes far from overflowing).
pub(crate) fn check_size(path: &Path, field: &str, v: usize, max: usize) -> Result<()> {
    if v == 0 {
        return Err(Error::config(path, field, "must be positive"));
    }
    if v > max {
        let what = if field.contains("layer") { "layers is beyond any model wenhui loads" } else { "is beyond any model wenhui builds" };
        let example = if field.contains("layer") { "; GLM-130B has 70" } else { "" };
        return Err(Error::config(path, field, format!("{v} {what} (at most {max}{example}): is the config damaged?")));
    }
    Ok(())
}

/// Checks a layer-norm epsilon: a positive finite number (a negative one turns every output NaN).
pub(crate) fn check_eps(path: &Path, field: &str, v: f64) -> Result<()> {
    if !(v.is_finite() && v > 0.0) {
        return Err(Error::config(path, field, format!("{v} must be a positive number (typically 1e-5 or 1e-12)")));
    }
    Ok(())
}

/// Checks a dropout probability: in [0, 1).
pub(crate) fn check_prob(path: &Path, field: &str, v: f64) -> Result<()> {
    if !(0.0..1.0).contains(&v) {
        return Err(Error::config(path, field, format!("{v} is not a dropout probability in [0, 1)")));
    }
    Ok(())
}

/// Checks an initial weights' standard deviation: finite and not negative.
pub(crate) fn check_init(path: &Path, field: &str, v: f64) -> Result<()> {
    if !(v.is_finite() && v >= 0.0) {
        return Err(Error::config(path, field, format!("{v} must be a standard deviation ≥ 0 (typically 0.02)")));
    }
    Ok(())
}

/// Checks the parameter count of a config, given as the parts `(field, count)` it is made of
/// (`None`: the part overflowed): refused beyond [`MAX_PARAMETERS`], naming the largest part's field.
pub(crate) fn check_total(path: &Path, parts: &[(&str, Option<usize>)]) -> Result<usize> {
    let total = parts.iter().try_fold(0usize, |sum, (_, n)| n.and_then(|n| sum.checked_add(n)));
    match total {
        Some(t) if t <= MAX_PARAMETERS => Ok(t),
        _ => {
            let (field, _) = parts.iter().max_by_key(|(_, n)| n.unwrap_or(usize::MAX)).copied().unwrap_or(("hidden_size", None));
            let count = parts.iter().map(|(_, n)| n.map_or(f64::INFINITY, |n| n as f64)).sum::<f64>();
            Err(Error::config(
                path,
                field,
                format!(
                    "the config describes {count:.2e} parameters, most of them from this field: beyond any model wenhui builds (at most {:.2e}; GLM-130B has 1.3e11)",
                    MAX_PARAMETERS as f64
                ),
            ))
        }
    }
}

/// `a × b × …` with overflow as `None`.
pub(crate) fn product(factors: &[usize]) -> Option<usize> {
    factors.iter().try_fold(1usize, |p, &f| p.checked_mul(f))
}

/// `a + b + …` with overflow as `None`.
pub(crate) fn sum(terms: &[Option<usize>]) -> Option<usize> {
    terms.iter().try_fold(0usize, |s, t| t.and_then(|t| s.checked_add(t)))
}

impl ModelConfig {
    /// Reads a Hugging Face style `config.json`. The architecture comes from `model_type`
    /// (`glm`, `gpt2`, `bert`), or from the field names when it is absent.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = read_text(path)?;
        if text.trim().is_empty() {
            return Err(Error::file(path, "empty config file"));
        }
        let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::file(path, format!("not valid JSON: {e}")))?;
        Self::from_json(json, path)
    }

    /// Parses config JSON; `path` names the source in errors.
    pub fn from_json(json: serde_json::Value, path: &Path) -> Result<Self> {
        let obj = json.as_object().ok_or_else(|| Error::file(path, "the config must be a JSON object"))?;
        let kind = match obj.get("model_type").and_then(|v| v.as_str()) {
            Some("glm") => ModelKind::Glm,
            Some("gpt2") => ModelKind::Gpt2,
            Some("bert") => ModelKind::Bert,
            Some(other) => return Err(Error::config(path, "model_type", format!("`{other}` is not supported (glm, gpt2 or bert)"))),
            None if obj.contains_key("num_layers") => ModelKind::Glm,
            None if obj.contains_key("n_embd") => ModelKind::Gpt2,
            None if obj.contains_key("num_hidden_layers") => ModelKind::Bert,
            None => return Err(Error::config(path, "model_type", "missing, and the fields do not say which architecture this is")),
        };
        let parse_err = |e: serde_json::Error| {
            let msg = e.to_string();
            // serde names the field only for a missing or unknown one; a value of the wrong type
            // or range quotes the value instead, which is no field name.
            match msg.split('`').nth(1) {
                Some(field) if msg.starts_with("missing field") || msg.starts_with("unknown field") => {
                    Error::config(path, field, msg.clone())
                }
                _ => Error::file(path, format!("not a valid {kind} config: {msg}")),
            }
        };
        let cfg = match kind {
            ModelKind::Glm => ModelConfig::Glm(serde_json::from_value(json).map_err(parse_err)?),
            ModelKind::Gpt2 => ModelConfig::Gpt2(serde_json::from_value(json).map_err(parse_err)?),
            ModelKind::Bert => ModelConfig::Bert(serde_json::from_value(json).map_err(parse_err)?),
        };
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// The config as Hugging Face style JSON, with `model_type` so it loads back.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.insert("model_type".into(), serde_json::json!(self.kind().to_string()));
        }
        v
    }

    /// The architecture.
    pub fn kind(&self) -> ModelKind {
        match self {
            ModelConfig::Glm(_) => ModelKind::Glm,
            ModelConfig::Gpt2(_) => ModelKind::Gpt2,
            ModelConfig::Bert(_) => ModelKind::Bert,
        }
    }

    /// `(layers, hidden size, attention heads, vocabulary)`, whichever the architecture.
    pub fn dims(&self) -> (usize, usize, usize, usize) {
        match self {
            ModelConfig::Glm(c) => (c.num_layers, c.hidden_size, c.num_attention_heads, c.vocab_size),
            ModelConfig::Bert(c) => (c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.vocab_size),
            ModelConfig::Gpt2(c) => (c.n_layer, c.n_embd, c.n_head, c.vocab_size),
        }
    }

    /// The GELU variant; `path` names the config in errors (an unsupported activation name).
    pub fn gelu(&self, path: &Path) -> Result<Gelu> {
        match self {
            ModelConfig::Glm(c) => Ok(c.gelu),
            ModelConfig::Bert(c) => c.gelu(path),
            ModelConfig::Gpt2(c) => c.gelu(path),
        }
    }

    /// Checks the fields; `path` names the source in errors. Sizes are bounded (layers by
    /// [`MAX_LAYERS`], widths, vocabularies and tables, and the parameter count in all), so no
    /// product of them overflows; epsilons must be positive and dropout probabilities in [0, 1).
    pub fn validate(&self, path: &Path) -> Result<()> {
        match self {
            ModelConfig::Glm(c) => c.validate(path),
            ModelConfig::Gpt2(c) => c.validate(path),
            ModelConfig::Bert(c) => c.validate(path),
        }
    }

    /// `(name, shape)` of every parameter the model reads.
    pub fn parameter_shapes(&self) -> Vec<(String, Vec<usize>)> {
        match self {
            ModelConfig::Glm(c) => c.parameter_shapes(),
            ModelConfig::Gpt2(c) => c.parameter_shapes(),
            ModelConfig::Bert(c) => c.parameter_shapes(),
        }
    }

    /// Builds the backbone from `vb` (tensors or a `VarMap` for training). The config is
    /// validated first, and `vb`'s dtype must be one its device computes in
    /// ([`crate::device::check_dtype`]: f32 or f64 on the CPU, float types on a GPU).
    pub fn build(&self, vb: VarBuilder) -> Result<Box<dyn Backbone>> {
        self.validate(Path::new(IN_CODE))?;
        crate::device::check_dtype(vb.device(), vb.dtype())?;
        Ok(match self {
            ModelConfig::Glm(c) => Box::new(Glm::new(c, vb)?),
            ModelConfig::Gpt2(c) => Box::new(Gpt2::new(c, vb)?),
            ModelConfig::Bert(c) => Box::new(Bert::new(c, vb)?),
        })
    }

    /// Builds a trainable model: every parameter is a `Var` in the returned `VarMap`, initialised
    /// from `weights` when given (names and shapes are checked) and from the reference init otherwise.
    pub fn build_trainable(
        &self,
        weights: Option<HashMap<String, Tensor>>,
        dtype: DType,
        device: &Device,
    ) -> Result<(VarMap, Box<dyn Backbone>)> {
        self.validate(Path::new(IN_CODE))?;
        crate::device::check_dtype(device, dtype)?;
        let varmap = VarMap::new();
        if let Some(weights) = weights {
            let mut data = varmap.data().lock().map_err(|_| Error::input("variable map poisoned"))?;
            for (name, t) in self.checked_weights(&weights)? {
                data.insert(name.clone(), Var::from_tensor(&t.to_dtype(dtype)?.to_device(device)?)?);
            }
        }
        let model = self.build(VarBuilder::from_varmap(&varmap, dtype, device))?;
        Ok((varmap, model))
    }

    /// Builds an inference model on plain tensors (no `Var`, nothing records gradients): the
    /// layers take the same paths as for a loaded checkpoint (on CUDA, the fused decoding steps),
    /// which a model from [`Self::build_trainable`] does not. Names and shapes are checked.
    pub fn build_frozen(&self, weights: HashMap<String, Tensor>, dtype: DType, device: &Device) -> Result<Box<dyn Backbone>> {
        self.validate(Path::new(IN_CODE))?;
        crate::device::check_dtype(device, dtype)?;
        let mut tensors = HashMap::new();
        for (name, t) in self.checked_weights(&weights)? {
            tensors.insert(name.clone(), t.to_dtype(dtype)?.to_device(device)?);
        }
        self.build(VarBuilder::from_tensors(tensors, dtype, device))
    }

    /// Every parameter of this configuration in `weights`, in order, with its shape checked.
    fn checked_weights<'a>(&self, weights: &'a HashMap<String, Tensor>) -> Result<Vec<(&'a String, &'a Tensor)>> {
        self.parameter_shapes()
            .iter()
            .map(|(name, shape)| {
                let (name, t) = weights.get_key_value(name).ok_or_else(|| Error::tensor("<weights>", name, "missing"))?;
                if t.dims() != shape.as_slice() {
                    return Err(Error::tensor("<weights>", name, format!("wrong shape: expected {shape:?}, found {:?}", t.dims())));
                }
                Ok((name, t))
            })
            .collect()
    }

    /// GLM config from the `args` namespace of a THUDM checkpoint; the vocabulary and (when
    /// `max_position_embeddings` is absent) the sequence length come from the tensor shapes.
    fn from_megatron(ckpt: &Checkpoint, source: &Path) -> Result<Option<Self>> {
        let (Some(args), Some(emb)) = (&ckpt.megatron_args, ckpt.tensors.get("word_embeddings.weight")) else {
            return Ok(None);
        };
        let get = |k: &str| args.get(k).and_then(|v| v.as_u64()).map(|v| v as usize);
        let need = |k: &str| {
            get(k).ok_or_else(|| Error::config(source, k, "absent from the checkpoint's args; put a config.json beside the checkpoint"))
        };
        let block_lm = args.get("block_lm").and_then(|v| v.as_bool()).unwrap_or(true);
        let max_seq = match (get("max_position_embeddings"), ckpt.tensors.get("transformer.position_embeddings.weight")) {
            (Some(m), _) => m,
            (None, Some(p)) => p.dim(0)? - usize::from(block_lm),
            (None, None) => need("max_position_embeddings")?,
        };
        let mut cfg = GlmConfig::new(need("num_layers")?, need("hidden_size")?, need("num_attention_heads")?, emb.dim(0)?, max_seq);
        cfg.block_position_encoding = block_lm;
        cfg.validate(source)?;
        Ok(Some(ModelConfig::Glm(cfg)))
    }
}

/// How to load a model.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Compute dtype (weights stored in f16/bf16 are converted to it).
    pub dtype: DType,
    /// Device.
    pub device: Device,
    /// Overrides GLM's GELU variant (THUDM training code: tanh; hub port: erf).
    pub gelu: Option<Gelu>,
    /// A `config.json` to use instead of the one beside the weights.
    pub config: Option<PathBuf>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        // The CLI's `--device` / `--dtype` (CPU, f32 unless set).
        Self { dtype: crate::device::default_dtype(), device: crate::device::default_device(), gelu: None, config: None }
    }
}

/// A loaded model and what is known about where it came from.
pub struct LoadedModel {
    /// The model.
    pub backbone: Box<dyn Backbone>,
    /// Its hyper-parameters.
    pub config: ModelConfig,
    /// Number of parameters.
    pub parameter_count: usize,
    /// Format of the weights file(s).
    pub format: CheckpointFormat,
    /// Dtypes of the stored weights, with tensor counts.
    pub stored_dtypes: Vec<(DType, usize)>,
    /// Where the weights came from.
    pub source: PathBuf,
    /// A cheap identity of the weights ([`weights_fingerprint`]).
    pub fingerprint: String,
}

/// A model's hyper-parameters and weights, read and checked but not built (see [`read_weights`]).
pub struct ModelWeights {
    /// Its hyper-parameters.
    pub config: ModelConfig,
    /// Every parameter by its canonical name, in the requested dtype and device.
    pub params: HashMap<String, Tensor>,
    /// Number of parameters.
    pub parameter_count: usize,
    /// Format of the weights file(s).
    pub format: CheckpointFormat,
    /// Dtypes of the stored weights, with tensor counts.
    pub stored_dtypes: Vec<(DType, usize)>,
    /// Where the weights came from.
    pub source: PathBuf,
    /// A cheap identity of the weights ([`weights_fingerprint`]).
    pub fingerprint: String,
}

/// FNV-1a's starting value.
pub(crate) const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// Folds `bytes` into the FNV-1a hash `h`: stable across builds and platforms, so it can name
/// files and be compared with a value saved by another run.
pub(crate) fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A cheap identity of a set of weights, as 16 hex digits: FNV-1a over every tensor's name,
/// shape and up to 256 evenly spaced values (read as f32, so exactly for f32, f16 and bf16
/// values), and two different checkpoints practically never share it. [`read_weights`] takes it
/// of the weights as stored, before any conversion, so it depends neither on the path nor on the
/// dtype or device they are loaded to. Runs save it to tell whether the model given later
/// (`--resume`, a reused result) is the one they used.
pub fn weights_fingerprint(params: &HashMap<String, Tensor>) -> Result<String> {
    let mut names: Vec<&String> = params.keys().collect();
    names.sort();
    let mut h = FNV_OFFSET;
    for name in names {
        let t = &params[name];
        h = fnv1a(h, name.as_bytes());
        for &d in t.dims() {
            h = fnv1a(h, &(d as u64).to_le_bytes());
        }
        let n = t.elem_count();
        let take = n.min(256);
        if take == 0 {
            continue;
        }
        let idx: Vec<i64> = (0..take).map(|i| (i * n / take) as i64).collect();
        let values = t.flatten_all()?.index_select(&Tensor::new(idx, t.device())?, 0)?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        for v in values {
            h = fnv1a(h, &v.to_bits().to_le_bytes());
        }
    }
    Ok(format!("{h:016x}"))
}

/// Reads the config and weights in `path` (a model directory, a THUDM checkpoint directory or a
/// weights file): names normalised, shapes checked against the config (which is validated, so
/// its sizes are bounded). The weights come in `opts.dtype` whatever it is (e.g. f16 on the CPU, to
/// convert or export them); building a model from them checks that its device computes in it.
pub fn read_weights(path: &Path, opts: &LoadOptions) -> Result<ModelWeights> {
    let dir = if path.is_dir() { path.to_path_buf() } else { path.parent().unwrap_or(Path::new(".")).to_path_buf() };
    let config_path = opts.config.clone().unwrap_or_else(|| dir.join("config.json"));
    let mut ckpt = Checkpoint::read(path)?;
    let mut config = if config_path.is_file() || opts.config.is_some() {
        ModelConfig::from_file(&config_path)?
    } else if let Some(cfg) = ModelConfig::from_megatron(&ckpt, &ckpt.source)? {
        cfg
    } else {
        return Err(Error::file(&config_path, "missing: every model directory needs a config.json (or pass --config)"));
    };
    if let (ModelConfig::Glm(c), Some(g)) = (&mut config, opts.gelu) {
        c.gelu = g;
    }
    normalise_names(&mut ckpt, config.kind());
    let format = ckpt.format;
    let stored_dtypes = ckpt.dtypes();
    let source = ckpt.source.clone();
    let expected = config.parameter_shapes();
    let parameter_count = expected.iter().map(|(_, s)| s.iter().product::<usize>()).sum();
    // The weights as stored (the names the model uses), before conversion: see weights_fingerprint.
    let stored: HashMap<String, Tensor> =
        expected.iter().filter_map(|(name, _)| ckpt.tensors.get(name).map(|t| (name.clone(), t.clone()))).collect();
    let fingerprint = weights_fingerprint(&stored)?;
    drop(stored);
    let params = ckpt.into_params(&expected, opts.dtype, &opts.device)?;
    Ok(ModelWeights { config, params, parameter_count, format, stored_dtypes, source, fingerprint })
}

/// Loads the model in `path` (a model directory, a THUDM checkpoint directory or a weights file).
/// `opts.dtype` must be one `opts.device` computes in ([`crate::device::check_dtype`]: f32 or
/// f64 on the CPU, bf16/f16 on a GPU too); this is checked before any weight is read.
pub fn load_model(path: &Path, opts: &LoadOptions) -> Result<LoadedModel> {
    crate::device::check_dtype(&opts.device, opts.dtype)?;
    let ModelWeights { config, params, parameter_count, format, stored_dtypes, source, fingerprint } = read_weights(path, opts)?;
    let vb = VarBuilder::from_tensors(params, opts.dtype, &opts.device);
    let backbone = config.build(vb)?;
    Ok(LoadedModel { backbone, config, parameter_count, format, stored_dtypes, source, fingerprint })
}

/// Accepts the naming variants found in the wild: GLM saved with a `glm.` prefix
/// (`GLMFor*` classes), GPT-2 saved from `GPT2Model` (no `transformer.` prefix).
fn normalise_names(ckpt: &mut Checkpoint, kind: ModelKind) {
    let rename = |ckpt: &mut Checkpoint, f: &dyn Fn(&str) -> Option<String>| {
        let names: Vec<String> = ckpt.tensors.keys().cloned().collect();
        for n in names {
            if let Some(new) = f(&n) {
                if !ckpt.tensors.contains_key(&new) {
                    let t = ckpt.tensors.remove(&n).expect("present");
                    ckpt.tensors.insert(new, t);
                }
            }
        }
    };
    match kind {
        ModelKind::Glm => rename(ckpt, &|n| n.strip_prefix("glm.").map(String::from)),
        ModelKind::Gpt2 => {
            if !ckpt.tensors.contains_key("transformer.wte.weight") {
                rename(ckpt, &|n| (!n.starts_with("lm_head.")).then(|| format!("transformer.{n}")));
            }
        }
        ModelKind::Bert => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::glm::GlmConfig;
    use crate::model::{Attention, BackboneInput};

    #[test]
    fn frozen_build_computes_the_trainable_model_without_recording_gradients() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let cfg = ModelConfig::Glm(GlmConfig::new(2, 16, 2, 40, 12));
        let dev = Device::Cpu;
        let weights = cfg.init_weights(3)?;
        let (_vars, trainable) = cfg.build_trainable(Some(weights.clone()), DType::F32, &dev)?;
        let frozen = cfg.build_frozen(weights.clone(), DType::F32, &dev)?;
        let ids = Tensor::new(&[[5u32, 9, 1, 33, 7, 2]], &dev)?;
        let input = BackboneInput::ids(ids).with_attention(Attention::Sep(vec![4]));
        let a = trainable.forward(&input, None)?.logits;
        let b = frozen.forward(&input, None)?.logits;
        assert!(a.track_op() && !b.track_op(), "only the trainable model records gradients");
        let diff = crate::ops::max_abs_diff(&a, &b)?;
        // The recording path keeps intermediates for its backward, so sums may round differently.
        assert!(diff < 1e-5, "same weights, same logits: {diff}");

        let mut missing = weights.clone();
        let name = cfg.parameter_shapes()[0].0.clone();
        missing.remove(&name);
        let err = cfg.build_frozen(missing, DType::F32, &dev).err().expect("a missing weight is an error").to_string();
        assert!(err.contains(&name) && err.contains("missing"), "{err}");
        let mut wrong = weights;
        wrong.insert(name.clone(), Tensor::zeros(3, DType::F32, &dev)?);
        let err = cfg.build_frozen(wrong, DType::F32, &dev).err().expect("a wrong shape is an error").to_string();
        assert!(err.contains(&name) && err.contains("wrong shape"), "{err}");
        Ok(())
    }
}
