//! The two classic language-model objectives next to GLM's blank infilling, built from the same
//! text samples (`[CLS]` + documents separated by `eos`, see [`super::stream`]):
//!
//! * **masked LM** (BERT, Devlin et al. 2019): 15% of the document tokens are chosen (at least
//!   one per sample); of those 80% become `[MASK]`, 10% a random token and 10% stay; the loss is
//!   on the chosen positions only. `[CLS]` and `eos` are never chosen.
//! * **causal LM** (GPT-2): the leading `[CLS]` is dropped (a GPT-2 prompt starts with its first
//!   word), then every token predicts the next one.
//!
//! Both produce a [`Sample`] with positions `0..n`, block positions 0 and `sep = n`, so the
//! batching, padding and resumable cursor of [`super::stream::BatchStream`] serve all objectives.

use super::blank::{Objective, ObjectiveTokens, Sample};
use rand::{Rng, RngCore};

/// Which family of objectives a stream produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LmObjective {
    /// GLM blank infilling (the [`super::blank::ObjectiveConfig`] mix).
    #[default]
    Blank,
    /// BERT masked LM; random replacements are drawn from ids `0..random_below`.
    Mlm {
        /// Exclusive upper bound of the random replacement ids (the tokenizer's vocabulary).
        random_below: u32,
    },
    /// GPT-2 next-token prediction.
    Causal,
}

/// Share of document tokens a masked-LM sample predicts.
pub const MLM_RATIO: f64 = 0.15;

/// A masked-LM sample of `text`: `ratio` of its document tokens (at least one when it has any)
/// are chosen uniformly; each becomes `ids.mask` with probability 0.8, a random id below
/// `random_below` with 0.1 (when `random_below` is `None`, a random token of `text` itself) and
/// stays with 0.1. Targets are the original tokens, the loss mask is 1 on chosen positions.
pub fn mlm_sample(text: &[u32], ids: &ObjectiveTokens, ratio: f64, random_below: Option<u32>, rng: &mut impl RngCore) -> Sample {
    let n = text.len();
    let candidates: Vec<usize> = (0..n).filter(|&i| text[i] != ids.eos && !(i == 0 && text[i] == ids.cls)).collect();
    let k = if candidates.is_empty() { 0 } else { ((ratio * candidates.len() as f64).round() as usize).clamp(1, candidates.len()) };
    let chosen = rand::seq::index::sample(rng, candidates.len(), k).into_vec();
    let mut tokens = text.to_vec();
    let mut loss_mask = vec![0f32; n];
    for c in chosen {
        let i = candidates[c];
        loss_mask[i] = 1.0;
        let r: f64 = rng.random();
        if r < 0.8 {
            tokens[i] = ids.mask;
        } else if r < 0.9 {
            tokens[i] = match random_below {
                Some(v) if v > 0 => rng.random_range(0..v),
                _ => text[rng.random_range(0..n)],
            };
        }
    }
    Sample {
        tokens,
        targets: text.to_vec(),
        loss_mask,
        positions: (0..n as u32).collect(),
        blocks: vec![0; n],
        sep: n,
        spans: vec![],
        objective: Objective::Mlm,
    }
}

/// A causal-LM sample of `text`: the leading `[CLS]` dropped, inputs `t[..n-1]`, targets
/// `t[1..]`, loss on every position.
pub fn causal_sample(text: &[u32], ids: &ObjectiveTokens) -> Sample {
    let body = match text.first() {
        Some(&c) if c == ids.cls => &text[1..],
        _ => text,
    };
    let n = body.len().saturating_sub(1);
    let (tokens, targets) = if n == 0 { (body.to_vec(), body.to_vec()) } else { (body[..n].to_vec(), body[1..].to_vec()) };
    let len = tokens.len();
    Sample {
        tokens,
        targets,
        loss_mask: vec![if n == 0 { 0.0 } else { 1.0 }; len],
        positions: (0..len as u32).collect(),
        blocks: vec![0; len],
        sep: len,
        spans: vec![],
        objective: Objective::Causal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    const IDS: ObjectiveTokens = ObjectiveTokens { cls: 1, eos: 2, mask: 3, smask: 4, gmask: 5, sop: 6, eop: 7, dblock: None };

    #[test]
    fn mlm_masks_fifteen_percent_with_80_10_10() {
        let mut text = vec![IDS.cls];
        text.extend((0..199).map(|i| 100 + (i % 50)));
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let (mut chosen, mut masked, mut kept, mut total) = (0usize, 0usize, 0usize, 0usize);
        for _ in 0..200 {
            let s = mlm_sample(&text, &IDS, MLM_RATIO, Some(1000), &mut rng);
            assert_eq!(s.targets, text);
            assert_eq!(s.loss_mask[0], 0.0, "[CLS] is never chosen");
            assert_eq!(s.tokens[0], IDS.cls);
            for ((&m, &t), &orig) in s.loss_mask.iter().zip(&s.tokens).zip(&text) {
                if m > 0.0 {
                    chosen += 1;
                    masked += usize::from(t == IDS.mask);
                    kept += usize::from(t == orig);
                } else {
                    assert_eq!(t, orig, "unchosen tokens stay");
                }
            }
            total += 199;
        }
        let share = chosen as f64 / total as f64;
        assert!((share - 0.15).abs() < 0.005, "chosen share {share}");
        let m = masked as f64 / chosen as f64;
        let k = kept as f64 / chosen as f64;
        assert!((m - 0.8).abs() < 0.02, "mask share {m}");
        assert!((k - 0.1).abs() < 0.02, "kept share {k} (random hits of the same id are rare)");
    }

    #[test]
    fn mlm_never_chooses_separators_and_picks_at_least_one() {
        let text = [IDS.cls, 10, IDS.eos, 11, IDS.eos];
        for seed in 0..20 {
            let s = mlm_sample(&text, &IDS, MLM_RATIO, None, &mut ChaCha8Rng::seed_from_u64(seed));
            let picked: Vec<usize> = (0..5).filter(|&i| s.loss_mask[i] > 0.0).collect();
            assert_eq!(picked.len(), 1);
            assert!(picked[0] == 1 || picked[0] == 3);
        }
    }

    #[test]
    fn causal_drops_cls_and_shifts() {
        let s = causal_sample(&[IDS.cls, 10, 11, 12, IDS.eos, 13], &IDS);
        assert_eq!(s.tokens, vec![10, 11, 12, IDS.eos]);
        assert_eq!(s.targets, vec![11, 12, IDS.eos, 13]);
        assert_eq!(s.loss_mask, vec![1.0; 4]);
        assert_eq!(s.positions, vec![0, 1, 2, 3]);
        assert_eq!(s.sep, 4);
    }
}
