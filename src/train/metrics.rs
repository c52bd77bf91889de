//! The metrics log: one JSON object per line (`metrics.jsonl`), appended as training goes.

use crate::{Error, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Refuses to start a new run in `dir` when a run is already there (its `metrics.jsonl` has
/// lines, or it holds checkpoints): starting afresh would drop that run's log and, as new
/// checkpoints are pruned, its checkpoints. Resuming goes through `--resume` instead.
pub fn ensure_new_run(dir: &Path) -> Result<()> {
    let log = dir.join("metrics.jsonl");
    let logged = std::fs::metadata(&log).is_ok_and(|m| m.len() > 0);
    let has_step = |d: &Path| {
        std::fs::read_dir(d).is_ok_and(|mut it| it.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("step-"))))
    };
    let checkpoints = has_step(dir) || has_step(&dir.join("checkpoints"));
    if checkpoints {
        return Err(Error::file(
            dir,
            format!(
                "already holds a training run with checkpoints: continue it (`pretrain --resume {0}`; `ptune`/`finetune -o {0} --resume`), or write the new run to another directory (or delete this one first)",
                dir.display()
            ),
        ));
    }
    if logged {
        return Err(Error::file(
            dir,
            "holds the metrics.jsonl of a run that saved no checkpoint (nothing to resume): delete it, or write the new run to another directory",
        ));
    }
    Ok(())
}

/// The directory of a run being started: created now, and removed again (or, when it was
/// there before, the `metrics.jsonl` this run began) if the run fails before its first step
/// completes, so that a run that fails to start leaves nothing behind and does not block the
/// next start. A resumed run's directory is never touched.
pub struct RunDir {
    dir: PathBuf,
    /// This run created the directory.
    made: bool,
    /// This run created its `metrics.jsonl`.
    made_log: bool,
    /// Other files this run created in a directory that was there before ([`RunDir::created`]).
    made_files: Vec<PathBuf>,
    started: bool,
}

impl RunDir {
    /// Creates `dir` (and its parents) for a run; `resumed` runs keep whatever happens.
    pub fn create(dir: &Path, resumed: bool) -> Result<Self> {
        let made = !resumed && !dir.exists();
        let made_log = !resumed && !dir.join("metrics.jsonl").exists();
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        Ok(Self { dir: dir.to_path_buf(), made, made_log, made_files: Vec::new(), started: resumed })
    }

    /// The run has written `name` (e.g. `split.json`) into its directory: it goes too if the run
    /// fails before its first step, so that it does not block the next start.
    pub fn created(&mut self, name: &str) {
        if !self.started {
            self.made_files.push(self.dir.join(name));
        }
    }

    /// The run has completed a step: from now on the directory stays, whatever happens.
    pub fn started(&mut self) {
        self.started = true;
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if self.started {
            return;
        }
        // Best effort: the error that ended the run is what the user needs to see.
        if self.made {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            if self.made_log {
                let _ = std::fs::remove_file(self.dir.join("metrics.jsonl"));
            }
            for f in &self.made_files {
                let _ = std::fs::remove_file(f);
            }
        }
    }
}

/// Appends metric lines to a JSONL file.
pub struct MetricsLog {
    path: PathBuf,
    file: std::fs::File,
}

impl MetricsLog {
    /// Opens `path` for appending. When resuming at `resume_step`, lines of later steps (written
    /// after that checkpoint by the interrupted run) are dropped first so the log stays consistent.
    pub fn open(path: &Path, resume_step: Option<u64>) -> Result<Self> {
        if let (Some(step), true) = (resume_step, path.is_file()) {
            let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
            let kept: Vec<&str> = text
                .lines()
                .filter(|l| {
                    serde_json::from_str::<serde_json::Value>(l)
                        .ok()
                        .and_then(|v| v.get("step").and_then(|s| s.as_u64()))
                        .is_some_and(|s| s <= step)
                })
                .collect();
            let tmp = path.with_extension("jsonl.tmp");
            std::fs::write(&tmp, kept.iter().map(|l| format!("{l}\n")).collect::<String>()).map_err(|e| Error::io(&tmp, e))?;
            std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
        } else if resume_step.is_none() && path.is_file() {
            std::fs::remove_file(path).map_err(|e| Error::io(path, e))?;
        }
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(|e| Error::io(path, e))?;
        Ok(Self { path: path.to_path_buf(), file })
    }

    /// Writes one line.
    pub fn write(&mut self, value: &serde_json::Value) -> Result<()> {
        writeln!(self.file, "{value}").map_err(|e| Error::io(&self.path, e))
    }
}
