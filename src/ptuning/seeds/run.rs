//! Running the seeds: each seed's run is an ordinary [`tune`] run in its own directory, so that
//! `--seeds 1,2 -o out` leaves exactly what `--seed 1 -o out/seed-1` and `--seed 2 -o out/seed-2`
//! would.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::{check_seeds, format_seeds, seed_dir, SeedRun, SeedStatus, SeedsSummary};
use crate::cloze::{evaluate, ClassifyOptions, ClozeTask};
use crate::model::{load_model, LoadOptions};
use crate::ptuning::train::{
    load_prompt, load_tokenizer, read_labelled, resolve, saved_state, tune, TuneConfig, TuneMode, TuneState, TuneSummary,
};
use crate::train::pretrain::RunOptions;
use crate::{Error, Result};

/// The summary's file in the seeds' directory.
pub const SUMMARY_FILE: &str = "seeds.json";

/// How [`run_seeds`] runs.
#[derive(Debug, Clone, Default)]
pub struct SeedsOptions {
    /// Continue the seeds' runs: a finished one is read and skipped, an unfinished one resumed,
    /// one without a checkpoint started.
    pub resume: bool,
    /// Report progress on stderr (a line per seed, and each run's own progress).
    pub progress: bool,
    /// When set (Ctrl-C), the running seed saves a checkpoint and returns, and no further seed starts.
    pub stop: Option<Arc<AtomicBool>>,
    /// Evaluate each seed's kept checkpoint on this labelled JSONL file.
    pub test: Option<PathBuf>,
}

fn has_checkpoint(dir: &Path) -> Result<bool> {
    Ok(crate::train::checkpoint::latest(dir)?.is_some())
}

/// The configuration to resume the seeds in `out` with: the saved one of the first seed (in the
/// list's order) whose run holds a checkpoint. Seeds not started yet start from it too, so every
/// seed trains with the same settings.
pub fn saved_config(out: &Path, seeds: &[u64]) -> Result<TuneConfig> {
    check_seeds(seeds)?;
    for &seed in seeds {
        let dir = seed_dir(out, seed);
        if has_checkpoint(&dir)? {
            return Ok(saved_state(&dir)?.config);
        }
    }
    Err(Error::file(
        out,
        format!(
            "no seed run to resume: none of {} holds a checkpoint (start the seeds without --resume)",
            seeds.iter().map(|s| format!("seed-{s}/")).collect::<Vec<_>>().join(", ")
        ),
    ))
}

/// How the run of `st` ended, when it did: `Some(early_stopped)` once it ran all its steps or
/// spent its patience (resuming it would train on, so the runner reads it instead), else none.
fn ended(st: &TuneState, task: &ClozeTask) -> Result<Option<bool>> {
    let mut cfg = st.config.clone();
    // Runs of wenhui before 0.1 saved `eval_every = 0` for "every step"; `tune` reads it so too.
    cfg.eval_every = cfg.eval_every.max(1);
    let r = resolve(&cfg, task)?;
    let early = st.step < r.max_steps && cfg.patience > 0 && st.bad_evals >= cfg.patience;
    Ok((st.step >= r.max_steps || early).then_some(early))
}

/// The last logged training loss of a run's `metrics.jsonl` (none when there is none).
fn last_logged_loss(dir: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(dir.join("metrics.jsonl")).ok()?;
    text.lines().rev().find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?.get("loss")?.as_f64())
}

/// A run that had finished before this invocation, read from its directory: the kept record
/// from `best/best.json` (a run without a dev set records its last step only there).
fn read_finished(seed: u64, dir: &Path, st: &TuneState, early_stopped: bool) -> Result<SeedRun> {
    let best_path = dir.join("best").join("best.json");
    let best: Option<crate::ptuning::train::BestRecord> = if best_path.is_file() {
        let text = crate::error::read_text(&best_path)?;
        Some(serde_json::from_str(&text).map_err(|e| Error::file(&best_path, format!("not a kept-checkpoint record: {e}")))?)
    } else {
        st.best.clone()
    };
    Ok(SeedRun {
        seed,
        dir: dir.to_path_buf(),
        status: SeedStatus::Finished,
        steps: st.step,
        best_step: best.as_ref().map(|b| b.step),
        dev: best.map(|b| b.metrics).unwrap_or_default(),
        test: None,
        last_loss: last_logged_loss(dir),
        early_stopped,
        elapsed_s: 0.0,
    })
}

fn from_summary(seed: u64, dir: &Path, s: &TuneSummary, resumed: bool) -> SeedRun {
    SeedRun {
        seed,
        dir: dir.to_path_buf(),
        status: match (s.interrupted, resumed) {
            (true, _) => SeedStatus::Interrupted,
            (false, true) => SeedStatus::Resumed,
            (false, false) => SeedStatus::Trained,
        },
        steps: s.steps,
        best_step: s.best.as_ref().map(|b| b.step),
        dev: s.best.as_ref().map(|b| b.metrics.clone()).unwrap_or_default(),
        test: None,
        last_loss: s.last_loss.is_finite().then_some(s.last_loss),
        early_stopped: s.early_stopped,
        elapsed_s: s.elapsed_s,
    }
}

/// Evaluates the kept checkpoint of the run `cfg` describes (its `best/`: the prompt, and for
/// fine-tuning the model) on the labelled JSONL `data`; the metrics of the task.
pub fn evaluate_best(cfg: &TuneConfig, data: &Path) -> Result<BTreeMap<String, f64>> {
    let task = ClozeTask::load(&cfg.task)?;
    let examples = read_labelled(data, &task, "test")?;
    let best = cfg.out_dir.join("best");
    let device = crate::device::f32_device("ptune/finetune --test")?;
    let model_path = match cfg.mode {
        TuneMode::Ptune => cfg.model.clone(),
        TuneMode::Finetune => best.clone(),
    };
    let model = load_model(&model_path, &LoadOptions { device: device.clone(), ..LoadOptions::default() })?.backbone;
    // The tokenizer the run trained with.
    let tok = load_tokenizer(cfg.tokenizer.as_deref(), &cfg.model)?;
    let prompt = if task.template.num_pseudo() > 0 { Some(load_prompt(&best, &device)?.prompt_embeddings()?) } else { None };
    let (scores, _) = evaluate(model.as_ref(), &tok, &task, &examples, &ClassifyOptions { prompt, batch_size: cfg.eval_batch_size })?;
    Ok(scores)
}

/// Test metrics of `seed` in a previous summary, when they were taken on `data` at `best_step`.
fn cached_test(previous: Option<&SeedsSummary>, seed: u64, data: &Path, best_step: Option<u64>) -> Option<BTreeMap<String, f64>> {
    let p = previous?;
    if p.test_data.as_deref() != Some(data) {
        return None;
    }
    let r = p.runs.iter().find(|r| r.seed == seed && r.status.is_done() && r.best_step == best_step)?;
    r.test.clone()
}

/// Names the seed in an error that does not name its directory already.
fn in_seed(seed: u64, e: Error) -> Error {
    match e {
        Error::Input(m) => Error::Input(format!("seed {seed}: {m}")),
        other => other,
    }
}

fn say(progress: bool, msg: &str) {
    if progress {
        use std::io::Write;
        // Best effort, as the runs' own progress lines: a closed stderr must not end the runs.
        let _ = writeln!(std::io::stderr(), "{msg}");
    }
}

/// Trains `base` once per seed, each into `<base.out_dir>/seed-<N>` with `seed = N` (everything
/// else as `base`), one after the other; then writes and returns the summary over the seeds.
/// With `opts.resume` finished runs are read, unfinished ones continued. A stop (Ctrl-C) ends the
/// running seed with a checkpoint and starts no further one: the summary then covers the
/// finished seeds and [`SeedsSummary::resume_command`] continues the rest.
pub fn run_seeds(base: &TuneConfig, seeds: &[u64], opts: &SeedsOptions) -> Result<SeedsSummary> {
    check_seeds(seeds)?;
    let task = ClozeTask::load(&base.task)?;
    // The test file is checked before any seed trains, not after the first run.
    let test = match &opts.test {
        Some(p) => {
            read_labelled(p, &task, "test")?;
            Some(std::path::absolute(p).unwrap_or_else(|_| p.clone()))
        }
        None => None,
    };
    if !opts.resume {
        for &seed in seeds {
            let dir = seed_dir(&base.out_dir, seed);
            if has_checkpoint(&dir)? {
                return Err(Error::file(
                    &dir,
                    format!(
                        "already holds the run of seed {seed}: continue the seeds with --resume (`--seeds {} --resume`), or write them to another directory",
                        format_seeds(seeds)
                    ),
                ));
            }
            crate::train::metrics::ensure_new_run(&dir)?;
        }
    }
    // Test metrics of runs finished before are not computed again (a large test set is slow).
    let previous: Option<SeedsSummary> =
        std::fs::read_to_string(base.out_dir.join(super::SUMMARY_FILE)).ok().and_then(|t| serde_json::from_str(&t).ok());
    let stopped = || opts.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst));
    let t0 = Instant::now();
    let mut runs = Vec::with_capacity(seeds.len());
    let mut halted = false;
    for (i, &seed) in seeds.iter().enumerate() {
        let dir = seed_dir(&base.out_dir, seed);
        if halted || stopped() {
            halted = true;
            runs.push(SeedRun::not_started(seed, dir));
            continue;
        }
        let mut cfg = base.clone();
        cfg.seed = seed;
        cfg.out_dir.clone_from(&dir);
        let state = if opts.resume && has_checkpoint(&dir)? { Some(saved_state(&dir)?) } else { None };
        let head = format!("seed {seed} ({} of {}): {}", i + 1, seeds.len(), dir.display());
        let end = state.as_ref().map(|st| ended(st, &task)).transpose()?.flatten();
        let mut run = match (&state, end) {
            (Some(st), Some(early_stopped)) => {
                say(opts.progress, &format!("{head}: finished before (step {}), read", st.step));
                read_finished(seed, &dir, st, early_stopped)?
            }
            _ => {
                say(opts.progress, &head);
                let resume = state.is_some().then(|| dir.clone());
                let s =
                    tune(&cfg, &RunOptions { resume, progress: opts.progress, stop: opts.stop.clone() }).map_err(|e| in_seed(seed, e))?;
                from_summary(seed, &dir, &s, state.is_some())
            }
        };
        if run.status == SeedStatus::Interrupted {
            halted = true;
        } else if let Some(data) = &test {
            run.test = match cached_test(previous.as_ref(), seed, data, run.best_step) {
                Some(m) => Some(m),
                None => Some(evaluate_best(&cfg, data).map_err(|e| in_seed(seed, e))?),
            };
        }
        runs.push(run);
    }
    let mut summary = SeedsSummary::new(&base.task, base.mode, &base.out_dir, base.dev.is_some(), test, runs);
    summary.elapsed_s = t0.elapsed().as_secs_f64();
    // Nothing to record when the runner was stopped before any seed made its directory.
    if base.out_dir.is_dir() {
        crate::train::checkpoint::write_json(&base.out_dir.join(super::SUMMARY_FILE), &summary)?;
    }
    Ok(summary)
}
