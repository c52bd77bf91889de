//! Where the prompt encoder's table `embedding.weight` starts (`--prompt-init`): PyTorch's
//! N(0, 1) (the official P-tuning code), the backbone's word embeddings of random words mixed with
//! the task's label words (THUDM/GLM's `--prompt-init`), or the word embeddings of a text's tokens
//! (peft's `prompt_tuning_init = TEXT`).
//!
//! For the LSTM and MLP encoders the table is the encoder's *input*: the prompt the backbone reads
//! is the encoder's output of these rows, as in THUDM/GLM, where `PromptSpell.init_embedding`
//! fills `spell_embeddings` in front of its LSTM/MLP head. For the `embedding` encoder the rows
//! are the prompt itself.

use std::collections::HashSet;

use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::PromptEncoder;
use crate::cloze::{single_token_ids, AnswerKind, ClozeTask};
use crate::model::Backbone;
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

/// How the prompt encoder's table `embedding.weight` starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PromptInit {
    /// N(0, 1) from the run's seed (PyTorch's `nn.Embedding` default, as the official P-tuning code).
    #[default]
    Random,
    /// THUDM/GLM's `--prompt-init` (`model/prompt.py` `PromptSpell.init_embedding`): row `i` is
    /// `r·E[w] + (1 − r)·E[t]`, with `w` a word id drawn below [`VOCAB_INIT_WORDS`] (special tokens
    /// left out), `t` drawn from the task's label-word tokens ([`label_word_ids`]) and `r`
    /// uniform in [0, 1), all from the run's seed; a task without fixed label words gets `E[w]`.
    Vocab,
    /// peft's `prompt_tuning_init = TEXT`: the embeddings of a text's tokens (no special tokens),
    /// repeated cyclically or cut to the number of rows.
    Text,
}

impl PromptInit {
    /// The flag value (`random`, `vocab`, `text`).
    pub fn name(self) -> &'static str {
        match self {
            PromptInit::Random => "random",
            PromptInit::Vocab => "vocab",
            PromptInit::Text => "text",
        }
    }
}

/// `vocab` draws its words from the ids below this (THUDM/GLM's `num_words = 5000`: the most
/// frequent words in a frequency-ordered vocabulary).
pub const VOCAB_INIT_WORDS: usize = 5000;

/// Mixed into the run's seed so that the `vocab` draws are a stream of their own.
const VOCAB_SEED_SALT: u64 = 0x5EED_1217_D0CA_B0A5;

/// The ids `vocab` draws from: below `min(5000, model_vocab)`, with a token in `tok`, and no
/// special token (GLM's command tokens, `[CLS]`/`[UNK]`/`<|endoftext|>` and every other added
/// token marked special).
pub fn vocab_candidates(tok: &Tokenizer, model_vocab: usize) -> Vec<u32> {
    let limit = VOCAB_INIT_WORDS.min(model_vocab).min(tok.vocab_size(true));
    let special: HashSet<u32> = tok
        .special
        .iter()
        .map(|(_, id)| id)
        .chain(tok.inner().get_added_tokens_decoder().iter().filter(|(_, t)| t.special).map(|(id, _)| *id))
        .collect();
    (0..limit as u32).filter(|id| !special.contains(id) && tok.id_to_token(*id).is_some()).collect()
}

/// The task's label-word tokens (THUDM/GLM's `task_tokens`): every token of each label's first
/// verbalizer word, in label order. Single-token answers take the id the answer slot scores
/// (with the template's space before it); multi-token answers take the word's tokens, unknown
/// ones left out. Words naming a field (`{choice1}`) are per example and give none.
pub fn label_word_ids(task: &ClozeTask, tok: &Tokenizer) -> Result<Vec<u32>> {
    match task.spec.answer {
        AnswerKind::Single => Ok(single_token_ids(task, &task.template, tok)?.into_iter().filter_map(|ids| ids.first().copied()).collect()),
        AnswerKind::Multi => {
            let space = task.template.space_before_mask();
            let mut ids = Vec::new();
            for word in task.spec.verbalizer.iter().filter_map(|lw| lw.words.first()).filter(|w| !w.contains('{')) {
                let text = if space { format!(" {}", word.trim()) } else { word.trim().to_string() };
                ids.extend(tok.encode(&text, false)?.into_iter().filter(|&id| Some(id) != tok.special.unk));
            }
            Ok(ids)
        }
    }
}

/// The token ids of `text` (no special tokens added; command tokens written in it left out),
/// repeated cyclically or cut to `rows`. An empty text, one that holds no token, or one of which
/// the tokenizer knows nothing is an error; unknown pieces among known ones are named in a warning.
pub fn text_ids(tok: &Tokenizer, text: &str, rows: usize) -> Result<Vec<u32>> {
    if text.trim().is_empty() {
        return Err(Error::input("--prompt-init-text is empty: give the words the prompt should start from"));
    }
    if let Some(refusal) = crate::generate::blank::unknown_text(tok, text)?.warn_or_refusal("--prompt-init-text") {
        return Err(Error::input(refusal));
    }
    let commands: HashSet<u32> = tok.special.iter().map(|(_, id)| id).filter(|&id| Some(id) != tok.special.unk).collect();
    let ids: Vec<u32> = tok.encode(text, false)?.into_iter().filter(|id| !commands.contains(id)).collect();
    if ids.is_empty() {
        return Err(Error::input(format!("--prompt-init-text `{text}` holds no word token, only command tokens")));
    }
    Ok((0..rows).map(|i| ids[i % ids.len()]).collect())
}

/// The word embeddings of `ids` as host rows.
fn embed_rows(model: &dyn Backbone, ids: &[u32]) -> Result<Vec<Vec<f32>>> {
    let t = Tensor::new(ids, model.device())?.unsqueeze(0)?;
    Ok(model.embed(&t)?.squeeze(0)?.detach().to_dtype(DType::F32)?.to_device(&Device::Cpu)?.to_vec2::<f32>()?)
}

/// The `vocab` rows: see [`PromptInit::Vocab`].
fn vocab_rows(model: &dyn Backbone, tok: &Tokenizer, task: &ClozeTask, rows: usize, seed: u64) -> Result<Vec<Vec<f32>>> {
    let words = vocab_candidates(tok, model.info().vocab_size);
    if words.is_empty() {
        return Err(Error::input(format!(
            "--prompt-init vocab: no word among the first {} ids of the tokenizer and model (all special)",
            VOCAB_INIT_WORDS.min(model.info().vocab_size)
        )));
    }
    let labels = label_word_ids(task, tok)?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ VOCAB_SEED_SALT);
    // Per row, in THUDM/GLM's order: the word, the label token, the ratio.
    let draws: Vec<(u32, Option<(u32, f32)>)> = (0..rows)
        .map(|_| {
            let w = words[rng.random_range(0..words.len())];
            let mix = (!labels.is_empty()).then(|| (labels[rng.random_range(0..labels.len())], rng.random::<f32>()));
            (w, mix)
        })
        .collect();
    let word_rows = embed_rows(model, &draws.iter().map(|d| d.0).collect::<Vec<_>>())?;
    if labels.is_empty() {
        return Ok(word_rows);
    }
    let label_rows = embed_rows(model, &draws.iter().map(|d| d.1.map_or(0, |m| m.0)).collect::<Vec<_>>())?;
    Ok(word_rows
        .into_iter()
        .zip(label_rows)
        .zip(&draws)
        .map(|((w, t), d)| {
            let r = d.1.map_or(1.0, |m| m.1);
            w.iter().zip(&t).map(|(a, b)| a * r + b * (1.0 - r)).collect()
        })
        .collect())
}

/// The starting table `[rows, D]` for `init` (`None` for [`PromptInit::Random`], which keeps the
/// seeded N(0, 1) table): word embeddings of `model`, words drawn with `seed`.
pub fn initial_table(
    init: PromptInit,
    text: Option<&str>,
    model: &dyn Backbone,
    tok: &Tokenizer,
    task: &ClozeTask,
    rows: usize,
    seed: u64,
) -> Result<Option<Tensor>> {
    let values = match init {
        PromptInit::Random => return Ok(None),
        PromptInit::Vocab => vocab_rows(model, tok, task, rows, seed)?,
        PromptInit::Text => {
            let text = text.ok_or_else(|| Error::input("--prompt-init text needs --prompt-init-text TEXT"))?;
            embed_rows(model, &text_ids(tok, text, rows)?)?
        }
    };
    let width = model.info().hidden_size;
    Ok(Some(Tensor::from_vec(values.concat(), (rows, width), &Device::Cpu)?))
}

/// `enc` with its table `embedding.weight` replaced by `table` (`[rows, D]`, moved to the
/// encoder's device and dtype); every other parameter is kept.
pub fn with_embedding(enc: &PromptEncoder, table: &Tensor) -> Result<PromptEncoder> {
    let old = enc.embedding();
    if table.dims() != old.dims() {
        return Err(Error::input(format!(
            "prompt init: a table of shape {:?} for an encoder table of shape {:?}",
            table.dims(),
            old.dims()
        )));
    }
    let table = table.to_dtype(old.dtype())?.to_device(old.device())?;
    let tensors =
        enc.named_tensors().iter().map(|(n, t)| (n.clone(), if n == "embedding.weight" { table.clone() } else { t.clone() })).collect();
    PromptEncoder::with_config(enc.config(), tensors, std::path::Path::new("<prompt-init>"))
}
