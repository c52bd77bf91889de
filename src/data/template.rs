//! JSONL document templates: `"题名:{title} 作者:{author} 正文:{text}"`.

use crate::error::{Error, Result};

/// One part of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Field(String),
}

/// A parsed template: literal text with `{field}` placeholders; `{{` and `}}` are literal braces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

impl Template {
    /// Parses `text`. Errors for an unclosed `{`, a stray `}`, an empty `{}` and a template without any field.
    pub fn parse(text: &str) -> Result<Self> {
        let bad =
            |msg: String| Error::input(format!("template `{text}`: {msg} (write fields as {{name}} and literal braces as {{{{ and }}}})"));
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            match c {
                '{' if chars.peek().is_some_and(|&(_, n)| n == '{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek().is_some_and(|&(_, n)| n == '}') => {
                    chars.next();
                    lit.push('}');
                }
                '}' => return Err(bad(format!("unmatched `}}` at byte {at}"))),
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some((_, '}')) => break,
                            Some((_, '{')) | None => return Err(bad(format!("unclosed `{{` at byte {at}"))),
                            Some((_, c)) => name.push(c),
                        }
                    }
                    if name.trim().is_empty() {
                        return Err(bad(format!("empty field name at byte {at}")));
                    }
                    if !lit.is_empty() {
                        pieces.push(Piece::Literal(std::mem::take(&mut lit)));
                    }
                    pieces.push(Piece::Field(name));
                }
                c => lit.push(c),
            }
        }
        if !lit.is_empty() {
            pieces.push(Piece::Literal(lit));
        }
        if !pieces.iter().any(|p| matches!(p, Piece::Field(_))) {
            return Err(bad("no {field} in it".into()));
        }
        Ok(Self { pieces })
    }

    /// The field names, in order of appearance (repeats included).
    pub fn fields(&self) -> Vec<&str> {
        self.pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Field(f) => Some(f.as_str()),
                Piece::Literal(_) => None,
            })
            .collect()
    }

    /// The text with every field replaced by `value(name)`; the first error of `value` is returned.
    pub fn render<E>(&self, mut value: impl FnMut(&str) -> std::result::Result<String, E>) -> std::result::Result<String, E> {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Literal(s) => out.push_str(s),
                Piece::Field(f) => out.push_str(&value(f)?),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn parses_fields_and_escapes() -> TestResult {
        let t = Template::parse("题名:{title} {{x}} 正文:{text}")?;
        assert_eq!(t.fields(), vec!["title", "text"]);
        let out: std::result::Result<String, ()> = t.render(|f| Ok(f.to_uppercase()));
        assert_eq!(out.as_deref(), Ok("题名:TITLE {x} 正文:TEXT"));
        for bad in ["no fields", "{open", "close}", "{}", "a {b{c}}"] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
        Ok(())
    }
}
