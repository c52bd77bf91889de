//! Where the masked spans go (THUDM's `sample_span_in_document`, `sample_spans` and the
//! sentence split of `construct_blocks`).

use super::{ObjectiveConfig, ObjectiveTokens};
use rand::seq::SliceRandom;
use rand::{Rng, RngCore};

/// Maximal runs of document tokens: `[CLS]` and `eos` are never masked.
pub(super) fn segments(text: &[u32], ids: &ObjectiveTokens) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, &t) in text.iter().enumerate() {
        let boundary = t == ids.eos || (i == 0 && t == ids.cls);
        match (boundary, start) {
            (true, Some(s)) => {
                out.push((s, i));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, text.len()));
    }
    out
}

/// Poisson(λ) pmf for lengths 1..=max, as sampling weights.
fn poisson_weights(lambda: f64, max: usize) -> Vec<f64> {
    let mut w = Vec::with_capacity(max);
    let mut p = (-lambda).exp(); // pmf(0)
    for k in 1..=max {
        p *= lambda / k as f64;
        w.push(p);
    }
    w
}

fn weighted_choice(weights: &[f64], rng: &mut impl RngCore) -> usize {
    let total: f64 = weights.iter().sum();
    let mut r = rng.random::<f64>() * total;
    for (i, w) in weights.iter().enumerate() {
        if r < *w {
            return i;
        }
        r -= w;
    }
    weights.len() - 1
}

/// Places spans of the given lengths uniformly at random in `[start, end)`, in order, each
/// separated from the next by at least one unmasked token (THUDM's `sample_spans`). The caller
/// makes sure they fit.
fn place_spans(lengths: &[usize], start: usize, end: usize, rng: &mut impl RngCore) -> Vec<(usize, usize)> {
    let total: usize = lengths.iter().sum();
    let n = lengths.len();
    let len = end - start;
    // Free tokens that are not needed as separators between spans.
    let m = len - total - (n - 1);
    let mut places: Vec<usize> = (0..n).map(|_| rng.random_range(0..=m)).collect();
    places.sort_unstable();
    let mut offset = start;
    let mut out = Vec::with_capacity(n);
    for (place, &l) in places.into_iter().zip(lengths) {
        let s = offset + place;
        out.push((s, s + l));
        offset += l + 1;
    }
    out
}

/// Token-level spans of a sample of `len` tokens whose documents are `segments` (THUDM's
/// `sample_span_in_document`): Poisson lengths until `mask_ratio` of the whole sample is covered
/// (one count for the sample, so a short document does not lose it), then spread over the
/// documents shortest first: each but the longest takes lengths while they stay within
/// `mask_ratio` of its own tokens, the longest takes the rest. The sample's last token is never
/// masked (THUDM leaves it out of the last document).
///
/// THUDM drops a sample whose spans do not all fit; here the lengths are drawn again (which
/// gives the spans of the samples THUDM keeps), and after [`TOKEN_SPAN_TRIES`] draws the spans
/// that fit are kept, so a batch keeps its rows (a packed sample whose longest document is too
/// short for the rest of the count).
pub(super) fn token_spans(len: usize, segments: &[(usize, usize)], cfg: &ObjectiveConfig, rng: &mut impl RngCore) -> Vec<(usize, usize)> {
    let target = (cfg.mask_ratio * len as f64) as usize;
    if target == 0 {
        return Vec::new();
    }
    let weights = poisson_weights(cfg.avg_span, cfg.max_span);
    let mut docs: Vec<(usize, usize)> =
        segments.iter().map(|&(s, e)| if e == len { (s, e - 1) } else { (s, e) }).filter(|&(s, e)| e > s).collect();
    // Shortest first; of equal ones the earlier comes last (THUDM sorts its back-to-front list
    // stably), so it is the one that gets the rest.
    docs.sort_by_key(|&(s, e)| (e - s, std::cmp::Reverse(s)));
    let mut spans = Vec::new();
    for _ in 0..TOKEN_SPAN_TRIES {
        let mut lengths = Vec::new();
        let mut covered = 0;
        while covered < target {
            let l = weighted_choice(&weights, rng) + 1;
            lengths.push(l);
            covered += l;
        }
        lengths.shuffle(rng);
        spans = spread_spans(&lengths, &docs, cfg.mask_ratio, rng);
        if spans.len() == lengths.len() {
            break;
        }
    }
    spans
}

/// Draws of span lengths [`token_spans`] makes before it keeps the spans that fit.
const TOKEN_SPAN_TRIES: usize = 8;

/// Places `lengths` in `docs` (shortest first): all but the last take lengths in order while they
/// stay within `ratio` of their tokens, the last takes the rest; in every document the spans fit
/// with a separator between each two (a `ratio` above one half would otherwise leave no room for
/// them).
fn spread_spans(lengths: &[usize], docs: &[(usize, usize)], ratio: f64, rng: &mut impl RngCore) -> Vec<(usize, usize)> {
    let mut spans = Vec::with_capacity(lengths.len());
    let mut next = 0;
    for (k, &(s, e)) in docs.iter().enumerate() {
        let n = e - s;
        let longest = k + 1 == docs.len();
        let cap = (ratio * n as f64) as usize;
        let (mut sum, mut count) = (0, 0);
        while let Some(&l) = lengths.get(next + count) {
            // Spans and the separators between them fit; all but the longest also stay within `cap`.
            let fits = sum + l + count <= n && (longest || sum + l <= cap);
            if !fits {
                break;
            }
            sum += l;
            count += 1;
        }
        if count > 0 {
            spans.extend(place_spans(&lengths[next..next + count], s, e, rng));
            next += count;
        }
    }
    spans
}

/// Sentence-level spans of the whole sample (THUDM's gap-sentence objective): a sentence runs
/// from the previous sentence end (or the document start) through its own end token, `eos`
/// starts a new one without making the text before it a sentence, and the text after the last
/// end is one. In random order, sentences are taken until `mask_ratio` (or
/// `sentence_mask_ratio`) of the sample is covered, at least one. Adjacent sentences may both be
/// taken: each gets its own mask token.
pub(super) fn sentence_spans(
    text: &[u32],
    cfg: &ObjectiveConfig,
    ids: &ObjectiveTokens,
    ends: &dyn Fn(u32) -> bool,
    rng: &mut impl RngCore,
) -> Vec<(usize, usize)> {
    let n = text.len();
    let mut last = usize::from(text.first() == Some(&ids.cls));
    let mut sentences = Vec::new();
    for (i, &t) in text.iter().enumerate().skip(last) {
        // eos first: it is never masked, even where the tokenizer would call it a sentence end.
        if t == ids.eos {
            last = i + 1;
        } else if ends(t) {
            sentences.push((last, i + 1));
            last = i + 1;
        }
    }
    if last < n {
        sentences.push((last, n));
    }
    sentences.shuffle(rng);
    let ratio = cfg.sentence_mask_ratio.unwrap_or(cfg.mask_ratio);
    let target = (ratio * n as f64) as usize;
    let mut chosen = Vec::new();
    let mut covered = 0;
    for sp in sentences {
        chosen.push(sp);
        covered += sp.1 - sp.0;
        if covered >= target {
            break;
        }
    }
    chosen.sort_unstable();
    chosen
}

/// Sentence-level spans in one segment as wenhui made them before following THUDM
/// (`sentence_end_in_span = false`): whole sentences without their final punctuation, which
/// stays as the separator, every unterminated tail a sentence, in random order until
/// `mask_ratio` of the segment is covered (at least one token).
pub(super) fn segment_sentence_spans(
    text: &[u32],
    start: usize,
    end: usize,
    cfg: &ObjectiveConfig,
    ends: &dyn Fn(u32) -> bool,
    rng: &mut impl RngCore,
) -> Vec<(usize, usize)> {
    let n = end - start;
    let ratio = cfg.sentence_mask_ratio.unwrap_or(cfg.mask_ratio);
    let target = ((ratio * n as f64) as usize).max(1);
    let mut sentences = Vec::new();
    let mut s = start;
    for (i, &t) in text.iter().enumerate().take(end).skip(start) {
        if ends(t) {
            if i > s {
                sentences.push((s, i));
            }
            s = i + 1;
        }
    }
    if end > s {
        sentences.push((s, end));
    }
    sentences.shuffle(rng);
    let mut chosen = Vec::new();
    let mut covered = 0;
    for sp in sentences {
        if covered >= target {
            break;
        }
        // Two adjacent chosen sentences without punctuation between them would merge: skip.
        if chosen.iter().any(|&(a, b): &(usize, usize)| sp.0 == b || sp.1 == a) {
            continue;
        }
        covered += sp.1 - sp.0;
        chosen.push(sp);
    }
    chosen.sort_unstable();
    chosen
}
