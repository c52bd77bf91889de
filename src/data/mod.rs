//! Data: corpora and token shards, and the GLM pretraining objectives.

pub mod blank;
pub mod corpus;
pub mod prepare;
pub mod stream;
