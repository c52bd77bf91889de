//! Benchmarks behind `wenhui bench`: each measures a real code path on random weights and
//! reports medians, tokens/s and achieved GFLOP/s as one JSON object.

mod forward;
mod generate;
mod parity;
mod poem;
pub(crate) mod train;

pub use forward::{bench_forward, ForwardBench, ForwardReport};
pub use generate::{bench_generate, bench_generate_on, DecodeLoopReport, GenerateBench, GenerateReport};
pub use parity::{bench_parity, Check, ParityBench};
pub use poem::{bench_poem, PoemBench, PoemBenchReport};
pub use train::{bench_train, TrainBench, TrainReport};

use std::time::Instant;

/// The random GLM a benchmark runs, checked as a config (zero sizes and damaged layer counts
/// are named as options, not found later as odd tensor errors).
pub(crate) fn glm_shape(layers: usize, hidden: usize, heads: usize, vocab: usize, seq: usize) -> crate::Result<crate::model::ModelConfig> {
    let cfg = crate::model::ModelConfig::Glm(crate::model::glm::GlmConfig::new(layers, hidden, heads, vocab, seq));
    cfg.validate(std::path::Path::new("the benchmark shape (--layers, --hidden, --heads, --vocab)"))?;
    Ok(cfg)
}

/// Runs `f` `warmup` times untimed, then `reps` times; returns the median wall time in ms.
pub(crate) fn median_ms(warmup: usize, reps: usize, mut f: impl FnMut() -> crate::Result<()>) -> crate::Result<f64> {
    for _ in 0..warmup {
        f()?;
    }
    let mut times = Vec::with_capacity(reps.max(1));
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}
