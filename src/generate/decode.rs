//! The decoding core: the prompt pass, then greedy / sampling steps (beam search lives in
//! `beam.rs`), all through one shared [`KvCache`].

use super::processors::{argmax, log_softmax, sample, warp, Processors};
use super::{beam, Generation, GenerationConfig, Hypothesis, StepHook, StepInputs};
use crate::model::{Backbone, KvCache};
use crate::{Error, Result};
use candle_core::{DType, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Decodes with `cache` holding whatever came before: feeds `feed` (the prompt, or e.g. GLM's
/// `[sop]` after a context pass already in the cache), then generates as `cfg` says.
///
/// `history` is the whole token sequence so far, `feed` included at its end; the repetition
/// penalty, n-gram and bad-word processors look at `history` plus the new tokens (as Hugging
/// Face's `input_ids`). On return the cache holds `feed` and the generated tokens except the
/// last one (greedy/sampling), or the running beams (beam search).
pub fn decode(
    model: &dyn Backbone,
    cache: &mut KvCache,
    history: &[u32],
    feed: &[u32],
    inputs: &dyn StepInputs,
    cfg: &GenerationConfig,
    hook: Option<StepHook<'_>>,
) -> Result<Generation> {
    cfg.validate()?;
    if feed.is_empty() {
        return Err(Error::input("empty prompt: generation needs at least one token to start from"));
    }
    if !history.ends_with(feed) {
        return Err(Error::input("decode: `history` must end with the tokens in `feed`"));
    }
    let vocab = model.info().vocab_size;
    if let Some(&bad) = feed.iter().find(|&&t| t as usize >= vocab) {
        return Err(Error::input(format!("prompt token id {bad} is out of range for a vocabulary of {vocab}")));
    }
    let mut max_new = cfg.max_new_tokens;
    if let Some(cap) = inputs.capacity() {
        if feed.len() > cap {
            return Err(Error::input(format!(
                "the prompt has {} tokens but the model has room for {cap} more positions (max_positions {}); shorten the prompt",
                feed.len(),
                model.info().max_positions
            )));
        }
        // The last generated token is never fed, so it needs no position.
        let room = cap - feed.len() + 1;
        if room < max_new {
            // Once per process a warning (a command's user hears it), then at debug level: a
            // server meets it on every request that asks for more than the model holds.
            static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
            if WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                tracing::debug!("max_new_tokens {max_new} capped to {room} by the model's positions");
            } else {
                tracing::warn!(
                    "max_new_tokens {max_new} capped to {room} by the model's positions (said once; later caps are logged at debug level)"
                );
            }
            max_new = room;
        }
    }
    let ids = Tensor::new(feed, model.device())?.unsqueeze(0)?;
    let out = model.forward(&inputs.input(ids, 0)?, Some(cache))?;
    let first = last_rows(&out.logits)?.swap_remove(0);
    let run = Run { model, inputs, cfg, max_new, fed: feed.len(), procs: Processors::new(cfg) };
    if cfg.num_beams > 1 {
        beam::search(run, cache, history, first, hook)
    } else {
        run.single(cache, history, first, hook)
    }
}

/// What every decoding step needs.
pub(crate) struct Run<'a> {
    pub(crate) model: &'a dyn Backbone,
    pub(crate) inputs: &'a dyn StepInputs,
    pub(crate) cfg: &'a GenerationConfig,
    /// New tokens allowed (max_new_tokens capped by the model's positions).
    pub(crate) max_new: usize,
    /// Tokens fed so far in this decoding.
    pub(crate) fed: usize,
    pub(crate) procs: Processors,
}

impl Run<'_> {
    /// Feeds one token per row and returns each row's next-token logits.
    pub(crate) fn step(&mut self, cache: &mut KvCache, tokens: &[u32]) -> Result<Vec<Vec<f32>>> {
        let ids = Tensor::new(tokens, self.model.device())?.unsqueeze(1)?;
        let input = self.inputs.input(ids, self.fed)?;
        let out = self.model.forward(&input, Some(cache))?;
        self.fed += 1;
        last_rows(&out.logits)
    }

    /// Greedy or sampling with one row.
    fn single(mut self, cache: &mut KvCache, history: &[u32], first: Vec<f32>, mut hook: Option<StepHook<'_>>) -> Result<Generation> {
        let cfg = self.cfg;
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let mut seq = history.to_vec();
        let mut tokens = Vec::new();
        let (mut score, mut finished, mut steps) = (0f32, false, 0);
        let mut row = first;
        loop {
            steps += 1;
            self.procs.apply(&seq, tokens.len(), &mut row);
            // With every score at −∞ the argmax is token 0 and the score NaN: no answer at all.
            if !row.iter().any(|&s| s > f32::NEG_INFINITY) {
                return Err(nothing_allowed(&row, tokens.len() + 1, cfg));
            }
            let tok = if cfg.do_sample {
                warp(cfg, &mut row, 1);
                sample(&row, &mut rng)
            } else {
                argmax(&row)
            };
            score += log_softmax(&row)[tok as usize];
            tokens.push(tok);
            seq.push(tok);
            let go_on = hook.as_mut().is_none_or(|h| h(tokens.len() - 1, tok));
            if cfg.eos_token_ids.contains(&tok) {
                finished = true;
                break;
            }
            if tokens.len() >= self.max_new || !go_on {
                break;
            }
            row = self.step(cache, &[tok])?.swap_remove(0);
        }
        Ok(Generation { sequences: vec![Hypothesis { tokens, score, finished }], steps })
    }
}

/// The error of a step (the `step`-th new token, from 1) where no token has a score above −∞:
/// the processors banned them all, or the model's scores are NaN.
pub(crate) fn nothing_allowed(row: &[f32], step: usize, cfg: &GenerationConfig) -> Error {
    if row.iter().any(|s| s.is_nan()) {
        return Error::input(format!(
            "the model's scores for new token {step} are NaN: nothing can be chosen (a broken checkpoint, or a dtype that overflows: try f32)"
        ));
    }
    let mut causes = Vec::new();
    if !cfg.bad_words_ids.is_empty() {
        causes.push(format!("bad_words_ids ({} entries)", cfg.bad_words_ids.len()));
    }
    if cfg.no_repeat_ngram_size > 0 {
        causes.push(format!("no_repeat_ngram_size = {}", cfg.no_repeat_ngram_size));
    }
    if step <= cfg.min_new_tokens && !cfg.eos_token_ids.is_empty() {
        causes.push(format!("min_new_tokens = {} (bans the stop tokens)", cfg.min_new_tokens));
    }
    let causes = if causes.is_empty() { "the model gives every token a score of −∞".to_string() } else { causes.join(", ") };
    Error::input(format!(
        "every token is banned at step {step} (new token {step} of the output) by {causes}: nothing can be generated; ban fewer of the {} tokens",
        row.len()
    ))
}

/// `[R, S, V]` logits → the last position of every row, as f32 vectors.
pub(crate) fn last_rows(logits: &Tensor) -> Result<Vec<Vec<f32>>> {
    let (_, s, _) = logits.dims3()?;
    Ok(logits.narrow(1, s - 1, 1)?.squeeze(1)?.to_dtype(DType::F32)?.to_vec2::<f32>()?)
}

#[cfg(test)]
mod tests {
    use crate::generate::{generate, CausalInputs, GenerationConfig};
    use crate::model::{load_model, LoadOptions};
    use std::sync::{Arc, Mutex};

    /// A log writer into a shared buffer.
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().map_err(|_| std::io::Error::other("poisoned"))?.extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A server asks for more tokens than the model holds on every request: the cap is a warning
    /// once per process, then a debug line (it was a warning per request).
    #[test]
    fn the_cap_of_max_new_tokens_warns_once_a_process() -> crate::Result<()> {
        let m = load_model("tests/fixtures/gpt2-tiny".as_ref(), &LoadOptions::default())?;
        let backbone = m.backbone.as_ref();
        let cfg = GenerationConfig { max_new_tokens: 1000, ..Default::default() };
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || Captured(writer.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, || -> crate::Result<()> {
            for _ in 0..3 {
                generate(backbone, &[1, 2, 3], &CausalInputs::new(backbone), &cfg, None)?;
            }
            Ok(())
        })?;
        let log = String::from_utf8_lossy(&buf.lock().map_err(|_| crate::Error::input("poisoned log"))?).into_owned();
        let caps: Vec<&str> = log.lines().filter(|l| l.contains("capped to")).collect();
        assert_eq!(caps.len(), 3, "{log}");
        assert!(caps.iter().filter(|l| l.contains("WARN")).count() <= 1, "{log}");
        Ok(())
    }
}
