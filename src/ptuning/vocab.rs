//! P-tuning for open-vocabulary cloze queries (LAMA knowledge probing): the answer is any single
//! token of the vocabulary, not one of a few verbalizer words.
//!
//! Training follows THUDM/P-tuning's LAMA code (spec ptuning §2.3, §2.6): the loss is the
//! cross-entropy over the whole vocabulary at the answer row; the prompt encoder alone is trained
//! (the backbone is frozen: its tensors are not variables); the dev set's P@1 is measured before
//! every epoch, the best encoder is kept (ties count as an improvement) and training stops after
//! `patience` epochs without one (ties reset the count, as the official `dev >= best`). Predictions take the best token of an *allowed* vocabulary.

use std::collections::BTreeMap;

use candle_core::{DType, Tensor};
use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::{EncoderKind, PromptEncoder, PromptEncoderConfig};
use crate::cloze::{build_input, compile, Cloze, CompileOptions, Template};
use crate::model::Backbone;
use crate::tokenizer::Tokenizer;
use crate::train::optim::{AdamW, AdamWConfig};
use crate::{Error, Result};

/// One query: the template's field values and the answer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VocabExample {
    /// Field → text (LAMA: `subject`).
    pub fields: BTreeMap<String, String>,
    /// The answer's token id.
    pub target: u32,
}

/// Hyper-parameters of [`tune_vocab_prompt`]; the defaults are the official LAMA ones except the
/// learning rate (1e-5 there, for billion-parameter models; small models need more).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VocabTuneOptions {
    /// Encoder kind.
    pub encoder: EncoderKind,
    /// Encoder hidden size (0: half the model width, the official LAMA encoder).
    pub hidden: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// L2 weight decay (Adam's, as the official `torch.optim.Adam(weight_decay=5e-4)`).
    pub weight_decay: f64,
    /// Examples per step.
    pub batch_size: usize,
    /// Most epochs.
    pub epochs: usize,
    /// Epochs without a dev improvement before stopping.
    pub patience: usize,
    /// Learning-rate decay per epoch (`ExponentialLR(gamma)`).
    pub gamma: f64,
    /// Seed of the encoder init and the data order.
    pub seed: u64,
}

impl Default for VocabTuneOptions {
    fn default() -> Self {
        Self {
            encoder: EncoderKind::Lstm,
            hidden: 0,
            lr: 1e-3,
            weight_decay: 5e-4,
            batch_size: 8,
            epochs: 100,
            patience: 20,
            gamma: 0.98,
            seed: 34,
        }
    }
}

/// The queries of one P-tuning run.
#[derive(Debug, Clone, Copy)]
pub struct VocabSplits<'a> {
    /// Training queries.
    pub train: &'a [VocabExample],
    /// Dev queries for epoch selection (empty: the last epoch is kept).
    pub dev: &'a [VocabExample],
    /// The answers predictions may take (all tokens when `None`).
    pub allowed: Option<&'a [u32]>,
}

/// What [`tune_vocab_prompt`] returns.
pub struct VocabTuned {
    /// The best encoder (by dev P@1).
    pub encoder: PromptEncoder,
    /// Its dev P@1 (NaN without dev data).
    pub dev_p1: f64,
    /// Epochs run.
    pub epochs: usize,
    /// The epoch the encoder comes from (0 = before training).
    pub best_epoch: usize,
}

/// One epoch of [`tune_vocab_prompt`], as its `progress` callback sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VocabEpoch {
    /// The epoch (0: before training).
    pub epoch: usize,
    /// Dev P@1 after it (NaN without dev data).
    pub dev_p1: f64,
    /// Mean cross-entropy of its training batches (the weight-decay penalty not included);
    /// `None` for epoch 0.
    pub train_loss: Option<f64>,
}

/// Compiles every example with `template` for `model` (the pseudo tokens kept when `with_prompt`).
pub fn compile_queries(model: &dyn Backbone, tok: &Tokenizer, template: &Template, examples: &[VocabExample]) -> Result<Vec<Cloze>> {
    let opts = CompileOptions::new(model.info().max_positions);
    examples.iter().map(|e| compile(template, model.info().kind, tok, &e.fields, &opts)).collect()
}

/// `[B, V]` logits at the answer rows of `rows` (f32), with `prompt` in the pseudo rows.
pub fn answer_logits(model: &dyn Backbone, rows: &[Cloze], prompt: Option<&Tensor>) -> Result<Tensor> {
    let select: Vec<Vec<usize>> = rows.iter().map(|r| vec![r.answer_row]).collect();
    let (input, _) = build_input(model, rows, &select, prompt)?;
    Ok(model.forward(&input, None)?.logits.to_dtype(DType::F32)?)
}

/// Per example, the rank (0 = best) of its target among the `allowed` tokens (all when `None`),
/// by the logits at its answer row; a target outside `allowed` ranks last. Batched by `batch`.
pub fn target_ranks(
    model: &dyn Backbone,
    rows: &[Cloze],
    targets: &[u32],
    allowed: Option<&[u32]>,
    prompt: Option<&Tensor>,
    batch: usize,
) -> Result<Vec<usize>> {
    let mut ranks = Vec::with_capacity(rows.len());
    for (chunk, tchunk) in rows.chunks(batch.max(1)).zip(targets.chunks(batch.max(1))) {
        let logits = answer_logits(model, chunk, prompt)?.to_vec2::<f32>()?;
        for (row, &t) in logits.iter().zip(tchunk) {
            let score = |id: u32| row.get(id as usize).copied().unwrap_or(f32::NEG_INFINITY);
            let ts = score(t);
            let in_allowed = allowed.is_none_or(|a| a.contains(&t));
            let better = match allowed {
                Some(a) => a.iter().filter(|&&id| id != t && score(id) > ts).count(),
                None => row.iter().enumerate().filter(|&(id, &s)| id as u32 != t && s > ts).count(),
            };
            ranks.push(if in_allowed { better } else { allowed.map_or(row.len(), <[u32]>::len) });
        }
    }
    Ok(ranks)
}

/// P@1 of `ranks`.
fn p_at_1(ranks: &[usize]) -> f64 {
    if ranks.is_empty() {
        return f64::NAN;
    }
    ranks.iter().filter(|&&r| r == 0).count() as f64 / ranks.len() as f64
}

/// Trains a prompt encoder for `template` (which must have `[P]` tokens) on `data.train`, selecting
/// the epoch by dev P@1 over `data.allowed` (see the module docs). `progress` is called before
/// training and after every epoch ([`VocabEpoch`]: dev P@1, mean training loss).
pub fn tune_vocab_prompt(
    model: &dyn Backbone,
    tok: &Tokenizer,
    template: &Template,
    data: VocabSplits<'_>,
    o: &VocabTuneOptions,
    mut progress: impl FnMut(VocabEpoch),
) -> Result<VocabTuned> {
    let VocabSplits { train, dev, allowed } = data;
    let n_pseudo = template.num_pseudo();
    if n_pseudo == 0 {
        return Err(Error::input(format!("template `{}` has no [P] pseudo tokens to tune", template.source())));
    }
    if train.is_empty() {
        return Err(Error::input("no training queries"));
    }
    if o.batch_size == 0 || o.lr.is_nan() || o.lr <= 0.0 {
        return Err(Error::input("batch_size must be ≥ 1 and lr > 0"));
    }
    let vocab = model.info().vocab_size as u32;
    if let Some(bad) = train.iter().chain(dev).find(|e| e.target >= vocab) {
        return Err(Error::input(format!("answer id {} is outside the model's vocabulary of {vocab}", bad.target)));
    }
    let hidden = model.info().hidden_size;
    let cfg = PromptEncoderConfig {
        kind: o.encoder,
        num_virtual_tokens: n_pseudo,
        token_dim: hidden,
        hidden: if o.hidden == 0 { (hidden / 2).max(1) } else { o.hidden },
        layers: 2,
        num_transformer_submodules: 1,
        // LAMA's encoder: peft's with h = D/2 (spec ptuning §2.1).
        lstm_head: crate::ptuning::LstmHead::Peft,
    };
    let (enc, map) = PromptEncoder::seeded(&cfg, o.seed, model.device())?.to_trainable()?;
    let vars: Vec<(String, candle_core::Var)> = {
        let data = map.data().lock().map_err(|_| Error::input("variable map poisoned"))?;
        let mut v: Vec<_> = data.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    let mut optim = AdamW::new(vars, AdamWConfig { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 })?;
    let train_rows = compile_queries(model, tok, template, train)?;
    let dev_rows = compile_queries(model, tok, template, dev)?;
    let dev_targets: Vec<u32> = dev.iter().map(|e| e.target).collect();
    let dev_p1 = |enc: &PromptEncoder| -> Result<f64> {
        if dev.is_empty() {
            return Ok(f64::NAN);
        }
        let p = enc.prompt_embeddings()?.detach();
        Ok(p_at_1(&target_ranks(model, &dev_rows, &dev_targets, allowed, Some(&p), 32)?))
    };
    let snapshot = |enc: &PromptEncoder| -> Result<PromptEncoder> {
        let tensors = enc.named_tensors().iter().map(|(n, t)| Ok((n.clone(), t.copy()?))).collect::<Result<_>>()?;
        PromptEncoder::with_config(enc.config(), tensors, std::path::Path::new("<snapshot>"))
    };
    let mut best = (dev_p1(&enc)?, 0usize, snapshot(&enc)?);
    progress(VocabEpoch { epoch: 0, dev_p1: best.0, train_loss: None });
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(o.seed);
    let (mut lr, mut bad, mut epochs) = (o.lr, 0usize, 0usize);
    let device = model.device().clone();
    for epoch in 1..=o.epochs {
        let mut order: Vec<usize> = (0..train.len()).collect();
        order.shuffle(&mut rng);
        // Summed on the device and read once per epoch: no extra sync per step.
        let (mut loss_sum, mut batches) = (Tensor::zeros((), DType::F32, &device)?, 0usize);
        for chunk in order.chunks(o.batch_size) {
            let rows: Vec<Cloze> = chunk.iter().map(|&i| train_rows[i].clone()).collect();
            let targets: Vec<u32> = chunk.iter().map(|&i| train[i].target).collect();
            let prompt = enc.prompt_embeddings()?;
            let logits = answer_logits(model, &rows, Some(&prompt))?;
            let mut loss = crate::ops::cross_entropy(&logits, &Tensor::from_vec(targets, chunk.len(), &device)?)?.mean_all()?;
            loss_sum = (loss_sum + loss.detach().to_dtype(DType::F32)?)?;
            batches += 1;
            if o.weight_decay > 0.0 {
                // Adam's coupled L2 penalty, as torch.optim.Adam(weight_decay): ½·wd·Σw² adds wd·w to each gradient.
                let mut l2 = Tensor::zeros((), DType::F32, &device)?;
                for (_, t) in enc.named_tensors() {
                    l2 = (l2 + t.sqr()?.sum_all()?)?;
                }
                loss = (loss + (l2 * (0.5 * o.weight_decay))?)?;
            }
            optim.step(&loss.backward()?, lr, None)?;
        }
        epochs = epoch;
        lr *= o.gamma;
        let p1 = dev_p1(&enc)?;
        let mean_loss = f64::from(loss_sum.to_scalar::<f32>()?) / batches.max(1) as f64;
        progress(VocabEpoch { epoch, dev_p1: p1, train_loss: Some(mean_loss) });
        if dev.is_empty() || p1 >= best.0 {
            bad = 0;
            best = (p1, epoch, snapshot(&enc)?);
        } else {
            bad += 1;
        }
        if !dev.is_empty() && bad >= o.patience {
            break;
        }
    }
    Ok(VocabTuned { encoder: best.2, dev_p1: best.0, epochs, best_epoch: best.1 })
}
