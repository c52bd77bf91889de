//! Whether a generation search fits the model's positions before it starts: the longest text a
//! poem form or an answer task can produce, and the prompt's tokens, counted as
//! `Context::prepare` and the search count them (`/v1/poem`, `/v1/answer`, `wenhui poem` and
//! `wenhui answer` check this up front rather than failing when the search gets there).

use crate::generate::inverse::{render, window, InverseMode, Task, Units, Window};
use crate::generate::poetry::Form;
use crate::tokenizer::Tokenizer;
use std::collections::BTreeMap;

/// Positions `Context::prepare` keeps free after the forward prompt: it refuses a prompt that
/// leaves fewer, so the checks count them as the search does.
pub(crate) const FORWARD_MARGIN: usize = 8;

/// The longest poem of `form`, as its lines: a stand-in character (one token) per position and
/// the form's punctuation, which is what [`glm_search_positions`] needs of the text.
pub fn longest_poem(form: Form) -> Vec<String> {
    (0..form.lines()).map(|k| "春".repeat(form.line_len()) + if k.is_multiple_of(2) { "，" } else { "。" }).collect()
}

/// The answer `wenhui answer` and `/v1/answer` make room for up front, as its units: full-length
/// units of a stand-in character (one token a position) and the task's first unit end, as many
/// as give the widest inverse window ([`window`]) the search can meet, which is what
/// [`glm_search_positions`] needs of the text. With the window of the last N characters that is
/// a full unit, N − 1 characters with no unit end more than N characters back (so the tail
/// reaches into the full unit), then the new unit; with a couplet window three units; else two.
/// A text read whole (`Window::All`) grows past any stand-in: a longer answer meets the search's
/// own check when it gets there. Lengths are taken at most to the bounds [`Task::validate`]
/// checks ([`Units::MAX_CHARS`],
/// [`Window::MAX_LAST_CHARS`]), so a task built in code and never validated cannot make it
/// build absurd strings.
pub fn longest_answer(task: &Task) -> Vec<String> {
    let end = task.units.ends.first().map_or("", String::as_str);
    let unit_chars = task.units.max_chars.min(Units::MAX_CHARS);
    let full = "春".repeat(unit_chars.saturating_sub(1)) + end;
    match task.inverse.window {
        Window::LastChars(n) if n > 1 => vec![full.clone(), "春".repeat(n.min(Window::MAX_LAST_CHARS).saturating_sub(2)) + end, full],
        Window::Couplet => vec![full; 3],
        Window::LastChars(_) | Window::Unit | Window::All => vec![full; 2],
    }
}

/// The tokens of a GLM search's forward prompt, as `Context::prepare` builds it: `[CLS]`, the
/// prompt with its `[gMASK]` and the optional end of text (without the positions kept free
/// after it, [`FORWARD_MARGIN`]).
pub(crate) fn glm_forward_tokens(tokenizer: &Tokenizer, task: &Task, fields: &BTreeMap<String, String>) -> crate::Result<usize> {
    glm_part_a(tokenizer, task, fields, &task.forward.prompt, "[gMASK]")
}

/// Tokens of a GLM Part A: `[CLS]`, `template` rendered with `fields` and `text`, and the
/// task's optional end of text.
fn glm_part_a(tokenizer: &Tokenizer, task: &Task, fields: &BTreeMap<String, String>, template: &str, text: &str) -> crate::Result<usize> {
    let body = tokenizer.encode(&render(template, fields, text), false)?.len();
    Ok(1 + body + usize::from(task.forward.append_eos))
}

/// The most positions a GLM inverse-prompting search of `task` takes for `fields` once its text
/// has grown to `units`: the forward prompt (Part A with the blank, and the positions the search
/// keeps free after it), the refinement prompt (the text with one unit blanked, when the task
/// refines), the inverse prompt (the target field blanked, holding the window of the last unit)
/// and the target read as Part B. A prompt past the model's positions would otherwise fail the
/// search only when it gets there, after the text so far was written.
pub fn glm_search_positions(
    tokenizer: &Tokenizer,
    task: &Task,
    fields: &BTreeMap<String, String>,
    units: &[String],
) -> crate::Result<usize> {
    let part_a = |template: &str, text: &str| glm_part_a(tokenizer, task, fields, template, text);
    let forward = glm_forward_tokens(tokenizer, task, fields)? + FORWARD_MARGIN;
    let Some((last, before)) = units.split_last() else { return Ok(forward) };
    let refine = if task.search.refine_rounds > 0 { part_a(&task.forward.prompt, &format!("[MASK]{}", units[1..].concat()))? } else { 0 };
    let text = window(task.inverse.window, before, last);
    let (inverse, target) = match task.inverse.mode {
        InverseMode::Glm => {
            let target = fields.get(&task.inverse.target).map_or(Ok(0), |v| tokenizer.encode(v, false).map(|t| t.len()))?;
            // The target is read with its `[eop]`.
            (part_a(&task.inverse_prompt(), &text)?, target + 1)
        }
        InverseMode::Causal => {
            let context = render(task.inverse.context.as_deref().unwrap_or("{window}"), fields, &text);
            let target = render(task.inverse.target_text.as_deref().unwrap_or(""), fields, "");
            // `[CLS]` before the window and the blank after it.
            (2 + tokenizer.encode(&context, false)?.len(), tokenizer.encode(&target, false)?.len())
        }
    };
    Ok(forward.max(refine).max(inverse).max(target))
}

/// How a GLM inverse-prompting search overruns the model's positions (see [`glm_search_fit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchTooLong {
    /// Positions the longest of the search's prompts takes.
    pub need: usize,
    /// The model's positions.
    pub max_positions: usize,
    /// Characters in the field that was checked.
    pub chars: usize,
    /// How many of its first characters would fit, the other fields as given (0: none, so
    /// another field, or the length of the text, is what does not fit).
    pub fits: usize,
}

/// The one up-front length check of inverse prompting (`/v1/poem`, `/v1/answer`, `wenhui poem`,
/// `wenhui answer`): `None` when the search of `task` for `fields` and a text of `units` fits a GLM of
/// `max_positions` positions (see [`glm_search_positions`]); otherwise how far it does not, with
/// how many characters of `field` would fit.
pub fn glm_search_fit(
    tokenizer: &Tokenizer,
    task: &Task,
    fields: &BTreeMap<String, String>,
    units: &[String],
    field: &str,
    max_positions: usize,
) -> crate::Result<Option<SearchTooLong>> {
    let need = glm_search_positions(tokenizer, task, fields, units)?;
    if need <= max_positions {
        return Ok(None);
    }
    let value: Vec<char> = fields.get(field).map(|v| v.chars().collect()).unwrap_or_default();
    let fits_with = |n: usize| -> crate::Result<bool> {
        let mut shorter = fields.clone();
        shorter.insert(field.to_string(), value[..n].iter().collect());
        Ok(glm_search_positions(tokenizer, task, &shorter, units)? <= max_positions)
    };
    // The prompts grow with the field: the longest prefix that fits lies between `lo` (fits)
    // and `hi` (does not).
    let mut fits = 0;
    if fits_with(0)? {
        let (mut lo, mut hi) = (0, value.len());
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if fits_with(mid)? {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        fits = lo;
    }
    Ok(Some(SearchTooLong { need, max_positions, chars: value.len(), fits }))
}

/// Which input of an answer search does not fit the model's positions (see
/// [`answer_search_fit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerTooLong {
    /// The question: at least one of its characters fits ([`SearchTooLong::fits`]).
    Question(SearchTooLong),
    /// The description, with this question: at least one of its characters fits.
    Description(SearchTooLong),
    /// The question and the description together: neither shortened alone makes room.
    Both(SearchTooLong),
    /// No description was given and even an empty question leaves no room for an answer.
    NoRoom(SearchTooLong),
}

/// The up-front length check of an answer search (`/v1/answer` and `wenhui answer`): `None`
/// when the search of `task` for `fields` (`question`, `description`) fits a GLM of
/// `max_positions` positions with room for [`longest_answer`]; otherwise which input to shorten:
/// the question when some of it fits, else the description when one was `given` and some of it
/// fits with this question.
pub fn answer_search_fit(
    tokenizer: &Tokenizer,
    task: &Task,
    fields: &BTreeMap<String, String>,
    description_given: bool,
    max_positions: usize,
) -> crate::Result<Option<AnswerTooLong>> {
    let units = longest_answer(task);
    let Some(q) = glm_search_fit(tokenizer, task, fields, &units, "question", max_positions)? else { return Ok(None) };
    if q.fits > 0 {
        return Ok(Some(AnswerTooLong::Question(q)));
    }
    if !description_given {
        return Ok(Some(AnswerTooLong::NoRoom(q)));
    }
    Ok(Some(match glm_search_fit(tokenizer, task, fields, &units, "description", max_positions)? {
        Some(d) if d.fits > 0 => AnswerTooLong::Description(d),
        _ => AnswerTooLong::Both(q),
    }))
}
