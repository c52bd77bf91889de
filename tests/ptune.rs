//! `wenhui ptune` / `wenhui finetune` on cloze tasks: the frozen backbone stays bit-identical,
//! every trainable parameter gets a gradient, a synthetic task is learned, runs resume exactly,
//! the FewGLUE pipeline runs end to end on every task, and bad input is a clear error.
//! Run in release (`cargo test --release --test ptune`): the training tests take seconds there.

mod common;
use common::fewglue_dir;
use common::ptune_toy::*;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use wenhui::cloze::{batch_loss, build_input, compile, fewglue, ClozeTask, CompileOptions, Example};
use wenhui::model::{load_model, Backbone, LoadOptions, ModelConfig};
use wenhui::ptuning::train::{linear_schedule, load_prompt, mirror_copa, tune, TuneConfig, TuneMode};
use wenhui::ptuning::{EncoderKind, PromptEncoder, PromptEncoderConfig};
use wenhui::tokenizer::Tokenizer;
use wenhui::train::optim::{AdamW, AdamWConfig};
use wenhui::train::pretrain::RunOptions;

type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

#[test]
fn frozen_backbone_gets_no_gradient_and_stays_bit_identical() -> TestResult {
    let t = toy();
    let model = load_model(Path::new("tests/fixtures/glm-tiny"), &LoadOptions::default())?.backbone;
    let tok = Tokenizer::from_file(&t.tokenizer)?;
    let task = ClozeTask::from_toml(TOY_TASK, "toy")?;
    let examples = fewglue::parse_jsonl(&toy_jsonl(8, 3), task.spec.reader, "toy")?;
    let refs: Vec<&Example> = examples.iter().collect();
    let probe = compile(&task.template, model.info().kind, &tok, &examples[0].fields, &CompileOptions::new(64))?;
    let logits_before = |m: &dyn Backbone, p: &Tensor| -> Vec<u32> {
        let (input, _) = build_input(m, std::slice::from_ref(&probe), &[vec![probe.answer_row]], Some(p)).unwrap();
        bits(&m.forward(&input, None).unwrap().logits)
    };
    let cfg = PromptEncoderConfig {
        kind: EncoderKind::Lstm,
        num_virtual_tokens: 6,
        token_dim: 64,
        hidden: 32,
        layers: 2,
        num_transformer_submodules: 1,
        lstm_head: wenhui::ptuning::LstmHead::Peft,
    };
    let (enc, map) = PromptEncoder::seeded(&cfg, 7, &Device::Cpu)?.to_trainable()?;
    let fixed_prompt = enc.prompt_embeddings()?.detach();
    let before = logits_before(model.as_ref(), &fixed_prompt);
    let enc_before: Vec<Vec<u32>> = enc.named_tensors().iter().map(|(_, t)| bits(t)).collect();
    let vars: Vec<(String, candle_core::Var)> = map.data().lock().unwrap().iter().map(|(n, v)| (n.clone(), v.clone())).collect();
    let mut opt = AdamW::new(vars.clone(), AdamWConfig { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 })?;
    for _ in 0..3 {
        let loss = batch_loss(model.as_ref(), &tok, &task, &task.template, &refs, Some(&enc.prompt_embeddings()?), None)?;
        let grads = loss.backward()?;
        for (name, v) in &vars {
            let g = grads.get(v.as_tensor()).unwrap_or_else(|| panic!("encoder parameter {name} got no gradient"));
            assert!(g.abs()?.sum_all()?.to_scalar::<f32>()? > 0.0, "{name}: zero gradient");
        }
        opt.step(&grads, 1e-2, Some(1.0))?;
    }
    assert_eq!(logits_before(model.as_ref(), &fixed_prompt), before, "the frozen backbone's outputs changed");
    let enc_after: Vec<Vec<u32>> = enc.named_tensors().iter().map(|(_, t)| bits(t)).collect();
    assert!(enc_before.iter().zip(&enc_after).all(|(a, b)| a != b), "every encoder tensor must change");
    Ok(())
}

/// Arbitrary word → label facts: the "knowledge" a backbone learns first and a prompt must elicit.
fn facts_jsonl() -> String {
    let words = ["cat", "dog", "sun", "moon", "tree", "fish", "bird", "rock", "star", "lake", "fire", "snow"];
    words
        .iter()
        .enumerate()
        .map(|(i, w)| format!("{{\"w\": \"{w}\", \"label\": \"{}\"}}\n", if (i * 7 + i / 3) % 2 == 0 { "x" } else { "z" }))
        .collect()
}

/// P-tuning in miniature ("GPT understands, too"): fine-tune glm-tiny to know word → label facts
/// through a manual template, then freeze it and P-tune a different template (pseudo tokens, no
/// anchor words) until the prompt elicits the facts again.
#[test]
fn ptune_learns_a_synthetic_cloze_task_with_a_frozen_backbone() -> TestResult {
    let t = toy();
    let facts = t.dir.path().join("facts.jsonl");
    std::fs::write(&facts, facts_jsonl())?;
    let manual = t.dir.path().join("manual.toml");
    std::fs::write(&manual, TOY_TASK.replace("[P*3] {w} [P*3] [MASK] .", "{w} is [MASK] ."))?;
    let mut learn = toy_config(&t, TuneMode::Finetune, Path::new("tests/fixtures/glm-tiny"), "knowledge");
    learn.task = manual.to_str().unwrap().into();
    (learn.train, learn.dev) = (facts.clone(), Some(facts.clone()));
    (learn.max_steps, learn.lm_lr, learn.eval_every, learn.dropout) = (Some(150), 1e-3, 50, Some(false));
    let learned = tune(&learn, &RunOptions::default())?;
    assert_eq!(learned.best.as_ref().and_then(|b| b.metrics.get("acc").copied()), Some(1.0), "the backbone must learn the facts first");
    let model = learn.out_dir.join("best");
    let before = tensors_of(&model, "model.safetensors");

    let mut cfg = toy_config(&t, TuneMode::Ptune, &model, "run");
    (cfg.train, cfg.dev) = (facts.clone(), Some(facts));
    (cfg.max_steps, cfg.prompt_lr, cfg.eval_every) = (Some(200), Some(1e-2), 20);
    let s = tune(&cfg, &RunOptions::default())?;
    let log = std::fs::read_to_string(cfg.out_dir.join("metrics.jsonl"))?;
    let dev: Vec<f64> = log.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?["dev"]["acc"].as_f64()).collect();
    let acc = s.best.as_ref().and_then(|b| b.metrics.get("acc").copied()).unwrap_or(0.0);
    eprintln!("ptune facts: {} steps, loss {:.4}, dev accuracy per evaluation {dev:?}", s.steps, s.last_loss);
    assert!(acc >= 0.95, "dev accuracy {acc} < 0.95");
    assert!(dev[0] < acc, "the untrained prompt already scored {}: the test would show nothing", dev[0]);
    // Only the encoder was trained: its parameter count, and the backbone file is untouched.
    let enc = load_prompt(&cfg.out_dir, &Device::Cpu)?;
    // The default encoder is P-tuning's FewGLUE one: LSTM hidden = the model width, 2h → h → D.
    let ec = enc.config();
    assert_eq!((ec.lstm_head, ec.hidden), (wenhui::ptuning::LstmHead::FewGlue, ec.token_dim));
    let enc_params: usize = enc.named_tensors().iter().map(|(_, t)| t.elem_count()).sum();
    assert_eq!(s.trainable_parameters, enc_params);
    for (name, t) in tensors_of(&model, "model.safetensors") {
        assert_eq!(bits(&t), bits(&before[&name]), "{name} changed on disk");
    }
    assert!(!cfg.out_dir.join("best/model.safetensors").exists(), "ptune must not write a model");
    assert!(cfg.out_dir.join("best/adapter_model.safetensors").is_file() && cfg.out_dir.join("best/task.toml").is_file());
    Ok(())
}

#[test]
fn finetune_trains_every_parameter_jointly_with_the_encoder() -> TestResult {
    let t = toy();
    let mut cfg = toy_config(&t, TuneMode::Finetune, Path::new("tests/fixtures/glm-tiny"), "ft");
    cfg.max_steps = Some(120);
    cfg.lm_lr = 1e-3;
    cfg.prompt_lr = Some(1e-2);
    cfg.eval_every = 40;
    let s = tune(&cfg, &RunOptions::default())?;
    let acc = s.best.as_ref().and_then(|b| b.metrics.get("acc").copied()).unwrap_or(0.0);
    eprintln!("finetune toy: loss {:.4}, dev acc {acc:.4}", s.last_loss);
    assert!(acc >= 0.95, "dev accuracy {acc}");
    let model_params: usize = ModelConfig::from_file(Path::new("tests/fixtures/glm-tiny/config.json"))?
        .parameter_shapes()
        .iter()
        .map(|(_, s)| s.iter().product::<usize>())
        .sum();
    assert!(s.trainable_parameters > model_params, "model + encoder are trained");
    // The kept model loads as a model directory and every tensor moved (AdamW errors on a
    // parameter without a gradient, so reaching here means all got one).
    let best = cfg.out_dir.join("best");
    let old = tensors_of(Path::new("tests/fixtures/glm-tiny"), "model.safetensors");
    let new = tensors_of(&best, "model.safetensors");
    for (name, t) in &new {
        assert_ne!(bits(t), bits(&old[name]), "{name} did not change");
    }
    load_model(&best, &LoadOptions::default())?;
    Ok(())
}

#[test]
fn resume_continues_exactly() -> TestResult {
    let t = toy();
    let model = Path::new("tests/fixtures/glm-tiny");
    let mut straight = toy_config(&t, TuneMode::Ptune, model, "straight");
    straight.max_steps = Some(6);
    straight.eval_every = 2;
    tune(&straight, &RunOptions::default())?;
    let mut split = straight.clone();
    split.out_dir = t.dir.path().join("split");
    // The stop flag is already set: the run saves after its first step and returns.
    let stop = Arc::new(AtomicBool::new(true));
    let first = tune(&split, &RunOptions { stop: Some(stop), ..Default::default() })?;
    assert!(first.interrupted && first.steps == 1, "{first:?}");
    // The run directory may move: the run continues where it is now, not where it started.
    let moved = t.dir.path().join("moved");
    std::fs::rename(&split.out_dir, &moved)?;
    // Flags given at resume time do not change the run: its saved configuration wins.
    let mut changed = split.clone();
    changed.max_steps = Some(99);
    changed.out_dir.clone_from(&moved);
    // Other weights, or another task, are refused: the prompt was trained for those it started with.
    let resume_err = |c: &TuneConfig| tune(c, &RunOptions { resume: Some(moved.clone()), ..Default::default() }).unwrap_err().to_string();
    let mut other_model = changed.clone();
    other_model.model = random_glm(&t.dir.path().join("other-glm"), 2, 64, 4, 64, 7);
    let e = resume_err(&other_model);
    assert!(e.contains("not the weights the run") && e.contains("other-glm") && e.contains("glm-tiny"), "{e}");
    let other_task = t.dir.path().join("other.toml");
    std::fs::write(&other_task, TOY_TASK.replace("[MASK] .", "[MASK] !"))?;
    let mut changed_task = changed.clone();
    changed_task.task = other_task.to_str().unwrap().into();
    let e = resume_err(&changed_task);
    assert!(e.contains("not the task the run") && e.contains("differ in template") && e.contains("trainer_state.json"), "{e}");
    // The same weights elsewhere are the same model.
    let copied = t.dir.path().join("glm-tiny-copy");
    std::fs::create_dir_all(&copied)?;
    for f in std::fs::read_dir(model)? {
        let f = f?;
        if f.file_type()?.is_file() {
            std::fs::copy(f.path(), copied.join(f.file_name()))?;
        }
    }
    changed.model = copied;
    let rest = tune(&changed, &RunOptions { resume: Some(moved.clone()), ..Default::default() })?;
    assert_eq!(rest.steps, 6);
    assert!(!split.out_dir.exists(), "the resumed run wrote to the directory it started in");
    // Resuming the complete run is an error that says so, not a silent no-op.
    let e = tune(&changed, &RunOptions { resume: Some(moved.clone()), ..Default::default() }).unwrap_err().to_string();
    assert!(e.contains("at step 6") && e.contains("complete"), "{e}");
    // The logged losses too: the step-2 mean covers step 1 (before the stop) and step 2.
    let logged = |dir: &Path| -> Vec<String> {
        std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap().lines().filter(|l| l.contains("\"loss\"")).map(String::from).collect()
    };
    assert_eq!(logged(&straight.out_dir), logged(&moved));
    assert_eq!(logged(&moved).len(), 3);
    assert_same_tuning_state(&straight.out_dir.join("checkpoints/step-00000006"), &moved.join("checkpoints/step-00000006"));
    Ok(())
}

#[test]
fn schedule_and_copa_mirroring() {
    assert_eq!(linear_schedule(0, 0, 10), 1.0);
    assert!((linear_schedule(5, 0, 10) - 0.5).abs() < 1e-12);
    assert!((linear_schedule(2, 4, 12) - 0.5).abs() < 1e-12);
    assert!((linear_schedule(8, 4, 12) - 0.5).abs() < 1e-12);
    assert_eq!(linear_schedule(12, 4, 12), 0.0);
    let e = Example {
        fields: [("choice1", "a"), ("choice2", "b"), ("answer1", "a"), ("answer2", "b")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        label: Some("0".into()),
        group: None,
    };
    let m = &mirror_copa(&[e])[0];
    assert_eq!((m.fields["choice1"].as_str(), m.fields["answer2"].as_str(), m.label.as_deref()), ("b", "a", Some("1")));
}

/// Every FewGLUE task: P-tune a few steps on the real train/dev32 files with a tiny random GLM,
/// then evaluate on the first SuperGLUE dev examples through the CLI; metrics are finite and in
/// range. Single-token verbalizers get one-letter words (the character tokenizer spells "Yes" in
/// three tokens).
#[test]
fn fewglue_pipeline_runs_end_to_end_on_every_task() -> TestResult {
    let Some(data) = fewglue_dir() else { return Ok(()) };
    let dir = tempfile::tempdir()?;
    let tokenizer = chars_file(dir.path());
    let model = random_glm(&dir.path().join("glm"), 1, 32, 2, 160, 5);
    for (name, folder) in
        [("rte", "RTE"), ("cb", "CB"), ("boolq", "BoolQ"), ("copa", "COPA"), ("wic", "WiC"), ("wsc", "WSC"), ("multirc", "MultiRC")]
    {
        let mut task = ClozeTask::builtin(name)?;
        if task.spec.answer == wenhui::cloze::AnswerKind::Single {
            for (i, lw) in task.spec.verbalizer.iter_mut().enumerate() {
                lw.words = vec![["n", "y", "m"][i].to_string()];
            }
        }
        let task_file = dir.path().join(format!("{name}.toml"));
        std::fs::write(&task_file, toml::to_string(&task.spec)?)?;
        let split = |s: &str| data.join("FewGLUE_32dev").join(folder).join(format!("{s}.jsonl"));
        let out = dir.path().join(format!("run-{name}"));
        let mut cfg = TuneConfig::new(TuneMode::Ptune, task_file.to_str().unwrap(), &model, &split("train"), &out);
        cfg.tokenizer = Some(tokenizer.clone());
        cfg.dev = Some(split("dev32"));
        cfg.max_steps = Some(2);
        cfg.batch_size = Some(4);
        cfg.eval_every = 2;
        let s = tune(&cfg, &RunOptions::default())?;
        let best = s.best.as_ref().expect("a dev evaluation keeps a checkpoint");
        assert!(!best.metrics.is_empty() && best.metrics.values().all(|v| v.is_finite() && (0.0..=1.0).contains(v)), "{name}: {best:?}");
        let run = std::process::Command::new(env!("CARGO_BIN_EXE_wenhui"))
            .args(["eval", "--task", task_file.to_str().unwrap(), "--model", model.to_str().unwrap(), "--tokenizer"])
            .arg(&tokenizer)
            .arg("--prompt")
            .arg(&out)
            .arg("--data")
            .arg(split("val"))
            .args(["--limit", "24", "--json"])
            .output()?;
        assert!(run.status.success(), "{name}: {}", String::from_utf8_lossy(&run.stderr));
        let v: serde_json::Value = serde_json::from_slice(&run.stdout)?;
        let metrics = v["results"][0]["metrics"].as_object().expect("metrics");
        assert_eq!(metrics.len(), task.spec.metrics.len(), "{name}: {metrics:?}");
        for (k, m) in metrics {
            let m = m.as_f64().unwrap_or(f64::NAN);
            assert!(m.is_finite() && (0.0..=1.0).contains(&m), "{name} {k}: {m}");
        }
        eprintln!("{name}: train {} examples, dev32 {:?}, val[..24] {metrics:?}", s.train_examples, best.metrics);
    }
    Ok(())
}

#[test]
fn bad_input_is_a_clear_error() -> TestResult {
    let t = toy();
    let model = Path::new("tests/fixtures/glm-tiny");
    let err = |cfg: &TuneConfig| tune(cfg, &RunOptions::default()).unwrap_err().to_string();
    // A template without [P] tokens cannot be P-tuned.
    let plain = t.dir.path().join("plain.toml");
    std::fs::write(&plain, TOY_TASK.replace("[P*3] ", ""))?;
    let mut c = toy_config(&t, TuneMode::Ptune, model, "bad1");
    c.task = plain.to_str().unwrap().into();
    assert!(err(&c).contains("no [P] pseudo tokens"), "{}", err(&c));
    // Malformed JSONL names the file and line.
    let broken = t.dir.path().join("broken.jsonl");
    std::fs::write(&broken, "{\"w\": \"abxcd\", \"label\": \"x\"}\n{not json\n")?;
    let mut c = toy_config(&t, TuneMode::Ptune, model, "bad2");
    c.train = broken.clone();
    let e = err(&c);
    assert!(e.contains("broken.jsonl:2"), "{e}");
    // A label the task does not know.
    let unknown = t.dir.path().join("unknown.jsonl");
    std::fs::write(&unknown, "{\"w\": \"abxcd\", \"label\": \"q\"}\n")?;
    c.train = unknown;
    let e = err(&c);
    assert!(e.contains("unknown.jsonl") && e.contains("label `q`"), "{e}");
    // A field the template uses, missing from the second example (or not text): file and example named.
    let missing = t.dir.path().join("missing.jsonl");
    std::fs::write(&missing, "{\"w\": \"abxcd\", \"label\": \"x\"}\n{\"v\": \"abxcd\", \"w2\": [1], \"label\": \"x\"}\n")?;
    c.train = missing;
    let e = err(&c);
    assert!(e.contains("missing.jsonl") && e.contains("example 2") && e.contains("`w`") && e.contains("text fields: v"), "{e}");
    // Empty file, zero steps, resume without a run.
    let empty = t.dir.path().join("empty.jsonl");
    std::fs::write(&empty, "")?;
    c.train = empty;
    assert!(err(&c).contains("no example"), "{}", err(&c));
    let mut c = toy_config(&t, TuneMode::Ptune, model, "bad3");
    c.max_steps = Some(0);
    assert!(err(&c).contains("max_steps"), "{}", err(&c));
    c.max_steps = Some(2);
    c.eval_every = 0;
    assert!(err(&c).contains("eval_every must be at least 1"), "{}", err(&c));
    // Sizes that could only exhaust the memory.
    let mut c = toy_config(&t, TuneMode::Ptune, model, "bad4");
    c.batch_size = Some(100_000);
    assert!(err(&c).contains("batch_size must be between 1 and 4096"), "{}", err(&c));
    let mut c = toy_config(&t, TuneMode::Ptune, model, "bad5");
    c.encoder_layers = 1_000_000;
    assert!(err(&c).contains("encoder_layers"), "{}", err(&c));
    let long = t.dir.path().join("long.toml");
    std::fs::write(&long, TOY_TASK.replace("[P*3] ", "[P*200] "))?;
    let mut c = toy_config(&t, TuneMode::Ptune, model, "bad6");
    c.task = long.to_str().unwrap().into();
    assert!(err(&c).contains("[P] tokens, but the model reads at most 64 positions"), "{}", err(&c));
    let c = toy_config(&t, TuneMode::Ptune, model, "nothing-here");
    let e = tune(&c, &RunOptions { resume: Some(t.dir.path().join("nothing-here")), ..Default::default() }).unwrap_err().to_string();
    assert!(e.contains("no checkpoint to resume"), "{e}");
    // A prompt directory that is not one.
    let e = load_prompt(t.dir.path(), &Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("no prompt here"), "{e}");
    Ok(())
}

/// The first and last logged training loss of a run.
fn loss_curve(out: &Path) -> (f64, f64) {
    let log = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let losses: Vec<f64> = log.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?["loss"].as_f64()).collect();
    (losses[0], losses[losses.len() - 1])
}

/// P-tuning and fine-tuning run on every backbone: BERT (answer at [MASK]; multi-token answers
/// widen it) and GPT-2 (the next token), single- and multi-token answers; the loss falls.
#[test]
fn every_backbone_trains_single_and_multi_token_answers() -> TestResult {
    let t = toy();
    let multi = t.dir.path().join("multi.toml");
    std::fs::write(
        &multi,
        "name = \"pick\"\nfields = [\"a\", \"b\", \"w\"]\ntemplate = \"{a} or {b} ? {w} [P*2] [MASK] .\"\nanswer = \"multi\"\n\
         [[verbalizer]]\nlabel = \"0\"\nwords = [\"{a}\"]\n[[verbalizer]]\nlabel = \"1\"\nwords = [\"{b}\"]\n",
    )?;
    let pick = t.dir.path().join("pick.jsonl");
    let lines: String = (0..16)
        .map(|i| {
            let (a, b) = (["ab", "cd", "ef", "gh"][i % 4], ["xyz", "uv", "st", "qr"][i % 4]);
            format!("{{\"a\": \"{a}\", \"b\": \"{b}\", \"w\": \"{}\", \"label\": \"{}\"}}\n", if i % 2 == 0 { a } else { b }, i % 2)
        })
        .collect();
    std::fs::write(&pick, lines)?;
    for model in ["bert-mlm-tiny", "gpt2-tiny", "glm-tiny"] {
        for (task, data, mode) in
            [(&t.task, &t.train, TuneMode::Ptune), (&multi, &pick, TuneMode::Ptune), (&multi, &pick, TuneMode::Finetune)]
        {
            let out = format!("{model}-{}-{mode:?}", task.file_stem().unwrap().to_string_lossy());
            let mut c = toy_config(&t, mode, &Path::new("tests/fixtures").join(model), &out);
            (c.task, c.train, c.dev) = (task.to_str().unwrap().into(), data.clone(), Some(data.clone()));
            (c.max_steps, c.prompt_lr, c.lm_lr, c.eval_every, c.dropout) = (Some(40), Some(1e-2), 1e-3, 20, Some(false));
            let s = tune(&c, &RunOptions::default())?;
            let (first, last) = loss_curve(&c.out_dir);
            eprintln!("{out}: loss {first:.4} → {last:.4}, dev {:?}", s.best.as_ref().map(|b| &b.metrics));
            assert!(last < first, "{out}: the loss did not fall ({first} → {last})");
        }
    }
    Ok(())
}

/// Open-vocabulary P-tuning (LAMA's form): ranks over an allowed vocabulary on hand-made logits,
/// then a frozen backbone that knows letter → letter facts through a manual template answers them
/// through a P-tuned one, the answer being any vocabulary token.
#[test]
fn vocab_ptuning_elicits_facts_and_ranks_over_the_allowed_vocabulary() -> TestResult {
    use wenhui::cloze::Template;
    use wenhui::ptuning::vocab::{compile_queries, target_ranks, tune_vocab_prompt, VocabExample, VocabSplits, VocabTuneOptions};
    let t = toy();
    let tok = Tokenizer::from_file(&t.tokenizer)?;
    let id = |c: char| tok.encode(&c.to_string(), false).map(|v| v[0]);
    let pairs = [('a', 'q'), ('b', 'r'), ('c', 's'), ('d', 't'), ('e', 'q'), ('f', 'r'), ('g', 's'), ('h', 't')];
    // Knowledge first: fine-tune glm-tiny on the facts with a manual template and 4 labels.
    let manual = t.dir.path().join("facts.toml");
    let mut toml_text = "name = \"facts\"\nfields = [\"w\"]\ntemplate = \"{w} is [MASK] .\"\n".to_string();
    for o in ['q', 'r', 's', 't'] {
        toml_text += &format!("[[verbalizer]]\nlabel = \"{o}\"\nwords = [\"{o}\"]\n");
    }
    std::fs::write(&manual, toml_text)?;
    let facts = t.dir.path().join("facts.jsonl");
    std::fs::write(&facts, pairs.iter().map(|(s, o)| format!("{{\"w\": \"{s}{s}{s}\", \"label\": \"{o}\"}}\n")).collect::<String>())?;
    let mut learn = toy_config(&t, TuneMode::Finetune, Path::new("tests/fixtures/glm-tiny"), "vocab-knowledge");
    (learn.task, learn.train, learn.dev) = (manual.to_str().unwrap().into(), facts.clone(), Some(facts));
    (learn.max_steps, learn.lm_lr, learn.eval_every, learn.dropout) = (Some(150), 1e-3, 50, Some(false));
    tune(&learn, &RunOptions::default())?;
    let model = load_model(&learn.out_dir.join("best"), &LoadOptions::default())?.backbone;

    let template = Template::parse("[P*3] {w} [P*3] [MASK] .", &["w".to_string()])?;
    let examples: Vec<VocabExample> = pairs
        .iter()
        .map(|(s, o)| Ok(VocabExample { fields: [("w".to_string(), format!("{s}{s}{s}"))].into(), target: id(*o)? }))
        .collect::<Result<_, wenhui::Error>>()?;
    let allowed: Vec<u32> = ['q', 'r', 's', 't'].iter().map(|&c| id(c)).collect::<Result<_, _>>()?;
    let rows = compile_queries(model.as_ref(), &tok, &template, &examples)?;
    let targets: Vec<u32> = examples.iter().map(|e| e.target).collect();
    // A target outside the allowed list ranks last; within it, ranks are < |allowed|.
    let prompt0 = Tensor::zeros((6, 64), DType::F32, &Device::Cpu)?;
    let outside = target_ranks(model.as_ref(), &rows[..1], &[id('z')?], Some(&allowed), Some(&prompt0), 8)?;
    assert_eq!(outside, vec![4]);
    let ranks = target_ranks(model.as_ref(), &rows, &targets, Some(&allowed), Some(&prompt0), 3)?;
    assert!(ranks.iter().all(|&r| r < 4), "{ranks:?}");

    let opts = VocabTuneOptions { lr: 1e-2, epochs: 60, patience: 60, batch_size: 8, ..Default::default() };
    let mut curve = Vec::new();
    let data = VocabSplits { train: &examples, dev: &examples, allowed: Some(&allowed) };
    let tuned = tune_vocab_prompt(model.as_ref(), &tok, &template, data, &opts, |e| curve.push((e.epoch, e.dev_p1)))?;
    eprintln!("vocab P-tuning dev P@1 per epoch: {curve:?}");
    assert!(tuned.dev_p1 >= 0.95, "dev P@1 {}", tuned.dev_p1);
    assert!(curve[0].1 < tuned.dev_p1, "the untrained prompt already scored {}", curve[0].1);
    let p = tuned.encoder.prompt_embeddings()?;
    let ranks = target_ranks(model.as_ref(), &rows, &targets, Some(&allowed), Some(&p), 8)?;
    assert!(ranks.iter().filter(|&&r| r == 0).count() as f64 / 8.0 >= 0.95);
    Ok(())
}

/// `ptune --resume` from the command line warns only about the options given now that differ
/// from the run's saved ones, not about every option left at its default.
#[test]
fn cli_resume_warns_only_about_options_given() -> TestResult {
    let t = toy();
    let model = Path::new("tests/fixtures/glm-tiny");
    let mut cfg = toy_config(&t, TuneMode::Ptune, model, "a");
    (cfg.max_steps, cfg.eval_every, cfg.seed, cfg.patience) = (Some(4), 3, 5, 7);
    for out in ["a", "b"] {
        cfg.out_dir = t.dir.path().join(out);
        let stop = Arc::new(AtomicBool::new(true));
        assert_eq!(tune(&cfg, &RunOptions { stop: Some(stop), ..Default::default() })?.steps, 1);
    }
    let resume = |out: &str, extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_wenhui"))
            .args(["ptune", "--resume", "--task"])
            .arg(&t.task)
            .arg("--model")
            .arg(model)
            .arg("-o")
            .arg(t.dir.path().join(out))
            .args(extra)
            .output()
    };
    let out = resume("a", &[])?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !err.contains("ignoring"), "{err}");
    // stderr is a pipe here: progress comes as lines, numbered from where the run went on.
    for step in [3, 4] {
        assert!(err.lines().any(|l| l.starts_with(&format!("step {step}/4: loss ")) && l.contains(", ETA ")), "{err}");
        assert!(err.lines().any(|l| l.starts_with(&format!("step {step}: dev "))), "{err}");
    }
    let out = resume("b", &["--seed", "9", "--eval-every", "3", "--patience", "7", "--quiet"])?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.contains("ignoring what is given now for: seed ("), "{err}");
    assert!(!err.contains("step "), "--quiet printed progress:\n{err}");
    // Both ran on with their saved configuration (eval every 3 steps, 4 steps).
    for out in ["a", "b"] {
        assert!(t.dir.path().join(out).join("checkpoints/step-00000004").is_dir(), "{out}");
    }
    Ok(())
}

/// Flags a task or another flag makes meaningless are refused or named, never silently ignored.
#[test]
fn cli_names_flags_that_cannot_apply() -> TestResult {
    let t = toy();
    let plain = t.dir.path().join("plain.toml");
    std::fs::write(&plain, TOY_TASK.replace("[P*3] ", ""))?;
    let run = |cmd: &str, task: &Path, extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_wenhui"))
            .args([cmd, "--task"])
            .arg(task)
            .args(["--model", "tests/fixtures/glm-tiny", "--train"])
            .arg(&t.train)
            .arg("--tokenizer")
            .arg(&t.tokenizer)
            .arg("-o")
            .arg(t.dir.path().join("never"))
            // Zero steps: refused after the flags were looked at, so nothing trains.
            .args(["--max-steps", "0"])
            .args(extra)
            .output()
    };
    // A loaded encoder has its own kind and sizes.
    let out = run("ptune", &t.task, &["--init-prompt", "somewhere", "--encoder", "mlp"])?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--init-prompt") && err.contains("--encoder"), "{err}");
    // Without [P] tokens there is no encoder to configure.
    let out = run("finetune", &plain, &["--prompt-lr", "0.001", "--encoder-hidden", "8"])?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no [P] tokens") && err.contains("ignoring --encoder-hidden, --prompt-lr"), "{err}");
    // Only COPA mirrors.
    let out = run("ptune", &t.task, &["--no-mirror"])?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--no-mirror only concerns COPA"), "{err}");
    assert!(!out.status.success() && err.contains("max_steps"), "{err}");
    assert!(!t.dir.path().join("never").exists());
    Ok(())
}

/// A task may select checkpoints on several metrics (CB, MultiRC: accuracy and F1, as P-tuning):
/// a checkpoint is kept when none is worse than the kept one, and patience resets only when all
/// are better.
#[test]
fn checkpoints_are_selected_on_every_select_metric() -> TestResult {
    use std::collections::BTreeMap;
    use wenhui::ptuning::train::TuneState;
    let t = toy();
    let mut st = TuneState::start(&toy_config(&t, TuneMode::Ptune, Path::new("tests/fixtures/glm-tiny"), "unused"));
    let select = vec!["acc".to_string(), "f1-macro".to_string()];
    let scores = |acc: f64, f1: f64| Some(BTreeMap::from([("acc".to_string(), acc), ("f1-macro".to_string(), f1)]));
    assert!(st.judge(scores(0.5, 0.4), &select).is_some());
    assert_eq!(st.bad_evals, 0);
    // Accuracy up but F1 down: not kept.
    assert!(st.judge(scores(0.6, 0.3), &select).is_none());
    assert_eq!(st.bad_evals, 1);
    // Better accuracy, equal F1: kept (ties count), but no strict improvement.
    assert_eq!(st.judge(scores(0.6, 0.4), &select).map(|r| r.metrics["acc"]), Some(0.6));
    assert_eq!(st.bad_evals, 2);
    assert!(st.judge(scores(0.7, 0.5), &select).is_some());
    assert_eq!(st.bad_evals, 0);
    // The built-in tasks say which metrics select; a task must list what it selects on.
    assert_eq!(ClozeTask::builtin("cb")?.selection_metrics(), select);
    assert_eq!(ClozeTask::builtin("multirc")?.selection_metrics(), ["acc", "f1a"]);
    assert_eq!(ClozeTask::builtin("rte")?.selection_metrics(), ["acc"]);
    let e = ClozeTask::from_toml(&TOY_TASK.replace("metrics = [\"acc\"]", "metrics = [\"acc\"]\nselect = [\"f1\"]"), "toy").unwrap_err();
    assert!(e.to_string().contains("`f1` is not among the task's metrics"), "{e}");
    Ok(())
}

/// Runs saved before `--eval-every 0` was refused (it meant every step) still resume, and a task
/// whose description alone changed is the same task; a task that differs is refused, naming
/// the fields.
#[test]
fn older_runs_and_reworded_tasks_resume() -> TestResult {
    let t = toy();
    let model = Path::new("tests/fixtures/glm-tiny");
    let mut cfg = toy_config(&t, TuneMode::Ptune, model, "old");
    (cfg.max_steps, cfg.eval_every) = (Some(3), 2);
    let stop = Arc::new(AtomicBool::new(true));
    assert_eq!(tune(&cfg, &RunOptions { stop: Some(stop), ..Default::default() })?.steps, 1);
    let state = cfg.out_dir.join("checkpoints/step-00000001/trainer_state.json");
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&state)?)?;
    v["config"]["eval_every"] = 0.into();
    std::fs::write(&state, v.to_string())?;
    let reworded = t.dir.path().join("reworded.toml");
    std::fs::write(&reworded, format!("description = \"the same task, explained\"\n{TOY_TASK}"))?;
    let changed = t.dir.path().join("changed.toml");
    std::fs::write(&changed, TOY_TASK.replace("words = [\"z\"]", "words = [\"y\"]"))?;
    let resume = |task: &Path| {
        let mut c = cfg.clone();
        c.task = task.to_str().unwrap().into();
        tune(&c, &RunOptions { resume: Some(cfg.out_dir.clone()), ..Default::default() })
    };
    let e = resume(&changed).unwrap_err().to_string();
    assert!(e.contains("they differ in verbalizer") && e.contains("trainer_state.json"), "{e}");
    assert_eq!(resume(&reworded)?.steps, 3);
    Ok(())
}
