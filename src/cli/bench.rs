//! `wenhui bench ...`

use wenhui::bench::{bench_forward, bench_train, ForwardBench, TrainBench};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// GLM forward (ms, tokens/s, GFLOP/s) and cached decoding (ms/token) in f32 on the CPU.
    Forward {
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
        /// Sequence length (and decoding context).
        #[arg(long, default_value_t = 512)]
        seq: usize,
        /// Batch size.
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// Timed repetitions; the median is reported.
        #[arg(long, default_value_t = 5)]
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
        /// Timed steps (median reported).
        #[arg(long, default_value_t = 10)]
        steps: usize,
    },
}

pub fn run(c: Command) -> anyhow::Result<()> {
    match c {
        Command::Forward { layers, hidden, heads, vocab, seq, batch, reps, decode_tokens } => {
            let report = bench_forward(&ForwardBench { layers, hidden, heads, vocab, seq, batch, reps, decode_tokens })?;
            println!("{}", serde_json::to_string(&report)?);
        }
        Command::Train { layers, hidden, heads, vocab, seq, batch, steps } => {
            let report = bench_train(&TrainBench { layers, hidden, heads, vocab, seq, batch, steps })?;
            println!("{}", serde_json::to_string(&report)?);
        }
    }
    Ok(())
}
