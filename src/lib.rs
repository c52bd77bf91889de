//! # wenhui — pretrain, then prompt
//!
//! A Rust toolkit for the GLM / P-tuning / inverse-prompting line of work:
//! exact GLM, GPT-2 and BERT backbones ([`model`]), the tokenizers they use ([`tokenizer`]),
//! and fused operations with backward passes for training ([`ops`]).
//!
//! ```no_run
//! use wenhui::model::{load_model, BackboneInput, LoadOptions};
//! let m = load_model("tests/fixtures/glm-tiny".as_ref(), &LoadOptions::default())?;
//! let ids = candle_core::Tensor::new(&[[103u32, 5, 6, 104, 100]], m.backbone.device())?;
//! let out = m.backbone.forward(&BackboneInput::ids(ids), None)?;
//! println!("{:?}", out.logits.dims());
//! # Ok::<(), wenhui::Error>(())
//! ```
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
