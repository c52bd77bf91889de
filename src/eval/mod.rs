//! Evaluation: task-level metrics over generated text.

pub mod poems;
pub mod rouge;
