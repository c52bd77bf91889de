//! The Cargo examples (`examples/*.rs`) run and print what they promise: a poem of the requested
//! form, a filled text, label probabilities that sum to 1, a P-tuning loss that goes down.
//!
//! `cargo test` builds the examples, `cargo test --test examples` alone does not, so they are
//! first brought up to date with `cargo build --examples` (a no-op when they are), whose build
//! messages name each executable. Release only (`cargo test --release --test examples`): each
//! example then takes seconds.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use wenhui::generate::poetry::is_cjk;

/// Each example's executable, by name, after building them for this test binary's profile.
/// The paths come from cargo's own build messages, so a target triple or directory set in the
/// environment cannot lead the test to the wrong folder.
fn examples() -> &'static std::result::Result<HashMap<String, PathBuf>, String> {
    static PATHS: OnceLock<std::result::Result<HashMap<String, PathBuf>, String>> = OnceLock::new();
    PATHS.get_or_init(|| {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        // target/[triple/]<profile>/deps/examples-<hash>
        let profile_dir = exe.parent().and_then(|deps| deps.parent()).ok_or("no profile directory")?;
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => "dev",
            Some(other) => other,
            None => return Err("no profile name".into()),
        };
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "--examples", "--message-format=json-render-diagnostics", "--profile", profile]);
        // The target directory this test was built in (cargo marks its root with CACHEDIR.TAG),
        // so that a `--target-dir` given to `cargo test` is used here too.
        if let Some(root) = profile_dir.ancestors().find(|d| d.join("CACHEDIR.TAG").is_file()) {
            cmd.arg("--target-dir").arg(root);
        }
        if cfg!(feature = "cuda") {
            cmd.arg("--features=cuda");
        }
        let out = cmd.current_dir(env!("CARGO_MANIFEST_DIR")).output().map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!("cargo build --examples failed:\n{}", String::from_utf8_lossy(&out.stderr)));
        }
        let mut paths = HashMap::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else { continue };
            let is_example = msg["target"]["kind"].as_array().is_some_and(|k| k.iter().any(|k| k == "example"));
            if let (true, Some(name), Some(exe)) = (is_example, msg["target"]["name"].as_str(), msg["executable"].as_str()) {
                paths.insert(name.to_string(), PathBuf::from(exe));
            }
        }
        Ok(paths)
    })
}

/// Runs example `name` with `args` (one at a time: each uses every core), returning its stdout.
fn run(name: &str, args: &[&str]) -> String {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let exe = examples().as_ref().unwrap_or_else(|e| panic!("{e}")).get(name).unwrap_or_else(|| panic!("cargo built no example {name}"));
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let t = Instant::now();
    let out = Command::new(exe).args(args).output().unwrap_or_else(|e| panic!("running example {name}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("example {name} {args:?}: {:.1} s\n{stdout}", t.elapsed().as_secs_f64());
    assert!(out.status.success(), "example {name} failed ({}):\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    stdout
}

#[test]
#[cfg_attr(debug_assertions, ignore = "runs the embedded model: run with --release")]
fn poem_has_the_requested_form() {
    let out = run("poem", &["--title", "秋夜", "--form", "五绝", "--seed", "2"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.first(), Some(&"《秋夜》"));
    let poem: Vec<&str> = lines.iter().skip(1).take_while(|l| !l.starts_with('[')).copied().collect();
    assert_eq!(poem.len(), 4, "a 五绝 has four lines: {poem:?}");
    for (k, line) in poem.iter().enumerate() {
        assert_eq!(line.chars().filter(|&c| is_cjk(c)).count(), 5, "line {line}: five characters");
        assert!(line.ends_with(if k % 2 == 0 { '，' } else { '。' }), "line {line}: end punctuation");
    }
    let summary = lines.last().copied().unwrap_or_default();
    assert!(summary.contains("score -") && summary.contains("rules ok"), "summary: {summary}");
}

#[test]
#[cfg_attr(debug_assertions, ignore = "runs the embedded model: run with --release")]
fn fill_replaces_the_blank() {
    let out = run("fill", &[]);
    let text = out.lines().next().unwrap_or_default();
    assert!(!text.contains("MASK"), "a blank is left: {text}");
    let (before, after) = ("白日依山尽，", "。欲穷千里目，更上一层楼。");
    let fill = text.split_once(before).and_then(|(_, rest)| rest.strip_suffix(after));
    assert!(fill.is_some_and(|f| f.chars().any(is_cjk)), "the blank's surroundings changed or it is empty: {text}");
    assert!(out.contains("blank 1: "), "{out}");
}

/// `(label, probability)` rows of the classify example's table, and the starred label.
fn label_rows(out: &str) -> (Vec<(String, f64)>, String) {
    let mut best = String::new();
    let rows = out
        .lines()
        .filter_map(|l| {
            let (head, rest) = l.split_once("  p ")?;
            let label = head.trim_start_matches(['*', ' ']).trim().to_string();
            if head.starts_with('*') {
                best.clone_from(&label);
            }
            Some((label, rest.split_whitespace().next()?.parse().ok()?))
        })
        .collect();
    (rows, best)
}

#[test]
#[cfg_attr(debug_assertions, ignore = "runs the embedded model: run with --release")]
fn classify_gives_a_distribution_over_the_labels() {
    for (poem, form) in [(None, "七绝"), (Some("空山不见人，但闻人语响。返景入深林，复照青苔上。"), "五绝")] {
        let out = run("classify", poem.as_slice());
        let (rows, best) = label_rows(&out);
        let labels: Vec<&str> = rows.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(labels, ["五绝", "七绝", "五律", "七律"], "{out}");
        let sum: f64 = rows.iter().map(|(_, p)| p).sum();
        assert!((sum - 1.0).abs() < 1e-3, "probabilities sum to {sum}");
        assert_eq!(best, form, "{out}");
    }
}

#[test]
#[cfg_attr(debug_assertions, ignore = "runs the embedded model: run with --release")]
fn ptune_lowers_the_training_loss() {
    let out = run("ptune", &["--steps", "8"]);
    let losses: Vec<f64> = out.lines().filter_map(|l| l.strip_prefix("step ")?.split_once("loss ")?.1.trim().parse().ok()).collect();
    assert_eq!(losses.len(), 8, "{out}");
    assert!(losses.iter().all(|l| l.is_finite() && *l >= 0.0), "{losses:?}");
    assert!(losses[7] < losses[0] / 2.0, "the loss did not go down: {losses:?}");
    assert!(out.contains("held-out before: accuracy") && out.contains("held-out after:  accuracy"), "{out}");
}
