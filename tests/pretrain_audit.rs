//! Audit fixes of `wenhui pretrain` and of the commands reading its runs: a resume never drops
//! later checkpoints or changes its model or split unsaid, SIGTERM saves like Ctrl-C, a run
//! directory loads as its newest checkpoint, runs resume from any directory, and the messages
//! name the flag, the file and what to do.
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use wenhui::data::blank::ObjectiveConfig;
use wenhui::data::prepare::{prepare, PrepareOptions};
use wenhui::data::reader::ReadOptions;
use wenhui::model::{load_model, LoadOptions};
use wenhui::tokenizer::train::{train_tokenizer, TrainKind, TrainOptions};
use wenhui::train::config::{PretrainConfig, SPAN_RULE_FIELDS};
use wenhui::train::pretrain::{pretrain, validation_loss, RunOptions};

fn poems() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/poetry-sample.jsonl")
}

/// A char-level corpus of `inputs` (the sample poems' characters) in `dir/name`.
fn corpus_of(dir: &Path, name: &str, inputs: &[PathBuf], read: ReadOptions) -> PathBuf {
    let train = ReadOptions { template: Some("{title}：{text}".into()), ..Default::default() };
    let opts = TrainOptions { kind: TrainKind::Chars, vocab_size: 5000, min_frequency: 1, read: train, progress: false };
    let tok = train_tokenizer(&[poems()], &opts).unwrap();
    let out = dir.join(name);
    prepare(inputs, &tok, &out, &PrepareOptions { read, progress: false, ..Default::default() }).unwrap();
    out
}

/// The sample poems as a corpus of 200 documents.
fn corpus(dir: &Path) -> PathBuf {
    corpus_of(dir, "corpus", &[poems()], ReadOptions { template: Some("{title}：{text}".into()), ..Default::default() })
}

fn wenhui() -> Command {
    Command::new(env!("CARGO_BIN_EXE_wenhui"))
}

/// A tiny model that trains in milliseconds.
const SMALL: [&str; 12] =
    ["--layers", "1", "--hidden", "32", "--heads", "2", "--seq-len", "32", "--batch-size", "4", "--valid-batches", "1"];

/// `wenhui pretrain --quiet` of a new tiny run of `corpus` into `out`.
fn train(corpus: &Path, out: &Path, extra: &[&str]) -> Output {
    wenhui().args(["pretrain", "--quiet", "--corpus"]).arg(corpus).arg("-o").arg(out).args(SMALL).args(extra).output().unwrap()
}

/// `wenhui pretrain --quiet ARGS --resume DIR`.
fn resume(dir: &Path, args: &[&str]) -> Output {
    wenhui().args(["pretrain", "--quiet"]).args(args).arg("--resume").arg(dir).output().unwrap()
}

/// The stderr of a command that succeeded.
fn ok(out: Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "failed: {err}");
    err
}

/// The stderr of a command that failed with status 1.
fn fails(out: Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "did not fail: {err}");
    err
}

fn names(dir: &Path) -> Vec<String> {
    let mut n: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    n.sort();
    n
}

fn state(checkpoint: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(checkpoint.join("trainer_state.json")).unwrap()).unwrap()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

/// Item 1: resuming a run from a checkpoint older than its newest is refused (it would delete the
/// newer ones and cut the log back); `-o NEW_DIR` branches, `--discard-later` discards them.
#[test]
fn an_older_checkpoint_resumes_as_a_branch_or_with_discard_later() {
    let tmp = tempfile::tempdir().unwrap();
    let c = corpus(tmp.path());
    let run = tmp.path().join("run");
    ok(train(&c, &run, &["--steps", "4", "--save-every", "2", "--eval-every", "2"]));
    let log = read(&run.join("metrics.jsonl"));
    let two = run.join("checkpoints/step-00000002");
    let err = fails(resume(&two, &["--steps", "4"]));
    assert!(err.contains("step-00000004") && err.contains("-o NEW_DIR") && err.contains("--discard-later"), "{err}");
    assert_eq!(names(&run.join("checkpoints")), ["step-00000002", "step-00000004"]);
    assert_eq!(read(&run.join("metrics.jsonl")), log);
    // A `latest` naming the older one: the newer complete checkpoint is the run's newest.
    std::fs::write(run.join("latest"), "step-00000002").unwrap();
    let err = fails(resume(&run, &["--steps", "4"]));
    assert!(err.contains("step-00000004 is newer and complete") && err.contains("at step 4 of 4"), "{err}");
    // A branch: a new run from the checkpoint; the original is untouched.
    let branch = tmp.path().join("branch");
    ok(wenhui().args(["pretrain", "--quiet", "--steps", "3", "--resume"]).arg(&two).arg("-o").arg(&branch).output().unwrap());
    assert_eq!(names(&branch.join("checkpoints")), ["step-00000003"]);
    assert_eq!(names(&run.join("checkpoints")), ["step-00000002", "step-00000004"]);
    // Discarding, explicitly.
    let err = ok(resume(&two, &["--steps", "3", "--discard-later"]));
    assert!(err.contains("discarded the later checkpoints step-00000004"), "{err}");
    assert_eq!(names(&run.join("checkpoints")), ["step-00000002", "step-00000003"]);
    let steps: Vec<u64> = read(&run.join("metrics.jsonl"))
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?["step"].as_u64())
        .collect();
    assert!(steps.iter().all(|s| *s <= 3) && steps.contains(&3), "{steps:?}");
    // The flag means nothing without --resume.
    let out = train(&c, &tmp.path().join("other"), &["--steps", "1", "--discard-later"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--resume"));
}

/// Item 2: a config file's model fields, seed, valid_fraction and out_dir are checked on resume
/// as the flags are; the checkpoint saves its model's true shape (also from `--init-from`).
#[test]
fn a_resume_refuses_config_fields_it_cannot_honour() {
    let tmp = tempfile::tempdir().unwrap();
    let c = corpus(tmp.path());
    let run = tmp.path().join("run");
    ok(train(&c, &run, &["--steps", "2", "--save-every", "2", "--eval-every", "2", "--valid-fraction", "0.1"]));
    let toml = tmp.path().join("run.toml");
    let base = format!("corpus = {:?}\nseq_len = 32\nbatch_size = 4\nvalid_batches = 1\nsteps = 3\n", c.display().to_string());
    let with = |extra: &str| {
        std::fs::write(&toml, format!("{base}{extra}")).unwrap();
        wenhui().args(["pretrain", "--quiet", "--config"]).arg(&toml).arg("--resume").arg(&run).output().unwrap()
    };
    for (line, needle) in [
        ("layers = 2\n", "run.toml: layers = 2: a resumed run continues with its checkpoint's model (layers 1 in"),
        ("hidden = 64\n", "run.toml: hidden = 64: a resumed run continues with its checkpoint's model"),
        ("valid_fraction = 0.2\n", "run.toml: valid_fraction = 0.2: a resumed run keeps the held-out documents"),
        ("seed = 7\n", "run.toml: seed = 7: a resumed run keeps"),
        ("out_dir = \"elsewhere\"\n", "out_dir `elsewhere` is not the run being resumed"),
    ] {
        let err = fails(with(line));
        assert!(err.contains(needle), "{line}: {err}");
    }
    assert_eq!(names(&run.join("checkpoints")), ["step-00000002"]);
    // Without them the file's settings apply; the shape stays the checkpoint's, unsaid, and the
    // split settings the run's own (not the defaults).
    let err = ok(with("layers = 1\n"));
    assert!(!err.contains("layers") && !err.contains("valid_fraction"), "{err}");
    let saved = &state(&run.join("checkpoints/step-00000003"))["config"];
    assert_eq!((saved["layers"].as_u64(), saved["hidden"].as_u64(), saved["valid_fraction"].as_f64()), (Some(1), Some(32), Some(0.1)));
    // A run from a model records that model's shape, so resuming it with the shape flags works.
    let from = tmp.path().join("from");
    ok(wenhui()
        .args(["pretrain", "--quiet", "--steps", "1", "--seq-len", "32", "--batch-size", "4", "--corpus"])
        .arg(&c)
        .arg("-o")
        .arg(&from)
        .arg("--init-from")
        .arg(run.join("checkpoints/step-00000003"))
        .output()
        .unwrap());
    let saved = &state(&from.join("checkpoints/step-00000001"))["config"];
    assert_eq!((saved["layers"].as_u64(), saved["hidden"].as_u64(), saved["heads"].as_u64()), (Some(1), Some(32), Some(2)));
    ok(resume(&from, &["--steps", "2", "--layers", "1", "--hidden", "32"]));
}

/// Item 3: a resumed run keeps its split.json; a changed --valid-fraction or --seed is refused.
#[test]
fn a_resumed_run_keeps_its_split() {
    let tmp = tempfile::tempdir().unwrap();
    let c = corpus(tmp.path());
    let run = tmp.path().join("run");
    ok(train(&c, &run, &["--steps", "2", "--save-every", "2", "--eval-every", "2", "--valid-fraction", "0.1"]));
    let split = read(&run.join("split.json"));
    let v: serde_json::Value = serde_json::from_str(&split).unwrap();
    assert_eq!((v["documents"].as_u64(), v["valid_documents"].as_array().map(Vec::len)), (Some(200), Some(20)));
    for (flag, value) in [("--valid-fraction", "0.3"), ("--seed", "7")] {
        let err = fails(resume(&run, &["--steps", "3", flag, value]));
        assert!(err.contains(&format!("{flag}: a resumed run keeps the held-out documents (split.json)")), "{err}");
    }
    ok(resume(&run, &["--steps", "3", "--valid-fraction", "0.1"]));
    assert_eq!(read(&run.join("split.json")), split);
    // A split.json that disagrees with the checkpoint is named, not silently replaced.
    std::fs::write(run.join("split.json"), split.replace("\"seed\":1234", "\"seed\":99")).unwrap();
    let err = fails(resume(&run, &["--steps", "4"]));
    assert!(err.contains("split.json: was written with seed 99") && err.contains("delete it to recompute"), "{err}");
}

/// Item 4 (and 11a, 11l): SIGTERM saves a checkpoint as Ctrl-C does, the run resumes from it, and
/// the summary names the step of its last validation loss; a second signal aborts, naming the
/// last checkpoint.
#[cfg(unix)]
#[test]
fn sigterm_saves_a_checkpoint_and_the_run_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let c = corpus(tmp.path());
    let run = tmp.path().join("run");
    // Started; the pid once a step is logged.
    let start = |shape: &[&str], out: &Path| {
        let mut args =
            vec!["pretrain", "--quiet", "--steps", "100000", "--save-every", "100000", "--eval-every", "100000", "--log-every", "1"];
        args.extend(["--corpus", c.to_str().unwrap(), "-o", out.to_str().unwrap()]);
        args.extend(shape);
        common::spawn_until_a_step(&args, out)
    };
    let child = start(&SMALL, &run);
    // SAFETY: signalling the child this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted: saving a checkpoint") && stderr.contains("stopped at step"), "{stderr}");
    assert!(stdout.contains("validation loss") && stdout.contains(") at step 0,"), "{stdout}");
    let step = wenhui::train::checkpoint::load(&run).unwrap().state.step;
    assert!(step >= 1);
    ok(resume(&run, &["--steps", &(step + 2).to_string()]));
    assert!(run.join(format!("checkpoints/step-{:08}", step + 2)).is_dir());

    // Two signals: the second aborts at once (a step of this model takes far longer than the gap).
    let slow = tmp.path().join("slow");
    let shape = ["--layers", "2", "--hidden", "256", "--heads", "4", "--seq-len", "128", "--batch-size", "16", "--valid-batches", "1"];
    let child = start(&shape, &slow);
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    std::thread::sleep(std::time::Duration::from_millis(10));
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("aborted: no checkpoint was saved in") || stderr.contains("aborted: the last checkpoint is"), "{stderr}");
}

/// Item 5 (and 11e): `inspect`, `eval ppl` and `--init-from` take a run directory as its newest
/// checkpoint, saying so; `eval ppl` scores with the run's own objective; other loaders explain.
#[test]
fn a_run_directory_loads_as_its_newest_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let c = corpus(tmp.path());
    let run = tmp.path().join("run");
    ok(train(&c, &run, &["--steps", "2", "--save-every", "1", "--eval-every", "0", "--objective", "default"]));
    let out = wenhui().arg("inspect").arg(&run).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = ok(out);
    assert!(stdout.contains("step-00000002") && err.contains("is a pretraining run: using its newest checkpoint"), "{stdout}{err}");
    let ppl =
        |model: &Path| wenhui().args(["eval", "ppl", "--batches", "1", "--corpus"]).arg(&c).arg("--model").arg(model).output().unwrap();
    let out = ppl(&run);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = ok(out);
    assert!(err.contains("objective default as the run trained with it") && stdout.contains("blank-infilling default"), "{err}{stdout}");
    let model = tmp.path().join("model");
    ok(wenhui().arg("export").arg(&run).arg("-o").arg(&model).output().unwrap());
    let err = ok(ppl(&model));
    assert!(err.contains("objective glm-10b (the default)"), "{err}");
    let from = tmp.path().join("from");
    let err = ok(wenhui()
        .args(["pretrain", "--quiet", "--steps", "1", "--batch-size", "4", "--corpus"])
        .arg(&c)
        .arg("-o")
        .arg(&from)
        .arg("--init-from")
        .arg(&run)
        .output()
        .unwrap());
    assert!(err.contains("is a pretraining run: starting from its newest checkpoint"), "{err}");
    let err = fails(wenhui().args(["fill", "--max-new-tokens", "2", "--model"]).arg(&run).arg("春[MASK]").output().unwrap());
    assert!(err.contains("is a wenhui pretraining run") && err.contains("step-00000002"), "{err}");
}

/// Item 6: a run saves its corpus as an absolute path, so it resumes from any directory; an old
/// run's relative path that does not resolve is named, with --corpus to pass.
#[test]
fn a_run_resumes_from_another_working_directory() {
    let tmp = tempfile::tempdir().unwrap();
    corpus(tmp.path());
    let out = wenhui()
        .current_dir(tmp.path())
        .args(["pretrain", "--quiet", "--corpus", "corpus", "-o", "runs/x", "--steps", "1"])
        .args(SMALL)
        .output()
        .unwrap();
    ok(out);
    let run = tmp.path().join("runs/x");
    let saved = state(&run.join("checkpoints/step-00000001"))["config"]["corpus"].as_str().map(PathBuf::from);
    assert_eq!(saved, Some(tmp.path().join("corpus").canonicalize().unwrap()));
    let elsewhere = tempfile::tempdir().unwrap();
    ok(wenhui().current_dir(elsewhere.path()).args(["pretrain", "--quiet", "--steps", "2", "--resume"]).arg(&run).output().unwrap());
    // A run of an older version: its relative corpus path, from another directory.
    let ck = run.join("checkpoints/step-00000002/trainer_state.json");
    let mut s: serde_json::Value = serde_json::from_str(&read(&ck)).unwrap();
    s["config"]["corpus"] = "corpus".into();
    std::fs::write(&ck, s.to_string()).unwrap();
    let err =
        fails(wenhui().current_dir(elsewhere.path()).args(["pretrain", "--quiet", "--steps", "3", "--resume"]).arg(&run).output().unwrap());
    assert!(err.contains("saved configuration names the corpus corpus (a path relative") && err.contains("pass --corpus DIR"), "{err}");
    let mut cmd = wenhui();
    cmd.current_dir(elsewhere.path()).args(["pretrain", "--quiet", "--steps", "3", "--resume"]).arg(&run).arg("--corpus");
    ok(cmd.arg(tmp.path().join("corpus")).output().unwrap());
}

/// Item 7: `--init-from` a model with fewer positions than the default seq_len lowers it, said;
/// a seq_len the user gave is named as the flag to change.
#[test]
fn init_from_a_short_model_lowers_the_default_seq_len() {
    let tmp = tempfile::tempdir().unwrap();
    let c = corpus(tmp.path());
    let run = tmp.path().join("run");
    ok(train(&c, &run, &["--steps", "1"]));
    let from = |out: &str, extra: &[&str]| {
        wenhui()
            .args(["pretrain", "--quiet", "--steps", "1", "--batch-size", "4", "--corpus"])
            .arg(&c)
            .arg("-o")
            .arg(tmp.path().join(out))
            .arg("--init-from")
            .arg(run.join("checkpoints/step-00000001"))
            .args(extra)
            .output()
            .unwrap()
    };
    let err = ok(from("a", &[]));
    assert!(err.contains("note: seq_len 32: the model in") && err.contains("fewer than the default 256"), "{err}");
    assert_eq!(state(&tmp.path().join("a/checkpoints/step-00000001"))["config"]["seq_len"], 32);
    let err = fails(from("b", &["--seq-len", "64"]));
    assert!(err.contains("--seq-len 64 exceeds the model's 32 positions: pass --seq-len 32 or less"), "{err}");
}

/// Item 8: a corpus too small to hold a document out says so at the start, and `export --best`
/// says why it has no validation loss to choose by.
#[test]
fn a_one_document_corpus_warns_that_it_cannot_validate() {
    let tmp = tempfile::tempdir().unwrap();
    let text: String = read(&poems())
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?["text"].as_str().map(String::from))
        .collect();
    let file = tmp.path().join("one.txt");
    std::fs::write(&file, text).unwrap();
    let c = corpus_of(tmp.path(), "one", &[file], ReadOptions::default());
    let run = tmp.path().join("run");
    let out = train(&c, &run, &["--steps", "2", "--eval-every", "1"]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = ok(out);
    assert!(err.contains("has 1 document(s), too few to hold any out for validation"), "{err}");
    assert!(stdout.contains("validation loss n/a"), "{stdout}");
    let err = fails(wenhui().arg("export").arg(&run).arg("--best").arg("-o").arg(tmp.path().join("m")).output().unwrap());
    assert!(err.contains("no validation ran in this run (the corpus was too small"), "{err}");
}

/// Item 10: a new run does not replace a split.json it finds in its directory.
#[test]
fn a_new_run_refuses_an_existing_split_json() {
    let tmp = tempfile::tempdir().unwrap();
    let c = corpus(tmp.path());
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("split.json"), "my own split").unwrap();
    let err = fails(train(&c, &out, &["--steps", "1"]));
    assert!(err.contains("split.json: already exists"), "{err}");
    assert_eq!(read(&out.join("split.json")), "my own split");
    assert_eq!(names(&out), ["split.json"]);
}

/// Item 11: the messages name the flag, the file and what to do.
#[test]
fn messages_name_the_flag_and_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let c = corpus(tmp.path());
    let run = tmp.path().join("run");
    // (k) a header line before training, unless --quiet.
    let out = wenhui().args(["pretrain", "--steps", "1", "--corpus"]).arg(&c).arg("-o").arg(&run).args(SMALL).output().unwrap();
    let err = ok(out);
    assert!(err.contains("pretraining into") && err.contains("200 documents") && err.contains("M parameters"), "{err}");
    assert!(err.contains("objective default (token 0.5") && err.contains("batch 4 × 1 × seq 32"), "{err}");
    // (b) a `latest` naming no checkpoint: one warning, resumed by a relative path.
    std::fs::write(run.join("latest"), "step-00000099\n").unwrap();
    let out = wenhui().current_dir(tmp.path()).args(["pretrain", "--quiet", "--steps", "2", "--resume", "run"]).output().unwrap();
    assert_eq!(ok(out).matches("which is not a complete checkpoint").count(), 1);
    let fresh = |extra: &[&str]| fails(train(&c, &tmp.path().join("x"), extra));
    // (c), (d): the flag at fault, and negative numbers reach the range check.
    assert!(fresh(&["--accumulate", "0"]).contains("--accumulate: must be positive"));
    assert!(fresh(&["--lr", "-1"]).contains("--lr: must be a positive number"));
    let out = train(&c, &tmp.path().join("x"), &["--steps", "-1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("'--steps <STEPS>'") && !err.contains("unexpected argument"), "{err}");
    // (f) what to pass.
    let err = fails(wenhui().args(["pretrain", "-o", "x"]).output().unwrap());
    assert!(err.contains("pass --corpus DIR (or `corpus = \"DIR\"` in --config)"), "{err}");
    let err = fails(wenhui().args(["pretrain", "--corpus"]).arg(&c).output().unwrap());
    assert!(err.contains("pass -o DIR"), "{err}");
    // (g) a GPT-2 needs the causal objective.
    let gpt2 = tmp.path().join("gpt2");
    ok(train(&c, &gpt2, &["--steps", "1", "--objective", "causal"]));
    let err = fails(
        wenhui().args(["pretrain", "--corpus"]).arg(&c).arg("-o").arg(tmp.path().join("y")).arg("--init-from").arg(&gpt2).output().unwrap(),
    );
    assert!(err.contains("this model is a gpt2: pass --objective causal"), "{err}");
    // (h) a model directory is started from, not resumed.
    let model = tmp.path().join("model");
    ok(wenhui().arg("export").arg(&run).arg("-o").arg(&model).output().unwrap());
    let err = fails(resume(&model, &["--steps", "3"]));
    assert!(err.contains("is a model directory, not a training run") && err.contains("--init-from"), "{err}");
    // (i) plot a run directory.
    ok(wenhui().arg("plot").arg(&run).arg("-o").arg(tmp.path().join("loss.png")).output().unwrap());
    assert!(tmp.path().join("loss.png").is_file());
    let err = fails(wenhui().arg("plot").arg(&model).arg("-o").arg(tmp.path().join("x.png")).output().unwrap());
    assert!(err.contains("is a directory without a metrics.jsonl"), "{err}");
    // (j) NaN in a TOML file: the field and its range.
    let toml = tmp.path().join("nan.toml");
    std::fs::write(&toml, format!("corpus = {:?}\nout_dir = \"z\"\nlr = nan\n", c.display().to_string())).unwrap();
    let err = fails(wenhui().args(["pretrain", "--config"]).arg(&toml).output().unwrap());
    assert!(err.contains("config field `lr`: nan is not allowed: lr must be a positive number"), "{err}");
    std::fs::write(&toml, format!("corpus = {:?}\nout_dir = \"z\"\nvalid_fraction = inf\n", c.display().to_string())).unwrap();
    let err = fails(wenhui().args(["pretrain", "--config"]).arg(&toml).output().unwrap());
    assert!(err.contains("`valid_fraction`: inf is not allowed: valid_fraction must be a number in [0, 1)"), "{err}");
}

/// Item 12: a split part too small for one line is written empty, with a warning, and marked.
#[test]
fn data_split_warns_about_an_empty_part() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.txt");
    std::fs::write(&input, (0..100).map(|i| format!("line {i}\n")).collect::<String>()).unwrap();
    let out =
        wenhui().args(["data", "split", "--parts", "a=0.9999,b=0.0001", "-o"]).arg(tmp.path().join("out")).arg(&input).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = ok(out);
    assert!(err.contains("split part `b` is empty"), "{err}");
    let b = stdout.lines().find(|l| l.trim_start().starts_with("b ")).unwrap_or_default();
    assert!(b.contains(" 0 lines") && b.ends_with("(empty)"), "{stdout}");
    assert!(!stdout.lines().any(|l| l.trim_start().starts_with("a ") && l.ends_with("(empty)")), "{stdout}");
}

/// `eval ppl --json` of `model` on `corpus` (one batch) with `extra` flags: its stderr and report.
fn eval_ppl(corpus: &Path, model: &Path, extra: &[&str]) -> (String, serde_json::Value) {
    let out = wenhui()
        .args(["eval", "ppl", "--json", "--batches", "1", "--corpus"])
        .arg(corpus)
        .arg("--model")
        .arg(model)
        .args(extra)
        .output()
        .unwrap();
    let report = serde_json::from_slice(&out.stdout).unwrap_or_default();
    (ok(out), report)
}

/// The span-rule settings of an objective config or a saved run configuration, in a fixed order.
fn span_rules(v: &serde_json::Value) -> Vec<serde_json::Value> {
    SPAN_RULE_FIELDS.iter().map(|f| v[f].clone()).collect()
}

/// Review 1: a run saved before the span-rule settings existed (its saved configuration without
/// them) resumes with the objective it trained with, not today's preset, saying so once; a run
/// saves them resolved, and `eval ppl` scores an old checkpoint with its old objective too.
#[test]
fn a_run_saved_before_the_span_rules_resumes_with_its_objective() {
    let tmp = tempfile::tempdir().unwrap();
    let c = corpus(tmp.path());
    let run = tmp.path().join("run");
    ok(train(&c, &run, &["--steps", "2", "--save-every", "2", "--eval-every", "0", "--objective", "glm-10b"]));
    // Saved resolved (glm-10b's), not null.
    let json = |v: serde_json::Value| v;
    assert_eq!(
        span_rules(&state(&run.join("checkpoints/step-00000002"))["config"]),
        [json(0.1.into()), 0.02.into(), true.into(), true.into()]
    );
    // A config file that leaves them to the preset does not report them as changed.
    let toml = tmp.path().join("run.toml");
    let file = format!(
        "corpus = {:?}\nobjective = \"glm-10b\"\nseq_len = 32\nbatch_size = 4\nvalid_batches = 1\nsteps = 3\n",
        c.display().to_string()
    );
    std::fs::write(&toml, file).unwrap();
    let err = ok(wenhui().args(["pretrain", "--quiet", "--config"]).arg(&toml).arg("--resume").arg(&run).output().unwrap());
    assert!(err.contains("changes to the resumed run's saved settings") && err.contains("steps 2 → 3"), "{err}");
    assert!(!err.contains("task_masks") && !err.contains("block_mask_prob"), "{err}");
    // As an earlier wenhui saved it.
    let three = run.join("checkpoints/step-00000003");
    let mut s = state(&three);
    for f in SPAN_RULE_FIELDS {
        s["config"].as_object_mut().unwrap().remove(f);
    }
    std::fs::write(three.join("trainer_state.json"), s.to_string()).unwrap();
    let old = ObjectiveConfig {
        task_masks: true,
        block_mask_prob: 0.0,
        short_seq_prob: 0.0,
        sentence_end_in_span: false,
        ..ObjectiveConfig::glm_10b()
    };
    let (err, report) = eval_ppl(&c, &run, &[]);
    assert!(err.contains("objective glm-10b as the run trained with it"), "{err}");
    assert_eq!(serde_json::from_value::<ObjectiveConfig>(report["objectives"].clone()).unwrap(), old, "{report}");
    let err = ok(resume(&run, &["--steps", "4"]));
    let warning = "was saved before block_mask_prob, short_seq_prob, sentence_end_in_span, task_masks existed";
    assert_eq!(err.matches(warning).count(), 1, "{err}");
    assert!(err.contains("block_mask_prob 0, short_seq_prob 0, sentence_end_in_span false, task_masks true"), "{err}");
    let saved = &state(&run.join("checkpoints/step-00000004"))["config"];
    assert_eq!(PretrainConfig::from_saved(saved).unwrap().objectives().unwrap(), old);
    assert_eq!(span_rules(saved), [json(0.0.into()), 0.0.into(), false.into(), true.into()]);
    // Saved now: the next resume keeps them without a word; a flag still sets one.
    let err = ok(resume(&run, &["--steps", "5", "--task-masks", "false"]));
    assert!(!err.contains(warning), "{err}");
    assert_eq!(
        span_rules(&state(&run.join("checkpoints/step-00000005"))["config"]),
        [json(0.0.into()), 0.0.into(), false.into(), false.into()]
    );
    // Another --objective takes its own preset's.
    ok(resume(&run, &["--steps", "6", "--objective", "default"]));
    assert_eq!(
        span_rules(&state(&run.join("checkpoints/step-00000006"))["config"]),
        [json(0.0.into()), 0.0.into(), true.into(), false.into()]
    );
}

/// Review 2: the trainer's validation scores the objective as `eval ppl` does, without
/// `[dBLOCK]` noise or re-cut short batches; `eval ppl` of a run takes the run's preset with its
/// overrides, and `--sentence-end-in-span` sets the sentence layout.
#[test]
fn validation_and_eval_ppl_score_the_run_objective_without_augmentations() {
    let tmp = tempfile::tempdir().unwrap();
    let c = corpus(tmp.path());
    let run = tmp.path().join("run");
    let load = |extra: serde_json::Value| {
        let mut o = serde_json::json!({
            "corpus": c, "out_dir": run, "layers": 1, "hidden": 32, "heads": 2, "seq_len": 64, "batch_size": 4,
            "steps": 2, "eval_every": 0, "valid_fraction": 0.1, "valid_batches": 4, "objective": "glm-10b",
            "token_prob": 1.0, "sentence_prob": 0.0,
        });
        o.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        PretrainConfig::load(None, o.as_object().unwrap().clone()).unwrap()
    };
    let noisy = load(serde_json::json!({"block_mask_prob": 0.5, "short_seq_prob": 0.5}));
    let s = pretrain(&noisy, &RunOptions::default()).unwrap();
    let m = load_model(&s.model_dir, &LoadOptions::default()).unwrap();
    let v = validation_loss(&noisy, m.backbone.as_ref()).unwrap().unwrap();
    assert!((v - s.val_loss.unwrap()).abs() < 1e-6, "the trainer's own: {v} vs {:?}", s.val_loss);
    let plain = load(serde_json::json!({"block_mask_prob": 0.0, "short_seq_prob": 0.0}));
    assert_eq!(validation_loss(&plain, m.backbone.as_ref()).unwrap(), Some(v), "augmentations in the validation batches");
    assert_eq!(validation_loss(&noisy, m.backbone.as_ref()).unwrap(), Some(v), "the same batches every time");

    // eval ppl of the run: glm-10b with the run's overrides, the augmentations left out.
    let other = tmp.path().join("other");
    ok(train(&c, &other, &["--steps", "1", "--objective", "glm-10b", "--task-masks", "false", "--sentence-end-in-span", "false"]));
    let objectives = |r: &serde_json::Value| serde_json::from_value::<ObjectiveConfig>(r["objectives"].clone()).unwrap();
    let run_own = ObjectiveConfig { task_masks: false, sentence_end_in_span: false, ..ObjectiveConfig::glm_10b().for_evaluation() };
    let (err, r) = eval_ppl(&c, &other, &[]);
    assert!(err.contains("objective glm-10b as the run trained with it") && err.contains("task_masks false"), "{err}");
    assert_eq!((objectives(&r), r["objective"].as_str()), (run_own.clone(), Some("glm-10b")));
    let (_, r) = eval_ppl(&c, &other, &["--sentence-end-in-span", "true"]);
    assert_eq!(objectives(&r), ObjectiveConfig { sentence_end_in_span: true, ..run_own });
    let (_, r) = eval_ppl(&c, &other, &["--objective", "glm-10b", "--sentence-end-in-span", "false"]);
    assert_eq!(objectives(&r), ObjectiveConfig { sentence_end_in_span: false, ..ObjectiveConfig::glm_10b().for_evaluation() });
    let (_, r) = eval_ppl(&c, &other, &["--objective", "glm-large"]);
    assert_eq!(objectives(&r), ObjectiveConfig::glm_large());
}

/// Review 3: `--discard-later` points `latest` at the checkpoint it resumes from, so a run killed
/// before its first save does not name a deleted checkpoint.
#[cfg(unix)]
#[test]
fn discard_later_points_latest_at_the_resumed_checkpoint() {
    use std::io::BufRead;
    let tmp = tempfile::tempdir().unwrap();
    let c = corpus(tmp.path());
    let run = tmp.path().join("run");
    ok(train(&c, &run, &["--steps", "4", "--save-every", "2", "--eval-every", "0"]));
    assert_eq!(read(&run.join("latest")), "step-00000004");
    let mut child = wenhui()
        .args(["pretrain", "--quiet", "--steps", "100000", "--save-every", "100000", "--eval-every", "100000", "--discard-later"])
        .arg("--resume")
        .arg(run.join("checkpoints/step-00000002"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    for line in stderr.lines() {
        let line = line.unwrap();
        seen.push_str(&line);
        if line.contains("discarded the later checkpoints step-00000004") {
            break;
        }
    }
    // Killed outright (no checkpoint saved on the way out).
    // SAFETY: signalling the child this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    assert!(seen.contains("discarded the later checkpoints"), "{seen}");
    assert_eq!(names(&run.join("checkpoints")), ["step-00000002"]);
    let latest = read(&run.join("latest"));
    assert_eq!(latest, "step-00000002");
    assert!(run.join("checkpoints").join(&latest).join("trainer_state.json").is_file());
    assert!(!names(&run).iter().any(|n| n.contains(".tmp")), "{:?}", names(&run));
}

/// Review 5 and 6: short_seq_prob with a seq_len too short for short batches is warned about
/// once, naming both; negative numbers reach the range checks without per-flag settings.
#[test]
fn short_seq_prob_with_a_short_seq_len_is_warned_about() {
    let tmp = tempfile::tempdir().unwrap();
    let c = corpus(tmp.path());
    let err = ok(train(&c, &tmp.path().join("a"), &["--steps", "1", "--short-seq-prob", "0.5"]));
    let warning = "short_seq_prob 0.5 has no effect with seq_len 32";
    assert_eq!(err.matches(warning).count(), 1, "{err}");
    assert!(err.contains("need seq_len ≥ 34"), "{err}");
    let err = ok(train(&c, &tmp.path().join("b"), &["--steps", "1", "--objective", "glm-10b"]));
    assert!(err.contains("short_seq_prob 0.02 (the `glm-10b` preset's) has no effect with seq_len 32"), "{err}");
    let err = ok(train(&c, &tmp.path().join("c"), &["--steps", "1", "--objective", "glm-10b", "--short-seq-prob", "0"]));
    assert!(!err.contains("short_seq_prob"), "{err}");
    // (6) negative values reach the range checks, as --lr -1 does.
    let fresh = |extra: &[&str]| fails(train(&c, &tmp.path().join("x"), extra));
    assert!(fresh(&["--dropout", "-0.5"]).contains("--dropout: must be in [0, 1)"));
    assert!(fresh(&["--block-mask-prob", "-0.5"]).contains("block_mask_prob -0.5 must be in [0, 1]"));
}
