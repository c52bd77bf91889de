//! Every task as a cloze: templates with input fields, pseudo tokens and an answer slot, compiled
//! for GLM, BERT and GPT-2; verbalizers; label probabilities; FewGLUE task files, readers and metrics.
//!
//! # Template language
//!
//! ```text
//! template := item*
//! item     := text | "{" name "}" | "[P]" | "[P*" n "]" | "[MASK]"
//! ```
//!
//! * `{name}` — an input field; the name must be one of the task's declared `fields`.
//! * `[P]`, `[P*n]` — one or `n ≥ 1` pseudo tokens (continuous-prompt positions). They compile to
//!   a placeholder id whose rows a prompt encoder's vectors replace
//!   ([`embeddings_with_prompt`]); without a prompt they are dropped ([`Template::without_pseudo`]).
//! * `[MASK]` — the answer slot, exactly once.
//! * anything else is literal anchor text (`{{` and `}}` write literal braces; other bracketed
//!   text such as `[SEP]` is literal too).
//!
//! Whitespace separates items: each item is tokenized on its own, with one leading space when
//! whitespace preceded it in the template (byte-level BPE tells `" Yes"` from `"Yes"`); the
//! verbalizer words get a leading space when whitespace precedes `[MASK]`.
//!
//! Example: `"[P*3] {premise} [P*3] Question: {hypothesis} ? [P] Answer: [MASK] ."`.
//!
//! # Compilation
//!
//! [`compile`] lays a template out per backbone (GLM: `[CLS] … [MASK] … [eos]` + `[sop]`, the
//! answer read at the sop row with 2D positions; BERT: `[CLS] … [MASK] … [SEP]`; GPT-2: the prompt
//! up to the slot, the answer being the next token). Fields are truncated longest-first from
//! their end so that anchors, pseudo tokens and the slot always survive.
//!
//! # Tasks
//!
//! A task is a TOML file ([`ClozeTask`]; see [`task`] for the format). The FewGLUE
//! tasks ship under `assets/cloze/` with P-tuning's official patterns ([`ClozeTask::builtin`]);
//! [`read_jsonl`] turns SuperGLUE lines into examples and [`metrics`] scores predictions.

mod batch;
mod classify;
mod compile;
pub mod fewglue;
mod loss;
pub mod metrics;
pub mod referent;
mod score;
pub mod task;
mod template;

pub use batch::{build_input, embeddings_with_prompt};
pub use classify::{classify, classify_batch, classify_with, compile_options, evaluate, single_token_ids, ClassifyOptions, Prediction};
pub use compile::{compile, Cloze, CompileOptions};
pub use fewglue::{parse_jsonl, read_jsonl, Example, Reader};
pub use loss::{batch_loss, gold_indices};
pub use score::{answer_scores, label_logits};
pub use task::{AnswerKind, ClozeTask, LabelWords, TaskSpec, TrainHints};
pub use template::{Part, Segment, Template, MAX_PSEUDO};
