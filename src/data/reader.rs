//! Reading documents from text and JSONL files, the input side of [`super::prepare::prepare`] and of tokenizer
//! training ([`crate::tokenizer::train`]).
//!
//! * [`InputFormat::Blocks`]: plain text, documents are blocks of non-blank lines separated by blank lines;
//!   a document is its lines joined with `\n`.
//! * [`InputFormat::Lines`]: plain text, one document per non-blank line.
//! * [`InputFormat::Jsonl`]: one JSON object per line; the document is a string field ([`ReadOptions::text_field`])
//!   or a [`ReadOptions::template`] such as `"题名:{title} 作者:{author} 正文:{text}"` over several string fields.
//! * [`InputFormat::Auto`]: JSONL for `.jsonl` / `.json` files, Blocks otherwise.
//!
//! Line endings (`\n` or `\r\n`) and a UTF-8 byte-order mark at the start of a file are removed; nothing else is
//! changed. Blank (whitespace-only) lines carry no text and are only counted ([`SourceStats::blank_lines`]).
//! Everything else that cannot become a document is a [`Problem`] with its file and line, handled by a
//! [`ProblemLog`] according to [`OnError`]: counted and logged, or fatal.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use super::problems::{Problem, ProblemCounts, ProblemKind, ProblemLog, MAX_LOGGED_PROBLEMS};
use super::template::Template;
use crate::error::{Error, Result};

/// How input files are split into documents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputFormat {
    /// JSONL for `.jsonl` / `.json` / `.ndjson` files, [`InputFormat::Blocks`] for everything else.
    #[default]
    Auto,
    /// Plain text; documents are separated by one or more blank lines.
    Blocks,
    /// Plain text; every non-blank line is a document.
    Lines,
    /// One JSON object per line.
    Jsonl,
}

impl InputFormat {
    /// The format used for `path`: `self`, or for [`InputFormat::Auto`] the one chosen by the file extension.
    pub fn resolve(self, path: &Path) -> InputFormat {
        match self {
            InputFormat::Auto => {
                let ext = path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase());
                if matches!(ext.as_deref(), Some("jsonl" | "json" | "ndjson")) {
                    InputFormat::Jsonl
                } else {
                    InputFormat::Blocks
                }
            }
            other => other,
        }
    }
}

/// What to do with a [`Problem`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Skip the document, count the problem and log it (the first [`MAX_LOGGED_PROBLEMS`] one by one).
    #[default]
    Skip,
    /// Stop with an error naming the file, the line and the reason.
    Fail,
}

/// How documents are read; shared by `prepare` and tokenizer training.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadOptions {
    /// How files are split into documents.
    pub format: InputFormat,
    /// JSONL: the string field holding the document (default `text`). Ignored when `template` is set.
    pub text_field: String,
    /// JSONL: the document is this template with every `{field}` replaced by that string field of the record
    /// (`{{` and `}}` are literal braces). The record is an empty document when all its fields are blank.
    pub template: Option<String>,
    /// Skip or fail on problems.
    pub on_error: OnError,
}

impl Default for ReadOptions {
    fn default() -> Self {
        Self { format: InputFormat::Auto, text_field: "text".into(), template: None, on_error: OnError::Skip }
    }
}

/// Statistics of one input file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceStats {
    /// The file, as given (or as found in a given directory).
    pub path: PathBuf,
    /// The format it was read with.
    pub format: InputFormat,
    /// Size in bytes.
    pub bytes: u64,
    /// Number of lines.
    pub lines: u64,
    /// Blank (whitespace-only) lines outside documents.
    pub blank_lines: u64,
    /// Documents kept.
    pub documents: u64,
    /// Tokens of the kept documents (filled in by `prepare`; 0 elsewhere).
    pub tokens: u64,
    /// Problems (skipped documents).
    pub problems: u64,
}

/// One document read from an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// The text.
    pub text: String,
    /// Index of its file in [`DocReader::files`].
    pub file: usize,
    /// The 1-based line it starts on.
    pub line: u64,
}

/// Expands directories to the regular files below them (recursively, sorted by path). Left out below a
/// directory, with one warning per kind: hidden entries (name starting with `.`), editor backups (`*~`),
/// earlier wenhui corpus directories (`index.json` + `shard-*` files) and binary files (a NUL byte in the
/// first 8 KiB). Files are kept as given; a file reached twice (given twice, or given and inside a given
/// directory) is read once, with a warning. Errors for a missing input or an empty directory.
pub fn expand_inputs(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    if inputs.is_empty() {
        return Err(Error::input("no input files given"));
    }
    let mut files = Vec::new();
    let mut skipped = Skipped::default();
    for input in inputs {
        let meta = std::fs::metadata(input).map_err(|e| Error::io(input, e))?;
        if meta.is_dir() {
            let before = files.len();
            walk_dir(input, &mut files, &mut skipped)?;
            if files.len() == before {
                return Err(Error::file(
                    input,
                    "the directory has no files to read (binary files, corpus directories and backups are left out)",
                ));
            }
        } else {
            files.push(input.clone());
        }
    }
    for (paths, what) in [
        (&skipped.corpora, "wenhui corpus folder(s): token shards are not text"),
        (&skipped.binary, "binary file(s): a NUL byte near the start"),
    ] {
        if let Some(first) = paths.first() {
            tracing::warn!("left out {} {what} inside the inputs (e.g. {})", paths.len(), first.display());
        }
    }
    let mut seen = std::collections::HashSet::new();
    let mut dups = Vec::new();
    files.retain(|f| {
        let key = f.canonicalize().unwrap_or_else(|_| f.clone());
        let fresh = seen.insert(key);
        if !fresh {
            dups.push(f.clone());
        }
        fresh
    });
    if !dups.is_empty() {
        let names: Vec<String> = dups.iter().take(3).map(|f| f.display().to_string()).collect();
        tracing::warn!(
            "{} input file{} given more than once (directly or inside a given directory) read only once: {}{}",
            dups.len(),
            if dups.len() == 1 { "" } else { "s" },
            names.join(", "),
            if dups.len() > 3 { ", ..." } else { "" }
        );
    }
    Ok(files)
}

/// What [`walk_dir`] left out, for one warning per kind.
#[derive(Default)]
struct Skipped {
    corpora: Vec<PathBuf>,
    binary: Vec<PathBuf>,
}

/// A wenhui corpus directory: `index.json` beside `shard-*` files.
fn is_corpus_dir(dir: &Path) -> bool {
    dir.join(super::corpus::INDEX_FILE).is_file()
        && std::fs::read_dir(dir).map(|rd| rd.flatten().any(|e| e.file_name().to_string_lossy().starts_with("shard-"))).unwrap_or(false)
}

/// A NUL byte in the first 8 KiB: not a text file.
fn looks_binary(path: &Path) -> bool {
    use std::io::Read;
    let mut buf = [0u8; 8192];
    let Ok(mut f) = File::open(path) else { return false };
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    buf[..n].contains(&0)
}

fn walk_dir(dir: &Path, out: &mut Vec<PathBuf>, skipped: &mut Skipped) -> Result<()> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') && !name.ends_with('~') {
            entries.push(entry.path());
        }
    }
    entries.sort();
    for path in entries {
        if path.is_dir() {
            if is_corpus_dir(&path) {
                skipped.corpora.push(path);
            } else {
                walk_dir(&path, out, skipped)?;
            }
        } else if path.is_file() {
            if looks_binary(&path) {
                skipped.binary.push(path);
            } else {
                out.push(path);
            }
        }
    }
    Ok(())
}

/// How a JSONL record becomes text.
#[derive(Debug, Clone)]
enum Extract {
    Field(String),
    Template(Template),
}

/// The longest line (one document of JSONL or plain text) read, in bytes: a file without newlines
/// (a binary, a device) is refused at this length instead of filling the memory.
pub const MAX_LINE_BYTES: u64 = 256 << 20;

/// The file being read.
struct OpenFile {
    index: usize,
    format: InputFormat,
    reader: BufReader<File>,
    line: u64,
    /// Blocks: the document being collected, its first line, and the first invalid line (line, byte offset).
    block: String,
    block_start: u64,
    block_bad: Option<(u64, usize)>,
}

/// Streams [`Document`]s out of input files, one file after the other, in the order of [`DocReader::files`].
pub struct DocReader {
    files: Vec<PathBuf>,
    stats: Vec<SourceStats>,
    extract: Extract,
    next_file: usize,
    cur: Option<OpenFile>,
    bytes_read: u64,
    total_bytes: u64,
    documents: u64,
    skipped: u64,
    buf: Vec<u8>,
}

impl DocReader {
    /// Opens `inputs` (files or directories, see [`expand_inputs`]). Checks the template; opens no file yet.
    pub fn new(inputs: &[PathBuf], opts: &ReadOptions) -> Result<Self> {
        let extract = match &opts.template {
            Some(t) => Extract::Template(Template::parse(t)?),
            None if opts.text_field.is_empty() => return Err(Error::input("the JSONL text field name is empty")),
            None => Extract::Field(opts.text_field.clone()),
        };
        let files = expand_inputs(inputs)?;
        let mut stats = Vec::with_capacity(files.len());
        for f in &files {
            let bytes = std::fs::metadata(f).map_err(|e| Error::io(f, e))?.len();
            stats.push(SourceStats { path: f.clone(), format: opts.format.resolve(f), bytes, ..Default::default() });
        }
        let json_option = if opts.template.is_some() {
            Some("--template")
        } else if opts.text_field != "text" {
            Some("--text-field")
        } else {
            None
        };
        if let Some(flag) = json_option {
            if !stats.iter().any(|s| s.format == InputFormat::Jsonl) {
                let names: Vec<String> = files.iter().take(5).map(|f| f.display().to_string()).collect();
                return Err(Error::input(format!(
                    "{flag} applies to JSONL input, but no input is read as JSONL ({}{}); pass --format jsonl if \
                     these files hold one JSON object per line, or drop {flag}",
                    names.join(", "),
                    if files.len() > 5 { ", ..." } else { "" }
                )));
            }
        }
        let total_bytes = stats.iter().map(|s| s.bytes).sum();
        Ok(Self { files, stats, extract, next_file: 0, cur: None, bytes_read: 0, total_bytes, documents: 0, skipped: 0, buf: Vec::new() })
    }

    /// The input files, directories expanded.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Per-file statistics so far.
    pub fn stats(&self) -> &[SourceStats] {
        &self.stats
    }

    /// Per-file statistics, to be updated by the consumer (tokens, dropped documents).
    pub fn stats_mut(&mut self) -> &mut [SourceStats] {
        &mut self.stats
    }

    /// Bytes of input consumed so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// Total size of the inputs in bytes.
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    /// Reads up to `max_docs` documents, stopping early once they hold `max_bytes` of text. Returns an empty
    /// vector at the end of the inputs.
    pub fn next_chunk(&mut self, max_docs: usize, max_bytes: usize, log: &mut ProblemLog) -> Result<Vec<Document>> {
        let mut docs = Vec::new();
        let mut bytes = 0;
        while docs.len() < max_docs.max(1) && bytes < max_bytes.max(1) {
            match self.next_doc(log)? {
                Some(d) => {
                    bytes += d.text.len();
                    docs.push(d);
                }
                None => break,
            }
        }
        Ok(docs)
    }

    /// The next document, `None` at the end. Problems go to `log` (which may turn them into errors). At the end,
    /// an error if no input held any document.
    pub fn next_doc(&mut self, log: &mut ProblemLog) -> Result<Option<Document>> {
        loop {
            if self.cur.is_none() {
                if self.next_file == self.files.len() {
                    return self.end_of_inputs().map(|()| None);
                }
                let index = self.next_file;
                self.next_file += 1;
                let path = &self.files[index];
                let file = File::open(path).map_err(|e| Error::io(path, e))?;
                self.cur = Some(OpenFile {
                    index,
                    format: self.stats[index].format,
                    reader: BufReader::with_capacity(1 << 20, file),
                    line: 0,
                    block: String::new(),
                    block_start: 0,
                    block_bad: None,
                });
            }
            if let Some(doc) = self.step(log)? {
                self.documents += 1;
                if let Some(s) = self.stats.get_mut(doc.file) {
                    s.documents += 1;
                }
                return Ok(Some(doc));
            }
        }
    }

    fn end_of_inputs(&self) -> Result<()> {
        if self.documents > 0 {
            return Ok(());
        }
        let names: Vec<String> = self.files.iter().map(|f| f.display().to_string()).collect();
        let why = if self.skipped > 0 {
            format!("all {} candidate documents had problems (see the warnings)", self.skipped)
        } else {
            "the inputs are empty or hold only blank lines".to_string()
        };
        Err(Error::input(format!("no documents in {}: {why}", names.join(", "))))
    }

    /// Reads one line of the current file; returns a document when one is complete. Closes the file at its end.
    fn step(&mut self, log: &mut ProblemLog) -> Result<Option<Document>> {
        let Some(cur) = self.cur.as_mut() else { return Ok(None) };
        let path = &self.files[cur.index];
        self.buf.clear();
        let n = (&mut cur.reader).take(MAX_LINE_BYTES + 1).read_until(b'\n', &mut self.buf).map_err(|e| Error::io(path, e))?;
        if n as u64 > MAX_LINE_BYTES {
            return Err(Error::file(
                path,
                format!(
                    "line {} is longer than {} MiB (is this a text file with one document per line?): split it into lines, \
                     or check that the right file was given",
                    cur.line + 1,
                    MAX_LINE_BYTES >> 20
                ),
            ));
        }
        self.bytes_read += n as u64;
        let stats = &mut self.stats[cur.index];
        if n == 0 {
            let before = stats.problems;
            let doc = if cur.format == InputFormat::Blocks { flush_block(cur, path, stats, log)? } else { None };
            self.skipped += stats.problems - before;
            if doc.is_none() {
                // End of file: a file that gave nothing (and had no problems) is a problem of its own.
                if stats.documents == 0 && stats.problems == 0 {
                    stats.problems += 1;
                    let message = "no documents in this file (it is empty or has only blank lines)".to_string();
                    log.record(Problem { kind: ProblemKind::EmptyFile, file: path.clone(), line: None, message })?;
                }
                self.cur = None;
            }
            return Ok(doc);
        }
        cur.line += 1;
        stats.lines += 1;
        let mut bytes = self.buf.as_slice();
        bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
        bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        if cur.line == 1 {
            bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        }
        let (line, file) = (cur.line, cur.index);
        let text = std::str::from_utf8(bytes);
        let problem = |kind, message: String| Problem { kind, file: path.clone(), line: Some(line), message };
        let before = stats.problems;
        let doc = match (cur.format, text) {
            (InputFormat::Blocks, Ok(t)) if t.trim().is_empty() => {
                stats.blank_lines += 1;
                flush_block(cur, path, stats, log)?
            }
            (InputFormat::Blocks, t) => {
                if cur.block_start == 0 {
                    cur.block_start = line;
                }
                match t {
                    Ok(t) => {
                        if !cur.block.is_empty() {
                            cur.block.push('\n');
                        }
                        cur.block.push_str(t);
                    }
                    Err(e) => {
                        cur.block_bad.get_or_insert((line, e.valid_up_to()));
                    }
                }
                None
            }
            (_, Err(e)) => {
                stats.problems += 1;
                log.record(problem(ProblemKind::InvalidUtf8, format!("invalid UTF-8 at byte {} of the line", e.valid_up_to())))?;
                None
            }
            (_, Ok(t)) if t.trim().is_empty() => {
                stats.blank_lines += 1;
                None
            }
            (InputFormat::Jsonl, Ok(t)) => match extract_json(&self.extract, t) {
                Ok(text) => Some(Document { text, file, line }),
                Err((kind, message)) => {
                    stats.problems += 1;
                    log.record(problem(kind, message))?;
                    None
                }
            },
            (_, Ok(t)) => Some(Document { text: t.to_string(), file, line }),
        };
        self.skipped += stats.problems - before;
        Ok(doc)
    }
}

/// Ends the block being collected: its document, or a problem if one of its lines was not UTF-8.
fn flush_block(cur: &mut OpenFile, path: &Path, stats: &mut SourceStats, log: &mut ProblemLog) -> Result<Option<Document>> {
    let start = std::mem::take(&mut cur.block_start);
    let text = std::mem::take(&mut cur.block);
    if start == 0 {
        return Ok(None);
    }
    if let Some((line, at)) = cur.block_bad.take() {
        stats.problems += 1;
        let message = format!("invalid UTF-8 at byte {at} of the line, in the document starting at line {start}");
        log.record(Problem { kind: ProblemKind::InvalidUtf8, file: path.to_path_buf(), line: Some(line), message })?;
        return Ok(None);
    }
    Ok(Some(Document { text, file: cur.index, line: start }))
}

/// The text of one JSONL record, or the problem with it.
fn extract_json(extract: &Extract, line: &str) -> std::result::Result<String, (ProblemKind, String)> {
    let value: Value = serde_json::from_str(line).map_err(|e| (ProblemKind::MalformedJson, format!("malformed JSON: {e}")))?;
    let Value::Object(mut record) = value else {
        return Err((ProblemKind::MalformedJson, format!("expected a JSON object, got {}", json_kind(&value))));
    };
    let mut field = |name: &str, take: bool| match if take { record.remove(name) } else { record.get(name).cloned() } {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err((ProblemKind::NonStringField, format!("field `{name}` is {}, not a string", json_kind(&other)))),
        None => {
            // The fields a template has already used are gone from `record`: these are the rest.
            let mut keys: Vec<&str> = record.keys().map(String::as_str).take(12).collect();
            if record.len() > keys.len() {
                keys.push("…");
            }
            Err((ProblemKind::MissingField, format!("no field `{name}` (its other fields: {})", keys.join(", "))))
        }
    };
    match extract {
        Extract::Field(name) => {
            let text = field(name, true)?;
            if text.trim().is_empty() {
                return Err((ProblemKind::EmptyDocument, format!("field `{name}` is blank")));
            }
            Ok(text)
        }
        Extract::Template(t) => {
            let mut blank = true;
            let text = t.render(|name| {
                let s = field(name, false)?;
                blank &= s.trim().is_empty();
                Ok(s)
            })?;
            if blank {
                return Err((ProblemKind::EmptyDocument, format!("all template fields ({}) are blank", t.fields().join(", "))));
            }
            Ok(text)
        }
    }
}

/// What a JSON value is, for messages: `null`, `a boolean`, `a number`, `a string`, `an array`, `an object`.
pub fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A progress bar over `total` bytes of input on stderr; hidden unless `enabled` and stderr is a terminal.
pub(crate) fn byte_progress(total: u64, enabled: bool, what: &'static str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !enabled || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    let template = "{msg} [{elapsed_precise}] {wide_bar} {binary_bytes}/{binary_total_bytes} ({binary_bytes_per_sec}, eta {eta})";
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar.set_message(what);
    bar
}
