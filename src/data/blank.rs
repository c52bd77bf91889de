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
//! the tokens, `[MASK]`), sentence-level spans (whole sentences until 15%, `[sMASK]`) and one
//! document-level span of 50–100% (`[gMASK]`, half of the time in the prefix-LM form).

use rand::seq::SliceRandom;
use rand::{Rng, RngCore};

/// The longest `max_span` [`ObjectiveConfig::validate`] accepts.
const MAX_SPAN: usize = 1 << 20;

/// Probabilities and ratios of the objectives. Defaults follow THUDM's `arguments.py`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObjectiveConfig {
    /// Probability of the token-level objective for a batch (`--bert-prob`).
    pub token_prob: f64,
    /// Probability of the sentence-level objective (`--gap-sentence-prob`); the document-level
    /// objective gets `1 - token_prob - sentence_prob`.
    pub sentence_prob: f64,
    /// Share of tokens masked by the token and sentence objectives (0.15).
    pub mask_ratio: f64,
    /// Share of tokens the sentence objective masks, when it should differ from `mask_ratio`
    /// (a higher share infills more fields of a templated document, e.g. a poem's title).
    pub sentence_mask_ratio: Option<f64>,
    /// λ of the Poisson span-length distribution (`--avg-block-length`, 3).
    pub avg_span: f64,
    /// Longest token-level span (39).
    pub max_span: usize,
    /// Shortest document-level span as a share of the sample (`--gpt-min-ratio`, 0.5).
    pub doc_min_ratio: f64,
    /// Probability of the prefix-LM form of the document objective (`--gpt-infill-prob`, 0.5);
    /// samples of several documents always use it.
    pub prefix_lm_prob: f64,
    /// Shuffle the spans in Part B (`shuffle_blocks`, true).
    pub shuffle_spans: bool,
    /// Use `[sMASK]`/`[gMASK]` for sentence/document spans (`--task-mask`); `[MASK]` otherwise.
    pub task_masks: bool,
}

impl Default for ObjectiveConfig {
    fn default() -> Self {
        Self {
            token_prob: 0.5,
            sentence_prob: 0.0,
            mask_ratio: 0.15,
            sentence_mask_ratio: None,
            avg_span: 3.0,
            max_span: 39,
            doc_min_ratio: 0.5,
            prefix_lm_prob: 0.5,
            shuffle_spans: true,
            task_masks: true,
        }
    }
}

impl ObjectiveConfig {
    /// GLM-Large: token-level blank infilling only.
    pub fn glm_large() -> Self {
        Self { token_prob: 1.0, sentence_prob: 0.0, task_masks: false, ..Self::default() }
    }
    /// GLM-10B: token 0.5, sentence 0.3, document 0.2 with spans of 25–100%.
    pub fn glm_10b() -> Self {
        Self { token_prob: 0.5, sentence_prob: 0.3, doc_min_ratio: 0.25, ..Self::default() }
    }
    /// A named preset: `glm-large`, `glm-10b` or `default`.
    pub fn preset(name: &str) -> crate::Result<Self> {
        match name {
            "glm-large" => Ok(Self::glm_large()),
            "glm-10b" => Ok(Self::glm_10b()),
            "default" => Ok(Self::default()),
            other => Err(crate::Error::input(format!("unknown objective preset `{other}` (glm-large, glm-10b, default)"))),
        }
    }
    /// Checks that the probabilities and ratios make sense.
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |m: String| Err(crate::Error::input(format!("objective: {m}")));
        if !(0.0..=1.0).contains(&self.token_prob)
            || !(0.0..=1.0).contains(&self.sentence_prob)
            || self.token_prob + self.sentence_prob > 1.0 + 1e-9
        {
            return bad(format!(
                "token_prob {} and sentence_prob {} must be in [0, 1] and sum to at most 1",
                self.token_prob, self.sentence_prob
            ));
        }
        if !(self.mask_ratio > 0.0 && self.mask_ratio < 1.0) {
            return bad(format!("mask_ratio {} must be in (0, 1)", self.mask_ratio));
        }
        if let Some(r) = self.sentence_mask_ratio {
            if !(r > 0.0 && r < 1.0) {
                return bad(format!("sentence_mask_ratio {r} must be in (0, 1)"));
            }
        }
        // (A span cannot outgrow a sample; the bound keeps the span-length table allocatable.)
        if !(self.avg_span.is_finite() && self.avg_span > 0.0) || self.max_span == 0 || self.max_span > MAX_SPAN {
            return bad(format!(
                "avg_span {} must be a positive number and max_span {} between 1 and {MAX_SPAN}",
                self.avg_span, self.max_span
            ));
        }
        if !(0.0..=1.0).contains(&self.doc_min_ratio) || !(0.0..=1.0).contains(&self.prefix_lm_prob) {
            return bad("doc_min_ratio and prefix_lm_prob must be in [0, 1]".into());
        }
        Ok(())
    }
}

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
        })
    }
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
    let segments = segments(text, ids);
    Ok(match objective {
        Objective::Token => {
            let mut spans = Vec::new();
            for &(s, e) in &segments {
                spans.extend(token_spans(s, e, cfg, rng));
            }
            block_sample(text, spans, ids.mask, cfg, ids, objective, rng)
        }
        Objective::Sentence => {
            let mut spans = Vec::new();
            for &(s, e) in &segments {
                spans.extend(sentence_spans(text, s, e, cfg, sentence_ends, rng));
            }
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

/// Maximal runs of document tokens: `[CLS]` and `eos` are never masked.
fn segments(text: &[u32], ids: &ObjectiveTokens) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, &t) in text.iter().enumerate() {
        let boundary = t == ids.eos || (i == 0 && t == ids.cls);
        match (boundary, start) {
            (true, Some(s)) => {
                out.push((s, i));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, text.len()));
    }
    out
}

/// Poisson(λ) pmf for lengths 1..=max, as sampling weights.
fn poisson_weights(lambda: f64, max: usize) -> Vec<f64> {
    let mut w = Vec::with_capacity(max);
    let mut p = (-lambda).exp(); // pmf(0)
    for k in 1..=max {
        p *= lambda / k as f64;
        w.push(p);
    }
    w
}

fn weighted_choice(weights: &[f64], rng: &mut impl RngCore) -> usize {
    let total: f64 = weights.iter().sum();
    let mut r = rng.random::<f64>() * total;
    for (i, w) in weights.iter().enumerate() {
        if r < *w {
            return i;
        }
        r -= w;
    }
    weights.len() - 1
}

/// Places spans of the given lengths uniformly at random in `[start, end)`, in order, each
/// separated from the next by at least one unmasked token (THUDM's `sample_spans`).
fn place_spans(lengths: &[usize], start: usize, end: usize, rng: &mut impl RngCore) -> Vec<(usize, usize)> {
    let total: usize = lengths.iter().sum();
    let n = lengths.len();
    let len = end - start;
    // Free tokens that are not needed as separators between spans.
    let m = len - total - (n - 1);
    let mut places: Vec<usize> = (0..n).map(|_| rng.random_range(0..=m)).collect();
    places.sort_unstable();
    let mut offset = start;
    let mut out = Vec::with_capacity(n);
    for (place, &l) in places.into_iter().zip(lengths) {
        let s = offset + place;
        out.push((s, s + l));
        offset += l + 1;
    }
    out
}

/// Token-level spans in one segment: Poisson lengths until `mask_ratio` of it is covered.
fn token_spans(start: usize, end: usize, cfg: &ObjectiveConfig, rng: &mut impl RngCore) -> Vec<(usize, usize)> {
    let n = end - start;
    let target = (cfg.mask_ratio * n as f64) as usize;
    if target == 0 {
        return Vec::new();
    }
    let weights = poisson_weights(cfg.avg_span, cfg.max_span);
    let mut lengths = Vec::new();
    let mut covered = 0;
    while covered < target {
        let l = weighted_choice(&weights, rng) + 1;
        lengths.push(l);
        covered += l;
    }
    // Drop spans until they fit with separators (rare: only in very short segments).
    while !lengths.is_empty() && lengths.iter().sum::<usize>() + lengths.len() - 1 > n {
        lengths.pop();
    }
    if lengths.is_empty() {
        return Vec::new();
    }
    lengths.shuffle(rng);
    place_spans(&lengths, start, end, rng)
}

/// Sentence-level spans in one segment: whole sentences (without their final punctuation, which
/// stays as the separator) in random order until `mask_ratio` of the segment is covered.
fn sentence_spans(
    text: &[u32],
    start: usize,
    end: usize,
    cfg: &ObjectiveConfig,
    ends: &dyn Fn(u32) -> bool,
    rng: &mut impl RngCore,
) -> Vec<(usize, usize)> {
    let n = end - start;
    let ratio = cfg.sentence_mask_ratio.unwrap_or(cfg.mask_ratio);
    let target = ((ratio * n as f64) as usize).max(1);
    let mut sentences = Vec::new();
    let mut s = start;
    for (i, &t) in text.iter().enumerate().take(end).skip(start) {
        if ends(t) {
            if i > s {
                sentences.push((s, i));
            }
            s = i + 1;
        }
    }
    if end > s {
        sentences.push((s, end));
    }
    sentences.shuffle(rng);
    let mut chosen = Vec::new();
    let mut covered = 0;
    for sp in sentences {
        if covered >= target {
            break;
        }
        // Two adjacent chosen sentences without punctuation between them would merge: skip.
        if chosen.iter().any(|&(a, b): &(usize, usize)| sp.0 == b || sp.1 == a) {
            continue;
        }
        covered += sp.1 - sp.0;
        chosen.push(sp);
    }
    chosen.sort_unstable();
    chosen
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
    for k in order {
        let (st, en) = spans[k];
        let span = &text[st..en];
        s.tokens.push(ids.sop);
        s.tokens.extend_from_slice(span);
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
        let start = rng.random_range(1..=len - g);
        block_sample(text, vec![(start, start + g)], mask, cfg, ids, Objective::Document, rng)
    }
}

#[cfg(test)]
mod tests;
