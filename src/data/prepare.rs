//! Corpus → token shards: `wenhui data prepare`.
//!
//! [`prepare`] reads documents from text or JSONL files ([`super::reader`]), tokenizes them in parallel and
//! without special tokens (the pretraining objective adds `[CLS]` / eos itself), chunk by chunk so memory stays
//! bounded, and writes a [`super::corpus`] directory atomically.
//!
//! ```no_run
//! use std::path::PathBuf;
//! use wenhui::data::prepare::{prepare, PrepareOptions};
//! use wenhui::tokenizer::Tokenizer;
//! let tok = Tokenizer::from_dir("my-tokenizer".as_ref())?;
//! let report = prepare(&[PathBuf::from("poems.jsonl")], &tok, "corpus".as_ref(), &PrepareOptions::default())?;
//! println!("{} documents, {} tokens", report.documents, report.tokens);
//! # Ok::<(), wenhui::Error>(())
//! ```

use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use super::corpus::TokenDtype;
use super::reader::{byte_progress, DocReader, Document, Problem, ProblemCounts, ProblemKind, ProblemLog, ReadOptions, SourceStats};
use super::writer::CorpusWriter;
use crate::error::{Error, Result};
use crate::tokenizer::Tokenizer;

/// Default [`PrepareOptions::shard_tokens`]: 100 M tokens (200 MB shards with `u16` ids).
pub const DEFAULT_SHARD_TOKENS: u64 = 100_000_000;

/// Options of [`prepare`].
#[derive(Debug, Clone)]
pub struct PrepareOptions {
    /// How inputs are read (format, JSONL field or template, problem policy).
    pub read: ReadOptions,
    /// A new shard starts once the current one holds this many tokens (documents are never split).
    pub shard_tokens: u64,
    /// Replace an existing non-empty output directory (only once the new corpus is complete).
    pub overwrite: bool,
    /// Show a progress bar on stderr (only when stderr is a terminal).
    pub progress: bool,
    /// Documents tokenized per parallel batch (memory stays bounded by about two batches).
    pub chunk_docs: usize,
}

impl Default for PrepareOptions {
    fn default() -> Self {
        Self { read: ReadOptions::default(), shard_tokens: DEFAULT_SHARD_TOKENS, overwrite: false, progress: false, chunk_docs: 4096 }
    }
}

/// What [`prepare`] did.
#[derive(Debug, Clone, Serialize)]
pub struct PrepareReport {
    /// The corpus directory.
    pub output: PathBuf,
    /// Input files read.
    pub files: usize,
    /// Bytes of input read.
    pub bytes: u64,
    /// Documents written.
    pub documents: u64,
    /// Tokens written.
    pub tokens: u64,
    /// Blank lines (not documents, not problems).
    pub blank_lines: u64,
    /// Skipped inputs, per kind.
    pub problems: ProblemCounts,
    /// The first problems, with file and line.
    pub first_problems: Vec<Problem>,
    /// Number of shards.
    pub shards: usize,
    /// How ids are stored.
    pub dtype: TokenDtype,
    /// The tokenizer's number of ids.
    pub vocab_size: usize,
    /// Wall-clock seconds.
    pub elapsed_s: f64,
    /// Tokens written per second.
    pub tokens_per_s: f64,
    /// Per input file statistics.
    pub sources: Vec<SourceStats>,
}

/// Upper bound on the text held by one batch.
const CHUNK_BYTES: usize = 64 << 20;

/// Tokenizes the documents of `inputs` (files or directories) with `tokenizer` and writes the corpus to `out`
/// (see [`super::corpus`]). Problems in the inputs are skipped and counted or fatal ([`ReadOptions::on_error`]);
/// a document without any token counts as an empty document. Errors when no document remains.
pub fn prepare(inputs: &[PathBuf], tokenizer: &Tokenizer, out: &Path, opts: &PrepareOptions) -> Result<PrepareReport> {
    let start = Instant::now();
    let mut reader = DocReader::new(inputs, &opts.read)?;
    let files = reader.files().to_vec();
    let vocab_size = tokenizer.vocab_size(true);
    if opts.overwrite {
        let inputs: Vec<&Path> = files.iter().map(|f| f.as_path()).collect();
        crate::error::check_output_apart(out, &inputs)?;
    }
    let mut writer = CorpusWriter::create(out, vocab_size, opts.shard_tokens, opts.overwrite)?;
    let mut log = ProblemLog::new(opts.read.on_error);
    let bar = byte_progress(reader.total_bytes(), opts.progress, "prepare");
    let chunk = opts.chunk_docs.max(1);
    let mut pending = reader.next_chunk(chunk, CHUNK_BYTES, &mut log)?;
    while !pending.is_empty() {
        // Read the next batch while this one is tokenized.
        let (next, encoded) = rayon::join(|| reader.next_chunk(chunk, CHUNK_BYTES, &mut log), || encode_batch(tokenizer, &pending, &files));
        for (doc, ids) in pending.iter().zip(encoded?) {
            let stats = &mut reader.stats_mut()[doc.file];
            if ids.is_empty() {
                stats.documents -= 1;
                stats.problems += 1;
                let message = "the document has no tokens after tokenization".to_string();
                log.record(Problem { kind: ProblemKind::EmptyDocument, file: files[doc.file].clone(), line: Some(doc.line), message })?;
                continue;
            }
            stats.tokens += ids.len() as u64;
            writer.push(&ids)?;
        }
        bar.set_position(reader.bytes_read());
        pending = next?;
    }
    bar.finish_and_clear();
    log.finish();
    let sources = reader.stats().to_vec();
    if sources.iter().all(|s| s.documents == 0) {
        let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        return Err(Error::input(format!("no documents in {}: every document was empty after tokenization", names.join(", "))));
    }
    let dtype = writer.dtype();
    let index = writer.finish(tokenizer, sources, opts.read.clone())?;
    let elapsed_s = start.elapsed().as_secs_f64();
    Ok(PrepareReport {
        output: out.to_path_buf(),
        files: files.len(),
        bytes: reader.bytes_read(),
        documents: index.num_docs,
        tokens: index.num_tokens,
        blank_lines: index.sources.iter().map(|s| s.blank_lines).sum(),
        problems: log.counts(),
        first_problems: log.first().to_vec(),
        shards: index.shards.len(),
        dtype,
        vocab_size,
        elapsed_s,
        tokens_per_s: index.num_tokens as f64 / elapsed_s.max(1e-9),
        sources: index.sources,
    })
}

/// Token ids of every document (no special tokens), in parallel. Same ids as [`Tokenizer::encode`], without
/// computing offsets.
fn encode_batch(tokenizer: &Tokenizer, docs: &[Document], files: &[PathBuf]) -> Result<Vec<Vec<u32>>> {
    docs.par_iter()
        .map(|d| {
            let enc = tokenizer.inner().encode_fast(d.text.as_str(), false);
            enc.map(|e| e.get_ids().to_vec())
                .map_err(|e| Error::Tokenizer(format!("{}: line {}: encoding failed: {e}", files[d.file].display(), d.line)))
        })
        .collect()
}
