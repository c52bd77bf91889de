//! `wenhui eval ppl`: the loss and perplexity of a model on a prepared token corpus, every
//! document held out. A GLM is scored on blank infilling with the pretraining code's own batches
//! and loss ([`super::pretrain::eval_stream`], [`super::pretrain::blank_infilling_loss`]); a
//! GPT-2 on next-token prediction over the documents joined by `eos`.

use super::pretrain::{blank_infilling_loss, eval_stream, EvalLoss};
use crate::data::blank::{ObjectiveConfig, ObjectiveTokens};
use crate::data::corpus::TokenCorpus;
use crate::data::stream::{sentence_end_ids, Documents, StreamConfig};
use crate::model::{Attention, Backbone, BackboneInput, ModelKind};
use crate::{Error, Result};
use candle_core::{DType, Tensor};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::path::Path;

/// How to evaluate.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EvalOptions {
    /// Blank-infilling objective preset: `glm-10b`, `glm-large` or `default` (GLM only); with
    /// [`EvalOptions::objectives`] only its name in the report.
    pub objective: String,
    /// The full blank-infilling objective, in place of the preset's (e.g. a run's preset with its
    /// overrides, [`crate::train::config::PretrainConfig::objectives`]). `None`: the preset's.
    pub objectives: Option<ObjectiveConfig>,
    /// Text tokens per sample; `None` = the model's positions, at most 512.
    pub seq_len: Option<usize>,
    /// Samples per batch.
    pub batch_size: usize,
    /// Batches to evaluate.
    pub batches: usize,
    /// Seed of document order and (GLM) span draws: the same seed gives the same loss.
    pub seed: u64,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self { objective: "glm-10b".into(), objectives: None, seq_len: None, batch_size: 8, batches: 16, seed: 0 }
    }
}

/// The result of [`corpus_perplexity`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct EvalReport {
    /// `blank-infilling` (GLM) or `causal-lm` (GPT-2).
    pub mode: &'static str,
    /// The objective preset (blank infilling) or `next-token`.
    pub objective: String,
    /// The blank-infilling objective scored, as evaluation measures it (no `[dBLOCK]` noise, no
    /// short batches); `None` for next-token scoring.
    pub objectives: Option<ObjectiveConfig>,
    /// Mean cross-entropy per predicted token, nats.
    pub loss: f64,
    /// exp(loss).
    pub ppl: f64,
    /// Predicted tokens the loss is over.
    pub tokens: usize,
    /// Documents in the corpus (all held out).
    pub documents: usize,
    /// Documents scored (at least in part); every document at most once.
    pub documents_covered: usize,
    /// Batches actually evaluated: fewer than requested when one pass over the corpus takes fewer
    /// (documents are never scored twice over).
    pub batches: usize,
    /// Batches requested (`--batches`).
    pub batches_requested: usize,
    /// Text tokens per sample.
    pub seq_len: usize,
    /// The seed.
    pub seed: u64,
}

/// Loss and perplexity of `model` on the token corpus in `corpus_dir` (made by `wenhui data
/// prepare`); every document counts as held out. At most `o.batches` batches and at most one pass
/// over the documents: on a small corpus fewer batches run ([`EvalReport::batches`]) rather than
/// scoring the same documents again.
pub fn corpus_perplexity(model: &dyn Backbone, corpus_dir: &Path, o: &EvalOptions) -> Result<EvalReport> {
    if o.batch_size == 0 || o.batches == 0 {
        return Err(Error::input("eval: --batch-size and --batches must be positive"));
    }
    let corpus = TokenCorpus::open(corpus_dir)?;
    let info = model.info();
    let seq_len = o.seq_len.unwrap_or(info.max_positions.min(512));
    if seq_len > info.max_positions || seq_len < 4 {
        return Err(Error::input(format!("eval: --seq-len {seq_len} must be between 4 and the model's {} positions", info.max_positions)));
    }
    // Activations and logits of one batch (forward only): refused up front rather than
    // exhausting the memory.
    let batch_bytes = 4.0 * o.batch_size as f64 * seq_len as f64 * (24.0 * info.hidden_size as f64 + info.vocab_size as f64);
    crate::device::ensure_fits(&crate::device::default_device(), batch_bytes, "one evaluation batch", "lower --batch-size or --seq-len")?;
    let tokenizer = corpus.tokenizer()?;
    let used = tokenizer.vocab_size(true);
    if used > info.vocab_size {
        return Err(Error::file(
            corpus_dir,
            format!(
                "the corpus tokenizer has {used} tokens but the model only {}; evaluate on a corpus prepared with the model's tokenizer",
                info.vocab_size
            ),
        ));
    }
    let ids: Vec<usize> = (0..corpus.num_docs()).collect();
    let (mode, objective, objectives, e) = match info.kind {
        ModelKind::Glm => {
            let tokens = ObjectiveTokens::from_special(&tokenizer.special)?;
            let objectives = match &o.objectives {
                Some(c) => {
                    c.validate()?;
                    c.clone()
                }
                None => ObjectiveConfig::preset(&o.objective)?,
            };
            // The loss of the objective itself: `eval_stream` leaves out the training-time
            // augmentations, as it does for the trainer's validation.
            let stream_cfg =
                StreamConfig { seq_len, batch_size: o.batch_size, pack: true, seed: o.seed, objectives, lm: Default::default() };
            let mut stream = eval_stream(&corpus, &ids, &stream_cfg, tokens, &sentence_end_ids(&tokenizer))?;
            // One pass at most: a batch that completes the pass over the documents is the last, so no
            // document is scored twice over (the perplexity stays an average over distinct text).
            let (mut sum, mut count, mut run) = (0.0, 0usize, 0usize);
            while run < o.batches {
                let e = blank_infilling_loss(model, &mut stream, 1)?;
                run += 1;
                if e.tokens > 0 {
                    sum += e.loss * e.tokens as f64;
                    count += e.tokens;
                }
                if stream.cursor().epoch > 0 {
                    break;
                }
            }
            let c = stream.cursor();
            let covered = if c.epoch > 0 { ids.len() } else { (c.index + usize::from(c.offset > 0)).min(ids.len()) };
            let e = EvalLoss { loss: if count > 0 { sum / count as f64 } else { f64::NAN }, tokens: count };
            ("blank-infilling", o.objective.clone(), Some(stream_cfg.objectives.for_evaluation()), (e, run, covered))
        }
        ModelKind::Gpt2 => {
            let eos = tokenizer.special.eos;
            ("causal-lm", "next-token".to_string(), None, causal_loss(model, &corpus, ids, eos, seq_len, o)?)
        }
        ModelKind::Bert => return Err(Error::input("eval ppl needs a GLM (blank infilling) or a GPT-2 (next-token); this is a BERT")),
    };
    let (e, batches, documents_covered) = e;
    if e.tokens == 0 {
        return Err(Error::file(corpus_dir, "no tokens to score: the corpus is too small for one sample"));
    }
    Ok(EvalReport {
        mode,
        objective,
        objectives,
        loss: e.loss,
        ppl: e.loss.exp(),
        tokens: e.tokens,
        documents: corpus.num_docs(),
        documents_covered,
        batches,
        batches_requested: o.batches,
        seq_len,
        seed: o.seed,
    })
}

/// Next-token loss over windows of `seq_len + 1` tokens cut from the documents (seeded order,
/// joined by `eos`), `batches × batch_size` windows at most, each document at most once. Also
/// returns the batches run and the documents covered.
fn causal_loss(
    model: &dyn Backbone,
    docs: &dyn Documents,
    mut ids: Vec<usize>,
    eos: Option<u32>,
    seq_len: usize,
    o: &EvalOptions,
) -> Result<(EvalLoss, usize, usize)> {
    ids.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(o.seed));
    let want = o.batches * o.batch_size * (seq_len + 1);
    let mut text: Vec<u32> = Vec::new();
    let mut covered = 0;
    for i in ids {
        if text.len() >= want {
            break;
        }
        text.extend(docs.doc(i)?);
        text.extend(eos);
        covered += 1;
    }
    let windows: Vec<&[u32]> = text.chunks(seq_len + 1).filter(|w| w.len() >= 2).take(o.batches * o.batch_size).collect();
    let run = windows.len().div_ceil(o.batch_size);
    let (mut sum, mut count) = (0.0, 0usize);
    for batch in windows.chunks(o.batch_size) {
        // Windows of one batch have the same length except perhaps the last: score it alone.
        for group in batch.chunk_by(|a, b| a.len() == b.len()) {
            let len = group[0].len();
            let flat: Vec<u32> = group.iter().flat_map(|w| w.iter().copied()).collect();
            let all = Tensor::from_vec(flat, (group.len(), len), model.device())?;
            let input = BackboneInput::ids(all.narrow(1, 0, len - 1)?).with_attention(Attention::Causal);
            let logits = model.forward(&input, None)?.logits;
            let v = logits.dim(2)?;
            let targets = all.narrow(1, 1, len - 1)?.flatten_all()?;
            let losses = crate::ops::cross_entropy_f32(&logits.reshape(((), v))?, &targets)?;
            let n = losses.elem_count();
            sum += losses.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            count += n;
        }
    }
    Ok((EvalLoss { loss: if count > 0 { sum / count as f64 } else { f64::NAN }, tokens: count }, run, covered))
}
