//! A pretraining run's length in epochs (`epochs = 2.5`, `--epochs 2.5`): passes over its training
//! documents, turned into optimizer steps before the first step by counting the batches of one
//! epoch (a dry pass of the run's own data stream, without the model).
//!
//! The count is that of epoch 0: the stream packs every epoch's documents in another order, so a
//! later epoch may take a few batches more or fewer, and `epochs = 2` ends near 2.0, not exactly
//! there. The `epoch` of `metrics.jsonl` (and the summary's `epochs`) says where the run really is.
//! The steps are counted once, when the run starts, and saved with its configuration: a resumed
//! run keeps them (it does not count again).

use super::checkpoint::Checkpoint;
use super::config::PretrainConfig;
use crate::data::blank::ObjectiveTokens;
use crate::data::stream::{BatchStream, Cursor, Documents, StreamConfig};
use crate::{Error, Result};
use std::collections::HashSet;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How often the count says how far it is, when progress is on and it takes that long.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// The batches a stream of `cfg` over the documents `ids` of `docs` makes, from a fresh cursor,
/// until its cursor enters epoch 1: the batch that takes the last document of epoch 0 counts
/// (with packing its last samples already hold documents of epoch 1). The stream is the run's
/// own, batches as the trainer gets them (token lists, no tensors) and no model; the
/// objective does not change which documents a batch takes, only what it masks.
///
/// With `progress`, a count that takes more than a few seconds (a large corpus) says on stderr
/// how far it is. `stop` (Ctrl-C) ends it with an error.
pub fn batches_per_epoch(
    docs: &dyn Documents,
    ids: &[usize],
    cfg: &StreamConfig,
    tokens: ObjectiveTokens,
    ends: &HashSet<u32>,
    progress: bool,
    stop: Option<&AtomicBool>,
) -> Result<u64> {
    let mut stream = BatchStream::new(docs, ids.to_vec(), cfg.clone(), tokens, ends.clone(), Cursor::default())?;
    let (start, mut said) = (Instant::now(), Instant::now());
    let mut batches = 0u64;
    let mut shown = false;
    while stream.cursor().epoch == 0 {
        stream.next_batch()?;
        batches += 1;
        if stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
            return Err(Error::input(
                "interrupted while counting the batches of one epoch (for `epochs`): nothing was saved; start the run again",
            ));
        }
        if progress && said.elapsed() >= PROGRESS_EVERY {
            said = Instant::now();
            shown = true;
            let share = 100.0 * stream.cursor().index as f64 / ids.len().max(1) as f64;
            line(&format!(
                "counting the batches of one epoch (for `epochs`): {share:.0}% of the {} training documents, {batches} batches so far",
                ids.len()
            ));
        }
    }
    if shown {
        line(&format!("counted {batches} batches in one epoch in {:.0} s", start.elapsed().as_secs_f64()));
    }
    Ok(batches)
}

/// The optimizer steps of `epochs` passes of `batches_per_epoch` batches, `accumulate` of them a
/// step: `ceil(epochs × batches_per_epoch / accumulate)`, at least 1. A product that is a whole
/// number but for floating-point noise (0.3 × 10) is that number, not one more.
pub fn steps_for_epochs(epochs: f64, batches_per_epoch: u64, accumulate: usize) -> u64 {
    let x = epochs * batches_per_epoch as f64 / accumulate.max(1) as f64;
    let whole = x.round();
    let steps = if (x - whole).abs() <= 1e-9 * x.max(1.0) { whole } else { x.ceil() };
    // A float beyond u64 saturates (the configuration bounds `epochs` far below that).
    (steps as u64).max(1)
}

/// A new run with `epochs` set: its `steps`, counted over the training documents `ids` with the
/// run's stream settings (see [`batches_per_epoch`]). Without `epochs`, or for a resumed run
/// (`opts.resume`: it keeps its steps, [`resumed_steps`]), the configuration stays as it is.
pub(crate) fn resolve_steps(
    cfg: &mut PretrainConfig,
    docs: &dyn Documents,
    ids: &[usize],
    stream_cfg: &StreamConfig,
    tokens: ObjectiveTokens,
    ends: &HashSet<u32>,
    opts: &super::pretrain::RunOptions,
) -> Result<()> {
    let Some(epochs) = cfg.epochs.filter(|_| opts.resume.is_none()) else { return Ok(()) };
    let batches = batches_per_epoch(docs, ids, stream_cfg, tokens, ends, opts.progress, opts.stop.as_deref())?;
    cfg.steps = steps_for_epochs(epochs, batches, cfg.accumulate);
    Ok(())
}

/// A resumed run with `epochs` set: the steps its checkpoint saved, when the run was started with
/// the same `epochs` (the command that started it, with `--resume` added). Other epochs, or
/// epochs for a run started with `steps`, are refused: the steps are counted when a run starts;
/// a resumed run changes its length by `steps`.
pub(crate) fn resumed_steps(cfg: &mut PretrainConfig, ck: &Checkpoint) -> Result<()> {
    let Some(epochs) = cfg.epochs else { return Ok(()) };
    let saved = &ck.state.config;
    let saved_steps = saved.get("steps").and_then(|v| v.as_u64());
    let started = match (saved.get("epochs").and_then(|v| v.as_f64()), saved_steps) {
        (Some(e), Some(n)) if e == epochs => {
            cfg.steps = n;
            return Ok(());
        }
        (Some(e), Some(n)) => {
            let guess = steps_for_epochs(epochs / e, n, 1);
            format!("with epochs {e} ({n} steps): for {epochs} epochs pass steps (--steps) instead, about {guess}")
        }
        (None, Some(n)) => format!("with steps {n}: to change its length, pass steps (--steps) instead"),
        _ => "without a step count".to_string(),
    };
    Err(Error::input(format!(
        "epochs {epochs}: the run of {} was started {started}; a run counts the batches of an epoch once, when it starts, \
         and a resumed run keeps that step count (drop epochs to continue it as it is)",
        ck.dir.display()
    )))
}

/// A line on stderr; a failed write (a closed pipe) is ignored.
fn line(msg: &str) {
    let _ = writeln!(std::io::stderr(), "{msg}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_round_up_but_not_for_float_noise() {
        assert_eq!(steps_for_epochs(1.0, 411, 1), 411);
        assert_eq!(steps_for_epochs(2.0, 411, 4), 206);
        assert_eq!(steps_for_epochs(0.3, 10, 1), 3);
        assert_eq!(steps_for_epochs(0.35, 10, 1), 4);
        assert_eq!(steps_for_epochs(0.001, 10, 1), 1);
        assert_eq!(steps_for_epochs(1e30, 10, 1), u64::MAX);
    }
}
