//! The embedded default model: a small Chinese poetry GLM pretrained by wenhui itself
//! (`models/poetry-glm`, see its `MODEL_CARD.md`). Its files are compiled into the library, so
//! `wenhui poem` works from any directory with no download; on first use they are written to a cache
//! directory (`$WENHUI_CACHE`, else `$XDG_CACHE_HOME/wenhui`, else `~/.cache/wenhui`, else the temp
//! directory), atomically, under a name that changes whenever the files do.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The shipped files of the poetry GLM.
const POETRY_FILES: &[(&str, &[u8])] = &[
    ("config.json", include_bytes!("../models/poetry-glm/config.json")),
    ("model.safetensors", include_bytes!("../models/poetry-glm/model.safetensors")),
    ("tokenizer.json", include_bytes!("../models/poetry-glm/tokenizer.json")),
    ("wenhui_tokenizer.json", include_bytes!("../models/poetry-glm/wenhui_tokenizer.json")),
];

/// [`fingerprint`] of [`POETRY_FILES`], computed by the build script: hashing the 27 MB at run
/// time cost about 30 ms of every command's start.
const POETRY_FINGERPRINT: &str = env!("WENHUI_POETRY_FINGERPRINT");

/// FNV-1a over every file: names the cache directory, so a new build never reads stale weights.
#[cfg_attr(not(test), allow(dead_code))]
fn fingerprint(files: &[(&str, &[u8])]) -> u64 {
    use crate::model::{fnv1a, FNV_OFFSET};
    files.iter().fold(FNV_OFFSET, |h, (name, bytes)| fnv1a(fnv1a(h, name.as_bytes()), bytes))
}

fn cache_root() -> PathBuf {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    env("WENHUI_CACHE")
        .or_else(|| env("XDG_CACHE_HOME").map(|p| p.join("wenhui")))
        .or_else(|| env("HOME").map(|p| p.join(".cache/wenhui")))
        .unwrap_or_else(|| std::env::temp_dir().join("wenhui"))
}

/// Whether `dir` holds every file of `files` at its full size.
fn complete(dir: &Path, files: &[(&str, &[u8])]) -> bool {
    files.iter().all(|(n, b)| std::fs::metadata(dir.join(n)).is_ok_and(|m| m.len() == b.len() as u64))
}

/// Writes `files` into `dir` unless it already holds them: into a temporary sibling private to
/// this call (threads and processes may unpack at the same time), then renamed into place. A
/// leftover incomplete `dir` (an interrupted write) is replaced rather than trusted.
fn materialize(dir: &Path, files: &[(&str, &[u8])]) -> Result<()> {
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    if complete(dir, files) {
        return Ok(());
    }
    let parent = dir.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = dir.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    let tmp = parent.join(format!(".{name}.tmp{}-{call}", std::process::id()));
    // Only a crashed process with the same id can have left this name behind.
    let _ = std::fs::remove_dir_all(&tmp);
    let written = std::fs::create_dir(&tmp)
        .map_err(|e| Error::io(&tmp, e))
        .and_then(|()| files.iter().try_for_each(|(n, bytes)| std::fs::write(tmp.join(n), bytes).map_err(|e| Error::io(tmp.join(n), e))));
    let result = written.and_then(|()| {
        for attempt in 0..2 {
            match std::fs::rename(&tmp, dir) {
                Ok(()) => return Ok(()),
                // Another thread or process won the race: its copy is identical.
                Err(_) if complete(dir, files) => return Ok(()),
                // An incomplete leftover blocks the rename: remove it once and try again.
                Err(_) if attempt == 0 && dir.is_dir() => {
                    let _ = std::fs::remove_dir_all(dir);
                }
                Err(e) => return Err(Error::io(dir, e)),
            }
        }
        Err(Error::io(dir, std::io::Error::other("could not replace an incomplete copy")))
    });
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

/// The directory of the embedded poetry GLM (written on first use).
pub fn poetry_model_dir() -> Result<PathBuf> {
    let dir = cache_root().join(format!("poetry-glm-{POETRY_FINGERPRINT}"));
    materialize(&dir, POETRY_FILES).map_err(|e| {
        Error::input(format!(
            "could not unpack the embedded poetry model ({e}); set WENHUI_CACHE to a writable directory or pass --model DIR"
        ))
    })?;
    Ok(dir)
}

/// The judge GLM of `wenhui eval poems` (not embedded: only evaluation needs it):
/// `models/poetry-judge` under the current directory when there is one (a checkout, or a binary
/// carried to another machine and run from its copy of the repository), else in the source tree
/// the binary was built from.
pub fn poetry_judge_dir() -> PathBuf {
    let here = PathBuf::from("models/poetry-judge");
    if here.join("config.json").is_file() {
        return here;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/poetry-judge")
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn unpacks_once_and_matches_the_sources() -> TestResult {
        let root = std::env::temp_dir().join(format!("wenhui-embed-{}", std::process::id()));
        let dir = root.join("m");
        let files: &[(&str, &[u8])] = &[("a.txt", b"alpha"), ("b.bin", &[1, 2, 3])];
        materialize(&dir, files)?;
        materialize(&dir, files)?;
        assert_eq!(std::fs::read(dir.join("a.txt"))?, b"alpha");
        assert_eq!(std::fs::read(dir.join("b.bin"))?, vec![1, 2, 3]);
        assert_ne!(fingerprint(files), fingerprint(&files[..1]));
        std::fs::remove_dir_all(&root)?;
        Ok(())
    }

    #[test]
    fn the_build_scripts_fingerprint_is_that_of_the_embedded_files() {
        assert_eq!(POETRY_FINGERPRINT, format!("{:016x}", fingerprint(POETRY_FILES)));
    }

    #[test]
    fn concurrent_unpacking_and_an_interrupted_copy_end_complete() -> TestResult {
        let root = std::env::temp_dir().join(format!("wenhui-embed-race-{}", std::process::id()));
        let dir = root.join("m");
        let big = vec![7u8; 1 << 20];
        let files: &[(&str, &[u8])] = &[("config.json", b"{}"), ("model.bin", &big), ("tok.json", b"[]")];
        // Eight threads at once (as the tests of one binary do on a fresh cache).
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..8).map(|_| s.spawn(|| materialize(&dir, files))).collect();
            handles.into_iter().try_for_each(|h| h.join().expect("thread panicked"))
        })?;
        assert!(complete(&dir, files));
        assert_eq!(std::fs::read(dir.join("model.bin"))?, big);
        // An interrupted earlier write left a partial copy: it is replaced, not trusted.
        std::fs::remove_file(dir.join("config.json"))?;
        std::fs::write(dir.join("model.bin"), b"short")?;
        materialize(&dir, files)?;
        assert!(complete(&dir, files));
        assert_eq!(std::fs::read(dir.join("config.json"))?, b"{}");
        let leftovers: Vec<_> = std::fs::read_dir(&root)?.filter_map(|e| e.ok()).filter(|e| e.file_name() != "m").collect();
        assert!(leftovers.is_empty(), "temporary copies left behind: {leftovers:?}");
        std::fs::remove_dir_all(&root)?;
        Ok(())
    }
}
