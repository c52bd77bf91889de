//! Beam search with the semantics of Hugging Face transformers' vectorised `_beam_search`
//! (v4.5x / v5): processors on `log_softmax(logits)`, `2 × num_beams` candidates per step, only
//! stop-token candidates ranked in the top `num_beams` enter the finished pool, finished scores
//! are `sum log p / generated_len ** length_penalty` (the length counts the stop token, not the
//! prompt), at the maximum length the top `num_beams` candidates finish, and the
//! `early_stopping` heuristic of `_check_early_stop_heuristic`. All beams share one cache,
//! reordered with [`KvCache::reorder`] every step.

use super::decode::{nothing_allowed, Run};
use super::processors::log_softmax;
use super::{EarlyStopping, Generation, Hypothesis, StepHook};
use crate::model::KvCache;
use crate::Result;
use candle_core::Tensor;

/// HF's "very large negative" score.
const NEG: f32 = -1.0e9;

/// A hypothesis in the finished pool (or an empty slot).
#[derive(Debug, Clone)]
struct Slot {
    tokens: Vec<u32>,
    score: f32,
    finished: bool,
    /// A finished hypothesis that descends from the prompt's own beam: not an empty slot, and
    /// not the continuation of one of the `NEG`-scored copies that fill the beams at the start.
    real: bool,
}

/// Running scores at or below this descend from a `NEG`-scored beam (an empty start copy, or a
/// beam that already stopped): real sums of log-probabilities never come near it. (Pool scores
/// are divided by a length, so they are judged by [`Slot::real`] instead.)
const DEAD: f32 = NEG / 2.0;

/// One of the top candidates of a step.
struct Cand {
    beam: usize,
    token: u32,
    score: f32,
    hits_stop: bool,
}

/// Indices of the `k` largest values, largest first (lower index first on ties).
fn topk(values: &[f32], k: usize) -> Vec<usize> {
    let order = |a: &usize, b: &usize| values[*b].total_cmp(&values[*a]).then(a.cmp(b));
    let mut idx: Vec<usize> = (0..values.len()).collect();
    // Select, then sort only the k kept: sorting beams × vocabulary scores every step took as
    // long as the model's forward pass. The order is total, so the result is the full sort's.
    if k == 0 {
        return Vec::new();
    }
    if k < idx.len() {
        idx.select_nth_unstable_by(k - 1, order);
        idx.truncate(k);
    }
    idx.sort_by(order);
    idx
}

/// Runs the search; `first` holds the next-token logits after the prompt pass (cache batch 1).
pub(crate) fn search(
    mut run: Run<'_>,
    cache: &mut KvCache,
    history: &[u32],
    first: Vec<f32>,
    hook: Option<StepHook<'_>>,
) -> Result<Generation> {
    let cfg = run.cfg;
    let nb = cfg.num_beams;
    let lp = cfg.length_penalty;
    let eos = &cfg.eos_token_ids;
    let device = run.model.device().clone();
    // Every beam starts from the prompt: one cache row per beam.
    cache.reorder(&Tensor::new(vec![0u32; nb], &device)?)?;
    let mut running: Vec<Vec<u32>> = vec![Vec::new(); nb];
    let mut running_scores = vec![NEG; nb];
    running_scores[0] = 0.0;
    let mut pool: Vec<Slot> = (0..nb).map(|_| Slot { tokens: Vec::new(), score: NEG, finished: false, real: false }).collect();
    let mut heuristic_unsatisfied = true;
    let mut rows = vec![first; nb];
    let mut steps = 0;
    loop {
        steps += 1;
        let t = running[0].len();
        let vocab = rows[0].len();
        let mut acc = Vec::with_capacity(nb * vocab);
        for (r, row) in rows.iter().enumerate() {
            let mut logp = log_softmax(row);
            let hist: Vec<u32> = history.iter().chain(&running[r]).copied().collect();
            run.procs.apply(&hist, t, &mut logp);
            acc.extend(logp.iter().map(|&x| x + running_scores[r]));
        }
        let keep = (2.max(1 + eos.len()) * nb).min(acc.len());
        let cands: Vec<Cand> = topk(&acc, keep)
            .into_iter()
            .map(|i| {
                let token = (i % vocab) as u32;
                Cand { beam: i / vocab, token, score: acc[i], hits_stop: eos.contains(&token) || t + 1 >= run.max_new }
            })
            .collect();
        // No candidate of a live beam is left: every token is banned for every real beam (the
        // rest descend from dead beams). Keep what finished; with nothing finished, say why
        // instead of returning an empty hypothesis scored −1e9.
        if !cands.first().is_some_and(|c| c.score > DEAD) {
            if pool.iter().any(|s| s.real) {
                break;
            }
            return Err(nothing_allowed(&acc[..vocab], t + 1, cfg));
        }
        let cand_tokens = |c: &Cand| {
            let mut v = running[c.beam].clone();
            v.push(c.token);
            v
        };

        // Running beams of the next step: the best candidates that did not stop.
        let run_scores: Vec<f32> = cands.iter().map(|c| c.score + if c.hits_stop { NEG } else { 0.0 }).collect();
        let next = topk(&run_scores, nb);

        // Finished pool: merge the stopping candidates ranked in the top `nb` into it.
        let pool_full = pool.iter().all(|s| s.finished);
        let denom = ((t + 1) as f64).powf(lp as f64) as f32;
        let mut merged = pool.clone();
        for (j, c) in cands.iter().enumerate() {
            let just_finished = c.hits_stop && j < nb;
            let mut s = c.score / denom;
            if pool_full && cfg.early_stopping == EarlyStopping::True {
                s += NEG;
            }
            if !heuristic_unsatisfied {
                s += NEG;
            }
            if !just_finished {
                s += NEG;
            }
            merged.push(Slot { tokens: cand_tokens(c), score: s, finished: just_finished, real: just_finished && c.score > DEAD });
        }
        let scores: Vec<f32> = merged.iter().map(|s| s.score).collect();
        pool = topk(&scores, nb).into_iter().map(|i| merged[i].clone()).collect();

        let beam_index: Vec<u32> = next.iter().map(|&j| cands[j].beam as u32).collect();
        let new_running: Vec<Vec<u32>> = next.iter().map(|&j| cand_tokens(&cands[j])).collect();
        running_scores = next.iter().map(|&j| run_scores[j]).collect();
        running = new_running;

        // Can a running beam still beat the worst finished hypothesis?
        let cur = t + 1;
        let best_possible = if cfg.early_stopping == EarlyStopping::Never && lp > 0.0 {
            running_scores[0] / (run.max_new as f64).powf(lp as f64) as f32
        } else {
            running_scores[0] / (cur as f64).powf(lp as f64) as f32
        };
        let worst = pool.iter().map(|s| s.score).fold(f32::INFINITY, f32::min);
        heuristic_unsatisfied &= pool.iter().any(|s| best_possible > if s.finished { worst } else { NEG });
        let all_finished = pool.iter().all(|s| s.finished);
        let open = !(all_finished && cfg.early_stopping == EarlyStopping::True);
        let valid = !cands.iter().all(|c| c.hits_stop);
        if !(heuristic_unsatisfied && open && valid) {
            break;
        }
        cache.reorder(&Tensor::new(beam_index, &device)?)?;
        let last: Vec<u32> = running.iter().map(|r| r[r.len() - 1]).collect();
        rows = run.step(cache, &last)?;
    }
    if !pool.first().is_some_and(|s| s.real) {
        if lp < 0.0 {
            // Not a ban: a negative penalty multiplies the scores by length^-lp, below the floor
            // the search keeps its empty slots at.
            return Err(crate::Error::input(format!(
                "beam search found no hypothesis in {steps} steps: length_penalty {lp} multiplies every score by \
                 length^{}, which pushes them below the search's floor ({NEG:e}); use a length penalty of 0 or more \
                 (0 ranks by total log-probability)",
                -lp
            )));
        }
        return Err(crate::Error::input(format!(
            "beam search found no hypothesis in {steps} steps: every continuation was banned (bad_words_ids, no_repeat_ngram_size, min_new_tokens); ban fewer tokens"
        )));
    }
    let sequences: Vec<Hypothesis> = pool
        .into_iter()
        .take(cfg.num_return_sequences)
        .map(|s| {
            let finished = s.tokens.last().is_some_and(|t| eos.contains(t));
            Hypothesis { tokens: s.tokens, score: s.score, finished }
        })
        .collect();
    if let (Some(h), Some(best)) = (hook, sequences.first()) {
        for (i, &t) in best.tokens.iter().enumerate() {
            if !h(i, t) {
                break;
            }
        }
    }
    Ok(Generation { sequences, steps })
}

#[cfg(test)]
mod tests {
    use super::topk;

    /// The selection gives exactly the full sort's first k: same indices, same order, ties by
    /// index, NaN and infinities included.
    #[test]
    fn topk_is_the_full_sorts_prefix() {
        let mut values: Vec<f32> = (0..5000u32).map(|i| ((i.wrapping_mul(2_654_435_761) >> 20) % 97) as f32 / 7.0 - 5.0).collect();
        values[17] = f32::INFINITY;
        values[4000] = f32::NEG_INFINITY;
        values[123] = f32::NAN;
        let mut full: Vec<usize> = (0..values.len()).collect();
        full.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
        for k in [0, 1, 2, 8, 12, 97, 4999, 5000, 5010] {
            assert_eq!(topk(&values, k), full[..k.min(values.len())], "k = {k}");
        }
        assert!(topk(&[], 3).is_empty());
    }
}
