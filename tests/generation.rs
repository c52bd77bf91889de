//! Generation: Hugging Face `generate` parity on `tests/fixtures/gpt2-tiny` (every run of
//! `generation.json`; folder from `WENHUI_GPT2_FIXTURE`), GLM blank filling with the cache
//! against recomputation from scratch (`tests/fixtures/glm-tiny`), sampling reproducibility,
//! streaming, and bad input.

mod common;

use candle_core::{DType, Device, Tensor};
use common::*;
use std::sync::Mutex;
use wenhui::generate::{fill_blanks, generate, BlankTokens, CausalInputs, EarlyStopping, GenerationConfig};
use wenhui::model::{load_model, Attention, Backbone, BackboneInfo, BackboneInput, BackboneOutput, KvCache, LoadOptions, LoadedModel};

fn gpt2_dir() -> std::path::PathBuf {
    fixture_dir("WENHUI_GPT2_FIXTURE", "gpt2-tiny")
}

fn load(dir: &std::path::Path) -> LoadedModel {
    load_model(dir, &LoadOptions::default()).unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
}

fn u32_list(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().unwrap_or_else(|| panic!("expected a list, got {v}")).iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

/// HF `generate` kwargs → our config; an unknown kwarg fails the test.
fn config_from_kwargs(kwargs: &serde_json::Map<String, serde_json::Value>) -> (GenerationConfig, Option<u32>) {
    let mut cfg = GenerationConfig { top_k: 0, ..Default::default() };
    let mut pad = None;
    for (k, v) in kwargs {
        match k.as_str() {
            "do_sample" => cfg.do_sample = v.as_bool().unwrap(),
            "num_beams" => cfg.num_beams = v.as_u64().unwrap() as usize,
            "num_return_sequences" => cfg.num_return_sequences = v.as_u64().unwrap() as usize,
            "max_new_tokens" => cfg.max_new_tokens = v.as_u64().unwrap() as usize,
            "min_new_tokens" => cfg.min_new_tokens = v.as_u64().unwrap() as usize,
            "length_penalty" => cfg.length_penalty = v.as_f64().unwrap() as f32,
            "early_stopping" => cfg.early_stopping = serde_json::from_value::<EarlyStopping>(v.clone()).unwrap(),
            "eos_token_id" => cfg.eos_token_ids = if v.is_array() { u32_list(v) } else { vec![v.as_u64().unwrap() as u32] },
            "pad_token_id" => pad = Some(v.as_u64().unwrap() as u32),
            "no_repeat_ngram_size" => cfg.no_repeat_ngram_size = v.as_u64().unwrap() as usize,
            "repetition_penalty" => cfg.repetition_penalty = v.as_f64().unwrap() as f32,
            "bad_words_ids" => cfg.bad_words_ids = v.as_array().unwrap().iter().map(u32_list).collect(),
            other => panic!("generation.json uses kwarg `{other}` = {v}, which this test does not map; add it"),
        }
    }
    (cfg, pad)
}

#[test]
fn gpt2_generation_matches_hugging_face() {
    let dir = gpt2_dir();
    let m = load(&dir);
    let model = m.backbone.as_ref();
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("generation.json")).unwrap()).unwrap();
    let runs = json["runs"].as_array().expect("generation.json: `runs` must be a list");
    let hf = tensors(&dir.join("generation.safetensors"));
    assert!(runs.len() >= 30, "only {} runs in generation.json", runs.len());
    let mut failures = Vec::new();
    let mut passed = Vec::new();
    for run in runs {
        let name = format!("{}.p{}", run["name"].as_str().unwrap(), run["prompt_index"]);
        let prompt = u32_list(&run["prompt"]);
        let (cfg, _pad) = config_from_kwargs(run["kwargs"].as_object().unwrap());
        let rec = Recorder { inner: model, rows: Mutex::new(Vec::new()) };
        let out = generate(&rec, &prompt, &CausalInputs::new(model), &cfg, None).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut errs = Vec::new();
        if cfg.num_beams == 1 {
            // The cached steps' raw logits against HF's per-step logits ([steps, 1, V]).
            let rows = rec.rows.into_inner().unwrap();
            let want = &hf[&format!("{name}.logits")];
            let steps = want.dim(0).unwrap();
            let got = Tensor::new(rows[prompt.len() - 1..].to_vec(), &Device::Cpu).unwrap();
            if got.dim(0).unwrap() < steps - 1 {
                errs.push(format!("only {} logit rows for {steps} steps", got.dim(0).unwrap()));
            } else {
                // The last step's token is never fed, so the rows cover every step.
                let d = max_abs_diff(&got.narrow(0, 0, steps).unwrap(), &want.squeeze(1).unwrap());
                if d > 1e-4 {
                    errs.push(format!("step logits differ from HF by {d:e}"));
                }
            }
        }
        let want_seqs = run["sequences"].as_array().unwrap();
        let lens = run["generated_lengths_incl_eos"].as_array().unwrap();
        let fin = run["finished_with_eos"].as_array().unwrap();
        if out.sequences.len() != want_seqs.len() {
            errs.push(format!("{} sequences, want {}", out.sequences.len(), want_seqs.len()));
        }
        for (i, (hyp, want)) in out.sequences.iter().zip(want_seqs).enumerate() {
            let want = u32_list(want);
            let len = lens[i].as_u64().unwrap() as usize;
            let want_new = &want[prompt.len()..prompt.len() + len];
            if hyp.tokens != want_new {
                errs.push(format!("sequence {i}: {:?}, want {:?}", hyp.tokens, want_new));
            }
            if hyp.finished != fin[i].as_bool().unwrap() {
                errs.push(format!("sequence {i}: finished {} , want {}", hyp.finished, fin[i]));
            }
            if let Some(scores) = run["sequences_scores"].as_array() {
                let w = scores[i].as_f64().unwrap() as f32;
                if (hyp.score - w).abs() > 1e-4 {
                    errs.push(format!("sequence {i}: score {} , want {w}", hyp.score));
                }
            }
        }
        let steps = run["num_steps"].as_u64().unwrap() as usize;
        if out.steps != steps {
            errs.push(format!("{} decoding steps, want {steps}", out.steps));
        }
        if errs.is_empty() {
            passed.push(name);
        } else {
            failures.push(format!("{name}: {}", errs.join("; ")));
        }
    }
    eprintln!("passed {} runs: {}", passed.len(), passed.join(", "));
    assert!(failures.is_empty(), "{} of {} runs differ from transformers:\n{}", failures.len(), runs.len(), failures.join("\n"));
}

/// Delegates to a backbone and records the next-token logits of every row of batch row 0.
struct Recorder<'a> {
    inner: &'a dyn Backbone,
    rows: Mutex<Vec<Vec<f32>>>,
}

impl Backbone for Recorder<'_> {
    fn info(&self) -> &BackboneInfo {
        self.inner.info()
    }
    fn embed(&self, ids: &Tensor) -> wenhui::Result<Tensor> {
        self.inner.embed(ids)
    }
    fn forward(&self, input: &BackboneInput, cache: Option<&mut KvCache>) -> wenhui::Result<BackboneOutput> {
        let out = self.inner.forward(input, cache)?;
        let rows = out.logits.get(0)?.to_dtype(DType::F32)?.to_vec2::<f32>()?;
        self.rows.lock().unwrap().extend(rows);
        Ok(out)
    }
    fn device(&self) -> &Device {
        self.inner.device()
    }
    fn dtype(&self) -> DType {
        self.inner.dtype()
    }
}

fn argmax(v: &[f32]) -> u32 {
    let mut b = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[b] {
            b = i;
        }
    }
    b as u32
}

const GLM_TOKENS: (u32, u32, u32) = (101, 102, 100); // sop, eop, eos of glm-tiny

fn glm_blank_tokens() -> BlankTokens {
    BlankTokens { masks: vec![104, 108, 107], sop: GLM_TOKENS.0, eop: GLM_TOKENS.1, eos: Some(GLM_TOKENS.2) }
}

#[test]
fn glm_blank_filling_with_cache_equals_recomputation() {
    let m = load(&fixture_dir("WENHUI_GLM_FIXTURE", "glm-tiny"));
    let rec = Recorder { inner: m.backbone.as_ref(), rows: Mutex::new(Vec::new()) };
    // [CLS] text [MASK] text [sMASK] text eos: two blanks.
    let context = vec![103u32, 12, 47, 104, 8, 33, 61, 108, 5, 90, 100];
    let n = context.len();
    let cfg = GenerationConfig { max_new_tokens: 6, ..Default::default() };
    let out = fill_blanks(&rec, &context, &glm_blank_tokens(), &cfg).unwrap();
    assert_eq!(out.fills.len(), 2);
    assert_eq!(out.fills.iter().map(|f| f.mask_position).collect::<Vec<_>>(), vec![3, 7]);
    let cached = rec.rows.into_inner().unwrap();
    assert_eq!(cached.len(), out.sequence.len(), "every token is fed exactly once");

    // From scratch: a full forward of everything so far for every new token, no cache.
    let dev = Device::Cpu;
    let mut seq = context.clone();
    let mut blocks: Vec<(u32, u32)> = (0..n as u32).map(|i| (i, 0)).collect();
    let stops = [GLM_TOKENS.1, GLM_TOKENS.2];
    let mut fills = Vec::new();
    for &mask_pos in &[3u32, 7] {
        seq.push(GLM_TOKENS.0);
        blocks.push((mask_pos, 1));
        let mut fill = Vec::new();
        loop {
            let ids = Tensor::new(seq.as_slice(), &dev).unwrap().unsqueeze(0).unwrap();
            let pos: Vec<u32> = blocks.iter().map(|b| b.0).chain(blocks.iter().map(|b| b.1)).collect();
            let pos = Tensor::from_vec(pos, (1, 2, blocks.len()), &dev).unwrap();
            let input = BackboneInput::ids(ids).with_positions(pos).with_attention(Attention::Sep(vec![n]));
            let logits = m.backbone.forward(&input, None).unwrap().logits;
            let last = logits.get(0).unwrap().get(seq.len() - 1).unwrap();
            let got = Tensor::new(cached[seq.len() - 1].as_slice(), &dev).unwrap();
            assert_close(&format!("blank at {mask_pos}, step {}", fill.len()), &got, &last, 1e-4);
            let tok = argmax(&last.to_vec1::<f32>().unwrap());
            if stops.contains(&tok) {
                break;
            }
            fill.push(tok);
            if fill.len() == cfg.max_new_tokens {
                break;
            }
            seq.push(tok);
            blocks.push((mask_pos, fill.len() as u32 + 1));
        }
        if fill.len() == cfg.max_new_tokens {
            seq.push(*fill.last().unwrap());
            blocks.push((mask_pos, fill.len() as u32 + 1));
        }
        fills.push(fill);
    }
    assert_eq!(out.fills.iter().map(|f| f.tokens.clone()).collect::<Vec<_>>(), fills);
    assert_eq!(out.sequence, seq);
    assert!(fills.iter().any(|f| !f.is_empty()), "both fills empty: the test would not exercise conditioning on fills");
    let filled: Vec<u32> = [&context[..3], &fills[0][..], &context[4..7], &fills[1][..], &context[8..]].concat();
    assert_eq!(out.tokens, filled);

    // Beam search fills too, and the cache path stays consistent.
    let beam = GenerationConfig { max_new_tokens: 5, num_beams: 3, ..Default::default() };
    let b = fill_blanks(m.backbone.as_ref(), &context, &glm_blank_tokens(), &beam).unwrap();
    assert_eq!(b.fills.len(), 2);
    assert!(b.fills.iter().all(|f| f.tokens.len() <= 5 && f.score.is_finite()));
}

fn gpt2() -> LoadedModel {
    load(&gpt2_dir())
}

const PROMPT: [u32; 6] = [71, 61, 31, 55, 11, 69];

#[test]
fn sampling_is_reproducible_and_top_k_1_is_greedy() {
    let m = gpt2();
    let model = m.backbone.as_ref();
    let inputs = CausalInputs::new(model);
    let sample = |seed: u64| {
        let cfg = GenerationConfig { do_sample: true, top_k: 0, temperature: 1.5, max_new_tokens: 12, seed, ..Default::default() };
        generate(model, &PROMPT, &inputs, &cfg, None).unwrap().sequences[0].tokens.clone()
    };
    let a = sample(7);
    assert_eq!(a, sample(7), "same seed, different output");
    assert!((8..14).map(sample).any(|b| b != a), "different seeds all gave {a:?}");
    let nucleus = GenerationConfig { do_sample: true, top_p: 0.9, top_k: 20, max_new_tokens: 12, seed: 3, ..Default::default() };
    let n1 = generate(model, &PROMPT, &inputs, &nucleus, None).unwrap();
    assert_eq!(n1, generate(model, &PROMPT, &inputs, &nucleus, None).unwrap());

    let greedy = GenerationConfig { max_new_tokens: 12, ..Default::default() };
    let g = generate(model, &PROMPT, &inputs, &greedy, None).unwrap().sequences[0].tokens.clone();
    for seed in 0..3 {
        let top1 = GenerationConfig { do_sample: true, top_k: 1, seed, ..greedy.clone() };
        assert_eq!(generate(model, &PROMPT, &inputs, &top1, None).unwrap().sequences[0].tokens, g);
    }
}

#[test]
fn streaming_hook_sees_every_token_and_can_stop() {
    let m = gpt2();
    let model = m.backbone.as_ref();
    let inputs = CausalInputs::new(model);
    let cfg = GenerationConfig { max_new_tokens: 8, ..Default::default() };
    let mut seen = Vec::new();
    let mut hook = |i: usize, t: u32| {
        assert_eq!(i, seen.len());
        seen.push(t);
        true
    };
    let out = generate(model, &PROMPT, &inputs, &cfg, Some(&mut hook)).unwrap();
    assert_eq!(seen, out.sequences[0].tokens);
    let mut stop_after_3 = |i: usize, _t: u32| i < 2;
    let out = generate(model, &PROMPT, &inputs, &cfg, Some(&mut stop_after_3)).unwrap();
    assert_eq!(out.sequences[0].tokens.len(), 3);
    // Positions run out: generation stops at the model's 64 positions instead of failing.
    let long = GenerationConfig { max_new_tokens: 100, ..Default::default() };
    let out = generate(model, &PROMPT, &inputs, &long, None).unwrap();
    assert_eq!(PROMPT.len() + out.sequences[0].tokens.len(), 65);
}

#[test]
fn config_serde_round_trip() {
    let cfg: GenerationConfig = serde_json::from_str(r#"{"num_beams": 4, "early_stopping": "never", "eos_token_ids": [2]}"#).unwrap();
    assert_eq!(cfg.early_stopping, EarlyStopping::Never);
    assert_eq!(cfg.max_new_tokens, 20);
    let back: GenerationConfig = serde_json::from_str(&serde_json::to_string(&cfg).unwrap()).unwrap();
    assert_eq!(back, cfg);
    assert!(serde_json::from_str::<GenerationConfig>(r#"{"early_stopping": "sometimes"}"#).is_err());
    assert!(serde_json::from_str::<GenerationConfig>(r#"{"num_beam": 4}"#).is_err());
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let m = gpt2();
    let model = m.backbone.as_ref();
    let inputs = CausalInputs::new(model);
    let ok = GenerationConfig { max_new_tokens: 4, ..Default::default() };
    let err = |prompt: &[u32], cfg: &GenerationConfig| generate(model, prompt, &inputs, cfg, None).unwrap_err().to_string();
    assert!(err(&[], &ok).contains("empty prompt"));
    assert!(err(&PROMPT, &GenerationConfig { num_beams: 0, ..ok.clone() }).contains("num_beams"));
    for p in [0.0, -0.5, 1.5, f32::NAN] {
        assert!(err(&PROMPT, &GenerationConfig { top_p: p, do_sample: true, ..ok.clone() }).contains("top_p"));
    }
    assert!(err(&PROMPT, &GenerationConfig { temperature: 0.0, ..ok.clone() }).contains("temperature"));
    assert!(err(&PROMPT, &GenerationConfig { num_return_sequences: 3, ..ok.clone() }).contains("num_return_sequences"));
    assert!(err(&[1000], &ok).contains("out of range"));
    let long = vec![5u32; 65];
    let e = err(&long, &ok);
    assert!(e.contains("65 tokens") && e.contains("positions"), "{e}");

    let g = load(&fixture_dir("WENHUI_GLM_FIXTURE", "glm-tiny"));
    let glm = g.backbone.as_ref();
    let t = glm_blank_tokens();
    let fill = |ctx: &[u32]| fill_blanks(glm, ctx, &t, &ok).unwrap_err().to_string();
    assert!(fill(&[]).contains("empty context"));
    assert!(fill(&[103, 5, 6]).contains("no [MASK]"));
    let mut long = vec![5u32; 70];
    long[3] = 104;
    assert!(fill(&long).contains("positions"));
    assert!(fill_blanks(glm, &[103, 104], &t, &GenerationConfig { num_beams: 0, ..ok.clone() }).is_err());
}
