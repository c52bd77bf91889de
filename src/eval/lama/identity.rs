//! What a probe result depends on, in a form a later run can compare: the model's canonical
//! path, the fingerprint of its weights ([`crate::model::weights_fingerprint`], taken when the
//! model is loaded), a fingerprint of its config and tokenizer files, and one of the relation's
//! data files; a result file is reused only for the very same model, data and settings.
//!
//! A file fingerprint is FNV-1a over every file's name, size and content: the whole file up to
//! [`WHOLE_FILE`] bytes; of a larger one the first and last MiB and [`WINDOWS`] windows of 64 KiB
//! spread evenly between them (a few MiB read however large the file). File times are left out:
//! a copy of the same files is the same model.

use crate::model::{fnv1a, FNV_OFFSET};
use crate::{Error, Result};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Files up to this size are hashed whole.
pub const WHOLE_FILE: u64 = 4 << 20;
/// Windows of 64 KiB hashed between the first and the last MiB of a larger file.
pub const WINDOWS: u64 = 14;
const MIB: u64 = 1 << 20;
const WINDOW: u64 = 64 << 10;

/// The files a tokenizer directory can be read from (see `Tokenizer::find_in_dir`), plus the
/// Hugging Face side files; `*.model` (SentencePiece) is matched by extension.
const TOKENIZER_FILES: &[&str] = &[
    "tokenizer.json",
    crate::tokenizer::SIDECAR_FILE,
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "chars.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
];

/// The model a result was computed with.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ModelIdentity {
    /// The model path, canonical (`./m`, `m` and `/abs/m` are the same model).
    pub path: String,
    /// The fingerprint of the loaded weights (`LoadedModel::fingerprint`).
    pub weights: String,
    /// [`fingerprint`] of the config and tokenizer files.
    pub files: String,
}

impl ModelIdentity {
    /// The identity of the model at `model` whose loaded weights have the fingerprint
    /// `weights`, read with `config` (`--config`; else the `config.json` beside the weights, when
    /// there) and the tokenizer at `tokenizer` (a directory or a file).
    pub fn of(model: &Path, weights: &str, config: Option<&Path>, tokenizer: &Path) -> Result<Self> {
        let path = model.canonicalize().map_err(|e| Error::io(model, e))?;
        let dir = if path.is_dir() { path.clone() } else { path.parent().map(Path::to_path_buf).unwrap_or_default() };
        let mut files: Vec<PathBuf> = match config {
            Some(c) => vec![c.to_path_buf()],
            None => Some(dir.join("config.json")).filter(|p| p.is_file()).into_iter().collect(),
        };
        let tok_dir = if tokenizer.is_dir() {
            tokenizer.to_path_buf()
        } else {
            files.push(tokenizer.to_path_buf());
            tokenizer.parent().map(Path::to_path_buf).unwrap_or_default()
        };
        let mut found: Vec<PathBuf> = std::fs::read_dir(&tok_dir)
            .map_err(|e| Error::io(&tok_dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file() && p.file_name().and_then(|n| n.to_str()).is_some_and(|n| TOKENIZER_FILES.contains(&n) || n.ends_with(".model"))
            })
            .collect();
        found.sort();
        files.extend(found);
        let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
        Ok(Self { path: path.display().to_string(), weights: weights.to_string(), files: fingerprint(&refs, &[])? })
    }
}

/// The fingerprint of `files` (each by name, size and sampled content, duplicates once) and
/// `extra` bytes, as `fnv1a64:<hex> (<n> files, <bytes> bytes)`.
pub fn fingerprint(files: &[&Path], extra: &[u8]) -> Result<String> {
    let mut list: Vec<PathBuf> = files.iter().map(|p| p.canonicalize().map_err(|e| Error::io(p, e))).collect::<Result<_>>()?;
    list.sort();
    list.dedup();
    let mut h = fnv1a(FNV_OFFSET, extra);
    let mut bytes = 0u64;
    for path in &list {
        let (hash, size) = hash_file(path, h)?;
        h = hash;
        bytes += size;
    }
    Ok(format!("fnv1a64:{h:016x} ({} files, {bytes} bytes)", list.len()))
}

/// Folds the name, the size and the sampled content of `path` into `h`; returns it and the size.
fn hash_file(path: &Path, mut h: u64) -> Result<(u64, u64)> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let size = f.metadata().map_err(|e| Error::io(path, e))?.len();
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    h = fnv1a(h, name.as_bytes());
    h = fnv1a(h, &size.to_le_bytes());
    let spans: Vec<(u64, u64)> = if size <= WHOLE_FILE {
        vec![(0, size)]
    } else {
        let inner = size - 2 * MIB;
        let mut s = vec![(0, MIB)];
        s.extend((1..=WINDOWS).map(|k| (MIB + inner * k / (WINDOWS + 1) - WINDOW / 2, WINDOW)));
        s.push((size - MIB, MIB));
        s
    };
    let mut buf = Vec::new();
    for (start, len) in spans {
        f.seek(SeekFrom::Start(start)).map_err(|e| Error::io(path, e))?;
        buf.clear();
        (&mut f).take(len).read_to_end(&mut buf).map_err(|e| Error::io(path, e))?;
        h = fnv1a(h, &buf);
    }
    Ok((h, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_follows_content_not_spelling_or_time() -> Result<()> {
        let tmp = tempfile::tempdir().map_err(|e| Error::io("tmp", e))?;
        let m = tmp.path().join("m");
        let write = |p: &Path, bytes: &[u8]| -> Result<()> {
            if let Some(d) = p.parent() {
                std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
            }
            std::fs::write(p, bytes).map_err(|e| Error::io(p, e))
        };
        write(&m.join("config.json"), b"{}")?;
        write(&m.join("tokenizer.json"), b"{\"model\": 1}")?;
        write(&m.join("notes.md"), b"not read by the loader")?;
        let a = ModelIdentity::of(&m, "w1", None, &m)?;
        let b = ModelIdentity::of(&tmp.path().join("m/../m/."), "w1", Some(&m.join("config.json")), &m.join("tokenizer.json"))?;
        assert_eq!(a, b, "the same model spelled differently, its files named directly");
        assert!(a.files.contains("(2 files, "), "{}", a.files);
        write(&m.join("notes.md"), b"edited")?;
        assert_eq!(ModelIdentity::of(&m, "w1", None, &m)?, a, "a file the loader does not read");
        write(&m.join("tokenizer.json"), b"{\"model\": 2}")?;
        assert_ne!(ModelIdentity::of(&m, "w1", None, &m)?.files, a.files, "another tokenizer");
        // One byte in the middle of a large file: caught by a window.
        let size = (WHOLE_FILE + 3 * MIB) as usize;
        let big_path = tmp.path().join("big.bin");
        write(&big_path, &vec![1u8; size])?;
        let before = fingerprint(&[&big_path], &[])?;
        let mut big = vec![1u8; size];
        big[(MIB + (size as u64 - 2 * MIB) / (WINDOWS + 1)) as usize] = 2;
        write(&big_path, &big)?;
        assert_ne!(fingerprint(&[&big_path], &[])?, before);
        Ok(())
    }
}
