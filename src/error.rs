//! The one error type of the library. Every variant names what the user must look at:
//! the file, the tensor, the config field or the option.

use std::path::{Path, PathBuf};

/// Result alias used across wenhui.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong in wenhui, phrased so the user knows what to fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A file was read but its content is unusable (truncated, wrong format, empty...).
    #[error("{path}: {msg}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        msg: String,
    },
    /// A checkpoint tensor is missing or has the wrong shape or dtype.
    #[error("{path}: tensor `{tensor}`: {msg}")]
    Tensor {
        /// The checkpoint file (or directory for sharded checkpoints).
        path: PathBuf,
        /// The parameter name.
        tensor: String,
        /// What is wrong.
        msg: String,
    },
    /// A config field is missing or invalid.
    #[error("{path}: config field `{field}`: {msg}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// The field.
        field: String,
        /// What is wrong.
        msg: String,
    },
    /// A tokenizer could not be built or used.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The caller passed inputs that do not fit the model (too long, wrong shapes, bad options).
    #[error("invalid input: {0}")]
    Input(String),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        let path = path.as_ref();
        // Making a directory where a file stands fails with a bare "File exists" / "Not a
        // directory": say what to change instead.
        let hint = match source.kind() {
            std::io::ErrorKind::AlreadyExists if path.is_file() => Some("is a file, where a directory is needed: give a directory path"),
            std::io::ErrorKind::NotADirectory => Some("a part of this path is a file, not a directory: give a directory path"),
            _ => None,
        };
        match hint {
            Some(msg) => Error::File { path: path.to_path_buf(), msg: format!("{msg} ({source})") },
            None => Error::Io { path: path.to_path_buf(), source },
        }
    }
    /// A content error in `path`.
    pub fn file(path: impl AsRef<Path>, msg: impl Into<String>) -> Self {
        Error::File { path: path.as_ref().to_path_buf(), msg: msg.into() }
    }
    /// A tensor error in checkpoint `path`.
    pub fn tensor(path: impl AsRef<Path>, tensor: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Tensor { path: path.as_ref().to_path_buf(), tensor: tensor.into(), msg: msg.into() }
    }
    /// A config error in `path`.
    pub fn config(path: impl AsRef<Path>, field: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Config { path: path.as_ref().to_path_buf(), field: field.into(), msg: msg.into() }
    }
    /// An invalid-input error.
    pub fn input(msg: impl Into<String>) -> Self {
        Error::Input(msg.into())
    }
}

/// Refuses to replace the output directory `out` when one of `inputs` is `out` or lies inside
/// it: replacing would delete what the command is about to read.
pub fn check_output_apart(out: &Path, inputs: &[&Path]) -> Result<()> {
    let Ok(out_abs) = out.canonicalize() else { return Ok(()) }; // nothing there yet: nothing to lose
    for input in inputs {
        if input.canonicalize().is_ok_and(|i| i.starts_with(&out_abs)) {
            return Err(Error::file(
                out,
                format!("holds the input {}: replacing the directory would delete it; write to another directory", input.display()),
            ));
        }
    }
    Ok(())
}

/// Refuses to write the file `out` (given with the flag `out_flag`) when it is one of `inputs`
/// (each with its flag) or lies inside an input directory: writing would replace what the
/// command reads. Paths are compared canonicalized; `out` need not exist yet.
pub fn check_not_input(out_flag: &str, out: &Path, inputs: &[(&str, &Path)]) -> Result<()> {
    let Some(out_abs) = canonical_target(out) else { return Ok(()) }; // its directory is missing: no input there
    for (flag, input) in inputs {
        let Ok(in_abs) = input.canonicalize() else { continue };
        if in_abs == out_abs {
            return Err(Error::input(format!(
                "{out_flag} {} is the {flag} file: writing there would replace it; choose another {out_flag}",
                out.display()
            )));
        }
        if in_abs.is_dir() && out_abs.starts_with(&in_abs) {
            return Err(Error::input(format!(
                "{out_flag} {} lies inside the {flag} directory {}: writing there could replace its data; choose an {out_flag} outside it",
                out.display(),
                input.display()
            )));
        }
    }
    Ok(())
}

/// `path` canonicalized, or (when it does not exist yet) its canonical directory joined with its
/// name; `None` when the directory does not exist either.
fn canonical_target(path: &Path) -> Option<PathBuf> {
    if let Ok(p) = path.canonicalize() {
        return Some(p);
    }
    let name = path.file_name()?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    parent.canonicalize().ok().map(|d| d.join(name))
}

/// Reads a whole file, naming it in the error.
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

/// Reads a UTF-8 text file (less a leading byte-order mark), naming it in the error.
pub fn read_text(path: &Path) -> Result<String> {
    let bytes = read_file(path)?;
    let mut text = String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        Error::file(path, format!("not valid UTF-8 (line {line}, first bad byte at offset {at})"))
    })?;
    // A byte-order mark (Windows editors write one) is no content: JSON parsers reject it.
    if text.starts_with('\u{feff}') {
        text.drain(..'\u{feff}'.len_utf8());
    }
    Ok(text)
}

/// The non-blank lines of a text file with their 1-based numbers, a leading byte-order mark and
/// each line's trailing `\r` dropped. A line that is not UTF-8 is an error naming `path:line`, so
/// one bad line of a large input is found at once.
pub fn read_lines(path: &Path) -> Result<Vec<(usize, String)>> {
    let bytes = read_file(path)?;
    let bytes = bytes.strip_prefix("\u{feff}".as_bytes()).unwrap_or(&bytes);
    let mut out = Vec::new();
    for (n, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let text = std::str::from_utf8(raw).map_err(|e| {
            Error::file(
                format!("{}:{}", path.display(), n + 1),
                format!("not valid UTF-8 (first bad byte at byte {} of the line); save the file as UTF-8", e.valid_up_to() + 1),
            )
        })?;
        if !text.trim().is_empty() {
            out.push((n + 1, text.to_string()));
        }
    }
    Ok(out)
}

/// One line of a JSON-lines file as a JSON value; the error gives the column only (serde's line
/// number is always 1 within the line) and says what each line must be.
pub fn parse_json_line(text: &str) -> std::result::Result<serde_json::Value, String> {
    serde_json::from_str(text).map_err(|e| {
        let what = e.to_string();
        let what = what.strip_suffix(&format!(" at line {} column {}", e.line(), e.column())).unwrap_or(&what).to_string();
        format!("not valid JSON at column {} ({what}); each line must be one JSON object", e.column())
    })
}

/// Reads a JSONL file into `T` per non-blank line; errors name the file and line.
pub fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let text = read_text(path)?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| Error::file(path, format!("line {}: {e}", i + 1))))
        .collect()
}

/// Writes a file atomically: to a temporary file beside it, then renamed over it, so a crash never leaves
/// a half-written file behind.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp{}", std::process::id()));
    let done = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    done.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

/// A setting's value as it would be typed on the command line, for messages that compare two
/// (`--steps 6 → 7`, `--template 3,3,3 there, 2,2,2 now`): strings bare, lists comma-joined,
/// null as `unset`.
pub fn value_as_typed(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "unset".into(),
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(a) => a.iter().map(value_as_typed).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// The names of the entries of directory `dir`, sorted (for a refusal that says what is there).
pub fn dir_names(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        names.push(entry.map_err(|e| Error::io(dir, e))?.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// The first five of `names`, comma-joined, then `and N more`.
pub fn first_names<S: AsRef<str>>(names: &[S]) -> String {
    let shown: Vec<&str> = names.iter().take(5).map(AsRef::as_ref).collect();
    let more = if names.len() > 5 { format!(" and {} more", names.len() - 5) } else { String::new() };
    format!("{}{more}", shown.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A byte-order mark is dropped; invalid UTF-8 is an error naming the file and offset.
    #[test]
    fn text_files_lose_their_byte_order_mark() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("a.jsonl");
        std::fs::write(&path, "\u{feff}{\"x\": 1}\r\n\n{\"x\": 2}\n")?;
        let rows: Vec<serde_json::Value> = read_jsonl(&path)?;
        assert_eq!(rows, [serde_json::json!({"x": 1}), serde_json::json!({"x": 2})]);
        std::fs::write(&path, b"ok\xff")?;
        let e = read_text(&path).unwrap_err().to_string();
        assert!(e.contains("a.jsonl") && e.contains("offset 2"), "{e}");
        Ok(())
    }
}
