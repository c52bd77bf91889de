//! Seq2seq data for GLM (spec glm §6, THUDM/GLM `tasks/seq2seq/dataset.py`): `{source, target}`
//! JSONL pairs and the official input layout.
//!
//! * **Part A** (bidirectional): the source template, e.g. `[CLS] [MASK] Content: source…` as the
//!   official `SummaryPVP`, or `[CLS] source… Summary: [MASK]` as its older form. Only the source
//!   text is truncated, so the mask and the template always survive. With `pad_source` Part A is
//!   padded with `pad` to `max_source_len` as the official code does (the pads are visible unless
//!   `mask_pad_token`, `--mask-pad-token`, hides them with an explicit mask).
//! * **Part B** (causal): `[sop] t_1 … t_{T-1}` with targets `t_1 … t_T`, where `t` = the target tokens
//!   then `[eop]`, cut to `max_target_len`; every Part B token sits at the mask's position with block
//!   positions `1..=T`; the loss mask is 1 exactly on Part B.
//! * `sep` = length of Part A.
//! * **Pseudo tokens** (P-tuning): `[P]` or `[P*n]` in the template are continuous-prompt slots.
//!   Each holds the pad id in the token ids; [`Seq2seqSample::pseudo`] lists their positions so
//!   that a prompt encoder's vectors replace their embeddings (`ptune --task seq2seq`).

use crate::tokenizer::{SpecialTokens, Tokenizer};
use crate::{Error, Result};
use std::path::Path;

/// One `{source, target}` example.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Seq2seqPair {
    /// The input text.
    pub source: String,
    /// The text to generate.
    pub target: String,
    /// `file:line` it came from (for error messages).
    pub origin: String,
}

/// Reads `{source, target}` JSONL (field names configurable). Blank lines are skipped; a line
/// that is not a JSON object, lacks a field, has a non-string field or an empty target is an
/// error naming `file:line`. With `require_target = false` the target may be missing or empty
/// (decoding-only input).
pub fn read_pairs(path: &Path, source_field: &str, target_field: &str, require_target: bool) -> Result<Vec<Seq2seqPair>> {
    let text = crate::error::read_text(path)?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = format!("line {}", i + 1);
        let bad = |m: String| Error::file(path, format!("{at}: {m}"));
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| bad(format!("not JSON: {e}")))?;
        let obj = v.as_object().ok_or_else(|| bad("expected a JSON object".into()))?;
        let field = |name: &str, required: bool| -> Result<String> {
            match obj.get(name) {
                Some(serde_json::Value::String(s)) => Ok(s.clone()),
                Some(other) => Err(bad(format!("field `{name}` must be a string, got {other}"))),
                None if required => Err(bad(format!("missing field `{name}` (set the field name with --source-field/--target-field)"))),
                None => Ok(String::new()),
            }
        };
        let source = field(source_field, true)?;
        let target = field(target_field, require_target)?;
        if source.trim().is_empty() {
            return Err(bad(format!("empty source field `{source_field}`")));
        }
        if require_target && target.trim().is_empty() {
            return Err(bad(format!("empty target field `{target_field}`: nothing to learn")));
        }
        out.push(Seq2seqPair { source, target, origin: format!("{}:{}", path.display(), i + 1) });
    }
    if out.is_empty() {
        return Err(Error::file(path, "no examples (the file is empty)"));
    }
    Ok(out)
}

/// The command tokens the layout uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seq2seqTokens {
    /// `[CLS]`.
    pub cls: u32,
    /// Padding (`pad`, or `eos` where the tokenizer has no pad).
    pub pad: u32,
    /// `<|startofpiece|>`.
    pub sop: u32,
    /// `<|endofpiece|>`.
    pub eop: u32,
    /// The mask tokens a template may use (`[MASK]`, `[sMASK]`, `[gMASK]` where present).
    pub masks: [Option<u32>; 3],
}

impl Seq2seqTokens {
    /// From a tokenizer's special tokens; errors name the missing one.
    pub fn from_special(s: &SpecialTokens) -> Result<Self> {
        let pad = s.pad.or(s.eos).ok_or_else(|| Error::input("the tokenizer has neither a pad nor an eos token"))?;
        Ok(Self { cls: s.get("cls")?, pad, sop: s.get("sop")?, eop: s.get("eop")?, masks: [s.mask, s.smask, s.gmask] })
    }
    fn is_mask(&self, t: u32) -> bool {
        self.masks.contains(&Some(t))
    }
}

/// How sources and targets become model inputs.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LayoutConfig {
    /// Part A text around the source: `{source}` marks where it goes and exactly one
    /// `[MASK]`/`[sMASK]`/`[gMASK]` must appear. `[CLS]` is always put first. Whitespace right
    /// before `{source}` is encoded as a leading space of the source (as the official
    /// `" " + source`). `[P]` / `[P*n]` are P-tuning's pseudo tokens (the text between them is
    /// encoded piece by piece, the whitespace next to them dropped). Default
    /// `[MASK] Content: {source}` (official `SummaryPVP`).
    pub template: String,
    /// Most Part A tokens, template and `[CLS]` included (official `--src-seq-length`).
    pub max_source_len: usize,
    /// Most target tokens, `[eop]` included (official `--tgt-seq-length`).
    pub max_target_len: usize,
    /// Pad Part A to `max_source_len` as the official dataset does (default false: no padding,
    /// which equals the official layout with `--mask-pad-token` except the pads' positions).
    pub pad_source: bool,
    /// With `pad_source`: hide the pads from every query (official `--mask-pad-token`).
    pub mask_pad_token: bool,
    /// Prepend a space to the target before encoding (official `" " + target`, for BPE
    /// vocabularies; off for character tokenizers).
    pub target_space: bool,
}

impl LayoutConfig {
    /// Largest `max_source_len`, and largest `max_target_len` + 1 (the target's block positions):
    /// position ids are `u32`, so no model has more positions (the bound a model config's
    /// position table is checked against).
    pub const MAX_LEN: usize = u32::MAX as usize - 1;

    /// Checks the length limits on their own: a target of at least 1 token (`[eop]`) and both
    /// within [`LayoutConfig::MAX_LEN`] positions; errors name the command-line flag.
    fn check_lengths(&self) -> Result<()> {
        if self.max_target_len < 1 {
            return Err(Error::input("the target length limit must be at least 1 ([eop])"));
        }
        if self.max_source_len > Self::MAX_LEN {
            return Err(Error::input(format!(
                "source length limit {} (--max-source-len) is more positions than any model has (at most {}); lower it",
                self.max_source_len,
                Self::MAX_LEN
            )));
        }
        if self.max_target_len >= Self::MAX_LEN {
            return Err(Error::input(format!(
                "target length limit {} (--max-target-len) needs more block positions than any model has (at most {}); lower it",
                self.max_target_len,
                Self::MAX_LEN
            )));
        }
        Ok(())
    }
}

impl Default for LayoutConfig {
    fn default() -> Self {
        Self {
            template: "[MASK] Content: {source}".into(),
            max_source_len: 464,
            max_target_len: 48,
            pad_source: false,
            mask_pad_token: false,
            target_space: false,
        }
    }
}

/// A tokenized source template: the tokens before and after the source.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedTemplate {
    /// `[CLS]` + the template's tokens before the source.
    pub prefix: Vec<u32>,
    /// The template's tokens after the source.
    pub suffix: Vec<u32>,
    /// Encode the source with a leading space.
    pub source_space: bool,
    /// The pseudo tokens' indices into `prefix ‖ suffix`, in order (empty: no P-tuning).
    pub pseudo: Vec<usize>,
}

/// The most pseudo tokens a seq2seq template may hold (far more than any prompt needs: only a
/// typo such as `[P*300000]` meets it).
const MAX_PSEUDO: usize = 4096;

/// `text` encoded piece by piece around its `[P]` / `[P*n]` markers, `placeholder` at each pseudo
/// token; returns the ids and the pseudo tokens' indices. Whitespace next to a marker is dropped,
/// so a template without markers encodes exactly as one piece.
fn encode_with_pseudo(tokenizer: &Tokenizer, text: &str, placeholder: u32, template: &str) -> Result<(Vec<u32>, Vec<usize>)> {
    let (mut ids, mut pseudo) = (Vec::new(), Vec::new());
    let (mut rest, mut from) = (text, 0);
    while let Some(found) = rest[from..].find("[P") {
        let at = from + found;
        let after = &rest[at..];
        let (count, len) = if after.starts_with("[P]") {
            (1, 3)
        } else if let Some(n) = after.strip_prefix("[P*").and_then(|r| r.split_once(']')).map(|(n, _)| n) {
            let count = n.parse::<usize>().ok().filter(|&c| c >= 1).ok_or_else(|| {
                Error::input(format!("template `{template}`: malformed `[P*{n}]`: the count must be a whole number ≥ 1, e.g. `[P*4]`"))
            })?;
            (count, n.len() + 4)
        } else if after.starts_with("[P*") {
            return Err(Error::input(format!("template `{template}`: `[P*` is never closed; write `[P*4]` for four pseudo tokens")));
        } else {
            // Text that merely starts like a marker (`[PAD]`, `[Place]`) stays in its piece.
            from = at + 2;
            continue;
        };
        encode_piece(tokenizer, rest[..at].trim_end(), &mut ids)?;
        if pseudo.len() + count > MAX_PSEUDO {
            return Err(Error::input(format!("template `{template}`: more than {MAX_PSEUDO} pseudo tokens")));
        }
        pseudo.extend(ids.len()..ids.len() + count);
        ids.extend(std::iter::repeat_n(placeholder, count));
        (rest, from) = (rest[at + len..].trim_start(), 0);
    }
    encode_piece(tokenizer, rest, &mut ids)?;
    Ok((ids, pseudo))
}

fn encode_piece(tokenizer: &Tokenizer, piece: &str, ids: &mut Vec<u32>) -> Result<()> {
    if !piece.is_empty() {
        ids.extend(tokenizer.encode(piece, false)?);
    }
    Ok(())
}

impl EncodedTemplate {
    /// Encodes `cfg.template` with `tokenizer`; errors when `{source}` or the single mask is missing.
    pub fn new(tokenizer: &Tokenizer, tokens: &Seq2seqTokens, template: &str) -> Result<Self> {
        let (before, after) =
            template.split_once("{source}").ok_or_else(|| Error::input(format!("template `{template}` has no {{source}} placeholder")))?;
        if after.contains("{source}") {
            return Err(Error::input(format!("template `{template}` has {{source}} twice")));
        }
        let source_space = before.ends_with(char::is_whitespace);
        let before = before.trim_end();
        let (encoded, before_pseudo) = encode_with_pseudo(tokenizer, before, tokens.pad, template)?;
        let mut prefix = vec![tokens.cls];
        prefix.extend(encoded);
        let (suffix, after_pseudo) = encode_with_pseudo(tokenizer, after, tokens.pad, template)?;
        let mut pseudo: Vec<usize> = before_pseudo.iter().map(|i| i + 1).collect();
        pseudo.extend(after_pseudo.iter().map(|i| i + prefix.len()));
        let masks = prefix.iter().chain(&suffix).filter(|&&t| tokens.is_mask(t)).count();
        if masks != 1 {
            return Err(Error::input(format!("template `{template}` must contain exactly one [MASK], [sMASK] or [gMASK] (found {masks})")));
        }
        Ok(Self { prefix, suffix, source_space, pseudo })
    }

    /// The pseudo tokens' positions in a Part A that holds `kept` source tokens.
    pub fn pseudo_positions(&self, kept: usize) -> Vec<usize> {
        self.pseudo.iter().map(|&i| if i < self.prefix.len() { i } else { i + kept }).collect()
    }

    /// Part A for `source` token ids (already encoded), the source cut so that the whole fits
    /// `max_len`; returns the tokens and whether the source was truncated.
    pub fn part_a(&self, source: &[u32], max_len: usize) -> Result<(Vec<u32>, bool)> {
        let fixed = self.prefix.len() + self.suffix.len();
        if fixed >= max_len {
            return Err(Error::input(format!(
                "the source template alone has {fixed} tokens; the source length limit {max_len} leaves no room for the source"
            )));
        }
        let keep = source.len().min(max_len - fixed);
        let mut a = Vec::with_capacity(fixed + keep);
        a.extend(&self.prefix);
        a.extend(&source[..keep]);
        a.extend(&self.suffix);
        Ok((a, keep < source.len()))
    }
}

/// One laid-out example, the official dataset's dictionary.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Seq2seqSample {
    /// Part A ‖ Part B input ids.
    pub tokens: Vec<u32>,
    /// Targets (0 on Part A).
    pub targets: Vec<u32>,
    /// 1 on the Part B tokens whose targets count, 0 elsewhere.
    pub loss_mask: Vec<f32>,
    /// Row 0 of the 2D positions.
    pub positions: Vec<u32>,
    /// Row 1 (block positions).
    pub blocks: Vec<u32>,
    /// Length of Part A (the `sep` attention argument).
    pub sep: usize,
    /// Index of the mask token in Part A.
    pub mask_position: usize,
    /// Part A positions `>= pad_from` are padding (`sep` when there is none).
    pub pad_from: usize,
    /// The source was cut to fit.
    pub source_truncated: bool,
    /// The target was cut to fit.
    pub target_truncated: bool,
    /// Positions of the template's pseudo tokens in Part A (P-tuning; empty without).
    pub pseudo: Vec<usize>,
}

/// Part A of one source, for decoding ([`Seq2seqLayout::source_part`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SourcePart {
    /// Part A's tokens (`[CLS]`, template and source, pads with `pad_source`).
    pub tokens: Vec<u32>,
    /// Index of the mask token.
    pub mask_position: usize,
    /// Positions `>= pad_from` are padding (`tokens.len()` when there is none).
    pub pad_from: usize,
    /// The source was cut to fit.
    pub truncated: bool,
    /// Positions of the template's pseudo tokens.
    pub pseudo: Vec<usize>,
}

impl Seq2seqSample {
    /// Part A (ending with or holding its mask at `mask_position`) followed by Part B =
    /// `[sop] targets[..n-1]` predicting `targets`, GLM's 2D positions (Part B at the mask,
    /// block positions `1..=n`); the loss counts targets from index `scored_from` on. No padding
    /// and no truncation are recorded.
    pub fn part_b(part_a: Vec<u32>, mask_position: usize, sop: u32, part_b_targets: &[u32], scored_from: usize) -> Self {
        let sep = part_a.len();
        let n = part_b_targets.len();
        let mut tokens = part_a;
        tokens.push(sop);
        tokens.extend(&part_b_targets[..n.saturating_sub(1)]);
        let mut targets = vec![0; sep];
        targets.extend(part_b_targets);
        let mut loss_mask = vec![0.0; sep];
        loss_mask.extend((0..n).map(|i| if i >= scored_from { 1.0 } else { 0.0 }));
        let mut positions: Vec<u32> = (0..sep as u32).collect();
        positions.extend(std::iter::repeat_n(mask_position as u32, n));
        let mut blocks = vec![0u32; sep];
        blocks.extend(1..=n as u32);
        Self {
            tokens,
            targets,
            loss_mask,
            positions,
            blocks,
            sep,
            mask_position,
            pad_from: sep,
            source_truncated: false,
            target_truncated: false,
            pseudo: Vec::new(),
        }
    }
}

/// Encodes sources and targets and lays them out (see the module docs).
#[derive(Debug, Clone)]
pub struct Seq2seqLayout {
    /// The configuration.
    pub cfg: LayoutConfig,
    /// The command tokens.
    pub tokens: Seq2seqTokens,
    template: EncodedTemplate,
}

impl Seq2seqLayout {
    /// A layout for `tokenizer`; checks the template and lengths against `max_positions`.
    pub fn new(tokenizer: &Tokenizer, cfg: LayoutConfig, max_positions: usize) -> Result<Self> {
        let tokens = Seq2seqTokens::from_special(&tokenizer.special)?;
        let template = EncodedTemplate::new(tokenizer, &tokens, &cfg.template)?;
        cfg.check_lengths()?;
        if cfg.max_source_len > max_positions {
            return Err(Error::input(format!(
                "source length limit {} (--max-source-len) exceeds the model's {max_positions} positions",
                cfg.max_source_len
            )));
        }
        if cfg.max_target_len + 1 > max_positions {
            return Err(Error::input(format!(
                "target length limit {} (--max-target-len) needs {} block positions; the model has {max_positions}",
                cfg.max_target_len,
                cfg.max_target_len + 1
            )));
        }
        Ok(Self { cfg, tokens, template })
    }

    /// A layout from already-encoded parts (no tokenizer needed; lengths are not checked
    /// against a model, only against [`LayoutConfig::MAX_LEN`], the positions any model can have).
    pub fn from_parts(cfg: LayoutConfig, tokens: Seq2seqTokens, template: EncodedTemplate) -> Result<Self> {
        let masks = template.prefix.iter().chain(&template.suffix).filter(|&&t| tokens.is_mask(t)).count();
        if masks != 1 {
            return Err(Error::input(format!("the source template must contain exactly one mask token (found {masks})")));
        }
        let fixed = template.prefix.len() + template.suffix.len();
        if template.pseudo.iter().any(|&i| i >= fixed) || template.pseudo.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Error::input(format!("the template's pseudo-token indices must be increasing and below its {fixed} tokens")));
        }
        cfg.check_lengths()?;
        Ok(Self { cfg, tokens, template })
    }

    /// Encodes a source text (a leading space when the template asks for one).
    pub fn encode_source(&self, tokenizer: &Tokenizer, source: &str) -> Result<Vec<u32>> {
        let text = if self.template.source_space { format!(" {source}") } else { source.to_string() };
        let ids = tokenizer.encode(&text, false)?;
        if ids.iter().any(|&t| self.tokens.is_mask(t) || t == self.tokens.sop || t == self.tokens.eop) {
            return Err(Error::input("the source contains a mask or piece token; seq2seq sources must be plain text"));
        }
        Ok(ids)
    }

    /// Encodes a target text; errors when it has no tokens.
    pub fn encode_target(&self, tokenizer: &Tokenizer, target: &str) -> Result<Vec<u32>> {
        let text = if self.cfg.target_space { format!(" {target}") } else { target.to_string() };
        let ids = tokenizer.encode(&text, false)?;
        if ids.is_empty() {
            return Err(Error::input("the target encodes to no tokens"));
        }
        Ok(ids)
    }

    /// The number of pseudo tokens in the template (0 = no P-tuning).
    pub fn num_pseudo(&self) -> usize {
        self.template.pseudo.len()
    }

    /// Part A only (for decoding).
    pub fn source_part(&self, source: &[u32]) -> Result<SourcePart> {
        let (mut a, truncated) = self.template.part_a(source, self.cfg.max_source_len)?;
        let pad_from = a.len();
        let pseudo = self.template.pseudo_positions(pad_from - self.template.prefix.len() - self.template.suffix.len());
        if self.cfg.pad_source {
            a.resize(self.cfg.max_source_len, self.tokens.pad);
        }
        let mask_position =
            a.iter().position(|&t| self.tokens.is_mask(t)).ok_or_else(|| Error::input("the source layout lost its mask token"))?;
        Ok(SourcePart { tokens: a, mask_position, pad_from, truncated, pseudo })
    }

    /// The training layout of one pair of encoded ids.
    pub fn sample(&self, source: &[u32], target: &[u32]) -> Result<Seq2seqSample> {
        if target.is_empty() {
            return Err(Error::input("empty target: nothing to learn"));
        }
        let part = self.source_part(source)?;
        let mut t: Vec<u32> = target.to_vec();
        t.push(self.tokens.eop);
        let target_truncated = t.len() > self.cfg.max_target_len;
        t.truncate(self.cfg.max_target_len);
        Ok(Seq2seqSample {
            pad_from: part.pad_from,
            source_truncated: part.truncated,
            target_truncated,
            pseudo: part.pseudo,
            ..Seq2seqSample::part_b(part.tokens, part.mask_position, self.tokens.sop, &t, 0)
        })
    }

    /// Encodes and lays out a text pair.
    pub fn encode_pair(&self, tokenizer: &Tokenizer, pair: &Seq2seqPair) -> Result<Seq2seqSample> {
        let wrap = |e: Error| Error::input(format!("{}: {e}", pair.origin));
        let s = self.encode_source(tokenizer, &pair.source).map_err(wrap)?;
        let t = self.encode_target(tokenizer, &pair.target).map_err(wrap)?;
        self.sample(&s, &t).map_err(wrap)
    }
}

/// The attention of one sample as a dense 0/1 matrix `[len][len]` (row = query): Part A sees
/// Part A, Part B sees Part A and itself causally; with `mask_pad_token`, no query sees the
/// source pads. This is what the model's `sep` form (or explicit mask) computes.
pub fn attention_matrix(sample: &Seq2seqSample, mask_pad_token: bool) -> Vec<Vec<u8>> {
    let len = sample.tokens.len();
    (0..len)
        .map(|i| {
            (0..len)
                .map(|j| {
                    let visible = j < sample.sep || j <= i;
                    let pad = mask_pad_token && j >= sample.pad_from && j < sample.sep;
                    u8::from(visible && !pad)
                })
                .collect()
        })
        .collect()
}
