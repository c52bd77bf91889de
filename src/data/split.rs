//! Deterministic train / held-out splits of line-oriented files (JSONL or one document per line).
//!
//! Every non-blank line is assigned to exactly one named part (in a `.jsonl` file, each must be a JSON
//! value; any file must be UTF-8). Lines are shuffled with a seeded ChaCha
//! permutation, the parts take consecutive runs of it sized by their fractions, and each part keeps the
//! input's original line order, so the same seed always gives byte-identical files.

use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::error::{read_text, write_atomic, Error, Result};

/// One named part of a split and its share of the lines.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitPart {
    /// File stem of the part (`OUT/{name}.jsonl`); letters, digits, `-` and `_`.
    pub name: String,
    /// Share of the lines, in (0, 1]; the shares of all parts sum to 1.
    pub fraction: f64,
}

impl SplitPart {
    /// Parses `"heldout=0.05,train=0.95"`.
    pub fn parse_list(spec: &str) -> Result<Vec<SplitPart>> {
        let parts = spec
            .split(',')
            .map(|item| {
                let (name, frac) = item
                    .split_once('=')
                    .ok_or_else(|| Error::input(format!("split part `{item}` must look like NAME=FRACTION, e.g. heldout=0.05")))?;
                let fraction =
                    frac.trim().parse::<f64>().map_err(|_| Error::input(format!("split part `{item}`: `{frac}` is not a number")))?;
                Ok(SplitPart { name: name.trim().to_string(), fraction })
            })
            .collect::<Result<Vec<_>>>()?;
        validate(&parts)?;
        Ok(parts)
    }
}

fn validate(parts: &[SplitPart]) -> Result<()> {
    if parts.is_empty() {
        return Err(Error::input("a split needs at least one part"));
    }
    for (i, p) in parts.iter().enumerate() {
        if p.name.is_empty() || !p.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(Error::input(format!("split part name `{}` must be letters, digits, `-` or `_`", p.name)));
        }
        if parts[..i].iter().any(|q| q.name == p.name) {
            return Err(Error::input(format!("split part `{}` is named twice", p.name)));
        }
        if !(p.fraction > 0.0 && p.fraction <= 1.0) {
            return Err(Error::input(format!("split part `{}`: fraction {} must be in (0, 1]", p.name, p.fraction)));
        }
    }
    let sum: f64 = parts.iter().map(|p| p.fraction).sum();
    if (sum - 1.0).abs() > 1e-6 {
        return Err(Error::input(format!("split fractions sum to {sum}, not 1")));
    }
    Ok(())
}

/// What [`split_lines`] wrote.
#[derive(Debug, Clone, Serialize)]
pub struct SplitReport {
    /// Non-blank lines read.
    pub lines: usize,
    /// `(name, file, lines)` per part, in the order given.
    pub parts: Vec<(String, PathBuf, usize)>,
}

/// How many of `n` lines each part gets: floor of the share, the remainder to the largest fractional parts
/// (ties to the earlier part), so the counts always sum to `n`.
pub fn part_sizes(n: usize, parts: &[SplitPart]) -> Vec<usize> {
    let exact: Vec<f64> = parts.iter().map(|p| p.fraction * n as f64).collect();
    let mut sizes: Vec<usize> = exact.iter().map(|x| x.floor() as usize).collect();
    let mut order: Vec<usize> = (0..parts.len()).collect();
    order.sort_by(|&a, &b| (exact[b] - exact[b].floor()).total_cmp(&(exact[a] - exact[a].floor())).then(a.cmp(&b)));
    let mut left = n.saturating_sub(sizes.iter().sum());
    for &i in order.iter().cycle() {
        if left == 0 {
            break;
        }
        sizes[i] += 1;
        left -= 1;
    }
    sizes
}

/// Splits the non-blank lines of `input` into `out_dir/{part}.{ext}` (the input's extension; no extension if
/// it has none). Lines are copied byte for byte; JSONL parts hold one line per record, text parts separate
/// lines by a blank line so `data prepare` (which reads text as blank-line blocks) reads each line back as one
/// document. Files are written atomically; the part names go to [`SPLIT_MANIFEST`], and the parts an earlier
/// split listed there but this one does not write are removed (with `overwrite`; refused otherwise). A part file that
/// exists with other content is replaced only with `overwrite` (the same content, as a rerun with
/// the same seed writes, is fine), and a part file is never the input itself.
pub fn split_lines(input: &Path, parts: &[SplitPart], seed: u64, out_dir: &Path, overwrite: bool) -> Result<SplitReport> {
    validate(parts)?;
    let text = read_text(input)?;
    let lines: Vec<&[u8]> =
        text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).filter(|l| !l.trim().is_empty()).map(str::as_bytes).collect();
    if lines.is_empty() {
        return Err(Error::file(input, "has no non-blank lines to split"));
    }
    let ext = input.extension().and_then(|e| e.to_str()).unwrap_or("");
    let json = matches!(ext.to_ascii_lowercase().as_str(), "jsonl" | "json" | "ndjson");
    if json {
        check_json_lines(input, &text)?;
    }
    // Text parts separate their lines by a blank line: `data prepare` reads text as blank-line blocks, so
    // each line comes back as the same one document.
    let sep: &[u8] = if json { b"\n" } else { b"\n\n" };
    let mut order: Vec<usize> = (0..lines.len()).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    let mut report = SplitReport { lines: lines.len(), parts: vec![] };
    let mut start = 0;
    let mut files = Vec::with_capacity(parts.len());
    let sizes = part_sizes(lines.len(), parts);
    // A share too small for one line still gets its (empty) file, so that the parts stay the
    // ones asked for; but an empty held-out set must not pass unnoticed.
    for (part, _) in parts.iter().zip(&sizes).filter(|(_, n)| **n == 0) {
        tracing::warn!(
            "split part `{}` is empty: {} of {} lines rounds to none (raise its share, or split a larger file)",
            part.name,
            part.fraction,
            lines.len()
        );
    }
    for (part, size) in parts.iter().zip(sizes) {
        let mut ids = order[start..start + size].to_vec();
        start += size;
        ids.sort_unstable();
        let mut out = Vec::with_capacity(ids.iter().map(|&i| lines[i].len() + sep.len()).sum());
        for i in ids {
            out.extend_from_slice(lines[i]);
            out.extend_from_slice(sep);
        }
        let path = out_dir.join(part_file_name(&part.name, ext));
        // Checked for every part before any is written.
        if path.canonicalize().is_ok_and(|p| input.canonicalize().is_ok_and(|i| i == p)) {
            return Err(Error::file(&path, "is the input being split: write the parts to another directory"));
        }
        if !overwrite && path.exists() && std::fs::read(&path).map_or(true, |old| old != out) {
            return Err(Error::file(&path, "already exists with other content; pass --overwrite to replace it, or choose another -o"));
        }
        files.push((part.name.clone(), path, size, out));
    }
    let written: Vec<String> = files.iter().map(|f| part_file_name(&f.0, ext)).collect();
    let stale = earlier_parts(input, out_dir, ext, &written)?;
    if !stale.is_empty() && !overwrite {
        return Err(Error::file(
            out_dir,
            format!(
                "holds part files of an earlier split that this split does not write ({}); `data prepare` on the \
                 directory would read them too. Pass --overwrite to remove them, or choose another -o",
                stale.join(", ")
            ),
        ));
    }
    for (name, path, size, out) in files {
        write_atomic(&path, &out)?;
        report.parts.push((name, path, size));
    }
    for name in &stale {
        let p = out_dir.join(name);
        std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
    }
    let manifest = serde_json::json!({ "input": input.display().to_string(), "seed": seed, "parts": written });
    write_atomic(&out_dir.join(SPLIT_MANIFEST), manifest.to_string().as_bytes())?;
    Ok(report)
}

/// Hidden file in the output directory listing the part files a split wrote, so that a later split
/// (with other part names) removes them rather than leaving them beside its own parts.
pub const SPLIT_MANIFEST: &str = ".wenhui-split.json";

/// `NAME.EXT`, or `NAME` for an input without extension.
fn part_file_name(name: &str, ext: &str) -> String {
    if ext.is_empty() {
        name.to_string()
    } else {
        format!("{name}.{ext}")
    }
}

/// Part files of an earlier split in `out_dir` that this one (writing `written`) does not replace: the ones
/// its manifest lists. Errors naming other files of the same extension (not the input), which `data prepare`
/// on the directory would read with the new parts.
fn earlier_parts(input: &Path, out_dir: &Path, ext: &str, written: &[String]) -> Result<Vec<String>> {
    let manifest = out_dir.join(SPLIT_MANIFEST);
    let listed: Vec<String> = match std::fs::read_to_string(&manifest) {
        Ok(text) => serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("parts").and_then(|p| p.as_array()).cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        Err(_) => Vec::new(),
    };
    let input = input.canonicalize().ok();
    let (mut stale, mut strays) = (Vec::new(), Vec::new());
    for entry in std::fs::read_dir(out_dir).map_err(|e| Error::io(out_dir, e))? {
        let entry = entry.map_err(|e| Error::io(out_dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let same_ext = path.extension().and_then(|e| e.to_str()).unwrap_or("") == ext;
        if name.starts_with('.') || !path.is_file() || written.contains(&name) {
            continue;
        }
        if listed.contains(&name) {
            stale.push(name);
        } else if same_ext && path.canonicalize().ok() != input {
            strays.push(name);
        }
    }
    stale.sort();
    strays.sort();
    if !strays.is_empty() {
        return Err(Error::file(
            out_dir,
            format!(
                "already holds other {} files not written by a wenhui split ({}); `data prepare` on the directory \
                 would read them with the new parts. Move them away, or choose another -o",
                if ext.is_empty() { "extension-less".to_string() } else { format!(".{ext}") },
                strays.join(", ")
            ),
        ));
    }
    Ok(stale)
}

/// Every non-blank line of a JSONL file is one JSON value: a damaged record is named before any
/// part is written, rather than copied into one of them.
fn check_json_lines(input: &Path, text: &str) -> Result<()> {
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(line) {
            return Err(Error::file(input, format!("line {}: not a JSON record ({e}); a JSONL file holds one JSON value per line", i + 1)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn sizes_sum_to_total() -> TestResult {
        let parts = SplitPart::parse_list("heldout=0.05,generator=0.475,judge=0.475")?;
        for n in [1, 7, 100, 36487] {
            let s = part_sizes(n, &parts);
            assert_eq!(s.iter().sum::<usize>(), n);
        }
        assert_eq!(part_sizes(100, &parts), vec![5, 48, 47]);
        Ok(())
    }

    #[test]
    fn bad_specs_are_errors() {
        for bad in ["", "a", "a=x", "a=0.5", "a=0.5,a=0.5", "a b=1", "a=0,b=1", "a=1.5,b=-0.5"] {
            assert!(SplitPart::parse_list(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn split_is_deterministic_and_complete() -> TestResult {
        let dir = std::env::temp_dir().join(format!("wenhui-split-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let input = dir.join("in.jsonl");
        let text: String = (0..50).map(|i| format!("{{\"i\":{i}}}\n\n")).collect();
        std::fs::write(&input, text)?;
        let parts = SplitPart::parse_list("a=0.2,b=0.8")?;
        let r1 = split_lines(&input, &parts, 7, &dir.join("one"), false)?;
        let r2 = split_lines(&input, &parts, 7, &dir.join("two"), false)?;
        assert_eq!(r1.lines, 50);
        let read = |p: &Path| std::fs::read_to_string(p);
        let (a, b) = (read(&r1.parts[0].1)?, read(&r1.parts[1].1)?);
        assert_eq!(a.lines().count(), 10);
        assert_eq!(b.lines().count(), 40);
        assert_eq!(a, read(&r2.parts[0].1)?);
        let mut all: Vec<&str> = a.lines().chain(b.lines()).collect();
        all.sort_by_key(|l| l[5..l.len() - 1].parse::<u32>().ok());
        assert_eq!(all.len(), 50);
        assert!(all.iter().enumerate().all(|(i, l)| *l == format!("{{\"i\":{i}}}")));
        // A rerun writes the same files; another seed would replace them: only with `overwrite`.
        split_lines(&input, &parts, 7, &dir.join("one"), false)?;
        let e = split_lines(&input, &parts, 8, &dir.join("one"), false).err().ok_or("another seed replaced the parts")?;
        assert!(e.to_string().contains("--overwrite"), "{e}");
        assert_eq!(a, read(&r1.parts[0].1)?);
        split_lines(&input, &parts, 8, &dir.join("one"), true)?;
        // A damaged JSONL record, or bytes that are not UTF-8, are named; nothing is written.
        let bad = dir.join("bad.jsonl");
        std::fs::write(&bad, "{\"i\":1}\n{\"i\":2\n")?;
        let e = split_lines(&bad, &parts, 7, &dir.join("bad"), false).err().ok_or("a damaged record was split")?;
        assert!(e.to_string().contains("line 2") && e.to_string().contains("bad.jsonl"), "{e}");
        assert!(!dir.join("bad").exists());
        std::fs::write(&bad, b"{\"i\":1}\n\xff\n")?;
        let e = split_lines(&bad, &parts, 7, &dir.join("bad"), false).err().ok_or("invalid UTF-8 was split")?;
        assert!(e.to_string().contains("UTF-8"), "{e}");
        // Never over the input itself.
        let own = SplitPart::parse_list("in=0.5,x=0.5")?;
        let e = split_lines(&input, &own, 7, &dir, true).err().ok_or("the input was overwritten")?;
        assert!(e.to_string().contains("is the input"), "{e}");
        assert_eq!(read(&input)?.lines().filter(|l| !l.is_empty()).count(), 50);
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
