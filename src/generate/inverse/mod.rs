//! Inverse prompting (Zou et al., KDD 2021; THUDM/GLM-iprompt): controllable generation where
//! candidate units are re-ranked by how well the same model, reading the generated text, predicts
//! the prompt back.
//!
//! * [`Task`]: a declarative TOML template — fields, forward prompt, GLM-native or causal inverse,
//!   units, score weights, search sizes ([`Task::builtin`] ships `poem` and `answer`).
//! * [`Context`]: the model and tokenizer; prompt layout for GLM (Part B generation after
//!   `[gMASK]`) and left-to-right models; inverse scores of many windows in one padded batch.
//! * [`UnitRules`]: the task's hard filter and soft format score ([`PoemRules`], [`PlainRules`]).
//! * [`generate_inverse`]: the beam search over units, with optional refinement.
//!
//! ```no_run
//! use std::collections::BTreeMap;
//! use wenhui::generate::inverse::{generate_inverse, Context, InverseOptions, PoemRules, Task};
//! use wenhui::generate::poetry::Constraints;
//! use wenhui::model::{load_model, LoadOptions};
//! let dir = wenhui::embedded::poetry_model_dir()?;
//! let model = load_model(&dir, &LoadOptions::default())?.backbone;
//! let tokenizer = wenhui::tokenizer::Tokenizer::from_dir(&dir)?;
//! let task = Task::builtin("poem")?;
//! let fields = task.fields(&BTreeMap::from([("title".to_string(), "虹桥机场".to_string())]))?;
//! let mut rules = PoemRules::new(Constraints::parse("五绝", "pingshui", "")?);
//! let cx = Context::new(model.as_ref(), &tokenizer)?;
//! let out = generate_inverse(&cx, &task, &fields, &mut rules, &InverseOptions::default(), None)?;
//! println!("{}", out.text);
//! # Ok::<(), wenhui::Error>(())
//! ```

mod context;
mod refine;
mod rules;
mod sampler;
mod scorer;
mod search;
mod template;

pub use context::{char_token, keyword_tokens, Context, Prepared};
pub use rules::{PlainRules, PoemRules, UnitRules};
pub use sampler::{sample_units, Candidate, NextTokens, SampleSpec};
pub use scorer::{causal_logprobs, span_logprobs, Emphasis, SpanRow};
pub use search::{generate_inverse, window, Cancel, ExplainRow, ExplainStep, InverseOptions, InverseResult, UnitHook, UnitScore};
pub use template::{placeholders, render, Forward, Inverse, InverseMode, ScoreWeights, SearchConfig, Task, Units, Window};
