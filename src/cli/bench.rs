//! `wenhui bench ...`

use std::path::PathBuf;
use wenhui::bench::{
    bench_forward, bench_generate, bench_generate_on, bench_parity, bench_poem, bench_train, ForwardBench, GenerateBench, ParityBench,
    PoemBench, TrainBench,
};
use wenhui::generate::BlankTokens;
use wenhui::model::{load_model, LoadOptions, ModelKind};
use wenhui::tokenizer::Tokenizer;

/// A GLM-base-sized random model (`--layers 12 --hidden 768 --heads 12 --vocab 30592`).
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct BaseShape {
    /// Layers.
    #[arg(long, default_value_t = 12)]
    layers: usize,
    /// Hidden size.
    #[arg(long, default_value_t = 768)]
    hidden: usize,
    /// Attention heads.
    #[arg(long, default_value_t = 12)]
    heads: usize,
    /// Vocabulary size.
    #[arg(long, default_value_t = 30592)]
    vocab: usize,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// GLM forward (ms, tokens/s, GFLOP/s) and cached decoding (ms/token) in f32 on the CPU.
    Forward {
        #[command(flatten)]
        shape: BaseShape,
        /// Sequence length (and decoding context).
        #[arg(long, default_value_t = 512)]
        seq: usize,
        /// Batch size.
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// Timed repetitions; the median is reported.
        #[arg(long, default_value_t = 5, value_parser = crate::cli::common::positive)]
        reps: usize,
        /// Tokens decoded with the cache after the context.
        #[arg(long, default_value_t = 32)]
        decode_tokens: usize,
    },
    /// A GLM pretraining step (blank-infilling batch, forward, backward, AdamW) on random data:
    /// tokens/s, step ms, achieved GFLOP/s.
    Train {
        /// Layers.
        #[arg(long, default_value_t = 4)]
        layers: usize,
        /// Hidden size.
        #[arg(long, default_value_t = 256)]
        hidden: usize,
        /// Attention heads.
        #[arg(long, default_value_t = 4)]
        heads: usize,
        /// Vocabulary size.
        #[arg(long, default_value_t = 8000)]
        vocab: usize,
        /// Text tokens per sample.
        #[arg(long, default_value_t = 256)]
        seq: usize,
        /// Samples per step.
        #[arg(long, default_value_t = 8)]
        batch: usize,
        /// Untimed steps before the timed ones.
        #[arg(long, default_value_t = 1)]
        warmup: usize,
        /// Timed steps (median step time reported; tokens/s and GFLOP/s over their total time).
        #[arg(long, default_value_t = 10)]
        steps: usize,
        /// Write the run's batches (warmup and timed, in order) to FILE as JSON lines, for
        /// bench/torch_glm_train.py --batches FILE.
        #[arg(long, value_name = "FILE")]
        dump_batches: Option<PathBuf>,
        /// With --dump-batches: write the batches and stop (no model, no timing; prints their
        /// tokens, loss rows and FLOPs).
        #[arg(long, requires = "dump_batches")]
        dump_only: bool,
        /// Replace an existing --dump-batches file.
        #[arg(long, requires = "dump_batches")]
        force: bool,
    },
    /// Inverse prompting's cost: an inverse-prompted poem vs the same search without the inverse pass
    /// and vs token-level beam search of the same width.
    Poem {
        /// Model directory (default: the embedded poetry GLM).
        #[arg(long)]
        model: Option<PathBuf>,
        /// Titles, comma-separated.
        #[arg(long, default_value = "虹桥机场,咏相对论,春日,江雪,秋夜")]
        titles: String,
        /// Form.
        #[arg(long, default_value = "五绝")]
        form: String,
        /// Beams (the width of every method).
        #[arg(long, default_value_t = 6)]
        beams: usize,
        /// Refinement rounds of both searches (default: the poem task's, as `wenhui poem` runs;
        /// 0 times the searches alone).
        #[arg(long)]
        refine: Option<usize>,
        /// Timed runs per title and method (median, after one warmup run).
        #[arg(long, default_value_t = 1, value_parser = crate::cli::common::positive)]
        reps: usize,
    },
    /// Generation with the K/V cache: tokens/s of greedy decoding and of beam search for one
    /// sequence, and of a batched greedy loop with --batch (a random GLM of the given shape, or
    /// --model DIR).
    Generate {
        /// Measure this model directory instead of a random GLM (the shape flags are ignored).
        #[arg(long)]
        model: Option<PathBuf>,
        #[command(flatten)]
        shape: BaseShape,
        /// Prompt tokens.
        #[arg(long, default_value_t = 128)]
        prompt: usize,
        /// New tokens per generation.
        #[arg(long, default_value_t = 32)]
        new_tokens: usize,
        /// Beams of the beam-search measurement.
        #[arg(long, default_value_t = 4)]
        beams: usize,
        /// Timed runs per strategy (median reported, after one warmup run).
        #[arg(long, default_value_t = 3, value_parser = crate::cli::common::positive)]
        reps: usize,
        /// Sequences of the batched greedy decode loop (0 = skip it).
        #[arg(long, default_value_t = 0)]
        batch: usize,
        /// Skip the library's greedy and beam-search runs (measure only the batched decode loop).
        #[arg(long)]
        decode_only: bool,
    },
    /// The device (`--device cuda`) against the CPU and the reference dumps: every fused op forward and backward,
    /// the GLM fixture's logits, one training step's gradients and AdamW update (f32 with TF32
    /// off ≤ 1e-3; half types within a relative bound). Prints a table; fails on any miss.
    Parity {
        /// Half dtypes to check too (comma-separated: bf16,f16; empty for none).
        #[arg(long, default_value = "bf16", value_delimiter = ',')]
        half: Vec<String>,
        /// GLM fixture folder (cases.json, cases.safetensors, model files); default
        /// $WENHUI_GLM_FIXTURE or tests/fixtures/glm-tiny.
        #[arg(long)]
        fixture: Option<PathBuf>,
        /// Print the checks as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Load-test `wenhui serve` on loopback: concurrent clients (1, 8, 32), tokens/s, p50/p99
    /// latency, continuous batching on and off (one JSON line per run).
    Serve(crate::cli::serve::BenchArgs),
}

pub fn run(c: Command, on: &crate::cli::common::DeviceFlags) -> anyhow::Result<()> {
    let (device, dtype) = (on.device.clone(), on.dtype.clone());
    match c {
        Command::Forward { shape: BaseShape { layers, hidden, heads, vocab }, seq, batch, reps, decode_tokens } => {
            // It builds its model on the CPU in f32: a GPU or half-precision request would be
            // measured on the CPU without a word.
            if !wenhui::device::parse_device(&device)?.is_cpu() || wenhui::device::parse_dtype(&dtype)? != candle_core::DType::F32 {
                anyhow::bail!(
                    "bench forward measures f32 on the CPU (given --device {device} --dtype {dtype}); on a GPU use `bench train` or `bench generate`"
                );
            }
            let report = bench_forward(&ForwardBench { layers, hidden, heads, vocab, seq, batch, reps, decode_tokens })?;
            println!("{}", serde_json::to_string(&report)?);
        }
        Command::Parity { half, fixture, json } => {
            let half = half.into_iter().filter(|h| !h.trim().is_empty()).collect();
            let fixture = fixture
                .or_else(|| std::env::var_os("WENHUI_GLM_FIXTURE").map(PathBuf::from))
                .unwrap_or_else(|| PathBuf::from("tests/fixtures/glm-tiny"));
            let checks = bench_parity(&ParityBench { device: device.clone(), half, fixture })?;
            if json {
                println!("{}", serde_json::to_string(&checks)?);
            } else {
                for c in &checks {
                    println!("{:<4} {:<58} {:>11.3e}  (bound {:.0e})", if c.ok { "ok" } else { "FAIL" }, c.name, c.error, c.bound);
                }
            }
            let failed = checks.iter().filter(|c| !c.ok).count();
            if failed > 0 {
                anyhow::bail!("{failed} of {} parity checks failed", checks.len());
            }
            eprintln!("all {} parity checks passed", checks.len());
        }
        Command::Train { layers, hidden, heads, vocab, seq, batch, warmup, steps, dump_batches, dump_only, force } => {
            let c = TrainBench { layers, hidden, heads, vocab, seq, batch, warmup, steps, device, dtype, dump_batches, force };
            let line = if dump_only { serde_json::to_string(&c.write_batches()?)? } else { serde_json::to_string(&bench_train(&c)?)? };
            println!("{line}");
        }
        Command::Poem { model, titles, form, beams, refine, reps } => {
            let dir = match model {
                Some(d) => d,
                None => wenhui::embedded::poetry_model_dir()?,
            };
            let m = load_model(&dir, &LoadOptions::default())?;
            let tok = Tokenizer::from_dir(&dir)?;
            let cx = wenhui::generate::inverse::Context::new(m.backbone.as_ref(), &tok)?;
            let titles = titles.split([',', '，']).map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect();
            let refine_rounds = match refine {
                Some(r) => r,
                None => PoemBench::task_refine_rounds()?,
            };
            let c = PoemBench { titles, form, beams, refine_rounds, reps };
            let r = bench_poem(&cx, &c)?;
            // The goal's "plain beam search of the same width" is the same unit beam search without the
            // inverse pass; token-level beam search is a different algorithm, shown for scale only.
            eprintln!(
                "inverse prompting / search baseline (same unit beam search, {} beams, {} refinement round{}, no inverse pass; median of \
                 the titles' ratios): {:.2}x (goal <= 1.3x); / token beam search: {:.2}x",
                c.beams,
                c.refine_rounds,
                if c.refine_rounds == 1 { "" } else { "s" },
                r.ratio_vs_search_baseline,
                r.ratio_vs_token_beam
            );
            println!("{}", serde_json::to_string(&r)?);
        }
        Command::Generate {
            model,
            shape: BaseShape { layers, hidden, heads, vocab },
            prompt,
            new_tokens,
            beams,
            reps,
            batch,
            decode_only,
        } => {
            let c = GenerateBench { layers, hidden, heads, vocab, prompt, new_tokens, beams, reps, batch, decode_only, device, dtype };
            let report = match model {
                None => bench_generate(&c)?,
                Some(dir) => {
                    let opts = LoadOptions {
                        device: wenhui::device::parse_device(&c.device)?,
                        dtype: wenhui::device::parse_dtype(&c.dtype)?,
                        ..Default::default()
                    };
                    let m = load_model(&dir, &opts)?;
                    let blank = match m.config.kind() {
                        ModelKind::Glm => {
                            let tok_dir = if dir.is_dir() { dir.clone() } else { dir.parent().map(PathBuf::from).unwrap_or_default() };
                            Some(BlankTokens::from_special(&Tokenizer::from_dir(&tok_dir)?.special)?)
                        }
                        _ => None,
                    };
                    let mut r = bench_generate_on(m.backbone.as_ref(), blank.as_ref(), &c)?;
                    r.params = m.parameter_count;
                    r.model = dir.display().to_string();
                    r
                }
            };
            println!("{}", serde_json::to_string(&report)?);
        }
        Command::Serve(a) => crate::cli::serve::bench(a)?,
    }
    Ok(())
}
