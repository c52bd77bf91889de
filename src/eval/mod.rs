//! Evaluation: task-level metrics over generated text, and LAMA knowledge probing ([`lama`]).

pub mod lama;
pub mod poems;
