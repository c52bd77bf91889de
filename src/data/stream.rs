//! From documents to padded training batches: packing, epochs, the resumable cursor.

use super::blank::{draw_objective, make_sample, split_short_samples, Objective, ObjectiveConfig, ObjectiveTokens, Sample};
use super::lm::{causal_sample, mlm_sample, LmObjective, MLM_RATIO};
use crate::{Error, Result};
use candle_core::{Device, Tensor};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashSet;

/// A collection of tokenized documents.
pub trait Documents: Send + Sync {
    /// Number of documents.
    fn num_docs(&self) -> usize;
    /// Token ids of document `i` (no special tokens).
    fn doc(&self, i: usize) -> Result<Vec<u32>>;
    /// Length of document `i` in tokens.
    fn doc_len(&self, i: usize) -> usize;
}

impl Documents for Vec<Vec<u32>> {
    fn num_docs(&self) -> usize {
        self.len()
    }
    fn doc(&self, i: usize) -> Result<Vec<u32>> {
        self.get(i).cloned().ok_or_else(|| Error::input(format!("document {i} out of range")))
    }
    fn doc_len(&self, i: usize) -> usize {
        self.get(i).map_or(0, Vec::len)
    }
}

impl Documents for super::corpus::TokenCorpus {
    fn num_docs(&self) -> usize {
        super::corpus::TokenCorpus::num_docs(self)
    }
    fn doc(&self, i: usize) -> Result<Vec<u32>> {
        super::corpus::TokenCorpus::doc(self, i)
    }
    fn doc_len(&self, i: usize) -> usize {
        super::corpus::TokenCorpus::doc_len(self, i)
    }
}

/// Where the stream is: enough to continue exactly after a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Cursor {
    /// Passes over the documents completed.
    pub epoch: u64,
    /// Position in this epoch's document order.
    pub index: usize,
    /// Tokens of the current document already used (long documents span samples).
    pub offset: usize,
    /// Batches produced so far (seeds each batch's objective draws).
    pub batches: u64,
}

/// How samples are cut from documents.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// Text tokens per sample, `[CLS]` included (Part B adds the span tokens on top).
    pub seq_len: usize,
    /// Samples per batch.
    pub batch_size: usize,
    /// Pack several documents (separated by `eos`) into one sample, as THUDM does; otherwise
    /// each sample is one document (or one piece of a long one).
    pub pack: bool,
    /// Seed of document order and objective draws.
    pub seed: u64,
    /// The blank-infilling objectives (used when `lm` is [`LmObjective::Blank`]).
    pub objectives: ObjectiveConfig,
    /// Blank infilling (GLM), masked LM (BERT) or causal LM (GPT-2).
    pub lm: LmObjective,
}

/// A padded batch, ready for the model.
#[derive(Debug, Clone)]
pub struct Batch {
    /// `[B, S]` input ids.
    pub tokens: Vec<Vec<u32>>,
    /// `[B, S]` targets.
    pub targets: Vec<Vec<u32>>,
    /// `[B, S]` 1 where the loss counts.
    pub loss_mask: Vec<Vec<f32>>,
    /// `[B, 2, S]` position and block position ids.
    pub positions: Vec<[Vec<u32>; 2]>,
    /// Part A length per row.
    pub seps: Vec<usize>,
    /// Tokens per row before padding.
    pub lengths: Vec<usize>,
    /// The objective drawn for this batch.
    pub objective: Objective,
}

/// Rows are padded to a multiple of this many tokens. On a GPU the attention's GEMMs have the
/// sequence length as a leading dimension, and cuBLAS needs it 16-byte aligned for its fast
/// tensor-core kernels: at S = 531 (512 text tokens plus the spans) a GLM-Base step ran them as
/// 2-byte-aligned sm80 kernels, 2–4× slower per call than PyTorch's at S = 512 (H200 profile,
/// 2026-11-28). The padding sits after every real token, which no real token attends to in any
/// of the three attention patterns, and carries no loss; the CPU pads the same way, so a seed
/// gives the same batches on every device.
pub const PAD_MULTIPLE: usize = 8;

impl Batch {
    /// Pads samples with `pad` (positions 0, no loss) to the longest, rounded up to a multiple
    /// of [`PAD_MULTIPLE`].
    pub fn from_samples(samples: Vec<Sample>, pad: u32) -> Self {
        let len = samples.iter().map(|s| s.tokens.len()).max().unwrap_or(0).next_multiple_of(PAD_MULTIPLE);
        let objective = samples.first().map_or(Objective::Token, |s| s.objective);
        let mut b =
            Batch { tokens: vec![], targets: vec![], loss_mask: vec![], positions: vec![], seps: vec![], lengths: vec![], objective };
        for mut s in samples {
            let extra = len - s.tokens.len();
            b.lengths.push(s.tokens.len());
            s.tokens.extend(std::iter::repeat_n(pad, extra));
            s.targets.extend(std::iter::repeat_n(pad, extra));
            s.loss_mask.extend(std::iter::repeat_n(0.0, extra));
            s.positions.extend(std::iter::repeat_n(0, extra));
            s.blocks.extend(std::iter::repeat_n(0, extra));
            b.tokens.push(s.tokens);
            b.targets.push(s.targets);
            b.loss_mask.push(s.loss_mask);
            b.positions.push([s.positions, s.blocks]);
            b.seps.push(s.sep);
        }
        b
    }

    /// Number of tokens (padding included) and of loss tokens.
    pub fn counts(&self) -> (usize, usize) {
        let n = self.tokens.iter().map(|r| r.len()).sum();
        let t = self.loss_mask.iter().flatten().filter(|&&m| m > 0.0).count();
        (n, t)
    }

    /// `(tokens [B,S] u32, targets [B,S] u32, loss_mask [B,S] f32, positions [B,2,S] u32)`.
    pub fn tensors(&self, device: &Device) -> Result<(Tensor, Tensor, Tensor, Tensor)> {
        let b = self.tokens.len();
        let s = self.tokens.first().map_or(0, |r| r.len());
        let flat = |rows: &[Vec<u32>]| rows.concat();
        let tokens = Tensor::from_vec(flat(&self.tokens), (b, s), device)?;
        let targets = Tensor::from_vec(flat(&self.targets), (b, s), device)?;
        let mask = Tensor::from_vec(self.loss_mask.concat(), (b, s), device)?;
        let pos: Vec<u32> = self.positions.iter().flat_map(|[p, q]| p.iter().chain(q.iter()).copied()).collect();
        let positions = Tensor::from_vec(pos, (b, 2, s), device)?;
        Ok((tokens, targets, mask, positions))
    }
}

/// Produces batches from `docs[ids]` forever, epoch after epoch, deterministically.
pub struct BatchStream<'a> {
    docs: &'a dyn Documents,
    ids: Vec<usize>,
    order: Vec<usize>,
    cfg: StreamConfig,
    tokens: ObjectiveTokens,
    sentence_ends: HashSet<u32>,
    cursor: Cursor,
}

impl<'a> BatchStream<'a> {
    /// A stream over the documents `ids` of `docs`, starting at `cursor`.
    pub fn new(
        docs: &'a dyn Documents,
        ids: Vec<usize>,
        cfg: StreamConfig,
        tokens: ObjectiveTokens,
        sentence_ends: HashSet<u32>,
        cursor: Cursor,
    ) -> Result<Self> {
        cfg.objectives.validate()?;
        if cfg.lm == LmObjective::Blank {
            tokens.check(&cfg.objectives)?;
        }
        if cfg.seq_len < 4 || cfg.batch_size == 0 {
            return Err(Error::input(format!("seq_len {} must be at least 4 and batch_size positive", cfg.seq_len)));
        }
        let total: usize = ids.iter().map(|&i| docs.doc_len(i)).sum();
        if total == 0 {
            return Err(Error::input("the corpus has no tokens to train on (all documents are empty)"));
        }
        if cfg.pack && total + 1 < cfg.seq_len {
            return Err(Error::input(format!(
                "the corpus has {total} tokens, shorter than one sequence of {}: use a smaller seq_len or more data",
                cfg.seq_len
            )));
        }
        if cursor.index >= ids.len() {
            return Err(Error::input(format!(
                "the start position (document {} of this epoch) is beyond the {} training documents: a damaged cursor, or another corpus",
                cursor.index,
                ids.len()
            )));
        }
        let mut s = Self { docs, ids, order: vec![], cfg, tokens, sentence_ends, cursor };
        s.order = s.epoch_order(cursor.epoch);
        Ok(s)
    }

    /// The current position (save it to resume).
    pub fn cursor(&self) -> Cursor {
        self.cursor
    }

    fn epoch_order(&self, epoch: u64) -> Vec<usize> {
        let mut order = self.ids.clone();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(self.cfg.seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15)));
        order
    }

    fn advance_doc(&mut self) {
        self.cursor.index += 1;
        self.cursor.offset = 0;
        if self.cursor.index >= self.order.len() {
            self.cursor.index = 0;
            self.cursor.epoch += 1;
            self.order = self.epoch_order(self.cursor.epoch);
        }
    }

    /// The next text sample: `[CLS]` + document tokens (+ `eos` between documents when packing).
    fn next_text(&mut self) -> Result<Vec<u32>> {
        let mut text = vec![self.tokens.cls];
        loop {
            let doc = self.docs.doc(self.order[self.cursor.index])?;
            let rest = &doc[self.cursor.offset.min(doc.len())..];
            if rest.is_empty() {
                self.advance_doc();
                continue;
            }
            let room = self.cfg.seq_len - text.len();
            if rest.len() > room {
                text.extend_from_slice(&rest[..room]);
                self.cursor.offset += room;
                return Ok(text);
            }
            text.extend_from_slice(rest);
            self.advance_doc();
            if !self.cfg.pack || text.len() + 2 > self.cfg.seq_len {
                return Ok(text);
            }
            text.push(self.tokens.eos);
        }
    }

    /// The next batch. Blank infilling draws one objective for the whole batch (and, with
    /// `short_seq_prob`, whether its samples are re-cut into short ones); masked and causal LM
    /// make every sample with their one objective.
    pub fn next_batch(&mut self) -> Result<Batch> {
        // Everything random in a batch comes from its number, so a resumed stream (which restores
        // the cursor) makes the same batches.
        let seed = self.cfg.seed.wrapping_add(0xB10C).wrapping_mul(0x1000_0000_01B3) ^ self.cursor.batches;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        self.cursor.batches += 1;
        let objective = match self.cfg.lm {
            LmObjective::Blank => draw_objective(&self.cfg.objectives, &mut rng),
            LmObjective::Mlm { .. } => Objective::Mlm,
            LmObjective::Causal => Objective::Causal,
        };
        let mut texts = (0..self.cfg.batch_size).map(|_| self.next_text()).collect::<Result<Vec<_>>>()?;
        let ends = &self.sentence_ends;
        let p = self.cfg.objectives.short_seq_prob;
        if self.cfg.lm == LmObjective::Blank && p > 0.0 {
            // A stream of its own (same seed, stream 1): the objective draws and the samples of
            // the batches that are not re-cut stay those of short_seq_prob = 0.
            let mut short = ChaCha8Rng::seed_from_u64(seed);
            short.set_stream(1);
            if short.random::<f64>() < p {
                texts = split_short_samples(&texts, self.cfg.seq_len, &self.tokens, &|t| ends.contains(&t), &mut short);
            }
        }
        let samples = texts
            .iter()
            .map(|text| match self.cfg.lm {
                LmObjective::Blank => make_sample(text, objective, &self.cfg.objectives, &self.tokens, &|t| ends.contains(&t), &mut rng),
                LmObjective::Mlm { random_below } => Ok(mlm_sample(text, &self.tokens, MLM_RATIO, Some(random_below), &mut rng)),
                LmObjective::Causal => Ok(causal_sample(text, &self.tokens)),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Batch::from_samples(samples, self.tokens.eos))
    }
}

/// Token ids whose text ends a sentence (`. ? ! ; :` and their CJK forms, `…`, newline).
pub fn sentence_end_ids(tokenizer: &crate::tokenizer::Tokenizer) -> HashSet<u32> {
    const ENDS: &[char] = &['.', '?', '!', ';', ':', '。', '？', '！', '；', '：', '…', '\n'];
    let n = tokenizer.vocab_size(true) as u32;
    (0..n)
        .filter(|&id| {
            tokenizer.decode(&[id], true).ok().and_then(|s| s.trim_end_matches(' ').chars().last()).is_some_and(|c| ENDS.contains(&c))
        })
        .collect()
}
