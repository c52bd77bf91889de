//! Training utilities: plotting the trainer's metrics.

pub mod plot;
