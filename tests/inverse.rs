//! Inverse prompting on the shipped poetry GLM (`models/poetry-glm`) and on `gpt2-tiny`: every poem
//! meets the constraints it was asked for, a seed reproduces a poem, batched inverse scoring equals
//! scoring one by one, the causal form runs on a left-to-right model, templates and bad input give
//! clear errors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use wenhui::generate::inverse::{
    causal_logprobs, generate_inverse, span_logprobs, window, Context, Emphasis, InverseMode, InverseOptions, PlainRules, PoemRules,
    SpanRow, Task, Window,
};
use wenhui::generate::poetry::{check_poem, Constraints, LineStatus, Rule};
use wenhui::model::{load_model, Backbone, LoadOptions};
use wenhui::tokenizer::{CharVocab, Tokenizer};

fn poetry() -> (Box<dyn Backbone>, Tokenizer) {
    let dir = wenhui::embedded::poetry_model_dir().expect("the shipped poetry model");
    let m = load_model(&dir, &LoadOptions::default()).unwrap();
    (m.backbone, Tokenizer::from_dir(&dir).unwrap())
}

fn fields(task: &Task, title: &str, form: &str) -> BTreeMap<String, String> {
    task.fields(&BTreeMap::from([("title".to_string(), title.to_string()), ("form".to_string(), form.to_string())])).unwrap()
}

fn small_task() -> Task {
    let mut t = Task::builtin("poem").unwrap();
    t.search.beams = 3;
    t.search.per_beam = 4;
    t.search.first_pool = 8;
    t.search.refine_rounds = 1;
    t
}

#[test]
fn poems_meet_their_constraints_and_seeds_reproduce() {
    let (model, tok) = poetry();
    let cx = Context::new(model.as_ref(), &tok).unwrap();
    let task = small_task();
    for (title, form, heads) in [("虹桥机场", "五绝", ""), ("咏相对论", "七绝", ""), ("春日", "五绝", "春夏秋冬"), ("秋夜", "五律", "")]
    {
        let c = Constraints::parse(form, "pingshui", heads).unwrap();
        let f = fields(&task, title, c.form.name());
        let opts = InverseOptions { seed: 7, ..Default::default() };
        let a = generate_inverse(&cx, &task, &f, &mut PoemRules::new(c.clone()), &opts, None).unwrap();
        let v = check_poem(&a.text, &c).unwrap();
        assert!(v.is_ok(), "{title} {form} {heads}: {}\n{v}", a.text);
        assert_eq!(a.units.len(), c.form.lines());
        for (k, h) in c.heads.iter().enumerate() {
            assert!(a.units[k].text.starts_with(*h), "line {k} of {} must start with {h}", a.text);
        }
        let b = generate_inverse(&cx, &task, &f, &mut PoemRules::new(c), &opts, None).unwrap();
        assert_eq!(a.text, b.text, "same seed, same poem");
        assert!((a.score - b.score).abs() < 1e-9);
    }
}

#[test]
fn streaming_reports_every_unit_in_order() {
    let (model, tok) = poetry();
    let cx = Context::new(model.as_ref(), &tok).unwrap();
    let mut task = small_task();
    task.search.refine_rounds = 0;
    let c = Constraints::parse("五绝", "pingshui", "").unwrap();
    let mut seen: Vec<(usize, String)> = vec![];
    let mut cb = |k: usize, u: &str| seen.push((k, u.to_string()));
    let out = generate_inverse(
        &cx,
        &task,
        &fields(&task, "江雪", c.form.name()),
        &mut PoemRules::new(c),
        &InverseOptions::default(),
        Some(&mut cb),
    )
    .unwrap();
    assert_eq!(seen.iter().map(|s| s.0).collect::<Vec<_>>(), vec![0, 1, 2, 3]);
    assert_eq!(seen.iter().map(|s| s.1.as_str()).collect::<String>(), out.text);
}

#[test]
fn baseline_runs_without_an_inverse_pass() {
    let (model, tok) = poetry();
    let cx = Context::new(model.as_ref(), &tok).unwrap();
    let task = small_task();
    let c = Constraints::parse("五绝", "pingshui", "").unwrap();
    let opts = InverseOptions { use_inverse: false, explain: true, ..Default::default() };
    let out = generate_inverse(&cx, &task, &fields(&task, "江雪", c.form.name()), &mut PoemRules::new(c.clone()), &opts, None).unwrap();
    assert!(check_poem(&out.text, &c).unwrap().is_ok());
    assert_eq!(out.candidates_scored, 0, "no inverse pass");
    assert!(out.units.iter().all(|u| u.inverse == 0.0));
    assert!(!out.explain.is_empty() && out.explain[0].top.iter().any(|r| r.kept));
}

/// Inverse rows for three poems and their titles (Part A with `[sMASK]` where the title was),
/// each emphasizing its poem with `weight` when given.
fn title_rows(tok: &Tokenizer, weight: Option<f32>) -> Vec<SpanRow> {
    let sp = &tok.special;
    let (cls, smask, eop) = (sp.get("cls").unwrap(), sp.get("smask").unwrap(), sp.get("eop").unwrap());
    let mut rows = vec![];
    for (poem, title) in
        [("白日依山尽，黄河入海流。", "登鹳雀楼"), ("床前明月光，", "静夜思"), ("千山鸟飞绝，万径人踪灭。孤舟蓑笠翁，", "江雪")]
    {
        let row = |poem: &str| {
            let mut a = vec![cls];
            a.extend(tok.encode("题名：", false).unwrap());
            a.push(smask);
            a.extend(tok.encode(&format!("；作者：李白；体裁：五言绝句；正文：{poem}"), false).unwrap());
            a
        };
        let (a, mask_position) = (row(poem), 1 + tok.encode("题名：", false).unwrap().len());
        let mut target = tok.encode(title, false).unwrap();
        target.push(eop);
        let emphasis = weight.map(|w| Emphasis::of_difference(&a, &row(""), w).expect("the poem is in the row"));
        rows.push(SpanRow { context: a, mask_position, target, emphasis });
    }
    rows
}

#[test]
fn emphasis_covers_the_tokens_a_part_adds() {
    let e = Emphasis::of_difference(&[1, 2, 3, 9, 9, 4, 5], &[1, 2, 3, 4, 5], 0.5).unwrap();
    assert_eq!((e.keys.clone(), e.weight), (3..5, 0.5));
    // A repeated token at the seam is counted once.
    assert_eq!(Emphasis::of_difference(&[1, 2, 2, 3], &[1, 2, 3], 1.0).unwrap().keys, 2..3);
    assert_eq!(Emphasis::of_difference(&[1, 2, 7], &[1, 2], 1.0).unwrap().keys, 2..3);
    assert!(Emphasis::of_difference(&[1, 2], &[1, 2], 1.0).is_none());
    assert_eq!(e.bias_row(7), vec![0.0, 0.0, 0.0, 0.5, 0.5, 0.0, 0.0]);
}

#[test]
fn emphasized_span_scores_batch_like_one_by_one_and_differ() {
    let (model, tok) = poetry();
    let sop = tok.special.get("sop").unwrap();
    let rows = title_rows(&tok, Some(0.5));
    assert_eq!(rows[1].emphasis.as_ref().unwrap().keys.len(), 6, "床前明月光，");
    let batched = span_logprobs(model.as_ref(), sop, &rows, None).unwrap();
    let plain = span_logprobs(model.as_ref(), sop, &title_rows(&tok, None), None).unwrap();
    for (i, r) in rows.iter().enumerate() {
        let one = span_logprobs(model.as_ref(), sop, std::slice::from_ref(r), None).unwrap();
        for (a, b) in one[0].iter().zip(&batched[i]) {
            assert!((a - b).abs() <= 1e-4, "row {i}: {a} vs {b}");
        }
        let shift: f64 = batched[i].iter().zip(&plain[i]).map(|(a, b)| (a - b).abs()).sum();
        assert!(shift > 1e-3, "row {i}: the emphasis changed nothing");
    }
}

#[test]
fn biased_decoding_with_a_cache_equals_one_full_pass() {
    use candle_core::{Device, Tensor};
    use wenhui::generate::{GlmBlankInputs, StepInputs};
    use wenhui::model::{Attention, BackboneInput};
    let (model, tok) = poetry();
    let dev = Device::Cpu;
    let part_a = |title: &str| {
        let mut a = vec![tok.special.get("cls").unwrap()];
        a.extend(tok.encode(&format!("题名：{title}；作者：李白；体裁：五言绝句；正文：[gMASK]"), false).unwrap());
        a
    };
    let a = part_a("江雪");
    let n = a.len();
    let mask = n - 1;
    let title = Emphasis::of_difference(&a, &part_a(""), 0.5).unwrap();
    assert_eq!(title.keys, 4..6, "[CLS] 题 名 ： 江 雪");
    let bias = Tensor::from_vec(title.bias_row(n), (1, n), &dev).unwrap();
    let mut b = vec![tok.special.get("sop").unwrap()];
    b.extend(tok.encode("千山鸟", false).unwrap());
    // One pass over Part A and Part B, with and without the bias.
    let full = model.forward(&full_pass_input(&a, &b, mask).with_key_bias(bias.clone()), None).unwrap().logits.squeeze(0).unwrap();
    let unbiased = model.forward(&full_pass_input(&a, &b, mask), None).unwrap().logits.squeeze(0).unwrap();
    // Part A, then Part B one token at a time through the cache.
    let mut cache = model.new_cache();
    let pos_a: Vec<u32> = (0..n as u32).chain(std::iter::repeat_n(0, n)).collect();
    let part_a = BackboneInput::ids(Tensor::new(a.as_slice(), &dev).unwrap().unsqueeze(0).unwrap())
        .with_positions(Tensor::from_vec(pos_a, (1, 2, n), &dev).unwrap())
        .with_attention(Attention::Sep(vec![n]))
        .with_key_bias(bias.clone());
    model.forward(&part_a, Some(&mut cache)).unwrap();
    let mut steps = GlmBlankInputs::new(mask, model.info().max_positions);
    steps.key_bias = Some(bias);
    for (k, &t) in b.iter().enumerate() {
        let ids = Tensor::new(&[t], &dev).unwrap().unsqueeze(0).unwrap();
        let step = model.forward(&steps.input(ids, k).unwrap(), Some(&mut cache)).unwrap().logits.squeeze(0).unwrap().squeeze(0).unwrap();
        let want = full.get(n + k).unwrap();
        let err = wenhui::ops::max_abs_diff(&step, &want).unwrap();
        assert!(err <= 1e-4, "token {k}: max abs error {err}");
        let moved = (want - unbiased.get(n + k).unwrap()).unwrap().abs().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
        assert!(moved > 1e-3, "token {k}: the bias changed nothing");
    }
}

/// Part A `a` (blank at `mask`) and Part B `b` in one GLM pass.
fn full_pass_input(a: &[u32], b: &[u32], mask: usize) -> wenhui::model::BackboneInput {
    use candle_core::{Device, Tensor};
    let n = a.len();
    let ids: Vec<u32> = a.iter().chain(b).copied().collect();
    let pos: Vec<u32> =
        (0..n as u32).chain(std::iter::repeat_n(mask as u32, b.len())).chain(std::iter::repeat_n(0, n)).chain(1..=b.len() as u32).collect();
    wenhui::model::BackboneInput::ids(Tensor::new(ids.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap())
        .with_positions(Tensor::from_vec(pos, (1, 2, ids.len()), &Device::Cpu).unwrap())
        .with_attention(wenhui::model::Attention::Sep(vec![n]))
}

#[test]
fn attention_bias_changes_only_the_inverse_method() {
    let (model, tok) = poetry();
    let cx = Context::new(model.as_ref(), &tok).unwrap();
    let plain = small_task();
    let mut biased = small_task();
    biased.inverse.attention_bias = 0.5;
    let c = Constraints::parse("五绝", "pingshui", "").unwrap();
    let f = fields(&plain, "江雪", c.form.name());
    let run = |task: &Task, use_inverse: bool| {
        let opts = InverseOptions { seed: 3, use_inverse, ..Default::default() };
        generate_inverse(&cx, task, &f, &mut PoemRules::new(c.clone()), &opts, None).unwrap()
    };
    let (bi, pi) = (run(&biased, true), run(&plain, true));
    assert!(check_poem(&bi.text, &c).unwrap().is_ok(), "{}", bi.text);
    assert!((bi.score - pi.score).abs() > 1e-6, "the emphasis changed no score");
    // The search baseline is plain search: the re-weighting belongs to inverse prompting.
    let (bb, pb) = (run(&biased, false), run(&plain, false));
    assert_eq!(bb.text, pb.text);
    assert!((bb.score - pb.score).abs() < 1e-9);
}

#[test]
fn contrastive_choice_scores_texts_against_generic_targets() {
    let (model, tok) = poetry();
    let cx = Context::new(model.as_ref(), &tok).unwrap();
    let mut task = small_task();
    let c = Constraints::parse("五绝", "pingshui", "").unwrap();
    let f = fields(&task, "登鹳雀楼", c.form.name());
    let prep = cx.prepare(&task, &f).unwrap();
    let texts = ["白日依山尽，黄河入海流。".to_string(), "床前明月光，疑是地上霜。".to_string()];
    let table = cx.target_table(&prep, &task, &texts, &["登鹳雀楼".to_string(), "送别".to_string(), "秋思".to_string()]).unwrap();
    assert_eq!((table.len(), table[0].len()), (2, 3));
    assert!(table.iter().flatten().all(|x| x.is_finite() && *x < 0.0));
    // The true target's column is the plain inverse score of the same text.
    task.inverse.attention_bias = 0.0;
    let prep = cx.prepare(&task, &f).unwrap();
    let plain = cx.inverse_scores(&prep, &task, &texts, &[String::new(), String::new()]).unwrap();
    for (row, ip) in table.iter().zip(&plain) {
        assert!((row[0] - ip).abs() < 1e-4, "{} vs {ip}", row[0]);
    }
    // A contrastive search still meets every constraint and is reproducible.
    task.inverse.contrast = 1.0;
    task.inverse.contrast_targets = vec!["送别".into(), "秋思".into(), "登鹳雀楼".into()];
    task.validate().unwrap();
    let opts = InverseOptions { seed: 5, ..Default::default() };
    let a = generate_inverse(&cx, &task, &f, &mut PoemRules::new(c.clone()), &opts, None).unwrap();
    assert!(check_poem(&a.text, &c).unwrap().is_ok(), "{}", a.text);
    let b = generate_inverse(&cx, &task, &f, &mut PoemRules::new(c), &opts, None).unwrap();
    assert_eq!(a.text, b.text);
}

#[test]
fn batched_span_scores_equal_one_by_one() {
    let (model, tok) = poetry();
    let sop = tok.special.get("sop").unwrap();
    let rows = title_rows(&tok, None);
    let batched = span_logprobs(model.as_ref(), sop, &rows, None).unwrap();
    for (i, r) in rows.iter().enumerate() {
        let one = span_logprobs(model.as_ref(), sop, std::slice::from_ref(r), None).unwrap();
        assert_eq!(one[0].len(), batched[i].len());
        for (a, b) in one[0].iter().zip(&batched[i]) {
            assert!((a - b).abs() <= 1e-4, "row {i}: {a} vs {b}");
            assert!(*a < 0.0);
        }
    }
}

#[test]
fn last_layer_on_selected_rows_only_changes_nothing() {
    use candle_core::{Device, Tensor};
    use wenhui::model::{Attention, BackboneInput};
    let (model, tok) = poetry();
    let ids = tok.encode("题名：江雪；作者：李白；体裁：五言绝句；正文：千山鸟飞绝，万径人踪灭。", false).unwrap();
    let n = ids.len() as u32;
    let pos: Vec<u32> = (0..n).chain(std::iter::repeat_n(0, n as usize)).collect();
    let input = |ids: &[u32]| {
        BackboneInput::ids(Tensor::new(ids, &Device::Cpu).unwrap().unsqueeze(0).unwrap())
            .with_positions(Tensor::from_vec(pos.clone(), (1, 2, n as usize), &Device::Cpu).unwrap())
            .with_attention(Attention::Sep(vec![n as usize - 4]))
    };
    let rows = Tensor::new(&[n - 4, n - 2, n - 1], &Device::Cpu).unwrap();
    let full = model.forward(&input(&ids).with_logit_rows(rows.clone()), None).unwrap().logits;
    let pruned = model.forward(&input(&ids).with_logit_rows_only(rows), None).unwrap().logits;
    assert_eq!(full.dims(), pruned.dims());
    let diff = wenhui::ops::max_abs_diff(&full, &pruned).unwrap();
    assert!(diff <= 1e-4, "max |Δlogit| = {diff}");
}

/// `gpt2-tiny` (random weights, no tokenizer of its own) with a character tokenizer whose ids fit its
/// vocabulary.
fn gpt2() -> (Box<dyn Backbone>, Tokenizer) {
    let dir =
        std::env::var_os("WENHUI_GPT2_FIXTURE").map(PathBuf::from).unwrap_or_else(|| Path::new("tests/fixtures/gpt2-tiny").to_path_buf());
    let m = load_model(&dir, &LoadOptions::default()).unwrap();
    let tok = CharVocab::from_chars("abcdefghijklmnopqrstuvwxyz .,!?:\"T".chars()).build().unwrap();
    assert!(tok.vocab_size(true) <= m.backbone.info().vocab_size);
    (m.backbone, tok)
}

#[test]
fn batched_causal_scores_equal_one_by_one() {
    let (model, _) = gpt2();
    let rows: Vec<(Vec<u32>, Vec<u32>)> =
        vec![(vec![5, 9, 11], vec![3, 4]), (vec![7], vec![8, 9, 10, 2]), (vec![1, 2, 3, 4, 5, 6], vec![6])];
    let batched = causal_logprobs(model.as_ref(), &rows, None).unwrap();
    for (i, r) in rows.iter().enumerate() {
        let one = causal_logprobs(model.as_ref(), std::slice::from_ref(r), None).unwrap();
        for (a, b) in one[0].iter().zip(&batched[i]) {
            assert!((a - b).abs() <= 1e-4, "row {i}: {a} vs {b}");
        }
    }
    let clamped = causal_logprobs(model.as_ref(), &rows, Some(-0.5)).unwrap();
    assert!(clamped.iter().flatten().all(|&x| x >= -0.5));
}

#[test]
fn causal_inverse_runs_on_a_left_to_right_model() {
    let (model, tok) = gpt2();
    let cx = Context::new(model.as_ref(), &tok).unwrap();
    let task = Task::from_toml(
        r#"
name = "topic"
required = ["topic"]
[forward]
prompt = "Topic: {topic}. Text:{text}"
[inverse]
mode = "causal"
target = "topic"
context = "\"{window}\" discusses the topic \""
target_text = "{topic}\""
window = { kind = "unit" }
[units]
ends = [",", ".", "!", "?"]
min_chars = 3
max_chars = 40
max_units = 3
[score]
copy_weight = 0.0
[search]
beams = 2
per_beam = 3
first_pool = 4
max_redraws = 50
"#,
        "test",
    )
    .unwrap();
    assert_eq!(task.inverse.mode, InverseMode::Causal);
    let f = task.fields(&BTreeMap::from([("topic".to_string(), "cats".to_string())])).unwrap();
    let opts = InverseOptions { seed: 3, ..Default::default() };
    let run = || generate_inverse(&cx, &task, &f, &mut PlainRules::new(task.units.clone()), &opts, None);
    match (run(), run()) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a.text, b.text);
            assert!(a.units.iter().all(|u| u.inverse < 0.0 && u.text.chars().count() <= 40));
        }
        // A random tiny model may find no sub-sentence ending with punctuation: the error says so.
        (Err(e), Err(_)) => assert!(e.to_string().contains("no candidate"), "{e}"),
        (a, b) => panic!("not deterministic: {a:?} vs {b:?}"),
    }
    // A GLM-native inverse cannot run on GPT-2.
    let glm = Task::builtin("answer").unwrap();
    let f = glm.fields(&BTreeMap::from([("question".to_string(), "why".to_string())])).unwrap();
    let e = generate_inverse(&cx, &glm, &f, &mut PlainRules::new(glm.units.clone()), &opts, None).unwrap_err();
    assert!(e.to_string().contains("needs a GLM model"), "{e}");
}

#[test]
fn answers_run_on_the_poetry_model() {
    let (model, tok) = poetry();
    let cx = Context::new(model.as_ref(), &tok).unwrap();
    let mut task = Task::builtin("answer").unwrap();
    task.units.max_units = 3;
    task.search.beams = 2;
    task.search.per_beam = 3;
    task.search.first_pool = 6;
    let f = task.fields(&BTreeMap::from([("question".to_string(), "春天为什么美".to_string())])).unwrap();
    let out = generate_inverse(&cx, &task, &f, &mut PlainRules::new(task.units.clone()), &InverseOptions::default(), None);
    match out {
        Ok(o) => assert!(!o.text.is_empty() && o.units.len() <= 3),
        Err(e) => assert!(e.to_string().contains("no candidate"), "{e}"),
    }
}

#[test]
fn windows_follow_the_official_layouts() {
    let units: Vec<String> = ["白日依山尽，", "黄河入海流。", "欲穷千里目，"].map(String::from).to_vec();
    assert_eq!(window(Window::All, &units, "更上一层楼。"), "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。");
    assert_eq!(window(Window::Unit, &units, "更上一层楼。"), "更上一层楼。");
    assert_eq!(window(Window::Couplet, &units, "更上一层楼。"), "欲穷千里目，更上一层楼。");
    assert_eq!(window(Window::Couplet, &units[..2], "欲穷千里目，"), "白日依山尽，黄河入海流。欲穷千里目，");
    assert_eq!(window(Window::Couplet, &[], "白日依山尽，"), "白日依山尽，");
    assert_eq!(window(Window::LastChars(5), &units, "更上一层楼。"), "欲穷千里目，更上一层楼。");
}

#[test]
fn bad_input_is_a_clear_error() {
    for (form, heads, want) in
        [("五绝", "春夏秋", "one head character per line"), ("五绝", "abcd", "not a Chinese character"), ("六绝", "", "unknown poem form")]
    {
        let e = Constraints::parse(form, "pingshui", heads).unwrap_err().to_string();
        assert!(e.contains(want), "{form} {heads}: {e}");
    }
    assert!(Constraints::parse("五绝", "nope", "").unwrap_err().to_string().contains("unknown rhyme table"));
    let task = Task::builtin("poem").unwrap();
    let e = task.fields(&BTreeMap::from([("title".to_string(), "  ".to_string())])).unwrap_err().to_string();
    assert!(e.contains("needs a non-empty `title`"), "{e}");
    let e = task.fields(&BTreeMap::from([("colour".to_string(), "x".to_string())])).unwrap_err().to_string();
    assert!(e.contains("has no field `colour`"), "{e}");
    // A prompt longer than the model's context.
    let (model, tok) = poetry();
    let cx = Context::new(model.as_ref(), &tok).unwrap();
    let long = "长".repeat(400);
    let c = Constraints::parse("五绝", "pingshui", "").unwrap();
    let e = generate_inverse(&cx, &task, &fields(&task, &long, c.form.name()), &mut PoemRules::new(c), &InverseOptions::default(), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("positions"), "{e}");
    // Malformed templates.
    for (toml, want) in [
        ("name = 'x'", "not a valid task file"),
        ("name='x'\nrequired=['t']\n[forward]\nprompt='{t}'\n[inverse]\ntarget='t'", "`{text}` exactly once"),
        ("name='x'\nrequired=['t']\n[forward]\nprompt='{t}{text}'\n[inverse]\ntarget='q'", "inverse.target `q`"),
        ("name='x'\nrequired=['t']\n[forward]\nprompt='{t}{text}'\n[inverse]\nmode='causal'\ntarget='t'", "inverse.context"),
        ("name='x'\nrequired=['t']\n[forward]\nprompt='{t}{text}'\n[inverse]\ntarget='t'\n[search]\nbeams=0", "at least 1"),
        ("name='x'\nrequired=['t']\n[forward]\nprompt='{t}{text}'\n[inverse]\ntarget='t'\nattention_bias=20.0", "between -10 and 10"),
        ("name='x'\nrequired=['t']\n[forward]\nprompt='{t}{text}'\n[inverse]\ntarget='t'\ncontrast=1.0", "needs inverse.contrast_targets"),
        ("name='x'\nrequired=['t']\n[forward]\nprompt='{t}{text}'\n[inverse]\ntarget='t'\ncontrast=-1.0\ncontrast_targets=['a']", "between 0 and 10"),
        (
            "name='x'\nrequired=['t']\n[forward]\nprompt='{t}{text}'\n[inverse]\nmode='causal'\ntarget='t'\ncontext='{window}'\ntarget_text='t'\nattention_bias=0.5",
            "need the GLM-native inverse",
        ),
    ] {
        let e = Task::from_toml(toml, "t.toml").unwrap_err().to_string();
        assert!(e.contains(want), "{toml}: {e}");
    }
    assert!(Task::builtin("sonnet").is_err());
}

#[test]
fn more_beams_score_proportionally_more_candidates() {
    let mut t = Task::builtin("poem").unwrap();
    let (beams, cap) = (t.search.beams, t.search.max_scored);
    assert!(cap > 0 && beams > 0);
    t.search.set_beams(beams * 2);
    assert_eq!((t.search.beams, t.search.max_scored), (beams * 2, cap * 2));
    t.search.set_beams(1);
    assert_eq!((t.search.beams, t.search.max_scored), (1, cap.div_ceil(beams)));
    // No cap stays no cap.
    t.search.max_scored = 0;
    t.search.set_beams(10);
    assert_eq!(t.search.max_scored, 0);
}

/// A spec for one-token units drawn among `allowed` (or `first`), judged by `check`.
fn one_token_spec<'a>(
    allowed: &'a [bool],
    first: Option<&'a [u32]>,
    check: &'a dyn Fn(&str) -> LineStatus,
    decode: &'a dyn Fn(&[u32]) -> wenhui::Result<String>,
) -> wenhui::generate::inverse::SampleSpec<'a> {
    use wenhui::generate::inverse::SampleSpec as S;
    S { allowed, first, steer: None, stops: &[], check, decode, max_tokens: 1, temperature: 1.0, max_redraws: 8 }
}

#[test]
fn sampler_never_ends_a_rhyme_line_on_a_character_missing_from_the_rhyme_table() {
    use rand::SeedableRng;
    use wenhui::generate::inverse::{sample_units, UnitRules};
    use wenhui::generate::CausalInputs;
    let (model, tok) = poetry();
    // `wenhui poem --title 月夜 --form 五律 --seed 0 --no-inverse` used to end line 4 on 疎, which no
    // rhyme table lists (nor, through the traditional map, any form of it).
    let units: Vec<String> = ["露下寒灯滴，", "清风露气生。", "暗来何处在，"].map(String::from).to_vec();
    let rules = PoemRules::new(Constraints::parse("五律", "pingshui", "").unwrap());
    // The sampled unit is line 4's rhyme character: the check completes the line around it.
    let check = |t: &str| rules.check(&units, &format!("芳草自纵{t}。"));
    assert_eq!(check("疎"), LineStatus::Rejected);
    assert_eq!(check("横"), LineStatus::Complete, "横 (八庚) rhymes with 生");
    let id = |c: &str| {
        let ids = tok.encode(c, false).unwrap();
        assert_eq!(ids.len(), 1, "{c} is one token");
        ids[0] as usize
    };
    let (unknown, rhyme) = (id("疎"), id("横"));
    let vocab = model.info().vocab_size;
    // The model all but insists on 疎: only a sampler that checks the rhyme can avoid it.
    let mut logits = vec![-1e4f32; vocab];
    logits[unknown] = 20.0;
    logits[rhyme] = 0.0;
    let mut allowed = vec![false; vocab];
    allowed[unknown] = true;
    allowed[rhyme] = true;
    let decode = |ids: &[u32]| tok.decode(ids, true);
    let spec = one_token_spec(&allowed, None, &check, &decode);
    let cache = model.new_cache();
    let inputs = CausalInputs::new(model.as_ref());
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let out = sample_units(model.as_ref(), &cache, &logits, &inputs, 0, 4, &spec, &mut rng).unwrap();
    assert_eq!(out.iter().map(|c| c.text.as_str()).collect::<Vec<_>>(), ["横"]);
    // The checker agrees: the old line is a hard violation, not a warning.
    let v = check_poem("露下寒灯滴，清风露气生。暗来何处在，芳草发疎疎。", &Constraints::parse("五绝", "pingshui", "").unwrap()).unwrap();
    assert!(v.violates(Rule::RhymeUnknown) && !v.is_ok(), "{v}");
}

#[test]
fn a_head_token_outside_the_models_vocabulary_is_an_error() {
    use rand::SeedableRng;
    use wenhui::generate::inverse::sample_units;
    use wenhui::generate::CausalInputs;
    let (model, tok) = poetry();
    let vocab = model.info().vocab_size;
    // A tokenizer with more ids than the model has logits (`--model` with a mismatched tokenizer).
    let head = [vocab as u32 + 1629];
    let logits = vec![0f32; vocab];
    let allowed = vec![true; vocab];
    let check = |_: &str| LineStatus::Complete;
    let decode = |ids: &[u32]| tok.decode(ids, true);
    let spec = one_token_spec(&allowed, Some(&head), &check, &decode);
    let inputs = CausalInputs::new(model.as_ref());
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let err = sample_units(model.as_ref(), &model.new_cache(), &logits, &inputs, 0, 2, &spec, &mut rng).unwrap_err().to_string();
    let want = format!("head token id {} is out of range for a vocabulary of {vocab}", head[0]);
    assert!(err.contains(&want), "{err}");
}

/// Refinement scores a line that stands anywhere in the poem: its tokens are emphasized as the
/// search emphasizes a new last line (each line of a poem scored in the whole-poem window gets its
/// own score, none the plain unemphasized one).
#[test]
fn a_line_inside_the_window_gets_the_emphasis() {
    let (model, tok) = poetry();
    let cx = Context::new(model.as_ref(), &tok).unwrap();
    let task = small_task();
    assert!(task.inverse.attention_bias != 0.0);
    let c = Constraints::parse("五绝", "pingshui", "").unwrap();
    let f = fields(&task, "登鹳雀楼", c.form.name());
    let prep = cx.prepare(&task, &f).unwrap();
    let lines = ["白日依山尽，", "黄河入海流。", "欲穷千里目，", "更上一层楼。"];
    let poem = lines.concat();
    let mut without: Vec<String> = (0..4).map(|i| lines.iter().enumerate().filter(|&(k, _)| k != i).map(|(_, l)| *l).collect()).collect();
    without.push(poem.clone()); // nothing new: no emphasis
    let windows = vec![poem.clone(); 5];
    let scores = cx.inverse_scores(&prep, &task, &windows, &without).unwrap();
    for i in 0..4 {
        assert!((scores[i] - scores[4]).abs() > 1e-4, "line {i} was not emphasized: {scores:?}");
        for j in 0..i {
            assert!((scores[i] - scores[j]).abs() > 1e-6, "lines {j} and {i} scored alike: {scores:?}");
        }
    }
    // The last line: the same as the search's suffix form.
    let suffix = cx.inverse_scores(&prep, &task, std::slice::from_ref(&poem), &[lines[..3].concat()]).unwrap();
    assert!((suffix[0] - scores[3]).abs() < 1e-4, "{} vs {}", suffix[0], scores[3]);
}

#[test]
fn a_continuation_scored_over_the_cache_equals_the_full_span_pass() {
    let (model, tok) = poetry();
    let cx = Context::new(model.as_ref(), &tok).unwrap();
    let sop = tok.special.get("sop").unwrap();
    let gmask = tok.special.get("gmask").unwrap();
    let part_a = |title: &str| {
        let mut a = vec![tok.special.get("cls").unwrap()];
        a.extend(tok.encode(&format!("题名：{title}；作者：李白；体裁：五言绝句；正文：[gMASK]"), false).unwrap());
        a
    };
    let line = tok.encode("千山鸟飞绝，", false).unwrap();
    for bias in [0.0, 1.0] {
        let mut task = Task::builtin("poem").unwrap();
        task.inverse.attention_bias = bias;
        let prep = cx.prepare(&task, &fields(&task, "江雪", "五言绝句")).unwrap();
        let a = part_a("江雪");
        assert_eq!(prep.prompt(), a.as_slice(), "the poem task's Part A");
        let (cache, first) = cx.forward_root(&prep).unwrap();
        let inputs = cx.step_inputs(&prep).unwrap();
        let cached = cx.continuation_score(&cache, &first, inputs.as_ref(), 1, &line).unwrap();
        let row = SpanRow {
            mask_position: a.iter().position(|&t| t == gmask).unwrap(),
            emphasis: Emphasis::of_difference(&a, &part_a(""), bias).filter(|_| bias != 0.0),
            context: a,
            target: line.clone(),
        };
        let full: f64 = span_logprobs(model.as_ref(), sop, &[row], None).unwrap()[0].iter().sum();
        assert!(cached.is_finite() && cached < 0.0, "bias {bias}: {cached}");
        assert!((cached - full).abs() <= 1e-4, "bias {bias}: over the cache {cached}, full pass {full}");
        // The cache is not changed: scoring again gives the same number.
        assert_eq!(cx.continuation_score(&cache, &first, inputs.as_ref(), 1, &line).unwrap(), cached);
        // One token needs no pass; none scores 0.
        let one = cx.continuation_score(&cache, &first, inputs.as_ref(), 1, &line[..1]).unwrap();
        assert!(one < 0.0 && one > cached);
        assert_eq!(cx.continuation_score(&cache, &first, inputs.as_ref(), 1, &[]).unwrap(), 0.0);
    }
}
