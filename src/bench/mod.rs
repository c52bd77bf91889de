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
pub use poem::{bench_poem, PoemBench, PoemBenchReport, PoemTitleTimes};
pub use train::{bench_train, DumpInfo, DumpReport, StepCount, TrainBench, TrainReport};

use std::time::Instant;

/// The random GLM a benchmark runs, checked as a config (zero sizes and damaged layer counts
/// are named as options, not found later as odd tensor errors).
pub(crate) fn glm_shape(layers: usize, hidden: usize, heads: usize, vocab: usize, seq: usize) -> crate::Result<crate::model::ModelConfig> {
    let cfg = crate::model::ModelConfig::Glm(crate::model::glm::GlmConfig::new(layers, hidden, heads, vocab, seq));
    cfg.validate(std::path::Path::new("the benchmark shape (--layers, --hidden, --heads, --vocab)"))?;
    Ok(cfg)
}

/// Checks a benchmark's counts before anything is built: each `(flag, value, least)` must be at
/// least `least`, and `--hidden` a multiple of `--heads`; the error names the flag (`command` is
/// `bench forward`, …). The vocabulary and layer limits are [`glm_shape`]'s.
pub(crate) fn check_flags(command: &str, counts: &[(&str, usize, usize)], hidden: usize, heads: usize) -> crate::Result<()> {
    if let Some((flag, value, least)) = counts.iter().find(|(_, v, least)| v < least) {
        return Err(crate::Error::input(format!("{command}: {flag} must be at least {least}, got {value}")));
    }
    if heads > 0 && !hidden.is_multiple_of(heads) {
        return Err(crate::Error::input(format!("{command}: --hidden {hidden} must be a multiple of --heads {heads}")));
    }
    Ok(())
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
    Ok(median(&mut times).unwrap_or(f64::NAN))
}

/// The median of `v` (sorted in place): the mean of the middle two for an even count, as
/// Python's `statistics.median`, which the PyTorch references use. `None` when `v` is empty.
pub(crate) fn median(v: &mut [f64]) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn median_of_odd_even_and_empty_counts() {
        assert_eq!(super::median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(super::median(&mut [4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(super::median(&mut [7.0]), Some(7.0));
        assert_eq!(super::median(&mut []), None);
    }
}
