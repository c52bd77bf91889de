//! Problems found while reading inputs ([`Problem`]) and the policy that handles them ([`ProblemLog`]).

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::reader::OnError;
use crate::error::{Error, Result};

/// The kinds of [`Problem`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// A line (or a line of a block) is not valid UTF-8.
    InvalidUtf8,
    /// A document without text (a blank JSONL field or template, or no tokens after tokenization).
    EmptyDocument,
    /// A JSONL line that is not a JSON object.
    MalformedJson,
    /// A JSONL record without the text field or a template field.
    MissingField,
    /// A JSONL record whose text field or template field is not a string.
    NonStringField,
    /// An input file without any document (empty or only blank lines).
    EmptyFile,
}

/// One input that could not become a document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// What kind of problem.
    pub kind: ProblemKind,
    /// The input file.
    pub file: PathBuf,
    /// The 1-based line (the offending line; `None` for a whole-file problem).
    pub line: Option<u64>,
    /// What is wrong, for people.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}: line {line}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// Number of problems of each kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProblemCounts {
    /// [`ProblemKind::InvalidUtf8`].
    pub invalid_utf8: u64,
    /// [`ProblemKind::EmptyDocument`].
    pub empty_document: u64,
    /// [`ProblemKind::MalformedJson`].
    pub malformed_json: u64,
    /// [`ProblemKind::MissingField`].
    pub missing_field: u64,
    /// [`ProblemKind::NonStringField`].
    pub non_string_field: u64,
    /// [`ProblemKind::EmptyFile`].
    pub empty_file: u64,
}

impl ProblemCounts {
    /// The counter of `kind`.
    pub fn get(&self, kind: ProblemKind) -> u64 {
        self.as_list().iter().find(|(k, _)| *k == kind).map_or(0, |&(_, n)| n)
    }

    /// All problems.
    pub fn total(&self) -> u64 {
        self.as_list().iter().map(|&(_, n)| n).sum()
    }

    fn as_list(&self) -> [(ProblemKind, u64); 6] {
        [
            (ProblemKind::InvalidUtf8, self.invalid_utf8),
            (ProblemKind::EmptyDocument, self.empty_document),
            (ProblemKind::MalformedJson, self.malformed_json),
            (ProblemKind::MissingField, self.missing_field),
            (ProblemKind::NonStringField, self.non_string_field),
            (ProblemKind::EmptyFile, self.empty_file),
        ]
    }

    fn add(&mut self, kind: ProblemKind) {
        *match kind {
            ProblemKind::InvalidUtf8 => &mut self.invalid_utf8,
            ProblemKind::EmptyDocument => &mut self.empty_document,
            ProblemKind::MalformedJson => &mut self.malformed_json,
            ProblemKind::MissingField => &mut self.missing_field,
            ProblemKind::NonStringField => &mut self.non_string_field,
            ProblemKind::EmptyFile => &mut self.empty_file,
        } += 1;
    }
}

impl fmt::Display for ProblemCounts {
    /// `invalid_utf8 1, missing_field 2` (kinds with a zero count left out; `none` when there are none).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .as_list()
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| format!("{} {n}", serde_json::to_value(k).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()))
            .collect();
        if parts.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// At most this many problems are logged (`tracing::warn!`) and kept one by one; the rest are only counted.
pub const MAX_LOGGED_PROBLEMS: usize = 20;

/// Applies the [`OnError`] policy to problems: counts them, logs and keeps the first ones, or fails.
#[derive(Debug, Clone)]
pub struct ProblemLog {
    on_error: OnError,
    counts: ProblemCounts,
    first: Vec<Problem>,
}

impl ProblemLog {
    /// An empty log with this policy.
    pub fn new(on_error: OnError) -> Self {
        Self { on_error, counts: ProblemCounts::default(), first: Vec::new() }
    }

    /// Records a problem: with [`OnError::Fail`] returns an error naming the file, line and reason; with
    /// [`OnError::Skip`] counts it and logs the first [`MAX_LOGGED_PROBLEMS`].
    pub fn record(&mut self, p: Problem) -> Result<()> {
        if self.on_error == OnError::Fail {
            let line = p.line.map(|l| format!("line {l}: ")).unwrap_or_default();
            return Err(Error::file(
                &p.file,
                format!(
                    "{line}{}; stopped here (--on-error fail): fix the input, or pass --on-error skip to skip and count such documents",
                    p.message
                ),
            ));
        }
        self.counts.add(p.kind);
        if self.first.len() < MAX_LOGGED_PROBLEMS {
            tracing::warn!("{p} (skipped)");
            self.first.push(p);
        }
        Ok(())
    }

    /// Logs how many problems were not logged one by one (call once at the end).
    pub fn finish(&self) {
        let total = self.counts.total();
        if total > self.first.len() as u64 {
            tracing::warn!("{} more problems skipped without a message; all problems: {}", total - self.first.len() as u64, self.counts);
        }
    }

    /// Problem counts per kind.
    pub fn counts(&self) -> ProblemCounts {
        self.counts
    }

    /// The first [`MAX_LOGGED_PROBLEMS`] problems.
    pub fn first(&self) -> &[Problem] {
        &self.first
    }
}
