//! The trainer's resumable state, its atomic checkpoints and the kept best prompt (and model).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor, Var};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use super::{var_tensors, TuneConfig};
use crate::cloze::ClozeTask;
use crate::error::read_text;
use crate::model::ModelConfig;
use crate::ptuning::{AdapterMeta, PromptEncoder, ADAPTER_CONFIG, STATE_CONFIG};
use crate::tokenizer::Tokenizer;
use crate::train::checkpoint::{publish, save_tensors, write_json};
use crate::train::optim::AdamW;
use crate::{Error, Result};

/// The kept checkpoint: its step and dev metrics (empty without a dev set).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BestRecord {
    /// Optimizer steps when it was kept.
    pub step: u64,
    /// Dev metrics at that step.
    pub metrics: BTreeMap<String, f64>,
}

/// Everything needed to continue a run exactly.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TuneState {
    /// The run's configuration.
    pub config: TuneConfig,
    /// Optimizer steps completed.
    pub step: u64,
    /// Data order: epoch and position in it.
    pub epoch: u64,
    /// Next example of the epoch's order.
    pub index: usize,
    /// The kept checkpoint.
    pub best: Option<BestRecord>,
    /// The best selection-metric value so far.
    pub best_value: Option<f64>,
    /// Evaluations since the last strict improvement.
    pub bad_evals: usize,
    /// Training wall time so far, seconds.
    pub elapsed_s: f64,
    /// Sum of the training losses since the last logged step (the logged loss is their mean,
    /// so a resumed run logs what an uninterrupted one does).
    #[serde(default)]
    pub window_loss: f64,
    /// Steps in [`TuneState::window_loss`].
    #[serde(default)]
    pub window_steps: usize,
    /// The task the run started with: a resume with another template or verbalizer is refused
    /// (absent in checkpoints of wenhui before 0.1 runs recorded it).
    #[serde(default)]
    pub task_spec: Option<crate::cloze::TaskSpec>,
    /// [`crate::model::weights_fingerprint`] of the backbone the run started from: a resume
    /// with other weights is refused.
    #[serde(default)]
    pub model_fingerprint: Option<String>,
    /// The wenhui version that wrote it.
    pub wenhui_version: String,
}

impl TuneState {
    /// The state before step 1.
    pub fn start(cfg: &TuneConfig) -> Self {
        Self {
            config: cfg.clone(),
            step: 0,
            epoch: 0,
            index: 0,
            best: None,
            best_value: None,
            bad_evals: 0,
            elapsed_s: 0.0,
            window_loss: 0.0,
            window_steps: 0,
            task_spec: None,
            model_fingerprint: None,
            wenhui_version: env!("CARGO_PKG_VERSION").into(),
        }
    }

    /// The next `batch` example indices of `n`: each epoch is a fresh seeded permutation, and a
    /// batch may straddle two epochs. A batch holds at most [`crate::train::MAX_BATCH`] indices,
    /// the bound [`super::resolve`] checks `batch_size` against: a larger `batch` gives that many
    /// (it could only exhaust the memory), and `n = 0` gives none.
    pub fn next_batch(&mut self, n: usize, batch: usize, seed: u64) -> Vec<usize> {
        let batch = batch.min(crate::train::MAX_BATCH);
        let order = |epoch: u64| {
            let mut o: Vec<usize> = (0..n).collect();
            o.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15)));
            o
        };
        let mut current = order(self.epoch);
        let mut out = Vec::with_capacity(batch);
        while out.len() < batch && n > 0 {
            if self.index >= n {
                self.epoch += 1;
                self.index = 0;
                current = order(self.epoch);
            }
            out.push(current[self.index]);
            self.index += 1;
        }
        out
    }

    /// Records an evaluation: returns the record to keep when every metric of `select` is ≥ its
    /// value in the kept record (ties keep the newer state, as P-tuning does); the patience
    /// counter resets only when every one is strictly better. A metric the scores lack reads as
    /// their first value.
    pub fn judge(&mut self, scores: Option<BTreeMap<String, f64>>, select: &[String]) -> Option<BestRecord> {
        let scores = scores?;
        let value = |s: &BTreeMap<String, f64>, m: &String| s.get(m).or_else(|| s.values().next()).copied();
        let now: Vec<f64> = select.iter().map(|m| value(&scores, m)).collect::<Option<_>>()?;
        // The kept record holds the best values: it is kept exactly when none got worse.
        let best: Vec<f64> = match &self.best {
            Some(b) if !b.metrics.is_empty() => select.iter().map(|m| value(&b.metrics, m).unwrap_or(f64::NEG_INFINITY)).collect(),
            _ => vec![f64::NEG_INFINITY; now.len()],
        };
        if now.iter().zip(&best).all(|(n, b)| n > b) {
            self.bad_evals = 0;
        } else {
            self.bad_evals += 1;
        }
        if now.iter().zip(&best).all(|(n, b)| n >= b) {
            self.best_value = now.first().copied();
            let record = BestRecord { step: self.step, metrics: scores };
            self.best = Some(record.clone());
            return Some(record);
        }
        None
    }
}

/// `name value` pairs of metrics, for logs.
pub fn format_metrics(scores: &BTreeMap<String, f64>) -> String {
    scores.iter().map(|(k, v)| format!("{k} {v:.4}")).collect::<Vec<_>>().join("  ")
}

/// A loaded training checkpoint.
pub struct TuneCheckpoint {
    /// Its directory.
    pub dir: PathBuf,
    /// The trainer state.
    pub state: TuneState,
    /// Optimizer moments.
    pub optimizer: HashMap<String, Tensor>,
}

impl TuneCheckpoint {
    /// An error when the run spent its `patience` (evaluations without improvement) here:
    /// resuming would train past its early stop. `next` says what to do instead.
    pub fn ensure_not_stopped_early(&self, patience: usize, next: &str) -> Result<()> {
        if patience == 0 || self.state.bad_evals < patience {
            return Ok(());
        }
        Err(Error::input(format!(
            "{} stopped early at step {} ({} evaluations without improvement, patience {patience}): the run is complete ({next})",
            self.dir.display(),
            self.state.step,
            self.state.bad_evals
        )))
    }
}

/// Loads a checkpoint directory, or the newest checkpoint of a run directory.
pub fn load_checkpoint(path: &Path) -> Result<TuneCheckpoint> {
    let (dir, state) = load_state(path)?;
    let opt_path = dir.join("optimizer.safetensors");
    if !opt_path.is_file() {
        return Err(Error::file(&opt_path, "missing: the checkpoint is incomplete"));
    }
    let optimizer = candle_core::safetensors::load(&opt_path, &Device::Cpu)
        .map_err(|e| Error::file(&opt_path, format!("unreadable ({e}); is it truncated?")))?;
    crate::model::checkpoint::ensure_all_finite(&optimizer, &opt_path)?;
    Ok(TuneCheckpoint { dir, state, optimizer })
}

/// The trainer state of a checkpoint directory, or of the newest checkpoint of a run directory,
/// and that checkpoint's directory.
pub fn load_state(path: &Path) -> Result<(PathBuf, TuneState)> {
    let dir = if path.join("trainer_state.json").is_file() {
        path.to_path_buf()
    } else {
        crate::train::checkpoint::latest(path)?.ok_or_else(|| {
            Error::file(path, "no checkpoint to resume: expected a run directory of `wenhui ptune`/`finetune` or one of its checkpoints")
        })?
    };
    let state_path = dir.join("trainer_state.json");
    let state: TuneState = serde_json::from_str(&read_text(&state_path)?)
        .map_err(|e| Error::file(&state_path, format!("not a ptune/finetune trainer state: {e}")))?;
    Ok((dir, state))
}

/// The model of a fine-tuning run: its variables and config.
pub type TunedModel<'a> = (&'a [(String, Var)], &'a ModelConfig);

/// Writes a model directory (weights, config, tokenizer).
fn write_model(dir: &Path, model: TunedModel<'_>, tok: &Tokenizer) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    save_tensors(&var_tensors(model.0), &dir.join("model.safetensors"))?;
    write_json(&dir.join("config.json"), &model.1.to_json())?;
    tok.save(dir)
}

/// Saves a resumable checkpoint under `out/checkpoints/step-N`, atomically.
pub fn save_checkpoint(
    out: &Path,
    st: &TuneState,
    optim: &AdamW,
    encoder: Option<&PromptEncoder>,
    tok: &Tokenizer,
    model: Option<TunedModel<'_>>,
    keep_last: usize,
) -> Result<PathBuf> {
    let state = optim.state_tensors()?;
    crate::train::checkpoint::refuse_non_finite(out, st.step, &[("optimizer state", &state)], "lower the learning rates")?;
    publish(out, st.step, keep_last, |tmp| {
        save_tensors(&state, &tmp.join("optimizer.safetensors"))?;
        if let Some(enc) = encoder {
            enc.save_state(&tmp.join("prompt"))?;
        }
        if let Some(m) = model {
            write_model(&tmp.join("model"), m, tok)?;
        }
        write_json(&tmp.join("trainer_state.json"), st)
    })
}

/// Writes the kept prompt (wenhui state + peft adapter), the task file, `best.json` and, for
/// fine-tuning, the model into `dir`, replacing its previous content only once the new one is
/// complete.
pub fn save_best(
    dir: &Path,
    encoder: Option<&PromptEncoder>,
    task: &ClozeTask,
    tok: &Tokenizer,
    record: &BestRecord,
    model: Option<TunedModel<'_>>,
) -> Result<()> {
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "best".into());
    let tmp = dir.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let fill = || -> Result<()> {
        if let Some(enc) = encoder {
            enc.save_state(&tmp)?;
            let meta = AdapterMeta {
                task_type: "CAUSAL_LM".into(),
                base_model_name_or_path: None,
                num_attention_heads: None,
                num_layers: None,
                reparameterization: Some(enc.config().kind),
            };
            enc.save_adapter(&tmp, &meta)?;
        }
        if let Some(m) = model {
            write_model(&tmp, m, tok)?;
        }
        let toml = toml::to_string(&task.spec).map_err(|e| Error::input(format!("task `{}`: {e}", task.spec.name)))?;
        let task_path = tmp.join("task.toml");
        std::fs::write(&task_path, toml).map_err(|e| Error::io(&task_path, e))?;
        write_json(&tmp.join("best.json"), record)
    };
    if let Err(e) = fill() {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    // Swap: the old copy moves aside first, so a crash leaves one complete directory.
    let old = dir.with_file_name(format!(".{name}.old-{}", std::process::id()));
    if dir.exists() {
        std::fs::rename(dir, &old).map_err(|e| Error::io(dir, e))?;
    }
    std::fs::rename(&tmp, dir).map_err(|e| Error::io(dir, e))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
    }
    Ok(())
}

/// Loads a prompt encoder from `dir`: wenhui's full state (`prompt_encoder.json`), a peft
/// adapter (`adapter_config.json`), or a `wenhui ptune` run directory (its `best/`).
pub fn load_prompt(dir: &Path, device: &Device) -> Result<PromptEncoder> {
    if dir.join(STATE_CONFIG).is_file() {
        PromptEncoder::load_state(dir, device)
    } else if dir.join(ADAPTER_CONFIG).is_file() {
        Ok(PromptEncoder::load_adapter(dir, device)?.0)
    } else if dir.join("best").join(STATE_CONFIG).is_file() {
        PromptEncoder::load_state(&dir.join("best"), device)
    } else {
        Err(Error::file(
            dir,
            format!("no prompt here: expected {STATE_CONFIG} (wenhui encoder state), {ADAPTER_CONFIG} (peft adapter) or a `wenhui ptune` run directory with best/"),
        ))
    }
}
