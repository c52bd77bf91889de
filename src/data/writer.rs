//! Writing a token corpus ([`super::corpus`]) atomically: everything goes into `<out>.tmp-<pid>`, which is renamed
//! to `<out>` once complete.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::corpus::{CorpusIndex, ShardInfo, TokenDtype, TokenizerInfo, CORPUS_FORMAT, INDEX_FILE, TOKENIZER_DIR};
use super::reader::{ReadOptions, SourceStats};
use crate::error::{Error, Result};
use crate::tokenizer::Tokenizer;

/// The shard being written.
struct OpenShard {
    bin: BufWriter<File>,
    idx: BufWriter<File>,
    info: ShardInfo,
}

/// Writes a corpus into `<out>.tmp-<pid>` and renames it to `<out>` once complete ([`CorpusWriter::finish`]).
/// Dropped without `finish` (an error), it removes the temporary directory and leaves `<out>` as it was.
pub struct CorpusWriter {
    out: PathBuf,
    tmp: PathBuf,
    dtype: TokenDtype,
    vocab_size: usize,
    shard_tokens: u64,
    shards: Vec<ShardInfo>,
    cur: Option<OpenShard>,
    bytes: Vec<u8>,
    overwrite: bool,
    finished: bool,
}

impl CorpusWriter {
    /// Starts a corpus at `out` for ids below `vocab_size`, starting a new shard once one holds `shard_tokens`
    /// tokens. Errors if `out` exists and is not an empty directory, unless `overwrite` (then the old content is
    /// replaced only by [`CorpusWriter::finish`]).
    pub fn create(out: &Path, vocab_size: usize, shard_tokens: u64, overwrite: bool) -> Result<Self> {
        if shard_tokens == 0 {
            return Err(Error::input("shard_tokens must be at least 1"));
        }
        if out.exists() {
            if !out.is_dir() {
                return Err(Error::file(out, "exists and is not a directory; choose another output path"));
            }
            let mut entries = std::fs::read_dir(out).map_err(|e| Error::io(out, e))?;
            if entries.next().is_some() {
                if !overwrite {
                    return Err(Error::file(
                        out,
                        "already exists and is not empty; pass --overwrite to replace it \
                         (the old content is replaced only once the new corpus is complete)",
                    ));
                }
                check_replaceable_corpus(out)?;
            }
        }
        let name = out.file_name().ok_or_else(|| Error::file(out, "not a usable output directory name"))?.to_string_lossy().into_owned();
        remove_stale_temps(out, &name);
        let tmp = out.with_file_name(format!("{name}.tmp-{}", std::process::id()));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        }
        std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let dtype = TokenDtype::for_vocab(vocab_size);
        Ok(Self {
            out: out.to_path_buf(),
            tmp,
            dtype,
            vocab_size,
            shard_tokens,
            shards: Vec::new(),
            cur: None,
            bytes: Vec::new(),
            overwrite,
            finished: false,
        })
    }

    /// The dtype ids are stored with.
    pub fn dtype(&self) -> TokenDtype {
        self.dtype
    }

    /// Appends one document. Errors for an id not below the vocabulary size.
    pub fn push(&mut self, ids: &[u32]) -> Result<()> {
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= self.vocab_size) {
            return Err(Error::Tokenizer(format!("the tokenizer produced id {bad}, not below its vocabulary size {}", self.vocab_size)));
        }
        if self.cur.as_ref().is_some_and(|s| s.info.num_tokens >= self.shard_tokens) {
            self.close_shard()?;
        }
        if self.cur.is_none() {
            self.open_shard()?;
        }
        self.bytes.clear();
        match self.dtype {
            TokenDtype::U16 => self.bytes.extend(ids.iter().flat_map(|&id| (id as u16).to_le_bytes())),
            TokenDtype::U32 => self.bytes.extend(ids.iter().flat_map(|&id| id.to_le_bytes())),
        }
        let Some(shard) = self.cur.as_mut() else { return Err(Error::input("no open shard")) };
        let end = shard.info.num_tokens + ids.len() as u64;
        shard.bin.write_all(&self.bytes).map_err(|e| Error::io(self.tmp.join(&shard.info.bin), e))?;
        shard.idx.write_all(&end.to_le_bytes()).map_err(|e| Error::io(self.tmp.join(&shard.info.idx), e))?;
        shard.info.num_tokens = end;
        shard.info.num_docs += 1;
        Ok(())
    }

    fn open_shard(&mut self) -> Result<()> {
        let n = self.shards.len();
        let info = ShardInfo { bin: format!("shard-{n:05}.bin"), idx: format!("shard-{n:05}.idx"), num_docs: 0, num_tokens: 0 };
        let create = |name: &str| {
            let p = self.tmp.join(name);
            File::create(&p).map(|f| BufWriter::with_capacity(1 << 20, f)).map_err(|e| Error::io(&p, e))
        };
        let (bin, mut idx) = (create(&info.bin)?, create(&info.idx)?);
        idx.write_all(&0u64.to_le_bytes()).map_err(|e| Error::io(self.tmp.join(&info.idx), e))?;
        self.cur = Some(OpenShard { bin, idx, info });
        Ok(())
    }

    fn close_shard(&mut self) -> Result<()> {
        let Some(shard) = self.cur.take() else { return Ok(()) };
        for (w, name) in [(shard.bin, &shard.info.bin), (shard.idx, &shard.info.idx)] {
            let p = self.tmp.join(name);
            let file = w.into_inner().map_err(|e| Error::io(&p, e.into_error()))?;
            file.sync_all().map_err(|e| Error::io(&p, e))?;
        }
        self.shards.push(shard.info);
        Ok(())
    }

    /// Completes the corpus: closes the last shard, saves `tokenizer` and `index.json`, and renames the temporary
    /// directory to the output (replacing the old output, when allowed, only now).
    pub fn finish(mut self, tokenizer: &Tokenizer, sources: Vec<SourceStats>, read: ReadOptions) -> Result<CorpusIndex> {
        self.close_shard()?;
        tokenizer.save(&self.tmp.join(TOKENIZER_DIR))?;
        let index = CorpusIndex {
            format: CORPUS_FORMAT.into(),
            dtype: self.dtype,
            vocab_size: self.vocab_size,
            num_docs: self.shards.iter().map(|s| s.num_docs).sum(),
            num_tokens: self.shards.iter().map(|s| s.num_tokens).sum(),
            shards: std::mem::take(&mut self.shards),
            sources,
            read,
            tokenizer: TokenizerInfo { dir: TOKENIZER_DIR.into(), family: tokenizer.family, special: tokenizer.special },
            created_by: format!("wenhui {}", env!("CARGO_PKG_VERSION")),
        };
        let json = serde_json::to_string_pretty(&index).map_err(|e| Error::input(format!("cannot serialise the index: {e}")))?;
        let index_path = self.tmp.join(INDEX_FILE);
        std::fs::write(&index_path, json).map_err(|e| Error::io(&index_path, e))?;
        self.commit()?;
        Ok(index)
    }

    fn commit(&mut self) -> Result<()> {
        let old =
            self.out.with_file_name(format!("{}.old-{}", self.out.file_name().unwrap_or_default().to_string_lossy(), std::process::id()));
        let replaced = self.out.exists();
        if replaced {
            // Empty directories are simply removed; anything else only with `overwrite` (checked again: the
            // directory may have been filled since `create`).
            if std::fs::remove_dir(&self.out).is_err() {
                if !self.overwrite {
                    return Err(Error::file(&self.out, "was filled while the corpus was written; not replacing it without --overwrite"));
                }
                std::fs::rename(&self.out, &old).map_err(|e| Error::io(&self.out, e))?;
            }
        }
        if let Err(e) = std::fs::rename(&self.tmp, &self.out) {
            if old.exists() {
                let _ = std::fs::rename(&old, &self.out);
            }
            return Err(Error::io(&self.out, e));
        }
        self.finished = true;
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
        }
        Ok(())
    }
}

/// `--overwrite` replaces only an earlier corpus: a directory holding `index.json` and shard files (and
/// nothing but corpus files). Anything else (a folder of the user's own files) is refused, naming what was found.
fn check_replaceable_corpus(out: &Path) -> Result<()> {
    let names = crate::error::dir_names(out)?;
    let is_shard = |n: &str| n.starts_with("shard-") && (n.ends_with(".bin") || n.ends_with(".idx"));
    let has_index = names.iter().any(|n| n == INDEX_FILE);
    let has_shards = names.iter().any(|n| is_shard(n));
    let others: Vec<&String> = names.iter().filter(|n| !(n.as_str() == INDEX_FILE || n.as_str() == TOKENIZER_DIR || is_shard(n))).collect();
    if has_index && has_shards && others.is_empty() {
        return Ok(());
    }
    let what = if others.is_empty() {
        format!("no {INDEX_FILE} with shard files")
    } else {
        format!("{}, which are not corpus files", crate::error::first_names(&others))
    };
    Err(Error::file(
        out,
        format!(
            "is not a wenhui corpus directory (found {what}); --overwrite replaces only an earlier corpus \
             ({INDEX_FILE} + shard-*.bin/.idx). Choose another -o, or move those files away / empty the directory first"
        ),
    ))
}

/// Removes `<out>.tmp-<pid>` directories left by an interrupted run (Ctrl-C, a crash) whose process is no
/// longer alive. Liveness is checked with `/proc/<pid>` on Linux; elsewhere such directories are left and named.
fn remove_stale_temps(out: &Path, name: &str) {
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let Ok(entries) = std::fs::read_dir(&parent) else { return };
    let prefix = format!("{name}.tmp-");
    let me = std::process::id();
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = file_name.strip_prefix(&prefix).and_then(|p| p.parse::<u32>().ok()) else { continue };
        if pid == me || !entry.path().is_dir() {
            continue;
        }
        let path = entry.path();
        if cfg!(target_os = "linux") {
            if Path::new(&format!("/proc/{pid}")).exists() {
                continue;
            }
            match std::fs::remove_dir_all(&path) {
                Ok(()) => tracing::warn!("removed {}, left by an interrupted run (process {pid} is gone)", path.display()),
                Err(e) => tracing::warn!("could not remove {} left by an interrupted run: {e}", path.display()),
            }
        } else {
            tracing::warn!(
                "{} looks left by an interrupted run (process {pid}); remove it once no `data prepare` is running",
                path.display()
            );
        }
    }
}

impl Drop for CorpusWriter {
    fn drop(&mut self) {
        if !self.finished {
            let _ = std::fs::remove_dir_all(&self.tmp);
        }
    }
}
