//! The generation API used from outside the crate, as an audit did: bad input through a public
//! function is a clear `wenhui::Error`, never a panic or a silently wrong result.
//!
//! Models: `tests/fixtures/glm-tiny` (vocabulary 120) and the embedded poetry GLM.

mod common;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use common::fixture_dir;
// The crates the API speaks in come with it, at its versions.
use wenhui::candle_core::{Device, Tensor};
use wenhui::candle_nn::VarMap;
use wenhui::generate::inverse::{generate_inverse, Context, InverseOptions, PlainRules, PoemRules, Task, Units};
use wenhui::generate::poetry::{format_score, Constraints, Form};
use wenhui::generate::{fill_blanks, fill_text, generate, unknown_text, BlankTokens, CausalInputs, GenerationConfig, UnknownText};
use wenhui::model::{load_model, Backbone, LoadOptions};
use wenhui::tokenizer::{sentencepiece, Tokenizer};

fn glm_tiny() -> Box<dyn Backbone> {
    load_model(&fixture_dir("WENHUI_GLM_FIXTURE", "glm-tiny"), &LoadOptions::default()).unwrap().backbone
}

/// The embedded poetry GLM and its tokenizer, loaded once for every test.
fn poetry() -> &'static (Box<dyn Backbone>, Tokenizer) {
    static P: OnceLock<(Box<dyn Backbone>, Tokenizer)> = OnceLock::new();
    P.get_or_init(|| {
        let dir = wenhui::embedded::poetry_model_dir().unwrap();
        (load_model(&dir, &LoadOptions::default()).unwrap().backbone, Tokenizer::from_dir(&dir).unwrap())
    })
}

fn err<T: std::fmt::Debug>(r: wenhui::Result<T>) -> String {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.to_string(),
    }
}

/// Greedy, sampling and beam search with every token banned: an error naming the step and the
/// option, not `[0, 0]` with a NaN score, random tokens, or an empty hypothesis scored −1e9.
#[test]
fn every_token_banned_is_an_error() {
    let m = glm_tiny();
    let inputs = CausalInputs::new(m.as_ref());
    let all: Vec<Vec<u32>> = (0..120).map(|t| vec![t]).collect();
    let base = GenerationConfig { max_new_tokens: 2, bad_words_ids: all, ..Default::default() };
    for cfg in [
        base.clone(),
        GenerationConfig { do_sample: true, ..base.clone() },
        GenerationConfig { num_beams: 3, ..base.clone() },
        GenerationConfig { num_beams: 3, num_return_sequences: 2, ..base.clone() },
    ] {
        let e = err(generate(m.as_ref(), &[103, 5, 6], &inputs, &cfg, None));
        assert!(e.contains("every token is banned at step 1") && e.contains("bad_words_ids"), "{cfg:?}: {e}");
    }
    // Only 5 and 7 allowed, each once: the third token has nothing left.
    let most: Vec<Vec<u32>> = (0..120).filter(|&t| t != 5 && t != 7).map(|t| vec![t]).collect();
    let cfg = GenerationConfig { max_new_tokens: 4, bad_words_ids: most, no_repeat_ngram_size: 1, ..Default::default() };
    for c in [cfg.clone(), GenerationConfig { do_sample: true, ..cfg.clone() }] {
        let e = err(generate(m.as_ref(), &[103, 9, 10], &inputs, &c, None));
        assert!(e.contains("every token is banned at step 3") && e.contains("no_repeat_ngram_size = 1"), "{e}");
    }
    // Beam search keeps the hypotheses that finished before nothing was left.
    let beam = GenerationConfig { num_beams: 2, eos_token_ids: vec![7], ..cfg };
    let out = generate(m.as_ref(), &[103, 9, 10], &inputs, &beam, None).unwrap();
    let best = &out.sequences[0];
    assert!(best.finished && best.score.is_finite() && best.tokens.last() == Some(&7), "{out:?}");
    // min_new_tokens bans the stop tokens: named when they were the last ones left.
    let only_eos: Vec<Vec<u32>> = (0..120).filter(|&t| t != 7).map(|t| vec![t]).collect();
    let c =
        GenerationConfig { max_new_tokens: 3, min_new_tokens: 2, bad_words_ids: only_eos, eos_token_ids: vec![7], ..Default::default() };
    let e = err(generate(m.as_ref(), &[103, 9, 10], &inputs, &c, None));
    assert!(e.contains("step 1") && e.contains("min_new_tokens = 2"), "{e}");
}

fn small_poem_task() -> Task {
    let mut t = Task::builtin("poem").unwrap();
    t.search.beams = 2;
    t.search.per_beam = 2;
    t.search.first_pool = 4;
    t
}

fn poem_fields(task: &Task) -> BTreeMap<String, String> {
    task.fields(&BTreeMap::from([("title".to_string(), "春江".to_string()), ("form".to_string(), "五绝".to_string())])).unwrap()
}

/// `generate_inverse` checks the task (public fields, changed after parsing) and the rules
/// before searching: each bad value is named, not "no candidate satisfied every constraint"
/// nor a silent run with a NaN temperature.
#[test]
fn inverse_search_checks_task_and_rules_first() {
    let (model, tok) = poetry();
    let cx = Context::new(model.as_ref(), tok).unwrap();
    let task = small_poem_task();
    let fields = poem_fields(&task);
    let rules = || PoemRules::new(Constraints::new(Form::WuJue));
    type Edit = fn(&mut Task);
    let cases: [(Edit, &str); 7] = [
        (|t| t.search.beams = 0, "beams"),
        (|t| t.search.per_beam = 0, "per_beam"),
        (|t| t.units.max_units = 0, "max_units"),
        (|t| t.units.max_chars = 0, "max_chars"),
        (|t| t.search.temperature = f32::NAN, "temperature"),
        (|t| t.search.temperature = -1.0, "temperature"),
        (|t| t.units.ends.clear(), "units.ends"),
    ];
    for (edit, want) in cases {
        let mut t = task.clone();
        edit(&mut t);
        let e = err(generate_inverse(&cx, &t, &fields, &mut rules(), &InverseOptions::default(), None));
        assert!(e.contains(want) && e.contains("task `poem`") && !e.contains("no candidate"), "{want}: {e}");
    }
    // Acrostic heads that do not match the form's lines.
    let mut c = Constraints::new(Form::WuJue);
    c.heads = vec!['春', '江'];
    let e = err(generate_inverse(&cx, &task, &fields, &mut PoemRules::new(c), &InverseOptions::default(), None));
    assert!(e.contains("acrostic needs one head character per line: 4 lines, got 2 heads"), "{e}");
    // Plain rules whose units can never end.
    let answer = Task::builtin("answer").unwrap();
    let f = answer.fields(&BTreeMap::from([("question".to_string(), "春天为什么美".to_string())])).unwrap();
    let units = Units { ends: vec![], ..answer.units.clone() };
    let e = err(generate_inverse(&cx, &answer, &f, &mut PlainRules::new(units), &InverseOptions::default(), None));
    assert!(e.contains("units.ends"), "{e}");
}

/// Blank filling keeps one fill per blank: asking for more hypotheses is an error naming the
/// option, as the command line's `--num-return-sequences`.
#[test]
fn blank_filling_refuses_several_return_sequences() {
    let cfg = GenerationConfig { max_new_tokens: 3, num_beams: 2, num_return_sequences: 2, ..Default::default() };
    let m = glm_tiny();
    let tokens = BlankTokens { masks: vec![103], sop: 101, eop: 102, eos: Some(100) };
    let e = err(fill_blanks(m.as_ref(), &[104, 5, 103, 6, 100], &tokens, &cfg));
    assert!(e.contains("num_return_sequences must be 1") && e.contains("best fill of each blank"), "{e}");
    let (model, tok) = poetry();
    let e = err(fill_text(model.as_ref(), tok, "白日依山尽，[MASK]。", &cfg));
    assert!(e.contains("num_return_sequences must be 1"), "{e}");
}

/// `TextFill.text` reproduces the input around the fills: characters the vocabulary lacks
/// (read as `[UNK]` by the model) and spaces are kept as written, not dropped.
#[test]
fn fill_text_keeps_unknown_characters_of_the_input() {
    let (model, tok) = poetry();
    let text = "Hello 春风，[MASK]。😀";
    let unknown: UnknownText = unknown_text(tok, text).unwrap();
    assert!(unknown.unknown > 0 && !unknown.all_unknown(), "{unknown:?}");
    let cfg = GenerationConfig { max_new_tokens: 6, ..Default::default() };
    let out = fill_text(model.as_ref(), tok, text, &cfg).unwrap();
    // The caller's text exactly, space included, with the blank filled.
    assert_eq!(out.text, format!("Hello 春风，{}。😀", out.fills[0]), "{out:?}");
    // Without unknown characters the text is the plain decode, as before.
    let plain = fill_text(model.as_ref(), tok, "白日依山尽，[MASK]。", &cfg).unwrap();
    assert_eq!(plain.text, format!("白日依山尽，{}。", plain.fills[0]));
}

/// `format_score` takes one string per line: a string holding two lines is refused as such,
/// not as "needs at least two earlier lines".
#[test]
fn format_score_names_a_string_holding_several_lines() {
    let e = err(format_score(&["白日依山尽，黄河入海流。"], "欲穷千里目，"));
    assert!(e.contains("holds 2 lines") && e.contains("separate string"), "{e}");
    let e = err(format_score(&["白日依山尽，", "黄河入海流。"], "欲穷千里目，更上一层楼。"));
    assert!(e.contains("holds 2 lines"), "{e}");
    let e = err(format_score(&["白日依山尽", "黄河入海流。"], "欲穷千里目，"));
    assert!(e.contains("no end punctuation"), "{e}");
    assert!(format_score(&["白日依山尽，", "黄河入海流。"], "欲穷千里目，").unwrap().is_finite());
}

/// What the API exposes of other crates is reachable through wenhui; the SentencePiece loader
/// of the library is `Tokenizer::from_file`, the bare one is `load_raw`.
#[test]
fn reexports_and_the_sentencepiece_path() {
    let t = Tensor::new(&[1f32, 2.0], &Device::Cpu).unwrap();
    assert_eq!(t.dims(), [2]);
    assert!(VarMap::new().all_vars().is_empty());
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizers");
    let tok = Tokenizer::from_dir(&fixtures.join("wordpiece")).unwrap();
    let enc: wenhui::tokenizers::Encoding = tok.encode_full("hello world", false).unwrap();
    assert!(!enc.get_ids().is_empty());

    let model = fixtures.join("sentencepiece/unigram.model");
    let glm = Tokenizer::from_file(&model).unwrap();
    assert!(glm.special.get("[MASK]").is_ok() && glm.special.sop.is_some());
    let raw: wenhui::tokenizers::Tokenizer = sentencepiece::load_raw(&model).unwrap();
    assert!(raw.token_to_id("[MASK]").is_none());
    let _proto: Option<sentencepiece::sentencepiece_model::ModelProto> = None;
}

/// The embedded model's vocabulary is padded past its tokenizer's (6,912 rows, 6,863 tokens):
/// a fill never picks a padded row, which could not be decoded. With every real token banned
/// (stop tokens too, by `min_new_tokens`) only padded rows would be left to choose from.
#[test]
fn fill_text_never_generates_a_padded_vocabulary_row() {
    let (model, tok) = poetry();
    let padded = wenhui::generate::padded_vocabulary_rows(model.as_ref(), tok);
    assert_eq!(padded.len(), model.info().vocab_size - tok.vocab_size(true));
    assert!(!padded.is_empty(), "the embedded model's vocabulary is padded");
    // Banning all but a few real characters: the fill must use those, not a padded row.
    let keep: Vec<u32> = tok.encode("春风", false).unwrap();
    let banned: Vec<Vec<u32>> = (0..tok.vocab_size(true) as u32).filter(|t| !keep.contains(t)).map(|t| vec![t]).collect();
    for sample in [false, true] {
        let cfg = GenerationConfig {
            max_new_tokens: 4,
            min_new_tokens: 4,
            do_sample: sample,
            temperature: 50.0,
            seed: 3,
            bad_words_ids: banned.clone(),
            ..Default::default()
        };
        let out = fill_text(model.as_ref(), tok, "白日依山尽，[MASK]。", &cfg).unwrap();
        assert!(out.fills[0].chars().all(|c| "春风".contains(c)) && out.fills[0].chars().count() == 4, "{out:?}");
    }
}
