//! `wenhui eval seq2seq`: targets decoded from sources by a GLM with the official seq2seq
//! layout (Part A = the source template, then `[sop]` at the mask's position and beam search over
//! Part B with the K/V cache, THUDM/GLM `tasks/seq2seq/evaluate.py`), scored with ROUGE-1/2/L F1
//! ([`super::rouge`]), exact match, and SQuAD's normalised exact match and F1 ([`super::squad`]).

use super::rouge::{corpus_scores, RougeSummary, RougeTokenizer};
use crate::data::seq2seq::{Seq2seqLayout, Seq2seqPair};
use crate::generate::{decode, GenerationConfig, GlmBlankInputs, StepHook, StepInputs};
use crate::model::{Attention, Backbone, BackboneInput, ModelKind};
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};
use candle_core::Tensor;
use std::time::Instant;

/// Decoding settings. Defaults are the official CNN/DM ones (`config_tasks/seq_cnndm_org.sh`)
/// except the minimum length (55 there, for news summaries; 0 here).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DecodeOptions {
    /// Beams (`--num-beams`, 5).
    pub num_beams: usize,
    /// Beam scores are `sum log p / len^length_penalty` (`--length-penalty`, 0.7).
    pub length_penalty: f32,
    /// No n-gram of this size is generated twice (`--no-repeat-ngram-size`, 3; 0 = off).
    pub no_repeat_ngram_size: usize,
    /// `[eop]` is banned before this many tokens (`--min-tgt-length`, 0).
    pub min_length: usize,
    /// Most generated tokens; `None` = the layout's target limit.
    pub max_length: Option<usize>,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self { num_beams: 5, length_penalty: 0.7, no_repeat_ngram_size: 3, min_length: 0, max_length: None }
    }
}

/// Part B steps of one example: positions `[[mask], [offset + 1 ..]]`, every cached key visible
/// except the source pads when `--mask-pad-token` hides them.
struct Seq2seqSteps {
    mask_position: usize,
    sep: usize,
    pads: Option<(usize, usize)>,
    max_positions: usize,
}

impl StepInputs for Seq2seqSteps {
    fn input(&self, ids: Tensor, offset: usize) -> Result<BackboneInput> {
        let (rows, s) = ids.dims2()?;
        let device = ids.device().clone();
        // Positions and attention as any GLM blank; only the hidden source pads differ.
        let blank = GlmBlankInputs::new(self.mask_position, self.max_positions);
        let mut input = blank.input(ids, offset)?;
        if let Some((from, to)) = self.pads {
            let total = self.sep + offset + s;
            let row: Vec<f32> = (0..total).map(|j| if j >= from && j < to { 0.0 } else { 1.0 }).collect();
            input = input.with_key_padding(Tensor::from_vec(row.repeat(rows), (rows, total), &device)?);
        }
        Ok(input)
    }
    fn capacity(&self) -> Option<usize> {
        Some(self.max_positions.saturating_sub(1))
    }
}

/// One decoded target.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Decoded {
    /// Generated tokens (without `[eop]`).
    pub tokens: Vec<u32>,
    /// Ended with `[eop]` (or `eos`).
    pub finished: bool,
    /// Beam score.
    pub score: f32,
    /// The source was cut to fit.
    pub source_truncated: bool,
}

/// The generation config of `opts` for `layout` (stop tokens `[eop]` and `eos`).
pub fn generation_config(layout: &Seq2seqLayout, tokenizer: &Tokenizer, opts: &DecodeOptions) -> GenerationConfig {
    let mut stops = vec![layout.tokens.eop];
    stops.extend(tokenizer.special.eos);
    GenerationConfig {
        max_new_tokens: opts.max_length.unwrap_or(layout.cfg.max_target_len).max(1),
        min_new_tokens: opts.min_length,
        num_beams: opts.num_beams.max(1),
        length_penalty: opts.length_penalty,
        no_repeat_ngram_size: opts.no_repeat_ngram_size,
        eos_token_ids: stops,
        ..GenerationConfig::default()
    }
}

/// Decodes the target of one encoded source. The n-gram and min-length processors see `[sop]`
/// and the generated tokens only, as the official decoder. `prompt` (`[pseudo, H]`) fills the
/// template's `[P]` slots of a P-tuned layout ([`crate::ptuning::seq2seq::load_prompt`]).
pub fn decode_target(
    model: &dyn Backbone,
    layout: &Seq2seqLayout,
    source: &[u32],
    prompt: Option<&Tensor>,
    cfg: &GenerationConfig,
) -> Result<Decoded> {
    decode_target_streaming(model, layout, source, prompt, cfg, None)
}

/// [`decode_target`] that reports every decided token to `hook` as [`decode`] does (as it is
/// chosen with greedy or sampling, once at the end with beam search).
pub fn decode_target_streaming(
    model: &dyn Backbone,
    layout: &Seq2seqLayout,
    source: &[u32],
    prompt: Option<&Tensor>,
    cfg: &GenerationConfig,
    hook: Option<StepHook<'_>>,
) -> Result<Decoded> {
    glm_only(model)?;
    let part = layout.source_part(source)?;
    let (a, mask_position, pad_from, source_truncated) = (part.tokens, part.mask_position, part.pad_from, part.truncated);
    let sep = a.len();
    let max_positions = model.info().max_positions;
    if sep > max_positions {
        return Err(Error::input(format!("the source layout has {sep} tokens; the model has {max_positions} positions")));
    }
    let device = model.device();
    let pads = (layout.cfg.mask_pad_token && pad_from < sep).then_some((pad_from, sep));
    let pos: Vec<u32> = (0..sep as u32).chain(std::iter::repeat_n(0, sep)).collect();
    let ids = Tensor::new(a.as_slice(), device)?.unsqueeze(0)?;
    let tokens = match (prompt, part.pseudo.is_empty()) {
        (_, true) => BackboneInput::ids(ids),
        (Some(p), false) => BackboneInput::embeddings(crate::cloze::embeddings_with_prompt(model, &ids, &[part.pseudo], p)?),
        (None, false) => {
            return Err(Error::input(format!(
                "the template has {} [P] pseudo tokens but no P-tuned prompt was given for them",
                part.pseudo.len()
            )))
        }
    };
    let mut input = tokens.with_positions(Tensor::from_vec(pos, (1, 2, sep), device)?).with_attention(Attention::Sep(vec![sep]));
    if let Some((from, to)) = pads {
        let row: Vec<f32> = (0..sep).map(|j| if j >= from && j < to { 0.0 } else { 1.0 }).collect();
        input = input.with_key_padding(Tensor::from_vec(row, (1, sep), device)?);
    }
    let mut cache = model.new_cache();
    model.forward(&input, Some(&mut cache))?;
    let steps = Seq2seqSteps { mask_position, sep, pads, max_positions };
    let sop = [layout.tokens.sop];
    let out = decode(model, &mut cache, &sop, &sop, &steps, cfg, hook)?;
    let best = out.sequences.into_iter().next().ok_or_else(|| Error::input("generation returned no hypothesis"))?;
    let mut tokens = best.tokens;
    if best.finished {
        tokens.pop();
    }
    Ok(Decoded { tokens, finished: best.finished, score: best.score, source_truncated })
}

/// How a model directory written by `finetune`/`ptune --task seq2seq` reads its inputs: the
/// layout it was trained with ([`crate::train::seq2seq::LAYOUT_FILE`]) and, for a P-tuned model,
/// its prompt vectors. `generate` and the server's `/v1/completions` read each prompt as the
/// source of this layout.
#[derive(Debug, Clone)]
pub struct SavedSeq2seq {
    /// The layout the model was trained with.
    pub layout: Seq2seqLayout,
    /// The P-tuned prompt `[pseudo, H]` of a template with `[P]` tokens.
    pub prompt: Option<Tensor>,
}

impl SavedSeq2seq {
    /// The layout saved in `dir` with its prompt; `None` when there is none or `model` is not a
    /// GLM. A damaged layout file, or a layout whose `[P]` slots and saved prompt disagree, is an
    /// error naming the file.
    pub fn load(dir: &std::path::Path, tokenizer: &Tokenizer, model: &dyn Backbone) -> Result<Option<Self>> {
        let info = model.info();
        if info.kind != ModelKind::Glm {
            return Ok(None);
        }
        let Some(saved) = crate::train::seq2seq::SavedLayout::read(dir)? else { return Ok(None) };
        let file = dir.join(crate::train::seq2seq::LAYOUT_FILE);
        let layout = Seq2seqLayout::new(tokenizer, saved.layout, info.max_positions).map_err(|e| Error::file(&file, e.to_string()))?;
        let prompt = crate::ptuning::seq2seq::load_prompt(dir, layout.num_pseudo(), info.hidden_size, model.device())?;
        Ok(Some(Self { layout, prompt }))
    }

    /// The tokens that end a target: `[eop]` and the tokenizer's end of text.
    pub fn stop_tokens(&self, tokenizer: &Tokenizer) -> Vec<u32> {
        std::iter::once(self.layout.tokens.eop).chain(tokenizer.special.eos).collect()
    }

    /// Decodes the target of `source` (token ids from [`Seq2seqLayout::encode_source`]) with the
    /// saved prompt, reporting tokens to `hook` as [`decode_target_streaming`].
    pub fn decode(&self, model: &dyn Backbone, source: &[u32], cfg: &GenerationConfig, hook: Option<StepHook<'_>>) -> Result<Decoded> {
        decode_target_streaming(model, &self.layout, source, self.prompt.as_ref(), cfg, hook)
    }
}

/// Seq2seq decoding is GLM blank filling (2-D positions, `[sop]`): a GPT-2 or BERT is refused.
fn glm_only(model: &dyn Backbone) -> Result<()> {
    match model.info().kind {
        ModelKind::Glm => Ok(()),
        kind => Err(Error::input(format!(
            "seq2seq decoding needs a GLM (it fills a blank with 2-D positions); this model is a {kind}: give a GLM with --model"
        ))),
    }
}

/// A prediction that needs no model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Baseline {
    /// The first `n` non-whitespace characters of the source (`lead-chars:N`), e.g. the first
    /// two characters of a poem as its title.
    LeadChars(usize),
}

impl Baseline {
    /// Parses `lead-chars:N`.
    pub fn parse(s: &str) -> Result<Self> {
        match s.split_once(':') {
            Some(("lead-chars", n)) => {
                n.parse().map(Self::LeadChars).map_err(|_| Error::input(format!("baseline `{s}`: N must be a number")))
            }
            _ => Err(Error::input(format!("unknown baseline `{s}` (use lead-chars:N)"))),
        }
    }
    /// The baseline's prediction for `source`.
    pub fn predict(self, source: &str) -> String {
        match self {
            Self::LeadChars(n) => source.chars().filter(|c| !c.is_whitespace()).take(n).collect(),
        }
    }
}

/// One scored example.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Prediction {
    /// Where it came from (`file:line`).
    pub origin: String,
    /// The prediction text.
    pub prediction: String,
    /// The reference.
    pub target: String,
}

/// The result of [`evaluate_pairs`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct Seq2seqReport {
    /// Mean ROUGE F1 × 100.
    pub rouge: RougeSummary,
    /// Share of predictions equal to the target (whitespace-trimmed), × 100.
    pub exact_match: f64,
    /// SQuAD v1.1's exact match and token F1 (× 100) after its normalisation (case, punctuation,
    /// articles, whitespace); character tokens for CJK targets (with the `chars` ROUGE tokenizer).
    pub squad: super::squad::SquadScores,
    /// Tokenization of ROUGE.
    pub rouge_tokenizer: RougeTokenizer,
    /// Examples whose source was cut to fit.
    pub sources_truncated: usize,
    /// Decoded targets that did not end with `[eop]` within the length limit.
    pub unfinished: usize,
    /// `model` or the baseline.
    pub system: String,
    /// Wall time, seconds.
    pub elapsed_s: f64,
    /// Every prediction, in input order.
    #[serde(skip)]
    pub predictions: Vec<Prediction>,
}

/// What [`evaluate_pairs`] predicts with.
pub enum System<'a> {
    /// Beam decoding with a GLM.
    Model {
        /// The model.
        model: &'a dyn Backbone,
        /// Its tokenizer.
        tokenizer: &'a Tokenizer,
        /// The layout (as in training).
        layout: &'a Seq2seqLayout,
        /// Decoding settings.
        decode: &'a DecodeOptions,
        /// The P-tuned prompt of a layout with `[P]` tokens.
        prompt: Option<&'a Tensor>,
    },
    /// A model-free baseline.
    Baseline(Baseline),
}

/// Predicts every pair's target and scores the predictions. `tokenizer = None` guesses
/// (character-level for CJK targets). `bar` ticks once per pair.
pub fn evaluate_pairs(
    system: &System<'_>,
    pairs: &[Seq2seqPair],
    tokenizer: Option<RougeTokenizer>,
    bar: &indicatif::ProgressBar,
) -> Result<Seq2seqReport> {
    if let System::Model { model, .. } = system {
        // Checked before the first pair: otherwise every pair fails on the 2-D positions.
        glm_only(*model)?;
    }
    let t0 = Instant::now();
    let (mut predictions, mut truncated, mut unfinished) = (Vec::with_capacity(pairs.len()), 0, 0);
    let gen = match system {
        System::Model { model, layout, tokenizer, decode, .. } => {
            let mut cfg = generation_config(layout, tokenizer, decode);
            // Rows of a padded vocabulary decode to nothing: never generated (as `generate`).
            cfg.bad_words_ids.extend(crate::generate::padded_vocabulary_rows(*model, tokenizer));
            Some(cfg)
        }
        System::Baseline(_) => None,
    };
    for p in pairs {
        let text = match (system, &gen) {
            (System::Model { model, tokenizer, layout, prompt, .. }, Some(cfg)) => {
                let wrap = |e: Error| Error::input(format!("{}: {e}", p.origin));
                let src = layout.encode_source(tokenizer, &p.source).map_err(wrap)?;
                let d = decode_target(*model, layout, &src, *prompt, cfg).map_err(wrap)?;
                truncated += usize::from(d.source_truncated);
                unfinished += usize::from(!d.finished);
                tokenizer.decode(&d.tokens, true)?
            }
            (System::Baseline(b), _) => b.predict(&p.source),
            (System::Model { .. }, None) => return Err(Error::input("no generation config")),
        };
        bar.inc(1);
        predictions.push(Prediction { origin: p.origin.clone(), prediction: text, target: p.target.clone() });
    }
    let tok = tokenizer.unwrap_or_else(|| RougeTokenizer::guess(&pairs.iter().map(|p| p.target.as_str()).collect::<Vec<_>>()));
    let rouge = corpus_scores(predictions.iter().map(|p| (p.prediction.as_str(), p.target.as_str())), tok);
    let exact = predictions.iter().filter(|p| p.prediction.trim() == p.target.trim()).count();
    let lang = if tok == RougeTokenizer::Chars { super::squad::Lang::Chinese } else { super::squad::Lang::English };
    let golds: Vec<[&str; 1]> = predictions.iter().map(|p| [p.target.as_str()]).collect();
    let squad = super::squad::corpus(predictions.iter().zip(&golds).map(|(p, g)| (p.prediction.as_str(), &g[..])), lang)?;
    Ok(Seq2seqReport {
        rouge,
        exact_match: 100.0 * exact as f64 / predictions.len().max(1) as f64,
        squad,
        rouge_tokenizer: tok,
        sources_truncated: truncated,
        unfinished,
        system: match system {
            System::Model { .. } => "model".into(),
            System::Baseline(Baseline::LeadChars(n)) => format!("lead-chars:{n}"),
        },
        elapsed_s: t0.elapsed().as_secs_f64(),
        predictions,
    })
}
