//! Text generation over any [`Backbone`] with the K/V cache: greedy, sampling (temperature,
//! top-k, top-p), beam search, and the Hugging Face logits processors (repetition penalty,
//! no-repeat n-gram, bad words, min new tokens), with the semantics of Hugging Face
//! `model.generate` — pinned by `tests/generation.rs` against transformers' own outputs — plus
//! OpenAI's frequency and presence penalties.
//!
//! The decoder knows nothing about a particular model: how the tokens of a step become a
//! [`BackboneInput`] (positions, attention) is the job of a [`StepInputs`]. [`CausalInputs`]
//! serves left-to-right models (GPT-2); GLM's blank filling ([`blank`]) uses 2D positions at the
//! mask with block ids 1, 2, ….
//!
//! ```no_run
//! use wenhui::generate::{generate, CausalInputs, GenerationConfig};
//! use wenhui::model::{load_model, LoadOptions};
//! let m = load_model("tests/fixtures/gpt2-tiny".as_ref(), &LoadOptions::default())?;
//! let cfg = GenerationConfig { max_new_tokens: 8, num_beams: 4, eos_token_ids: vec![91], ..Default::default() };
//! let out = generate(m.backbone.as_ref(), &[58, 31, 8], &CausalInputs::new(m.backbone.as_ref()), &cfg, None)?;
//! println!("{:?} {}", out.sequences[0].tokens, out.sequences[0].score);
//! # Ok::<(), wenhui::Error>(())
//! ```

mod beam;
pub mod blank;
mod decode;
pub mod inverse;
pub mod poetry;
pub(crate) mod processors;

pub use blank::{
    fill_blanks, fill_blanks_streaming, fill_text, glm_context, splice_fills, unknown_text, BlankFill, BlankHook, BlankTokens, FilledText,
    GlmBlankInputs, TextFill, UnknownText,
};
pub use decode::decode;

/// The byte length of the longest end of `text` that is a proper prefix of one of `stops`: text
/// a stream must hold back, because the next token may complete a stop string there.
pub fn pending_stop_len(text: &str, stops: &[String]) -> usize {
    stops
        .iter()
        .flat_map(|s| s.char_indices().skip(1).map(move |(i, _)| &s[..i]))
        .filter(|p| text.ends_with(p))
        .map(str::len)
        .max()
        .unwrap_or(0)
}

/// The ids a model can produce but its tokenizer cannot decode: the rows of a vocabulary padded
/// past the tokenizer's size (e.g. to a multiple of 64), as single-token bad words. Generation
/// must never pick one: its text could not be written.
pub fn padded_vocabulary_rows(model: &dyn Backbone, tokenizer: &crate::tokenizer::Tokenizer) -> Vec<Vec<u32>> {
    (tokenizer.vocab_size(true)..model.info().vocab_size).map(|id| vec![id as u32]).collect()
}

use crate::model::{Attention, Backbone, BackboneInput};
use crate::{Error, Result};
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

/// How beam search decides it is done (Hugging Face `early_stopping`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "serde_json::Value", into = "serde_json::Value")]
pub enum EarlyStopping {
    /// `true`: stop as soon as `num_beams` hypotheses are finished.
    True,
    /// `false` (the default): stop when the best running beam, normalised by its current length,
    /// cannot beat the worst finished hypothesis.
    #[default]
    False,
    /// `"never"`: the canonical beam search — stop only when no better hypothesis is possible
    /// at all (for `length_penalty > 0`, judged at the maximum length).
    Never,
}

impl TryFrom<serde_json::Value> for EarlyStopping {
    type Error = String;
    fn try_from(v: serde_json::Value) -> std::result::Result<Self, String> {
        match v {
            serde_json::Value::Bool(true) => Ok(Self::True),
            serde_json::Value::Bool(false) => Ok(Self::False),
            serde_json::Value::String(s) if s == "never" => Ok(Self::Never),
            other => Err(format!("early_stopping must be true, false or \"never\", got {other}")),
        }
    }
}

impl From<EarlyStopping> for serde_json::Value {
    fn from(e: EarlyStopping) -> Self {
        match e {
            EarlyStopping::True => true.into(),
            EarlyStopping::False => false.into(),
            EarlyStopping::Never => "never".into(),
        }
    }
}

/// What to generate and how. Field names and defaults follow Hugging Face's
/// `GenerationConfig` (except `eos_token_ids`, which is always a list, and `seed`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GenerationConfig {
    /// Most new tokens to generate (default 20). Also capped by the model's positions.
    pub max_new_tokens: usize,
    /// Stop tokens are banned until this many new tokens exist (default 0).
    pub min_new_tokens: usize,
    /// Sample from the distribution instead of taking the best token (default false).
    pub do_sample: bool,
    /// Sampling temperature, > 0 (default 1.0). Only with `do_sample`.
    pub temperature: f32,
    /// Sampling keeps the `top_k` best tokens; 0 = off (default 50, as HF). Only with `do_sample`.
    pub top_k: usize,
    /// Nucleus sampling: keep the smallest set of tokens with probability ≥ `top_p`, in (0, 1]
    /// (default 1.0 = off). Only with `do_sample`.
    pub top_p: f32,
    /// Seed of the sampling RNG (`ChaCha8Rng`); the same seed gives the same output (default 0).
    pub seed: u64,
    /// CTRL repetition penalty, > 0: scores of tokens already in the sequence (prompt included)
    /// are divided by it when positive and multiplied when negative (default 1.0 = off).
    pub repetition_penalty: f32,
    /// OpenAI's frequency penalty, in [-2, 2]: the score of every token already generated in this
    /// decoding (not the prompt; with GLM blank filling, in this blank's fill) is lowered by this
    /// much per occurrence; a negative value favours repeats (default 0 = off).
    pub frequency_penalty: f32,
    /// OpenAI's presence penalty, in [-2, 2]: the score of every token already generated in this
    /// decoding (as `frequency_penalty`) is lowered by this much once, however often it occurs
    /// (default 0 = off). Both apply after `repetition_penalty`:
    /// `score[j] -= count[j] * frequency_penalty + (count[j] > 0) * presence_penalty`.
    pub presence_penalty: f32,
    /// No n-gram of this size occurs twice in the sequence, prompt included (default 0 = off).
    pub no_repeat_ngram_size: usize,
    /// Token sequences that must never be generated; a single-token entry bans that token
    /// always, a longer one bans its last token after its prefix (default none).
    pub bad_words_ids: Vec<Vec<u32>>,
    /// Tokens that end a sequence (HF `eos_token_id`); kept in the output (default none).
    pub eos_token_ids: Vec<u32>,
    /// Beams; 1 = greedy or sampling (default 1).
    pub num_beams: usize,
    /// Beam scores are `sum log p / generated_len ** length_penalty`, the length counting the
    /// stop token (default 1.0).
    pub length_penalty: f32,
    /// When beam search stops (default `false`).
    pub early_stopping: EarlyStopping,
    /// Hypotheses to return, best first, ≤ `num_beams` (default 1; must be 1 without beams).
    pub num_return_sequences: usize,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        Self {
            max_new_tokens: 20,
            min_new_tokens: 0,
            do_sample: false,
            temperature: 1.0,
            top_k: 50,
            top_p: 1.0,
            seed: 0,
            repetition_penalty: 1.0,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            no_repeat_ngram_size: 0,
            bad_words_ids: Vec::new(),
            eos_token_ids: Vec::new(),
            num_beams: 1,
            length_penalty: 1.0,
            early_stopping: EarlyStopping::False,
            num_return_sequences: 1,
        }
    }
}

/// Most beams a search keeps: each holds a row of the batch and its cache, and far past this the
/// memory runs out (100,000 beams asked for ~10 GB at once) or a search takes minutes.
pub const MAX_BEAMS: usize = 256;

/// The largest magnitude of `frequency_penalty` and `presence_penalty` (OpenAI's bound).
pub const MAX_OCCURRENCE_PENALTY: f32 = 2.0;

impl GenerationConfig {
    /// Checks every option, saying which one to fix.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::input(format!("generation config: {m}")));
        if self.num_beams == 0 || self.num_beams > MAX_BEAMS {
            return bad(format!("num_beams must be between 1 (greedy/sampling) and {MAX_BEAMS}, got {}", self.num_beams));
        }
        if self.num_return_sequences == 0 || self.num_return_sequences > self.num_beams {
            return bad(format!(
                "num_return_sequences must be between 1 and num_beams ({}), got {}",
                self.num_beams, self.num_return_sequences
            ));
        }
        if self.do_sample && self.num_beams > 1 {
            return bad("beam sampling (do_sample with num_beams > 1) is not supported; set num_beams = 1 or do_sample = false".into());
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(format!("top_p must be in (0, 1], got {}", self.top_p));
        }
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return bad(format!("temperature must be a positive number, got {}", self.temperature));
        }
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite()) {
            return bad(format!("repetition_penalty must be a positive number (1 = off), got {}", self.repetition_penalty));
        }
        for (name, v) in [("frequency_penalty", self.frequency_penalty), ("presence_penalty", self.presence_penalty)] {
            if !(-MAX_OCCURRENCE_PENALTY..=MAX_OCCURRENCE_PENALTY).contains(&v) {
                return bad(format!("{name} must be in [-2, 2] (0 = off), got {v}"));
            }
        }
        if !self.length_penalty.is_finite() {
            return bad(format!("length_penalty must be finite, got {}", self.length_penalty));
        }
        if self.max_new_tokens == 0 {
            return bad("max_new_tokens must be at least 1".into());
        }
        if self.min_new_tokens > self.max_new_tokens {
            return bad(format!("min_new_tokens ({}) exceeds max_new_tokens ({})", self.min_new_tokens, self.max_new_tokens));
        }
        if self.bad_words_ids.iter().any(|s| s.is_empty()) {
            return bad("bad_words_ids contains an empty sequence".into());
        }
        Ok(())
    }
}

/// Builds the model inputs of a decoding call. `ids` is `[rows, S]` (u32): the prompt tokens
/// on the first call, then one token per row; `offset` is how many tokens this decoding has fed
/// before `ids` (0 for the prompt). The cache already holds everything fed before.
pub trait StepInputs {
    /// The input for `ids`.
    fn input(&self, ids: Tensor, offset: usize) -> Result<BackboneInput>;
    /// The most tokens one decoding can feed (prompt included), e.g. the model's positions
    /// minus what the cache already holds; `None` = unbounded.
    fn capacity(&self) -> Option<usize>;
}

/// [`StepInputs`] for left-to-right models (GPT-2): default positions (cache length onwards)
/// and causal attention.
#[derive(Debug, Clone)]
pub struct CausalInputs {
    capacity: usize,
}

impl CausalInputs {
    /// Inputs for `model`, starting from an empty cache.
    pub fn new(model: &dyn Backbone) -> Self {
        Self { capacity: model.info().max_positions }
    }
    /// Inputs for `model` when its cache already holds `past` positions.
    pub fn after(model: &dyn Backbone, past: usize) -> Self {
        Self { capacity: model.info().max_positions.saturating_sub(past) }
    }
}

impl StepInputs for CausalInputs {
    fn input(&self, ids: Tensor, _offset: usize) -> Result<BackboneInput> {
        Ok(BackboneInput::ids(ids).with_attention(Attention::Causal))
    }
    fn capacity(&self) -> Option<usize> {
        Some(self.capacity)
    }
}

/// One returned hypothesis.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hypothesis {
    /// The new tokens (the prompt is not repeated), the stop token included when it finished.
    pub tokens: Vec<u32>,
    /// Beam search: HF's `sequences_scores` (sum of processed log-probs / length^penalty).
    /// Greedy/sampling: the sum of the chosen tokens' log-probs under the processed (and
    /// warped) distribution.
    pub score: f32,
    /// True when it ended with a stop token.
    pub finished: bool,
}

/// What a decoding returns.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Generation {
    /// `num_return_sequences` hypotheses, best first.
    pub sequences: Vec<Hypothesis>,
    /// Decoding steps run (model calls after the prompt pass + 1), as `len(out.scores)` in HF.
    pub steps: usize,
}

/// Called with `(index of the new token, token)` for every decided token, in order; returning
/// `false` stops the decoding after that token. Greedy and sampling call it as each token is
/// chosen (streaming); beam search calls it for the best hypothesis once the search is done.
pub type StepHook<'a> = &'a mut dyn FnMut(usize, u32) -> bool;

/// Generates a continuation of `prompt` with a fresh cache: the prompt pass, then one token per
/// step. See [`decode`] to continue from an existing cache.
pub fn generate(
    model: &dyn Backbone,
    prompt: &[u32],
    inputs: &dyn StepInputs,
    cfg: &GenerationConfig,
    hook: Option<StepHook<'_>>,
) -> Result<Generation> {
    let mut cache = model.new_cache();
    decode(model, &mut cache, prompt, prompt, inputs, cfg, hook)
}
