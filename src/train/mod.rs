//! Training: the optimizer and schedules, checkpoints, the pretraining loop.

pub mod checkpoint;
pub mod config;
pub mod metrics;
pub mod optim;
pub mod pretrain;
