//! P-tuning for generation: a prompt encoder trained on `{source, target}` pairs with the
//! seq2seq objective (`wenhui ptune --task seq2seq`, or jointly with the model by
//! `finetune --task seq2seq` when the template has `[P]` tokens).
//!
//! The template's pseudo tokens (`[P*8] [MASK] Content: {source}`) are the prompt's slots: their
//! input embeddings are replaced by the encoder's vectors, in training ([`crate::train::seq2seq`])
//! and in decoding (`eval seq2seq`, `generate`), where the vectors are computed once and every
//! step after the context pass reads them from the K/V cache. A run's checkpoints and `best/`
//! are model directories holding the encoder in [`PROMPT_DIR`] beside the layout file, so any
//! command that takes the model directory finds its prompt.

use super::{EncoderKind, LstmHead, PromptEncoder, PromptEncoderConfig};
use crate::{Error, Result};
use candle_core::{Device, Tensor};
use std::path::Path;

/// The folder of a model directory that holds its P-tuned prompt encoder (full state, as
/// [`PromptEncoder::save_state`] writes it).
pub const PROMPT_DIR: &str = "prompt";

fn two() -> usize {
    2
}

/// How a seq2seq run's prompt encoder is built and trained (saved in the run's configuration).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PromptTuning {
    /// The reparameterisation (the paper's bidirectional LSTM + MLP by default).
    pub encoder: EncoderKind,
    /// Hidden size per LSTM direction, or the MLP's width; `None` = half the model's width for the
    /// LSTM (THUDM/P-tuning's LAMA encoder), the model's width for the MLP.
    #[serde(default)]
    pub hidden: Option<usize>,
    /// LSTM layers (peft's default 2).
    #[serde(default = "two")]
    pub layers: usize,
    /// The encoder's peak learning rate when the model is tuned too; `None` = the run's rate.
    /// (With a frozen model the run's rate is the encoder's.)
    #[serde(default)]
    pub lr: Option<f64>,
    /// Keep the model's weights fixed and train only the encoder (P-tuning proper).
    #[serde(default)]
    pub freeze_model: bool,
}

impl Default for PromptTuning {
    fn default() -> Self {
        Self { encoder: EncoderKind::Lstm, hidden: None, layers: 2, lr: None, freeze_model: false }
    }
}

impl PromptTuning {
    /// The encoder's sizes for `rows` pseudo tokens and a model `width` wide.
    pub fn encoder_config(&self, rows: usize, width: usize) -> PromptEncoderConfig {
        let hidden = self.hidden.unwrap_or(match self.encoder {
            EncoderKind::Lstm => (width / 2).max(1),
            EncoderKind::Mlp | EncoderKind::Embedding => width,
        });
        PromptEncoderConfig {
            kind: self.encoder,
            num_virtual_tokens: rows,
            token_dim: width,
            hidden,
            layers: self.layers,
            num_transformer_submodules: 1,
            lstm_head: LstmHead::Peft,
        }
    }

    /// Checks the options against a run's learning rate `lr`: the encoder's own rate must be a
    /// finite number ≥ 0, needs a positive run rate to scale against, and is refused with a frozen
    /// model (whose run rate is the encoder's).
    pub fn validate(&self, lr: f64) -> Result<()> {
        let Some(p) = self.lr else { return Ok(()) };
        if !(p >= 0.0 && p.is_finite()) {
            return Err(Error::input(format!("the prompt encoder's learning rate must be a finite number ≥ 0, got {p}")));
        }
        if self.freeze_model {
            return Err(Error::input(
                "a separate prompt-encoder learning rate (--prompt-lr) only applies when the model is tuned too; with a frozen model \
                 --lr is the encoder's rate",
            ));
        }
        if lr <= 0.0 {
            return Err(Error::input(format!("--prompt-lr {p} needs a positive --lr (the model's rate), got {lr}")));
        }
        Ok(())
    }

    /// The encoder's learning rate as a multiple of the run's (its optimizer group's scale).
    pub fn lr_scale(&self, lr: f64) -> f64 {
        match self.lr {
            Some(p) if lr > 0.0 => p / lr,
            _ => 1.0,
        }
    }
}

/// The continuous prompt saved in `model_dir` ([`PROMPT_DIR`]) as the `[pseudo, H]` vectors that
/// fill a template's `pseudo` slots, computed once; `None` when the template has no `[P]` token
/// and the directory no prompt. A template with slots but no saved prompt, a saved prompt the
/// template has no slots for, or a prompt of another size or width is an error that says what to do.
pub fn load_prompt(model_dir: &Path, pseudo: usize, width: usize, device: &Device) -> Result<Option<Tensor>> {
    let dir = model_dir.join(PROMPT_DIR);
    let saved = dir.join(super::STATE_CONFIG).is_file();
    match (saved, pseudo) {
        (false, 0) => Ok(None),
        (false, n) => Err(Error::file(
            model_dir,
            format!(
                "the template has {n} [P] pseudo tokens but this model directory has no P-tuned prompt ({PROMPT_DIR}/): give the \
                 model a P-tuning run wrote (its best/ or a checkpoint), or a template without [P]"
            ),
        )),
        (true, 0) => Err(Error::file(
            &dir,
            "this model was P-tuned, but the template has no [P] pseudo tokens for its prompt: decode with the template it was \
             trained with (leave out --template, it is read from the model directory)",
        )),
        (true, n) => {
            let enc = PromptEncoder::load_state(&dir, device)?;
            let c = enc.config();
            if c.rows() != n || c.token_dim != width {
                return Err(Error::file(
                    &dir,
                    format!(
                        "the prompt encoder makes {} vectors of width {}, but the template has {n} [P] tokens and the model's width is \
                         {width}: use the template the prompt was trained with",
                        c.rows(),
                        c.token_dim
                    ),
                ));
            }
            Ok(Some(enc.prompt_embeddings()?.detach()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_sizes_follow_the_model_width() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let lstm = PromptTuning::default().encoder_config(8, 64);
        assert_eq!((lstm.kind, lstm.hidden, lstm.layers, lstm.rows(), lstm.token_dim), (EncoderKind::Lstm, 32, 2, 8, 64));
        let mlp = PromptTuning { encoder: EncoderKind::Mlp, ..Default::default() }.encoder_config(3, 64);
        assert_eq!(mlp.hidden, 64);
        Ok(())
    }

    #[test]
    fn the_encoder_rate_is_checked_and_scaled() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let joint = PromptTuning { lr: Some(1e-4), ..Default::default() };
        joint.validate(1e-5)?;
        assert!((joint.lr_scale(1e-5) - 10.0).abs() < 1e-9);
        assert!(joint.validate(0.0).unwrap_err().to_string().contains("positive --lr"));
        let frozen = PromptTuning { lr: Some(1e-4), freeze_model: true, ..Default::default() };
        assert!(frozen.validate(1e-4).unwrap_err().to_string().contains("--lr is the encoder's rate"));
        assert!(PromptTuning { lr: Some(f64::NAN), ..Default::default() }.validate(1e-5).is_err());
        assert_eq!(PromptTuning::default().lr_scale(1e-5), 1.0);
        Ok(())
    }

    #[test]
    fn a_missing_or_unwanted_prompt_is_an_error() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let dir = std::env::temp_dir().join(format!("wenhui-prompt-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        assert!(load_prompt(&dir, 0, 8, &Device::Cpu)?.is_none());
        let e = load_prompt(&dir, 3, 8, &Device::Cpu).unwrap_err().to_string();
        assert!(e.contains("3 [P] pseudo tokens") && e.contains("no P-tuned prompt"), "{e}");
        let enc = PromptEncoder::seeded(&PromptTuning::default().encoder_config(3, 8), 1, &Device::Cpu)?;
        enc.save_state(&dir.join(PROMPT_DIR))?;
        let p = load_prompt(&dir, 3, 8, &Device::Cpu)?.ok_or("no prompt")?;
        assert_eq!(p.dims(), &[3, 8]);
        let want = enc.prompt_embeddings()?.to_vec2::<f32>()?;
        assert_eq!(p.to_vec2::<f32>()?, want);
        assert!(load_prompt(&dir, 0, 8, &Device::Cpu).unwrap_err().to_string().contains("no [P] pseudo tokens"));
        assert!(load_prompt(&dir, 4, 8, &Device::Cpu).unwrap_err().to_string().contains("makes 3 vectors of width 8"));
        assert!(load_prompt(&dir, 3, 16, &Device::Cpu).unwrap_err().to_string().contains("width is 16"));
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
