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
    /// When set (Ctrl-C), the run stops after the batch in hand with an error, removing its
    /// temporary folder; the output is left as it was.
    pub stop: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

impl Default for PrepareOptions {
    fn default() -> Self {
        Self {
            read: ReadOptions::default(),
            shard_tokens: DEFAULT_SHARD_TOKENS,
            overwrite: false,
            progress: false,
            chunk_docs: 4096,
            stop: None,
        }
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
    /// Documents whose text holds a command token's string (`[MASK]`, `<|endoftext|>`, …), which
    /// the tokenizer reads as that token (as the official GLM tokenizer does); warned about.
    pub command_token_documents: u64,
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
    // Command tokens written in the text (not `[UNK]`, which unknown characters become).
    let commands: Vec<(&str, u32)> = tokenizer.special.iter().filter(|(name, _)| *name != "unk").collect();
    let (mut command_docs, mut first_command) = (0u64, None);
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
            if let Some((name, id)) = commands.iter().find(|(_, id)| ids.contains(id)) {
                command_docs += 1;
                let token = tokenizer.id_to_token(*id).unwrap_or_else(|| name.to_string());
                first_command.get_or_insert_with(|| format!("`{token}` in {}:{}", files[doc.file].display(), doc.line));
            }
            writer.push(&ids)?;
        }
        bar.set_position(reader.bytes_read());
        if opts.stop.as_ref().is_some_and(|s| s.load(std::sync::atomic::Ordering::SeqCst)) {
            // Dropping the writer removes its temporary folder.
            bar.finish_and_clear();
            return Err(Error::input(format!("stopped before the end: nothing was written to {}", out.display())));
        }
        pending = next?;
    }
    bar.finish_and_clear();
    log.finish();
    if let Some(first) = &first_command {
        tracing::warn!(
            "{command_docs} documents hold the text of a command token (first: {first}): the tokenizer reads `[MASK]`, \
             `<|endoftext|>` and the like written in text as those tokens, as the official GLM tokenizer does, so training \
             sees them as masks or ends of text; remove them from the text if they are not meant so"
        );
    }
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
        command_token_documents: command_docs,
    })
}

/// Token ids of every document (no special tokens), in parallel. Same ids as [`Tokenizer::encode`], without
/// computing offsets; a document longer than [`PIECE_BYTES`] is encoded piece by piece ([`encode_long`]).
fn encode_batch(tokenizer: &Tokenizer, docs: &[Document], files: &[PathBuf]) -> Result<Vec<Vec<u32>>> {
    let plain = !uses_metaspace(tokenizer);
    docs.par_iter()
        .map(|d| {
            encode_long(tokenizer, &d.text, PIECE_BYTES, plain)
                .map_err(|e| Error::Tokenizer(format!("{}: line {}: encoding failed: {e}", files[d.file].display(), d.line)))
        })
        .collect()
}

/// The longest text encoded in one call: the tokenizer's working memory grows with the text (a
/// 6.5 M-character line took 2.9 GB whole), so longer documents are cut into pieces of about
/// this size.
const PIECE_BYTES: usize = 1 << 20;

/// Whether the tokenizer marks spaces SentencePiece's way (a unigram model, `▁` for spaces by a
/// Metaspace pre-tokenizer or a Prepend normalizer): it reads the text between two spaces as
/// one word and marks the start of the text, so text may be cut only before a space.
fn uses_metaspace(tokenizer: &Tokenizer) -> bool {
    let t = tokenizer.inner();
    let mentions = |json: Option<String>, what: &str| json.is_some_and(|j| j.contains(what));
    matches!(t.get_model(), tokenizers::ModelWrapper::Unigram(_))
        || mentions(t.get_pre_tokenizer().and_then(|p| serde_json::to_string(p).ok()), "Metaspace")
        || mentions(t.get_normalizer().and_then(|n| serde_json::to_string(n).ok()), "Prepend")
}

/// The ids of `text`, encoded in pieces of at most about `piece` bytes. Pieces end where the
/// tokenizers wenhui trains or reads start a new pre-token anyway: before a single space or
/// newline that is followed by text (` word`, `\nword`), or between punctuation and a letter or
/// digit (`，春`; not after an apostrophe, which GPT-2's pre-tokenizer joins to `'t`). A
/// SentencePiece tokenizer (`plain` false) is cut only before a single space. So the ids are those of
/// encoding the text whole; only a stretch of `piece / 2` bytes with no such place (one giant
/// word) is cut at a character boundary.
fn encode_long(tokenizer: &Tokenizer, text: &str, piece: usize, plain: bool) -> std::result::Result<Vec<u32>, String> {
    let encode = |t: &str| tokenizer.inner().encode_fast(t, false).map(|e| e.get_ids().to_vec()).map_err(|e| e.to_string());
    if text.len() <= piece {
        return encode(text);
    }
    let mut ids = Vec::new();
    let mut rest = text;
    while rest.len() > piece {
        let cut = piece_end(rest, piece, plain);
        ids.extend(encode(&rest[..cut])?);
        rest = &rest[cut..];
    }
    ids.extend(encode(rest)?);
    Ok(ids)
}

/// Where the first piece of `text` (longer than `piece` bytes) ends: the last pre-token boundary
/// (see [`encode_long`]) in its second half, else the last character boundary within `piece`.
fn piece_end(text: &str, piece: usize, plain: bool) -> usize {
    let mut limit = piece;
    while !text.is_char_boundary(limit) {
        limit -= 1;
    }
    let window = &text[..limit];
    let punct = |c: char| plain && !c.is_whitespace() && !c.is_alphanumeric() && c != '\'';
    let space = |c: char| if plain { c.is_whitespace() } else { c == ' ' };
    let mut next: Option<char> = text[limit..].chars().next();
    for (i, c) in window.char_indices().rev() {
        if i < limit / 2 {
            break;
        }
        if let Some(n) = next {
            // Before a whitespace run that ends in text, or between punctuation and a word.
            let starts_space_run = space(c) && !n.is_whitespace() && window[..i].chars().next_back().is_none_or(|p| !p.is_whitespace());
            if (starts_space_run || (punct(c) && n.is_alphanumeric())) && i > 0 {
                return if starts_space_run { i } else { i + c.len_utf8() };
            }
        }
        next = Some(c);
    }
    if limit == 0 {
        // A piece smaller than one character: take the character.
        return text.chars().next().map_or(text.len(), char::len_utf8);
    }
    limit
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Long text encoded in small pieces gives the ids of encoding it whole, with every kind of
    /// tokenizer wenhui reads (byte-level BPE, WordPiece, SentencePiece, characters).
    #[test]
    fn long_documents_encode_in_pieces_to_the_same_ids() -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let fixtures = Path::new("tests/fixtures/tokenizers");
        let corpus = ["corpus_en.txt", "corpus_zh_en.txt"]
            .iter()
            .map(|f| std::fs::read_to_string(fixtures.join(f)).unwrap_or_default())
            .collect::<String>();
        assert!(corpus.len() > 1000, "the tokenizer fixtures' corpora are missing");
        let text = corpus.repeat(6) + &"春眠不觉晓，处处闻啼鸟。".repeat(40) + "don't stop, it's 2026.";
        let mut tokenizers = vec![
            Tokenizer::from_dir(&fixtures.join("bpe"))?,
            Tokenizer::from_dir(&fixtures.join("wordpiece"))?,
            Tokenizer::from_file(&fixtures.join("sentencepiece/unigram.model"))?,
        ];
        tokenizers.push(crate::tokenizer::CharVocab::from_chars(text.chars()).build()?);
        assert_eq!(tokenizers.iter().map(uses_metaspace).collect::<Vec<_>>(), [false, false, true, false]);
        // SentencePiece reads a text without spaces as one word, which only a space may end: its
        // text has spaces everywhere (where none is near, a piece ends at a character boundary).
        let spaced = corpus.lines().filter(|l| l.is_ascii()).collect::<Vec<_>>().join(" ").repeat(6);
        for (k, tok) in tokenizers.iter().enumerate() {
            let text = if uses_metaspace(tok) { &spaced } else { &text };
            let whole = tok.inner().encode_fast(text.as_str(), false)?.get_ids().to_vec();
            for piece in [97, 301, 4096] {
                let pieces = encode_long(tok, text, piece, !uses_metaspace(tok))?;
                if let Some(i) =
                    (0..whole.len().min(pieces.len())).find(|&i| whole[i] != pieces[i]).or((whole.len() != pieces.len()).then_some(0))
                {
                    // Where the pieces were cut, to see which boundary broke a token.
                    let mut rest = text.as_str();
                    let mut cuts = Vec::new();
                    while rest.len() > piece {
                        let c = piece_end(rest, piece, !uses_metaspace(tok));
                        let (a, b) = rest.split_at(c);
                        cuts.push(format!(
                            "{:?}|{:?}",
                            a.chars().rev().take(4).collect::<String>().chars().rev().collect::<String>(),
                            b.chars().take(4).collect::<String>()
                        ));
                        rest = b;
                    }
                    panic!(
                        "tokenizer {k}, piece {piece}: ids differ from index {i} (whole {} ids, pieces {}); cuts: {}",
                        whole.len(),
                        pieces.len(),
                        cuts.join(" ")
                    );
                }
            }
        }
        Ok(())
    }

    #[test]
    fn pieces_end_at_pre_token_boundaries() {
        // Before a single space, in the window's second half.
        assert_eq!(piece_end("abcd ef gh", 9, true), 7);
        // After punctuation that precedes a word (3 bytes a character).
        assert_eq!(piece_end("春天春，天天天", 18, true), 12);
        // SentencePiece: spaces only, so here the character boundary.
        assert_eq!(piece_end("春天春，天天天", 18, false), 18);
        assert_eq!(piece_end("春天春\n天天天", 16, false), 16, "a newline is no SentencePiece space");
        assert_eq!(piece_end("春天春 天天天", 16, false), 9);
        // Not inside `'t`.
        assert_eq!(piece_end("abcdon't", 6, true), 6);
        // A piece smaller than a character takes the character.
        assert_eq!(piece_end("春天", 2, true), 3);
    }
}
