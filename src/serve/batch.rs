//! Continuous batching of `/v1/completions` on the model worker.
//!
//! Every choice of every running request is one row of a shared decode batch. A request joins
//! between two decode steps: its prompt pass runs alone (as without batching), then its cache is
//! merged into the batch cache — the shorter side left-padded ([`KvCache::left_pad`]) and the
//! padding masked with key padding, each row keeping its own positions. Each row decides its next
//! token with its own sampling settings, logits processors (its request's penalties) and RNG,
//! exactly as a solo decoding does; rows leave when they finish (or their client leaves, or the
//! deadline passes) and padding no row needs any more is trimmed. GLM rows decode the `[gMASK]` blank of `[CLS] prompt [gMASK]` (2D positions
//! `[mask, k]`); prompts with several blanks run alone.

use super::api::CompletionRequest;
use super::complete::{body, Choice};
use super::limits::{ApiError, Limits};
use super::metrics::Metrics;
use super::text::TextStream;
use super::validate::Prepared;
use super::worker::{Msg, ServedModel, Ticket};
use crate::generate::processors::{argmax, sample, warp, Processors};
use crate::generate::{BlankTokens, GenerationConfig, GlmBlankInputs, StepInputs};
use crate::model::{Attention, BackboneInput, KvCache, ModelKind};
use candle_core::{DType, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc::UnboundedSender;

/// Where a row's next token goes.
#[derive(Debug, Clone, Copy)]
enum Pos {
    /// GPT-2: the absolute position.
    Causal(usize),
    /// GLM: the blank's mask position and the block position.
    Blank(usize, usize),
}

/// One choice being decoded.
struct Row<'m> {
    job: u64,
    choice: usize,
    cfg: GenerationConfig,
    procs: Processors,
    rng: ChaCha8Rng,
    history: Vec<u32>,
    generated: usize,
    max_new: usize,
    /// Left-padding columns of this row in the batch cache.
    pad: usize,
    pos: Pos,
    logits: Vec<f32>,
    stream: TextStream<'m>,
    text: String,
}

/// A request with rows in the batch.
struct Active {
    id: u64,
    request: CompletionRequest,
    prepared: Prepared,
    tx: UnboundedSender<Msg>,
    deadline: Instant,
    choices: Vec<Option<Choice>>,
    failed: bool,
}

/// The batch: rows, their shared cache and the requests they belong to.
pub(crate) struct Engine<'m> {
    model: &'m ServedModel,
    limits: &'m Limits,
    /// The server's cancel of every request (see [`Ticket::cancelled`]).
    cancelled: &'m Arc<AtomicBool>,
    cache: KvCache,
    rows: Vec<Row<'m>>,
    active: Vec<Active>,
    next_id: u64,
}

impl<'m> Engine<'m> {
    /// An empty batch.
    pub(crate) fn new(model: &'m ServedModel, limits: &'m Limits, cancelled: &'m Arc<AtomicBool>) -> Self {
        Self { model, limits, cancelled, cache: model.backbone.new_cache(), rows: Vec::new(), active: Vec::new(), next_id: 0 }
    }

    /// Rows decoding now.
    pub(crate) fn rows(&self) -> usize {
        self.rows.len()
    }

    /// Whether a checked completion request can join (GPT-2, or a GLM context with one blank);
    /// otherwise it runs alone (as every prompt of a seq2seq model, whose source pass may hold a
    /// P-tuned prompt).
    pub(crate) fn batchable(&self, p: &Prepared) -> bool {
        if self.model.seq2seq.is_some() {
            return false;
        }
        match self.model.kind() {
            ModelKind::Gpt2 => true,
            ModelKind::Glm => BlankTokens::from_special(&self.model.tokenizer.special)
                .is_ok_and(|blank| p.contexts.iter().all(|c| c.iter().filter(|t| blank.masks.contains(t)).count() == 1)),
            ModelKind::Bert => false,
        }
    }

    /// Adds a request's rows: each prompt pass runs alone, then joins the batch cache.
    pub(crate) fn join(&mut self, request: CompletionRequest, prepared: Prepared, tx: UnboundedSender<Msg>, deadline: Instant) {
        let id = self.next_id;
        self.next_id += 1;
        let mut rows = Vec::new();
        let mut failure = None;
        'prompts: for ctx in &prepared.contexts {
            for k in 0..prepared.n {
                let cfg = prepared.config(self.model, &request, k);
                match self.prefill(id, rows.len(), ctx, cfg, &prepared.stops) {
                    Ok(row) => rows.push(row),
                    Err(e) => {
                        failure = Some(ApiError::from(e));
                        break 'prompts;
                    }
                }
            }
        }
        if let Some(e) = failure {
            let _ = tx.send(Msg::Done(Err(e)));
            return;
        }
        let _ = tx.send(Msg::Started);
        let choices = (0..rows.len()).map(|_| None).collect();
        for (row, cache) in rows {
            if let Err(e) = self.merge(row, cache) {
                self.fail_all(e.into());
                let _ = tx.send(Msg::Done(Err(ApiError::internal("the batch failed"))));
                return;
            }
        }
        self.active.push(Active { id, request, prepared, tx, deadline, choices, failed: false });
    }

    /// The prompt pass of one choice: its row and its own cache.
    fn prefill(
        &self,
        job: u64,
        choice: usize,
        ctx: &[u32],
        mut cfg: GenerationConfig,
        stops: &[String],
    ) -> crate::Result<(Row<'m>, KvCache)> {
        let m = self.model.backbone.as_ref();
        let dev = m.device();
        let max_pos = m.info().max_positions;
        let mut cache = m.new_cache();
        let (history, pos, logits, max_new) = match m.info().kind {
            ModelKind::Glm => {
                let blank = BlankTokens::from_special(&self.model.tokenizer.special)?;
                for s in std::iter::once(blank.eop).chain(blank.eos) {
                    if !cfg.eos_token_ids.contains(&s) {
                        cfg.eos_token_ids.push(s);
                    }
                }
                let n = ctx.len();
                let mask =
                    ctx.iter().position(|t| blank.masks.contains(t)).ok_or_else(|| crate::Error::input("the context has no blank"))?;
                let pos: Vec<u32> = (0..n as u32).chain(std::iter::repeat_n(0, n)).collect();
                let input = BackboneInput::ids(Tensor::new(ctx, dev)?.unsqueeze(0)?)
                    .with_positions(Tensor::from_vec(pos, (1, 2, n), dev)?)
                    .with_attention(Attention::Sep(vec![n]));
                m.forward(&input, Some(&mut cache))?;
                let inputs = GlmBlankInputs::new(mask, max_pos);
                let out = m.forward(&inputs.input(Tensor::new(&[[blank.sop]], dev)?, 0)?, Some(&mut cache))?;
                let history: Vec<u32> = ctx.iter().copied().chain([blank.sop]).collect();
                (history, Pos::Blank(mask, 2), last_rows(&out.logits)?.swap_remove(0), cfg.max_new_tokens.min(max_pos - 1))
            }
            _ => {
                if let Some(eos) = self.model.tokenizer.special.eos {
                    cfg.eos_token_ids.push(eos);
                }
                let input = BackboneInput::ids(Tensor::new(ctx, dev)?.unsqueeze(0)?).with_attention(Attention::Causal);
                let out = m.forward(&input, Some(&mut cache))?;
                (
                    ctx.to_vec(),
                    Pos::Causal(ctx.len()),
                    last_rows(&out.logits)?.swap_remove(0),
                    cfg.max_new_tokens.min(max_pos - ctx.len() + 1),
                )
            }
        };
        cfg.validate()?;
        let row = Row {
            job,
            choice,
            procs: Processors::new(&cfg),
            rng: ChaCha8Rng::seed_from_u64(cfg.seed),
            cfg,
            history,
            generated: 0,
            max_new,
            pad: 0,
            pos,
            logits,
            stream: TextStream::new(&self.model.tokenizer, stops),
            text: String::new(),
        };
        Ok((row, cache))
    }

    /// Puts a row and its cache into the batch, left-padding the shorter side.
    fn merge(&mut self, mut row: Row<'m>, mut cache: KvCache) -> crate::Result<()> {
        if self.rows.is_empty() {
            self.cache = cache;
        } else {
            let (have, new) = (self.cache.len(), cache.len());
            if new > have {
                self.cache.left_pad(new - have)?;
                self.rows.iter_mut().for_each(|r| r.pad += new - have);
            } else {
                cache.left_pad(have - new)?;
                row.pad = have - new;
            }
            self.cache.append_rows(&cache)?;
        }
        self.rows.push(row);
        Ok(())
    }

    /// Every request fails with `e` and the batch empties (also after a panic in a step).
    pub(crate) fn fail_all(&mut self, e: ApiError) {
        for a in self.active.drain(..) {
            let _ = a.tx.send(Msg::Done(Err(e.clone())));
        }
        self.rows.clear();
        self.cache = self.model.backbone.new_cache();
    }

    /// One decode step: every row decides a token; finished rows leave; the others are fed.
    /// Returns the tokens decided.
    pub(crate) fn step(&mut self, metrics: &Metrics) -> usize {
        let started = Instant::now();
        metrics.batch_step(self.rows.len());
        // Requests whose client left or whose deadline passed stop now.
        let stopped: Vec<(u64, ApiError)> = self
            .active
            .iter()
            .filter_map(|a| {
                let t = Ticket { tx: &a.tx, deadline: a.deadline, timeout: self.limits.timeout, cancelled: self.cancelled };
                t.should_stop().then(|| (a.id, t.stop_error()))
            })
            .collect();
        for (id, e) in &stopped {
            if let Some(i) = self.active.iter().position(|a| a.id == *id) {
                let a = self.active.swap_remove(i);
                let _ = a.tx.send(Msg::Done(Err(e.clone())));
            }
        }
        let mut keep = Vec::with_capacity(self.rows.len());
        let mut decided = 0;
        for (i, row) in self.rows.iter_mut().enumerate() {
            let Some(a) = self.active.iter_mut().find(|a| a.id == row.job && !a.failed) else { continue };
            decided += 1;
            match decide(row, &a.tx) {
                Ok(None) => keep.push(i as u32),
                Ok(Some(choice)) => {
                    let _ = a.tx.send(Msg::Finish { choice: row.choice, reason: choice.reason });
                    a.choices[row.choice] = Some(choice);
                }
                Err(e) => {
                    let _ = a.tx.send(Msg::Done(Err(e.into())));
                    a.failed = true;
                }
            }
        }
        // Counted before any answer goes out: a client that reads the metrics after its answer
        // sees its tokens.
        metrics.tokens_generated(decided);
        // Requests with every choice decided (or failed) answer and leave.
        let model = self.model;
        self.active.retain_mut(|a| {
            if a.failed {
                return false;
            }
            if a.choices.iter().any(|c| c.is_none()) {
                return true;
            }
            let choices: Vec<Choice> = a.choices.drain(..).flatten().collect();
            let _ = a.tx.send(Msg::Done(Ok(body(model, &a.request, &a.prepared.contexts, &choices))));
            false
        });
        let live: Vec<u32> = keep.into_iter().filter(|&i| self.active.iter().any(|a| a.id == self.rows[i as usize].job)).collect();
        let feed: Vec<u32> = live.iter().map(|&i| *self.rows[i as usize].history.last().expect("decided")).collect();
        if let Err(e) = self.shrink(&live).and_then(|_| self.feed(&feed)) {
            self.fail_all(ApiError::from(e));
        }
        metrics.model_busy(decided, started.elapsed());
        decided
    }

    /// Keeps the rows `live` (in order) and trims padding no row needs.
    fn shrink(&mut self, live: &[u32]) -> crate::Result<()> {
        if live.len() == self.rows.len() {
            return Ok(());
        }
        let mut old: Vec<Option<Row<'m>>> = self.rows.drain(..).map(Some).collect();
        self.rows = live.iter().filter_map(|&i| old[i as usize].take()).collect();
        if self.rows.is_empty() {
            self.cache = self.model.backbone.new_cache();
            return Ok(());
        }
        self.cache.reorder(&Tensor::new(live, self.model.backbone.device())?)?;
        let trim = self.rows.iter().map(|r| r.pad).min().unwrap_or(0);
        if trim > 0 {
            self.cache.trim_front(trim)?;
            self.rows.iter_mut().for_each(|r| r.pad -= trim);
        }
        Ok(())
    }

    /// Feeds one token per row and stores each row's next logits.
    fn feed(&mut self, tokens: &[u32]) -> crate::Result<()> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let m = self.model.backbone.as_ref();
        let dev = m.device();
        let b = self.rows.len();
        let past = self.cache.len();
        let ids = Tensor::from_vec(tokens.to_vec(), (b, 1), dev)?;
        let mut pad = Vec::with_capacity(b * (past + 1));
        for r in &self.rows {
            pad.extend((0..=past).map(|j| if j < r.pad { 0f32 } else { 1f32 }));
        }
        let key_padding = Tensor::from_vec(pad, (b, past + 1), dev)?;
        let input = match m.info().kind {
            ModelKind::Glm => {
                let mut pos = Vec::with_capacity(2 * b);
                for r in &self.rows {
                    if let Pos::Blank(mask, block) = r.pos {
                        pos.extend([mask as u32, block as u32]);
                    }
                }
                BackboneInput::ids(ids).with_positions(Tensor::from_vec(pos, (b, 2, 1), dev)?).with_attention(Attention::Sep(vec![0; b]))
            }
            _ => {
                let pos: Vec<u32> = self.rows.iter().map(|r| if let Pos::Causal(p) = r.pos { p as u32 } else { 0 }).collect();
                BackboneInput::ids(ids).with_positions(Tensor::from_vec(pos, (b, 1), dev)?).with_attention(Attention::Causal)
            }
        };
        let out = m.forward(&input.with_key_padding(key_padding), Some(&mut self.cache))?;
        for (r, logits) in self.rows.iter_mut().zip(last_rows(&out.logits)?) {
            r.logits = logits;
            r.pos = match r.pos {
                Pos::Causal(p) => Pos::Causal(p + 1),
                Pos::Blank(mask, k) => Pos::Blank(mask, k + 1),
            };
        }
        Ok(())
    }
}

/// Decides a row's next token as a solo decoding does; `Some` when the row is done.
fn decide(row: &mut Row<'_>, tx: &UnboundedSender<Msg>) -> crate::Result<Option<Choice>> {
    let cfg = &row.cfg;
    row.procs.apply(&row.history, row.generated, &mut row.logits);
    // As a solo decoding: with every score at −∞ (the processors banned them all) nothing can be
    // chosen, and the argmax would silently pick token 0.
    if !row.logits.iter().any(|&s| s > f32::NEG_INFINITY) {
        return Err(crate::Error::input(format!(
            "every token is banned at new token {} (no_repeat_ngram_size = {}, bad words or NaN scores): nothing can be generated",
            row.generated + 1,
            cfg.no_repeat_ngram_size
        )));
    }
    let tok = if cfg.do_sample {
        warp(cfg, &mut row.logits, 1);
        sample(&row.logits, &mut row.rng)
    } else {
        argmax(&row.logits)
    };
    row.history.push(tok);
    row.generated += 1;
    let is_stop = cfg.eos_token_ids.contains(&tok);
    if !is_stop {
        let delta = row.stream.push(tok)?;
        if !delta.is_empty() {
            row.text.push_str(&delta);
            let _ = tx.send(Msg::Delta { choice: row.choice, text: delta });
        }
    }
    if !(is_stop || row.stream.stopped() || row.generated >= row.max_new) {
        return Ok(None);
    }
    let rest = row.stream.finish()?;
    if !rest.is_empty() {
        row.text.push_str(&rest);
        let _ = tx.send(Msg::Delta { choice: row.choice, text: rest });
    }
    let reason = if is_stop || row.stream.stopped() { "stop" } else { "length" };
    Ok(Some(Choice { text: std::mem::take(&mut row.text), tokens: row.generated, reason }))
}

/// `[R, S, V]` logits → the last position of every row, as f32 vectors.
fn last_rows(logits: &Tensor) -> crate::Result<Vec<Vec<f32>>> {
    let (_, s, _) = logits.dims3()?;
    Ok(logits.narrow(1, s - 1, 1)?.squeeze(1)?.to_dtype(DType::F32)?.to_vec2::<f32>()?)
}
