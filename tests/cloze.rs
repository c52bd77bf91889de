//! Cloze templates, per-backbone layouts, verbalizer scoring and FewGLUE task files, on the tiny
//! committed fixtures (glm-tiny, bert-mlm-tiny, gpt2-tiny) with a character-level tokenizer.
//! Tests that read `../shared/data/fewglue` (or `WENHUI_FEWGLUE`) print a note and skip when it
//! is absent.

mod common;
use common::{fewglue_dir, SINGLE_TASK};
use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, D};
use wenhui::cloze::{
    build_input, classify, classify_batch, compile, metrics, parse_jsonl, read_jsonl, ClassifyOptions, ClozeTask, CompileOptions, Part,
    Reader, Template,
};
use wenhui::model::{load_model, Attention, Backbone, BackboneInput, LoadOptions, ModelKind};
use wenhui::tokenizer::{CharVocab, Tokenizer};

/// Letters a..z get ids 10..35, `.` 36, `,` 37, `!` 38, `?` 39, `:` 40, `'` 41, `*` 42, `-` 43,
/// A..Z 44..69, digits 70..79 (command tokens 0..9: eos 0, cls 1, mask 2, sep 3, unk 4, sop 5, eop 6).
fn chars() -> Tokenizer {
    let set = "abcdefghijklmnopqrstuvwxyz.,!?:'*-ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    CharVocab::from_chars(set.chars()).build().unwrap()
}

fn model(name: &str) -> Box<dyn Backbone> {
    load_model(&Path::new("tests/fixtures").join(name), &LoadOptions::default()).unwrap().backbone
}

fn fields(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn names(xs: &[&str]) -> Vec<String> {
    xs.iter().map(|s| s.to_string()).collect()
}

#[test]
fn template_parses_fields_pseudo_tokens_and_the_slot() {
    let t =
        Template::parse("[P*3] {premise} [P*3] Question: {hypothesis} ? [P] Answer: [MASK] .", &names(&["premise", "hypothesis"])).unwrap();
    let parts: Vec<&Part> = t.segments().iter().map(|s| &s.part).collect();
    assert_eq!(
        parts,
        vec![
            &Part::Pseudo(3),
            &Part::Field("premise".into()),
            &Part::Pseudo(3),
            &Part::Text("Question:".into()),
            &Part::Field("hypothesis".into()),
            &Part::Text("?".into()),
            &Part::Pseudo(1),
            &Part::Text("Answer:".into()),
            &Part::Mask,
            &Part::Text(".".into()),
        ]
    );
    let spaces: Vec<bool> = t.segments().iter().map(|s| s.space_before).collect();
    assert_eq!(spaces, vec![false, true, true, true, true, true, true, true, true, true]);
    assert_eq!(t.num_pseudo(), 7);
    assert!(t.space_before_mask());
    assert_eq!(t.without_pseudo().num_pseudo(), 0);
    let glued = Template::parse("*{w}*[MASK]", &names(&["w"])).unwrap();
    assert!(glued.segments().iter().all(|s| !s.space_before));
    let braces = Template::parse("{{x}} [MASK]", &[]).unwrap();
    assert_eq!(braces.segments()[0].part, Part::Text("{x}".into()));
}

#[test]
fn bad_templates_are_clear_errors() {
    let f = names(&["premise"]);
    let cases = [
        ("{premise} Answer:", "no answer slot"),
        ("[MASK] {premise} [MASK]", "2 answer slots"),
        ("{premise} {hypothesis} [MASK]", "unknown field `{hypothesis}`"),
        ("[P*x] {premise} [MASK]", "malformed `[P*x]`"),
        ("[P*0] {premise} [MASK]", "malformed `[P*0]`"),
        ("[P*2 {premise} [MASK]", "malformed"),
        ("{premise [MASK]", "never closed"),
        ("{} [MASK]", "empty field name"),
    ];
    for (src, want) in cases {
        let e = Template::parse(src, &f).unwrap_err().to_string();
        assert!(e.contains(want) && e.contains(src), "{src}: {e}");
    }
    let e = Template::parse("数据 {premise} {x} [MASK]", &f).unwrap_err().to_string();
    assert!(e.contains("character 14"), "the position counts characters: {e}");
}

fn golden_template() -> Template {
    Template::parse("[P*2] {a} x [MASK] .", &names(&["a"])).unwrap()
}

#[test]
fn golden_layouts_per_backbone() {
    let tok = chars();
    let t = golden_template();
    let f = fields(&[("a", "bc")]);
    let opts = CompileOptions::new(64);
    let glm = compile(&t, ModelKind::Glm, &tok, &f, &opts).unwrap();
    assert_eq!(glm.ids, vec![1, 4, 4, 11, 12, 33, 2, 36, 0, 5]);
    assert_eq!(glm.positions, vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 6]);
    assert_eq!(glm.block_positions, vec![0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    assert_eq!((glm.pseudo.clone(), glm.mask, glm.answer_row, glm.sep), (vec![1, 2], Some(6), 9, 9));
    let no_eos = compile(&t, ModelKind::Glm, &tok, &f, &CompileOptions { glm_eos: false, ..opts.clone() }).unwrap();
    assert_eq!(no_eos.ids, vec![1, 4, 4, 11, 12, 33, 2, 36, 5]);
    assert_eq!((no_eos.answer_row, no_eos.positions[8]), (8, 6));

    let bert = compile(&t, ModelKind::Bert, &tok, &f, &opts).unwrap();
    assert_eq!(bert.ids, vec![1, 4, 4, 11, 12, 33, 2, 36, 3]);
    assert_eq!(bert.positions, (0..9).collect::<Vec<u32>>());
    assert!(bert.block_positions.is_empty());
    assert_eq!((bert.pseudo.clone(), bert.mask, bert.answer_row), (vec![1, 2], Some(6), 6));

    let gpt = compile(&t, ModelKind::Gpt2, &tok, &f, &opts).unwrap();
    assert_eq!(gpt.ids, vec![4, 4, 11, 12, 33]);
    assert_eq!((gpt.pseudo.clone(), gpt.mask, gpt.answer_row), (vec![0, 1], None, 4));

    // Multi-token answers: GLM Part B `[sop] a b`, targets `a b [eop]`; GPT-2 appends `a`; BERT `[MASK] [MASK]`.
    let glm_ab = glm.with_answer(&[10, 11], Some(6), 64).unwrap();
    assert_eq!(glm_ab.ids, vec![1, 4, 4, 11, 12, 33, 2, 36, 0, 5, 10, 11]);
    assert_eq!(&glm_ab.positions[9..], &[6, 6, 6]);
    assert_eq!(&glm_ab.block_positions[9..], &[1, 2, 3]);
    assert_eq!(glm_ab.targets, vec![(9, 10), (10, 11), (11, 6)]);
    let gpt_ab = gpt.with_answer(&[10, 11], None, 64).unwrap();
    assert_eq!(gpt_ab.ids, vec![4, 4, 11, 12, 33, 10]);
    assert_eq!(gpt_ab.targets, vec![(4, 10), (5, 11)]);
    // BERT: the mask widens to one per answer token.
    let bert_ab = bert.with_answer(&[10, 11], None, 64).unwrap();
    assert_eq!(bert_ab.ids, vec![1, 4, 4, 11, 12, 33, 2, 2, 36, 3]);
    assert_eq!(bert_ab.positions, (0..10).collect::<Vec<u32>>());
    assert_eq!(bert_ab.targets, vec![(6, 10), (7, 11)]);
}

#[test]
fn truncation_cuts_the_longest_field_and_keeps_the_slot() {
    let tok = chars();
    let t = Template::parse("[P] {a} [P] {b} q [MASK] .", &names(&["a", "b"])).unwrap();
    let f = fields(&[("a", "abcdefghij"), ("b", "xyz")]);
    // GLM fixed parts: cls, P, P, q, mask, ., eos, sop = 8; fields 13.
    let full = compile(&t, ModelKind::Glm, &tok, &f, &CompileOptions::new(64)).unwrap();
    assert_eq!((full.ids.len(), full.truncated), (21, 0));
    let cut5 = compile(&t, ModelKind::Glm, &tok, &f, &CompileOptions::new(16)).unwrap();
    assert_eq!((cut5.ids.len(), cut5.truncated), (16, 5));
    assert_eq!(&cut5.ids[..7], &[1, 4, 10, 11, 12, 13, 14], "a keeps its first 5 characters");
    assert_eq!(&cut5.ids[7..11], &[4, 33, 34, 35], "b is untouched");
    let cut9 = compile(&t, ModelKind::Glm, &tok, &f, &CompileOptions::new(12)).unwrap();
    assert_eq!(cut9.ids, vec![1, 4, 10, 11, 4, 33, 34, 26, 2, 36, 0, 5]);
    assert_eq!((cut9.pseudo.clone(), cut9.mask, cut9.answer_row), (vec![1, 4], Some(8), 11));
    assert_eq!(cut9.positions[11], 8);
    // BERT and GPT-2 keep the slot too.
    let bert = compile(&t, ModelKind::Bert, &tok, &f, &CompileOptions::new(10)).unwrap();
    assert_eq!(bert.ids.len(), 10);
    assert_eq!(bert.ids[bert.answer_row], 2);
    let gpt = compile(&t, ModelKind::Gpt2, &tok, &f, &CompileOptions::new(6)).unwrap();
    assert_eq!(gpt.ids.len(), 6);
    assert_eq!(*gpt.ids.last().unwrap(), 26, "the prompt still ends with the anchor before the slot");
    // Room kept for a multi-token answer.
    let room = compile(&t, ModelKind::Glm, &tok, &f, &CompileOptions { answer_tokens: 3, ..CompileOptions::new(16) }).unwrap();
    assert_eq!(room.ids.len(), 13);
    assert_eq!(room.with_answer(&[10, 11, 12], Some(6), 16).unwrap().ids.len(), 16);
}

#[test]
fn fixed_parts_too_long_is_a_clear_error() {
    let tok = chars();
    let t = Template::parse("[P*5] {a} a long anchor text [MASK] .", &names(&["a"])).unwrap();
    let e = compile(&t, ModelKind::Glm, &tok, &fields(&[("a", "x")]), &CompileOptions::new(12)).unwrap_err().to_string();
    assert!(e.contains("fixed parts") && e.contains("12 positions") && e.contains("shorten the template"), "{e}");
    let e = compile(&t, ModelKind::Glm, &tok, &fields(&[]), &CompileOptions::new(64)).unwrap_err().to_string();
    assert!(e.contains("no text field `a`"), "{e}");
    let slot_first = Template::parse("[MASK] {a}", &names(&["a"])).unwrap();
    let e = compile(&slot_first, ModelKind::Gpt2, &tok, &fields(&[("a", "x")]), &CompileOptions::new(64)).unwrap_err().to_string();
    assert!(e.contains("at least one token before"), "{e}");
}

/// Logits `[S, V]` of one compiled example, computed without the cloze batching code.
fn manual_logits(model: &dyn Backbone, c: &wenhui::cloze::Cloze, prompt: Option<&Tensor>) -> Vec<Vec<f64>> {
    let dev = model.device();
    let s = c.ids.len();
    let ids = Tensor::new(c.ids.as_slice(), dev).unwrap().unsqueeze(0).unwrap();
    let mut input = match prompt {
        None => BackboneInput::ids(ids),
        Some(p) => {
            let mut rows: Vec<Tensor> = (0..s).map(|i| model.embed(&ids.narrow(1, i, 1).unwrap()).unwrap().squeeze(0).unwrap()).collect();
            for (k, &i) in c.pseudo.iter().enumerate() {
                rows[i] = p.narrow(0, k, 1).unwrap();
            }
            BackboneInput::embeddings(Tensor::cat(&rows, 0).unwrap().unsqueeze(0).unwrap())
        }
    };
    if c.kind == ModelKind::Glm {
        let pos: Vec<u32> = c.positions.iter().chain(&c.block_positions).copied().collect();
        input = input.with_positions(Tensor::from_vec(pos, (1, 2, s), dev).unwrap()).with_attention(Attention::Sep(vec![c.sep]));
    }
    let out = model.forward(&input, None).unwrap().logits.squeeze(0).unwrap();
    let v = out.to_dtype(DType::F32).unwrap().to_vec2::<f32>().unwrap();
    v.into_iter().map(|r| r.into_iter().map(f64::from).collect()).collect()
}

fn softmax(xs: &[f64]) -> Vec<f64> {
    let m = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = xs.iter().map(|x| (x - m).exp()).collect();
    let z: f64 = e.iter().sum();
    e.into_iter().map(|x| x / z).collect()
}

#[test]
fn single_token_probabilities_match_the_model_logits() {
    let tok = chars();
    let task = ClozeTask::from_toml(SINGLE_TASK, "toy").unwrap();
    let examples = [
        fields(&[("a", "the cat sat"), ("b", "is it")]),
        fields(&[("a", "x"), ("b", "longer question here")]),
        fields(&[("a", "ab"), ("b", "c")]),
    ];
    let (n, y, m, p) = (23u32, 34u32, 22u32, 25u32);
    for name in ["glm-tiny", "bert-mlm-tiny", "gpt2-tiny"] {
        let model = model(name);
        let kind = model.info().kind;
        let h = model.info().hidden_size;
        let prompt = Tensor::randn(0f32, 1.0, (3, h), &Device::Cpu).unwrap();
        for with_prompt in [false, true] {
            let opts = ClassifyOptions { prompt: with_prompt.then(|| prompt.clone()), batch_size: 2 };
            let batched = classify_batch(model.as_ref(), &tok, &task, &examples, &opts).unwrap();
            for (e, pred) in examples.iter().zip(&batched) {
                assert_eq!(pred.labels, names(&["no", "yes", "maybe"]));
                let sum: f64 = pred.probs.iter().sum();
                assert!((sum - 1.0).abs() < 1e-9, "{name}: probabilities sum to {sum}");
                let t = if with_prompt { task.template.clone() } else { task.template.without_pseudo() };
                let c = compile(&t, kind, &tok, e, &wenhui::cloze::compile_options(&task, model.as_ref())).unwrap();
                assert_eq!(c.pseudo.len(), if with_prompt { 3 } else { 0 });
                let row = &manual_logits(model.as_ref(), &c, with_prompt.then_some(&prompt))[c.answer_row];
                let want = softmax(&[row[n as usize], row[y as usize], (row[m as usize] + row[p as usize]) / 2.0]);
                for (a, b) in pred.probs.iter().zip(&want) {
                    assert!((a - b).abs() <= 1e-5, "{name} prompt={with_prompt}: {:?} vs {want:?}", pred.probs);
                }
                if !with_prompt {
                    let one = classify(model.as_ref(), &tok, &task, e).unwrap();
                    for (a, b) in one.probs.iter().zip(&pred.probs) {
                        assert!((a - b).abs() <= 1e-5, "{name}: batched vs one by one");
                    }
                }
            }
        }
    }
}

const MULTI_TASK: &str = r#"
name = "toy-multi"
fields = ["premise", "c1", "c2"]
template = "{c1} or {c2} ? {premise} so [P] [MASK] ."
answer = "multi"
[[verbalizer]]
label = "0"
words = ["{c1}"]
[[verbalizer]]
label = "1"
words = ["{c2}", "zz"]
"#;

fn log_softmax_at(row: &[f64], t: u32) -> f64 {
    let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    row[t as usize] - m - row.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}

#[test]
fn multi_token_scores_equal_a_manual_part_b_computation() {
    let tok = chars();
    let mut task = ClozeTask::from_toml(MULTI_TASK, "toy-multi").unwrap();
    let examples =
        [fields(&[("premise", "it rained"), ("c1", "wet"), ("c2", "sunny day")]), fields(&[("premise", "a"), ("c1", "bb"), ("c2", "c")])];
    let sep_eop = tok.special.eop.unwrap();
    for name in ["glm-tiny", "gpt2-tiny"] {
        let model = model(name);
        let kind = model.info().kind;
        for penalty in [0.0, 1.0] {
            task.spec.length_penalty = penalty;
            let preds = classify_batch(model.as_ref(), &tok, &task, &examples, &ClassifyOptions { prompt: None, batch_size: 3 }).unwrap();
            for (e, pred) in examples.iter().zip(&preds) {
                let t = task.template.without_pseudo();
                let answers = [vec![e["c1"].clone()], vec![e["c2"].clone(), "zz".to_string()]];
                let longest = answers.iter().flatten().map(|a| tok.encode(&format!(" {a}"), false).unwrap().len()).max().unwrap();
                let opts = CompileOptions { answer_tokens: longest, ..wenhui::cloze::compile_options(&task, model.as_ref()) };
                let base = compile(&t, kind, &tok, e, &opts).unwrap();
                for (l, words) in answers.iter().enumerate() {
                    let mut best = f64::NEG_INFINITY;
                    for w in words {
                        let ans = tok.encode(&format!(" {w}"), false).unwrap();
                        // Manual Part B (GLM) / continuation (GPT-2).
                        let (mut ids, mut pos, mut block) = (base.ids.clone(), base.positions.clone(), base.block_positions.clone());
                        let mut targets = ans.clone();
                        let first_row;
                        if kind == ModelKind::Glm {
                            ids.extend(&ans);
                            pos.extend(std::iter::repeat_n(base.mask.unwrap() as u32, ans.len()));
                            block.extend(2..2 + ans.len() as u32);
                            targets.push(sep_eop);
                            first_row = base.sep;
                        } else {
                            ids.extend(&ans[..ans.len() - 1]);
                            pos = (0..ids.len() as u32).collect();
                            first_row = base.ids.len() - 1;
                        }
                        let c = wenhui::cloze::Cloze { ids, positions: pos, block_positions: block, ..base.clone() };
                        let logits = manual_logits(model.as_ref(), &c, None);
                        let mut s: f64 = targets.iter().enumerate().map(|(k, &t)| log_softmax_at(&logits[first_row + k], t)).sum();
                        if penalty > 0.0 {
                            s /= (targets.len() as f64).powf(penalty);
                        }
                        best = best.max(s);
                    }
                    assert!((pred.scores[l] - best).abs() <= 1e-4, "{name} label {l}: {} vs {best}", pred.scores[l]);
                }
                let want = softmax(&pred.scores);
                assert!(pred.probs.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-9));
            }
        }
    }
}

/// BERT: the [MASK] widens to one mask per answer token (PET); the score is the sum of the
/// log-probs of the answer tokens at the masks of one forward pass.
#[test]
fn bert_multi_token_answers_fill_one_mask_per_token() {
    let tok = chars();
    let task = ClozeTask::from_toml(MULTI_TASK, "toy-multi").unwrap();
    let example = fields(&[("premise", "it rained"), ("c1", "wet"), ("c2", "sunny day")]);
    let bert = model("bert-mlm-tiny");
    let pred = classify(bert.as_ref(), &tok, &task, &example).unwrap();
    let t = task.template.without_pseudo();
    let base = compile(&t, ModelKind::Bert, &tok, &example, &CompileOptions::new(bert.info().max_positions)).unwrap();
    let m = base.mask.unwrap();
    for (l, words) in [vec!["wet"], vec!["sunny day", "zz"]].iter().enumerate() {
        let mut best = f64::NEG_INFINITY;
        for w in words {
            let ans = tok.encode(&format!(" {w}"), false).unwrap();
            let mut ids = base.ids.clone();
            ids.splice(m + 1..m + 1, std::iter::repeat_n(base.ids[m], ans.len() - 1));
            let c = wenhui::cloze::Cloze { positions: (0..ids.len() as u32).collect(), ids, ..base.clone() };
            let logits = manual_logits(bert.as_ref(), &c, None);
            best = best.max(ans.iter().enumerate().map(|(k, &a)| log_softmax_at(&logits[m + k], a)).sum());
        }
        assert!((pred.scores[l] - best).abs() <= 1e-4, "label {l}: {} vs {best}", pred.scores[l]);
    }
}

#[test]
fn prompt_vectors_replace_the_pseudo_rows() {
    let model = model("glm-tiny");
    let tok = chars();
    let c = compile(&golden_template(), ModelKind::Glm, &tok, &fields(&[("a", "bc")]), &CompileOptions::new(64)).unwrap();
    let prompt = Tensor::randn(0f32, 1.0, (2, 64), &Device::Cpu).unwrap();
    let ids = Tensor::new(c.ids.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
    let emb =
        wenhui::cloze::embeddings_with_prompt(model.as_ref(), &ids, std::slice::from_ref(&c.pseudo), &prompt).unwrap().squeeze(0).unwrap();
    let words = model.embed(&ids).unwrap().squeeze(0).unwrap();
    let diff = |a: &Tensor, b: &Tensor| (a - b).unwrap().abs().unwrap().max(D::Minus1).unwrap().to_vec1::<f32>().unwrap();
    assert!(diff(&emb.narrow(0, 1, 2).unwrap(), &prompt).iter().all(|&d| d == 0.0));
    assert!(diff(&emb.narrow(0, 3, 7).unwrap(), &words.narrow(0, 3, 7).unwrap()).iter().all(|&d| d == 0.0));
    let wrong = Tensor::zeros((3, 64), DType::F32, &Device::Cpu).unwrap();
    let e = build_input(model.as_ref(), std::slice::from_ref(&c), &[vec![c.answer_row]], Some(&wrong)).unwrap_err().to_string();
    assert!(e.contains("2 pseudo tokens but 3 prompt vectors"), "{e}");
}

#[test]
fn bad_task_input_is_a_clear_error() {
    let tok = chars();
    let m = model("glm-tiny");
    let multi_word = SINGLE_TASK.replace(r#"words = ["y"]"#, r#"words = ["yes"]"#);
    let task = ClozeTask::from_toml(&multi_word, "toy").unwrap();
    let e = classify(m.as_ref(), &tok, &task, &fields(&[("a", "x"), ("b", "y")])).unwrap_err().to_string();
    assert!(e.contains("label `yes`") && e.contains("`yes` is 3 tokens") && e.contains("answer = \"multi\""), "{e}");
    // A word the tokenizer does not know would be scored on [UNK], shared by every unknown word.
    let unknown = ClozeTask::from_toml(&SINGLE_TASK.replace(r#"words = ["y"]"#, r#"words = ["é"]"#), "toy").unwrap();
    let e = classify(m.as_ref(), &tok, &unknown, &fields(&[("a", "x"), ("b", "y")])).unwrap_err().to_string();
    assert!(e.contains("label `yes`") && e.contains("`é` holds a token this tokenizer does not know ([UNK])"), "{e}");
    let multi = ClozeTask::from_toml(&MULTI_TASK.replace(r#""zz""#, r#""zéz""#), "toy-multi").unwrap();
    let ex = fields(&[("premise", "p"), ("c1", "a"), ("c2", "b")]);
    let e = classify(m.as_ref(), &tok, &multi, &ex).unwrap_err().to_string();
    assert!(e.contains("label `1`") && e.contains("`zéz` holds a token"), "{e}");
    // Taken from the data (a candidate span), an unknown character is just rare input.
    let from_data = fields(&[("premise", "p"), ("c1", "é"), ("c2", "b")]);
    assert!(classify(m.as_ref(), &tok, &ClozeTask::from_toml(MULTI_TASK, "toy-multi").unwrap(), &from_data).is_ok());
    for (text, want) in [
        (SINGLE_TASK.replace("[MASK] .", "."), "no answer slot"),
        (SINGLE_TASK.replace("{b}", "{c}"), "unknown field `{c}`"),
        (SINGLE_TASK.replace("[P*2]", "[P*two]"), "malformed `[P*two]`"),
        (SINGLE_TASK.replace(r#"words = ["n"]"#, r#"words = []"#), "label `no` needs at least one"),
        (SINGLE_TASK.replace(r#"label = "maybe""#, r#"label = "no""#), "label `no` appears twice"),
        (SINGLE_TASK.replace(r#"words = ["n"]"#, r#"words = ["{a}"]"#), "only answer = \"multi\""),
        (SINGLE_TASK.replace("name =", "nmae ="), "nmae"),
    ] {
        let e = ClozeTask::from_toml(&text, "toy.toml").unwrap_err().to_string();
        assert!(e.contains("toy.toml") && e.contains(want), "{want}: {e}");
    }
    let e = parse_jsonl("{\"premise\": \"a\", \"hypothesis\": \"b\"}\n{\"premise\": oops}\n", Reader::Rte, "rte.jsonl")
        .unwrap_err()
        .to_string();
    assert!(e.contains("rte.jsonl:2:") && e.contains("not valid JSON"), "{e}");
    let e = parse_jsonl("{\"premise\": \"a\"}\n", Reader::Rte, "rte.jsonl").unwrap_err().to_string();
    assert!(e.contains("rte.jsonl:1:") && e.contains("`hypothesis`"), "{e}");
    let e = parse_jsonl("[1, 2]\n", Reader::Plain, "x.jsonl").unwrap_err().to_string();
    assert!(e.contains("x.jsonl:1:") && e.contains("JSON object"), "{e}");
    assert!(ClozeTask::load("no-such-task").is_err());
}

#[test]
fn readers_flatten_superglue_lines() {
    let copa = r#"{"premise": "My body cast a shadow over the grass.", "choice1": "The sun was rising.", "choice2": "The grass was cut.", "question": "cause", "idx": 0, "label": 0}"#;
    let ex = &parse_jsonl(copa, Reader::Copa, "copa").unwrap()[0];
    assert_eq!(ex.fields["premise"], "My body cast a shadow over the grass");
    assert_eq!((ex.fields["connective"].as_str(), ex.fields["answer1"].as_str()), ("because", "the sun was rising"));
    assert_eq!(ex.label.as_deref(), Some("0"));
    let wsc = r#"{"text": "Mark told Pete many lies about himself.", "target": {"span1_text": "Pete", "span1_index": 2, "span2_text": "himself", "span2_index": 6}, "idx": 0, "label": false}"#;
    let ex = &parse_jsonl(wsc, Reader::Wsc, "wsc").unwrap()[0];
    assert_eq!(ex.fields["text"], "Mark told Pete many lies about *himself.*");
    assert_eq!(ex.label.as_deref(), Some("false"));
    let multirc = r#"{"idx": 3, "passage": {"text": "P.", "questions": [{"question": "Q?", "idx": 7, "answers": [{"text": "A", "idx": 0, "label": 1}, {"text": "B", "idx": 1, "label": 0}]}]}}"#;
    let exs = parse_jsonl(multirc, Reader::Multirc, "multirc").unwrap();
    assert_eq!(exs.len(), 2);
    assert_eq!((exs[1].fields["answer"].as_str(), exs[1].label.as_deref(), exs[1].group.as_deref()), ("B", Some("0"), Some("3-7")));
}

#[test]
fn metrics_on_known_values() {
    let s = |xs: &[&str]| names(xs);
    let gold = s(&["a", "b", "b", "c"]);
    let pred = s(&["a", "b", "c", "c"]);
    assert_eq!(metrics::accuracy(&pred, &gold).unwrap(), 0.75);
    assert!((metrics::f1(&pred, &gold, "b").unwrap() - 2.0 / 3.0).abs() < 1e-12);
    let macro_f1 = metrics::macro_f1(&pred, &gold).unwrap();
    assert!((macro_f1 - (1.0 + 2.0 / 3.0 + 2.0 / 3.0) / 3.0).abs() < 1e-12);
    let em = metrics::exact_match(&pred, &gold, &s(&["q1", "q1", "q2", "q2"])).unwrap();
    assert_eq!(em, 0.5);
    let all =
        metrics::compute(&s(&["acc", "em", "f1a"]), &s(&["1", "0"]), &s(&["1", "1"]), &s(&["0", "1"]), Some(&s(&["q", "q"]))).unwrap();
    assert_eq!((all["acc"], all["em"]), (0.5, 0.0));
    assert!((all["f1a"] - 2.0 / 3.0).abs() < 1e-12);
    assert!(metrics::accuracy(&pred, &gold[..2]).is_err());
}

#[test]
fn shipped_tasks_parse_and_real_examples_compile_for_glm() {
    let tok = chars();
    let glm = model("glm-tiny");
    let data = fewglue_dir();
    for (name, folder) in
        [("rte", "RTE"), ("cb", "CB"), ("boolq", "BoolQ"), ("copa", "COPA"), ("wic", "WiC"), ("wsc", "WSC"), ("multirc", "MultiRC")]
    {
        let task = ClozeTask::builtin(name).unwrap();
        assert_eq!(task.spec.name, name);
        assert!(!task.spec.metrics.is_empty());
        let Some(dir) = &data else { continue };
        let examples = read_jsonl(&dir.join("FewGLUE_32dev").join(folder).join("train.jsonl"), task.spec.reader).unwrap();
        assert!(examples.len() >= 32, "{name}: {} examples", examples.len());
        let labels = task.labels();
        for ex in &examples {
            let gold = ex.label.as_ref().unwrap();
            assert!(labels.contains(gold), "{name}: label `{gold}` not in the verbalizer {labels:?}");
        }
        let c = compile(&task.template, ModelKind::Glm, &tok, &examples[0].fields, &CompileOptions::new(512)).unwrap();
        assert_eq!(c.ids[c.mask.unwrap()], 2);
        assert_eq!((c.ids[c.answer_row], c.positions[c.answer_row], c.block_positions[c.answer_row]), (5, c.mask.unwrap() as u32, 1));
        assert_eq!(c.pseudo.len(), task.template.num_pseudo());
        // End to end on the tiny model (64 positions: fields are truncated). "Yes"/"No" are several
        // characters here, so single-token tasks first report that, then run with one-letter words.
        let two = [examples[0].fields.clone(), examples[1].fields.clone()];
        let mut task = task;
        if task.spec.answer == wenhui::cloze::AnswerKind::Single {
            let e = classify_batch(glm.as_ref(), &tok, &task, &two, &ClassifyOptions::default()).unwrap_err().to_string();
            assert!(e.contains("label `") && e.contains("tokens"), "{name}: {e}");
            for (i, lw) in task.spec.verbalizer.iter_mut().enumerate() {
                lw.words = vec![["n", "y", "m"][i].to_string()];
            }
            task = ClozeTask::new(task.spec, name).unwrap();
        }
        let (scores, preds) = wenhui::cloze::evaluate(glm.as_ref(), &tok, &task, &examples, &ClassifyOptions::default()).unwrap();
        assert_eq!(preds.len(), examples.len());
        assert_eq!(scores.len(), task.spec.metrics.len());
        assert!(scores.values().all(|v| (0.0..=1.0).contains(v)), "{name}: {scores:?}");
        eprintln!("{name} (glm-tiny, random weights, train): {scores:?}");
        for p in &preds {
            assert!(p.probs.iter().all(|x| x.is_finite() && (0.0..=1.0).contains(x)), "{name}: {:?}", p.probs);
            assert!((p.probs.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        }
    }
}

#[test]
fn cli_classify_prints_the_library_probabilities() {
    let dir = tempfile::tempdir().unwrap();
    let chars_txt = dir.path().join("chars.txt");
    std::fs::write(
        &chars_txt,
        "abcdefghijklmnopqrstuvwxyz.,!?:'*-ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789".chars().map(|c| format!("{c}\n")).collect::<String>(),
    )
    .unwrap();
    let task_file = dir.path().join("toy.toml");
    std::fs::write(&task_file, SINGLE_TASK).unwrap();
    let run_with = |input: &str, extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_wenhui"))
            .args(["classify", "--task", task_file.to_str().unwrap(), "--model", "tests/fixtures/glm-tiny", "--tokenizer"])
            .arg(&chars_txt)
            .args(extra)
            .args(["--json", input])
            .output()
            .unwrap()
    };
    let run = |input: &str| run_with(input, &[]);
    let out = run(r#"{"a": "the cat sat", "b": "is it"}"#);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let probs: Vec<f64> = v["predictions"][0]["probs"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    let task = ClozeTask::from_toml(SINGLE_TASK, "toy").unwrap();
    let lib = classify(model("glm-tiny").as_ref(), &chars(), &task, &fields(&[("a", "the cat sat"), ("b", "is it")])).unwrap();
    assert_eq!(probs.len(), 3);
    for (a, b) in probs.iter().zip(&lib.probs) {
        assert!((a - b).abs() < 1e-9, "{probs:?} vs {:?}", lib.probs);
    }
    assert_eq!(v["predictions"][0]["best"].as_str().unwrap(), lib.best());
    // With a saved prompt encoder, the [P] rows get its vectors.
    let cfg = wenhui::ptuning::PromptEncoderConfig {
        kind: wenhui::ptuning::EncoderKind::Lstm,
        num_virtual_tokens: 3,
        token_dim: 64,
        hidden: 32,
        layers: 2,
        num_transformer_submodules: 1,
        lstm_head: wenhui::ptuning::LstmHead::Peft,
    };
    let (enc, _) = wenhui::ptuning::PromptEncoder::fresh(&cfg, DType::F32, &Device::Cpu).unwrap();
    let enc_dir = dir.path().join("encoder");
    enc.save_state(&enc_dir).unwrap();
    let out = run_with(r#"{"a": "the cat sat", "b": "is it"}"#, &["--prompt", enc_dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let probs: Vec<f64> = v["predictions"][0]["probs"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    let opts = ClassifyOptions { prompt: Some(enc.prompt_embeddings().unwrap()), batch_size: 0 };
    let lib =
        classify_batch(model("glm-tiny").as_ref(), &chars(), &task, &[fields(&[("a", "the cat sat"), ("b", "is it")])], &opts).unwrap();
    for (a, b) in probs.iter().zip(&lib[0].probs) {
        assert!((a - b).abs() < 1e-9, "{probs:?} vs {:?}", lib[0].probs);
    }
    let bad = run("plain text");
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("has fields a, b") && err.contains("JSON object"), "{err}");
    // A one-field task takes plain text, but a broken JSON object is an error, not text.
    let one = dir.path().join("one.toml");
    std::fs::write(&one, SINGLE_TASK.replace(r#"fields = ["a", "b"]"#, r#"fields = ["a"]"#).replace(" q {b} ?", " ?")).unwrap();
    let one_field = |input: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_wenhui"))
            .args(["classify", "--task", one.to_str().unwrap(), "--model", "tests/fixtures/glm-tiny", "--tokenizer"])
            .arg(&chars_txt)
            .args(["--json", input])
            .output()
            .unwrap()
    };
    let text = one_field("the cat sat");
    assert!(text.status.success(), "{}", String::from_utf8_lossy(&text.stderr));
    let broken = one_field(r#"{"a": the cat sat}"#);
    let err = String::from_utf8_lossy(&broken.stderr);
    assert!(
        !broken.status.success() && err.contains("looks like a JSON object but is not valid JSON") && err.contains("field (a)"),
        "{err}"
    );
    assert!(broken.stdout.is_empty());
}
