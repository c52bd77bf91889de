//! `wenhui pretrain` with the `mlm` (BERT) and `causal` (GPT-2) objectives on the sample poems:
//! the loss falls, resume is exact, every parameter is trained, checkpoints load, and objective /
//! architecture mismatches are reported.

mod common;
use common::pretrain_corpus::{corpus, losses};
use std::path::Path;
use wenhui::data::lm::LmObjective;
use wenhui::data::stream::{sentence_end_ids, BatchStream, Cursor, StreamConfig};
use wenhui::data::{blank::ObjectiveTokens, corpus::TokenCorpus};
use wenhui::model::{load_model, LoadOptions, ModelKind};
use wenhui::train::config::PretrainConfig;
use wenhui::train::pretrain::{batch_loss, pretrain, validation_loss, RunOptions};

fn config(corpus: &Path, out: &Path, objective: &str, extra: serde_json::Value) -> PretrainConfig {
    let mut o = serde_json::json!({
        "corpus": corpus, "out_dir": out, "layers": 2, "hidden": 64, "heads": 4, "seq_len": 64, "batch_size": 8,
        "steps": 30, "lr": 3e-3, "warmup_ratio": 0.1, "eval_every": 10, "save_every": 10, "log_every": 1,
        "valid_fraction": 0.1, "valid_batches": 4, "objective": objective,
    });
    o.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    PretrainConfig::load(None, o.as_object().unwrap().clone()).unwrap()
}

/// 60 steps of a 2-layer model take ≥ 0.5 nats off the untrained ≈ ln(|V|) (measured: 0.8–1.0).
fn loss_falls_and_model_loads(objective: &str, kind: ModelKind) {
    let tmp = tempfile::tempdir().unwrap();
    let c = corpus(tmp.path());
    let cfg = config(&c, &tmp.path().join("run"), objective, serde_json::json!({"steps": 60, "eval_every": 20, "save_every": 0}));
    let s = pretrain(&cfg, &RunOptions::default()).unwrap();
    let (first, last) = (s.first_val_loss.unwrap(), s.val_loss.unwrap());
    assert!(first > 7.0, "{objective}: untrained validation loss {first:.3}");
    assert!(last < first - 0.5, "{objective}: validation loss {first:.3} → {last:.3}");
    let train: Vec<f64> = losses(&tmp.path().join("run")).iter().filter_map(|l| l.1).collect();
    let head: f64 = train[..5].iter().sum::<f64>() / 5.0;
    let tail: f64 = train[train.len() - 5..].iter().sum::<f64>() / 5.0;
    assert!(tail < head - 0.5, "{objective}: training loss {head:.3} → {tail:.3}");
    let m = load_model(&s.model_dir, &LoadOptions::default()).unwrap();
    assert_eq!(m.backbone.info().kind, kind);
    let v = validation_loss(&cfg, m.backbone.as_ref()).unwrap().unwrap();
    assert!((v - last).abs() < 1e-5, "{objective}: reloaded validation loss {v} vs {last}");
}

#[test]
fn bert_mlm_loss_falls() {
    loss_falls_and_model_loads("mlm", ModelKind::Bert);
}

#[test]
fn gpt2_causal_loss_falls() {
    loss_falls_and_model_loads("causal", ModelKind::Gpt2);
}

#[test]
fn resume_continues_exactly_for_mlm_and_causal() {
    let tmp = tempfile::tempdir().unwrap();
    let c = corpus(tmp.path());
    for objective in ["mlm", "causal"] {
        let straight = tmp.path().join(format!("{objective}-straight"));
        pretrain(&config(&c, &straight, objective, serde_json::json!({})), &RunOptions::default()).unwrap();
        let split = tmp.path().join(format!("{objective}-split"));
        let cfg = config(&c, &split, objective, serde_json::json!({}));
        pretrain(&cfg, &RunOptions::default()).unwrap();
        std::fs::remove_dir_all(split.join("checkpoints/step-00000030")).unwrap();
        std::fs::write(split.join("latest"), "step-00000020").unwrap();
        let s = pretrain(&cfg, &RunOptions { resume: Some(split.clone()), ..Default::default() }).unwrap();
        assert_eq!(s.steps, 30);
        assert_eq!(losses(&straight), losses(&split), "{objective}: loss sequence after resume differs");
    }
}

#[test]
fn every_parameter_gets_a_gradient_in_the_training_path() {
    let tmp = tempfile::tempdir().unwrap();
    let c = corpus(tmp.path());
    let corpus = TokenCorpus::open(&c).unwrap();
    let tok = corpus.tokenizer().unwrap();
    for (objective, kind) in [("mlm", ModelKind::Bert), ("causal", ModelKind::Gpt2), ("default", ModelKind::Glm)] {
        let cfg = config(&c, &tmp.path().join(objective), objective, serde_json::json!({"dropout": 0.1}));
        assert_eq!(cfg.model_kind().unwrap(), kind);
        // One training step's loss through the trainer's own batch and loss code, dropout on.
        let out = pretrain(&PretrainConfig { steps: 1, ..cfg.clone() }, &RunOptions::default()).unwrap();
        let mcfg = wenhui::model::ModelConfig::from_file(&out.model_dir.join("config.json")).unwrap();
        let weights = mcfg.init_weights(5).unwrap();
        let (varmap, model) = mcfg.build_trainable(Some(weights), candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
        let stream_cfg = StreamConfig {
            seq_len: 64,
            batch_size: 4,
            pack: true,
            seed: 1,
            objectives: cfg.objectives().unwrap(),
            lm: cfg.lm_objective(tok.vocab_size(false) as u32),
        };
        let ids: Vec<usize> = (0..corpus.num_docs()).collect();
        let tokens = ObjectiveTokens::from_special(&tok.special).unwrap();
        let mut stream = BatchStream::new(&corpus, ids, stream_cfg, tokens, sentence_end_ids(&tok), Cursor::default()).unwrap();
        let batch = stream.next_batch().unwrap();
        let (loss, n) = batch_loss(model.as_ref(), &batch, Some(9)).unwrap();
        assert!(n > 0);
        let grads = loss.backward().unwrap();
        let data = varmap.data().lock().unwrap();
        assert_eq!(data.len(), mcfg.parameter_shapes().len());
        for (name, var) in data.iter() {
            // BERT's segment embedding: row 0 is used (all token types are 0).
            let g = grads.get(var.as_tensor()).unwrap_or_else(|| panic!("{objective}: {name} got no gradient"));
            let norm = g.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(norm > 0.0 && norm.is_finite(), "{objective}: {name} gradient norm {norm}");
        }
    }
}

#[test]
fn lm_objectives_make_the_documented_batches() {
    let tmp = tempfile::tempdir().unwrap();
    let c = corpus(tmp.path());
    let corpus = TokenCorpus::open(&c).unwrap();
    let tok = corpus.tokenizer().unwrap();
    let tokens = ObjectiveTokens::from_special(&tok.special).unwrap();
    let ids: Vec<usize> = (0..corpus.num_docs()).collect();
    let make = |lm| {
        let cfg = StreamConfig { seq_len: 32, batch_size: 4, pack: true, seed: 3, objectives: Default::default(), lm };
        BatchStream::new(&corpus, ids.clone(), cfg, tokens, sentence_end_ids(&tok), Cursor::default()).unwrap().next_batch().unwrap()
    };
    let b = make(LmObjective::Causal);
    for ((row, t), &len) in b.tokens.iter().zip(&b.targets).zip(&b.lengths) {
        assert_ne!(row[0], tokens.cls, "a causal sample starts with its first word");
        assert_eq!(&row[1..len], &t[..len - 1], "targets are the inputs shifted by one");
        assert_eq!(row.len() % wenhui::data::stream::PAD_MULTIPLE, 0, "rows are padded to the alignment multiple");
        assert!(row[len..].iter().all(|&p| p == tokens.eos), "padding after the sample");
    }
    let b = make(LmObjective::Mlm { random_below: tok.vocab_size(false) as u32 });
    for (row, t) in b.tokens.iter().zip(&b.targets) {
        assert_eq!(row[0], tokens.cls);
        assert!(row.iter().zip(t).any(|(a, b)| a != b), "some tokens are masked");
    }
}

#[test]
fn objective_and_architecture_must_agree() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = serde_json::json!({"corpus": tmp.path(), "out_dir": "x", "objective": "mlm", "arch": "gpt2"});
    let e = PretrainConfig::load(None, bad.as_object().unwrap().clone()).unwrap_err().to_string();
    assert!(e.contains("arch") && e.contains("bert"), "{e}");
    let bad = serde_json::json!({"corpus": tmp.path(), "out_dir": "x", "arch": "t5"});
    let e = PretrainConfig::load(None, bad.as_object().unwrap().clone()).unwrap_err().to_string();
    assert!(e.contains("t5"), "{e}");
    let ok = serde_json::json!({"corpus": tmp.path(), "out_dir": "x", "objective": "causal"});
    assert_eq!(PretrainConfig::load(None, ok.as_object().unwrap().clone()).unwrap().model_kind().unwrap(), ModelKind::Gpt2);
    let default = serde_json::json!({"corpus": tmp.path(), "out_dir": "x"});
    let d = PretrainConfig::load(None, default.as_object().unwrap().clone()).unwrap();
    assert_eq!((d.model_kind().unwrap(), d.lm_objective(10)), (ModelKind::Glm, LmObjective::Blank));
}
