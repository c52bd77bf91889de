//! Training: the optimizer and schedules, checkpoints, the pretraining loop, metrics and plots.

pub mod checkpoint;
pub mod config;
pub mod epochs;
pub mod eval;
pub mod export;
pub mod metrics;
pub mod optim;
pub mod plot;
pub mod pretrain;
pub mod progress;
pub mod seq2seq;
pub mod setup;

/// The largest training or evaluation batch of the fine-tuning commands (ptune, finetune,
/// seq2seq), in examples: their data sets are small, and a larger batch could only exhaust the
/// memory.
pub const MAX_BATCH: usize = 4096;
