//! Evaluation: task-level metrics over generated text, and LAMA knowledge probing ([`lama`]).

pub mod lama;
pub mod lm;
pub mod poems;
pub mod rouge;
pub mod seq2seq;
pub mod squad;
pub mod turing;
