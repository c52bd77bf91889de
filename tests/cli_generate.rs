//! `wenhui generate` end to end: the built binary on the tiny GPT-2 and GLM fixtures (each given
//! a character tokenizer that fills its vocabulary) against the library's own generation.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use wenhui::generate::{fill_blanks, generate, glm_context, BlankTokens, CausalInputs, GenerationConfig};
use wenhui::model::{load_model, LoadOptions};
use wenhui::tokenizer::Tokenizer;

/// A copy of fixture `name` with a `chars.txt` of exactly as many characters as the model has
/// rows left after the 10 command tokens.
fn model_dir(tmp: &Path, name: &str, vocab: usize) -> PathBuf {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    let dir = tmp.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    let chars: String = ('a'..='z').chain('A'..='Z').chain('\u{4e00}'..).take(vocab - 10).flat_map(|c| [c, '\n']).collect();
    std::fs::write(dir.join("chars.txt"), chars).unwrap();
    dir
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wenhui")).arg("generate").args(args).output().unwrap()
}

fn ok_json(args: &[&str]) -> serde_json::Value {
    let out = run(args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn tokens(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|t| t.as_u64().unwrap() as u32).collect()
}

#[test]
fn gpt2_greedy_matches_library_and_streams_the_same_text() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = model_dir(tmp.path(), "gpt2-tiny", 101);
    let d = dir.to_str().unwrap();
    let args = ["--model", d, "--prompt", "abc\u{4e00}", "--max-new-tokens", "12"];
    let json = ok_json(&[&args[..], &["--json"]].concat());

    let m = load_model(&dir, &LoadOptions::default()).unwrap();
    let tok = Tokenizer::from_dir(&dir).unwrap();
    let prompt = tok.encode("abc\u{4e00}", false).unwrap();
    let cfg = GenerationConfig { max_new_tokens: 12, eos_token_ids: vec![tok.special.eos.unwrap()], ..Default::default() };
    let lib = generate(m.backbone.as_ref(), &prompt, &CausalInputs::new(m.backbone.as_ref()), &cfg, None).unwrap();
    assert_eq!(tokens(&json["tokens"]), lib.sequences[0].tokens);
    assert!((json["scores"][0].as_f64().unwrap() as f32 - lib.sequences[0].score).abs() < 1e-4);
    assert!(json["timing"]["tokens_per_s"].as_f64().unwrap() > 0.0);
    assert!(json["timing"]["prompt_ms"].as_f64().unwrap() >= 0.0);

    let out = run(&args);
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim_end_matches('\n'), json["text"].as_str().unwrap());
}

#[test]
fn glm_greedy_matches_library_blank_filling() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = model_dir(tmp.path(), "glm-tiny", 120);
    let d = dir.to_str().unwrap();
    let json = ok_json(&["--model", d, "--prompt", "abcde", "--max-new-tokens", "10", "--json"]);
    let m = load_model(&dir, &LoadOptions::default()).unwrap();
    let tok = Tokenizer::from_dir(&dir).unwrap();
    let context = glm_context(&tok, "abcde").unwrap();
    let cfg = GenerationConfig { max_new_tokens: 10, ..Default::default() };
    let lib = fill_blanks(m.backbone.as_ref(), &context, &BlankTokens::from_special(&tok.special).unwrap(), &cfg).unwrap();
    assert_eq!(tokens(&json["tokens"]), lib.fills[0].tokens);
    let out = run(&["--model", d, "--prompt", "abcde", "--max-new-tokens", "10"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim_end_matches('\n'), tok.decode(&lib.fills[0].tokens, true).unwrap());
    // Beams and several blanks work too.
    let json = ok_json(&["--model", d, "--prompt", "ab[MASK]cd[MASK]", "--num-beams", "3", "--max-new-tokens", "4", "--json"]);
    assert_eq!(json["sequences"].as_array().unwrap().len(), 2);
}

#[test]
fn sampling_is_seeded_and_beams_return_sequences() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = model_dir(tmp.path(), "gpt2-tiny", 101);
    let d = dir.to_str().unwrap();
    let sample = |seed: &str| {
        let out =
            run(&["--model", d, "--prompt", "hello", "--temperature", "1.5", "--top-k", "0", "--seed", seed, "--max-new-tokens", "16"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(sample("7"), sample("7"));
    assert_ne!(sample("7"), sample("8"));
    let json = ok_json(&[
        "--model",
        d,
        "--prompt",
        "hello",
        "--num-beams",
        "4",
        "--num-return-sequences",
        "3",
        "--early-stopping",
        "never",
        "--length-penalty",
        "0.5",
        "--repetition-penalty",
        "1.3",
        "--no-repeat-ngram-size",
        "2",
        "--bad-words",
        "a,b",
        "--min-new-tokens",
        "2",
        "--stop",
        "z",
        "--max-new-tokens",
        "6",
        "--json",
    ]);
    let scores: Vec<f64> = json["scores"].as_array().unwrap().iter().map(|s| s.as_f64().unwrap()).collect();
    assert_eq!(scores.len(), 3);
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
}

#[test]
fn bad_input_exits_with_a_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = model_dir(tmp.path(), "gpt2-tiny", 101);
    let d = dir.to_str().unwrap();
    let long = "a".repeat(80);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--model", d, "--prompt", "  "], "--prompt is empty"),
        (vec!["--model", d, "--prompt", &long], "64 positions"),
        (vec!["--model", d, "--prompt", "a", "--num-beams", "2", "--sample"], "--num-beams"),
        (vec!["--model", d, "--prompt", "a", "--early-stopping", "maybe"], "true, false, never"),
        (vec!["--model", d, "--prompt", "a", "--top-p", "1.5"], "top_p"),
        (vec!["--model", d, "--prompt", "a", "--num-beams", "2", "--num-return-sequences", "3"], "num_return_sequences"),
        (vec!["--model", "/nonexistent/model", "--prompt", "a"], "/nonexistent/model"),
        // Nothing the vocabulary knows: the prompt would be [UNK] alone.
        (vec!["--model", d, "--prompt", "😀😀"], "\"😀😀\""),
    ];
    for (args, want) in cases {
        let out = run(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

// The processor flags `fill` shares with `generate`, `generate`'s embedded default model, and
// the warning of `answer` without a model (user audit of the generation commands).

mod common;
use common::{stderr, stdout, wenhui};

/// The prompt whose greedy fill by the embedded model repeats itself.
const SPRING: &str = "题名：春日；正文：[gMASK]";

/// `wenhui fill SPRING --json` with `extra` flags, parsed; the command must succeed.
fn fill_json(extra: &[&str]) -> serde_json::Value {
    let out = wenhui(&[&["fill", SPRING, "--json"][..], extra].concat());
    assert!(out.status.success(), "{extra:?}: {}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

/// The character bigrams of `text` that occur more than once.
fn repeated_bigrams(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let bigrams: Vec<String> = chars.windows(2).map(|w| w.iter().collect()).collect();
    let mut repeated: Vec<String> = bigrams.iter().filter(|b| bigrams.iter().filter(|c| c == b).count() > 1).cloned().collect();
    repeated.dedup();
    repeated
}

#[test]
fn fill_takes_the_processor_flags_of_generate() {
    // Defaults change nothing: the fill the binary printed before the flags existed, and the
    // library's fill with the default config.
    let plain = fill_json(&[]);
    let fill = plain["fills"][0].as_str().unwrap();
    assert_eq!(fill, "柳絮花；体裁：五言绝句；作者：杨柳春风起，春风日日斜。春风正落日");
    assert!(!repeated_bigrams(fill).is_empty(), "{fill}");
    let dir = wenhui::embedded::poetry_model_dir().unwrap();
    let m = load_model(&dir, &LoadOptions::default()).unwrap();
    let tok = Tokenizer::from_dir(&dir).unwrap();
    let lib = |cfg: GenerationConfig| wenhui::generate::fill_text(m.backbone.as_ref(), &tok, SPRING, &cfg).unwrap();
    let base = GenerationConfig { max_new_tokens: 32, ..Default::default() };
    assert_eq!(plain["fills"][0], lib(base.clone()).fills[0]);
    let explicit = fill_json(&["--repetition-penalty", "1", "--no-repeat-ngram-size", "0", "--min-new-tokens", "0"]);
    assert_eq!(explicit, plain);

    // No bigram twice with --no-repeat-ngram-size 2.
    let v = fill_json(&["--no-repeat-ngram-size", "2"]);
    let fill = v["fills"][0].as_str().unwrap();
    assert!(repeated_bigrams(fill).is_empty(), "{fill}: {:?}", repeated_bigrams(fill));

    // Each flag reaches the fill's config, with beams too.
    for beams in ["1", "3"] {
        let v = fill_json(&["--repetition-penalty", "1.3", "--bad-words", "春,风", "--min-new-tokens", "3", "--beams", beams]);
        let want = lib(GenerationConfig {
            repetition_penalty: 1.3,
            bad_words_ids: vec![tok.encode("春", false).unwrap(), tok.encode("风", false).unwrap()],
            min_new_tokens: 3,
            num_beams: beams.parse().unwrap(),
            ..base.clone()
        });
        assert_eq!(v["fills"][0], want.fills[0], "--beams {beams}");
        assert!(!v["fills"][0].as_str().unwrap().contains(['春', '风']), "{v}");
    }

    // The same checks as generate's.
    for (args, want) in [
        (vec!["--repetition-penalty", "0"], "--repetition-penalty"),
        (vec!["--repetition-penalty", "-1"], "must be a positive number"),
        (vec!["--no-repeat-ngram-size", "x"], "--no-repeat-ngram-size"),
        (vec!["--min-new-tokens", "40"], "--min-new-tokens (40) exceeds --max-new-tokens (32)"),
    ] {
        let out = wenhui(&[&["fill", SPRING][..], &args].concat());
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr(&out).contains(want), "{args:?}: {}", stderr(&out));
    }
    let help = stdout(&wenhui(&["fill", "--help"]));
    for flag in ["--repetition-penalty", "--no-repeat-ngram-size", "--bad-words", "--min-new-tokens"] {
        assert!(help.contains(flag), "fill --help lacks {flag}");
    }
}

#[test]
fn generate_defaults_to_the_embedded_model() {
    let prompt = "题名：春日；作者：李白；体裁：五言绝句；正文：";
    let out = wenhui(&["generate", "--prompt", prompt, "--max-new-tokens", "8"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stdout(&out).trim().is_empty());
    // The same text as the embedded model's directory given as --model.
    let dir = wenhui::embedded::poetry_model_dir().unwrap();
    let given = wenhui(&["generate", "--model", dir.to_str().unwrap(), "--prompt", prompt, "--max-new-tokens", "8"]);
    assert!(given.status.success(), "{}", stderr(&given));
    assert_eq!(stdout(&out), stdout(&given));
    let help = stdout(&wenhui(&["generate", "--help"]));
    assert!(help.contains("default: the embedded poetry GLM"), "{help}");
}

#[test]
fn answer_without_a_model_warns_that_the_embedded_model_knows_poems_only() {
    let args = ["answer", "--question", "春天为什么美？", "--beams", "1", "--per-beam", "1", "--refine", "0"];
    let warning = "the embedded model was trained on poems only";
    let out = wenhui(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains(warning) && stderr(&out).contains("--model DIR"), "{}", stderr(&out));
    assert!(!stdout(&out).contains(warning));
    // With --model (here the same model's directory): no warning.
    let dir = wenhui::embedded::poetry_model_dir().unwrap();
    let out = wenhui(&[&args[..], &["--model", dir.to_str().unwrap()]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains(warning), "{}", stderr(&out));
    assert!(stdout(&wenhui(&["answer", "--help"])).contains(warning));
}
