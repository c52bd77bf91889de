//! Character-level tokenizer, a first-class option for Chinese: every non-whitespace character
//! (a Unicode scalar value, so CJK characters and full-width punctuation such as `，` `。` are tokens of their own)
//! is one token. **Whitespace is dropped**: it separates tokens but never becomes one, so `decode` joins the
//! characters without spaces (`"mixed 中文"` decodes to `"mixed中文"`). Text is not normalised.
//! Characters outside the vocabulary become `[UNK]`.
//!
//! The GLM command tokens come first, at fixed ids, so they never move when the character set changes:
//!
//! | id | 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 |
//! |---|---|---|---|---|---|---|---|---|---|---|
//! | token | `<\|endoftext\|>` (pad = eos) | `[CLS]` | `[MASK]` | `[SEP]` | `[UNK]` | `<\|startofpiece\|>` | `<\|endofpiece\|>` | `[gMASK]` | `[sMASK]` | `[dBLOCK]` |
//!
//! and the characters follow from id [`CharVocab::FIRST_CHAR_ID`] on, in the vocabulary's order.
//! Nothing is added on encode (GLM's data pipeline adds `[CLS]` / eos itself).

use std::collections::{HashMap, HashSet};
use std::path::Path;

use tokenizers::decoders::fuse::Fuse;
use tokenizers::models::wordlevel::WordLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::whitespace::WhitespaceSplit;
use tokenizers::SplitDelimiterBehavior;

use super::special::CHARS;
use super::{Tokenizer, TokenizerFamily};
use crate::error::{read_text, Error, Result};

/// The character set of a character-level tokenizer (without the command tokens).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CharVocab {
    chars: Vec<char>,
}

impl CharVocab {
    /// Id of the first character; ids below are the GLM command tokens.
    pub const FIRST_CHAR_ID: u32 = CHARS.len() as u32;

    /// The command tokens at ids `0..FIRST_CHAR_ID`, in id order.
    pub fn command_tokens() -> impl Iterator<Item = &'static str> {
        CHARS.iter().map(|s| s.0)
    }

    /// Collects the characters occurring at least `min_count` times (whitespace ignored), most frequent first,
    /// ties by code point. Errors if no character qualifies.
    pub fn from_corpus<'a>(texts: impl Iterator<Item = &'a str>, min_count: usize) -> Result<Self> {
        let mut counts: HashMap<char, usize> = HashMap::new();
        for text in texts {
            for c in text.chars().filter(|c| !c.is_whitespace()) {
                *counts.entry(c).or_default() += 1;
            }
        }
        let mut kept: Vec<(char, usize)> = counts.into_iter().filter(|&(_, n)| n >= min_count.max(1)).collect();
        kept.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        if kept.is_empty() {
            return Err(Error::input(format!("no character occurs at least {min_count} times in the corpus")));
        }
        Ok(Self { chars: kept.into_iter().map(|(c, _)| c).collect() })
    }

    /// Uses these characters in this order; whitespace and repeats are skipped.
    pub fn from_chars(chars: impl IntoIterator<Item = char>) -> Self {
        let mut seen = HashSet::new();
        Self { chars: chars.into_iter().filter(|c| !c.is_whitespace() && seen.insert(*c)).collect() }
    }

    /// Reads `chars.txt`: one character per line (a trailing `\r` is dropped). Empty lines, whitespace-only
    /// lines, repeats and lines equal to a command token (a full vocabulary listing) are skipped; a line with
    /// more than one character is an error naming the file and line.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = read_text(path)?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let mut chars = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.trim().is_empty() || Self::command_tokens().any(|t| t == line) {
                continue;
            }
            let mut it = line.chars();
            match (it.next(), it.next()) {
                (Some(c), None) => chars.push(c),
                _ => return Err(Error::file(path, format!("line {}: expected one character, got `{line}`", n + 1))),
            }
        }
        let vocab = Self::from_chars(chars);
        if vocab.is_empty() {
            return Err(Error::file(path, "empty vocabulary (expected one character per line)"));
        }
        Ok(vocab)
    }

    /// Writes the characters as `chars.txt` (one per line), readable by [`CharVocab::from_file`].
    pub fn write(&self, path: &Path) -> Result<()> {
        let mut text = String::with_capacity(self.chars.len() * 4);
        for c in &self.chars {
            text.push(*c);
            text.push('\n');
        }
        std::fs::write(path, text).map_err(|e| Error::io(path, e))
    }

    /// The characters, in id order (the first has id [`CharVocab::FIRST_CHAR_ID`]).
    pub fn chars(&self) -> &[char] {
        &self.chars
    }

    /// Number of characters (the vocabulary size is this plus [`CharVocab::FIRST_CHAR_ID`]).
    pub fn len(&self) -> usize {
        self.chars.len()
    }

    /// Whether there are no characters.
    pub fn is_empty(&self) -> bool {
        self.chars.is_empty()
    }

    /// Builds the tokenizer: a `WordLevel` model over command tokens + characters, unk `[UNK]`.
    pub fn build(&self) -> Result<Tokenizer> {
        let mut vocab: tokenizers::models::bpe::Vocab = Default::default();
        for (id, token) in Self::command_tokens().enumerate() {
            vocab.insert(token.to_string(), id as u32);
        }
        for (i, c) in self.chars.iter().enumerate() {
            let id = u32::try_from(i).ok().and_then(|i| i.checked_add(Self::FIRST_CHAR_ID));
            let id = id.ok_or_else(|| Error::input("too many characters"))?;
            vocab.insert(c.to_string(), id);
        }
        let model = WordLevel::builder()
            .vocab(vocab)
            .unk_token("[UNK]".into())
            .build()
            .map_err(|e| Error::Tokenizer(format!("cannot build the character vocabulary: {e}")))?;
        let per_char = Split::new(SplitPattern::Regex(".".into()), SplitDelimiterBehavior::Isolated, false)
            .map_err(|e| Error::Tokenizer(format!("bad split pattern: {e}")))?;
        let mut inner = tokenizers::Tokenizer::new(model);
        inner.with_pre_tokenizer(Some(Sequence::new(vec![WhitespaceSplit.into(), per_char.into()]))).with_decoder(Some(Fuse::new()));
        Tokenizer::from_parts(inner, TokenizerFamily::Chars)
    }
}
