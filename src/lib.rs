//! # wenhui — pretrain, then prompt
//!
//! A Rust toolkit for the GLM / P-tuning / inverse-prompting line of work:
//! exact GLM, GPT-2 and BERT backbones ([`model`]), the tokenizers they use ([`tokenizer`]),
//! and fused operations with backward passes for training ([`ops`]).
//!
//! ```no_run
//! use wenhui::model::{load_model, BackboneInput, LoadOptions};
//! let m = load_model("tests/fixtures/glm-tiny".as_ref(), &LoadOptions::default())?;
//! let ids = wenhui::candle_core::Tensor::new(&[[103u32, 5, 6, 104, 100]], m.backbone.device())?;
//! let out = m.backbone.forward(&BackboneInput::ids(ids), None)?;
//! println!("{:?}", out.logits.dims());
//! # Ok::<(), wenhui::Error>(())
//! ```
//!
//! The crates whose types the API takes and returns are re-exported: [`candle_core`] (tensors,
//! devices), [`candle_nn`] (`VarMap`, `VarBuilder`) and [`tokenizers`] (what
//! [`tokenizer::Tokenizer::inner`] and [`tokenizer::Tokenizer::encode_full`] expose). Use them
//! through `wenhui::candle_core` and so on, and their versions always match the library's.
#![warn(missing_docs)]

pub mod bench;
pub mod cloze;
pub mod data;
pub mod device;
pub mod embedded;
pub mod error;
pub mod eval;
pub mod generate;
pub mod model;
pub mod ops;
pub mod ptuning;
pub mod serve;
pub mod tokenizer;
pub mod train;

pub use error::{Error, Result};

/// The tensor library wenhui is built on, at the version it uses (`Tensor`, `Device`, `DType`, …).
pub use candle_core;
/// candle's neural-network crate, at the version wenhui uses (`VarMap`, `VarBuilder`, …).
pub use candle_nn;
/// Hugging Face `tokenizers`, at the version wenhui uses: the types of
/// [`tokenizer::Tokenizer::inner`], [`tokenizer::Tokenizer::from_tokenizer`] and
/// [`tokenizer::Tokenizer::encode_full`].
pub use tokenizers;
