//! A pretraining step on random data through the real objective pipeline: the same code path
//! as `wenhui pretrain` (blank infilling batch, forward, fused cross-entropy, backward, AdamW).
//!
//! **FLOPs** are counted as executed, per step on a batch of B rows whose longest row holds S
//! tokens (Part A + Part B, the row length the batch is padded to; the alignment padding to
//! [`PAD_MULTIPLE`] after it is not counted): `tokens = B·S`, and
//!
//! ```text
//! 6·(params − V·H)·tokens + 6·V·H·logit_rows + 12·L·B·S²·H
//! ```
//!
//! `V·H` is the tied word embedding, which as the output projection runs only on the
//! `logit_rows` rows the loss reads (one per loss-mask entry: [`batch_loss`] passes them as
//! `with_logit_rows`); every other parameter takes part in every token's forward (2 FLOPs per
//! multiply-add) and backward (4); `12·L·B·S²·H` is the attention's two products, forward and
//! backward. `flops_all_rows` is the count had the logits been computed on every token
//! (`6·params·tokens + 12·L·B·S²·H`), which is what PyTorch's reference does by default.
//!
//! **Batch dump** (`--dump-batches FILE`, [`TrainBench::dump_batches`]): the exact batches of the
//! run, warmup steps first, in order, as JSON lines, for `bench/torch_glm_train.py --batches`.
//! The first line is a header: `{"format": "wenhui-bench-train-batches", "version": 1, "layers",
//! "hidden", "heads", "vocab", "seq", "batch", "warmup", "steps", "batches", "params",
//! "pad_multiple", "mask", "loss"}`. Every further line is one batch, `{"index", "timed",
//! "objective", "tokens", "logit_rows", "lengths" [B], "seps" [B], "ids" [B][S'], "positions"
//! [B][2][S'] (position, block position), "targets" [B][S'], "loss_mask" [B][S'] (0/1)}` with S'
//! the padded row length the model sees. The model's attention mask is built from `seps`:
//! query i sees key j when `j < sep` or `j <= i`; the loss is the mean cross-entropy over the
//! rows whose `loss_mask` is 1. Integers only: a GLM-Base batch (B = 32, S = 512) takes about
//! 0.35 MB.

use super::median;
use crate::data::blank::{ObjectiveConfig, ObjectiveTokens};
use crate::data::stream::{Batch, BatchStream, Cursor, StreamConfig, PAD_MULTIPLE};
use crate::device::{check_dtype, parse_device, parse_dtype, synchronize};
use crate::train::optim::{AdamW, AdamWConfig};
use crate::train::pretrain::batch_loss;
use crate::{Error, Result};
use candle_core::DType;
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What to measure (the flags of `wenhui bench train`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct TrainBench {
    /// Layers.
    pub layers: usize,
    /// Hidden size.
    pub hidden: usize,
    /// Heads.
    pub heads: usize,
    /// Vocabulary.
    pub vocab: usize,
    /// Text tokens per sample (Part B adds the spans).
    pub seq: usize,
    /// Samples per step.
    pub batch: usize,
    /// Untimed steps before the timed ones, each on a batch of its own (the dump holds them).
    pub warmup: usize,
    /// Timed steps (after the warmup steps).
    pub steps: usize,
    /// `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// Compute dtype: `f32`, or `bf16`/`f16` mixed precision on a GPU (f32 master weights and
    /// optimizer state).
    pub dtype: String,
    /// Write the run's batches to this file before the model is built (see the module docs);
    /// an existing file is refused unless [`Self::force`]. Written atomically.
    pub dump_batches: Option<PathBuf>,
    /// Replace an existing [`Self::dump_batches`] file.
    #[serde(skip)]
    pub force: bool,
}

impl Default for TrainBench {
    /// The defaults of `wenhui bench train`.
    fn default() -> Self {
        Self {
            layers: 4,
            hidden: 256,
            heads: 4,
            vocab: 8000,
            seq: 256,
            batch: 8,
            warmup: 1,
            steps: 10,
            device: "cpu".into(),
            dtype: "f32".into(),
            dump_batches: None,
            force: false,
        }
    }
}

/// One step's workload (see the module docs for the FLOP count) and, when it was run, its time.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct StepCount {
    /// Whether the step is timed (`false`: a warmup step).
    pub timed: bool,
    /// Tokens: B × the longest row (Part A + Part B; not the alignment padding after it).
    pub tokens: usize,
    /// Rows of the output projection: one per loss-mask entry (the Part B targets).
    pub logit_rows: usize,
    /// Executed FLOPs: 6·(params − V·H)·tokens + 6·V·H·logit_rows + 12·L·B·S²·H.
    pub flops: f64,
    /// FLOPs with logits on every token: 6·params·tokens + 12·L·B·S²·H.
    pub flops_all_rows: f64,
    /// Wall ms of the step (forward and loss, backward, optimizer; the device synchronised at
    /// its end); absent when the batch was only dumped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ms: Option<f64>,
}

/// One JSON line of results.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TrainReport {
    /// Always "wenhui".
    #[serde(rename = "impl")]
    pub implementation: &'static str,
    /// The configuration.
    pub config: TrainBench,
    /// Parameters.
    pub params: usize,
    /// Median wall ms of a timed step (the mean of the middle two for an even count).
    pub step_ms: f64,
    /// Tokens per timed step (B × the longest row: Part A + Part B, not the alignment padding
    /// to `data::stream::PAD_MULTIPLE` after it), averaged over the timed steps.
    pub tokens_per_step: f64,
    /// Rows of the output projection per timed step (the loss rows), averaged.
    pub logit_rows_per_step: f64,
    /// Tokens per second: the timed steps' tokens over their total wall time.
    pub tokens_per_s: f64,
    /// Executed FLOPs per timed step ([`StepCount::flops`]), averaged.
    pub flops_per_step: f64,
    /// FLOPs per timed step had the logits been computed on every token
    /// ([`StepCount::flops_all_rows`], PyTorch's default and this benchmark's count before),
    /// averaged.
    pub flops_all_rows_per_step: f64,
    /// Achieved GFLOP/s: the timed steps' executed FLOPs over their total wall time.
    pub gflops: f64,
    /// Achieved TFLOP/s (= gflops / 1000), the unit GPU figures are quoted in.
    pub tflops: f64,
    /// Median ms of the forward pass and loss (batch upload included) over the timed steps.
    pub forward_ms: f64,
    /// Median ms of the backward pass.
    pub backward_ms: f64,
    /// Median ms of the optimizer step (gradient norm, clipping, AdamW).
    pub optimizer_ms: f64,
    /// Rayon threads.
    pub threads: usize,
    /// Whether the layers trained as one graph node (the default wherever the fused ops run;
    /// `WENHUI_LAYER_STACK` overrides it; see `model::stack`).
    pub layer_stack: bool,
    /// Every step, the warmup steps first.
    pub per_step: Vec<StepCount>,
    /// The batch dump written, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dump: Option<DumpInfo>,
}

/// A batch dump written.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DumpInfo {
    /// Its path.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// Seconds taken to write it.
    pub seconds: f64,
}

/// What [`TrainBench::write_batches`] wrote: the batches' workload, no timing.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DumpReport {
    /// Always "wenhui".
    #[serde(rename = "impl")]
    pub implementation: &'static str,
    /// Always "dump".
    pub mode: &'static str,
    /// The configuration.
    pub config: TrainBench,
    /// Parameters of the model the batches are for.
    pub params: usize,
    /// Tokens per timed step, averaged (as [`TrainReport::tokens_per_step`]).
    pub tokens_per_step: f64,
    /// Loss (logit) rows per timed step, averaged.
    pub logit_rows_per_step: f64,
    /// Executed FLOPs per timed step, averaged.
    pub flops_per_step: f64,
    /// FLOPs per timed step with logits on every token, averaged.
    pub flops_all_rows_per_step: f64,
    /// Executed FLOPs over all-rows FLOPs, summed over the timed steps: the factor from a
    /// GFLOP/s counted with logits on every token to the executed one.
    pub executed_over_all_rows: f64,
    /// The same over every batch, warmup included.
    pub executed_over_all_rows_with_warmup: f64,
    /// Every batch, the warmup batches first.
    pub per_step: Vec<StepCount>,
    /// The file written.
    pub dump: DumpInfo,
}

/// The run's shape and batches: checked flags, the parameter count, warmup + timed batches.
struct Prepared {
    cfg: crate::model::ModelConfig,
    params: usize,
    batches: Vec<Batch>,
    counts: Vec<StepCount>,
}

impl TrainBench {
    /// Checks the flags, refuses an existing dump file, and makes the run's batches (before any
    /// timing: the benchmark measures the device step, not the host's blank-infilling sampler,
    /// which runs ahead of the step in `wenhui pretrain`).
    fn prepare(&self) -> Result<Prepared> {
        super::check_flags(
            "bench train",
            &[
                ("--layers", self.layers, 1),
                ("--hidden", self.hidden, 1),
                ("--heads", self.heads, 1),
                ("--vocab", self.vocab, 16),
                ("--seq", self.seq, 8),
                ("--batch", self.batch, 1),
                ("--steps", self.steps, 1),
            ],
            self.hidden,
            self.heads,
        )?;
        let cfg = super::glm_shape(self.layers, self.hidden, self.heads, self.vocab, self.seq)?;
        let params: usize = cfg.parameter_shapes().iter().map(|(_, s)| s.iter().product::<usize>()).sum();
        if let Some(path) = &self.dump_batches {
            check_dump_target(path, self.force)?;
        }
        ensure_host_fits(self)?;
        let corpus = RandomCorpus::new(self.vocab, self.seq);
        let mut stream = corpus.stream(self.seq, self.batch)?;
        let n = self.warmup.saturating_add(self.steps);
        let batches = (0..n).map(|_| stream.next_batch()).collect::<Result<Vec<_>>>()?;
        let counts = batches.iter().enumerate().map(|(i, b)| step_count(self, params, b, i >= self.warmup)).collect();
        Ok(Prepared { cfg, params, batches, counts })
    }

    /// Makes the run's batches and writes them to [`Self::dump_batches`] without building a
    /// model or timing anything (`wenhui bench train --dump-batches FILE --dump-only`): the
    /// batches, tokens, loss rows and FLOP counts of a run on any device (a seed gives the same
    /// batches everywhere), at any shape. `device` and `dtype` are not used.
    pub fn write_batches(&self) -> Result<DumpReport> {
        let path = self.dump_batches.as_deref().ok_or_else(|| Error::input("bench train: --dump-only needs --dump-batches FILE"))?;
        let p = self.prepare()?;
        let dump = write_dump(path, self.force, self, p.params, &p.batches, &p.counts)?;
        let timed: Vec<&StepCount> = p.counts.iter().filter(|s| s.timed).collect();
        let mean = |f: &dyn Fn(&StepCount) -> f64| timed.iter().map(|s| f(s)).sum::<f64>() / timed.len().max(1) as f64;
        let ratio = |it: &mut dyn Iterator<Item = &StepCount>| {
            let (e, a) = it.fold((0.0, 0.0), |(e, a), s| (e + s.flops, a + s.flops_all_rows));
            e / a
        };
        Ok(DumpReport {
            implementation: "wenhui",
            mode: "dump",
            config: self.clone(),
            params: p.params,
            tokens_per_step: mean(&|s| s.tokens as f64),
            logit_rows_per_step: mean(&|s| s.logit_rows as f64),
            flops_per_step: mean(&|s| s.flops),
            flops_all_rows_per_step: mean(&|s| s.flops_all_rows),
            executed_over_all_rows: ratio(&mut timed.iter().copied()),
            executed_over_all_rows_with_warmup: ratio(&mut p.counts.iter()),
            per_step: p.counts,
            dump,
        })
    }
}

/// Runs the benchmark on `c.device` (the CPU in f32, or a GPU in f32 or mixed precision):
/// `c.warmup` untimed steps, then `c.steps` timed ones, each on a batch of its own.
pub fn bench_train(c: &TrainBench) -> Result<TrainReport> {
    let dev = parse_device(&c.device)?;
    let compute = parse_dtype(&c.dtype)?;
    check_dtype(&dev, compute)?;
    let Prepared { cfg, params: params_n, batches, mut counts } = c.prepare()?;
    ensure_fits(c, params_n, &dev)?;
    let dump = match &c.dump_batches {
        Some(path) => Some(write_dump(path, c.force, c, params_n, &batches, &counts)?),
        None => None,
    };
    let (varmap, mut model) = cfg.build_trainable(Some(cfg.init_weights(0)?), DType::F32, &dev)?;
    model.set_compute_dtype(compute)?;
    let mut params: Vec<_> =
        varmap.data().lock().map_err(|_| Error::input("poisoned"))?.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
    params.sort_by(|a, b| a.0.cmp(&b.0));
    let mut optim = AdamW::new(params, AdamWConfig { beta1: 0.9, beta2: 0.98, eps: 1e-6, weight_decay: 0.1 })?;
    // Per-phase wall times of the timed steps (the device synchronised after each), for where
    // the step goes.
    let mut phases: Vec<[f64; 3]> = Vec::with_capacity(c.steps);
    for (step, (batch, count)) in batches.iter().zip(counts.iter_mut()).enumerate() {
        let t0 = Instant::now();
        let (loss, _) = batch_loss(model.as_ref(), batch, Some(step as u64))?;
        synchronize(&dev)?;
        let t1 = t0.elapsed().as_secs_f64() * 1e3;
        let grads = loss.backward()?;
        synchronize(&dev)?;
        let t2 = t0.elapsed().as_secs_f64() * 1e3;
        optim.step(&grads, 1e-4, Some(1.0))?;
        synchronize(&dev)?;
        let t3 = t0.elapsed().as_secs_f64() * 1e3;
        count.ms = Some(t3);
        if count.timed {
            phases.push([t1, t2 - t1, t3 - t2]);
        }
    }
    let timed: Vec<&StepCount> = counts.iter().filter(|s| s.timed).collect();
    let n = timed.len().max(1) as f64;
    let total_s = timed.iter().filter_map(|s| s.ms).sum::<f64>() / 1e3;
    let tokens: f64 = timed.iter().map(|s| s.tokens as f64).sum();
    let flops: f64 = timed.iter().map(|s| s.flops).sum();
    let med = |mut v: Vec<f64>| median(&mut v).unwrap_or(f64::NAN);
    let phase = |k: usize| med(phases.iter().map(|p| p[k]).collect());
    Ok(TrainReport {
        implementation: "wenhui",
        config: c.clone(),
        params: params_n,
        step_ms: med(timed.iter().filter_map(|s| s.ms).collect()),
        tokens_per_step: tokens / n,
        logit_rows_per_step: timed.iter().map(|s| s.logit_rows as f64).sum::<f64>() / n,
        tokens_per_s: tokens / total_s,
        flops_per_step: flops / n,
        flops_all_rows_per_step: timed.iter().map(|s| s.flops_all_rows).sum::<f64>() / n,
        gflops: flops / total_s / 1e9,
        tflops: flops / total_s / 1e12,
        forward_ms: phase(0),
        backward_ms: phase(1),
        optimizer_ms: phase(2),
        threads: rayon::current_num_threads(),
        layer_stack: crate::model::layer_stack_enabled(&candle_core::Tensor::zeros(1, compute, &dev)?),
        per_step: counts,
        dump,
    })
}

/// The workload of one step on `batch` (see the module docs), untimed.
fn step_count(c: &TrainBench, params: usize, batch: &Batch, timed: bool) -> StepCount {
    let b = batch.tokens.len();
    let s = batch.lengths.iter().copied().max().unwrap_or(0);
    let tokens = b * s;
    // The rows `batch_loss` gives the output projection.
    let logit_rows = batch.loss_mask.iter().flatten().filter(|&&m| m > 0.0).count();
    let (l, h, v) = (c.layers as f64, c.hidden as f64, c.vocab as f64);
    let attention = 12.0 * l * b as f64 * (s as f64) * (s as f64) * h;
    let projection = v * h;
    StepCount {
        timed,
        tokens,
        logit_rows,
        flops: 6.0 * (params as f64 - projection) * tokens as f64 + 6.0 * projection * logit_rows as f64 + attention,
        flops_all_rows: 6.0 * params as f64 * tokens as f64 + attention,
        ms: None,
    }
}

/// Refuses a dump path that is a directory, lies in a missing directory, or exists (unless
/// `force`): before the batches are made and the model built, so a long run does not end in
/// the refusal.
fn check_dump_target(path: &Path, force: bool) -> Result<()> {
    if path.is_dir() {
        return Err(Error::input(format!("--dump-batches {} is a directory; give a file path", path.display())));
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(Error::input(format!("--dump-batches {}: the directory {} does not exist", path.display(), dir.display())));
    }
    if !force && path.symlink_metadata().is_ok() {
        return Err(dump_exists(path));
    }
    Ok(())
}

fn dump_exists(path: &Path) -> Error {
    Error::input(format!("--dump-batches {} already exists; choose another file, or pass --force to replace it", path.display()))
}

/// The header line of a batch dump.
#[derive(serde::Serialize)]
struct DumpHeader {
    format: &'static str,
    version: u32,
    layers: usize,
    hidden: usize,
    heads: usize,
    vocab: usize,
    seq: usize,
    batch: usize,
    warmup: usize,
    steps: usize,
    batches: usize,
    params: usize,
    pad_multiple: usize,
    mask: &'static str,
    loss: &'static str,
}

/// One batch line of a dump: what `batch_loss` gives the model.
#[derive(serde::Serialize)]
struct DumpedBatch<'a> {
    index: usize,
    timed: bool,
    objective: crate::data::blank::Objective,
    tokens: usize,
    logit_rows: usize,
    lengths: &'a [usize],
    seps: &'a [usize],
    ids: &'a [Vec<u32>],
    positions: &'a [[Vec<u32>; 2]],
    targets: &'a [Vec<u32>],
    loss_mask: Vec<Vec<u8>>,
}

/// Writes `batches` to `path` as JSON lines (the module docs give the format): into a temporary
/// file beside it, then linked (or, with `force`, renamed) into place, so that no reader sees a
/// half-written dump and an existing file is never replaced without `force`.
fn write_dump(path: &Path, force: bool, c: &TrainBench, params: usize, batches: &[Batch], counts: &[StepCount]) -> Result<DumpInfo> {
    let t0 = Instant::now();
    check_dump_target(path, force)?;
    let header = DumpHeader {
        format: "wenhui-bench-train-batches",
        version: 1,
        layers: c.layers,
        hidden: c.hidden,
        heads: c.heads,
        vocab: c.vocab,
        seq: c.seq,
        batch: c.batch,
        warmup: c.warmup,
        steps: c.steps,
        batches: batches.len(),
        params,
        pad_multiple: PAD_MULTIPLE,
        mask: "query i sees key j when j < sep or j <= i",
        loss: "mean cross-entropy over the rows whose loss_mask is 1",
    };
    // A few MB even at GLM-Base's shape: made in memory, then written atomically.
    let json = |e: serde_json::Error| Error::file(path, format!("could not write the batches as JSON: {e}"));
    let mut bytes = serde_json::to_vec(&header).map_err(json)?;
    bytes.push(b'\n');
    for (index, (b, n)) in batches.iter().zip(counts).enumerate() {
        let line = DumpedBatch {
            index,
            timed: n.timed,
            objective: b.objective,
            tokens: n.tokens,
            logit_rows: n.logit_rows,
            lengths: &b.lengths,
            seps: &b.seps,
            ids: &b.tokens,
            positions: &b.positions,
            targets: &b.targets,
            loss_mask: b.loss_mask.iter().map(|r| r.iter().map(|&m| u8::from(m > 0.0)).collect()).collect(),
        };
        serde_json::to_writer(&mut bytes, &line).map_err(json)?;
        bytes.push(b'\n');
    }
    crate::error::write_atomic(path, &bytes)?;
    Ok(DumpInfo { path: path.to_path_buf(), bytes: bytes.len() as u64, seconds: t0.elapsed().as_secs_f64() })
}

/// Refuses shapes whose random corpus and batches could only exhaust the host's memory.
fn ensure_host_fits(c: &TrainBench) -> Result<()> {
    crate::device::ensure_fits(&candle_core::Device::Cpu, host_bytes(c), "bench train's random corpus at this --seq", HINT)
}

const HINT: &str = "lower --seq, --batch, --hidden, --layers or --vocab";

/// Bytes of the random corpus and the batches on the host.
fn host_bytes(c: &TrainBench) -> f64 {
    let (b, s) = (c.batch as f64, c.seq as f64);
    let corpus = 4.0 * RandomCorpus::DOCS as f64 * 1.25 * s;
    let batches = 4.0 * 6.0 * c.warmup.saturating_add(c.steps) as f64 * b * s;
    corpus + batches
}

/// Refuses shapes that could only exhaust the memory, before the model is allocated: f32
/// weights, gradients and AdamW state, every layer's saved activations, one layer's attention
/// scores and the logits (with their gradient) on the device, with the corpus and batches on
/// the CPU (checked on the CPU only, as `bench forward` does). A lower bound: Part B adds tokens.
fn ensure_fits(c: &TrainBench, params: usize, dev: &candle_core::Device) -> Result<()> {
    let (b, s, h) = (c.batch as f64, c.seq as f64, c.hidden as f64);
    let activations = c.layers as f64 * b * s * 16.0 * h + 2.0 * b * c.heads as f64 * s * s + 2.0 * b * s * c.vocab as f64;
    let bytes = 4.0 * (4.0 * params as f64 + activations) + if dev.is_cpu() { host_bytes(c) } else { 0.0 };
    crate::device::ensure_fits(dev, bytes, "bench train at this shape", HINT)
}

/// Random documents over the non-special ids of a vocabulary (special ids at its top), for
/// benchmarks and device checks that need real blank-infilling batches without a corpus.
pub(crate) struct RandomCorpus {
    docs: Vec<Vec<u32>>,
    ids: ObjectiveTokens,
}

impl RandomCorpus {
    /// Documents of a corpus.
    const DOCS: usize = 512;

    /// [`Self::DOCS`] documents of `seq/2 .. 2·seq` tokens, seeded.
    pub(crate) fn new(vocab: usize, seq: usize) -> Self {
        let v = vocab as u32;
        let ids = ObjectiveTokens { cls: v - 7, eos: v - 6, mask: v - 5, smask: v - 4, gmask: v - 3, sop: v - 2, eop: v - 1, dblock: None };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let docs = (0..Self::DOCS).map(|_| (0..rng.random_range(seq / 2..seq * 2)).map(|_| rng.random_range(0..v - 8)).collect()).collect();
        Self { docs, ids }
    }

    /// THUDM's default objective mix ([`ObjectiveConfig::default`]: token-level spans for half
    /// the batches, one document-level span for the other half; not GLM-Large's token-only
    /// mix) over these documents, packed to `seq` tokens, `batch` rows.
    pub(crate) fn stream(&self, seq: usize, batch: usize) -> Result<BatchStream<'_>> {
        let cfg = StreamConfig {
            seq_len: seq,
            batch_size: batch,
            pack: true,
            seed: 0,
            objectives: ObjectiveConfig::default(),
            lm: Default::default(),
        };
        BatchStream::new(&self.docs, (0..self.docs.len()).collect(), cfg, self.ids, Default::default(), Cursor::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::blank::Objective;

    /// The executed count of a known batch: two rows, the longest 5 tokens, 3 loss rows.
    #[test]
    fn executed_flops_of_a_known_batch() {
        let row = |n: usize| vec![0u32; n];
        let batch = Batch {
            tokens: vec![row(8), row(8)],
            targets: vec![row(8), row(8)],
            loss_mask: vec![vec![0., 0., 1., 1., 0., 0., 0., 0.], vec![0., 0., 0., 1., 0., 0., 0., 0.]],
            positions: vec![[row(8), row(8)], [row(8), row(8)]],
            seps: vec![2, 3],
            lengths: vec![4, 5],
            objective: Objective::Token,
        };
        let c = TrainBench { layers: 2, hidden: 16, vocab: 100, ..Default::default() };
        let params = 10_000;
        let s = step_count(&c, params, &batch, true);
        assert_eq!((s.tokens, s.logit_rows), (10, 3));
        let attention = 12.0 * 2.0 * 2.0 * 25.0 * 16.0;
        assert_eq!(s.flops, 6.0 * (10_000.0 - 1600.0) * 10.0 + 6.0 * 1600.0 * 3.0 + attention);
        assert_eq!(s.flops_all_rows, 6.0 * 10_000.0 * 10.0 + attention);
    }
}
