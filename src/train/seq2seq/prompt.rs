//! What a seq2seq run trains: the model (variables, or fixed tensors when P-tuning freezes it)
//! and, for a template with `[P]` tokens, the prompt encoder ([`crate::ptuning::seq2seq`]).

use super::Seq2seqConfig;
use crate::model::{Backbone, ModelConfig};
use crate::ptuning::seq2seq::{PromptTuning, PROMPT_DIR};
use crate::ptuning::PromptEncoder;
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor, Var};
use std::collections::HashMap;
use std::path::Path;

/// The model of a run.
pub(super) struct RunModel {
    /// The model.
    pub(super) model: Box<dyn Backbone>,
    /// Its variables by name, sorted (none when frozen).
    pub(super) params: Vec<(String, Var)>,
    /// A frozen model's weights, written with every checkpoint (each is a model directory).
    pub(super) frozen_weights: Option<HashMap<String, Tensor>>,
}

impl RunModel {
    /// Builds the model of `weights` on `device`: from plain tensors when `frozen` (no gradient
    /// is ever kept for them), else as variables.
    pub(super) fn build(config: &ModelConfig, weights: HashMap<String, Tensor>, frozen: bool, device: &Device) -> Result<Self> {
        if frozen {
            let vb = candle_nn::VarBuilder::from_tensors(weights.clone(), DType::F32, device);
            return Ok(Self { model: config.build(vb)?, params: Vec::new(), frozen_weights: Some(weights) });
        }
        let (map, model) = config.build_trainable(Some(weights), DType::F32, device)?;
        Ok(Self { model, params: crate::ptuning::train::vars(&map, "")?, frozen_weights: None })
    }

    /// The weights to save: the frozen ones, or the variables' current values.
    pub(super) fn weights(&self) -> HashMap<String, Tensor> {
        match &self.frozen_weights {
            Some(w) => w.clone(),
            None => self.params.iter().map(|(n, v)| (n.clone(), v.as_tensor().clone())).collect(),
        }
    }
}

/// The prompt options of a run whose template has `pseudo` `[P]` tokens: `None` without any,
/// the configured ones (or the defaults) with some; options for a template without slots are an
/// error.
pub(super) fn prompt_tuning(cfg: &Seq2seqConfig, pseudo: usize) -> Result<Option<PromptTuning>> {
    let p = match (pseudo, &cfg.prompt) {
        (0, Some(_)) => {
            return Err(Error::input(format!(
                "template `{}` has no [P] pseudo tokens, so there is no prompt to tune; add some (e.g. `[P*8] {}`)",
                cfg.layout.template, cfg.layout.template
            )))
        }
        (0, None) => return Ok(None),
        (_, p) => p.clone().unwrap_or_default(),
    };
    p.validate(cfg.lr)?;
    Ok(Some(p))
}

/// The trainable prompt encoder of a run and its variables (named `prompt_encoder.*`, sorted):
/// the state saved in the resumed checkpoint `resumed`, else a fresh one from `seed`. It must make
/// `rows` vectors `width` wide.
pub(super) fn prompt_encoder(
    p: &PromptTuning,
    resumed: Option<&Path>,
    rows: usize,
    width: usize,
    seed: u64,
    device: &Device,
) -> Result<(PromptEncoder, Vec<(String, Var)>)> {
    let enc = match resumed {
        Some(dir) => PromptEncoder::load_state(&dir.join(PROMPT_DIR), device)?,
        None => PromptEncoder::seeded(&p.encoder_config(rows, width), seed, device)?,
    };
    let c = enc.config();
    if c.rows() != rows || c.token_dim != width {
        return Err(Error::input(format!(
            "the run's prompt encoder makes {} vectors of width {}, but the template has {rows} [P] tokens and the model's width is {width}",
            c.rows(),
            c.token_dim
        )));
    }
    let (enc, map) = enc.to_trainable()?;
    Ok((enc, crate::ptuning::train::vars(&map, "prompt_encoder.")?))
}
