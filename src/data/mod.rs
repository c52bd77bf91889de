//! Data: corpora and token shards, and the GLM pretraining objectives.

pub mod corpus;
pub mod prepare;
