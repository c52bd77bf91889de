//! `wenhui generate --input FILE`: every prompt of a file with one model load gives what
//! `generate --prompt … --json` gives for each (the embedded poetry GLM, a few tokens), keys and
//! order kept; bad input is named FILE:LINE before anything is generated or written.

mod common;

use common::{stderr, stdout, wenhui};
use serde_json::Value;
use std::path::{Path, PathBuf};

const PROMPTS: [&str; 3] = ["题名：春日；作者：李白；体裁：五言绝句；正文：", "题名：秋夜；作者：杜甫；体裁：五言绝句；正文：", "春风"];

fn ok(args: &[&str]) -> std::process::Output {
    let out = wenhui(args);
    assert!(out.status.success(), "wenhui {args:?} failed: {}", stderr(&out));
    out
}

/// Runs `wenhui args`, expects a failure whose stderr holds every one of `want`, and returns it.
fn refused(args: &[&str], want: &[&str]) -> std::process::Output {
    let out = wenhui(args);
    assert!(!out.status.success(), "wenhui {args:?} should fail; stdout: {}", stdout(&out));
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "{err}");
    for w in want {
        assert!(err.contains(w), "wenhui {args:?}: stderr lacks `{w}`: {err}");
    }
    out
}

/// The JSON lines of a command's stdout (or a file's text).
fn json_lines(text: &str) -> Vec<Value> {
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

/// `generate --prompt prompt --json` with `flags`.
fn single(prompt: &str, flags: &[&str]) -> Value {
    let out = ok(&[&["generate", "--prompt", prompt, "--json"][..], flags].concat());
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)))
}

/// The fields of a generation that do not depend on the clock.
fn same_generation(file: &Value, one: &Value, what: &str) {
    for key in ["prompt", "model", "text", "texts", "tokens", "scores", "sequences"] {
        assert_eq!(file[key], one[key], "{what}: `{key}` differs from generate --prompt");
    }
    for key in ["prompt_ms", "total_ms", "new_tokens", "tokens_per_s"] {
        assert!(file["timing"].get(key).is_some(), "{what}: no timing.{key}: {file}");
    }
    assert_eq!(file["timing"]["new_tokens"], one["timing"]["new_tokens"], "{what}");
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn jsonl(rows: &[Value]) -> String {
    rows.iter().map(|r| format!("{r}\n")).collect()
}

#[test]
fn a_jsonl_file_gives_the_single_prompt_outputs_with_keys_and_order_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let rows = [
        serde_json::json!({"id": "a", "prompt": PROMPTS[0]}),
        serde_json::json!({"id": 7, "prompt": PROMPTS[1], "meta": {"split": "dev", "n": [1, 2]}}),
        serde_json::json!({"prompt": PROMPTS[2], "reference": "春风又绿江南岸"}),
    ];
    // A blank line in the middle: skipped, and the line numbers stay the file's own.
    let text = format!("{}\n\n{}", serde_json::to_string(&rows[0]).unwrap(), jsonl(&rows[1..]));
    let input = write(tmp.path(), "prompts.jsonl", &text);
    let flags = ["--max-new-tokens", "4", "--no-repeat-ngram-size", "2"];
    let out = ok(&[&["generate", "--input", input.to_str().unwrap()][..], &flags].concat());
    let got = json_lines(&stdout(&out));
    assert_eq!(got.len(), 3, "{}", stdout(&out));
    for (i, (g, row)) in got.iter().zip(&rows).enumerate() {
        same_generation(g, &single(PROMPTS[i], &flags), &format!("prompt {i}"));
        for (k, v) in row.as_object().unwrap() {
            assert_eq!(&g[k], v, "prompt {i}: input key `{k}` not carried over: {g}");
        }
        assert!(g.get("seed").is_none(), "greedy decoding reports no seed: {g}");
    }
    let lines: Vec<u64> = got.iter().map(|g| g["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, [1, 3, 4]);

    // The same lines, whole, in --output (nothing on stdout).
    let output = tmp.path().join("out.jsonl");
    let o = output.to_str().unwrap();
    let out = ok(&[&["generate", "--input", input.to_str().unwrap(), "--output", o][..], &flags].concat());
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    let written = json_lines(&std::fs::read_to_string(&output).unwrap());
    assert_eq!(written.len(), 3);
    for (w, g) in written.iter().zip(&got) {
        assert_eq!((&w["line"], &w["id"], &w["text"], &w["tokens"]), (&g["line"], &g["id"], &g["text"], &g["tokens"]));
    }
}

#[test]
fn sampling_gives_prompt_i_the_seed_plus_i() {
    let tmp = tempfile::tempdir().unwrap();
    let rows: Vec<Value> = PROMPTS.iter().map(|p| serde_json::json!({"prompt": p})).collect();
    let input = write(tmp.path(), "prompts.jsonl", &jsonl(&rows));
    let flags = ["--max-new-tokens", "4", "--sample", "--top-k", "20"];
    let out = ok(&[&["generate", "--input", input.to_str().unwrap(), "--seed", "5"][..], &flags].concat());
    let got = json_lines(&stdout(&out));
    assert_eq!(got.len(), 3);
    for (i, g) in got.iter().enumerate() {
        let seed = (5 + i).to_string();
        same_generation(g, &single(PROMPTS[i], &[&flags[..], &["--seed", &seed]].concat()), &format!("prompt {i} (seed {seed})"));
        assert_eq!(g["seed"], 5 + i as u64, "{g}");
    }
    let help = stdout(&ok(&["generate", "--help"]));
    assert!(help.contains("--seed + i"), "--help does not say the seed rule: {help}");
}

#[test]
fn a_plain_text_file_holds_one_prompt_per_line() {
    let tmp = tempfile::tempdir().unwrap();
    // CRLF line ends and a blank line; a JSON-looking line is a prompt like any other here.
    let input = write(tmp.path(), "prompts.txt", &format!("{}\r\n\r\n{}\r\n", PROMPTS[0], PROMPTS[2]));
    let flags = ["--max-new-tokens", "4"];
    let out = ok(&[&["generate", "--input", input.to_str().unwrap()][..], &flags].concat());
    let got = json_lines(&stdout(&out));
    assert_eq!(got.len(), 2, "{}", stdout(&out));
    same_generation(&got[0], &single(PROMPTS[0], &flags), "line 1");
    same_generation(&got[1], &single(PROMPTS[2], &flags), "line 3");
    assert_eq!((got[0]["line"].as_u64(), got[1]["line"].as_u64()), (Some(1), Some(3)));
    // --prompt-field means nothing to a plain-text file: refused, not ignored.
    refused(&["generate", "--input", input.to_str().unwrap(), "--prompt-field", "q"], &["--prompt-field", "plain text"]);
}

#[test]
fn a_custom_prompt_field_is_read_and_the_prompt_kept_under_prompt() {
    let tmp = tempfile::tempdir().unwrap();
    let input = write(tmp.path(), "q.jsonl", &jsonl(&[serde_json::json!({"question": PROMPTS[2], "id": 1})]));
    let flags = ["--max-new-tokens", "4"];
    let out = ok(&[&["generate", "--input", input.to_str().unwrap(), "--prompt-field", "question"][..], &flags].concat());
    let got = json_lines(&stdout(&out));
    same_generation(&got[0], &single(PROMPTS[2], &flags), "question");
    assert_eq!((&got[0]["question"], &got[0]["id"]), (&Value::from(PROMPTS[2]), &Value::from(1)));
}

#[test]
fn a_bad_line_is_named_file_line_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let good = serde_json::json!({"prompt": PROMPTS[2]}).to_string();
    let output = tmp.path().join("out.jsonl");
    let o = output.to_str().unwrap();
    let long = "春".repeat(300);
    let cases: Vec<(&str, Vec<u8>, Vec<&str>)> = vec![
        ("json.jsonl", format!("{good}\n{good}\n{{\"prompt\": \"春\n").into_bytes(), vec![":3:", "not valid JSON"]),
        ("missing.jsonl", format!("{good}\n{{\"text\": \"春\"}}\n").into_bytes(), vec![":2:", "no `prompt` key", "--prompt-field"]),
        ("number.jsonl", format!("{good}\n{{\"prompt\": 3}}\n").into_bytes(), vec![":2:", "a number, expected a string"]),
        ("empty-prompt.jsonl", format!("{{\"prompt\": \"  \"}}\n{good}\n").into_bytes(), vec![":1:", "empty"]),
        ("array.jsonl", format!("{good}\n[1, 2]\n").into_bytes(), vec![":2:", "JSON object"]),
        ("utf8.txt", b"\xe6\x98\xa5\n\xff\xfe\n".to_vec(), vec![":2:", "UTF-8"]),
        // Checked with the model, still before the first prompt is generated.
        ("long.jsonl", format!("{good}\n{}\n", serde_json::json!({"prompt": long})).into_bytes(), vec![":2:", "positions", "shorten"]),
        ("unknown.txt", "春\nHello\n".as_bytes().to_vec(), vec![":2:", "vocabulary knows none of it"]),
        ("clash.jsonl", format!("{good}\n{{\"prompt\": \"春\", \"tokens\": 1}}\n").into_bytes(), vec![":2:", "key `tokens`", "rename"]),
    ];
    for (name, bytes, want) in cases {
        let input = tmp.path().join(name);
        std::fs::write(&input, bytes).unwrap();
        let at = format!("{}:", input.display());
        for with_output in [false, true] {
            let mut args = vec!["generate", "--input", input.to_str().unwrap(), "--max-new-tokens", "2"];
            if with_output {
                args.extend(["--output", o]);
            }
            let out = refused(&args, &[&[at.as_str()][..], &want].concat());
            assert!(stdout(&out).is_empty(), "{name}: something was generated: {}", stdout(&out));
            assert!(!output.exists(), "{name}: --output was written");
        }
    }
    for (name, text) in [("empty.jsonl", ""), ("blank.txt", "\n  \n")] {
        let input = write(tmp.path(), name, text);
        refused(&["generate", "--input", input.to_str().unwrap()], &[name, "no prompt"]);
    }
    refused(&["generate", "--input", tmp.path().join("absent.jsonl").to_str().unwrap()], &["absent.jsonl"]);
    let leftovers: Vec<_> =
        std::fs::read_dir(tmp.path()).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().starts_with('.')).collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn an_existing_output_is_replaced_only_with_force() {
    let tmp = tempfile::tempdir().unwrap();
    let input = write(tmp.path(), "p.txt", &format!("{}\n", PROMPTS[2]));
    let output = write(tmp.path(), "out.jsonl", "keep me\n");
    let (i, o) = (input.to_str().unwrap(), output.to_str().unwrap());
    refused(&["generate", "--input", i, "--output", o, "--max-new-tokens", "2"], &["already exists", "--force"]);
    assert_eq!(std::fs::read_to_string(&output).unwrap(), "keep me\n");
    ok(&["generate", "--input", i, "--output", o, "--force", "--max-new-tokens", "2"]);
    let written = json_lines(&std::fs::read_to_string(&output).unwrap());
    assert_eq!(written.len(), 1);
    assert_eq!(written[0]["prompt"], PROMPTS[2]);
    // The input is never the output, --force or not.
    refused(&["generate", "--input", i, "--output", i, "--force"], &["is the --input file"]);
    assert_eq!(std::fs::read_to_string(&input).unwrap(), format!("{}\n", PROMPTS[2]));
}

#[test]
fn prompt_and_input_are_one_or_the_other() {
    let tmp = tempfile::tempdir().unwrap();
    let input = write(tmp.path(), "p.txt", "春\n");
    let i = input.to_str().unwrap();
    refused(&["generate", "--prompt", "春", "--input", i], &["--prompt", "--input", "cannot be used with"]);
    refused(&["generate"], &["--prompt", "--input"]);
    refused(&["generate", "--prompt", "春", "--output", tmp.path().join("o.jsonl").to_str().unwrap()], &["--output", "--input"]);
    refused(&["generate", "--prompt", "春", "--prompt-field", "q"], &["--prompt-field", "--input"]);
    assert!(!tmp.path().join("o.jsonl").exists());
}

/// The GPT-2 path (left-to-right continuation, beam search with several sequences) on the tiny
/// fixture, given a character tokenizer that fills its vocabulary (as tests/cli_generate.rs).
#[test]
fn a_gpt2_file_gives_the_single_prompt_outputs_with_beams() {
    let tmp = tempfile::tempdir().unwrap();
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt2-tiny");
    let dir = tmp.path().join("gpt2-tiny");
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    let chars: String = ('a'..='z').chain('A'..='Z').chain('\u{4e00}'..).take(101 - 10).flat_map(|c| [c, '\n']).collect();
    std::fs::write(dir.join("chars.txt"), chars).unwrap();
    let prompts = ["abc", "Hello", "xyz\u{4e00}"];
    let input = write(tmp.path(), "p.txt", &prompts.join("\n"));
    let flags = ["--model", dir.to_str().unwrap(), "--max-new-tokens", "5", "--num-beams", "3", "--num-return-sequences", "2"];
    let out = ok(&[&["generate", "--input", input.to_str().unwrap()][..], &flags].concat());
    let got = json_lines(&stdout(&out));
    assert_eq!(got.len(), 3);
    for (i, g) in got.iter().enumerate() {
        same_generation(g, &single(prompts[i], &flags), prompts[i]);
        assert_eq!(g["texts"].as_array().map(Vec::len), Some(2), "{g}");
        assert!(g["timing"]["prompt_ms"].is_null(), "beam search has no time to a first token: {g}");
    }
}
