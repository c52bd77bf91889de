//! Data: corpora and token shards, GLM's blank-infilling objectives and the masked / causal LM ones.
//!
//! [`reader`] turns text and JSONL files into documents, [`prepare`](prepare::prepare) tokenizes them and
//! [`writer`] stores them as a memory-mapped [`corpus::TokenCorpus`].

pub mod blank;
pub mod corpus;
pub mod lm;
pub mod prepare;
pub mod problems;
pub mod reader;
pub mod seq2seq;
pub mod split;
pub mod stream;
pub mod template;
pub mod writer;
