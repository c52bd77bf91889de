//! `generate` with a GLM fine-tuned or P-tuned by `finetune`/`ptune --task seq2seq`: the prompt
//! is the source, laid out with the template the model was trained with (read from its
//! directory), and a P-tuned model's continuous prompt fills the template's `[P]` slots. Without
//! this, such a model would read `[CLS] prompt [gMASK]`, a layout it was never trained on.

use std::path::Path;
use wenhui::eval::seq2seq::SavedSeq2seq;
use wenhui::model::Backbone;
use wenhui::tokenizer::Tokenizer;
use wenhui::train::seq2seq::LAYOUT_FILE;

/// The layout (and prompt) saved in `dir`, said on stderr at info level; `None` when there is none.
pub(super) fn load(dir: &Path, tokenizer: &Tokenizer, model: &dyn Backbone) -> anyhow::Result<Option<SavedSeq2seq>> {
    let saved = SavedSeq2seq::load(dir, tokenizer, model)?;
    if let Some(s) = &saved {
        tracing::info!(
            "{}: the prompt is read as the source of the seq2seq template {:?}{} (--no-layout reads it as plain GLM text)",
            dir.join(LAYOUT_FILE).display(),
            s.layout.cfg.template,
            if s.prompt.is_some() { " with its P-tuned prompt" } else { "" }
        );
    }
    Ok(saved)
}
