//! GLM blank filling, as THUDM/GLM `generate_samples.py` (`--block-lm`) does it:
//!
//! 1. one pass over the whole context, fully bidirectional (`sep = len`), positions
//!    `[0..len, 0]`, keeping the cache;
//! 2. for every `[MASK]`/`[sMASK]`/`[gMASK]`, left to right: feed `[sop]`, then each generated
//!    token, one at a time, with positions `[[mask_pos], [k]]` (k = 1, 2, …) and `sep = 0`
//!    (every cached position is visible), until `eop`/`eos` or the length limit.
//!
//! Generated tokens stay in the cache, so later blanks condition on earlier fills. One
//! difference from the official loop: a fill stopped by the length limit has its last token fed
//! too, so the cache always holds every fill token (the official code drops the last one from
//! its mems). With beam search the chosen fill is fed once more from a snapshot of the cache
//! taken before the blank (the search itself reorders one shared cache).

use super::{decode, GenerationConfig, StepInputs};
use crate::model::{Attention, Backbone, BackboneInput, KvCache, ModelKind};
use crate::tokenizer::SpecialTokens;
use crate::{Error, Result};
use candle_core::Tensor;
use serde::Serialize;

/// The command-token ids blank filling needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlankTokens {
    /// Tokens that mark a blank (`[MASK]`, `[sMASK]`, `[gMASK]`).
    pub masks: Vec<u32>,
    /// `<|startofpiece|>`, fed first in every blank.
    pub sop: u32,
    /// `<|endofpiece|>`, ends a fill.
    pub eop: u32,
    /// End of text, also ends a fill when set.
    pub eos: Option<u32>,
}

impl BlankTokens {
    /// The ids from a tokenizer's special tokens; `sop` and `eop` must exist.
    pub fn from_special(s: &SpecialTokens) -> Result<Self> {
        let need = |v: Option<u32>, name: &str| {
            v.ok_or_else(|| {
                Error::input(format!("blank filling needs the `{name}` token, but this tokenizer has none (not a GLM tokenizer?)"))
            })
        };
        let masks: Vec<u32> = [s.mask, s.smask, s.gmask].into_iter().flatten().collect();
        if masks.is_empty() {
            return Err(Error::input("blank filling needs [MASK], [sMASK] or [gMASK], but this tokenizer has none"));
        }
        Ok(Self { masks, sop: need(s.sop, "<|startofpiece|>")?, eop: need(s.eop, "<|endofpiece|>")?, eos: s.eos })
    }
    fn stops(&self) -> Vec<u32> {
        std::iter::once(self.eop).chain(self.eos).collect()
    }
}

/// The fill of one blank.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BlankFill {
    /// Index of the mask token in the context.
    pub mask_position: usize,
    /// The mask token (`[MASK]`, `[sMASK]` or `[gMASK]`).
    pub mask_token: u32,
    /// The generated tokens, without `[sop]` and without the stop token.
    pub tokens: Vec<u32>,
    /// True when the fill ended with `eop`/`eos` (false: stopped by the length limit).
    pub finished: bool,
    /// The hypothesis score (see [`super::Hypothesis::score`]).
    pub score: f32,
}

/// The result of [`fill_blanks`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FilledText {
    /// The context with every blank replaced by its fill.
    pub tokens: Vec<u32>,
    /// The official layout: the context, then `[sop] fill` for each blank in order (what the
    /// cache holds at the end).
    pub sequence: Vec<u32>,
    /// One entry per blank, left to right.
    pub fills: Vec<BlankFill>,
}

/// [`StepInputs`] for one GLM blank: positions `[[mask_pos], [offset + 1 ..]]`, `sep = 0`.
#[derive(Debug, Clone)]
pub struct GlmBlankInputs {
    /// Position of the mask token in the context.
    pub mask_position: usize,
    /// Block positions available (the model's `max_positions`).
    pub max_block_position: usize,
    /// `[1, K]` attention logit bias toward the first `K` keys of every step (see
    /// [`crate::model::BackboneInput::key_bias`]); `None` = none.
    pub key_bias: Option<Tensor>,
}

impl GlmBlankInputs {
    /// Inputs for the blank at `mask_position` of a model with `max_block_position` positions.
    pub fn new(mask_position: usize, max_block_position: usize) -> Self {
        Self { mask_position, max_block_position, key_bias: None }
    }
}

impl StepInputs for GlmBlankInputs {
    fn input(&self, ids: Tensor, offset: usize) -> Result<BackboneInput> {
        let (rows, s) = ids.dims2()?;
        let mut data = Vec::with_capacity(rows * 2 * s);
        for _ in 0..rows {
            data.extend(std::iter::repeat_n(self.mask_position as u32, s));
            data.extend((0..s).map(|k| (offset + k + 1) as u32));
        }
        let positions = Tensor::from_vec(data, (rows, 2, s), ids.device())?;
        let input = BackboneInput::ids(ids).with_positions(positions).with_attention(Attention::Sep(vec![0; rows]));
        Ok(match &self.key_bias {
            Some(b) => input.with_key_bias(b.clone()),
            None => input,
        })
    }
    fn capacity(&self) -> Option<usize> {
        // One block position is kept for the last token, which `fill_blanks` feeds afterwards.
        Some(self.max_block_position.saturating_sub(1))
    }
}

/// Fills every blank of `context` left to right with `cfg` (greedy, sampling or beam search;
/// `eop` and `eos` are added to the stop tokens), keeping the best fill of each blank. Errors
/// when the context has no blank or does not fit the model, and when `cfg.num_return_sequences`
/// is not 1 (the other hypotheses would be dropped).
pub fn fill_blanks(model: &dyn Backbone, context: &[u32], tokens: &BlankTokens, cfg: &GenerationConfig) -> Result<FilledText> {
    fill_blanks_streaming(model, context, tokens, cfg, None)
}

/// Called with `(blank index, token index within the fill, token)` for every decided fill token
/// (stop tokens included), as [`super::StepHook`]; returning `false` ends that blank's fill.
pub type BlankHook<'a> = &'a mut dyn FnMut(usize, usize, u32) -> bool;

/// [`fill_blanks`] that reports each fill token as it is decided: greedy and sampling call `hook`
/// as tokens are chosen (streaming), beam search once per blank with the best fill.
pub fn fill_blanks_streaming(
    model: &dyn Backbone,
    context: &[u32],
    tokens: &BlankTokens,
    cfg: &GenerationConfig,
    mut hook: Option<BlankHook<'_>>,
) -> Result<FilledText> {
    cfg.validate()?;
    // Each blank keeps its best fill: more hypotheses would be silently dropped.
    if cfg.num_return_sequences != 1 {
        return Err(Error::input(format!(
            "num_return_sequences must be 1 with a GLM (blank filling keeps the best fill of each blank), got {}; set it to 1 \
             (for several different fills, run it again with do_sample and other seeds)",
            cfg.num_return_sequences
        )));
    }
    // A GPT-2 or BERT would fail later on the 2-D positions, with an error about tensor shapes.
    let kind = model.info().kind;
    if kind != ModelKind::Glm {
        return Err(Error::input(format!("blank filling needs a GLM; this model is a {kind} (use `wenhui generate` with a GPT-2)")));
    }
    if context.is_empty() {
        return Err(Error::input("empty context: give the text with at least one [MASK]/[sMASK]/[gMASK] blank"));
    }
    let max_pos = model.info().max_positions;
    if context.len() > max_pos {
        return Err(Error::input(format!(
            "the context has {} tokens but the model has only {max_pos} positions; shorten it",
            context.len()
        )));
    }
    let vocab = model.info().vocab_size;
    if let Some(&bad) = context.iter().find(|&&t| t as usize >= vocab) {
        return Err(Error::input(format!("context token id {bad} is out of range for a vocabulary of {vocab}")));
    }
    let blanks: Vec<usize> = (0..context.len()).filter(|&i| tokens.masks.contains(&context[i])).collect();
    if blanks.is_empty() {
        return Err(Error::input("the context has no [MASK]/[sMASK]/[gMASK] token to fill"));
    }
    let mut cfg = cfg.clone();
    for s in tokens.stops() {
        if !cfg.eos_token_ids.contains(&s) {
            cfg.eos_token_ids.push(s);
        }
    }
    let device = model.device();
    let n = context.len();
    let mut cache = model.new_cache();
    let pos: Vec<u32> = (0..n as u32).chain(std::iter::repeat_n(0, n)).collect();
    let positions = Tensor::from_vec(pos, (1, 2, n), device)?;
    let ctx =
        BackboneInput::ids(Tensor::new(context, device)?.unsqueeze(0)?).with_positions(positions).with_attention(Attention::Sep(vec![n]));
    model.forward(&ctx, Some(&mut cache))?;

    let mut sequence = context.to_vec();
    let mut fills = Vec::with_capacity(blanks.len());
    for (b, &pos) in blanks.iter().enumerate() {
        let inputs = GlmBlankInputs::new(pos, max_pos);
        sequence.push(tokens.sop);
        let snapshot = if cfg.num_beams > 1 { Some(cache.clone()) } else { None };
        let mut step_hook = hook.as_mut().map(|h| move |i: usize, t: u32| h(b, i, t));
        let step_hook = step_hook.as_mut().map(|h| h as &mut dyn FnMut(usize, u32) -> bool);
        let out = decode(model, &mut cache, &sequence, &[tokens.sop], &inputs, &cfg, step_hook)?;
        let best = out.sequences.into_iter().next().ok_or_else(|| Error::input("generation returned no hypothesis"))?;
        let mut fill = best.tokens;
        if best.finished {
            fill.pop();
        }
        match snapshot {
            Some(snap) => {
                cache = snap;
                let feed: Vec<u32> = std::iter::once(tokens.sop).chain(fill.iter().copied()).collect();
                feed_tokens(model, &mut cache, &inputs, &feed, 0)?;
            }
            None if !best.finished => {
                // The cache holds [sop] and every token but the last: feed the last one too.
                if let Some(&last) = fill.last() {
                    feed_tokens(model, &mut cache, &inputs, &[last], fill.len())?;
                }
            }
            None => {}
        }
        sequence.extend(&fill);
        fills.push(BlankFill { mask_position: pos, mask_token: context[pos], tokens: fill, finished: best.finished, score: best.score });
    }
    let mut filled = Vec::with_capacity(sequence.len());
    let mut next = fills.iter();
    for &t in context {
        match tokens.masks.contains(&t).then(|| next.next()).flatten() {
            Some(f) => filled.extend(&f.tokens),
            None => filled.push(t),
        }
    }
    Ok(FilledText { tokens: filled, sequence, fills })
}

fn feed_tokens(model: &dyn Backbone, cache: &mut KvCache, inputs: &GlmBlankInputs, feed: &[u32], offset: usize) -> Result<()> {
    let ids = Tensor::new(feed, model.device())?.unsqueeze(0)?;
    model.forward(&inputs.input(ids, offset)?, Some(cache))?;
    Ok(())
}

/// The result of [`fill_text`]: the text with every blank filled, and each fill on its own.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TextFill {
    /// The whole text, blanks replaced by their fills (special tokens dropped). Characters the
    /// tokenizer has no token for are kept as written, although the model read them as `[UNK]`
    /// (see [`unknown_text`]); `[UNK]`s the model generated are dropped, as in `fills`.
    pub text: String,
    /// Each blank's fill, in order.
    pub fills: Vec<String>,
    /// Each fill's score (sum of log-probabilities, or the beam score).
    pub scores: Vec<f32>,
}

/// The context [`fill_text`] builds for `text`: `[CLS] text`, plus `[gMASK]` when the text has
/// no blank (long generation), plus `eos` unless it ends with `[gMASK]`.
pub fn glm_context(tokenizer: &crate::tokenizer::Tokenizer, text: &str) -> Result<Vec<u32>> {
    let tokens = BlankTokens::from_special(&tokenizer.special)?;
    let special = &tokenizer.special;
    let mut context = vec![special.get("cls")?];
    context.extend(tokenizer.encode(text, false)?);
    if !context.iter().any(|t| tokens.masks.contains(t)) {
        context.push(special.get("gmask")?);
    }
    if context.last().copied() != special.gmask {
        context.push(special.get("eos")?);
    }
    Ok(context)
}

/// Fills the blanks of `text` as THUDM's `generate_samples.py` builds the context:
/// `[CLS] text`, plus `[gMASK]` when the text has no blank (long generation), plus `eos`
/// unless it ends with `[gMASK]`. As [`fill_blanks`], it returns the best fill of each blank:
/// `cfg.num_return_sequences` must be 1. The rows of a padded vocabulary are never generated
/// ([`super::padded_vocabulary_rows`]).
pub fn fill_text(model: &dyn Backbone, tokenizer: &crate::tokenizer::Tokenizer, text: &str, cfg: &GenerationConfig) -> Result<TextFill> {
    let tokens = BlankTokens::from_special(&tokenizer.special)?;
    let context = glm_context(tokenizer, text)?;
    let mut cfg = cfg.clone();
    cfg.bad_words_ids.extend(super::padded_vocabulary_rows(model, tokenizer));
    let filled = fill_blanks(model, &context, &tokens, &cfg)?;
    let fills = filled.fills.iter().map(|f| tokenizer.decode(&f.tokens, true)).collect::<Result<Vec<_>>>()?;
    let text = match splice_fills(tokenizer, text, &fills)? {
        Some(spliced) => spliced,
        None => filled_text(tokenizer, text, &context, &tokens, &filled)?,
    };
    Ok(TextFill { text, scores: filled.fills.iter().map(|f| f.score).collect(), fills })
}

/// `text` with each of its blanks (`[MASK]`, `[sMASK]`, `[gMASK]`) replaced by its fill, in order,
/// and everything else exactly as written: spaces, line breaks, characters the tokenizer does not
/// know. Without a blank the context got a `[gMASK]` after the text, whose fill follows it.
/// `None` when the blanks cannot be found in `text` by the encoding's offsets, or their number is
/// not the number of fills (the caller then decodes the filled tokens instead).
pub fn splice_fills(tokenizer: &crate::tokenizer::Tokenizer, text: &str, fills: &[String]) -> Result<Option<String>> {
    let masks: Vec<u32> = [tokenizer.special.mask, tokenizer.special.smask, tokenizer.special.gmask].into_iter().flatten().collect();
    let enc = tokenizer.encode_full(text, false)?;
    let blanks: Vec<(usize, usize)> =
        enc.get_ids().iter().zip(enc.get_offsets()).filter(|(id, _)| masks.contains(id)).map(|(_, &span)| span).collect();
    if blanks.is_empty() {
        return Ok(match fills {
            [fill] => Some(format!("{text}{fill}")),
            _ => None,
        });
    }
    if blanks.len() != fills.len() {
        return Ok(None);
    }
    let mut out = String::with_capacity(text.len() + fills.iter().map(String::len).sum::<usize>());
    let mut at = 0;
    for (&(from, to), fill) in blanks.iter().zip(fills) {
        // Offsets out of order or off character boundaries: not spans of this text.
        let Some(before) = text.get(at..from).filter(|_| text.get(from..to).is_some()) else {
            return Ok(None);
        };
        out.push_str(before);
        out.push_str(fill);
        at = to;
    }
    match text.get(at..) {
        Some(rest) => out.push_str(rest),
        None => return Ok(None),
    }
    Ok(Some(out))
}

/// The fallback of [`fill_text`] where [`splice_fills`] cannot place the fills: the text of
/// `filled` (built from `context`, the context of `text`), special tokens dropped,
/// and every unknown token of `text` shown as the characters it stands for, found by the
/// encoding's offsets. A plain decode would drop them (`[UNK]` is special), so Latin words or
/// emoji in the text would vanish from the result. Unknown tokens the model generated in a fill
/// are dropped, as in [`TextFill::fills`].
fn filled_text(
    tokenizer: &crate::tokenizer::Tokenizer,
    text: &str,
    context: &[u32],
    tokens: &BlankTokens,
    filled: &FilledText,
) -> Result<String> {
    let plain = || tokenizer.decode(&filled.tokens, true);
    let Some(unk) = tokenizer.special.unk else { return plain() };
    let enc = tokenizer.encode_full(text, false)?;
    let originals: Option<Vec<&str>> =
        enc.get_ids().iter().zip(enc.get_offsets()).filter(|(&id, _)| id == unk).map(|(_, &(from, to))| text.get(from..to)).collect();
    // No unknown piece (the usual case), or offsets that do not point into the text: as decoded.
    let Some(originals) = originals.filter(|o| !o.is_empty()) else { return plain() };
    let Some(unk_text) = tokenizer.id_to_token(unk) else { return plain() };
    let added = tokenizer.inner().get_added_tokens_decoder();
    let special = |id: u32| id != unk && (tokenizer.special.iter().any(|(_, s)| s == id) || added.get(&id).is_some_and(|t| t.special));
    // The context's tokens with each blank's fill in place, every special token but the text's
    // own unknown tokens dropped: decoded with `[UNK]` written out, then each replaced in turn.
    let mut seq = Vec::with_capacity(filled.tokens.len());
    let mut fills = filled.fills.iter();
    for &t in context {
        if tokens.masks.contains(&t) {
            if let Some(f) = fills.next() {
                seq.extend(f.tokens.iter().copied().filter(|&t| t != unk && !special(t)));
            }
        } else if !special(t) {
            seq.push(t);
        }
    }
    let decoded = tokenizer.decode(&seq, false)?;
    let parts: Vec<&str> = decoded.split(unk_text.as_str()).collect();
    // `[UNK]` spelled by other tokens would shift the replacements: keep the plain decode then.
    if parts.len() != originals.len() + 1 {
        return plain();
    }
    let mut out = String::with_capacity(decoded.len());
    for (part, original) in parts.iter().zip(originals.iter().map(Some).chain(std::iter::once(None))) {
        out.push_str(part);
        if let Some(o) = original {
            out.push_str(o);
        }
    }
    Ok(out)
}

/// What [`unknown_text`] found: the parts of a text the tokenizer has no token for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnknownText {
    /// Each distinct piece of the text that became the unknown token (`[UNK]`), in order.
    pub pieces: Vec<String>,
    /// Unknown tokens in the encoding.
    pub unknown: usize,
    /// Tokens in the encoding, command tokens (`[MASK]`, …) not counted.
    pub tokens: usize,
}

impl UnknownText {
    /// True when the text has tokens and every one of them is unknown: nothing of it reaches the model.
    pub fn all_unknown(&self) -> bool {
        self.tokens > 0 && self.unknown == self.tokens
    }

    /// The unknown pieces for a message: `"Hello", "😀"`.
    pub fn listed(&self) -> String {
        self.pieces.iter().map(|p| format!("\"{p}\"")).collect::<Vec<_>>().join(", ")
    }

    /// For an input named `what` (`--prompt`, ``title `…` ``): a warning (one log line) naming
    /// its unknown pieces, or, when nothing of it is known, the message to refuse it with.
    pub fn warn_or_refusal(&self, what: &str) -> Option<String> {
        if let Some(refusal) = self.refusal(what) {
            return Some(refusal);
        }
        if !self.pieces.is_empty() {
            tracing::warn!("{what}: not in the model's vocabulary, read as [UNK]: {}", self.listed());
        }
        None
    }
    /// The message to refuse an input named `what` with when its vocabulary knows none of it;
    /// `None` otherwise, and nothing logged (a server refuses per request without a log line).
    pub fn refusal(&self, what: &str) -> Option<String> {
        self.all_unknown().then(|| {
            format!(
                "{what}: the model's vocabulary knows none of it ({}): every character became [UNK]; write it in the model's script",
                self.listed()
            )
        })
    }
}

/// The parts of `text` that `tokenizer` encodes as its unknown token: the model sees one
/// `[UNK]` in their place, so they silently vanish from a prompt. Empty for tokenizers without
/// an unknown token (byte-level BPE knows every text).
pub fn unknown_text(tokenizer: &crate::tokenizer::Tokenizer, text: &str) -> Result<UnknownText> {
    let Some(unk) = tokenizer.special.unk else { return Ok(UnknownText::default()) };
    let enc = tokenizer.encode_full(text, false)?;
    let commands: Vec<u32> = tokenizer.special.iter().map(|(_, id)| id).filter(|&id| id != unk).collect();
    let mut out = UnknownText::default();
    // Runs of unknown tokens that touch in the text (`Hello` from a character tokenizer's five
    // [UNK]s) are shown as one piece.
    let mut runs: Vec<(usize, usize, String)> = Vec::new();
    let mut previous_unknown = false;
    for ((&id, &(from, to)), piece) in enc.get_ids().iter().zip(enc.get_offsets()).zip(enc.get_tokens()) {
        if commands.contains(&id) {
            previous_unknown = false;
            continue;
        }
        out.tokens += 1;
        if id != unk {
            previous_unknown = false;
            continue;
        }
        out.unknown += 1;
        match runs.last_mut() {
            Some(run) if previous_unknown && run.1 == from && text.get(run.0..to).is_some() => run.1 = to,
            _ => runs.push((from, to, piece.clone())),
        }
        previous_unknown = true;
    }
    for (from, to, piece) in runs {
        // The offsets point into `text`; a tokenizer whose offsets do not gets its piece shown.
        let original = text.get(from..to).map(str::trim).filter(|s| !s.is_empty()).unwrap_or(piece.as_str()).to_string();
        if !out.pieces.contains(&original) {
            out.pieces.push(original);
        }
    }
    Ok(out)
}
