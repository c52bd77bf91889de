//! `wenhui pretrain` end to end on real poems (tests/fixtures/poetry-sample.jsonl): the loss
//! falls, resume is exact, checkpoints load everywhere, bad input is reported.

mod common;
use common::pretrain_corpus::*;
use std::path::Path;
use wenhui::data::prepare::{prepare, PrepareOptions};
use wenhui::data::reader::ReadOptions;
use wenhui::model::{load_model, LoadOptions};
use wenhui::tokenizer::train::{train_tokenizer, TrainKind, TrainOptions};
use wenhui::train::checkpoint;
use wenhui::train::config::PretrainConfig;
use wenhui::train::pretrain::{pretrain, validation_loss, RunOptions};

#[test]
fn validation_loss_falls_on_real_poems() {
    let tmp = tempfile::tempdir().unwrap();
    let c = corpus(tmp.path());
    let cfg = config(&c, &tmp.path().join("run"), serde_json::json!({"steps": 150, "eval_every": 25, "save_every": 0}));
    let s = pretrain(&cfg, &RunOptions::default()).unwrap();
    let (first, last) = (s.first_val_loss.unwrap(), s.val_loss.unwrap());
    // The untrained model is near ln(|V|) ≈ 7.6 nats; 150 steps must take at least 1.2 nats off
    // the held-out poems (learning the character distribution and the poem layout).
    assert!(first > 7.0, "untrained validation loss {first:.3}");
    assert!(last < first - 1.2, "validation loss {first:.3} → {last:.3}");
    assert_eq!(s.steps, 150);
    // Every training line says how far into the data the run is; the summary agrees with the last.
    let epochs: Vec<f64> = std::fs::read_to_string(tmp.path().join("run/metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap().get("epoch").and_then(|e| e.as_f64()))
        .collect();
    assert_eq!(epochs.len(), 150, "one epoch value per training line");
    assert!(epochs.windows(2).all(|w| w[0] <= w[1]) && epochs[0] > 0.0, "{epochs:?}");
    assert_eq!(epochs.last().copied(), Some(s.epochs));
    assert!(s.epochs > 1.0, "150 batches of 8 cover the sample poems more than once: {}", s.epochs);
}

#[test]
fn resume_continues_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let c = corpus(tmp.path());
    let straight = tmp.path().join("straight");
    pretrain(&config(&c, &straight, serde_json::json!({})), &RunOptions::default()).unwrap();

    // The same run, cut at step 20 (its later checkpoint removed as if it never happened) and
    // resumed from the step-20 checkpoint.
    let split = tmp.path().join("split");
    let cfg = config(&c, &split, serde_json::json!({}));
    pretrain(&cfg, &RunOptions::default()).unwrap();
    assert!(split.join("checkpoints/step-00000020").is_dir());
    std::fs::remove_dir_all(split.join("checkpoints/step-00000040")).unwrap();
    std::fs::write(split.join("latest"), "step-00000020").unwrap();
    let s = pretrain(&cfg, &RunOptions { resume: Some(split.clone()), ..Default::default() }).unwrap();
    assert_eq!(s.steps, 40);
    assert_eq!(losses(&straight), losses(&split), "loss sequence after resume differs");

    // A stop request (Ctrl-C) saves a checkpoint and returns early.
    let stopped = tmp.path().join("stopped");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let s = pretrain(&config(&c, &stopped, serde_json::json!({})), &RunOptions { stop: Some(stop), ..Default::default() }).unwrap();
    assert!(s.interrupted && s.steps == 1);
    assert!(stopped.join("checkpoints/step-00000001/model.safetensors").is_file());
}

#[test]
fn checkpoints_load_everywhere_and_survive_crashes() {
    let tmp = tempfile::tempdir().unwrap();
    let c = corpus(tmp.path());
    let run = tmp.path().join("run");
    let cfg = config(&c, &run, serde_json::json!({"steps": 20, "save_every": 10}));
    let s = pretrain(&cfg, &RunOptions::default()).unwrap();
    // The checkpoint is a model directory: load_model gives the same validation loss.
    let m = load_model(&s.model_dir, &LoadOptions::default()).unwrap();
    let v = validation_loss(&cfg, m.backbone.as_ref()).unwrap().unwrap();
    assert!((v - s.val_loss.unwrap()).abs() < 1e-6, "{v} vs {:?}", s.val_loss);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wenhui")).arg("inspect").arg(&s.model_dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Chars"));
    // ... and `wenhui fill` fills its blanks (two blanks, greedy and beam search).
    for beams in ["1", "3"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_wenhui"))
            .args(["fill", "--json", "--max-new-tokens", "6", "--beams", beams, "--model"])
            .arg(&s.model_dir)
            .arg("春[MASK]花落，[MASK]。")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["fills"].as_array().unwrap().len(), 2, "{v}");
        assert!(v["text"].as_str().unwrap().starts_with('春'), "{v}");
    }

    // A crash while writing step 30 leaves its temp directory behind: step 20 stays the latest,
    // it loads, and the next save cleans the leftover.
    let stale = run.join("checkpoints/step-00000030.tmp-999999");
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::write(stale.join("model.safetensors"), b"half a file").unwrap();
    std::fs::write(run.join("latest"), "step-00000030").unwrap();
    let latest = checkpoint::latest(&run).unwrap().unwrap();
    assert!(latest.ends_with("step-00000020"), "{}", latest.display());
    let ck = checkpoint::load(&run).unwrap();
    assert_eq!(ck.state.step, 20);
    let s = pretrain(&PretrainConfig { steps: 30, ..cfg }, &RunOptions { resume: Some(run.clone()), ..Default::default() }).unwrap();
    assert_eq!(s.steps, 30);
    assert!(!stale.exists(), "stale temp checkpoint not cleaned");
}

#[test]
fn bad_input_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let c = corpus(tmp.path());
    // Unknown config key, in a TOML file.
    let toml = tmp.path().join("run.toml");
    std::fs::write(&toml, format!("corpus = {:?}\nout_dir = \"x\"\nlearning_rate = 0.1\n", c.display().to_string())).unwrap();
    let e = PretrainConfig::load(Some(&toml), Default::default()).unwrap_err().to_string();
    assert!(e.contains("run.toml") && e.contains("learning_rate"), "{e}");
    std::fs::write(&toml, "corpus = [").unwrap();
    let e = PretrainConfig::load(Some(&toml), Default::default()).unwrap_err().to_string();
    assert!(e.contains("not valid TOML"), "{e}");
    // Missing corpus.
    let e = pretrain(&config(&tmp.path().join("nope"), &tmp.path().join("r1"), serde_json::json!({})), &RunOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("nope"), "{e}");
    // Corpus shorter than one sequence.
    let e = pretrain(&config(&c, &tmp.path().join("r2"), serde_json::json!({"seq_len": 100000})), &RunOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("shorter than one sequence") || e.contains("max_sequence_length") || e.contains("more than this machine's"), "{e}");
    // Out-of-range options.
    let bad = serde_json::json!({"corpus": c, "out_dir": "x", "dropout": 1.5});
    let e = PretrainConfig::load(None, bad.as_object().unwrap().clone()).unwrap_err().to_string();
    assert!(e.contains("dropout"), "{e}");
    // The CLI exits non-zero with the message.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wenhui")).args(["pretrain", "--config"]).arg(&toml).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not valid TOML"));
}

#[test]
fn cli_resume_without_config_uses_the_saved_run_configuration() {
    let tmp = tempfile::tempdir().unwrap();
    let c = corpus(tmp.path());
    let run = tmp.path().join("run");
    let wenhui = || std::process::Command::new(env!("CARGO_BIN_EXE_wenhui"));
    let out = wenhui()
        .args(["pretrain", "--quiet", "--corpus"])
        .arg(&c)
        .arg("--out-dir")
        .arg(&run)
        .args(["--layers", "1", "--hidden", "32", "--heads", "2", "--seq-len", "32", "--batch-size", "4", "--steps", "6"])
        .args(["--save-every", "6", "--eval-every", "6", "--log-every", "1", "--valid-fraction", "0.1", "--valid-batches", "1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Only the run directory and a new step count: everything else comes from the checkpoint.
    let out = wenhui().args(["pretrain", "--quiet", "--json", "--steps", "9", "--resume"]).arg(&run).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["steps"], 9, "{summary}");
    let steps: Vec<u64> = losses(&run).iter().filter(|l| l.1.is_some()).map(|l| l.0).collect();
    assert_eq!(steps, (1..=9).collect::<Vec<_>>());
    // A config file given with --resume replaces the saved settings: allowed, and said.
    let toml = tmp.path().join("more.toml");
    let mut saved = checkpoint::saved_config(&run).unwrap();
    saved.as_object_mut().unwrap().retain(|_, v| !v.is_null()); // TOML has no null
    let mut table: toml::Table = serde_json::from_value(saved).unwrap();
    table.insert("batch_size".into(), toml::Value::Integer(2));
    table.insert("steps".into(), toml::Value::Integer(10));
    std::fs::write(&toml, toml::to_string(&table).unwrap()).unwrap();
    let out = wenhui().args(["pretrain", "--quiet", "--config"]).arg(&toml).arg("--resume").arg(&run).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let from_file = format!("saved settings from {}: batch_size 4 → 2, steps 9 → 10;", toml.display());
    assert!(err.contains(&from_file), "{err}");
    // A flag's change is blamed on the flag, not on the file.
    table.insert("steps".into(), toml::Value::Integer(11));
    std::fs::write(&toml, toml::to_string(&table).unwrap()).unwrap();
    let out = wenhui().args(["pretrain", "--quiet", "--steps", "12", "--config"]).arg(&toml).arg("--resume").arg(&run).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    // (The run now holds the file's batch size: only the flag differs from it.)
    assert!(err.contains("saved settings from flags: --steps 10 → 12;"), "{err}");
    // Config errors name the field, and a flag's error the flag.
    std::fs::write(&toml, "steps = \"x\"\n").unwrap();
    let out = wenhui().args(["pretrain", "--config"]).arg(&toml).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("config field `steps`: invalid type"), "{err}");
    std::fs::write(&toml, "layers = -2\n").unwrap();
    let out = wenhui().args(["pretrain", "--config"]).arg(&toml).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("config field `layers`: invalid value: integer `-2`"), "{err}");
    std::fs::write(&toml, toml::to_string(&table).unwrap()).unwrap();
    let out = wenhui().args(["pretrain", "--steps", "0", "--config"]).arg(&toml).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--steps: must be positive") && !err.contains("more.toml"), "{err}");
}

/// Runs never overwrite each other: a new run refuses a directory holding one, `--resume DIR`
/// continues into DIR (a copy of a run stays apart from the original) and refuses flags that
/// would change the model, and a non-finite or out-of-range hyperparameter names its flag.
#[test]
fn cli_runs_keep_apart_and_options_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let c = corpus(tmp.path());
    let run = tmp.path().join("run");
    let wenhui = || std::process::Command::new(env!("CARGO_BIN_EXE_wenhui"));
    let small = ["--layers", "1", "--hidden", "32", "--heads", "2", "--seq-len", "32", "--batch-size", "4", "--valid-batches", "1"];
    let fresh = |out: &Path, extra: &[&str]| {
        wenhui().args(["pretrain", "--quiet", "--corpus"]).arg(&c).arg("--out-dir").arg(out).args(small).args(extra).output().unwrap()
    };
    let out = fresh(&run, &["--steps", "2", "--save-every", "2", "--eval-every", "2", "--valid-fraction", "0.1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let before = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    // A fresh run into it: refused, nothing touched.
    let out = fresh(&run, &["--steps", "2"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("already holds a training run") && err.contains("--resume"), "{err}");
    assert_eq!(std::fs::read_to_string(run.join("metrics.jsonl")).unwrap(), before);
    // Resuming a copy writes into the copy, not into the run its saved config names.
    let copy = tmp.path().join("copy");
    std::fs::create_dir(&copy).unwrap();
    for sub in ["checkpoints", "checkpoints/step-00000002"] {
        std::fs::create_dir_all(copy.join(sub)).unwrap();
    }
    for f in std::fs::read_dir(run.join("checkpoints/step-00000002")).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), copy.join("checkpoints/step-00000002").join(f.file_name())).unwrap();
    }
    std::fs::copy(run.join("metrics.jsonl"), copy.join("metrics.jsonl")).unwrap();
    let out = wenhui().args(["pretrain", "--quiet", "--steps", "3", "--resume"]).arg(&copy).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(copy.join("checkpoints/step-00000003").is_dir());
    assert!(!run.join("checkpoints/step-00000003").exists());
    assert_eq!(std::fs::read_to_string(run.join("metrics.jsonl")).unwrap(), before);
    // A model flag on resume, a NaN, an out-of-range ratio: each named.
    let out = wenhui().args(["pretrain", "--quiet", "--steps", "4", "--hidden", "64", "--resume"]).arg(&copy).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("--hidden: a resumed run continues with its checkpoint's model"));
    for (flag, value, needle) in [
        ("--lr", "nan", "--lr: must be a finite number"),
        ("--min-lr-ratio", "5", "--min-lr-ratio: must be in [0, 1]"),
        ("--beta1", "1", "--beta1"),
    ] {
        let out = fresh(&tmp.path().join("other"), &["--steps", "2", flag, value]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{flag} {value}: {err}");
        assert!(err.contains(needle), "{flag} {value}: {err}");
    }
    // The original command with --resume added (the same model flags) is fine; continuing into
    // another run's directory is not.
    let out = wenhui().args(["pretrain", "--quiet", "--steps", "4", "--layers", "1", "--resume"]).arg(&copy).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // A `latest` naming a checkpoint that is not there: the newest one is used, said once.
    std::fs::write(copy.join("latest"), "step-99999999").unwrap();
    let out = wenhui().args(["pretrain", "--quiet", "--steps", "5", "--resume"]).arg(&copy).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(err.matches("which is not a complete checkpoint").count(), 1, "{err}");
    assert!(copy.join("checkpoints/step-00000005").is_dir());
    let out = wenhui().args(["pretrain", "--quiet", "--steps", "6", "--resume"]).arg(&copy).arg("--out-dir").arg(&run).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("already holds a training run"));
    assert_eq!(std::fs::read_to_string(run.join("metrics.jsonl")).unwrap(), before);
    // A run that fails to start leaves no run directory behind.
    let out = fresh(&tmp.path().join("never"), &["--steps", "2", "--init-from", "/nonexistent-model"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!tmp.path().join("never").exists(), "{}", String::from_utf8_lossy(&out.stderr));
    // Far beyond the machine's memory: refused before anything is allocated.
    let out = wenhui()
        .args(["pretrain", "--quiet", "--corpus"])
        .arg(&c)
        .arg("--out-dir")
        .arg(tmp.path().join("huge"))
        .args(["--layers", "1", "--hidden", "32", "--heads", "2", "--seq-len", "3000000", "--steps", "2"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    if std::path::Path::new("/proc/meminfo").is_file() {
        assert!(err.contains("more than this machine's") && err.contains("lower --hidden"), "{err}");
    }
}

/// A diverged step is never published (so it cannot become `latest` and push a good checkpoint
/// out of `keep_last`), and a checkpoint whose weights or optimizer state hold NaN is refused on
/// resume, naming the file and tensor, with the checkpoints on disk left as they were.
#[test]
fn non_finite_checkpoints_are_neither_saved_nor_resumed() {
    let tmp = tempfile::tempdir().unwrap();
    let c = corpus(tmp.path());
    let run = tmp.path().join("run");
    let cfg = config(&c, &run, serde_json::json!({"steps": 2, "save_every": 1, "eval_every": 0, "keep_last": 2}));
    pretrain(&cfg, &RunOptions::default()).unwrap();
    let listing = |run: &Path| {
        let mut names: Vec<String> =
            std::fs::read_dir(run.join("checkpoints")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        (names, std::fs::read_to_string(run.join("latest")).unwrap())
    };
    let before = listing(&run);
    assert_eq!(before.0, ["step-00000001", "step-00000002"]);

    // A resume that asks for no more steps, or with a corpus of another tokenizer, is refused.
    let resume = RunOptions { resume: Some(run.clone()), ..Default::default() };
    let e = pretrain(&cfg, &resume).err().unwrap().to_string();
    assert!(e.contains("at step 2 of 2") && e.contains("larger --steps"), "{e}");
    let titles = tmp.path().join("titles");
    let read = ReadOptions { template: Some("{title}".into()), ..Default::default() };
    let opts = TrainOptions { kind: TrainKind::Chars, vocab_size: 5000, min_frequency: 1, read: read.clone(), progress: false };
    let tok = train_tokenizer(&[poems()], &opts).unwrap();
    prepare(&[poems()], &tok, &titles, &PrepareOptions { read, progress: false, ..Default::default() }).unwrap();
    let e = pretrain(&config(&titles, &run, serde_json::json!({"steps": 4})), &resume).err().unwrap().to_string();
    assert!(e.contains("another tokenizer"), "{e}");
    assert_eq!(listing(&run), before);

    let ck = checkpoint::load(&run).unwrap();
    let tokenizer = wenhui::tokenizer::Tokenizer::from_dir(&ck.dir).unwrap();
    let with_nan = |tensors: &std::collections::HashMap<String, candle_core::Tensor>| {
        let mut out = tensors.clone();
        let name = out.keys().min().unwrap().clone();
        let t = &out[&name];
        let nan = (t.ones_like().unwrap() * f64::NAN).unwrap();
        out.insert(name.clone(), nan);
        (out, name)
    };
    let (bad_params, bad_name) = with_nan(&ck.params);
    let state = checkpoint::TrainerState { step: 3, ..ck.state.clone() };
    let e = checkpoint::save(&run, &bad_params, &ck.model, &tokenizer, &ck.optimizer, &state, 2, |_| Ok(())).unwrap_err().to_string();
    assert!(e.contains("not saved") && e.contains(&bad_name) && e.contains("diverged"), "{e}");
    assert_eq!(listing(&run), before, "a diverged step changed the checkpoints");

    // NaN optimizer state in the latest checkpoint: refused on resume, by file and tensor.
    let (bad_opt, opt_name) = with_nan(&ck.optimizer);
    let opt_file = ck.dir.join("optimizer.safetensors");
    candle_core::safetensors::save(&bad_opt, &opt_file).unwrap();
    let e = pretrain(&PretrainConfig { steps: 4, ..cfg.clone() }, &resume).err().unwrap().to_string();
    assert!(e.contains("optimizer.safetensors") && e.contains(&opt_name) && e.contains("NaN"), "{e}");
    assert_eq!(listing(&run), before, "a refused resume changed the checkpoints");
    // Exporting its weights still works (they are fine); NaN weights are refused by export too.
    let (bad_params, _) = with_nan(&ck.params);
    candle_core::safetensors::save(&bad_params, ck.dir.join("model.safetensors")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wenhui"))
        .arg("export")
        .arg(&run)
        .arg("-o")
        .arg(tmp.path().join("x"))
        .output()
        .unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("NaN"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!tmp.path().join("x").exists());
}

/// A run from `init_from` keeps that model's shape: shape fields that agree with it are fine,
/// one that does not is an error naming it (it used to be ignored silently).
#[test]
fn init_from_refuses_another_shape() {
    let tmp = tempfile::tempdir().unwrap();
    let c = corpus(tmp.path());
    let first =
        pretrain(&config(&c, &tmp.path().join("a"), serde_json::json!({"steps": 1, "eval_every": 0})), &RunOptions::default()).unwrap();
    let from = serde_json::json!(first.model_dir);
    // The same shape as the model (config() sets layers 2, hidden 64, heads 4): it continues.
    let same = config(&c, &tmp.path().join("b"), serde_json::json!({"steps": 1, "eval_every": 0, "init_from": from}));
    assert_eq!(same.model_fields_given, ["layers", "hidden", "heads"]);
    assert_eq!(pretrain(&same, &RunOptions::default()).unwrap().steps, 1);
    for (field, value, has) in [
        ("hidden", serde_json::json!(128), "has hidden 64"),
        ("layers", serde_json::json!(3), "has layers 2"),
        ("gelu", serde_json::json!("erf"), "has gelu tanh"),
    ] {
        let out = tmp.path().join(format!("c-{field}"));
        let cfg = config(&c, &out, serde_json::json!({"steps": 1, "init_from": from, field: value}));
        let e = pretrain(&cfg, &RunOptions::default()).unwrap_err().to_string();
        assert!(
            e.contains(&format!("{field} {}", value.to_string().trim_matches('"'))) && e.contains(has) && e.contains("drop init_from"),
            "{e}"
        );
        assert!(!out.exists(), "a refused run leaves nothing behind");
    }
    // Without the shape fields, the model's shape is taken as it is.
    let mut bare = config(&c, &tmp.path().join("d"), serde_json::json!({"steps": 1, "eval_every": 0, "init_from": from, "hidden": 128}));
    bare.model_fields_given.clear();
    assert_eq!(pretrain(&bare, &RunOptions::default()).unwrap().steps, 1);
}

/// A damaged data position in `trainer_state.json` is an error naming the file, not a panic.
#[test]
fn a_damaged_cursor_is_refused_on_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let c = corpus(tmp.path());
    let run = tmp.path().join("run");
    let cfg = config(&c, &run, serde_json::json!({"steps": 2, "save_every": 1, "eval_every": 0}));
    pretrain(&cfg, &RunOptions::default()).unwrap();
    let state = run.join("checkpoints/step-00000002/trainer_state.json");
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    v["cursor"]["index"] = serde_json::json!(123_456_789);
    std::fs::write(&state, v.to_string()).unwrap();
    let e = pretrain(&PretrainConfig { steps: 3, ..cfg }, &RunOptions { resume: Some(run.clone()), ..Default::default() })
        .unwrap_err()
        .to_string();
    assert!(e.contains("trainer_state.json") && e.contains("cursor.index 123456789 is beyond"), "{e}");
    assert!(!run.join("checkpoints/step-00000003").exists());
}

/// `kill -9` at any moment of a run — mid-step, mid-checkpoint, mid-log — leaves a run that
/// resumes: `latest` resolves to a complete checkpoint that loads, and the continued metrics
/// log has each step once.
#[test]
fn a_killed_run_resumes_from_its_last_complete_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let c = corpus(tmp.path());
    let run = tmp.path().join("run");
    let wenhui = || std::process::Command::new(env!("CARGO_BIN_EXE_wenhui"));
    let shape = ["--layers", "2", "--hidden", "64", "--heads", "4", "--seq-len", "64", "--batch-size", "4"];
    let every = ["--save-every", "1", "--eval-every", "0", "--log-every", "1", "--keep-last", "2", "--valid-batches", "1"];
    let mut resumed_at = Vec::new();
    // Staggered delays after the first checkpoint appears, so the kills land at different phases.
    for (round, delay_ms) in [0u64, 1, 3, 7, 17, 41, 89, 150].into_iter().enumerate() {
        let mut cmd = wenhui();
        cmd.args(["pretrain", "--quiet", "--steps", "100000"]);
        if round == 0 {
            cmd.arg("--corpus").arg(&c).arg("--out-dir").arg(&run).args(shape).args(every);
        } else {
            cmd.arg("--resume").arg(&run);
        }
        let mut child = cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
        let start = std::time::Instant::now();
        let before = checkpoint::latest(&run).ok().flatten();
        while checkpoint::latest(&run).ok().flatten() == before {
            assert!(start.elapsed().as_secs() < 120, "round {round}: no new checkpoint within 2 minutes");
            assert!(child.try_wait().unwrap().is_none(), "round {round}: the run exited early");
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        child.kill().unwrap();
        child.wait().unwrap();
        let ck = checkpoint::load(&run).unwrap_or_else(|e| panic!("round {round}: the killed run does not load: {e}"));
        resumed_at.push(ck.state.step);
    }
    assert!(resumed_at.windows(2).all(|w| w[0] <= w[1]), "{resumed_at:?}");
    // A last resume finishes a few steps after the newest checkpoint.
    let last = *resumed_at.last().unwrap();
    let out = wenhui().args(["pretrain", "--quiet", "--steps"]).arg((last + 2).to_string()).arg("--resume").arg(&run).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let steps: Vec<u64> = losses(&run).iter().filter(|l| l.1.is_some()).map(|l| l.0).collect();
    assert_eq!(steps, (1..=last + 2).collect::<Vec<_>>(), "each step's loss logged once");
    let leftovers: Vec<_> = std::fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "unfinished checkpoints left behind: {leftovers:?}");
}

/// With stderr redirected (a log file: no bar can draw there) the run prints a plain progress
/// line every `log_every` steps, with step/total, loss, lr, tokens/s, elapsed time and ETA, and
/// the validation losses; a resumed run goes on counting; `--quiet` prints none of it.
#[test]
fn cli_progress_lines_when_stderr_is_not_a_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let c = corpus(tmp.path());
    let wenhui = || std::process::Command::new(env!("CARGO_BIN_EXE_wenhui"));
    let small = ["--layers", "1", "--hidden", "32", "--heads", "2", "--seq-len", "32", "--batch-size", "4", "--steps", "6"];
    let every = ["--log-every", "2", "--eval-every", "3", "--save-every", "6", "--valid-fraction", "0.1", "--valid-batches", "1"];
    let run = |out: &str, quiet: bool| {
        let mut cmd = wenhui();
        cmd.arg("pretrain").arg("--corpus").arg(&c).arg("--out-dir").arg(tmp.path().join(out)).args(small).args(every);
        if quiet {
            cmd.arg("--quiet");
        }
        // output() pipes stderr: not a terminal.
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stderr).unwrap()
    };
    let err = run("loud", false);
    let steps: Vec<&str> = err.lines().filter(|l| l.contains("tok/s")).collect();
    assert_eq!(steps.len(), 3, "one line per logged step:\n{err}");
    for (line, step) in steps.iter().zip([2, 4, 6]) {
        assert!(line.starts_with(&format!("step {step}/6: loss ")), "{line}");
        assert!(line.contains(", lr ") && line.contains(" tok/s, elapsed ") && line.contains(", ETA "), "{line}");
    }
    assert!(steps[2].ends_with("ETA 00:00:00"), "{}", steps[2]);
    for step in [0, 3, 6] {
        assert!(err.lines().any(|l| l.starts_with(&format!("step {step}: validation loss "))), "no validation at step {step}:\n{err}");
    }
    // A resumed run numbers its lines from where it went on.
    let out = wenhui().args(["pretrain", "--steps", "8", "--resume"]).arg(tmp.path().join("loud")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8(out.stderr).unwrap();
    let steps: Vec<&str> = err.lines().filter(|l| l.contains("tok/s")).collect();
    assert_eq!(steps.len(), 1, "{err}");
    assert!(steps[0].starts_with("step 8/8: loss "), "{err}");
    // --quiet: no progress lines at all.
    let err = run("quiet", true);
    assert!(!err.contains("step ") && !err.contains("tok/s"), "--quiet printed progress:\n{err}");
}
