//! `pretrain --epochs` / `epochs = X`: the run's length counted in passes over its training
//! documents, and the `epoch` every metrics line reports.

mod common;
use common::pretrain_corpus::*;
use std::path::Path;
use wenhui::train::checkpoint;
use wenhui::train::config::PretrainConfig;
use wenhui::train::pretrain::{pretrain, RunOptions};

#[test]
fn epochs_count_whole_passes_and_the_share_of_the_current_one() {
    use wenhui::data::stream::Cursor;
    use wenhui::train::pretrain::epochs_done;
    assert_eq!(epochs_done(Cursor { epoch: 2, index: 5, offset: 3, batches: 99 }, 10), 2.5);
    assert_eq!(epochs_done(Cursor { epoch: 0, index: 1, offset: 0, batches: 1 }, 3), 0.3333);
    assert_eq!(epochs_done(Cursor::default(), 0), 0.0);
}

/// `config`'s run with `extra`, its length given in epochs: without `steps`.
fn epochs_config(corpus: &Path, out: &Path, extra: serde_json::Value) -> Result<PretrainConfig, wenhui::Error> {
    let mut base = serde_json::to_value(config(corpus, out, serde_json::json!({}))).unwrap();
    let map = base.as_object_mut().unwrap();
    map.retain(|k, v| k != "steps" && !v.is_null());
    map.extend(extra.as_object().unwrap().clone());
    PretrainConfig::load(None, map.clone())
}

/// The `epoch` of the run's last training line in metrics.jsonl.
fn last_epoch(run: &Path) -> f64 {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    text.lines().rev().find_map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap().get("epoch").and_then(|e| e.as_f64())).unwrap()
}

/// `epochs = X` runs ceil(X × the batches of one epoch / accumulate) steps, the batches counted
/// over the run's own stream; the run ends near X epochs, and saves the steps with its config.
#[test]
fn epochs_set_the_steps_from_a_counted_epoch() {
    use wenhui::data::blank::ObjectiveTokens;
    use wenhui::data::corpus::TokenCorpus;
    use wenhui::data::stream::{sentence_end_ids, BatchStream, Cursor, StreamConfig};
    let tmp = tempfile::tempdir().unwrap();
    let c = corpus(tmp.path());
    let quiet = serde_json::json!({"eval_every": 0, "save_every": 0, "valid_batches": 1});
    let cfg = epochs_config(&c, &tmp.path().join("one"), serde_json::json!({"epochs": 1.0})).unwrap();
    // The batches of one epoch, counted here through the stream's public API.
    let corpus_docs = TokenCorpus::open(&c).unwrap();
    let tokenizer = corpus_docs.tokenizer().unwrap();
    let (train, _) = wenhui::train::pretrain::split_documents(corpus_docs.num_docs(), cfg.valid_fraction, cfg.seed);
    let stream_cfg = StreamConfig {
        seq_len: cfg.seq_len,
        batch_size: cfg.batch_size,
        pack: cfg.pack,
        seed: cfg.seed,
        objectives: cfg.objectives().unwrap(),
        lm: cfg.lm_objective(tokenizer.vocab_size(false) as u32),
    };
    let tokens = ObjectiveTokens::from_special(&tokenizer.special).unwrap();
    let mut stream = BatchStream::new(&corpus_docs, train, stream_cfg, tokens, sentence_end_ids(&tokenizer), Cursor::default()).unwrap();
    let mut batches = 0u64;
    while stream.cursor().epoch == 0 {
        stream.next_batch().unwrap();
        batches += 1;
    }
    assert!(batches > 5, "{batches} batches in an epoch");

    let mut cfg = cfg;
    cfg.eval_every = 0;
    cfg.save_every = 0;
    let s = pretrain(&cfg, &RunOptions::default()).unwrap();
    assert_eq!(s.steps, batches);
    assert!((1.0..=1.1).contains(&s.epochs), "epoch 1 ends the counted batches: {}", s.epochs);
    let saved = checkpoint::saved_config(&tmp.path().join("one")).unwrap();
    assert_eq!((saved["steps"].as_u64(), saved["epochs"].as_f64()), (Some(batches), Some(1.0)), "{saved}");
    let back = PretrainConfig::from_saved(&saved).unwrap();
    assert_eq!((back.steps, back.epochs), (batches, Some(1.0)));

    // Two epochs at two batches a step: as many steps, twice the data.
    let mut extra = quiet.clone();
    extra.as_object_mut().unwrap().extend([("epochs".into(), 2.into()), ("accumulate".into(), 2.into())]);
    let two = tmp.path().join("two");
    let s = pretrain(&epochs_config(&c, &two, extra).unwrap(), &RunOptions::default()).unwrap();
    assert_eq!(s.steps, batches);
    assert!((1.9..=2.15).contains(&s.epochs) && last_epoch(&two) == s.epochs, "{}", s.epochs);

    // The masked and causal LM objectives read the same stream: half an epoch is half of it.
    let mut extra = quiet;
    extra.as_object_mut().unwrap().extend([("epochs".into(), 0.5.into()), ("objective".into(), "causal".into())]);
    let s = pretrain(&epochs_config(&c, &tmp.path().join("causal"), extra).unwrap(), &RunOptions::default()).unwrap();
    assert_eq!(s.steps, batches.div_ceil(2));
    assert!((0.45..=0.6).contains(&s.epochs), "{}", s.epochs);
}

/// `epochs` with `steps` in the same place, and epochs that are no positive number, are errors
/// naming them; a flag for one replaces the file's other.
#[test]
fn epochs_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let c = tmp.path().join("corpus");
    let out = tmp.path().join("run");
    let e = epochs_config(&c, &out, serde_json::json!({"epochs": 2, "steps": 10})).unwrap_err().to_string();
    assert!(e.contains("--epochs: conflicts with --steps") && e.contains("give one of them"), "{e}");
    for bad in [serde_json::json!(0), serde_json::json!(-1.5), serde_json::json!(f64::NAN), serde_json::json!(1e9)] {
        let e = epochs_config(&c, &out, serde_json::json!({ "epochs": bad })).unwrap_err().to_string();
        assert!(e.contains("epochs") && e.contains("must be a positive number"), "{bad}: {e}");
    }
    let toml = tmp.path().join("run.toml");
    let head = format!("corpus = {:?}\nout_dir = {:?}\n", c.display().to_string(), out.display().to_string());
    std::fs::write(&toml, format!("{head}steps = 10\nepochs = 2.5\n")).unwrap();
    let e = PretrainConfig::load(Some(&toml), Default::default()).unwrap_err().to_string();
    assert!(e.contains("run.toml") && e.contains("config field `epochs`: conflicts with `steps`"), "{e}");
    std::fs::write(&toml, format!("{head}steps = 10\n")).unwrap();
    let flag = serde_json::json!({"epochs": 2.5}).as_object().unwrap().clone();
    let cfg = PretrainConfig::load(Some(&toml), flag).unwrap();
    assert_eq!(cfg.epochs, Some(2.5));
    std::fs::write(&toml, format!("{head}epochs = 2.5\n")).unwrap();
    let flag = serde_json::json!({"steps": 7}).as_object().unwrap().clone();
    let cfg = PretrainConfig::load(Some(&toml), flag).unwrap();
    assert_eq!((cfg.epochs, cfg.steps), (None, 7));
    // The CLI names the flag.
    let wenhui = || std::process::Command::new(env!("CARGO_BIN_EXE_wenhui"));
    for (args, needle) in [
        (&["--epochs", "nan"][..], "--epochs: must be a finite number"),
        (&["--epochs", "0"][..], "--epochs: must be a positive number"),
        (&["--epochs", "1", "--steps", "5"][..], "--epochs: conflicts with --steps"),
    ] {
        let o = wenhui().args(["pretrain", "--quiet", "--corpus"]).arg(&c).arg("-o").arg(&out).args(args).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    assert!(!out.exists());
}

/// A resumed epochs run keeps the steps it counted at its start, exactly as an uninterrupted run;
/// other epochs are refused with the steps to pass instead; `--steps` replaces the epochs.
#[test]
fn an_epochs_run_resumes_to_the_same_step_count() {
    let tmp = tempfile::tempdir().unwrap();
    let c = corpus(tmp.path());
    let run = tmp.path().join("run");
    let cfg = epochs_config(&c, &run, serde_json::json!({"epochs": 0.5, "save_every": 5, "eval_every": 0, "keep_last": 100})).unwrap();
    let total = pretrain(&cfg, &RunOptions::default()).unwrap().steps;
    assert!(total > 5, "{total}");
    let straight = losses(&run);
    for entry in std::fs::read_dir(run.join("checkpoints")).unwrap() {
        let dir = entry.unwrap().path();
        let step: u64 = dir.file_name().unwrap().to_string_lossy().trim_start_matches("step-").parse().unwrap();
        if step > 5 {
            std::fs::remove_dir_all(dir).unwrap();
        }
    }
    std::fs::write(run.join("latest"), "step-00000005").unwrap();
    let resume = RunOptions { resume: Some(run.clone()), ..Default::default() };
    let s = pretrain(&cfg, &resume).unwrap();
    assert_eq!(s.steps, total);
    assert_eq!(losses(&run), straight, "the resumed epochs run differs from the uninterrupted one");
    let e = pretrain(&PretrainConfig { epochs: Some(1.0), ..cfg.clone() }, &resume).unwrap_err().to_string();
    assert!(e.contains("epochs 1: the run") && e.contains("started with epochs 0.5") && e.contains("--steps"), "{e}");

    // The CLI: the header names the epochs; --resume alone keeps the count (the run is complete),
    // --epochs is refused, --steps continues.
    let wenhui = || std::process::Command::new(env!("CARGO_BIN_EXE_wenhui"));
    let cli = tmp.path().join("cli");
    let out = wenhui()
        .args(["pretrain", "--corpus"])
        .arg(&c)
        .arg("-o")
        .arg(&cli)
        .args(["--layers", "1", "--hidden", "32", "--heads", "2", "--seq-len", "32", "--batch-size", "16", "--epochs", "0.25"])
        .args(["--save-every", "0", "--eval-every", "0", "--valid-batches", "1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let steps = checkpoint::load(&cli).unwrap().state.step;
    assert!(err.contains(&format!("steps 1..{steps} (0.25 epochs ≈ {steps} steps)")), "{err}");
    let out = wenhui().args(["pretrain", "--quiet", "--resume"]).arg(&cli).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains(&format!("at step {steps} of {steps}: the run is complete")), "{err}");
    let out = wenhui().args(["pretrain", "--quiet", "--epochs", "1", "--resume"]).arg(&cli).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("started with epochs 0.25") && err.contains("about"), "{err}");
    let more = (steps + 2).to_string();
    let out = wenhui().args(["pretrain", "--quiet", "--json", "--steps", &more, "--resume"]).arg(&cli).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["steps"], steps + 2, "{summary}");
    assert!(checkpoint::saved_config(&cli).unwrap().get("epochs").is_none());
}
