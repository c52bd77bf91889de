//! Logits processors and sampling warpers, applied to one row of scores at a time, in the order
//! Hugging Face `generate` builds them (`_get_logits_processor`):
//! repetition penalty → no-repeat n-gram → bad words → min new tokens, then (sampling only)
//! temperature → top-k → top-p. OpenAI's frequency and presence penalties, which Hugging Face
//! lacks, come right after the repetition penalty (as vLLM applies them).

use super::GenerationConfig;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// The processors of one configuration, ready to apply to score rows.
#[derive(Debug, Clone)]
pub(crate) struct Processors {
    repetition_penalty: f32,
    frequency_penalty: f32,
    presence_penalty: f32,
    no_repeat_ngram_size: usize,
    /// Bad-word sequences, with single-token bans equal to a stop token removed (as HF does).
    bad_words: Vec<Vec<u32>>,
    min_new_tokens: usize,
    stop: Vec<u32>,
}

impl Processors {
    pub(crate) fn new(cfg: &GenerationConfig) -> Self {
        let bad_words = cfg.bad_words_ids.iter().filter(|seq| !(seq.len() == 1 && cfg.eos_token_ids.contains(&seq[0]))).cloned().collect();
        Self {
            repetition_penalty: cfg.repetition_penalty,
            frequency_penalty: cfg.frequency_penalty,
            presence_penalty: cfg.presence_penalty,
            no_repeat_ngram_size: cfg.no_repeat_ngram_size,
            bad_words,
            min_new_tokens: cfg.min_new_tokens,
            stop: cfg.eos_token_ids.clone(),
        }
    }

    /// Applies every processor to `scores` (one row over the vocabulary) in place. `history` is
    /// every token the processors may look at (prompt and generated tokens so far, as HF's
    /// `input_ids`); `generated` is how many new tokens exist already: the last `generated`
    /// tokens of `history`, the only ones the frequency and presence penalties count.
    pub(crate) fn apply(&self, history: &[u32], generated: usize, scores: &mut [f32]) {
        let vocab = scores.len();
        if self.repetition_penalty != 1.0 {
            let p = self.repetition_penalty;
            let mut seen = vec![false; vocab];
            for &t in history {
                let t = t as usize;
                if t < vocab && !seen[t] {
                    seen[t] = true;
                    let s = scores[t];
                    scores[t] = if s < 0.0 { s * p } else { s / p };
                }
            }
        }
        if self.frequency_penalty != 0.0 || self.presence_penalty != 0.0 {
            let new = &history[history.len() - generated.min(history.len())..];
            occurrence_penalties(new, self.frequency_penalty, self.presence_penalty, scores);
        }
        let n = self.no_repeat_ngram_size;
        if n > 0 && history.len() + 1 >= n {
            let prefix = &history[history.len() + 1 - n..];
            for w in history.windows(n) {
                if &w[..n - 1] == prefix {
                    ban(scores, w[n - 1]);
                }
            }
        }
        for seq in &self.bad_words {
            let (last, prefix) = match seq.split_last() {
                Some(x) => x,
                None => continue,
            };
            if prefix.len() <= history.len() && &history[history.len() - prefix.len()..] == prefix {
                ban(scores, *last);
            }
        }
        if generated < self.min_new_tokens {
            for &t in &self.stop {
                ban(scores, t);
            }
        }
    }
}

/// OpenAI's frequency and presence penalties: for every token `j` of `generated` (the tokens of
/// this completion, not its prompt), `scores[j] -= count[j] * frequency + presence`; tokens that
/// do not occur keep their score. Ids outside the row are ignored.
fn occurrence_penalties(generated: &[u32], frequency: f32, presence: f32, scores: &mut [f32]) {
    let mut sorted = generated.to_vec();
    sorted.sort_unstable();
    for run in sorted.chunk_by(|a, b| a == b) {
        if let Some(s) = scores.get_mut(run[0] as usize) {
            *s -= run.len() as f32 * frequency + presence;
        }
    }
}

fn ban(scores: &mut [f32], token: u32) {
    if let Some(s) = scores.get_mut(token as usize) {
        *s = f32::NEG_INFINITY;
    }
}

/// Temperature, top-k and top-p (HF `TemperatureLogitsWarper`, `TopKLogitsWarper`,
/// `TopPLogitsWarper`), keeping at least `min_keep` tokens.
pub(crate) fn warp(cfg: &GenerationConfig, scores: &mut [f32], min_keep: usize) {
    if cfg.temperature != 1.0 {
        // Shifted by the best score first (the softmax and the order are the same): a tiny
        // temperature then drives the others to −∞ instead of the best to +∞ and every
        // probability to NaN.
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        if max.is_finite() {
            scores.iter_mut().for_each(|s| *s = (*s - max) / cfg.temperature);
        }
    }
    if cfg.top_k > 0 {
        let k = cfg.top_k.max(min_keep).min(scores.len());
        let mut sorted: Vec<f32> = scores.to_vec();
        sorted.sort_by(|a, b| b.total_cmp(a));
        let kth = sorted[k - 1];
        scores.iter_mut().filter(|s| **s < kth).for_each(|s| *s = f32::NEG_INFINITY);
    }
    if cfg.top_p < 1.0 {
        // Ascending order; drop the low tail whose cumulative probability is ≤ 1 - top_p.
        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
        let probs = softmax(scores);
        let mut cum = 0f32;
        let keep_from = scores.len().saturating_sub(min_keep);
        for (rank, &i) in order.iter().enumerate() {
            cum += probs[i];
            if cum <= 1.0 - cfg.top_p && rank < keep_from {
                scores[i] = f32::NEG_INFINITY;
            }
        }
    }
}

/// Softmax of a row (f64 accumulation).
pub(crate) fn softmax(scores: &[f32]) -> Vec<f32> {
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return vec![1.0 / scores.len() as f32; scores.len()];
    }
    let sum: f64 = scores.iter().map(|&s| ((s - max) as f64).exp()).sum();
    scores.iter().map(|&s| (((s - max) as f64).exp() / sum) as f32).collect()
}

/// Log-softmax of a row (f64 accumulation), as `torch.log_softmax` in float32.
pub(crate) fn log_softmax(scores: &[f32]) -> Vec<f32> {
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = scores.iter().map(|&s| ((s - max) as f64).exp()).sum();
    let lse = max as f64 + sum.ln();
    scores.iter().map(|&s| (s as f64 - lse) as f32).collect()
}

/// Index of the largest score (the first one on ties, as `torch.argmax`).
pub(crate) fn argmax(scores: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &s) in scores.iter().enumerate() {
        if s > scores[best] {
            best = i;
        }
    }
    best as u32
}

/// Draws a token from `softmax(scores)`.
pub(crate) fn sample(scores: &[f32], rng: &mut ChaCha8Rng) -> u32 {
    let probs = softmax(scores);
    let u: f64 = rng.random::<f64>();
    let mut cum = 0f64;
    let mut last = 0;
    for (i, &p) in probs.iter().enumerate() {
        if p > 0.0 {
            cum += p as f64;
            last = i;
            if u < cum {
                return i as u32;
            }
        }
    }
    last as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> GenerationConfig {
        GenerationConfig { top_k: 0, ..Default::default() }
    }

    #[test]
    fn repetition_penalty_divides_positive_and_multiplies_negative() {
        let p = Processors::new(&GenerationConfig { repetition_penalty: 2.0, ..cfg() });
        let mut s = vec![1.0, -1.0, 3.0];
        p.apply(&[0, 1, 1], 2, &mut s);
        assert_eq!(s, vec![0.5, -2.0, 3.0]);
    }

    /// OpenAI's penalties by hand: prompt `[4, 4, 1]`, generated `[0, 2, 2, 2]` (the last 4 of
    /// the history), so token 0 occurs once, token 2 three times, tokens 1 and 4 only in the
    /// prompt (count 0, untouched) and token 3 never. All values are exact in f32.
    #[test]
    fn frequency_and_presence_penalties_match_a_hand_computation() {
        let history = [4, 4, 1, 0, 2, 2, 2];
        let logits = [1.0f32, 2.0, -1.0, 0.5, 3.0];
        let run = |frequency: f32, presence: f32, generated: usize| {
            let p = Processors::new(&GenerationConfig { frequency_penalty: frequency, presence_penalty: presence, ..cfg() });
            let mut s = logits.to_vec();
            p.apply(&history, generated, &mut s);
            s
        };
        // s[j] -= count[j] * f + (count[j] > 0) * p
        // token 0: 1 - (1 * 0.5 + 1) = -0.5; token 2: -1 - (3 * 0.5 + 1) = -3.5.
        assert_eq!(run(0.5, 1.0, 4), vec![-0.5, 2.0, -3.5, 0.5, 3.0]);
        // Frequency alone: 1 - 2 = -1; -1 - 3 * 2 = -7.
        assert_eq!(run(2.0, 0.0, 4), vec![-1.0, 2.0, -7.0, 0.5, 3.0]);
        // Presence alone: once, whatever the count: 1 - 2 = -1; -1 - 2 = -3.
        assert_eq!(run(0.0, 2.0, 4), vec![-1.0, 2.0, -3.0, 0.5, 3.0]);
        // Negative values favour repeats: 1 - (-0.25 - 2) = 3.25; -1 - (3 * -0.25 - 2) = 1.75.
        assert_eq!(run(-0.25, -2.0, 4), vec![3.25, 2.0, 1.75, 0.5, 3.0]);
        // Only generated tokens count: with 1 generated (token 2, once) the prompt's and the
        // earlier tokens are untouched: -1 - (0.5 + 1) = -2.5.
        assert_eq!(run(0.5, 1.0, 1), vec![1.0, 2.0, -2.5, 0.5, 3.0]);
        // Nothing generated yet, or both penalties 0: the row is unchanged.
        assert_eq!(run(0.5, 1.0, 0), logits.to_vec());
        assert_eq!(run(0.0, 0.0, 4), logits.to_vec());
        // `generated` beyond the history counts the whole history, never panics.
        assert_eq!(run(0.0, 1.0, 99), vec![0.0, 1.0, -2.0, 0.5, 2.0]);
    }

    /// The penalties come after the repetition penalty: token 0 is in the prompt and generated
    /// once; 4 / 2 = 2, then 2 - (1 + 0.5) = 0.5 (the other order would give 1.25). A token of
    /// the vocabulary's padding beyond the row is ignored.
    #[test]
    fn occurrence_penalties_follow_the_repetition_penalty() {
        let p = Processors::new(&GenerationConfig { repetition_penalty: 2.0, frequency_penalty: 1.0, presence_penalty: 0.5, ..cfg() });
        let mut s = vec![4.0, 1.0];
        p.apply(&[0, 0, 7], 2, &mut s);
        assert_eq!(s, vec![0.5, 1.0]);
    }

    #[test]
    fn penalties_out_of_range_are_refused_by_name() {
        for (f, p, name) in [(2.5, 0.0, "frequency_penalty"), (0.0, -2.01, "presence_penalty"), (f32::NAN, 0.0, "frequency_penalty")] {
            let e = GenerationConfig { frequency_penalty: f, presence_penalty: p, ..cfg() }.validate();
            assert!(e.as_ref().is_err_and(|e| e.to_string().contains(name)), "{f} {p}: {e:?}");
        }
        for v in [-2.0, 0.0, 2.0] {
            assert!(GenerationConfig { frequency_penalty: v, presence_penalty: v, ..cfg() }.validate().is_ok());
        }
    }

    /// Greedy decoding on the tiny GPT-2 with the penalties equals a hand-written reference: a
    /// full forward pass over prompt + tokens so far, then
    /// `logit[j] -= count[j] * f + (count[j] > 0) * p` over the generated tokens only, argmax. The fixture's favourite token outweighs a
    /// presence penalty of 2 alone, but with both at 2 no generated token comes again. Explicit
    /// zero penalties give the default's tokens.
    #[test]
    fn greedy_decoding_with_penalties_matches_a_reference_loop() -> crate::Result<()> {
        use crate::generate::{generate, CausalInputs};
        use crate::model::{Attention, BackboneInput};
        let m = crate::model::load_model("tests/fixtures/gpt2-tiny".as_ref(), &crate::model::LoadOptions::default())?;
        let model = m.backbone.as_ref();
        let prompt = [58u32, 31, 8, 58];
        let base = GenerationConfig { max_new_tokens: 24, ..Default::default() };
        let run = |c: &GenerationConfig| -> crate::Result<Vec<u32>> {
            Ok(generate(model, &prompt, &CausalInputs::new(model), c, None)?.sequences.swap_remove(0).tokens)
        };
        let reference = |f: f32, p: f32| -> crate::Result<Vec<u32>> {
            let mut seq = prompt.to_vec();
            for _ in 0..base.max_new_tokens {
                let ids = candle_core::Tensor::new(seq.as_slice(), model.device())?.unsqueeze(0)?;
                let out = model.forward(&BackboneInput::ids(ids).with_attention(Attention::Causal), None)?;
                let mut row = crate::generate::decode::last_rows(&out.logits)?.swap_remove(0);
                for (j, s) in row.iter_mut().enumerate() {
                    let count = seq[prompt.len()..].iter().filter(|&&t| t as usize == j).count();
                    if count > 0 {
                        *s -= count as f32 * f + p;
                    }
                }
                seq.push(argmax(&row));
            }
            Ok(seq.split_off(prompt.len()))
        };
        let plain = run(&base)?;
        let distinct = |t: &[u32]| t.iter().collect::<std::collections::BTreeSet<_>>().len();
        assert!(distinct(&plain) < plain.len(), "the fixture should repeat itself greedily: {plain:?}");
        assert_eq!(run(&GenerationConfig { frequency_penalty: 0.0, presence_penalty: 0.0, ..base.clone() })?, plain);
        assert_eq!(reference(0.0, 0.0)?, plain);
        for (f, p) in [(0.0, 2.0), (2.0, 2.0), (1.5, 0.0), (-1.0, 0.5)] {
            let got = run(&GenerationConfig { frequency_penalty: f, presence_penalty: p, ..base.clone() })?;
            assert_eq!(got, reference(f, p)?, "frequency {f}, presence {p}");
            // Nothing is generated before the first token: the prompt does not count.
            assert_eq!(got[0], plain[0]);
            if (f, p) == (2.0, 2.0) {
                assert_eq!(distinct(&got), got.len(), "a generated token came again: {got:?}");
            }
        }
        // Beam search applies them to each beam's own tokens.
        let beams = GenerationConfig { num_beams: 3, frequency_penalty: 2.0, presence_penalty: 2.0, ..base };
        let t = run(&beams)?;
        assert_eq!(distinct(&t), t.len(), "{t:?}");
        Ok(())
    }

    #[test]
    fn ngram_and_bad_words_ban_the_right_tokens() {
        let p = Processors::new(&GenerationConfig {
            no_repeat_ngram_size: 2,
            bad_words_ids: vec![vec![4], vec![3, 2], vec![9]],
            eos_token_ids: vec![9],
            ..cfg()
        });
        let mut s = vec![0.0; 10];
        // history ends in 3: bigram (3, 1) seen → 1 banned; (3, 2) is a bad word → 2 banned.
        p.apply(&[3, 1, 5, 3], 1, &mut s);
        let banned: Vec<usize> = (0..10).filter(|&i| s[i].is_infinite()).collect();
        assert_eq!(banned, vec![1, 2, 4]);
    }

    /// A temperature far below 1 sharpens the distribution onto the best token without
    /// overflowing to NaN (1e-38 made every score ±∞ and the softmax NaN); a moderate one gives
    /// the softmax of the scores divided by it, as before.
    #[test]
    fn tiny_temperatures_stay_finite_and_keep_the_softmax() {
        for t in [1e-38f32, 1e-45, 1e-3] {
            let mut s = vec![1.0, 5.0, f32::NEG_INFINITY, 4.9];
            warp(&GenerationConfig { temperature: t, ..cfg() }, &mut s, 1);
            let p = softmax(&s);
            assert!(p.iter().all(|v| v.is_finite()), "{t}: {p:?}");
            assert_eq!(argmax(&s), 1);
            assert!(p[1] > 0.99, "{t}: {p:?}");
        }
        let mut s = vec![1.0, 2.0, 3.0];
        warp(&GenerationConfig { temperature: 0.5, ..cfg() }, &mut s, 1);
        let want = softmax(&[2.0, 4.0, 6.0]);
        assert!(softmax(&s).iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-6));
    }

    #[test]
    fn top_k_and_top_p_keep_the_head() {
        let mut s = vec![0.0, 1.0, 2.0, 3.0];
        warp(&GenerationConfig { top_k: 2, ..cfg() }, &mut s, 1);
        assert_eq!(s.iter().filter(|v| v.is_finite()).count(), 2);
        let mut s = vec![0.0, 0.0, 10.0, 0.0];
        warp(&GenerationConfig { top_p: 0.5, ..cfg() }, &mut s, 1);
        assert_eq!(s.iter().filter(|v| v.is_finite()).count(), 1);
        assert!(s[2].is_finite());
    }
}
