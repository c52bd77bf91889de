//! The cloze template language (grammar in the [module docs](super)).

use crate::{Error, Result};

/// One element of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Literal text (anchor words), trimmed.
    Text(String),
    /// An input field, `{name}`.
    Field(String),
    /// `n` pseudo (continuous prompt) tokens, `[P]` or `[P*n]`.
    Pseudo(usize),
    /// The answer slot, `[MASK]`.
    Mask,
}

/// A part and whether whitespace stood right before it in the template (the part is then
/// tokenized with one leading space, which matters for byte-level BPE vocabularies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// What the segment is.
    pub part: Part,
    /// Whitespace preceded it.
    pub space_before: bool,
}

/// A parsed template: segments in order, exactly one of them [`Part::Mask`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    segments: Vec<Segment>,
}

fn err(src: &str, at: usize, msg: impl std::fmt::Display) -> Error {
    Error::input(format!("template `{src}`, character {}: {msg}", at + 1))
}

/// The most pseudo tokens a template may hold: far more than any model's positions, so only a
/// typo (`[P*300000]`) meets it.
pub const MAX_PSEUDO: usize = 65_536;

impl Template {
    /// Parses `source`, checking every `{field}` against `fields` (the task's declared fields).
    ///
    /// Errors (naming the template and the character): no or several `[MASK]`, an unknown or
    /// empty field name, an unclosed `{`, a malformed `[P*n]` (`n` must be a whole number ≥ 1),
    /// more than [`MAX_PSEUDO`] pseudo tokens in all.
    pub fn parse(source: &str, fields: &[String]) -> Result<Self> {
        let mut segments: Vec<Segment> = Vec::new();
        let mut text = String::new();
        let chars: Vec<(usize, char)> = source.char_indices().collect();
        let mut i = 0;
        let mut masks = 0;
        let mut pseudo = 0usize;
        let too_many =
            |n: usize, i: usize| err(source, i, format!("{n} pseudo tokens: at most {MAX_PSEUDO} (a model reads far fewer positions)"));
        // Moves pending literal text into a segment.
        fn flush(text: &mut String, segments: &mut Vec<Segment>) {
            let t = text.trim();
            if !t.is_empty() {
                segments.push(Segment { part: Part::Text(t.to_string()), space_before: text.starts_with(char::is_whitespace) });
            }
            text.clear();
        }
        let rest = |i: usize| &source[chars.get(i).map_or(source.len(), |c| c.0)..];
        while i < chars.len() {
            let c = chars[i].1;
            let r = rest(i);
            let special: Option<(Part, usize)> = if r.starts_with("{{") || r.starts_with("}}") {
                text.push(c);
                i += 2;
                continue;
            } else if c == '{' {
                let end = r.find('}').ok_or_else(|| err(source, i, "`{` is never closed (write `{{` for a literal brace)"))?;
                let name = r[1..end].trim();
                if name.is_empty() {
                    return Err(err(source, i, "empty field name `{}`"));
                }
                if !fields.iter().any(|f| f == name) {
                    return Err(err(
                        source,
                        i,
                        format!(
                            "unknown field `{{{name}}}`; the task declares: {}",
                            if fields.is_empty() { "(none)".into() } else { fields.join(", ") }
                        ),
                    ));
                }
                Some((Part::Field(name.to_string()), r[..=end].chars().count()))
            } else if r.starts_with("[MASK]") {
                masks += 1;
                Some((Part::Mask, 6))
            } else if r.starts_with("[P]") {
                pseudo += 1;
                if pseudo > MAX_PSEUDO {
                    return Err(too_many(pseudo, i));
                }
                Some((Part::Pseudo(1), 3))
            } else if r.starts_with("[P*") {
                let end = r.find(']').ok_or_else(|| err(source, i, "`[P*` is never closed; write `[P*3]` for three pseudo tokens"))?;
                let n = r[3..end].trim();
                match n.parse::<usize>() {
                    Ok(n) if n >= 1 => {
                        pseudo = pseudo.saturating_add(n);
                        if pseudo > MAX_PSEUDO {
                            return Err(too_many(pseudo, i));
                        }
                        Some((Part::Pseudo(n), r[..=end].chars().count()))
                    }
                    _ => {
                        return Err(err(
                            source,
                            i,
                            format!("malformed `{}`: the count must be a whole number ≥ 1, e.g. `[P*3]`", &r[..=end]),
                        ))
                    }
                }
            } else {
                None
            };
            match special {
                Some((part, len)) => {
                    let space_before = text.ends_with(char::is_whitespace);
                    flush(&mut text, &mut segments);
                    segments.push(Segment { part, space_before });
                    i += len;
                }
                None => {
                    if c == '}' {
                        return Err(err(source, i, "unmatched `}` (write `}}` for a literal brace)"));
                    }
                    text.push(c);
                    i += 1;
                }
            }
        }
        flush(&mut text, &mut segments);
        match masks {
            0 => return Err(Error::input(format!("template `{source}` has no answer slot: put `[MASK]` where the answer goes"))),
            1 => {}
            n => return Err(Error::input(format!("template `{source}` has {n} answer slots; exactly one `[MASK]` is allowed"))),
        }
        Ok(Self { source: source.to_string(), segments })
    }

    /// The template as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The segments in order.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Total number of pseudo tokens.
    pub fn num_pseudo(&self) -> usize {
        self.segments.iter().map(|s| if let Part::Pseudo(n) = s.part { n } else { 0 }).sum()
    }

    /// Whether whitespace precedes the answer slot (verbalizer words are then tokenized with a
    /// leading space).
    pub fn space_before_mask(&self) -> bool {
        self.segments.iter().find(|s| s.part == Part::Mask).is_some_and(|s| s.space_before)
    }

    /// The same template without its pseudo tokens (GLM drops the prompt slots when no prompt
    /// encoder is used).
    pub fn without_pseudo(&self) -> Self {
        let segments = self.segments.iter().filter(|s| !matches!(s.part, Part::Pseudo(_))).cloned().collect();
        Self { source: self.source.clone(), segments }
    }
}
