//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod pretrain_corpus;
pub mod ptune_toy;
pub mod seq2seq_toy;

use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::PathBuf;

/// The fixture folder: `$VAR` when set, else `tests/fixtures/<default>`.
pub fn fixture_dir(var: &str, default: &str) -> PathBuf {
    match std::env::var(var) {
        Ok(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(default),
    }
}

/// All tensors of a safetensors file.
pub fn tensors(path: &std::path::Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(path, &Device::Cpu).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Max |a - b| over all elements; NaN when any difference is NaN ([`wenhui::ops::max_abs_diff`]).
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shape mismatch");
    wenhui::ops::max_abs_diff(a, b).unwrap() as f32
}

/// Asserts `max |a - b| ≤ tol`, naming `what` on failure.
pub fn assert_close(what: &str, a: &Tensor, b: &Tensor, tol: f32) {
    let d = max_abs_diff(a, b);
    if std::env::var_os("WENHUI_REPORT").is_some() {
        eprintln!("{what}: max abs error {d:e}");
    }
    assert!(d <= tol, "{what}: max abs error {d:e} > {tol:e}");
}

/// i64 tensor → u32.
pub fn u32s(t: &Tensor) -> Tensor {
    t.to_dtype(DType::U32).unwrap()
}

/// i64 tensor → Vec<usize>.
pub fn usizes(t: &Tensor) -> Vec<usize> {
    t.to_dtype(DType::I64).unwrap().flatten_all().unwrap().to_vec1::<i64>().unwrap().into_iter().map(|v| v as usize).collect()
}

/// The FewGLUE folder (`$WENHUI_FEWGLUE`, else `../shared/data/fewglue`), or `None` with a note
/// when it is absent (tests then skip their real-data part).
pub fn fewglue_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("WENHUI_FEWGLUE").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("../shared/data/fewglue"));
    if dir.join("FewGLUE_32dev").is_dir() {
        Some(dir)
    } else {
        eprintln!("note: {} not found (set WENHUI_FEWGLUE); skipping the real-data part", dir.display());
        None
    }
}

/// Runs the `wenhui` binary of this build with `args`.
pub fn wenhui(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_wenhui")).args(args).output().expect("the wenhui binary runs")
}

/// A command's stderr as text.
pub fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A command's stdout as text.
pub fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Starts the `wenhui` binary with `args` (a training command writing its metrics into `run`,
/// stdout and stderr piped) and returns it once a training step's loss is logged there, so that a
/// signal sent next reaches a run under way (at most 2 minutes).
pub fn spawn_until_a_step(args: &[&str], run: &std::path::Path) -> std::process::Child {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_wenhui"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the wenhui binary starts");
    let t0 = std::time::Instant::now();
    while !std::fs::read_to_string(run.join("metrics.jsonl")).is_ok_and(|l| l.contains("\"loss\"")) {
        assert!(t0.elapsed().as_secs() < 120, "no step logged within 2 minutes");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child
}

/// The character set of the cloze tests' character vocabulary.
pub const CLOZE_CHARS: &str = "abcdefghijklmnopqrstuvwxyz.,!?:'*-ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// The cloze tests' single-token toy task: two fields, three labels, one with two words.
pub const SINGLE_TASK: &str = r#"
name = "toy"
fields = ["a", "b"]
template = "[P*2] {a} q {b} ? [P] [MASK] ."
[[verbalizer]]
label = "no"
words = ["n"]
[[verbalizer]]
label = "yes"
words = ["y"]
[[verbalizer]]
label = "maybe"
words = ["m", "p"]
"#;

/// A cloze task whose answers are field values (`answer = "multi"`), with a short `max_seq_length`.
pub const LONG_TASK: &str = r#"
name = "long"
fields = ["premise", "c1", "c2"]
template = "{premise} ? [MASK] ."
answer = "multi"
[[verbalizer]]
label = "0"
words = ["{c1}"]
[[verbalizer]]
label = "1"
words = ["{c2}"]
[train]
max_seq_length = 20
"#;
