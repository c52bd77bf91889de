//! Training checkpoints: written atomically, loadable by every other command.
//!
//! `<run>/checkpoints/step-00000100/` holds `model.safetensors` + `config.json` + the tokenizer
//! (so `wenhui inspect` and every loader read it as a model directory), `optimizer.safetensors`
//! and `trainer_state.json` (step, data cursor, config). A checkpoint is written into a
//! `*.tmp-<pid>` directory and renamed into place only when complete, so a crash mid-write
//! leaves the previous checkpoint intact; `<run>/latest` names the newest one.

use crate::data::stream::Cursor;
use crate::error::read_text;
use crate::model::ModelConfig;
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};
use candle_core::Tensor;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The trainer's own state, enough to continue exactly.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TrainerState {
    /// Optimizer steps completed.
    pub step: u64,
    /// Where the training data stream is.
    pub cursor: Cursor,
    /// Tokens (input positions, padding excluded) seen so far.
    pub tokens_seen: u64,
    /// Training wall time so far, in seconds.
    pub elapsed_s: f64,
    /// The run's configuration, as given, with what it resolved written out (the model's shape,
    /// absolute paths, the preset's span-rule settings: `setup::saved_config`).
    pub config: serde_json::Value,
    /// The wenhui version that wrote it.
    pub wenhui_version: String,
}

/// Everything a checkpoint holds.
pub struct Checkpoint {
    /// Its directory.
    pub dir: PathBuf,
    /// Model parameters by name.
    pub params: HashMap<String, Tensor>,
    /// Model hyper-parameters.
    pub model: ModelConfig,
    /// Optimizer state tensors.
    pub optimizer: HashMap<String, Tensor>,
    /// Trainer state.
    pub state: TrainerState,
}

fn checkpoints_dir(run: &Path) -> PathBuf {
    run.join("checkpoints")
}

fn io<T>(path: &Path, r: std::io::Result<T>) -> Result<T> {
    r.map_err(|e| Error::io(path, e))
}

/// Writes `bytes` to `path` and syncs it.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut f = io(path, std::fs::File::create(path))?;
    io(path, f.write_all(bytes))?;
    io(path, f.sync_all())
}

/// Saves a checkpoint for `state.step` under `run` and keeps only the newest `keep_last`.
/// `extra` writes more files into it before it is published (e.g. seq2seq's input layout), so
/// that they appear with it or not at all.
#[allow(clippy::too_many_arguments)]
pub fn save(
    run: &Path,
    params: &HashMap<String, Tensor>,
    model: &ModelConfig,
    tokenizer: &Tokenizer,
    optimizer: &HashMap<String, Tensor>,
    state: &TrainerState,
    keep_last: usize,
    extra: impl FnOnce(&Path) -> Result<()>,
) -> Result<PathBuf> {
    let parts = [("weight", params), ("optimizer state", optimizer)];
    refuse_non_finite(run, state.step, &parts, "resume from the last one with a lower learning rate")?;
    publish(run, state.step, keep_last, |tmp| {
        save_tensors(params, &tmp.join("model.safetensors"))?;
        save_tensors(optimizer, &tmp.join("optimizer.safetensors"))?;
        write_json(&tmp.join("config.json"), &model.to_json())?;
        write_json(&tmp.join("trainer_state.json"), state)?;
        extra(tmp)?;
        tokenizer.save(tmp)
    })
}

/// An error when a tensor of `parts` (what it is, its tensors) holds NaN or an infinity: a
/// diverged step must not be published under `run`, where it would become `latest` and push a
/// good checkpoint out of `keep_last`. `next` tells the user what to do.
pub fn refuse_non_finite(run: &Path, step: u64, parts: &[(&str, &HashMap<String, Tensor>)], next: &str) -> Result<()> {
    for (what, tensors) in parts {
        if let Some(name) = crate::model::checkpoint::first_non_finite(tensors)? {
            return Err(Error::input(format!(
                "step {step}: the {what} `{name}` holds NaN or infinite values, so this checkpoint is not saved and those \
                 in {} are kept: training diverged ({next})",
                checkpoints_dir(run).display()
            )));
        }
    }
    Ok(())
}

/// Writes `tensors` as a safetensors file.
pub fn save_tensors(tensors: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
    candle_core::safetensors::save(tensors, path).map_err(|e| Error::file(path, format!("could not write safetensors: {e}")))?;
    // safetensors writes through a private temporary file (mode 0600); weights are shared like
    // the config and tokenizer beside them.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        io(path, std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)))?;
    }
    Ok(())
}

/// Writes `value` as pretty JSON and syncs the file.
pub fn write_json<T: serde::Serialize + ?Sized>(path: &Path, value: &T) -> Result<()> {
    write_synced(path, serde_json::to_string_pretty(value).map_err(|e| Error::input(e.to_string()))?.as_bytes())
}

/// Publishes `<run>/checkpoints/step-<step>` atomically: `fill` writes the files into a
/// `*.tmp-<pid>` directory, which is renamed into place only when `fill` succeeded (replacing
/// an older copy of the same step); then `<run>/latest` names it and all but the newest
/// `keep_last` step directories are removed. `fill` must write a `trainer_state.json`: it is what
/// marks a directory as complete for [`latest`].
pub fn publish(run: &Path, step: u64, keep_last: usize, fill: impl FnOnce(&Path) -> Result<()>) -> Result<PathBuf> {
    let root = checkpoints_dir(run);
    io(&root, std::fs::create_dir_all(&root))?;
    let name = format!("step-{step:08}");
    let tmp = root.join(format!("{name}.tmp-{}", std::process::id()));
    if tmp.exists() {
        io(&tmp, std::fs::remove_dir_all(&tmp))?;
    }
    io(&tmp, std::fs::create_dir_all(&tmp))?;
    if let Err(e) = fill(&tmp) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    let dst = root.join(&name);
    if dst.exists() {
        // Re-saving a step (e.g. after a resume): replace it only now that the new one is whole.
        io(&dst, std::fs::remove_dir_all(&dst))?;
    }
    io(&dst, std::fs::rename(&tmp, &dst))?;
    let latest_tmp = run.join(format!("latest.tmp-{}", std::process::id()));
    write_synced(&latest_tmp, name.as_bytes())?;
    io(&run.join("latest"), std::fs::rename(&latest_tmp, run.join("latest")))?;
    prune(&root, keep_last.max(1))?;
    Ok(dst)
}

/// Step directories under `root`, oldest first.
pub(crate) fn step_dirs(root: &Path) -> Result<Vec<(u64, PathBuf)>> {
    if !root.is_dir() {
        return Ok(Vec::new());
    }
    let mut out: Vec<(u64, PathBuf)> = io(root, std::fs::read_dir(root))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let step = name.strip_prefix("step-")?.parse::<u64>().ok()?;
            Some((step, e.path()))
        })
        .collect();
    out.sort();
    Ok(out)
}

/// Removes all but the newest `keep` checkpoints, and temp directories of other processes
/// (left by a crash).
fn prune(root: &Path, keep: usize) -> Result<()> {
    let dirs = step_dirs(root)?;
    for (_, d) in dirs.iter().take(dirs.len().saturating_sub(keep)) {
        io(d, std::fs::remove_dir_all(d))?;
    }
    let own = format!(".tmp-{}", std::process::id());
    for e in io(root, std::fs::read_dir(root))?.filter_map(|e| e.ok()) {
        let name = e.file_name().to_string_lossy().to_string();
        if name.contains(".tmp-") && !name.ends_with(&own) {
            tracing::info!("removing the unfinished checkpoint {}", e.path().display());
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    Ok(())
}

/// The newest complete checkpoint of a run directory, if any. `<run>/latest` names it; when it
/// names another (a run killed between publishing a checkpoint and updating `latest`, or an
/// edited file), the newest complete one is used and a warning says so.
pub fn latest(run: &Path) -> Result<Option<PathBuf>> {
    let newest = step_dirs(&checkpoints_dir(run))?.into_iter().rev().map(|(_, d)| d).find(|d| d.join("trainer_state.json").is_file());
    let named = run.join("latest");
    if !named.is_file() {
        return Ok(newest);
    }
    let name = read_text(&named)?.trim().to_string();
    let dir = checkpoints_dir(run).join(&name);
    if newest.as_ref().is_none_or(|n| *n == dir) {
        return Ok(newest);
    }
    // A resume reads the run several times (configuration, run directory, checkpoint), by
    // relative and by absolute path: one warning per file is enough.
    static WARNED: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
    let key = named.canonicalize().unwrap_or_else(|_| named.clone());
    let first = WARNED.lock().is_ok_and(|mut seen| {
        !seen.contains(&key) && {
            seen.push(key.clone());
            true
        }
    });
    if first {
        let found = newest.as_ref().and_then(|n| n.file_name()).map_or(String::new(), |n| n.to_string_lossy().into_owned());
        if dir.join("trainer_state.json").is_file() {
            tracing::warn!("{} names {name}, but {found} is newer and complete; using {found}", named.display());
        } else {
            tracing::warn!("{} names {name}, which is not a complete checkpoint; using the newest one found ({found})", named.display());
        }
    }
    Ok(newest)
}

/// The kept checkpoint of a pretraining run with the lowest validation loss in its
/// `metrics.jsonl`: its directory, step and loss (`export --best`).
pub fn best_by_val_loss(run: &Path) -> Result<(PathBuf, u64, f64)> {
    let metrics = run.join("metrics.jsonl");
    if !metrics.is_file() {
        return Err(Error::file(&metrics, "missing: --best needs the run directory of `wenhui pretrain`, with its metrics"));
    }
    let kept = step_dirs(&checkpoints_dir(run))?;
    let val = crate::train::plot::read_metrics(&metrics)?.val_loss;
    kept.into_iter()
        .filter(|(_, d)| d.join("trainer_state.json").is_file())
        .filter_map(|(step, d)| {
            // The lowest loss logged at this step (a resumed run may have logged it twice).
            let loss = val.iter().filter(|(s, _)| *s == step as f64).map(|(_, l)| *l).fold(f64::INFINITY, f64::min);
            loss.is_finite().then_some((d, step, loss))
        })
        .min_by(|a, b| a.2.total_cmp(&b.2).then(a.1.cmp(&b.1)))
        .ok_or_else(|| match no_validation(run) {
            Some(why) => {
                Error::file(&metrics, format!("no validation ran in this run ({why}): export a checkpoint by its directory instead"))
            }
            None => Error::file(
                &metrics,
                "no validation loss was logged at the step of a kept checkpoint (validate at the save steps: eval_every dividing \
                 save_every); export a checkpoint by its directory instead",
            ),
        })
}

/// Why a run held no documents out, as its `split.json` records: none were held out because the
/// corpus was too small, or valid_fraction was 0. `None` when it held some out (or says nothing).
fn no_validation(run: &Path) -> Option<String> {
    let split: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("split.json")).ok()?).ok()?;
    if !split.get("valid_documents")?.as_array()?.is_empty() {
        return None;
    }
    let fraction = split.get("valid_fraction").and_then(|v| v.as_f64()).unwrap_or(0.0);
    Some(match split.get("documents").and_then(|v| v.as_u64()) {
        _ if fraction <= 0.0 => "valid_fraction was 0, so no documents were held out".to_string(),
        Some(n) => format!("the corpus was too small to hold documents out: {n} document(s), and validation needs at least 2"),
        None => "the corpus was too small to hold documents out (split.json lists none)".to_string(),
    })
}

/// An error when the checkpoint in `dir`, at `step`, leaves no step of the run's `total`:
/// resuming it would do nothing. `next` tells the user what to do instead.
pub fn ensure_steps_left(dir: &Path, step: u64, total: u64, next: &str) -> Result<()> {
    if step >= total {
        return Err(Error::input(format!("{} is at step {step} of {total}: the run is complete ({next})", dir.display())));
    }
    Ok(())
}

/// Loads a checkpoint directory, or the newest checkpoint of a run directory.
pub fn load(path: &Path) -> Result<Checkpoint> {
    let dir = resolve(path)?;
    let state_path = dir.join("trainer_state.json");
    let state: TrainerState =
        serde_json::from_str(&read_text(&state_path)?).map_err(|e| Error::file(&state_path, format!("not a valid trainer state: {e}")))?;
    let model = ModelConfig::from_file(&dir.join("config.json"))?;
    let load_st = |name: &str| {
        let p = dir.join(name);
        if !p.is_file() {
            return Err(Error::file(&p, "missing: the checkpoint is incomplete"));
        }
        candle_core::safetensors::load(&p, &candle_core::Device::Cpu)
            .map_err(|e| Error::file(&p, format!("unreadable ({e}); is it truncated?")))
    };
    let (params, optimizer) = (load_st("model.safetensors")?, load_st("optimizer.safetensors")?);
    crate::model::checkpoint::ensure_all_finite(&params, &dir.join("model.safetensors"))?;
    crate::model::checkpoint::ensure_all_finite(&optimizer, &dir.join("optimizer.safetensors"))?;
    Ok(Checkpoint { params, optimizer, model, state, dir })
}

/// The run configuration a checkpoint was written with (`--resume` without `--config`).
pub fn saved_config(path: &Path) -> Result<serde_json::Value> {
    let state_path = resolve(path)?.join("trainer_state.json");
    let state: TrainerState =
        serde_json::from_str(&read_text(&state_path)?).map_err(|e| Error::file(&state_path, format!("not a valid trainer state: {e}")))?;
    Ok(state.config)
}

/// `s` as one shell word, for the commands printed to the user (`resume with: …`): as is when
/// it is made of safe characters, else single-quoted.
pub fn shell_quote(s: &str) -> String {
    let safe = |c: char| c.is_alphanumeric() || "_-./:=,@+%".contains(c);
    if !s.is_empty() && s.chars().all(safe) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The run directory a `--resume` path belongs to: the run whose `checkpoints/` holds the
/// checkpoint directory given, or the run directory itself.
pub fn run_dir(path: &Path) -> Result<PathBuf> {
    // Absolute, so that `.` or `step-N` given from inside a run still have their parents.
    let path = &path.canonicalize().map_err(|e| Error::io(path, e))?;
    if !path.join("trainer_state.json").is_file() {
        resolve(path)?; // a run directory with a checkpoint (else the error says what is missing)
        return Ok(path.to_path_buf());
    }
    match path.parent().filter(|p| p.file_name().is_some_and(|n| n == "checkpoints")).and_then(Path::parent) {
        Some(run) if run.as_os_str().is_empty() => Ok(PathBuf::from(".")),
        Some(run) => Ok(run.to_path_buf()),
        None => Err(Error::file(path, "a checkpoint outside a run's checkpoints/ directory: pass --out-dir for the continued run")),
    }
}

/// A checkpoint directory, or the newest checkpoint of a run directory.
pub fn resolve(path: &Path) -> Result<PathBuf> {
    Ok(if path.join("trainer_state.json").is_file() {
        path.to_path_buf()
    } else {
        latest(path)?.ok_or_else(|| {
            let model = path.join("config.json").is_file();
            Error::file(
                path,
                if model {
                    "is a model directory, not a training run: --resume continues a run (a run directory or one of its \
                     checkpoints/step-N)"
                } else {
                    "no checkpoint here: expected a checkpoint directory (with trainer_state.json) or a run directory with checkpoints/"
                },
            )
        })?
    })
}
