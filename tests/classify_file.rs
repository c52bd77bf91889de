//! `wenhui classify --input FILE.jsonl`: a whole file with one model load, on the tiny GLM fixture
//! and a character tokenizer (the setup of `tests/cloze.rs`'s CLI test): the same predictions as
//! the single-example command, in input order, with the right line numbers; bad lines, an
//! existing output and conflicting arguments refused, with nothing written.

mod common;
use common::{stderr, stdout, wenhui, CLOZE_CHARS, LONG_TASK, SINGLE_TASK};

use std::path::{Path, PathBuf};

use serde_json::Value;

/// A temporary folder with the character vocabulary, the toy task and the built-in MultiRC task
/// with one-letter words (as `tests/cloze_audit.rs`).
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("chars.txt"), CLOZE_CHARS.chars().map(|c| format!("{c}\n")).collect::<String>()).unwrap();
        std::fs::write(dir.path().join("toy.toml"), SINGLE_TASK).unwrap();
        let mrc = include_str!("../assets/cloze/multirc.toml")
            .replace(r#"words = ["No"]"#, r#"words = ["n"]"#)
            .replace(r#"words = ["Yes"]"#, r#"words = ["y"]"#);
        std::fs::write(dir.path().join("mrc.toml"), mrc).unwrap();
        Setup { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `wenhui classify --task TASK --model glm-tiny --tokenizer chars.txt` + `extra`.
    fn classify(&self, task: &str, extra: &[&str]) -> std::process::Output {
        let task = self.path(task);
        let chars = self.path("chars.txt");
        let mut args = vec![
            "classify",
            "--task",
            task.to_str().unwrap(),
            "--model",
            "tests/fixtures/glm-tiny",
            "--tokenizer",
            chars.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        wenhui(&args)
    }

    /// Writes `text` to `name` in the folder and returns its path as a string.
    fn file(&self, name: &str, text: impl AsRef<[u8]>) -> String {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    }
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}"))).collect()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

/// Asserts that a file row and a single-example prediction agree: label, labels, fields, and
/// probabilities and scores within 1e-6.
fn assert_same(row: &Value, single: &Value, what: &str) {
    for key in ["best", "labels", "fields"] {
        assert_eq!(row[key], single[key], "{what}: `{key}` differs");
    }
    for key in ["probs", "scores"] {
        let (a, b) = (floats(&row[key]), floats(&single[key]));
        assert_eq!(a.len(), b.len(), "{what}: {key}");
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-6, "{what}: {key} {a:?} vs {b:?}");
        }
    }
}

const LINES: [&str; 4] = [
    r#"{"a": "the cat sat", "b": "is it"}"#,
    r#"{"a": "a dog ran far", "b": "did it run", "label": "yes"}"#,
    r#"{"a": "zebras eat grass", "b": "do they"}"#,
    r#"{"a": "it rained all day", "b": "wet", "label": "no"}"#,
];

#[test]
fn a_file_gives_the_single_example_predictions_in_input_order() {
    let s = Setup::new();
    // An empty line and a blank one in the middle: line numbers are the file's.
    let input = s.file("in.jsonl", format!("{}\n\n{}\n   \n{}\n{}\n", LINES[0], LINES[1], LINES[2], LINES[3]));
    let line_numbers = [1, 3, 5, 6];
    let out = s.classify("toy.toml", &["--input", &input, "--batch-size", "3"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = json_lines(&stdout(&out));
    assert_eq!(rows.len(), 4, "{}", stdout(&out));
    for (i, (row, line)) in rows.iter().zip(LINES).enumerate() {
        assert_eq!(row["line"], line_numbers[i], "row {i}");
        let single = s.classify("toy.toml", &["--json", line]);
        assert!(single.status.success(), "{}", stderr(&single));
        let v: Value = serde_json::from_str(&stdout(&single)).unwrap();
        assert_same(row, &v["predictions"][0], &format!("line {}", line_numbers[i]));
        let labelled = serde_json::from_str::<Value>(line).unwrap().get("label").is_some();
        assert_eq!(row.get("gold").is_some(), labelled, "row {i}: gold only for labelled lines");
    }
    assert_eq!(rows[1]["gold"], "yes");
    assert_eq!(rows[3]["gold"], "no");
    let correct = [&rows[1], &rows[3]].iter().filter(|r| r["gold"] == r["best"]).count();
    let err = stderr(&out);
    assert!(err.contains(&format!("({correct} of 2 labelled examples")), "{err}");

    // Batched one at a time, or all at once: the same numbers; --output holds what stdout held.
    let preds = s.path("preds.jsonl");
    let written = s.classify("toy.toml", &["--input", &input, "--batch-size", "1", "--output", preds.to_str().unwrap()]);
    assert!(written.status.success(), "{}", stderr(&written));
    assert!(stdout(&written).is_empty(), "with --output nothing goes to stdout: {}", stdout(&written));
    let again = json_lines(&std::fs::read_to_string(&preds).unwrap());
    assert_eq!(again.len(), rows.len());
    for (a, b) in again.iter().zip(&rows) {
        assert_eq!(a["line"], b["line"]);
        assert_same(a, b, "--batch-size 1 vs 3");
    }
}

#[test]
fn a_multirc_line_gives_one_row_per_answer_option() {
    let s = Setup::new();
    let line = r#"{"idx": 0, "passage": {"text": "The sky is blue.", "questions": [{"question": "What color is it?", "idx": 0, "answers": [{"text": "blue", "idx": 0, "label": 1}, {"text": "red", "idx": 1, "label": 0}]}]}}"#;
    let fields = r#"{"passage": "The sky is blue.", "question": "Is it?", "answer": "yes"}"#;
    let input = s.file("mrc.jsonl", format!("{fields}\n{line}\n"));
    let out = s.classify("mrc.toml", &["--input", &input]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = json_lines(&stdout(&out));
    assert_eq!(rows.iter().map(|r| r["line"].as_u64().unwrap()).collect::<Vec<_>>(), vec![1, 2, 2]);
    assert_eq!(rows[1]["fields"]["answer"], "blue");
    assert_eq!(rows[2]["fields"]["answer"], "red");
    assert_eq!((rows[1]["gold"].as_str(), rows[2]["gold"].as_str()), (Some("1"), Some("0")));
    let single = s.classify("mrc.toml", &["--json", line]);
    assert!(single.status.success(), "{}", stderr(&single));
    let v: Value = serde_json::from_str(&stdout(&single)).unwrap();
    for k in 0..2 {
        assert_same(&rows[1 + k], &v["predictions"][k], &format!("answer option {k}"));
    }
}

/// Runs `--input` on `text` with `--output`; asserts failure naming `want`, and no output file.
fn refused(s: &Setup, text: impl AsRef<[u8]>, want: &[&str]) {
    let input = s.file("bad.jsonl", text);
    let preds = s.path("bad-preds.jsonl");
    let out = s.classify("toy.toml", &["--input", &input, "--output", preds.to_str().unwrap()]);
    let err = stderr(&out);
    assert!(!out.status.success(), "accepted: {err}");
    for w in want {
        assert!(err.contains(&w.replace("FILE", &input)), "`{w}` missing from: {err}");
    }
    assert!(!preds.exists(), "an output file was written: {err}");
    assert!(stdout(&out).is_empty());
    let leftovers: Vec<_> = std::fs::read_dir(s.dir.path()).unwrap().filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
    assert!(!leftovers.iter().any(|n| n.to_string_lossy().contains("bad-preds")), "{leftovers:?}");
}

#[test]
fn a_bad_line_names_file_and_line_and_writes_nothing() {
    let s = Setup::new();
    let good = LINES[0];
    refused(&s, format!("{good}\n\n{{\"a\": \"x\", \"b\": \n"), &["FILE:3:", "not valid JSON"]);
    refused(&s, format!("{good}\n{{\"a\": \"only a\"}}\n"), &["FILE:2:", "lacks the field(s) `b`"]);
    refused(&s, format!("{good}\n[1, 2]\n"), &["FILE:2:", "JSON object"]);
    refused(&s, format!("{good}\n{{\"a\": \"  \", \"b\": \"x\"}}\n"), &["FILE:2:", "field `a` is empty"]);
    let mut bytes = format!("{good}\n{good}\n").into_bytes();
    bytes.extend_from_slice(b"{\"a\": \"caf\xe9\", \"b\": \"x\"}\n");
    refused(&s, bytes, &["FILE:3:", "not valid UTF-8"]);
    // Plain text is not a JSON line, even for a task with one field.
    refused(&s, format!("{good}\nthe cat sat\n"), &["FILE:2:", "not valid JSON"]);
    refused(&s, "", &["FILE: no example to classify"]);
    refused(&s, "\n  \n\n", &["FILE: no example to classify"]);
    let missing = s.path("missing.jsonl");
    let out = s.classify("toy.toml", &["--input", missing.to_str().unwrap()]);
    assert!(!out.status.success() && stderr(&out).contains("missing.jsonl"), "{}", stderr(&out));
}

#[test]
fn an_example_that_fails_to_classify_names_its_line_and_writes_nothing() {
    let s = Setup::new();
    s.file("long.toml", LONG_TASK);
    let short = r#"{"premise": "it rained", "c1": "wet", "c2": "dry"}"#;
    let long = r#"{"premise": "it rained", "c1": "wet", "c2": "abcdefghij klmnopqrst uvwxyz"}"#;
    let input = s.file("long.jsonl", format!("{short}\n{short}\n\n{short}\n{long}\n{short}\n"));
    let preds = s.path("long-preds.jsonl");
    // The second batch (lines 4–6) holds the long answer: the error names its line in the file.
    let out = s.classify("long.toml", &["--input", &input, "--batch-size", "2", "--output", preds.to_str().unwrap()]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains(&format!("{input}:5: the answer \"abcdefghij klmnopqrst uvwxyz\" (26 tokens) is too long")), "{err}");
    assert!(!preds.exists());
    let out = s.classify("long.toml", &["--input", &input]);
    assert!(!out.status.success() && stdout(&out).is_empty(), "{}", stdout(&out));
}

#[test]
fn an_existing_output_is_kept_unless_forced() {
    let s = Setup::new();
    let input = s.file("in.jsonl", format!("{}\n{}\n", LINES[0], LINES[2]));
    let preds = s.file("preds.jsonl", "precious\n");
    let out = s.classify("toy.toml", &["--input", &input, "--output", &preds]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("already exists") && stderr(&out).contains("--force"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&preds).unwrap(), "precious\n");
    let out = s.classify("toy.toml", &["--input", &input, "--output", &preds, "--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json_lines(&std::fs::read_to_string(&preds).unwrap()).len(), 2);
    // The input file is never the output, --force or not.
    let out = s.classify("toy.toml", &["--input", &input, "--output", &input, "--force"]);
    assert!(!out.status.success() && stderr(&out).contains("is the --input file"), "{}", stderr(&out));
    assert!(std::fs::read_to_string(&input).unwrap().starts_with(LINES[0]));
}

#[test]
fn positional_input_and_input_file_are_exclusive() {
    let s = Setup::new();
    let input = s.file("in.jsonl", format!("{}\n", LINES[0]));
    let both = s.classify("toy.toml", &["--input", &input, LINES[0]]);
    assert!(!both.status.success());
    assert!(stderr(&both).contains("cannot be used with"), "{}", stderr(&both));
    assert!(stdout(&both).is_empty());
    let neither = s.classify("toy.toml", &[]);
    assert!(!neither.status.success());
    assert!(stderr(&neither).contains("--input"), "{}", stderr(&neither));
    // --output and --force belong to --input.
    let out = s.path("o.jsonl");
    let single_out = s.classify("toy.toml", &["--output", out.to_str().unwrap(), LINES[0]]);
    assert!(!single_out.status.success() && stderr(&single_out).contains("--output"), "{}", stderr(&single_out));
    assert!(!out.exists());
    assert!(Path::new(&input).exists());
}
