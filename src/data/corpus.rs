//! A token corpus on disk, memory-mapped for reading ([`TokenCorpus`]) and written atomically ([`CorpusWriter`]).
//!
//! A corpus directory holds:
//!
//! * `index.json` ([`CorpusIndex`]): format version, dtype (`u16` when every id fits, else `u32`), vocabulary size,
//!   numbers of documents and tokens, the shards with their counts, the source files with their statistics
//!   and how they were read;
//! * `shard-00000.bin`, `shard-00001.bin`, …: raw little-endian token ids, documents back to back without separators;
//! * `shard-00000.idx`, …: little-endian `u64` start offsets (in tokens, within the shard) of the shard's N documents
//!   followed by the end offset, N+1 entries;
//! * `tokenizer/`: the tokenizer that produced the ids ([`Tokenizer::save`]).
//!
//! Documents never span shards; a new shard starts once the current one holds `shard_tokens` tokens.

use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::reader::{ReadOptions, SourceStats};
use crate::error::{read_text, Error, Result};
use crate::tokenizer::{SpecialTokens, Tokenizer, TokenizerFamily};

pub use super::writer::CorpusWriter;

/// The `format` value of `index.json`.
pub const CORPUS_FORMAT: &str = "wenhui-corpus/1";
/// The index file name.
pub const INDEX_FILE: &str = "index.json";
/// The tokenizer directory name inside a corpus.
pub const TOKENIZER_DIR: &str = "tokenizer";

/// How token ids are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenDtype {
    /// 2 bytes per id (vocabularies of at most 65536 ids).
    U16,
    /// 4 bytes per id.
    U32,
}

impl TokenDtype {
    /// The smallest dtype holding ids `0..vocab_size`.
    pub fn for_vocab(vocab_size: usize) -> Self {
        if vocab_size <= 1 << 16 {
            TokenDtype::U16
        } else {
            TokenDtype::U32
        }
    }

    /// Bytes per id.
    pub fn width(self) -> usize {
        match self {
            TokenDtype::U16 => 2,
            TokenDtype::U32 => 4,
        }
    }
}

/// One shard as listed in `index.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardInfo {
    /// Token file name (inside the corpus directory).
    pub bin: String,
    /// Offset file name.
    pub idx: String,
    /// Documents in the shard.
    pub num_docs: u64,
    /// Tokens in the shard.
    pub num_tokens: u64,
}

/// The tokenizer as recorded in `index.json` (the files are in `tokenizer/`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenizerInfo {
    /// Directory name inside the corpus.
    pub dir: String,
    /// Family.
    pub family: TokenizerFamily,
    /// GLM command-token ids.
    pub special: SpecialTokens,
}

/// The content of `index.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorpusIndex {
    /// Always [`CORPUS_FORMAT`].
    pub format: String,
    /// How ids are stored.
    pub dtype: TokenDtype,
    /// Number of ids of the tokenizer (every stored id is below it).
    pub vocab_size: usize,
    /// Documents in the corpus.
    pub num_docs: u64,
    /// Tokens in the corpus.
    pub num_tokens: u64,
    /// The shards, in document order.
    pub shards: Vec<ShardInfo>,
    /// The input files and their statistics.
    pub sources: Vec<SourceStats>,
    /// How the inputs were read.
    pub read: ReadOptions,
    /// The tokenizer.
    pub tokenizer: TokenizerInfo,
    /// The program that wrote the corpus.
    pub created_by: String,
}

/// A memory-mapped shard.
struct Shard {
    bin: Option<Mmap>,
    idx: Mmap,
    num_docs: usize,
}

impl Shard {
    fn offset(&self, j: usize) -> u64 {
        let b = &self.idx[j * 8..j * 8 + 8];
        u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
    }
}

/// A token corpus opened for reading: documents are read straight from the memory-mapped shards.
///
/// The files must not be modified while the corpus is open (they are mapped into memory).
pub struct TokenCorpus {
    dir: PathBuf,
    index: CorpusIndex,
    shards: Vec<Shard>,
    /// Global index of the first document of each shard.
    first_doc: Vec<usize>,
}

fn map_file(path: &Path, expect_len: u64) -> Result<Option<Mmap>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    if len != expect_len {
        return Err(Error::file(
            path,
            format!("{len} bytes, but {INDEX_FILE} implies {expect_len} (truncated or from another corpus; prepare the corpus again)"),
        ));
    }
    if len == 0 {
        return Ok(None);
    }
    // SAFETY: the map is read-only and corpus files are never modified in place (writers build a new directory
    // and rename it); `TokenCorpus` documents that the files must not change while it is open.
    let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
    Ok(Some(map))
}

impl TokenCorpus {
    /// Opens the corpus in `dir` and checks it: the index format and totals, every shard's file sizes, its
    /// offsets (start at 0, non-decreasing, end at the shard's token count) and ids (below the vocabulary size),
    /// and that the tokenizer is there. Errors name the offending file.
    pub fn open(dir: &Path) -> Result<Self> {
        let index_path = dir.join(INDEX_FILE);
        let index: CorpusIndex =
            serde_json::from_str(&read_text(&index_path)?).map_err(|e| Error::file(&index_path, format!("not a corpus index: {e}")))?;
        if index.format != CORPUS_FORMAT {
            return Err(Error::file(&index_path, format!("unsupported format `{}` (expected `{CORPUS_FORMAT}`)", index.format)));
        }
        let lie = |field: &str, listed: u64, what: &str, sum: u64| {
            Error::file(
                &index_path,
                format!("says {field} = {listed}, but its {what} add up to {sum} (the index does not match the corpus)"),
            )
        };
        let sum_docs: u64 = index.shards.iter().map(|s| s.num_docs).sum();
        let sum_tokens: u64 = index.shards.iter().map(|s| s.num_tokens).sum();
        let source_docs: u64 = index.sources.iter().map(|s| s.documents).sum();
        if sum_docs != index.num_docs {
            return Err(lie("num_docs", index.num_docs, "shards' documents", sum_docs));
        }
        if source_docs != index.num_docs {
            return Err(lie("num_docs", index.num_docs, "sources' documents", source_docs));
        }
        if sum_tokens != index.num_tokens {
            return Err(lie("num_tokens", index.num_tokens, "shards' tokens", sum_tokens));
        }
        if TokenDtype::for_vocab(index.vocab_size).width() > index.dtype.width() {
            return Err(Error::file(&index_path, format!("vocabulary size {} does not fit dtype {:?}", index.vocab_size, index.dtype)));
        }
        let tok_dir = dir.join(&index.tokenizer.dir);
        for name in ["tokenizer.json", crate::tokenizer::SIDECAR_FILE] {
            let p = tok_dir.join(name);
            if !p.is_file() {
                return Err(Error::file(&p, "missing: the corpus has no tokenizer (prepare the corpus again)"));
            }
        }
        let width = index.dtype.width();
        let mut shards = Vec::with_capacity(index.shards.len());
        let mut first_doc = Vec::with_capacity(index.shards.len());
        let mut next = 0usize;
        for info in &index.shards {
            let (bin_path, idx_path) = (dir.join(&info.bin), dir.join(&info.idx));
            let docs = usize::try_from(info.num_docs).map_err(|_| Error::file(&index_path, "too many documents for this machine"))?;
            let idx_len = info.num_docs.saturating_add(1).saturating_mul(8);
            let idx = map_file(&idx_path, idx_len)?.ok_or_else(|| Error::file(&idx_path, "empty offset file"))?;
            let bin = map_file(&bin_path, info.num_tokens.saturating_mul(width as u64))?;
            let shard = Shard { bin, idx, num_docs: docs };
            check_offsets(&shard, info, &idx_path)?;
            if let Some(bin) = &shard.bin {
                check_ids(bin, index.dtype, index.vocab_size, &bin_path)?;
            }
            first_doc.push(next);
            next += docs;
            shards.push(shard);
        }
        Ok(Self { dir: dir.to_path_buf(), index, shards, first_doc })
    }

    /// Number of documents.
    pub fn num_docs(&self) -> usize {
        self.first_doc.last().zip(self.shards.last()).map_or(0, |(first, s)| first + s.num_docs)
    }

    /// Number of tokens.
    pub fn num_tokens(&self) -> u64 {
        self.index.num_tokens
    }

    /// Where document `i` lives: (shard, index within the shard).
    fn locate(&self, i: usize) -> Option<(&Shard, usize)> {
        if i >= self.num_docs() {
            return None;
        }
        let s = self.first_doc.partition_point(|&f| f <= i).checked_sub(1)?;
        Some((&self.shards[s], i - self.first_doc[s]))
    }

    /// The token ids of document `i`. Errors if `i >= num_docs()`.
    pub fn doc(&self, i: usize) -> Result<Vec<u32>> {
        let mut out = Vec::new();
        self.doc_into(i, &mut out)?;
        Ok(out)
    }

    /// Replaces the content of `out` with the token ids of document `i` (no allocation once `out` is large enough).
    /// Errors if `i >= num_docs()`.
    pub fn doc_into(&self, i: usize, out: &mut Vec<u32>) -> Result<()> {
        let (shard, j) = self
            .locate(i)
            .ok_or_else(|| Error::input(format!("document {i} does not exist: the corpus has {} documents", self.num_docs())))?;
        out.clear();
        let (start, end) = (shard.offset(j) as usize, shard.offset(j + 1) as usize);
        let Some(bin) = &shard.bin else { return Ok(()) };
        match self.index.dtype {
            TokenDtype::U16 => out.extend(bin[start * 2..end * 2].chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]]) as u32)),
            TokenDtype::U32 => out.extend(bin[start * 4..end * 4].chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
        }
        Ok(())
    }

    /// Number of tokens of document `i`; 0 if `i >= num_docs()`.
    pub fn doc_len(&self, i: usize) -> usize {
        self.locate(i).map_or(0, |(shard, j)| (shard.offset(j + 1) - shard.offset(j)) as usize)
    }

    /// Loads the tokenizer saved with the corpus and checks that it has the index's vocabulary size.
    pub fn tokenizer(&self) -> Result<Tokenizer> {
        let dir = self.tokenizer_dir();
        let tok = Tokenizer::from_dir(&dir)?;
        if tok.vocab_size(true) != self.index.vocab_size {
            return Err(Error::file(
                &dir,
                format!(
                    "the tokenizer has {} ids but {INDEX_FILE} says {} (prepare the corpus again)",
                    tok.vocab_size(true),
                    self.index.vocab_size
                ),
            ));
        }
        Ok(tok)
    }

    /// The directory of the saved tokenizer (`<corpus>/tokenizer`).
    pub fn tokenizer_dir(&self) -> PathBuf {
        self.dir.join(&self.index.tokenizer.dir)
    }

    /// The tokenizer's number of ids, from the index (every id in the corpus is below it).
    pub fn vocab_size(&self) -> usize {
        self.index.vocab_size
    }

    /// The parsed `index.json`.
    pub fn index(&self) -> &CorpusIndex {
        &self.index
    }

    /// The corpus directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn check_offsets(shard: &Shard, info: &ShardInfo, path: &Path) -> Result<()> {
    let first = shard.offset(0);
    if first != 0 {
        return Err(Error::file(path, format!("the first offset is {first}, expected 0")));
    }
    for j in 0..shard.num_docs {
        let (a, b) = (shard.offset(j), shard.offset(j + 1));
        if b < a {
            return Err(Error::file(path, format!("offsets decrease at document {j} ({a} then {b})")));
        }
    }
    let last = shard.offset(shard.num_docs);
    if last != info.num_tokens {
        return Err(Error::file(
            path,
            format!("the last offset is {last}, but {INDEX_FILE} says the shard has {} tokens", info.num_tokens),
        ));
    }
    Ok(())
}

fn check_ids(bin: &[u8], dtype: TokenDtype, vocab: usize, path: &Path) -> Result<()> {
    const CHUNK: usize = 1 << 20;
    let width = dtype.width();
    let bad = bin.par_chunks(CHUNK * width).enumerate().find_map_first(|(c, bytes)| {
        let ids: Box<dyn Iterator<Item = u32>> = match dtype {
            TokenDtype::U16 => Box::new(bytes.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]]) as u32)),
            TokenDtype::U32 => Box::new(bytes.chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
        };
        ids.enumerate().find(|&(_, id)| id as usize >= vocab).map(|(k, id)| (c * CHUNK + k, id))
    });
    match bad {
        Some((at, id)) => Err(Error::file(path, format!("token {at} has id {id}, not below the vocabulary size {vocab} (corrupt shard)"))),
        None => Ok(()),
    }
}
