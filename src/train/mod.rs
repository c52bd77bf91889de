//! Training: the optimizer and schedules, checkpoints, the pretraining loop, metrics and plots.

pub mod checkpoint;
pub mod config;
pub mod eval;
pub mod export;
pub mod metrics;
pub mod optim;
pub mod plot;
pub mod pretrain;
pub mod seq2seq;
