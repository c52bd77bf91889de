//! `ptune`/`finetune --seeds`: each seed's run is exactly the single run with that seed and
//! directory, the summary's numbers are the mean and sample standard deviation of the per-seed
//! metrics, `--resume` reads finished seeds and continues the rest, Ctrl-C stops cleanly with the
//! command that continues, and bad seed lists are clear errors.
//! Run in release (`cargo test --release --test ptune_seeds`): the runs take seconds there.

mod common;
use common::ptune_toy::*;
use common::{stderr, stdout, wenhui};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use wenhui::ptuning::seeds::{run_seeds, seed_dir, SeedStatus, SeedsOptions, SeedsSummary, SUMMARY_FILE};
use wenhui::ptuning::train::{saved_state, tune, BestRecord, TuneConfig, TuneMode};
use wenhui::train::pretrain::RunOptions;

type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

const MODEL: &str = "tests/fixtures/glm-tiny";

/// The mean and sample standard deviation, computed here by hand.
fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    (mean, (v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0)).sqrt())
}

fn best_record(run: &Path) -> BestRecord {
    serde_json::from_str(&std::fs::read_to_string(run.join("best/best.json")).unwrap()).unwrap()
}

/// Two run directories hold the same training: the kept prompt, the newest checkpoint's encoder
/// and optimizer state (bit for bit), the logged metrics, the kept record and the trainer state
/// (its location and wall time aside).
fn assert_same_run(a: &Path, b: &Path) {
    let (x, y) = (tensors_of(&a.join("best"), "prompt_encoder.safetensors"), tensors_of(&b.join("best"), "prompt_encoder.safetensors"));
    assert_eq!(x.len(), y.len());
    for (name, t) in &x {
        assert_eq!(bits(t), bits(&y[name]), "best/{name} differs between {} and {}", a.display(), b.display());
    }
    let latest = |r: &Path| r.join("checkpoints").join(std::fs::read_to_string(r.join("latest")).unwrap().trim());
    assert_same_tuning_state(&latest(a), &latest(b));
    for file in ["metrics.jsonl", "best/best.json"] {
        assert_eq!(std::fs::read_to_string(a.join(file)).unwrap(), std::fs::read_to_string(b.join(file)).unwrap(), "{file}");
    }
    let state = |r: &Path| {
        let mut v = serde_json::to_value(saved_state(r).unwrap()).unwrap();
        v["config"]["out_dir"] = serde_json::Value::Null;
        v["elapsed_s"] = serde_json::Value::Null;
        v
    };
    assert_eq!(state(a), state(b));
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The flags of a short toy run.
fn toy_args<'a>(t: &'a Toy, cmd: &'a str, out: &'a Path, steps: &'a str, eval_every: &'a str) -> Vec<&'a str> {
    let mut args = vec![cmd, "--task", p(&t.task), "--model", MODEL, "--tokenizer", p(&t.tokenizer), "--train", p(&t.train)];
    args.extend(["-o", p(out), "--max-steps", steps, "--eval-every", eval_every, "--prompt-lr", "1e-2", "--batch-size", "16", "--quiet"]);
    args
}

#[test]
fn seeds_are_the_single_runs_and_the_summary_their_statistics() -> TestResult {
    let t = toy();
    let mut base = toy_config(&t, TuneMode::Ptune, Path::new(MODEL), "seeds");
    (base.max_steps, base.eval_every, base.prompt_lr) = (Some(40), 10, Some(1e-1));
    let seeds = [3, 1, 2];
    let t0 = std::time::Instant::now();
    let s = run_seeds(&base, &seeds, &SeedsOptions { test: Some(t.dev.clone()), ..Default::default() })?;
    let elapsed = t0.elapsed().as_secs_f64();
    for &seed in &seeds {
        let mut single = base.clone();
        single.seed = seed;
        single.out_dir = t.dir.path().join("single").join(format!("seed-{seed}"));
        tune(&single, &RunOptions::default())?;
        assert_same_run(&seed_dir(&base.out_dir, seed), &single.out_dir);
    }
    // The summary: the runs in the list's order, each with its kept dev metrics; the statistics
    // are the mean and sample std of those.
    assert_eq!(s.seeds, seeds);
    assert!(s.complete() && !s.interrupted && s.has_dev);
    let acc: Vec<f64> = seeds.iter().map(|&seed| best_record(&seed_dir(&base.out_dir, seed)).metrics["acc"]).collect();
    assert!(acc.iter().any(|a| *a != acc[0]), "the seeds agree ({acc:?}): the statistics would show little");
    let (mean, std) = mean_std(&acc);
    let stats = &s.dev["acc"];
    assert_eq!((stats.seeds.clone(), stats.values.clone()), (seeds.to_vec(), acc.clone()));
    assert!((stats.mean - mean).abs() < 1e-12 && (stats.std.unwrap_or(f64::NAN) - std).abs() < 1e-12, "{stats:?} vs {mean} ± {std}");
    let min = acc.iter().copied().fold(f64::INFINITY, f64::min);
    let max = acc.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    assert_eq!((stats.min, stats.max), (min, max));
    // The test file is the dev file here: each kept checkpoint scores there as it did when kept.
    assert_eq!(s.test["acc"].values, acc);
    assert!(s.runs.iter().all(|r| r.status == SeedStatus::Trained && r.steps == 40 && r.last_loss.is_some_and(f64::is_finite)));
    // seeds.json is the summary.
    let saved: SeedsSummary = serde_json::from_str(&std::fs::read_to_string(base.out_dir.join(SUMMARY_FILE))?)?;
    assert_eq!(saved.dev, s.dev);
    assert_eq!(saved.runs, s.runs);
    eprintln!("toy ptune over seeds {seeds:?}: dev acc {acc:?}, {:.2} ± {:.2} (×100), {elapsed:.1}s", mean * 100.0, std * 100.0);
    Ok(())
}

#[test]
fn resume_reads_finished_seeds_and_continues_the_rest() -> TestResult {
    let t = toy();
    let mut base = toy_config(&t, TuneMode::Ptune, Path::new(MODEL), "seeds");
    (base.max_steps, base.eval_every, base.prompt_lr) = (Some(20), 10, Some(1e-2));
    run_seeds(&base, &[1, 2], &SeedsOptions::default())?;
    let stamp = |seed: u64| std::fs::metadata(seed_dir(&base.out_dir, seed).join("metrics.jsonl")).and_then(|m| m.modified()).ok();
    let before = (stamp(1), stamp(2));
    // Seed 3 stopped after one step, as Ctrl-C leaves it; seed 4 never started.
    let mut three = base.clone();
    three.seed = 3;
    three.out_dir = seed_dir(&base.out_dir, 3);
    let first = tune(&three, &RunOptions { stop: Some(Arc::new(AtomicBool::new(true))), ..Default::default() })?;
    assert!(first.interrupted && first.steps == 1);
    // Without --resume the seeds' directory is refused, naming the way on.
    let e = run_seeds(&base, &[1, 2], &SeedsOptions::default()).unwrap_err().to_string();
    assert!(e.contains("seed-1") && e.contains("--seeds 1,2 --resume"), "{e}");
    let s = run_seeds(&base, &[1, 2, 3, 4], &SeedsOptions { resume: true, ..Default::default() })?;
    let status: Vec<SeedStatus> = s.runs.iter().map(|r| r.status).collect();
    assert_eq!(status, [SeedStatus::Finished, SeedStatus::Finished, SeedStatus::Resumed, SeedStatus::Trained]);
    assert_eq!((stamp(1), stamp(2)), before, "a finished seed was trained again");
    assert!(s.runs.iter().all(|r| r.steps == 20) && s.complete());
    // A finished seed reads as it was written; the resumed and the new seed equal straight runs.
    assert_eq!(s.runs[0].dev, best_record(&seed_dir(&base.out_dir, 1)).metrics);
    for seed in [3, 4] {
        let mut straight = base.clone();
        straight.seed = seed;
        straight.out_dir = t.dir.path().join(format!("straight-{seed}"));
        tune(&straight, &RunOptions::default())?;
        assert_same_run(&seed_dir(&base.out_dir, seed), &straight.out_dir);
    }
    assert_eq!(s.dev["acc"].values.len(), 4);
    Ok(())
}

/// A run that stopped early (its patience spent) is finished: resuming the seeds reads it
/// instead of training it on.
#[test]
fn an_early_stopped_seed_is_finished() -> TestResult {
    let t = toy();
    let mut base = toy_config(&t, TuneMode::Ptune, Path::new(MODEL), "seeds");
    // A learning rate too small to move the dev accuracy: the second evaluation does not improve.
    (base.max_steps, base.eval_every, base.patience, base.prompt_lr) = (Some(40), 2, 1, Some(1e-12));
    let s = run_seeds(&base, &[5], &SeedsOptions::default())?;
    assert!(s.runs[0].early_stopped && s.runs[0].steps == 4, "{:?}", s.runs[0]);
    let again = run_seeds(&base, &[5], &SeedsOptions { resume: true, ..Default::default() })?;
    assert_eq!((again.runs[0].status, again.runs[0].steps, again.runs[0].early_stopped), (SeedStatus::Finished, 4, true));
    assert_eq!(again.runs[0].dev, s.runs[0].dev);
    assert!(again.table().contains("4*") && again.table().contains("stopped early"), "{}", again.table());
    // A single run resumed after its early stop is complete too: it does not train on.
    let single = TuneConfig { seed: 5, out_dir: t.dir.path().join("single"), ..base };
    tune(&single, &Default::default())?;
    let e = tune(&single, &RunOptions { resume: Some(single.out_dir.clone()), ..Default::default() }).unwrap_err().to_string();
    assert!(e.contains("stopped early at step 4") && e.contains("the run is complete"), "{e}");
    Ok(())
}

#[test]
fn cli_seeds_print_the_summary_and_equal_single_runs() -> TestResult {
    let t = toy();
    let out = t.dir.path().join("seeds");
    let mut args = toy_args(&t, "ptune", &out, "20", "10");
    args.extend(["--dev", p(&t.dev), "--seeds", "1,2", "--test", p(&t.dev), "--json"]);
    let o = wenhui(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim())?;
    for seed in [1u64, 2] {
        let single = t.dir.path().join("single").join(format!("seed-{seed}"));
        let s = seed.to_string();
        let mut args = toy_args(&t, "ptune", &single, "20", "10");
        args.extend(["--dev", p(&t.dev), "--seed", &s]);
        let o = wenhui(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        assert_same_run(&seed_dir(&out, seed), &single);
    }
    let acc: Vec<f64> = [1, 2].iter().map(|&s| best_record(&seed_dir(&out, s)).metrics["acc"]).collect();
    let (mean, std) = mean_std(&acc);
    let stats = &v["dev"]["acc"];
    assert_eq!(stats["values"], serde_json::json!(acc));
    assert!((stats["mean"].as_f64().unwrap() - mean).abs() < 1e-12 && (stats["std"].as_f64().unwrap() - std).abs() < 1e-12, "{stats}");
    assert_eq!(v["test"]["acc"]["values"], serde_json::json!(acc));
    // The table: a row per seed, the statistics, and where the summary went.
    let o = wenhui(&["ptune", "--task", p(&t.task), "--model", MODEL, "-o", p(&out), "--seeds", "1,2", "--resume", "--test", p(&t.dev)]);
    let (text, err) = (stdout(&o), stderr(&o));
    assert!(o.status.success(), "{err}");
    assert!(err.contains("seed 1 (1 of 2)") && err.contains("finished before"), "{err}");
    let row = |label: &str| text.lines().find(|l| l.starts_with(label)).map(str::to_string).unwrap_or_default();
    assert!(row("mean").contains(&format!("{:.2}", mean * 100.0)) && row("std").contains(&format!("{:.2}", std * 100.0)), "{text}");
    assert!(row("1 ").contains(&format!("{:.2}", acc[0] * 100.0)), "{text}");
    assert!(text.contains("dev acc") && text.contains("test acc") && text.contains(SUMMARY_FILE), "{text}");
    Ok(())
}

/// `finetune --seeds` without a dev set: each seed keeps its last state, the table shows the
/// training losses and says dev metrics need --dev; --test still scores each kept model.
#[test]
fn cli_finetune_seeds_without_dev_report_the_loss() -> TestResult {
    let t = toy();
    let out = t.dir.path().join("ft");
    let mut args = toy_args(&t, "finetune", &out, "4", "10");
    args.extend(["--seeds", "7,8", "--lm-lr", "1e-3", "--test", p(&t.dev)]);
    let o = wenhui(&args);
    let (text, err) = (stdout(&o), stderr(&o));
    assert!(o.status.success(), "{err}");
    assert!(text.contains("dev metrics need --dev") && text.contains("loss") && text.contains("test acc"), "{text}");
    let s: SeedsSummary = serde_json::from_str(&std::fs::read_to_string(out.join(SUMMARY_FILE))?)?;
    assert!(!s.has_dev && s.dev.is_empty() && s.test["acc"].values.len() == 2);
    let losses = s.train_loss.as_ref().map(|l| l.values.clone()).unwrap_or_default();
    assert_eq!(losses.len(), 2);
    assert!(losses.iter().all(|l| l.is_finite() && *l > 0.0), "{losses:?}");
    for seed in [7, 8] {
        assert!(seed_dir(&out, seed).join("best/model.safetensors").is_file(), "finetune keeps the model");
        assert_eq!(best_record(&seed_dir(&out, seed)).step, 4);
    }
    Ok(())
}

/// Ctrl-C during a seed saves it and starts no further seed; the printed command continues.
#[cfg(unix)]
#[test]
fn ctrl_c_stops_the_seeds_with_the_command_that_continues() -> TestResult {
    let t = toy();
    let out = t.dir.path().join("seeds");
    let mut args = toy_args(&t, "ptune", &out, "200", "100");
    args.extend(["--dev", p(&t.dev), "--seeds", "1,2"]);
    let child = common::spawn_until_a_step(&args, &seed_dir(&out, 1));
    // SAFETY: signalling the child this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let o = child.wait_with_output()?;
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(130), "{err}");
    let resume = err.lines().find_map(|l| l.split_once("continue the seeds with: ").map(|x| x.1.to_string())).unwrap_or_default();
    assert!(resume.starts_with("wenhui ptune --task") && resume.ends_with("--seeds 1,2 --resume"), "{err}");
    assert!(stdout(&o).contains("(not started)"), "{}", stdout(&o));
    let stopped = saved_state(&seed_dir(&out, 1))?.step;
    assert!(stopped < 200, "the seed ran to its end");
    assert!(!seed_dir(&out, 2).exists(), "seed 2 started after the stop");
    // The printed command, as given (its words need no quoting here).
    let words: Vec<&str> = resume.split(' ').skip(1).collect();
    let o = wenhui(&[words.as_slice(), &["--quiet"]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let s: SeedsSummary = serde_json::from_str(&std::fs::read_to_string(out.join(SUMMARY_FILE))?)?;
    assert!(s.complete() && s.runs.iter().all(|r| r.steps == 200), "{s:?}");
    assert_eq!((s.runs[0].status, s.runs[1].status), (SeedStatus::Resumed, SeedStatus::Trained));
    Ok(())
}

#[test]
fn bad_seed_lists_are_clear_errors() -> TestResult {
    let t = toy();
    let out = t.dir.path().join("never");
    let refused = |extra: &[&str], want: &[&str]| {
        let mut args = toy_args(&t, "ptune", &out, "2", "10");
        args.extend(extra);
        let o = wenhui(&args);
        let err = stderr(&o);
        assert!(!o.status.success(), "{extra:?} was accepted");
        for w in want {
            assert!(err.contains(w), "{extra:?}: no `{w}` in {err}");
        }
    };
    refused(&["--seeds", "1,2,1"], &["--seeds", "seed 1 is listed twice"]);
    refused(&["--seeds", ""], &["--seeds", "the seed list is empty"]);
    refused(&["--seeds", "1,,2"], &["empty item"]);
    refused(&["--seeds", "x"], &["`x` is not a seed"]);
    refused(&["--seeds", "1", "--seed", "2"], &["--seeds", "cannot be used with", "--seed"]);
    refused(&["--test", p(&t.dev)], &["--seeds"]);
    refused(&["--seeds", "1,2", "--resume"], &["no seed run to resume", "seed-1/, seed-2/"]);
    refused(&["--seeds", "1", "--test", "missing.jsonl"], &["missing.jsonl"]);
    assert!(!out.exists(), "a refused run left {}", out.display());
    Ok(())
}

/// Seeds outside the list's directory are not touched, and a list is run in its own order.
#[test]
fn a_seed_list_runs_in_its_order() -> TestResult {
    let t = toy();
    let mut base = toy_config(&t, TuneMode::Ptune, Path::new(MODEL), "seeds");
    (base.max_steps, base.eval_every) = (Some(2), 2);
    let s = run_seeds(&base, &[9, 4], &SeedsOptions::default())?;
    let dirs: Vec<PathBuf> = s.runs.iter().map(|r| r.dir.clone()).collect();
    assert_eq!(dirs, [seed_dir(&base.out_dir, 9), seed_dir(&base.out_dir, 4)]);
    assert!(saved_state(&dirs[0])?.config.seed == 9 && saved_state(&dirs[1])?.config.seed == 4);
    Ok(())
}
