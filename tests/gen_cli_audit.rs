//! The user audit of the generation commands (`poem`, `answer`, `generate`, `fill`): each
//! finding's fix, through the built binary on the embedded poetry GLM and the tiny GPT-2 fixture.
//! Every refusal here comes before any generation, so the tests stay fast.
mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};
use wenhui::generate::inverse::Task;
use wenhui::generate::poetry::Form;
use wenhui::serve::{glm_search_fit, longest_poem};
use wenhui::tokenizer::Tokenizer;

use common::{stderr, stdout, wenhui};

/// Runs `args`, which must fail with a message holding every one of `want`; returns stderr.
fn refused(args: &[&str], want: &[&str]) -> String {
    let out = wenhui(args);
    let err = stderr(&out);
    assert!(!out.status.success(), "{args:?} succeeded: {}", stdout(&out));
    for w in want {
        assert!(err.contains(w), "{args:?}: no `{w}` in: {err}");
    }
    err
}

fn ok(args: &[&str]) -> Output {
    let out = wenhui(args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    out
}

fn poetry_model() -> PathBuf {
    wenhui::embedded::poetry_model_dir().unwrap()
}

/// The JSON prompt of the audit: the poetry GLM continues a 五绝 after it.
const POEM_PROMPT: &str = "题名：春晓；作者：孟浩然；体裁：五言绝句；正文：";

// 1. Lengths are checked before the first token, with the flag to shorten and what fits.

#[test]
fn a_title_too_long_for_the_form_is_refused_before_any_poem_naming_the_flag() {
    let long = "春".repeat(60);
    let t = Instant::now();
    let out = wenhui(&["poem", "--title", &long, "--form", "七律"]);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(err.contains("--title is 60 characters") && err.contains("at most") && err.contains("positions"), "{err}");
    // Neither the 《…》 header nor a line was written: the check came first.
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    assert!(t.elapsed() < Duration::from_secs(5), "refused only after {:?}", t.elapsed());
    // The author is named when it is what does not fit.
    refused(&["poem", "--title", "春", "--author", &"李".repeat(120), "--form", "七律"], &["--author is 120 characters", "at most"]);
    // The same check as /v1/poem: the number of characters said to fit does fit, one more does not.
    let dir = poetry_model();
    let tok = Tokenizer::from_dir(&dir).unwrap();
    let task = Task::builtin("poem").unwrap();
    let max = wenhui::model::load_model(&dir, &Default::default()).unwrap().backbone.info().max_positions;
    let fields = |title: &str| {
        task.fields(&BTreeMap::from([("title".to_string(), title.to_string()), ("form".to_string(), Form::QiLv.name().to_string())]))
            .unwrap()
    };
    let units = longest_poem(Form::QiLv);
    let verdict = glm_search_fit(&tok, &task, &fields(&long), &units, "title", max).unwrap().expect("60 characters do not fit");
    assert!(verdict.need > max && verdict.fits > 0 && verdict.fits < 60, "{verdict:?}");
    assert!(err.contains(&format!("at most {} characters fit", verdict.fits)), "{err}");
    assert_eq!(glm_search_fit(&tok, &task, &fields(&"春".repeat(verdict.fits)), &units, "title", max).unwrap(), None);
    assert!(glm_search_fit(&tok, &task, &fields(&"春".repeat(verdict.fits + 1)), &units, "title", max).unwrap().is_some());
}

#[test]
fn batch_mode_skips_a_title_too_long_without_generating_it() {
    let tmp = tempfile::tempdir().unwrap();
    let titles = tmp.path().join("titles.jsonl");
    let long = "春".repeat(60);
    std::fs::write(
        &titles,
        format!("{}\n{}\n", serde_json::json!({"title": long, "form": "七律"}), serde_json::json!({"title": "江雪", "form": "五绝"})),
    )
    .unwrap();
    let output = tmp.path().join("poems.jsonl");
    let out = ok(&["poem", "--titles", titles.to_str().unwrap(), "-o", output.to_str().unwrap(), "--beams", "1"]);
    let err = stderr(&out);
    assert!(err.contains("title 1") && err.contains("skipped") && err.contains("its title is 60 characters"), "{err}");
    let poems = std::fs::read_to_string(&output).unwrap();
    assert_eq!(poems.lines().count(), 1, "{poems}");
    assert!(poems.contains("江雪"), "{poems}");
}

#[test]
fn a_question_too_long_is_refused_naming_the_flag() {
    let t = Instant::now();
    refused(&["answer", "--question", &"问".repeat(120)], &["--question is 120 characters", "at most"]);
    assert!(t.elapsed() < Duration::from_secs(5), "refused only after {:?}", t.elapsed());
    refused(&["answer", "--question", "  "], &["--question is empty"]);
}

// 2. A stop string: the same text streamed and in JSON, without it, one token or several.

/// The streamed text and the JSON object of `generate` with `args`.
fn streamed_and_json(args: &[&str]) -> (String, serde_json::Value) {
    let streamed = stdout(&ok(args)).trim_end_matches('\n').to_string();
    let json: serde_json::Value = serde_json::from_slice(&ok(&[args, &["--json"]].concat()).stdout).unwrap();
    (streamed, json)
}

#[test]
fn a_glm_stop_string_is_cut_alike_from_the_stream_and_the_json() {
    let dir = poetry_model();
    let m = dir.to_str().unwrap();
    let base = ["generate", "--model", m, "--prompt", POEM_PROMPT, "--max-new-tokens", "16"];
    let (plain, _) = streamed_and_json(&base);
    // The audit's poem: 雨滴寒灯下，风吹乱叶中。… (greedy).
    assert!(plain.starts_with("雨滴寒灯下，风吹乱叶中。"), "{plain}");
    for (stop, want) in [("。", "雨滴寒灯下，风吹乱叶中"), ("中。", "雨滴寒灯下，风吹乱叶"), ("风吹", "雨滴寒灯下，")]
    {
        let (streamed, json) = streamed_and_json(&[&base[..], &["--stop", stop]].concat());
        assert_eq!(streamed, want, "--stop {stop}: streamed");
        assert_eq!(json["texts"][0], want, "--stop {stop}: JSON");
        assert_eq!(json["sequences"][0]["finished"], true, "--stop {stop}");
        assert!(json["text"].as_str().unwrap().ends_with(want), "--stop {stop}: {}", json["text"]);
        let tok = Tokenizer::from_dir(&dir).unwrap();
        let tokens: Vec<u32> = serde_json::from_value(json["tokens"].clone()).unwrap();
        assert_eq!(tok.decode(&tokens, true).unwrap(), want, "--stop {stop}: the tokens are the text's");
    }
    // Beam search stops at a one-token stop string alike.
    let (streamed, json) = streamed_and_json(&[&base[..], &["--stop", "。", "--num-beams", "3"]].concat());
    assert!(!streamed.contains('。') && streamed == json["texts"][0], "{streamed} / {}", json["texts"][0]);
}

/// A copy of the tiny GPT-2 fixture with a character tokenizer filling its vocabulary (as
/// tests/cli_generate.rs makes it).
fn gpt2_dir(tmp: &Path) -> PathBuf {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt2-tiny");
    let dir = tmp.join("gpt2-tiny");
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    let chars: String = ('a'..='z').chain('A'..='Z').chain('\u{4e00}'..).take(101 - 10).flat_map(|c| [c, '\n']).collect();
    std::fs::write(dir.join("chars.txt"), chars).unwrap();
    dir
}

#[test]
fn a_gpt2_stop_string_is_cut_alike_whether_one_token_or_several() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = gpt2_dir(tmp.path());
    let d = dir.to_str().unwrap();
    let base = ["generate", "--model", d, "--prompt", "abc", "--max-new-tokens", "12"];
    let (plain, _) = streamed_and_json(&base);
    let chars: Vec<char> = plain.chars().collect();
    assert!(chars.len() >= 6, "{plain}");
    // One character is one token here; two are two tokens.
    for stop in [chars[3].to_string(), chars[3..5].iter().collect::<String>()] {
        let want: String = plain[..plain.find(&stop).unwrap()].to_string();
        let (streamed, json) = streamed_and_json(&[&base[..], &["--stop", &stop]].concat());
        assert_eq!(streamed, want, "--stop {stop}: streamed");
        assert_eq!(json["text"], want, "--stop {stop}: JSON");
        assert_eq!(json["sequences"][0]["finished"], true, "--stop {stop}");
    }
}

// 3. The question of `answer` gets the unknown-text check of `poem` and `generate`.

#[test]
fn an_answer_to_a_question_the_vocabulary_does_not_know_is_refused() {
    refused(
        &["answer", "--question", "Why is the sky blue?", "--beams", "1", "--refine", "0"],
        &["--question", "knows none of it", "[UNK]"],
    );
    refused(&["answer", "--question", "天为何蓝？", "--description", "Why?"], &["--description", "knows none of it"]);
    // Partly unknown: answered, with a warning naming what the model cannot read.
    let err = stderr(&ok(&["answer", "--question", "Why 天为何蓝？", "--beams", "1", "--per-beam", "1", "--refine", "0"]));
    assert!(err.contains("--question: not in the model's vocabulary") && err.contains("\"Why\""), "{err}");
}

// 4. Negative numbers reach the flags' own checks.

#[test]
fn negative_numbers_are_values_with_the_flags_own_messages() {
    let dir = poetry_model();
    let m = dir.to_str().unwrap();
    let g = |extra: &[&str], want: &[&str]| {
        let err = refused(&[&["generate", "--model", m, "--prompt", "春"][..], extra].concat(), want);
        assert!(!err.contains("unexpected argument"), "{extra:?}: {err}");
    };
    g(&["--temperature", "-1"], &["--temperature must be a positive number, got -1"]);
    g(&["--top-p", "-0.1"], &["--top-p must be in (0, 1], got -0.1"]);
    g(&["--repetition-penalty", "-1"], &["--repetition-penalty", "must be a positive number"]);
    for (flag, value) in [("--beams", "-1"), ("--seed", "-1"), ("--per-beam", "-2")] {
        let err = refused(&["poem", "--title", "春", flag, value], &[flag]);
        assert!(!err.contains("unexpected argument"), "{flag} {value}: {err}");
    }
    let err = refused(&["fill", "春[MASK]", "--temperature", "-2"], &["--temperature must be a positive number, got -2"]);
    assert!(!err.contains("unexpected argument"), "{err}");
    // A negative value that is valid is taken as one.
    ok(&["generate", "--model", m, "--prompt", "春", "--num-beams", "2", "--length-penalty", "-0.5", "--max-new-tokens", "3"]);
}

// 5. Messages name the flag that was given.

#[test]
fn out_of_range_values_are_reported_by_their_flag() {
    refused(&["poem", "--title", "春", "--beams", "0"], &["--beams", "at least 1"]);
    refused(&["poem", "--title", "春", "--per-beam", "0"], &["--per-beam", "at least 1"]);
    refused(&["poem", "--title", "春", "--beams", "100"], &["--beams 100", "at most 64 beams"]);
    let dir = poetry_model();
    let m = dir.to_str().unwrap();
    let g = |extra: &[&str], want: &[&str]| refused(&[&["generate", "--model", m, "--prompt", "春"][..], extra].concat(), want);
    g(&["--top-p", "1.5"], &["--top-p must be in (0, 1], got 1.5"]);
    g(&["--temperature", "0"], &["--temperature must be a positive number, got 0"]);
    g(&["--num-beams", "0"], &["--num-beams"]);
    g(&["--max-new-tokens", "0"], &["--max-new-tokens"]);
    g(&["--min-new-tokens", "40"], &["--min-new-tokens (40) exceeds --max-new-tokens (32)"]);
    let err = g(&["--num-beams", "2", "--num-return-sequences", "3"], &["--num-return-sequences must be between 1 and --num-beams (2)"]);
    assert!(!err.contains("generation config"), "{err}");
    refused(&["fill", "春[MASK]", "--top-p", "1.5"], &["--top-p must be in (0, 1], got 1.5"]);
    refused(&["fill", "春[MASK]", "--beams", "0"], &["--beams"]);
}

// 6. prompt_ms: the time to the first token, null with beam search (as documented).

#[test]
fn prompt_ms_is_timed_for_greedy_and_null_for_beam_search_as_documented() {
    let dir = poetry_model();
    let m = dir.to_str().unwrap();
    let json = |extra: &[&str]| -> serde_json::Value {
        let args = [&["generate", "--model", m, "--prompt", "春", "--max-new-tokens", "4", "--json"][..], extra].concat();
        serde_json::from_slice(&ok(&args).stdout).unwrap()
    };
    assert!(json(&[])["timing"]["prompt_ms"].as_f64().unwrap() >= 0.0);
    let beams = json(&["--num-beams", "4"]);
    assert!(beams["timing"]["prompt_ms"].is_null(), "{}", beams["timing"]);
    assert!(beams["timing"]["tokens_per_s"].as_f64().unwrap() > 0.0);
    let help = stdout(&ok(&["generate", "--help"]));
    assert!(help.contains("null with beam search"), "{help}");
    let readme = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    assert!(readme.contains("`null` with beam search"), "README does not document prompt_ms for beam search");
}

/// `wenhui fill` returns the caller's text with only the blanks filled, as `/v1/fill` does:
/// spaces, line breaks and characters outside the vocabulary stay as written.
#[test]
fn fill_keeps_the_callers_text_around_the_blanks() {
    let text = "床前  明月[MASK]光\n疑是 Hello 😀";
    let out = ok(&["fill", text, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let fill = v["fills"][0].as_str().unwrap();
    assert_eq!(v["text"].as_str().unwrap(), format!("床前  明月{fill}光\n疑是 Hello 😀"), "{v}");
}

#[test]
fn a_traditional_acrostic_head_is_written_simplified() {
    // 東 is not in the embedded model's (simplified) vocabulary; its simplified form 东 is.
    let out = ok(&["poem", "--title", "四季", "--acrostic", "春夏秋東", "--beams", "2", "--json"]);
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let lines = v["lines"].as_array().unwrap_or_else(|| panic!("no lines: {v}"));
    let heads: String = lines.iter().filter_map(|l| l.as_str()?.chars().next()).collect();
    assert_eq!(heads, "春夏秋东", "{v}");
}
