//! `wenhui tokenize DIR "text" --glm-layout [--fill TEXT]`: GLM's model input (Part A / Part B,
//! 2D positions, `sep`), checked against the inputs the library itself builds for the model.

mod common;

use common::{stderr, stdout, wenhui};
use serde_json::Value;
use std::path::PathBuf;
use wenhui::candle_core::{Device, Tensor};
use wenhui::data::seq2seq::Seq2seqSample;
use wenhui::generate::blank::{glm_context, BlankTokens, GlmBlankInputs};
use wenhui::generate::StepInputs;
use wenhui::tokenizer::Tokenizer;

fn poetry() -> PathBuf {
    wenhui::embedded::poetry_model_dir().expect("the embedded poetry model")
}

/// The `--json` layout of `text` (and `fills`) with the embedded poetry GLM.
fn layout(text: &str, fills: &[&str]) -> Value {
    let dir = poetry();
    let mut args = vec!["tokenize", dir.to_str().expect("utf-8 path"), text, "--glm-layout", "--json"];
    for f in fills {
        args.extend(["--fill", f]);
    }
    let out = wenhui(&args);
    assert!(out.status.success(), "tokenize --glm-layout failed: {}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(&out)))
}

/// `(ids, positions, block positions, parts)` of a layout.
fn columns(v: &Value) -> (Vec<u32>, Vec<u32>, Vec<u32>, Vec<String>) {
    let rows = v["tokens"].as_array().expect("tokens");
    let num = |r: &Value, k: &str| r[k].as_u64().unwrap_or_else(|| panic!("{k} in {r}")) as u32;
    (
        rows.iter().map(|r| num(r, "id")).collect(),
        rows.iter().map(|r| num(r, "position")).collect(),
        rows.iter().map(|r| num(r, "block_position")).collect(),
        rows.iter().map(|r| r["part"].as_str().expect("part").to_string()).collect(),
    )
}

fn sep(v: &Value) -> usize {
    v["sep"].as_u64().expect("sep") as usize
}

fn tokenizer() -> Tokenizer {
    Tokenizer::from_dir(&poetry()).expect("the poetry tokenizer")
}

/// The `[2, n]` positions `GlmBlankInputs` feeds the model when decoding `n` tokens of the blank at
/// `mask_position` from block offset 0 (what `fill_blanks` uses for every step).
fn generation_positions(mask_position: usize, n: usize) -> (Vec<u32>, Vec<u32>) {
    let ids = Tensor::new(vec![0u32; n].as_slice(), &Device::Cpu).and_then(|t| t.unsqueeze(0)).expect("ids");
    let input = GlmBlankInputs::new(mask_position, 1024).input(ids, 0).expect("blank inputs");
    let p = input.positions.expect("2D positions").get(0).and_then(|t| t.to_vec2::<u32>()).expect("positions");
    (p[0].clone(), p[1].clone())
}

#[test]
fn a_mask_gives_part_a_with_positions_0_to_n_and_the_sop_step() {
    let text = "床前[MASK]光，疑是地上霜。";
    let v = layout(text, &[]);
    let (ids, positions, blocks, parts) = columns(&v);
    let tok = tokenizer();
    let context = glm_context(&tok, text).expect("context");
    let blank = BlankTokens::from_special(&tok.special).expect("GLM tokens");
    let n = context.len();
    assert_eq!(sep(&v), n, "sep = Part A length");
    assert_eq!(&ids[..n], context.as_slice(), "Part A = the context `wenhui fill` builds");
    assert_eq!(&positions[..n], (0..n as u32).collect::<Vec<_>>().as_slice());
    assert!(blocks[..n].iter().all(|&b| b == 0), "Part A block positions are 0: {blocks:?}");
    assert!(parts[..n].iter().all(|p| p == "A") && parts[n..].iter().all(|p| p == "B"), "{parts:?}");
    let mask = context.iter().position(|&t| Some(t) == tok.special.mask).expect("[MASK] in the context");
    assert_eq!(v["blanks"], serde_json::json!([mask]));
    // Part B: the first step of blank 1, as the generation loop feeds it.
    assert_eq!(&ids[n..], &[blank.sop]);
    let (gen_pos, gen_blocks) = generation_positions(mask, 1);
    assert_eq!((&positions[n..], &blocks[n..]), (gen_pos.as_slice(), gen_blocks.as_slice()));
    assert_eq!((positions[n], blocks[n]), (mask as u32, 1));
    assert_eq!(v["tokens"][n]["piece"], tok.id_to_token(blank.sop).expect("sop piece").as_str());
    // The library's own teacher-forced layout of the same input: the same Part A.
    let sample = Seq2seqSample::part_b(context.clone(), mask, blank.sop, &[blank.eop], 0);
    assert_eq!((sample.sep, &sample.positions[..n], &sample.blocks[..n]), (sep(&v), &positions[..n], &blocks[..n]));
}

#[test]
fn a_fill_is_part_b_at_the_mask_with_block_positions_1_2_3() {
    let text = "床前[MASK]光";
    let v = layout(text, &["明月"]);
    let (ids, positions, blocks, parts) = columns(&v);
    let tok = tokenizer();
    let blank = BlankTokens::from_special(&tok.special).expect("GLM tokens");
    let context = glm_context(&tok, text).expect("context");
    let mask = context.iter().position(|&t| Some(t) == tok.special.mask).expect("[MASK]");
    let fill = tok.encode("明月", false).expect("fill ids");
    assert_eq!(fill.len(), 2, "明, 月 are one token each");
    let n = context.len();
    assert_eq!(sep(&v), n);
    assert_eq!(ids.len(), n + 3);
    let pieces: Vec<&str> = v["tokens"].as_array().expect("tokens")[n..].iter().map(|r| r["piece"].as_str().expect("piece")).collect();
    assert_eq!(pieces[1..], ["明", "月"]);
    assert_eq!(ids[n..], [blank.sop, fill[0], fill[1]]);
    assert_eq!(positions[n..], [mask as u32; 3]);
    assert_eq!(blocks[n..], [1, 2, 3]);
    assert!(parts[n..].iter().all(|p| p == "B"));
    // What the model reads for teacher-forced scoring of `明月[eop]`: the library's layout.
    let targets: Vec<u32> = fill.iter().copied().chain([blank.eop]).collect();
    let sample = Seq2seqSample::part_b(context, mask, blank.sop, &targets, 0);
    assert_eq!(ids, sample.tokens);
    assert_eq!(positions, sample.positions);
    assert_eq!(blocks, sample.blocks);
    assert_eq!(sep(&v), sample.sep);
    // And what the generation loop feeds when it generates 明, 月 itself.
    let (gen_pos, gen_blocks) = generation_positions(mask, 3);
    assert_eq!((positions[n..].to_vec(), blocks[n..].to_vec()), (gen_pos, gen_blocks));
}

#[test]
fn two_fills_follow_each_other_at_their_blanks() {
    let text = "[MASK]前[sMASK]光";
    let v = layout(text, &["明月", "好"]);
    let (_, positions, blocks, _) = columns(&v);
    let tok = tokenizer();
    let context = glm_context(&tok, text).expect("context");
    let n = context.len();
    let (m1, m2) = (1u32, 3u32);
    assert_eq!(v["blanks"], serde_json::json!([m1, m2]));
    assert_eq!(positions[n..], [m1, m1, m1, m2, m2]);
    assert_eq!(blocks[n..], [1, 2, 3, 1, 2]);
}

#[test]
fn no_blank_appends_gmask_and_fills_it() {
    let text = "床前明月光";
    let v = layout(text, &[]);
    let (ids, positions, blocks, _) = columns(&v);
    let tok = tokenizer();
    let gmask = tok.special.gmask.expect("[gMASK]");
    let context = glm_context(&tok, text).expect("context");
    let n = sep(&v);
    assert_eq!(&ids[..n], context.as_slice());
    assert_eq!(ids[n - 1], gmask, "[gMASK] appended, and no eos after it");
    assert_eq!(v["tokens"][n - 1]["piece"], "[gMASK]");
    assert_eq!((positions[n], blocks[n]), ((n - 1) as u32, 1), "[sop] at the [gMASK]'s position");
}

#[test]
fn the_text_table_has_the_legend_and_sep() {
    let dir = poetry();
    let out = wenhui(&["tokenize", dir.to_str().expect("utf-8 path"), "床前[MASK]光", "--glm-layout", "--fill", "明月"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("sep = 6"), "{text}");
    assert!(
        text.contains("Part A attends bidirectionally to all of Part A; Part B attends to Part A and to earlier Part B tokens"),
        "{text}"
    );
    assert!(text.contains("block position"), "{text}");
    assert_eq!(text.lines().filter(|l| l.trim_end().ends_with(" B")).count(), 3, "{text}");
}

#[test]
fn gpt2_and_bert_models_are_refused_clearly() {
    for (fixture, kind) in [("gpt2-tiny", "GPT-2"), ("bert-mlm-tiny", "BERT")] {
        let dir = common::fixture_dir("WENHUI_NO_SUCH_VAR", fixture);
        let out = wenhui(&["tokenize", dir.to_str().expect("utf-8 path"), "hello", "--glm-layout"]);
        assert!(!out.status.success(), "{fixture}: accepted");
        let err = stderr(&out);
        assert!(err.contains("--glm-layout needs a GLM") && err.contains(kind), "{fixture}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn bad_flag_combinations_are_refused() {
    let dir = poetry();
    let d = dir.to_str().expect("utf-8 path");
    let too_many = wenhui(&["tokenize", d, "[MASK]", "--glm-layout", "--fill", "明", "--fill", "月"]);
    assert!(!too_many.status.success());
    assert!(stderr(&too_many).contains("at most one fill per blank"), "{}", stderr(&too_many));
    let no_layout = wenhui(&["tokenize", d, "[MASK]", "--fill", "明"]);
    assert!(!no_layout.status.success());
    assert!(stderr(&no_layout).contains("--glm-layout"), "{}", stderr(&no_layout));
    let long = "月".repeat(5000);
    let too_long = wenhui(&["tokenize", d, &long, "--glm-layout"]);
    assert!(!too_long.status.success());
    assert!(stderr(&too_long).contains("positions"), "{}", stderr(&too_long));
    assert!(!stderr(&too_long).contains("panicked"));
}

/// End to end: the model fed the printed layout in one pass (ids, 2D positions, `sep`) predicts,
/// at every Part B row, the next token of the fill `fill_blanks` generated step by step with its
/// cache: the table is the input the model reads.
#[test]
fn the_printed_layout_reproduces_the_generated_fill() {
    use wenhui::generate::{fill_blanks, GenerationConfig};
    use wenhui::model::{load_model, Attention, BackboneInput, LoadOptions};
    let dir = poetry();
    let tok = tokenizer();
    let text = "题名：春日；作者：李白；体裁：五言绝句；正文：[MASK]，花落知多少。";
    let model = load_model(&dir, &LoadOptions::default()).expect("the poetry model");
    let blank = BlankTokens::from_special(&tok.special).expect("GLM tokens");
    let context = glm_context(&tok, text).expect("context");
    let cfg = GenerationConfig { max_new_tokens: 6, ..Default::default() };
    let filled = fill_blanks(model.backbone.as_ref(), &context, &blank, &cfg).expect("fill");
    let fill = &filled.fills[0];
    let fill_text = tok.decode(&fill.tokens, true).expect("decode");
    assert_eq!(tok.encode(&fill_text, false).expect("encode"), fill.tokens, "the fill {fill_text:?} tokenizes back to itself");
    let v = layout(text, &[&fill_text]);
    let (ids, positions, blocks, _) = columns(&v);
    let s = sep(&v);
    let n = ids.len();
    let device = model.backbone.device();
    let ids_t = Tensor::new(ids.as_slice(), device).and_then(|t| t.unsqueeze(0)).expect("ids");
    let pos: Vec<u32> = positions.iter().chain(&blocks).copied().collect();
    let pos_t = Tensor::from_vec(pos, (1, 2, n), device).expect("positions");
    let input = BackboneInput::ids(ids_t).with_positions(pos_t).with_attention(Attention::Sep(vec![s]));
    let logits = model.backbone.forward(&input, None).expect("forward").logits;
    let argmax: Vec<u32> = logits.get(0).and_then(|l| l.argmax(1)).and_then(|a| a.to_vec1::<u32>()).expect("argmax");
    let mut expected = fill.tokens.clone();
    if fill.finished {
        // The stop token the greedy loop chose after the fill (eop or eos).
        let stop = argmax[n - 1];
        assert!(stop == blank.eop || Some(stop) == blank.eos, "the last row predicts a stop token, got {stop}");
        expected.push(stop);
    }
    assert_eq!(&argmax[s..s + expected.len()], expected.as_slice(), "greedy predictions at the Part B rows");
}
