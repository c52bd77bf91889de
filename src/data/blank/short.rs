//! Short-sequence batches (THUDM's `split_samples`, drawn with probability `short_seq_prob` per
//! batch): the model also sees samples much shorter than `seq_len`, as at inference.

use super::ObjectiveTokens;
use rand::{Rng, RngCore};

/// The shortest chunk length [`split_short_samples`] draws.
pub const SHORT_SEQ_MIN: usize = 32;

/// Re-cuts a batch's text samples (`[CLS]` + documents separated by `eos`, at most `seq_len`
/// tokens) into shorter ones. One chunk length `target` is drawn for the batch from
/// `32..seq_len−1` (so `seq_len` must be at least 34; shorter samples come back unchanged), and
/// every sample gives `(seq_len−1) / target` chunks, each with `[CLS]` in front:
/// * a sample of at most `target` document tokens is repeated whole;
/// * otherwise a chunk starts at a random position moved back to the start of its sentence
///   (after a sentence end or `eos`, never at an `eos`) and ends `target` tokens later, moved
///   back to the end of a sentence (a sentence end or `eos`) unless that leaves less than half
///   of `target`.
///
/// Chunks of one sample may overlap, as in THUDM's code.
pub fn split_short_samples(
    texts: &[Vec<u32>],
    seq_len: usize,
    ids: &ObjectiveTokens,
    ends: &dyn Fn(u32) -> bool,
    rng: &mut impl RngCore,
) -> Vec<Vec<u32>> {
    if seq_len <= SHORT_SEQ_MIN + 1 {
        return texts.to_vec();
    }
    let target = rng.random_range(SHORT_SEQ_MIN..seq_len - 1);
    let splits = (seq_len - 1) / target;
    let boundary = |t: u32| ends(t) || t == ids.eos;
    let mut out = Vec::with_capacity(texts.len() * splits);
    for text in texts {
        let body = match text.first() {
            Some(&c) if c == ids.cls => &text[1..],
            _ => &text[..],
        };
        for _ in 0..splits {
            let chunk = if target >= body.len() {
                body
            } else {
                let mut start = rng.random_range(0..body.len() - target);
                while start > 0 && (body[start] == ids.eos || !boundary(body[start - 1])) {
                    start -= 1;
                }
                let mut end = start + target;
                while end > start && !boundary(body[end - 1]) {
                    end -= 1;
                }
                if end - start < target / 2 {
                    end = start + target;
                }
                &body[start..end]
            };
            let mut t = Vec::with_capacity(chunk.len() + 1);
            t.push(ids.cls);
            t.extend_from_slice(chunk);
            out.push(t);
        }
    }
    out
}
