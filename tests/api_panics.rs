//! Regression tests of crash sites an audit found: each bad argument, given to the command line or
//! to the public library API, gets an error naming the problem instead of a panic or an abort.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use candle_core::{DType, Device, Tensor, Var};
use wenhui::generate::inverse::{causal_logprobs, span_logprobs, SpanRow, Task, Units, Window};
use wenhui::model::{load_model, BackboneInput, KvCache, LoadOptions, LoadedModel};

fn glm_tiny() -> LoadedModel {
    load_model(&common::fixture_dir("WENHUI_GLM_FIXTURE", "glm-tiny"), &LoadOptions::default()).unwrap()
}

fn gpt2_tiny() -> LoadedModel {
    load_model(&common::fixture_dir("WENHUI_GPT2_FIXTURE", "gpt2-tiny"), &LoadOptions::default()).unwrap()
}

/// The shipped answer task with `edit` applied to its TOML text.
fn answer_toml(edit: impl Fn(&str) -> String) -> String {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/tasks/answer.toml")).unwrap();
    let edited = edit(&text);
    assert_ne!(edited, text, "the edit must change the task");
    edited
}

/// Runs `wenhui answer` with the task `toml` and asserts it fails with an error holding `expect`,
/// without a panic.
fn answer_fails_clearly(toml: &str, expect: &str) {
    let dir = tempfile::tempdir().unwrap();
    let task = dir.path().join("huge.toml");
    std::fs::write(&task, toml).unwrap();
    let out = common::wenhui(&["answer", "--task", task.to_str().unwrap(), "--question", "什么是诗"]);
    let err = common::stderr(&out);
    assert!(!out.status.success(), "a task with {expect} must be refused; stderr: {err}");
    assert_ne!(out.status.code(), Some(101), "it must not panic: {err}");
    assert!(!err.contains("panicked"), "it must not panic: {err}");
    assert!(err.contains(expect), "the error must name {expect}: {err}");
}

#[test]
fn cli_answer_refuses_huge_units_and_windows() {
    let huge = "9000000000000000000";
    answer_fails_clearly(&answer_toml(|t| t.replace("max_chars = 16", &format!("max_chars = {huge}"))), "units.max_chars");
    answer_fails_clearly(&answer_toml(|t| t.replace("max_chars = 16", "max_chars = 1000000000000")), "units.max_chars");
    answer_fails_clearly(&answer_toml(|t| t.replace("max_units = 30", &format!("max_units = {huge}"))), "units.max_units");
    answer_fails_clearly(&answer_toml(|t| t.replace("chars = 20 }", &format!("chars = {huge} }}"))), "last_chars");
}

#[test]
fn task_validation_bounds_units_and_windows() {
    let ok = Task::builtin("answer").unwrap();
    let mut t = ok.clone();
    t.units.max_chars = Units::MAX_CHARS + 1;
    let e = t.validate().unwrap_err().to_string();
    assert!(e.contains("units.max_chars") && e.contains(&Units::MAX_CHARS.to_string()), "{e}");
    let mut t = ok.clone();
    t.units.max_units = usize::MAX;
    let e = t.validate().unwrap_err().to_string();
    assert!(e.contains("units.max_units"), "{e}");
    let mut t = ok.clone();
    t.inverse.window = Window::LastChars(usize::MAX);
    let e = t.validate().unwrap_err().to_string();
    assert!(e.contains("last_chars") && e.contains("inverse.window"), "{e}");
    // The bounds themselves are accepted.
    let mut t = ok.clone();
    t.units.max_chars = Units::MAX_CHARS;
    t.units.max_units = Units::MAX_UNITS;
    t.inverse.window = Window::LastChars(Window::MAX_LAST_CHARS);
    t.validate().unwrap();
    // A task never validated does not make the stand-in answer absurd either.
    let mut t = ok;
    t.units.max_chars = usize::MAX;
    t.inverse.window = Window::LastChars(usize::MAX);
    let units = wenhui::serve::longest_answer(&t);
    assert!(units.iter().all(|u| u.chars().count() <= Units::MAX_CHARS.max(Window::MAX_LAST_CHARS)), "stand-ins stay bounded");
}

#[test]
fn scorers_refuse_target_ids_outside_the_vocabulary() {
    let glm = glm_tiny();
    let vocab = glm.backbone.info().vocab_size;
    let bad = vocab as u32;
    let row = SpanRow { context: vec![1, 2, 3], mask_position: 1, target: vec![1, bad], emphasis: None };
    let e = span_logprobs(glm.backbone.as_ref(), 4, &[row], None).unwrap_err().to_string();
    assert!(e.contains(&format!("target token id {bad}")) && e.contains(&format!("vocabulary of {vocab}")), "{e}");
    let gpt2 = gpt2_tiny();
    let vocab = gpt2.backbone.info().vocab_size;
    let e = causal_logprobs(gpt2.backbone.as_ref(), &[(vec![1, 2], vec![1_000_000])], None).unwrap_err().to_string();
    assert!(e.contains("target token id 1000000") && e.contains(&format!("vocabulary of {vocab}")), "{e}");
    // In-vocabulary targets still score.
    let r = causal_logprobs(gpt2.backbone.as_ref(), &[(vec![1, 2], vec![vocab as u32 - 1])], None).unwrap();
    assert_eq!(r[0].len(), 1);
}

#[test]
fn kv_cache_left_pad_refuses_a_huge_pad() {
    let m = glm_tiny();
    let mut c = m.backbone.new_cache();
    let ids = Tensor::new(&[[1u32, 2, 3]], &Device::Cpu).unwrap();
    m.backbone.forward(&BackboneInput::ids(ids), Some(&mut c)).unwrap();
    for n in [1usize << 40, usize::MAX, KvCache::MAX_PADDED_POSITIONS] {
        let e = c.left_pad(n).unwrap_err().to_string();
        assert!(e.contains("left_pad") && e.contains(&format!("n = {n}")), "{e}");
        assert_eq!(c.len(), 3, "a refused pad leaves the cache as it was");
    }
    c.left_pad(2).unwrap();
    assert_eq!(c.len(), 5);
}

#[test]
fn next_batch_with_a_huge_batch_stays_bounded() {
    use wenhui::ptuning::train::{TuneConfig, TuneMode, TuneState};
    let cfg = TuneConfig::new(TuneMode::Ptune, "rte", Path::new("m"), Path::new("t"), Path::new("o"));
    let mut st = TuneState::start(&cfg);
    let v = st.next_batch(3, usize::MAX, 0);
    assert_eq!(v.len(), wenhui::train::MAX_BATCH);
    assert!(v.iter().all(|&i| i < 3));
    assert!(st.next_batch(0, usize::MAX, 0).is_empty());
    assert_eq!(st.next_batch(3, 2, 0).len(), 2);
}

#[test]
fn seq2seq_layout_refuses_huge_length_limits() {
    use wenhui::data::seq2seq::{EncodedTemplate, LayoutConfig, Seq2seqLayout, Seq2seqTokens};
    let tokens = Seq2seqTokens { cls: 1, pad: 0, sop: 2, eop: 3, masks: [Some(4), None, None] };
    let tpl = EncodedTemplate { prefix: vec![1, 4], suffix: vec![], source_space: false, pseudo: vec![] };
    let cfg = LayoutConfig { pad_source: true, max_source_len: 1 << 40, ..Default::default() };
    let e = Seq2seqLayout::from_parts(cfg, tokens, tpl.clone()).unwrap_err().to_string();
    assert!(e.contains("--max-source-len") && e.contains(&(1usize << 40).to_string()), "{e}");
    let cfg = LayoutConfig { max_target_len: usize::MAX, ..Default::default() };
    let e = Seq2seqLayout::from_parts(cfg, tokens, tpl.clone()).unwrap_err().to_string();
    assert!(e.contains("--max-target-len"), "{e}");
    let cfg = LayoutConfig { pad_source: true, max_source_len: 8, ..Default::default() };
    let s = Seq2seqLayout::from_parts(cfg, tokens, tpl).unwrap().sample(&[5, 6], &[7]).unwrap();
    assert_eq!(s.sep, 8);
}

#[test]
fn merging_no_model_parallel_ranks_is_an_error() {
    let e = wenhui::model::checkpoint::merge_model_parallel(vec![], Path::new("ckpt")).unwrap_err().to_string();
    assert!(e.contains("no model-parallel ranks") && e.contains("ckpt"), "{e}");
}

#[test]
fn bench_generate_refuses_blank_tokens_without_a_mask() {
    use wenhui::bench::{bench_generate_on, GenerateBench};
    use wenhui::generate::BlankTokens;
    let m = glm_tiny();
    let c = GenerateBench { prompt: 4, new_tokens: 2, beams: 2, reps: 1, batch: 1, ..Default::default() };
    let b = BlankTokens { masks: vec![], sop: 5, eop: 6, eos: None };
    let e = bench_generate_on(m.backbone.as_ref(), Some(&b), &c).map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("BlankTokens::masks is empty"), "{e}");
}

#[test]
fn add_bias_with_no_columns_is_empty_with_an_empty_gradient() {
    let y = Var::from_tensor(&Tensor::ones((3, 0), DType::F32, &Device::Cpu).unwrap()).unwrap();
    let b = Var::from_tensor(&Tensor::ones(0, DType::F32, &Device::Cpu).unwrap()).unwrap();
    let out = wenhui::ops::add_bias(y.as_tensor(), b.as_tensor()).unwrap();
    assert_eq!(out.dims(), [3, 0]);
    let grads = out.sum_all().unwrap().backward().unwrap();
    if let Some(g) = grads.get(b.as_tensor()) {
        assert_eq!(g.dims(), [0]);
    }
    if let Some(g) = grads.get(y.as_tensor()) {
        assert_eq!(g.dims(), [3, 0]);
    }
    // Columns present: the usual sum and gradient.
    let y = Var::from_tensor(&Tensor::ones((3, 2), DType::F32, &Device::Cpu).unwrap()).unwrap();
    let b = Var::from_tensor(&Tensor::ones(2, DType::F32, &Device::Cpu).unwrap()).unwrap();
    let out = wenhui::ops::add_bias(y.as_tensor(), b.as_tensor()).unwrap();
    let grads = out.sum_all().unwrap().backward().unwrap();
    assert_eq!(grads.get(b.as_tensor()).unwrap().to_vec1::<f32>().unwrap(), [3.0, 3.0]);
}

#[test]
fn serve_limits_refuse_endless_durations() {
    use wenhui::serve::Limits;
    let cases = [
        ("--timeout", Limits { timeout: Duration::MAX, ..Limits::default() }),
        ("--read-timeout", Limits { read_timeout: Duration::MAX, ..Limits::default() }),
        ("--shutdown-grace", Limits { shutdown_grace: Duration::MAX, ..Limits::default() }),
        ("--timeout", Limits { timeout: Duration::from_secs(Limits::MAX_SECONDS + 1), ..Limits::default() }),
    ];
    for (flag, limits) in cases {
        let e = limits.validate().unwrap_err().to_string();
        assert!(e.contains(flag) && e.contains(&Limits::MAX_SECONDS.to_string()), "{flag}: {e}");
    }
    Limits { timeout: Duration::from_secs(Limits::MAX_SECONDS), ..Limits::default() }.validate().unwrap();
    // The library's start runs the same check before loading anything.
    let config = wenhui::serve::ServeConfig {
        model: wenhui::serve::ModelSource::Embedded,
        addr: "127.0.0.1:0".parse().unwrap(),
        limits: Limits { timeout: Duration::MAX, ..Limits::default() },
        handle_signals: false,
        prompts: vec![],
        turing: None,
    };
    let e = wenhui::serve::start(config).map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("--timeout"), "{e}");
}

#[test]
fn serve_bench_load_takes_an_endless_time_limit() {
    // Nothing listens on the discard port: the one request fails at once, the call returns.
    let r = wenhui::serve::bench::load("127.0.0.1:9".parse().unwrap(), 1, 1, Duration::MAX, &|_| String::new());
    assert_eq!(r.errors, 1);
}

#[test]
fn title_rank_refuses_no_candidates() {
    let dir = wenhui::embedded::poetry_model_dir().unwrap();
    let m = load_model(&dir, &LoadOptions::default()).unwrap();
    let tok = wenhui::tokenizer::Tokenizer::from_dir(&dir).unwrap();
    let cx = wenhui::generate::inverse::Context::new(m.backbone.as_ref(), &tok).unwrap();
    let task = Task::builtin("poem").unwrap();
    let fields = task.fields(&BTreeMap::from([("title".to_string(), "春".to_string())])).unwrap();
    let e = wenhui::eval::poems::title_rank(&cx, &task, &fields, "春眠不觉晓，", &[]).unwrap_err().to_string();
    assert!(e.contains("no candidate titles"), "{e}");
    let cands = ["春晓".to_string(), "秋夜".to_string()];
    let rank = wenhui::eval::poems::title_rank(&cx, &task, &fields, "春眠不觉晓，", &cands).unwrap();
    assert!((1..=2).contains(&rank));
}
