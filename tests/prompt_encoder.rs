//! Prompt encoder vs. peft's golden fixtures (`tests/fixtures/prompt-encoder`, or the folder in
//! `WENHUI_PROMPT_ENCODER_FIXTURE`): outputs, loss, every parameter gradient, the adapter file,
//! round trips, and errors on bad input.

use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use wenhui::ptuning::{AdapterMeta, EncoderKind, LstmHead, PromptEncoder, PromptEncoderConfig};

const TOL: f64 = 1e-5;

fn fixture_root() -> PathBuf {
    match std::env::var_os("WENHUI_PROMPT_ENCODER_FIXTURE") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/prompt-encoder"),
    }
}

/// The variant folders present, with their names.
fn variants() -> Vec<(&'static str, PathBuf)> {
    let root = fixture_root();
    let found: Vec<_> = ["lstm", "mlp", "lstm-lama-equiv"].into_iter().map(|v| (v, root.join(v))).filter(|(_, p)| p.is_dir()).collect();
    assert!(!found.is_empty(), "no prompt-encoder fixture variant under {}", root.display());
    found
}

fn load(path: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(path, &Device::Cpu).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims());
    wenhui::ops::max_abs_diff(a, b).unwrap()
}

fn scalar(t: &Tensor) -> f64 {
    t.to_dtype(DType::F64).unwrap().flatten_all().unwrap().get(0).unwrap().to_scalar::<f64>().unwrap()
}

#[test]
fn forward_loss_and_gradients_match_peft() {
    for (name, dir) in variants() {
        let weights = load(&dir.join("weights.safetensors"));
        let io = load(&dir.join("io.safetensors"));
        let expected_grads = load(&dir.join("grads.safetensors"));
        let enc = PromptEncoder::load_weights(&dir.join("weights.safetensors"), &Device::Cpu).unwrap();
        let cfg = enc.config();
        let emb = &weights["embedding.weight"];
        assert_eq!((cfg.rows(), cfg.token_dim), emb.dims2().unwrap(), "{name}");
        assert_eq!(cfg.kind, if name == "mlp" { EncoderKind::Mlp } else { EncoderKind::Lstm }, "{name}");
        let mut names: Vec<_> = enc.named_tensors().iter().map(|(n, _)| n.clone()).collect();
        let mut file_names: Vec<_> = weights.keys().cloned().collect();
        names.sort();
        file_names.sort();
        assert_eq!(names, file_names, "{name}: parameter names");

        let (enc, vars) = enc.to_trainable().unwrap();
        let out = enc.forward(&io["indices"]).unwrap();
        let out_err = max_abs(&out, &io["output"]);
        let loss = (&out * &io["probe"]).unwrap().sum_all().unwrap();
        let loss_err = (scalar(&loss) - scalar(&io["loss"])).abs();
        let pe_err = max_abs(&enc.prompt_embeddings().unwrap(), &io["prompt_embeddings"]);
        let grads = loss.backward().unwrap();
        let data = vars.data().lock().unwrap();
        assert_eq!(data.len(), expected_grads.len(), "{name}: one gradient per parameter");
        let mut grad_err = 0f64;
        for (pname, var) in data.iter() {
            let g = grads.get(var).unwrap_or_else(|| panic!("{name}: no gradient for {pname}"));
            let want = expected_grads.get(pname).unwrap_or_else(|| panic!("{name}: {pname} not in grads.safetensors"));
            let e = max_abs(g, want);
            assert!(e <= TOL, "{name}: gradient of {pname} off by {e}");
            assert!(max_abs(g, &g.zeros_like().unwrap()) > 0.0, "{name}: zero or NaN gradient for {pname}");
            grad_err = grad_err.max(e);
        }
        eprintln!("{name}: max |output err| {out_err:.3e}, |loss err| {loss_err:.3e}, prompt_embeddings {pe_err:.3e}, max |grad err| {grad_err:.3e}");
        assert!(out_err <= TOL, "{name}: output off by {out_err}");
        assert!(loss_err <= TOL, "{name}: loss off by {loss_err}");
        assert!(pe_err <= TOL, "{name}: prompt_embeddings off by {pe_err}");
    }
}

#[test]
fn prefixed_state_dict_loads() {
    for (name, dir) in variants() {
        let weights = load(&dir.join("weights.safetensors"));
        let io = load(&dir.join("io.safetensors"));
        let mut prefixed: HashMap<String, Tensor> = weights.into_iter().map(|(k, v)| (format!("prompt_encoder.default.{k}"), v)).collect();
        prefixed.insert("base_model.transformer.wte.weight".into(), Tensor::zeros((3, 3), DType::F32, &Device::Cpu).unwrap());
        let enc = PromptEncoder::from_state_dict(prefixed, Path::new("peft-model")).unwrap();
        assert!(max_abs(&enc.forward(&io["indices"]).unwrap(), &io["output"]) <= TOL, "{name}");
    }
}

#[test]
fn peft_adapter_files_load_and_match() {
    let mut seen = 0;
    for (name, dir) in variants() {
        if !dir.join("adapter_model.safetensors").is_file() {
            continue;
        }
        seen += 1;
        let io = load(&dir.join("io.safetensors"));
        let (adapter, meta) = PromptEncoder::load_adapter(&dir, &Device::Cpu).unwrap();
        assert_eq!(adapter.config().kind, EncoderKind::Embedding);
        assert_eq!(meta.reparameterization, Some(if name == "mlp" { EncoderKind::Mlp } else { EncoderKind::Lstm }));
        let err = max_abs(adapter.embedding(), &io["prompt_embeddings"]);
        let full = PromptEncoder::load_weights(&dir.join("weights.safetensors"), &Device::Cpu).unwrap();
        let err_full = max_abs(adapter.embedding(), &full.prompt_embeddings().unwrap());
        eprintln!("{name}: adapter vs io.prompt_embeddings {err:.3e}, vs wenhui's encoder {err_full:.3e}");
        assert!(err <= TOL && err_full <= TOL, "{name}");
        // The collapsed encoder reproduces peft's prompt for arange(T).
        assert!(max_abs(&adapter.prompt_embeddings().unwrap(), &io["prompt_embeddings"]) <= TOL);
    }
    eprintln!("{seen} adapter file(s) checked");
}

#[test]
fn adapter_and_state_round_trip() {
    for (name, dir) in variants() {
        let enc = PromptEncoder::load_weights(&dir.join("weights.safetensors"), &Device::Cpu).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let meta = AdapterMeta { num_attention_heads: Some(2), num_layers: Some(1), ..AdapterMeta::default() };
        enc.save_adapter(tmp.path(), &meta).unwrap();
        let (back, back_meta) = PromptEncoder::load_adapter(tmp.path(), &Device::Cpu).unwrap();
        assert_eq!(max_abs(back.embedding(), &enc.prompt_embeddings().unwrap()), 0.0, "{name}");
        assert_eq!(back_meta, AdapterMeta { reparameterization: Some(enc.config().kind), ..meta.clone() });
        // Re-saving the collapsed adapter keeps file content and config.
        let tmp2 = tempfile::tempdir().unwrap();
        back.save_adapter(tmp2.path(), &back_meta).unwrap();
        let read = |p: &Path| std::fs::read_to_string(p.join("adapter_config.json")).unwrap();
        assert_eq!(read(tmp.path()), read(tmp2.path()), "{name}");
        // Fields mirror a real peft adapter_config.json.
        if dir.join("adapter_config.json").is_file() {
            let ours: serde_json::Value = serde_json::from_str(&read(tmp.path())).unwrap();
            let peft: serde_json::Value = serde_json::from_str(&read(&dir)).unwrap();
            for (k, v) in peft.as_object().unwrap() {
                if k != "peft_version" {
                    assert_eq!(ours.get(k), Some(v), "{name}: adapter_config.json field {k}");
                }
            }
        }
        // Full state: every weight back, same outputs, still trainable.
        enc.save_state(tmp.path()).unwrap();
        let state = PromptEncoder::load_state(tmp.path(), &Device::Cpu).unwrap();
        assert_eq!(state.config(), enc.config());
        for ((n1, t1), (n2, t2)) in enc.named_tensors().iter().zip(state.named_tensors()) {
            assert_eq!(n1, n2);
            assert_eq!(max_abs(t1, t2), 0.0, "{name}: {n1}");
        }
        let (trainable, vars) = state.to_trainable().unwrap();
        let loss = trainable.prompt_embeddings().unwrap().sqr().unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        assert!(vars.all_vars().iter().all(|v| grads.get(v).is_some()), "{name}");
    }
}

#[test]
fn fresh_encoders_give_every_parameter_a_nonzero_gradient() {
    let kinds = [
        (EncoderKind::Lstm, LstmHead::Peft),
        (EncoderKind::Lstm, LstmHead::FewGlue),
        (EncoderKind::Mlp, LstmHead::Peft),
        (EncoderKind::Embedding, LstmHead::Peft),
    ];
    for (kind, lstm_head) in kinds {
        for layers in [1, 3] {
            let cfg = PromptEncoderConfig {
                kind,
                num_virtual_tokens: 5,
                token_dim: 8,
                hidden: 6,
                layers,
                num_transformer_submodules: 1,
                lstm_head,
            };
            let (enc, vars) = PromptEncoder::fresh(&cfg, DType::F32, &Device::Cpu).unwrap();
            // The state's shapes describe the same encoder again.
            let tensors = enc.named_tensors().iter().cloned().collect();
            assert_eq!(
                PromptEncoderConfig::infer(&tensors, Path::new("x")).unwrap(),
                PromptEncoderConfig {
                    layers: if kind == EncoderKind::Lstm { layers } else { 0 },
                    hidden: if kind == EncoderKind::Embedding { 0 } else { 6 },
                    ..cfg.clone()
                }
            );
            let ids = Tensor::new(&[[0u32, 1, 2, 3, 4], [4, 2, 0, 1, 3]], &Device::Cpu).unwrap();
            let out = enc.forward(&ids).unwrap();
            assert_eq!(out.dims(), [2, 5, 8]);
            let probe = Tensor::randn(0f32, 1.0, (2, 5, 8), &Device::Cpu).unwrap();
            let grads = (out * probe).unwrap().sum_all().unwrap().backward().unwrap();
            let data = vars.data().lock().unwrap();
            assert_eq!(data.len(), enc.named_tensors().len());
            for (n, v) in data.iter() {
                let g = grads.get(v).unwrap_or_else(|| panic!("{kind:?}: no gradient for {n}"));
                assert!(max_abs(g, &g.zeros_like().unwrap()) > 0.0, "{kind:?}/{layers}: zero or NaN gradient for {n}");
            }
        }
    }
}

fn err_text<T: std::fmt::Debug>(r: wenhui::Result<T>) -> String {
    r.expect_err("expected an error").to_string()
}

#[test]
fn bad_input_is_an_error_naming_the_tensor() {
    let (_, lstm_dir) = variants().into_iter().next().unwrap();
    let weights = load(&lstm_dir.join("weights.safetensors"));
    let src = Path::new("bad.safetensors");
    let kind = PromptEncoderConfig::infer(&weights, src).unwrap().kind;
    let victim = if kind == EncoderKind::Lstm { "lstm_head.bias_hh_l0_reverse" } else { "mlp_head.4.bias" };

    for missing in ["embedding.weight", victim] {
        let mut w = weights.clone();
        w.remove(missing);
        let e = err_text(PromptEncoder::from_state_dict(w, src));
        assert!(e.contains(missing) && e.contains("bad.safetensors"), "{e}");
    }
    let mut w = weights.clone();
    w.insert("mlp_head.2.weight".into(), Tensor::zeros((5, 5), DType::F32, &Device::Cpu).unwrap());
    let e = err_text(PromptEncoder::from_state_dict(w, src));
    assert!(e.contains("mlp_head.2.weight"), "{e}");
    let mut w = weights.clone();
    w.insert("embedding.weight".into(), Tensor::zeros(7, DType::F32, &Device::Cpu).unwrap());
    assert!(err_text(PromptEncoder::from_state_dict(w, src)).contains("embedding.weight"));
    let mut w = weights.clone();
    w.insert("mlp_head.9.weight".into(), Tensor::zeros((2, 2), DType::F32, &Device::Cpu).unwrap());
    assert!(err_text(PromptEncoder::from_state_dict(w, src)).contains("mlp_head.9.weight"));

    let enc = PromptEncoder::from_state_dict(weights, src).unwrap();
    let rows = enc.config().rows() as i64;
    for bad in [Tensor::new(&[[0i64, rows]], &Device::Cpu).unwrap(), Tensor::new(&[[-1i64, 0]], &Device::Cpu).unwrap()] {
        let e = err_text(enc.forward(&bad));
        assert!(e.contains("indices") && e.contains("embedding.weight"), "{e}");
    }
    assert!(err_text(enc.forward(&Tensor::new(&[0u32, 1], &Device::Cpu).unwrap())).contains("indices"));
    assert!(err_text(enc.forward(&Tensor::new(&[[0f32, 1.]], &Device::Cpu).unwrap())).contains("indices"));

    // Files: missing, garbage, adapter without or with a misshapen `prompt_embeddings`.
    let tmp = tempfile::tempdir().unwrap();
    assert!(err_text(PromptEncoder::load_weights(&tmp.path().join("nope.safetensors"), &Device::Cpu)).contains("nope.safetensors"));
    std::fs::write(tmp.path().join("junk.safetensors"), b"not safetensors").unwrap();
    assert!(err_text(PromptEncoder::load_weights(&tmp.path().join("junk.safetensors"), &Device::Cpu)).contains("junk.safetensors"));
    enc.save_adapter(tmp.path(), &AdapterMeta::default()).unwrap();
    let adapter = tmp.path().join("adapter_model.safetensors");
    for (key, shape) in [("other", (6usize, 32usize)), ("prompt_embeddings", (5, 32))] {
        let t = Tensor::zeros(shape, DType::F32, &Device::Cpu).unwrap();
        candle_core::safetensors::save(&HashMap::from([(key.to_string(), t)]), &adapter).unwrap();
        let e = err_text(PromptEncoder::load_adapter(tmp.path(), &Device::Cpu));
        assert!(e.contains("prompt_embeddings"), "{e}");
    }
    std::fs::write(tmp.path().join("prompt_encoder.json"), b"{\"kind\": \"lstm\"}").unwrap();
    assert!(err_text(PromptEncoder::load_state(tmp.path(), &Device::Cpu)).contains("prompt_encoder.json"));
    // A prompt from a diverged run: refused by file and tensor, not scored as NaN.
    let nan = Tensor::full(f32::NAN, (6, 32), &Device::Cpu).unwrap();
    candle_core::safetensors::save(&HashMap::from([("prompt_embeddings".to_string(), nan)]), &adapter).unwrap();
    let e = err_text(PromptEncoder::load_adapter(tmp.path(), &Device::Cpu));
    assert!(e.contains("adapter_model.safetensors") && e.contains("prompt_embeddings") && e.contains("NaN"), "{e}");
}

#[test]
fn batched_rows_equal_single_rows_and_submodules_round_trip() {
    let (_, dir) = variants().into_iter().next().unwrap();
    let io = load(&dir.join("io.safetensors"));
    let enc = PromptEncoder::load_weights(&dir.join("weights.safetensors"), &Device::Cpu).unwrap();
    let batched = enc.forward(&io["indices"]).unwrap();
    for row in 0..batched.dim(0).unwrap() {
        let single = enc.forward(&io["indices"].narrow(0, row, 1).unwrap()).unwrap();
        assert!(max_abs(&single, &batched.narrow(0, row, 1).unwrap()) <= 1e-6, "row {row}");
    }
    // Seq2seq-style tables (T × 2 rows) survive the adapter round trip.
    let cfg = PromptEncoderConfig {
        kind: EncoderKind::Mlp,
        num_virtual_tokens: 3,
        token_dim: 4,
        hidden: 5,
        layers: 0,
        num_transformer_submodules: 2,
        lstm_head: LstmHead::Peft,
    };
    let (enc, _) = PromptEncoder::fresh(&cfg, DType::F32, &Device::Cpu).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    enc.save_adapter(tmp.path(), &AdapterMeta::default()).unwrap();
    let (back, _) = PromptEncoder::load_adapter(tmp.path(), &Device::Cpu).unwrap();
    assert_eq!(back.embedding().dims(), [6, 4]);
    assert_eq!((back.config().num_virtual_tokens, back.config().num_transformer_submodules), (3, 2));
    assert_eq!(max_abs(back.embedding(), &enc.prompt_embeddings().unwrap()), 0.0);
}
