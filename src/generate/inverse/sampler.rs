//! The unit sampler: `n` candidate units (lines, sub-sentences) drawn in one batch from one beam.
//!
//! The official code grows a visit-count-discounted tree one path at a time (`generate_sentence`).
//! Here all rows of a beam advance together through one batched cache: every row draws a token from
//! the tempered distribution over the allowed tokens; when the unit so far breaks a hard rule the
//! token is banned for that row and re-drawn (up to `max_redraws`), so invalid prefixes are pruned as
//! early as in the official filter. A steering function may force or prefer the next token (keyword
//! characters, [`NextTokens`]). Duplicate units are dropped. The forward score of a unit is the
//! sum of its tokens' log-probabilities at temperature 1 under the unprocessed model distribution
//! (the official `cum`).

use candle_core::Tensor;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::generate::poetry::LineStatus;
use crate::generate::StepInputs;
use crate::model::{Backbone, KvCache};
use crate::{Error, Result};

/// One sampled unit.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Its tokens (a stop token alone for an end-of-text candidate).
    pub tokens: Vec<u32>,
    /// Its text.
    pub text: String,
    /// Sum of the tokens' log-probabilities (temperature 1).
    pub forward: f64,
    /// True for the end-of-text candidate (a stop token drawn at the start of a unit).
    pub end: bool,
}

/// Steering of a unit's next token (keyword forcing, see [`crate::generate::poetry::Steer`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NextTokens {
    /// When set, the next token must be one of these.
    pub only: Option<Vec<u32>>,
    /// Tokens drawn together with at least probability `share` (their weights scaled up when
    /// the model gives them less; their forward score is unchanged).
    pub prefer: Vec<u32>,
    /// See `prefer`; in `[0, 1)`.
    pub share: f64,
}

/// What the sampler needs to know about the task.
pub struct SampleSpec<'a> {
    /// Tokens that may be drawn at all (index = token id).
    pub allowed: &'a [bool],
    /// If set, the first token must be one of these (acrostic heads).
    pub first: Option<&'a [u32]>,
    /// Steering of each next token given the unit's text so far (keywords); `None`: none.
    pub steer: Option<&'a dyn Fn(&str) -> NextTokens>,
    /// Stop tokens, allowed only as a unit's first token (the text ends there).
    pub stops: &'a [u32],
    /// Verdict on a unit's text so far.
    pub check: &'a dyn Fn(&str) -> LineStatus,
    /// Token ids → text.
    pub decode: &'a dyn Fn(&[u32]) -> Result<String>,
    /// Most tokens in one unit.
    pub max_tokens: usize,
    /// Sampling temperature.
    pub temperature: f32,
    /// Most re-draws of one token.
    pub max_redraws: usize,
}

struct Row {
    tokens: Vec<u32>,
    forward: f64,
    live: bool,
}

/// Draws up to `n` distinct units continuing `cache` (one row), whose next-token logits are
/// `logits`. `inputs`/`offset` place the new tokens (see [`StepInputs`]); the cache is not changed.
/// `Err` when a forced first token (`spec.first`) lies outside the model's vocabulary (a
/// tokenizer with more ids than the model has logits).
#[allow(clippy::too_many_arguments)]
pub fn sample_units(
    model: &dyn Backbone,
    cache: &KvCache,
    logits: &[f32],
    inputs: &dyn StepInputs,
    offset: usize,
    n: usize,
    spec: &SampleSpec<'_>,
    rng: &mut ChaCha8Rng,
) -> Result<Vec<Candidate>> {
    let vocab = logits.len();
    // Forced first tokens bypass the per-logit filters and would index past the logits.
    if let Some(&bad) = spec.first.unwrap_or(&[]).iter().find(|&&t| t as usize >= vocab) {
        return Err(Error::input(format!("head token id {bad} is out of range for a vocabulary of {vocab}")));
    }
    let mut rows: Vec<Row> = (0..n).map(|_| Row { tokens: vec![], forward: 0.0, live: true }).collect();
    let mut out: Vec<Candidate> = Vec::new();
    let mut batch: Option<KvCache> = None;
    let mut step_logits: Vec<Vec<f32>> = vec![logits.to_vec(); n];
    for step in 0..spec.max_tokens {
        let mut fed = Vec::with_capacity(n);
        for (r, row) in rows.iter_mut().enumerate() {
            if !row.live {
                fed.push(row.tokens.last().copied().unwrap_or(0));
                continue;
            }
            let first = (step == 0).then_some(spec.first).flatten();
            let steered = match spec.steer {
                Some(f) => f(&(spec.decode)(&row.tokens)?),
                None => NextTokens::default(),
            };
            // A forced keyword character and an acrostic head must both hold.
            let only: Option<Vec<u32>> = match (first, steered.only) {
                (Some(f), Some(o)) => Some(f.iter().copied().filter(|t| o.contains(t)).collect()),
                (Some(f), None) => Some(f.to_vec()),
                (None, o) => o,
            };
            let first = only.as_deref();
            // One tempered distribution per row and step; a rejected token only loses its weight.
            let mut dist = Dist::new(&step_logits[r], spec, first, step == 0);
            dist.prefer(&steered.prefer, steered.share);
            let mut banned: Vec<u32> = Vec::new();
            let mut decided = None;
            for _ in 0..=spec.max_redraws {
                let Some(tok) = dist.draw(rng) else { break };
                if spec.stops.contains(&tok) {
                    decided = Some((tok, LineStatus::Complete, true));
                    break;
                }
                let mut toks = row.tokens.clone();
                toks.push(tok);
                let text = (spec.decode)(&toks)?;
                match (spec.check)(&text) {
                    LineStatus::Rejected => {
                        banned.push(tok);
                        dist.ban(tok);
                    }
                    s => {
                        decided = Some((tok, s, false));
                        break;
                    }
                }
            }
            if decided.is_none() {
                decided = best_valid(&step_logits[r], spec, first, &banned, &row.tokens)?;
            }
            let Some((tok, status, end)) = decided else {
                row.live = false;
                fed.push(0);
                continue;
            };
            row.tokens.push(tok);
            row.forward += dist.logp(tok);
            if status == LineStatus::Complete {
                row.live = false;
                let text = if end { String::new() } else { (spec.decode)(&row.tokens)? };
                if !out.iter().any(|c| c.tokens == row.tokens || (!end && c.text == text)) {
                    out.push(Candidate { tokens: row.tokens.clone(), text, forward: row.forward, end });
                }
            }
            fed.push(tok);
        }
        if !rows.iter().any(|r| r.live) {
            break;
        }
        if step + 1 == spec.max_tokens {
            break;
        }
        let b = match batch.as_mut() {
            Some(b) => b,
            None => {
                let mut c = cache.clone();
                c.reorder(&Tensor::from_vec(vec![0u32; n], n, model.device())?)?;
                batch.insert(c)
            }
        };
        let ids = Tensor::from_vec(fed, (n, 1), model.device())?;
        let o = model.forward(&inputs.input(ids, offset + step)?, Some(b))?;
        step_logits = o.logits.squeeze(1)?.to_dtype(candle_core::DType::F32)?.to_vec2::<f32>()?;
    }
    Ok(out)
}

/// After the random re-draws failed: the most likely allowed token that keeps the unit valid (so a
/// rare valid token, e.g. a rhyme, is still found), checking at most `FALLBACK_CHECKS` tokens.
fn best_valid(
    logits: &[f32],
    spec: &SampleSpec<'_>,
    first: Option<&[u32]>,
    banned: &[u32],
    prefix: &[u32],
) -> Result<Option<(u32, LineStatus, bool)>> {
    const FALLBACK_CHECKS: usize = 4096;
    let mut order: Vec<u32> = match first {
        Some(f) => f.to_vec(),
        None => (0..logits.len() as u32).filter(|&t| spec.allowed.get(t as usize).copied().unwrap_or(false)).collect(),
    };
    order.retain(|t| (*t as usize) < logits.len() && !banned.contains(t) && !spec.stops.contains(t));
    order.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
    let mut toks = prefix.to_vec();
    toks.push(0);
    for &t in order.iter().take(FALLBACK_CHECKS) {
        *toks.last_mut().expect("pushed above") = t;
        match (spec.check)(&(spec.decode)(&toks)?) {
            LineStatus::Rejected => {}
            s => return Ok(Some((t, s, false))),
        }
    }
    Ok(None)
}

/// The sampling distribution of one row at one step: `softmax(logits / T)` over the permitted
/// tokens (allowed, or the forced tokens; stops only at a unit's start; preferred tokens scaled
/// to their share), plus the
/// temperature-1 log-normaliser of the full distribution for the forward score.
struct Dist<'a> {
    logits: &'a [f32],
    tokens: Vec<u32>,
    weights: Vec<f64>,
    total: f64,
    log_z: f64,
}

impl<'a> Dist<'a> {
    fn new(logits: &'a [f32], spec: &SampleSpec<'_>, first: Option<&[u32]>, at_start: bool) -> Self {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let log_z = max as f64 + logits.iter().map(|&x| (x - max).exp() as f64).sum::<f64>().ln();
        let permitted = |t: u32| {
            if spec.stops.contains(&t) {
                return at_start && first.is_none();
            }
            match first {
                Some(f) => f.contains(&t),
                None => spec.allowed.get(t as usize).copied().unwrap_or(false),
            }
        };
        let tokens: Vec<u32> = (0..logits.len() as u32).filter(|&t| permitted(t)).collect();
        let inv_t = 1.0 / spec.temperature;
        let weights: Vec<f64> = tokens.iter().map(|&t| ((logits[t as usize] - max) * inv_t).exp() as f64).collect();
        let total = weights.iter().sum();
        Self { logits, tokens, weights, total, log_z }
    }

    /// Scales the weights of `tokens` up so that they are drawn together with at least
    /// probability `share` (no change when the model gives them that much, or none is permitted).
    fn prefer(&mut self, tokens: &[u32], share: f64) {
        let share = share.clamp(0.0, 0.99);
        let is = |t: &u32| tokens.contains(t);
        let pref: f64 = self.tokens.iter().zip(&self.weights).filter(|(t, _)| is(t)).map(|(_, w)| w).sum();
        let rest = self.total - pref;
        if share <= 0.0 || pref <= 0.0 || pref >= share * self.total {
            return;
        }
        let scale = share * rest / ((1.0 - share) * pref);
        for (t, w) in self.tokens.iter().zip(self.weights.iter_mut()) {
            if is(t) {
                *w *= scale;
            }
        }
        self.total = rest + pref * scale;
    }

    /// `log p(t)` at temperature 1 under the unprocessed distribution.
    fn logp(&self, t: u32) -> f64 {
        self.logits.get(t as usize).map_or(f64::NEG_INFINITY, |&x| x as f64 - self.log_z)
    }

    fn ban(&mut self, t: u32) {
        if let Some(i) = self.tokens.iter().position(|&x| x == t) {
            self.total -= self.weights[i];
            self.weights[i] = 0.0;
        }
    }

    fn draw(&self, rng: &mut ChaCha8Rng) -> Option<u32> {
        if self.total.is_nan() || self.total <= 1e-300 {
            return None;
        }
        let mut u = rng.random::<f64>() * self.total;
        let mut last = None;
        for (&t, &w) in self.tokens.iter().zip(&self.weights) {
            if w <= 0.0 {
                continue;
            }
            if u < w {
                return Some(t);
            }
            u -= w;
            last = Some(t);
        }
        last
    }
}
