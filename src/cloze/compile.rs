//! Template + fields → token ids, pseudo-token positions and answer rows, per backbone.
//!
//! | backbone | sequence | answer read at |
//! |---|---|---|
//! | GLM | `[CLS] A… [eos]` (Part A, `[MASK]` inside) then `[sop]` (Part B); positions `0..n` in Part A, the sop at `(mask index, 1)` | the sop row |
//! | BERT | `[CLS] … [MASK] … [SEP]` | the mask row |
//! | GPT-2 | the prompt up to the slot (text after `[MASK]` is dropped) | the last prompt row (next-token prediction) |
//!
//! Multi-token answers ([`Cloze::with_answer`]) extend GLM's Part B to `[sop] a₁ … aₙ` with
//! targets `a₁ … aₙ [eop]` (positions stay at the mask, block positions `1..=n+1`), and GPT-2's
//! prompt with `a₁ … aₙ₋₁` (targets `a₁ … aₙ`). BERT scores single tokens only.

use std::collections::BTreeMap;

use super::template::{Part, Template};
use crate::model::ModelKind;
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

/// How a template is compiled.
#[derive(Debug, Clone)]
pub struct CompileOptions {
    /// Longest sequence the model takes (its `max_positions`).
    pub max_len: usize,
    /// GLM: end Part A with the end-of-text token, as THUDM's fine-tuning code does (default
    /// `true`; `false` for models pretrained without it).
    pub glm_eos: bool,
    /// Id placed at pseudo-token positions; `None` = the tokenizer's `[UNK]` (else pad, else 0).
    pub pseudo_id: Option<u32>,
    /// Longest multi-token answer (tokens) that will be appended with [`Cloze::with_answer`]:
    /// room for it is kept when the fields are truncated. 0 for single-token answers.
    pub answer_tokens: usize,
    /// The model's own positions when `max_len` is a smaller limit of the task (its
    /// `[train] max_seq_length`), so that errors name the limit that was hit; `None` (or a value
    /// not above `max_len`): `max_len` is the model's.
    pub model_positions: Option<usize>,
}

impl CompileOptions {
    /// Options for a model taking `max_len` positions: GLM eos on, `[UNK]` placeholders, single-token answers.
    pub fn new(max_len: usize) -> Self {
        Self { max_len, glm_eos: true, pseudo_id: None, answer_tokens: 0, model_positions: None }
    }

    /// Whether `max_len` is the task's `max_seq_length`, below the model's positions.
    fn task_limited(&self) -> Option<usize> {
        self.model_positions.filter(|&m| m > self.max_len)
    }

    /// The limit `max_len` stands for, in words.
    pub(crate) fn limit(&self) -> String {
        match self.task_limited() {
            Some(m) => format!("the task's max_seq_length of {} tokens (the model itself takes {m} positions)", self.max_len),
            None => format!("the model's {} positions", self.max_len),
        }
    }
}

/// An input that cannot fit [`CompileOptions::max_len`] however much its fields are cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Overflow {
    /// Tokens of the template's fixed parts (anchors, pseudo tokens, slot, special tokens).
    pub template: usize,
    /// Tokens the longest answer adds to them.
    pub answer: usize,
}

impl Overflow {
    /// The error: which limit, and whether the template or the answer is too long. `answer`
    /// is the longest answer's text, when the caller knows it.
    pub(crate) fn error(&self, template: &Template, opts: &CompileOptions, answer: Option<&str>) -> Error {
        let limit = opts.limit();
        let need = self.template + self.answer;
        if self.template > opts.max_len {
            let fix = match opts.task_limited() {
                Some(m) => format!("shorten the template, or raise `[train] max_seq_length` in the task file (up to {m})"),
                None => "shorten the template".to_string(),
            };
            return Error::input(format!(
                "template `{}`: its fixed parts (anchor text, pseudo tokens, answer slot and special tokens) need {} tokens{}, but the \
                 limit is {limit}; {fix}",
                template.source(),
                self.template,
                if self.answer > 0 { format!(" ({need} with the longest answer)") } else { String::new() },
            ));
        }
        let what = match answer {
            Some(text) => format!("the answer \"{}\" ({} tokens)", preview(text), self.answer),
            None => format!("an answer of {} tokens", self.answer),
        };
        let fix = match opts.task_limited() {
            Some(m) => format!(
                "raise `[train] max_seq_length` in the task file (for a built-in task, a copy of assets/cloze/NAME.toml) to at most {m}, \
                 or leave this example out"
            ),
            None => "this model cannot score an answer that long: leave this example out or shorten the answer".to_string(),
        };
        Error::input(format!(
            "{what} is too long: with the {} fixed tokens of the template `{}` it needs {need} tokens even with the input fields \
             cut to nothing, but the limit is {limit}; {fix}",
            self.template,
            template.source(),
        ))
    }
}

/// The first few words of `text`, for messages.
fn preview(text: &str) -> String {
    const WORDS: usize = 8;
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.len() > WORDS {
        format!("{} …", words[..WORDS].join(" "))
    } else if text.chars().count() > 80 {
        format!("{}…", text.chars().take(80).collect::<String>())
    } else {
        words.join(" ")
    }
}

/// One compiled example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cloze {
    /// The backbone it was compiled for.
    pub kind: ModelKind,
    /// Token ids (pseudo positions hold a placeholder id).
    pub ids: Vec<u32>,
    /// Position ids (GLM: the first row of its 2D positions).
    pub positions: Vec<u32>,
    /// GLM block positions (the second row); empty for other backbones.
    pub block_positions: Vec<u32>,
    /// Indices of the pseudo tokens, in template order.
    pub pseudo: Vec<usize>,
    /// Index of the `[MASK]` token (GLM, BERT); `None` for GPT-2.
    pub mask: Option<usize>,
    /// The row whose logits predict the (first) answer token.
    pub answer_row: usize,
    /// GLM: length of Part A (the attention `sep`); other backbones: `ids.len()`.
    pub sep: usize,
    /// Multi-token answers: `(row, target id)` pairs scored by [`Cloze::with_answer`] rows.
    pub targets: Vec<(usize, u32)>,
    /// How many field tokens truncation removed.
    pub truncated: usize,
}

enum Piece {
    Fixed(Vec<u32>),
    Field(Vec<u32>),
    Pseudo(usize),
    Mask,
}

fn tokenize(tok: &Tokenizer, text: &str, space: bool) -> Result<Vec<u32>> {
    if space {
        tok.encode(&format!(" {text}"), false)
    } else {
        tok.encode(text, false)
    }
}

/// Tells the user, once per process, that inputs are being cut: a classification that reads a
/// truncated passage may be wrong for that reason alone. Once, because every training step and
/// every request compiles its examples again.
fn warn_truncated_once(template: &Template, tokens: usize, limit: &str) {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        tracing::warn!(
            "template `{}`: an example's fields were cut by {tokens} token(s) to fit {limit}; longer examples lose their ends \
             (not reported again)",
            template.source()
        );
    }
}

/// Compiles `template` with `fields` for a `kind` backbone. Fields are truncated (the longest
/// first, from its end) until everything fits `opts.max_len`; pseudo tokens, anchors and the
/// answer slot are never cut. Errors when a field is missing or the fixed parts alone (with
/// room for `opts.answer_tokens`) do not fit, naming the limit and whether the template or the
/// answer is too long.
pub fn compile(
    template: &Template,
    kind: ModelKind,
    tok: &Tokenizer,
    fields: &BTreeMap<String, String>,
    opts: &CompileOptions,
) -> Result<Cloze> {
    compile_fitting(template, kind, tok, fields, opts)?.map_err(|o| o.error(template, opts, None))
}

/// [`compile`], telling an input that cannot fit apart from other errors.
pub(crate) fn compile_fitting(
    template: &Template,
    kind: ModelKind,
    tok: &Tokenizer,
    fields: &BTreeMap<String, String>,
    opts: &CompileOptions,
) -> Result<std::result::Result<Cloze, Overflow>> {
    let mut pieces = Vec::new();
    for seg in template.segments() {
        pieces.push(match &seg.part {
            Part::Text(t) => Piece::Fixed(tokenize(tok, t, seg.space_before)?),
            Part::Field(f) => {
                let v = fields.get(f).ok_or_else(|| {
                    let have: Vec<&str> = fields.keys().map(String::as_str).collect();
                    Error::input(format!(
                        "the example has no text field `{f}` (template `{}`; the example's text fields: {}; a field must be a string, number or boolean)",
                        template.source(),
                        if have.is_empty() { "none".to_string() } else { have.join(", ") }
                    ))
                })?;
                Piece::Field(tokenize(tok, v.trim(), seg.space_before)?)
            }
            Part::Pseudo(n) => Piece::Pseudo(*n),
            Part::Mask => {
                if kind == ModelKind::Gpt2 {
                    break; // GPT-2 predicts the answer after the prompt: the rest is unused
                }
                Piece::Mask
            }
        });
    }
    let special = |name: &str| tok.special.get(name);
    // `sop`: GLM's start-of-piece row; `answer`: the room the longest answer takes.
    let (head, tail, sop, answer): (Vec<u32>, Vec<u32>, usize, usize) = match kind {
        ModelKind::Glm => {
            let eos = if opts.glm_eos { vec![special("eos")?] } else { vec![] };
            (vec![special("cls")?], eos, 1, opts.answer_tokens)
        }
        // Multi-token answers widen the one [MASK] to one per answer token.
        ModelKind::Bert => (vec![special("cls")?], vec![special("sep")?], 0, opts.answer_tokens.saturating_sub(1)),
        ModelKind::Gpt2 => (vec![], vec![], 0, opts.answer_tokens.saturating_sub(1)),
    };
    let template_fixed: usize = head.len()
        + tail.len()
        + sop
        + pieces
            .iter()
            .map(|p| match p {
                Piece::Fixed(ids) => ids.len(),
                Piece::Pseudo(n) => *n,
                Piece::Mask => 1,
                Piece::Field(_) => 0,
            })
            .sum::<usize>();
    let fixed = template_fixed + answer;
    if fixed > opts.max_len {
        return Ok(Err(Overflow { template: template_fixed, answer }));
    }
    // Truncate fields: the longest loses its last token until everything fits.
    let budget = opts.max_len - fixed;
    let mut field_len: usize = pieces.iter().map(|p| if let Piece::Field(ids) = p { ids.len() } else { 0 }).sum();
    let truncated = field_len.saturating_sub(budget);
    if truncated > 0 {
        warn_truncated_once(template, truncated, &opts.limit());
    }
    while field_len > budget {
        let longest = pieces.iter_mut().filter_map(|p| if let Piece::Field(ids) = p { Some(ids) } else { None }).reduce(|a, b| {
            if b.len() > a.len() {
                b
            } else {
                a
            }
        });
        match longest {
            Some(ids) if !ids.is_empty() => {
                ids.pop();
                field_len -= 1;
            }
            _ => break,
        }
    }
    let placeholder = opts.pseudo_id.or(tok.special.unk).or(tok.special.pad).unwrap_or(0);
    let mut ids = head;
    let (mut pseudo, mut mask) = (Vec::new(), None);
    for p in &pieces {
        match p {
            Piece::Fixed(t) | Piece::Field(t) => ids.extend_from_slice(t),
            Piece::Pseudo(n) => {
                pseudo.extend(ids.len()..ids.len() + n);
                ids.extend(std::iter::repeat_n(placeholder, *n));
            }
            Piece::Mask => {
                mask = Some(ids.len());
                ids.push(special("mask")?);
            }
        }
    }
    ids.extend(tail);
    let n = ids.len();
    let cloze = match kind {
        ModelKind::Glm => {
            let m = mask.ok_or_else(|| Error::input("internal: GLM layout without a mask"))?;
            ids.push(special("sop")?);
            let mut positions: Vec<u32> = (0..n as u32).collect();
            positions.push(m as u32);
            let mut block_positions = vec![0; n];
            block_positions.push(1);
            Cloze { kind, ids, positions, block_positions, pseudo, mask, answer_row: n, sep: n, targets: vec![], truncated }
        }
        ModelKind::Bert => {
            let m = mask.ok_or_else(|| Error::input("internal: BERT layout without a mask"))?;
            Cloze {
                kind,
                ids,
                positions: (0..n as u32).collect(),
                block_positions: vec![],
                pseudo,
                mask,
                answer_row: m,
                sep: n,
                targets: vec![],
                truncated,
            }
        }
        ModelKind::Gpt2 => {
            if n == 0 {
                return Err(Error::input(format!(
                    "template `{}`: a GPT-2 model predicts the answer after the prompt, so `[MASK]` needs at least one token before it",
                    template.source()
                )));
            }
            Cloze {
                kind,
                ids,
                positions: (0..n as u32).collect(),
                block_positions: vec![],
                pseudo,
                mask: None,
                answer_row: n - 1,
                sep: n,
                targets: vec![],
                truncated,
            }
        }
    };
    Ok(Ok(cloze))
}

impl Cloze {
    /// This prompt followed by a multi-token `answer` (GLM: Part B `[sop] answer`, targets
    /// `answer [eop]`; GPT-2: `answer[..n-1]` appended, targets `answer`; BERT: the `[MASK]`
    /// widened to one mask per answer token, targets `answer` at the masks, scored in one pass as
    /// PET trains — PET's evaluation fills the masks one by one instead), ready for scoring.
    /// Errors for an empty answer, a GLM tokenizer without eop, or an answer longer than the
    /// room kept by [`CompileOptions::answer_tokens`] allows (`max_len`).
    pub fn with_answer(&self, answer: &[u32], eop: Option<u32>, max_len: usize) -> Result<Cloze> {
        if answer.is_empty() {
            return Err(Error::input("a multi-token answer tokenized to nothing; check the verbalizer word"));
        }
        let mut out = self.clone();
        match self.kind {
            ModelKind::Glm => {
                let eop = eop.ok_or_else(|| {
                    Error::Tokenizer("this tokenizer has no <|endofpiece|> (eop) token, which GLM answers end with".into())
                })?;
                let m = self.mask.unwrap_or(0) as u32;
                out.ids.extend_from_slice(answer);
                out.positions.extend(std::iter::repeat_n(m, answer.len()));
                out.block_positions.extend(2..2 + answer.len() as u32);
                out.targets = answer.iter().chain(std::iter::once(&eop)).enumerate().map(|(k, &t)| (self.sep + k, t)).collect();
            }
            ModelKind::Gpt2 => {
                let start = self.ids.len();
                out.ids.extend_from_slice(&answer[..answer.len() - 1]);
                out.positions = (0..out.ids.len() as u32).collect();
                out.targets = answer.iter().enumerate().map(|(k, &t)| (start - 1 + k, t)).collect();
                out.sep = out.ids.len();
            }
            ModelKind::Bert => {
                // PET's layout: as many [MASK]s as answer tokens, all predicted in one pass.
                let m = self.mask.ok_or_else(|| Error::input("internal: BERT layout without a mask"))?;
                let extra = answer.len() - 1;
                out.ids.splice(m + 1..m + 1, std::iter::repeat_n(self.ids[m], extra));
                out.positions = (0..out.ids.len() as u32).collect();
                out.pseudo = self.pseudo.iter().map(|&p| if p > m { p + extra } else { p }).collect();
                out.targets = answer.iter().enumerate().map(|(k, &t)| (m + k, t)).collect();
                out.sep = out.ids.len();
            }
        }
        if out.ids.len() > max_len {
            return Err(Error::input(format!(
                "prompt ({} tokens) plus answer ({} tokens) exceed the {max_len}-position limit; set CompileOptions::answer_tokens to the \
                 longest answer when compiling the prompt",
                self.ids.len(),
                answer.len()
            )));
        }
        Ok(out)
    }
}
