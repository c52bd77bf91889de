//! `generate` with a GLM fine-tuned or P-tuned by `finetune`/`ptune --task seq2seq`: the prompt
//! is the source, laid out with the template the model was trained with (read from its
//! directory), and a P-tuned model's continuous prompt fills the template's `[P]` slots. Without
//! this, such a model would read `[CLS] prompt [gMASK]`, a layout it was never trained on.

use anyhow::Context;
use candle_core::Tensor;
use std::path::Path;
use wenhui::data::seq2seq::Seq2seqLayout;
use wenhui::model::{Backbone, ModelKind};
use wenhui::ptuning::seq2seq::load_prompt;
use wenhui::tokenizer::Tokenizer;
use wenhui::train::seq2seq::{SavedLayout, LAYOUT_FILE};

/// How a seq2seq model reads its prompts.
pub(super) struct Seq2seqMode {
    /// The layout the model was trained with.
    pub(super) layout: Seq2seqLayout,
    /// The P-tuned prompt of a template with `[P]` tokens.
    pub(super) prompt: Option<Tensor>,
}

impl Seq2seqMode {
    /// The layout saved in `dir` ([`LAYOUT_FILE`]) with its prompt, when there is one and `model`
    /// is a GLM; `None` otherwise.
    pub(super) fn load(dir: &Path, tokenizer: &Tokenizer, model: &dyn Backbone) -> anyhow::Result<Option<Self>> {
        if model.info().kind != ModelKind::Glm {
            return Ok(None);
        }
        let Some(saved) = SavedLayout::read(dir)? else { return Ok(None) };
        let info = model.info();
        let layout = Seq2seqLayout::new(tokenizer, saved.layout, info.max_positions)
            .with_context(|| format!("the seq2seq layout in {}", dir.join(LAYOUT_FILE).display()))?;
        let prompt = load_prompt(dir, layout.num_pseudo(), info.hidden_size, model.device())?;
        tracing::info!(
            "{}: the prompt is read as the source of the seq2seq template {:?}{} (--no-layout reads it as plain GLM text)",
            dir.join(LAYOUT_FILE).display(),
            layout.cfg.template,
            if prompt.is_some() { " with its P-tuned prompt" } else { "" }
        );
        Ok(Some(Self { layout, prompt }))
    }

    /// The stop tokens of a target: `[eop]` and the tokenizer's end of text.
    pub(super) fn stops(&self, tokenizer: &Tokenizer) -> Vec<u32> {
        std::iter::once(self.layout.tokens.eop).chain(tokenizer.special.eos).collect()
    }
}
