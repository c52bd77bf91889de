//! GLM's pretraining objectives: autoregressive blank infilling (spec glm §4).
//!
//! A text sample (`[CLS]` + documents separated by `eos`) becomes:
//! * **Part A**: the text with every masked span replaced by one mask token, positions `0..`,
//!   block positions 0, fully bidirectional;
//! * **Part B**: the spans (shuffled), each `[sop] + span` as input and `span + [eop]` as target,
//!   all at the position of the span's mask with block positions `1..`, causal;
//! * loss only on Part B; `sep` = length of Part A.
//!
//! Three objectives, one drawn per batch: token-level spans (Poisson(λ=3) lengths until 15% of
//! the sample, `[MASK]`, Part-B inputs optionally `[dBLOCK]`), sentence-level spans (whole
//! sentences with their end punctuation until 15%, `[sMASK]` with task masks) and one
//! document-level span of 50–100% (`[gMASK]` with task masks, half of the time in the prefix-LM
//! form). `[CLS]` and `eos` are never masked; token spans and the infilled document span leave
//! the sample's last token alone (THUDM). A batch may first be re-cut into short samples
//! ([`split_short_samples`]).

use rand::seq::SliceRandom;
use rand::{Rng, RngCore};

mod config;
mod short;
mod spans;

pub use config::ObjectiveConfig;
pub use short::{split_short_samples, SHORT_SEQ_MIN};

/// The token ids the objectives need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectiveTokens {
    /// `[CLS]`, first token of every sample.
    pub cls: u32,
    /// End of document (also the padding id).
    pub eos: u32,
    /// `[MASK]`.
    pub mask: u32,
    /// `[sMASK]`.
    pub smask: u32,
    /// `[gMASK]`.
    pub gmask: u32,
    /// `<|startofpiece|>`.
    pub sop: u32,
    /// `<|endofpiece|>`.
    pub eop: u32,
    /// `[dBLOCK]`, when the tokenizer has it (needed for `block_mask_prob > 0`).
    pub dblock: Option<u32>,
}

impl ObjectiveTokens {
    /// The ids from a tokenizer's special tokens; an error names the one that is missing.
    pub fn from_special(s: &crate::tokenizer::SpecialTokens) -> crate::Result<Self> {
        Ok(Self {
            cls: s.get("cls")?,
            eos: s.get("eos")?,
            mask: s.get("mask")?,
            smask: s.get("smask")?,
            gmask: s.get("gmask")?,
            sop: s.get("sop")?,
            eop: s.get("eop")?,
            dblock: s.dblock,
        })
    }

    /// An error unless these tokens can make the samples of `cfg`: `block_mask_prob > 0` with
    /// token-level spans needs `[dBLOCK]`.
    pub fn check(&self, cfg: &ObjectiveConfig) -> crate::Result<()> {
        if cfg.block_mask_prob > 0.0 && cfg.token_prob > 0.0 && self.dblock.is_none() {
            return Err(no_dblock(cfg.block_mask_prob));
        }
        Ok(())
    }
}

fn no_dblock(p: f64) -> crate::Error {
    crate::Error::input(format!(
        "objective: block_mask_prob {p} replaces token-span inputs with [dBLOCK], which this tokenizer does not have: \
         set block_mask_prob = 0 (flag --block-mask-prob 0), or use a tokenizer with [dBLOCK] (`wenhui tokenizer train \
         --kind bpe` or `--kind chars` adds it; BERT WordPiece vocabularies have none, as in THUDM's code)"
    ))
}

/// Which objective made a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Objective {
    /// Token-level spans.
    Token,
    /// Sentence-level spans.
    Sentence,
    /// One document-level span.
    Document,
    /// BERT masked LM ([`super::lm::mlm_sample`]), not blank infilling.
    Mlm,
    /// Next-token prediction ([`super::lm::causal_sample`]), not blank infilling.
    Causal,
}

/// One training sequence. All vectors have the same length.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Input ids: Part A then Part B.
    pub tokens: Vec<u32>,
    /// Target ids (meaningful where `loss_mask` is 1).
    pub targets: Vec<u32>,
    /// 1 on Part B targets, 0 elsewhere.
    pub loss_mask: Vec<f32>,
    /// Position ids (row 0 of GLM's 2D positions).
    pub positions: Vec<u32>,
    /// Block position ids (row 1).
    pub blocks: Vec<u32>,
    /// Length of Part A.
    pub sep: usize,
    /// The masked spans as `(start, end)` in the original text, in Part B order.
    pub spans: Vec<(usize, usize)>,
    /// The objective that produced it.
    pub objective: Objective,
}

/// Draws the objective for a batch.
pub fn draw_objective(cfg: &ObjectiveConfig, rng: &mut impl RngCore) -> Objective {
    let r: f64 = rng.random();
    if r < cfg.token_prob {
        Objective::Token
    } else if r < cfg.token_prob + cfg.sentence_prob {
        Objective::Sentence
    } else {
        Objective::Document
    }
}

/// Builds a sample from `text` (`[CLS]` + documents separated by `eos`) with `objective`.
/// `sentence_ends` marks the tokens that end a sentence (used by the sentence objective).
/// `cfg` is checked first ([`ObjectiveConfig::validate`]): an error names the bad field.
pub fn make_sample(
    text: &[u32],
    objective: Objective,
    cfg: &ObjectiveConfig,
    ids: &ObjectiveTokens,
    sentence_ends: &dyn Fn(u32) -> bool,
    rng: &mut impl RngCore,
) -> crate::Result<Sample> {
    cfg.validate()?;
    let segments = spans::segments(text, ids);
    Ok(match objective {
        Objective::Token => {
            if cfg.block_mask_prob > 0.0 && ids.dblock.is_none() {
                return Err(no_dblock(cfg.block_mask_prob));
            }
            let spans = spans::token_spans(text.len(), &segments, cfg, rng);
            block_sample(text, spans, ids.mask, cfg, ids, objective, rng)
        }
        Objective::Sentence => {
            let spans = if cfg.sentence_end_in_span {
                spans::sentence_spans(text, cfg, ids, sentence_ends, rng)
            } else {
                let mut spans = Vec::new();
                for &(s, e) in &segments {
                    spans.extend(spans::segment_sentence_spans(text, s, e, cfg, sentence_ends, rng));
                }
                spans
            };
            let m = if cfg.task_masks { ids.smask } else { ids.mask };
            block_sample(text, spans, m, cfg, ids, objective, rng)
        }
        Objective::Document => document_sample(text, segments.len(), cfg, ids, rng),
        // Not blank infilling; the stream calls these itself with the vocabulary for MLM's random
        // replacements (here they come from the text).
        Objective::Mlm => super::lm::mlm_sample(text, ids, cfg.mask_ratio, None, rng),
        Objective::Causal => super::lm::causal_sample(text, ids),
    })
}

/// Part A / Part B layout for `spans` (sorted by start) replaced by `mask`.
fn block_sample(
    text: &[u32],
    mut spans: Vec<(usize, usize)>,
    mask: u32,
    cfg: &ObjectiveConfig,
    ids: &ObjectiveTokens,
    objective: Objective,
    rng: &mut impl RngCore,
) -> Sample {
    spans.sort_unstable();
    let mut a = Vec::with_capacity(text.len());
    let mut mask_pos = Vec::with_capacity(spans.len());
    let mut i = 0;
    for &(s, e) in &spans {
        a.extend_from_slice(&text[i..s]);
        mask_pos.push(a.len());
        a.push(mask);
        i = e;
    }
    a.extend_from_slice(&text[i..]);
    let sep = a.len();
    let mut order: Vec<usize> = (0..spans.len()).collect();
    if cfg.shuffle_spans {
        order.shuffle(rng);
    }
    let mut s = Sample {
        targets: a.clone(),
        loss_mask: vec![0.0; sep],
        positions: (0..sep as u32).collect(),
        blocks: vec![0; sep],
        tokens: a,
        sep,
        spans: order.iter().map(|&k| spans[k]).collect(),
        objective,
    };
    // [dBLOCK] inputs only for token-level spans (THUDM: `task == 'bert'`); no draws otherwise,
    // so the other objectives' samples do not depend on block_mask_prob.
    let dblock = ids.dblock.filter(|_| objective == Objective::Token && cfg.block_mask_prob > 0.0);
    for k in order {
        let (st, en) = spans[k];
        let span = &text[st..en];
        s.tokens.push(ids.sop);
        match dblock {
            Some(d) => s.tokens.extend(span.iter().map(|&t| if rng.random::<f64>() < cfg.block_mask_prob { d } else { t })),
            None => s.tokens.extend_from_slice(span),
        }
        s.targets.extend_from_slice(span);
        s.targets.push(ids.eop);
        for j in 0..=span.len() {
            s.loss_mask.push(1.0);
            s.positions.push(mask_pos[k] as u32);
            s.blocks.push(j as u32 + 1);
        }
    }
    s
}

/// The document objective: one span of 50–100% (configurable) of the sample.
fn document_sample(text: &[u32], num_segments: usize, cfg: &ObjectiveConfig, ids: &ObjectiveTokens, rng: &mut impl RngCore) -> Sample {
    let len = text.len();
    let mask = if cfg.task_masks { ids.gmask } else { ids.mask };
    if len < 3 {
        // Nothing to infill: a sample without Part B (no loss).
        return block_sample(text, Vec::new(), mask, cfg, ids, Objective::Document, rng);
    }
    let max = len - 2;
    let min = ((cfg.doc_min_ratio * len as f64) as usize).clamp(1, max);
    let g = rng.random_range(min..=max);
    if num_segments > 1 || rng.random::<f64>() < cfg.prefix_lm_prob {
        // Prefix LM: source + [gMASK] + [sop] + target[..g-1]; no eop target.
        let src = len - g;
        let mut tokens = text[..src].to_vec();
        tokens.push(mask);
        let sep = tokens.len();
        tokens.push(ids.sop);
        tokens.extend_from_slice(&text[src..len - 1]);
        let mut targets = text[..src].to_vec();
        targets.push(mask);
        targets.extend_from_slice(&text[src..]);
        let mut positions: Vec<u32> = (0..sep as u32).collect();
        positions.extend(std::iter::repeat_n(src as u32, g));
        let mut blocks = vec![0u32; sep];
        blocks.extend(1..=g as u32);
        let mut loss_mask = vec![0.0; sep];
        loss_mask.extend(std::iter::repeat_n(1.0, g));
        Sample { tokens, targets, loss_mask, positions, blocks, sep, spans: vec![(src, len)], objective: Objective::Document }
    } else {
        // THUDM places it inside the document without the sample's last token (as token spans).
        let start = rng.random_range(1..=len - 1 - g);
        block_sample(text, vec![(start, start + g)], mask, cfg, ids, Objective::Document, rng)
    }
}

#[cfg(test)]
mod tests;
