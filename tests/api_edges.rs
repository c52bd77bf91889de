//! Edges of the public library API, as a caller outside the crate reaches them: empty and
//! degenerate shapes, unbuildable or overflowing configs, unusable dtypes, bad hyper-parameters.
//! Each either works with an empty (mathematically right) result or is an `Err` that names what is
//! wrong; none panics, and none gives a silently wrong result.

mod common;

use candle_core::{DType, Device, Tensor, Var};
use common::fixture_dir;
use std::collections::HashMap;
use std::path::Path;
use wenhui::model::bert::BertConfig;
use wenhui::model::glm::{Glm, GlmConfig};
use wenhui::model::gpt2::Gpt2Config;
use wenhui::model::{build_mask, load_model, Attention, BackboneInput, KvCache, LoadOptions, LoadedModel, ModelConfig};

type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

const CPU: Device = Device::Cpu;

fn glm_tiny() -> LoadedModel {
    load_model(&fixture_dir("WENHUI_GLM_FIXTURE", "glm-tiny"), &LoadOptions::default()).unwrap_or_else(|e| panic!("{e}"))
}

/// The error's text, or a failure naming `what` when it was accepted.
fn err_text<T>(r: wenhui::Result<T>, what: &str) -> String {
    match r {
        Ok(_) => panic!("{what}: accepted"),
        Err(e) => e.to_string(),
    }
}

/// Like [`err_text`] for candle results (the `ops` functions).
fn candle_err<T>(r: candle_core::Result<T>, what: &str) -> String {
    match r {
        Ok(_) => panic!("{what}: accepted"),
        Err(e) => e.to_string(),
    }
}

fn assert_mentions(e: &str, needles: &[&str]) {
    for n in needles {
        assert!(e.contains(n), "`{e}` does not mention `{n}`");
    }
}

fn gpt2_config() -> Gpt2Config {
    serde_json::from_value(serde_json::json!({"vocab_size": 50, "n_embd": 16, "n_layer": 1, "n_head": 2, "n_positions": 16})).unwrap()
}

fn bert_config() -> BertConfig {
    serde_json::from_value(serde_json::json!({
        "vocab_size": 50, "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
        "intermediate_size": 32, "max_position_embeddings": 16
    }))
    .unwrap()
}

/// Item 1: a batch of no rows is an empty result of the right shape (the fused ops all take
/// empty batches), for every architecture, and `build_mask` gives an empty mask.
#[test]
fn an_empty_batch_gives_an_empty_result() -> TestResult {
    let m = glm_tiny();
    let out = m.backbone.forward(&BackboneInput::ids(Tensor::zeros((0, 5), DType::U32, &CPU)?), None)?;
    assert_eq!(out.logits.dims(), &[0, 5, 120]);
    assert_eq!(out.hidden.dims(), &[0, 5, 64]);
    let sep = BackboneInput::ids(Tensor::zeros((0, 5), DType::U32, &CPU)?).with_attention(Attention::Sep(vec![]));
    assert_eq!(m.backbone.forward(&sep, None)?.logits.dims(), &[0, 5, 120]);
    for cfg in [ModelConfig::Gpt2(gpt2_config()), ModelConfig::Bert(bert_config())] {
        let model = cfg.build_frozen(cfg.init_weights(1)?, DType::F32, &CPU)?;
        let out = model.forward(&BackboneInput::ids(Tensor::zeros((0, 4), DType::U32, &CPU)?), None)?;
        assert_eq!(out.logits.dims(), &[0, 4, 50], "{:?}", cfg.kind());
    }
    for attention in [Attention::Causal, Attention::Bidirectional, Attention::Sep(vec![])] {
        let mask = build_mask(&attention, None, 0, 3, 0, DType::F32, &CPU)?;
        assert_eq!(mask.elem_count(), 0, "{attention:?}: {:?}", mask.dims());
        assert_eq!(&mask.dims()[1..], &[1, 3, 3]);
    }
    Ok(())
}

/// Item 2: a sequence of no tokens is refused at the model's entry; the packed attention op
/// returns an empty context instead of panicking in a worker thread.
#[test]
fn an_empty_sequence_is_refused() -> TestResult {
    let m = glm_tiny();
    let e = err_text(m.backbone.forward(&BackboneInput::ids(Tensor::zeros((1, 0), DType::U32, &CPU)?), None), "[1, 0] ids");
    assert_mentions(&e, &["no tokens", "[1, 0]"]);
    let e = err_text(m.backbone.forward(&BackboneInput::embeddings(Tensor::zeros((2, 0, 64), DType::F32, &CPU)?), None), "embeddings");
    assert_mentions(&e, &["no tokens"]);
    let mask = Tensor::ones((1, 1, 0, 0), DType::F32, &CPU)?;
    let ctx = wenhui::ops::attention_packed(&Tensor::zeros((2, 0, 24), DType::F32, &CPU)?, 2, &mask, None, 0.5, 0.0, 0)?;
    assert_eq!(ctx.dims(), &[2, 0, 8]);
    let q = Tensor::zeros((2, 2, 0, 4), DType::F32, &CPU)?;
    let ctx = wenhui::ops::attention(&q, &q, &q, &mask, None, 0.5, 0.0, 0)?;
    assert_eq!(ctx.dims(), &[2, 2, 0, 4]);
    // Queries without any key: nothing to attend to.
    let (q, k) = (Tensor::zeros((1, 1, 2, 4), DType::F32, &CPU)?, Tensor::zeros((1, 1, 0, 4), DType::F32, &CPU)?);
    let e = candle_err(wenhui::ops::attention(&q, &k, &k, &Tensor::ones((1, 1, 2, 0), DType::F32, &CPU)?, None, 0.5, 0.0, 0), "no keys");
    assert_mentions(&e, &["no keys"]);
    Ok(())
}

/// Item 3: every build path validates the config first (heads, divisibility, vocabulary), for
/// all three architectures, instead of dividing by zero or failing later.
#[test]
fn build_paths_validate_the_config() -> TestResult {
    let zero_heads = ModelConfig::Glm(GlmConfig::new(2, 64, 0, 100, 16));
    let e = err_text(zero_heads.build_trainable(None, DType::F32, &CPU), "0 heads, build_trainable");
    assert_mentions(&e, &["num_attention_heads", "must be positive"]);
    assert_mentions(&err_text(zero_heads.build_frozen(HashMap::new(), DType::F32, &CPU), "build_frozen"), &["num_attention_heads"]);
    assert_mentions(&err_text(zero_heads.init_weights(0), "init_weights"), &["num_attention_heads"]);
    let map = candle_nn::VarMap::new();
    let vb = candle_nn::VarBuilder::from_varmap(&map, DType::F32, &CPU);
    assert_mentions(&err_text(zero_heads.build(vb.clone()), "build"), &["num_attention_heads"]);
    assert_mentions(&err_text(Glm::new(&GlmConfig::new(2, 64, 0, 100, 16), vb.clone()), "Glm::new"), &["num_attention_heads"]);
    let e = err_text(Glm::new(&GlmConfig::new(2, 64, 5, 100, 16), vb.clone()), "5 heads for 64");
    assert_mentions(&e, &["num_attention_heads", "does not divide"]);
    assert_mentions(&err_text(Glm::new(&GlmConfig::new(2, 64, 4, 0, 16), vb.clone()), "vocabulary 0"), &["vocab_size"]);
    let mut gpt2 = gpt2_config();
    gpt2.n_head = 0;
    assert_mentions(&err_text(ModelConfig::Gpt2(gpt2).build_trainable(None, DType::F32, &CPU), "GPT-2, 0 heads"), &["n_head"]);
    let mut bert = bert_config();
    bert.num_attention_heads = 3;
    assert_mentions(&err_text(ModelConfig::Bert(bert).build_trainable(None, DType::F32, &CPU), "BERT, 3 heads"), &["num_attention_heads"]);
    let mut bert = bert_config();
    bert.type_vocab_size = 0;
    assert_mentions(
        &err_text(ModelConfig::Bert(bert).build_trainable(None, DType::F32, &CPU), "BERT, no token types"),
        &["type_vocab_size"],
    );
    Ok(())
}

/// Item 4: sizes that overflow (or could never be allocated) are refused by name when the config
/// is read, before anything is multiplied; `position_rows` does not overflow.
#[test]
fn huge_config_sizes_are_refused_by_name() {
    let base = serde_json::from_str::<serde_json::Value>(
        &std::fs::read_to_string(fixture_dir("WENHUI_GLM_FIXTURE", "glm-tiny").join("config.json")).unwrap(),
    )
    .unwrap();
    for (field, value) in [
        ("max_sequence_length", serde_json::json!(u64::MAX)),
        ("vocab_size", serde_json::json!(4_611_686_018_427_387_904u64)),
        ("hidden_size", serde_json::json!(1_099_511_627_776u64)),
        ("num_attention_heads", serde_json::json!(u64::MAX)),
    ] {
        let mut json = base.clone();
        json[field] = value;
        let e = err_text(ModelConfig::from_json(json.clone(), Path::new("config.json")), field);
        assert_mentions(&e, &[field]);
        // Through load_model too (the audit's path), with the fixture's weights beside the config.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), json.to_string()).unwrap();
        std::fs::copy(fixture_dir("WENHUI_GLM_FIXTURE", "glm-tiny").join("model.safetensors"), dir.path().join("model.safetensors"))
            .unwrap();
        assert_mentions(&err_text(load_model(dir.path(), &LoadOptions::default()), field), &[field]);
    }
    let mut cfg = GlmConfig::new(2, 64, 4, 100, usize::MAX);
    assert_eq!(cfg.position_rows(), usize::MAX, "saturates");
    assert_mentions(&err_text(cfg.validate(Path::new("c.json")), "max length"), &["max_sequence_length"]);
    cfg = GlmConfig::new(1, 1 << 17, 4, 1 << 24, 16);
    // Each field within its bound, but together 2.2e12 embedding parameters.
    assert_mentions(&err_text(cfg.validate(Path::new("c.json")), "total"), &["vocab_size", "parameters"]);
    let mut gpt2 = gpt2_config();
    gpt2.n_inner = Some(usize::MAX);
    assert_mentions(&err_text(gpt2.validate(Path::new("c.json")), "n_inner"), &["n_inner"]);
    let mut bert = bert_config();
    bert.intermediate_size = usize::MAX / 2;
    assert_mentions(&err_text(bert.validate(Path::new("c.json")), "intermediate_size"), &["intermediate_size"]);
}

/// Item 5: a layer-norm epsilon that is not a positive number, dropout probabilities outside
/// [0, 1) and a negative init spread are refused, in all three architectures' configs.
#[test]
fn epsilon_and_dropout_are_checked() {
    let glm = |f: &dyn Fn(&mut GlmConfig)| {
        let mut c = GlmConfig::new(2, 64, 4, 100, 16);
        f(&mut c);
        c.validate(Path::new("c.json"))
    };
    assert_mentions(&err_text(glm(&|c| c.layernorm_epsilon = -1.0), "eps -1"), &["layernorm_epsilon"]);
    assert_mentions(&err_text(glm(&|c| c.layernorm_epsilon = f64::NAN), "eps NaN"), &["layernorm_epsilon"]);
    assert_mentions(&err_text(glm(&|c| c.layernorm_epsilon = 0.0), "eps 0"), &["layernorm_epsilon"]);
    assert_mentions(&err_text(glm(&|c| c.embedding_dropout_prob = 7.0), "p 7"), &["embedding_dropout_prob", "[0, 1)"]);
    assert_mentions(&err_text(glm(&|c| c.attention_dropout_prob = -0.1), "p -0.1"), &["attention_dropout_prob"]);
    assert_mentions(&err_text(glm(&|c| c.output_dropout_prob = 1.0), "p 1"), &["output_dropout_prob"]);
    assert_mentions(&err_text(glm(&|c| c.initializer_range = f64::INFINITY), "init ∞"), &["initializer_range"]);
    assert!(glm(&|c| c.embedding_dropout_prob = 0.0).is_ok());

    // From a config file, as the audit loaded it.
    let mut json = serde_json::to_value(GlmConfig::new(2, 64, 4, 100, 16)).unwrap();
    json["model_type"] = "glm".into();
    json["layernorm_epsilon"] = serde_json::json!(-1.0);
    assert_mentions(&err_text(ModelConfig::from_json(json, Path::new("c.json")), "eps -1 from JSON"), &["layernorm_epsilon"]);

    let mut gpt2 = gpt2_config();
    gpt2.layer_norm_epsilon = -1.0;
    assert_mentions(&err_text(gpt2.validate(Path::new("c.json")), "GPT-2 eps"), &["layer_norm_epsilon"]);
    let mut gpt2 = gpt2_config();
    gpt2.attn_pdrop = 7.0;
    assert_mentions(&err_text(gpt2.validate(Path::new("c.json")), "GPT-2 p"), &["attn_pdrop"]);
    let mut bert = bert_config();
    bert.layer_norm_eps = f64::NAN;
    assert_mentions(&err_text(bert.validate(Path::new("c.json")), "BERT eps"), &["layer_norm_eps"]);
    let mut bert = bert_config();
    bert.hidden_dropout_prob = 7.0;
    assert_mentions(&err_text(bert.validate(Path::new("c.json")), "BERT p"), &["hidden_dropout_prob"]);
}

/// Item 6: a model is not built in a dtype its device cannot compute in (half types on the CPU,
/// integer types anywhere), and mixed precision refuses them too; f32 and f64 on the CPU work.
#[test]
fn unusable_dtypes_are_refused_before_a_forward() -> TestResult {
    let dir = fixture_dir("WENHUI_GLM_FIXTURE", "glm-tiny");
    for dtype in [DType::F16, DType::BF16, DType::U32] {
        let e = err_text(load_model(&dir, &LoadOptions { dtype, device: CPU, gelu: None, config: None }), &format!("{dtype:?} on the CPU"));
        assert_mentions(&e, &[&format!("{dtype:?}"), "f32"]);
    }
    let cfg = ModelConfig::Glm(GlmConfig::new(1, 16, 2, 40, 8));
    assert_mentions(&err_text(cfg.build_trainable(None, DType::BF16, &CPU), "bf16 trainable"), &["BF16", "GPU"]);
    let (_vars, mut model) = cfg.build_trainable(None, DType::F32, &CPU)?;
    assert_mentions(&err_text(model.set_compute_dtype(DType::BF16), "bf16 compute on the CPU"), &["BF16", "GPU"]);
    assert_mentions(&err_text(model.set_compute_dtype(DType::U8), "u8 compute"), &["U8"]);
    model.set_compute_dtype(DType::F32)?;
    let (_vars, f64_model) = cfg.build_trainable(None, DType::F64, &CPU)?;
    let logits = f64_model.forward(&BackboneInput::ids(Tensor::new(&[[1u32, 2, 3]], &CPU)?), None)?.logits;
    assert_eq!(logits.dtype(), DType::F64);
    Ok(())
}

/// Item 7: the public ops take a zero-size last dimension: empty results, and `linear` over no
/// input features is the bias broadcast to every row (with the bias's gradient).
#[test]
fn ops_take_a_zero_size_last_dimension() -> TestResult {
    use wenhui::ops;
    let z = |s: &[usize]| Tensor::zeros(s, DType::F32, &CPU);
    let y = ops::layer_norm(&z(&[2, 0])?, &z(&[0])?, &z(&[0])?, 1e-5)?;
    assert_eq!(y.dims(), &[2, 0]);
    assert_eq!(ops::masked_softmax(&z(&[1, 1, 2, 0])?, &z(&[1, 1, 2, 0])?, 1.0)?.dims(), &[1, 1, 2, 0]);
    assert_eq!(ops::cross_entropy(&z(&[0, 0])?, &Tensor::zeros(0, DType::U32, &CPU)?)?.dims(), &[0]);
    let e = candle_err(ops::cross_entropy(&z(&[2, 0])?, &Tensor::zeros(2, DType::U32, &CPU)?), "no classes");
    assert_mentions(&e, &["0 classes"]);
    let b = Var::new(&[1f32, 2.0, 3.0], &CPU)?;
    let y = ops::linear(&z(&[2, 0])?, &z(&[3, 0])?, b.as_tensor())?;
    assert_eq!(y.to_vec2::<f32>()?, vec![vec![1.0, 2.0, 3.0]; 2]);
    let grads = y.sum_all()?.backward()?;
    assert_eq!(grads.get(b.as_tensor()).ok_or("no bias gradient")?.to_vec1::<f32>()?, vec![2.0; 3]);
    assert_eq!(ops::linear_no_bias(&z(&[2, 0])?, &z(&[3, 0])?)?.to_vec2::<f32>()?, vec![vec![0.0; 3]; 2]);
    let g = ops::linear_gelu(&z(&[4, 0])?, &z(&[3, 0])?, b.as_tensor(), true)?;
    assert_eq!(g.dims(), &[4, 3]);
    let want = ops::gelu_erf(&b.as_tensor().unsqueeze(0)?)?.to_vec2::<f32>()?;
    assert_eq!(g.to_vec2::<f32>()?[3], want[0]);
    Ok(())
}

/// Item 8: AdamW refuses hyper-parameters that would move the parameters the wrong way or turn
/// them into NaN, and has torch's defaults.
#[test]
fn adamw_checks_its_hyper_parameters() -> TestResult {
    use wenhui::train::optim::{AdamW, AdamWConfig};
    let d = AdamWConfig::default();
    assert_eq!((d.beta1, d.beta2, d.eps, d.weight_decay), (0.9, 0.999, 1e-8, 0.0));
    let var = || Var::new(&[1f32, -2.0], &CPU);
    let bad_configs = [
        (AdamWConfig { beta1: 1.0, ..d }, "beta1"),
        (AdamWConfig { beta1: -0.1, ..d }, "beta1"),
        (AdamWConfig { beta2: f64::NAN, ..d }, "beta2"),
        (AdamWConfig { eps: -1e-8, ..d }, "eps"),
        (AdamWConfig { eps: f64::INFINITY, ..d }, "eps"),
        (AdamWConfig { weight_decay: f64::NAN, ..d }, "weight_decay"),
    ];
    for (cfg, field) in bad_configs {
        assert_mentions(&err_text(AdamW::new(vec![("w".into(), var()?)], cfg), field), &[field]);
    }
    let w = var()?;
    let mut opt = AdamW::new(vec![("w".into(), w.clone())], d)?;
    assert_mentions(&err_text(opt.add_group(vec![("u".into(), var()?)], f64::NAN, 0.0), "lr_scale NaN"), &["lr_scale"]);
    assert_mentions(&err_text(opt.add_group(vec![("u".into(), var()?)], 1.0, -1.0), "decay -1"), &["weight_decay"]);
    let grads = (w.as_tensor() * &Tensor::new(&[0.5f32, -1.0], &CPU)?)?.sum_all()?.backward()?;
    assert_mentions(&err_text(opt.step(&grads, 0.1, Some(-1.0)), "clip -1"), &["clip"]);
    assert_mentions(&err_text(opt.step(&grads, 0.1, Some(0.0)), "clip 0"), &["clip"]);
    assert_mentions(&err_text(opt.step(&grads, f64::NAN, None), "lr NaN"), &["learning rate"]);
    assert_mentions(&err_text(opt.step(&grads, -0.1, None), "lr -0.1"), &["learning rate"]);
    assert_eq!(opt.steps(), 0, "a refused step is not counted");
    assert_eq!(w.as_tensor().to_vec1::<f32>()?, vec![1.0, -2.0], "a refused step leaves the parameters");
    opt.step(&grads, 0.1, Some(1.0))?;
    assert_eq!(opt.steps(), 1);
    Ok(())
}

/// Item 9: a prompt-encoder table whose row count overflows is refused by name.
#[test]
fn prompt_encoder_sizes_cannot_overflow() {
    use wenhui::ptuning::{EncoderKind, PromptEncoder, PromptEncoderConfig};
    let cfg = PromptEncoderConfig {
        kind: EncoderKind::Embedding,
        num_virtual_tokens: usize::MAX / 2 + 1,
        token_dim: 8,
        hidden: 4,
        layers: 1,
        num_transformer_submodules: 2,
        lstm_head: wenhui::ptuning::LstmHead::Peft,
    };
    assert_eq!(cfg.rows(), usize::MAX, "saturates");
    assert_mentions(&err_text(PromptEncoder::seeded(&cfg, 1, &CPU), "overflowing rows"), &["num_virtual_tokens"]);
    // No overflow, but far beyond any prompt: refused before allocating.
    let cfg = PromptEncoderConfig { num_virtual_tokens: 1 << 40, num_transformer_submodules: 1, ..cfg };
    assert_mentions(&err_text(PromptEncoder::seeded(&cfg, 1, &CPU), "2^40 rows"), &["num_virtual_tokens"]);
    let cfg = PromptEncoderConfig { kind: EncoderKind::Lstm, num_virtual_tokens: 3, hidden: 1 << 40, ..cfg };
    assert_mentions(&err_text(cfg.validate(Path::new("c.json")), "2^40 hidden"), &["hidden"]);
}

/// Item 10: ROUGE-0 is not a score.
#[test]
fn rouge_n_needs_n_of_at_least_one() -> TestResult {
    let toks = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
    let (a, b) = (toks("the cat sat"), toks("the cat ran"));
    assert_mentions(&err_text(wenhui::eval::rouge::rouge_n(&a, &b, 0), "n = 0"), &["ROUGE-0", "n"]);
    assert!((wenhui::eval::rouge::rouge_n(&a, &b, 1)?.fmeasure - 2.0 / 3.0).abs() < 1e-12);
    Ok(())
}

/// Item 11: window strides that would skip tokens (or never advance) are refused.
#[test]
fn lm_windows_refuse_strides_that_skip_tokens() -> TestResult {
    use wenhui::eval::lm::{windows, LmMode, LmTokens};
    let t = LmTokens { cls: 1, mask: 2, sop: 3, pad: 0 };
    let doc: Vec<u32> = (10..20).collect();
    for (seq, stride) in [(3, 5), (3, 0), (1, 1)] {
        let e = err_text(windows(&doc, seq, stride, LmMode::Unidirectional, &t), &format!("seq {seq} stride {stride}"));
        assert_mentions(&e, &["stride", "seq_len"]);
    }
    assert_eq!(windows(&doc, 3, 3, LmMode::Bidirectional, &t)?.len(), 4);
    Ok(())
}

/// Item 12: `make_sample` validates the objective config (a zero `max_span` underflowed, or
/// looped forever in a release build).
#[test]
fn make_sample_validates_the_objective_config() -> TestResult {
    use rand::SeedableRng;
    use wenhui::data::blank::{make_sample, Objective, ObjectiveConfig, ObjectiveTokens};
    let ids = ObjectiveTokens { cls: 1, eos: 2, mask: 3, smask: 4, gmask: 5, sop: 6, eop: 7, dblock: None };
    let text: Vec<u32> = std::iter::once(1).chain(10..60).collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let cfg = ObjectiveConfig { max_span: 0, ..ObjectiveConfig::default() };
    let e = err_text(make_sample(&text, Objective::Token, &cfg, &ids, &|_| false, &mut rng), "max_span 0");
    assert_mentions(&e, &["max_span"]);
    let s = make_sample(&text, Objective::Token, &ObjectiveConfig::default(), &ids, &|_| false, &mut rng)?;
    assert!(s.loss_mask.iter().any(|&m| m > 0.0));
    Ok(())
}

/// Item 13: dropout probabilities outside [0, 1]; a cache of another batch size or layer count;
/// ids that are not integers; `KvCache::try_clone`.
#[test]
fn dropout_cache_and_id_misuse_are_errors() -> TestResult {
    let x = Tensor::ones((2, 3), DType::F32, &CPU)?;
    for p in [1.5, -0.5, f64::NAN] {
        assert_mentions(&candle_err(wenhui::ops::dropout(&x, p, 1), &format!("p {p}")), &["dropout", "[0, 1]"]);
        assert_mentions(&candle_err(wenhui::ops::residual_dropout(&x, &x, p, 1), &format!("residual p {p}")), &["[0, 1]"]);
    }
    assert_eq!(wenhui::ops::dropout(&x, 1.0, 1)?.sum_all()?.to_scalar::<f32>()?, 0.0);
    let (qkv, mask) = (Tensor::ones((1, 2, 6), DType::F32, &CPU)?, Tensor::ones((1, 1, 2, 2), DType::F32, &CPU)?);
    for p in [1.0, 1.5, f64::NAN] {
        let e = candle_err(wenhui::ops::attention_packed(&qkv, 1, &mask, None, 0.5, p, 1), &format!("attention p {p}"));
        assert_mentions(&e, &["dropout", "[0, 1)"]);
    }

    let m = glm_tiny();
    let model = m.backbone.as_ref();
    let mut cache = model.new_cache();
    model.forward(&BackboneInput::ids(Tensor::new(&[[5u32, 6], [7, 8]], &CPU)?), Some(&mut cache))?;
    let copy = cache.try_clone()?;
    assert_eq!((copy.len(), copy.batch()), (2, 2));
    let three = BackboneInput::ids(Tensor::new(&[[1u32], [2], [3]], &CPU)?);
    let e = err_text(model.forward(&three, Some(&mut cache)), "batch 3 over a cache of 2");
    assert_mentions(&e, &["cache", "2 rows", "3"]);
    assert_eq!(cache.len(), 2, "the refused step cached nothing");
    let mut short = KvCache::new(1);
    let e = err_text(model.forward(&BackboneInput::ids(Tensor::new(&[[5u32]], &CPU)?), Some(&mut short)), "a 1-layer cache");
    assert_mentions(&e, &["cache", "1 layer", "2"]);

    let float_ids = BackboneInput::ids(Tensor::new(&[[5.7f32, 6.2]], &CPU)?);
    assert_mentions(&err_text(model.forward(&float_ids, None), "float ids"), &["ids", "F32", "integer"]);
    assert_mentions(&err_text(model.embed(&Tensor::new(&[[5.7f32]], &CPU)?), "float ids to embed"), &["integer"]);
    let int_embeddings = BackboneInput::embeddings(Tensor::zeros((1, 2, 64), DType::U32, &CPU)?);
    assert_mentions(&err_text(model.forward(&int_embeddings, None), "u32 embeddings"), &["embeddings", "float"]);
    let narrow = BackboneInput::embeddings(Tensor::zeros((1, 2, 10), DType::F32, &CPU)?);
    assert_mentions(&err_text(model.forward(&narrow, None), "10-wide embeddings"), &["embeddings", "64"]);
    Ok(())
}
