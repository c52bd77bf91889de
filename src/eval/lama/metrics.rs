//! Ranking metrics of knowledge probing: the gold object's rank among the **allowed vocabulary**
//! only (P-tuning's restricted arg-max, spec ptuning §2.3), P@1, P@10, MRR, and the macro average
//! over relations (the LAMA convention for the paper's numbers).

/// Rank (1 = best) of `gold` among `allowed` by `logits`. Ids scoring higher than the gold one
/// come before it; ties are broken by the smaller id first (a deterministic arg-max). `None`
/// when `gold` is not allowed or an id is outside `logits`.
pub fn restricted_rank(logits: &[f32], allowed: &[u32], gold: u32) -> Option<usize> {
    let g = *logits.get(gold as usize)?;
    if !allowed.contains(&gold) {
        return None;
    }
    let mut before = 0;
    for &id in allowed {
        let s = *logits.get(id as usize)?;
        if id != gold && (s > g || (s == g && id < gold)) {
            before += 1;
        }
    }
    Some(before + 1)
}

/// The `k` best allowed ids by `logits`, best first (ties: smaller id first).
pub fn restricted_top_k(logits: &[f32], allowed: &[u32], k: usize) -> Vec<u32> {
    let mut ids: Vec<u32> = allowed.iter().copied().filter(|&i| (i as usize) < logits.len()).collect();
    ids.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]).then(a.cmp(&b)));
    ids.truncate(k);
    ids
}

/// Probing scores of one relation (or their macro average).
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Scores {
    /// Facts scored (for a macro average: the total over relations).
    pub n: usize,
    /// Share of facts whose gold object ranks first.
    pub p_at_1: f64,
    /// Share of facts whose gold object is in the top 10.
    pub p_at_10: f64,
    /// Mean reciprocal rank.
    pub mrr: f64,
}

impl Scores {
    /// Scores from the gold ranks (1-based) of every fact; all zero for no facts.
    pub fn from_ranks(ranks: &[usize]) -> Self {
        let n = ranks.len();
        if n == 0 {
            return Self::default();
        }
        let share = |f: &dyn Fn(usize) -> f64| ranks.iter().map(|&r| f(r)).sum::<f64>() / n as f64;
        Self {
            n,
            p_at_1: share(&|r| f64::from(u8::from(r == 1))),
            p_at_10: share(&|r| f64::from(u8::from(r <= 10))),
            mrr: share(&|r| 1.0 / r.max(1) as f64),
        }
    }

    /// The unweighted mean over relations with at least one fact; `n` is their total.
    pub fn macro_average(per_relation: &[Scores]) -> Self {
        let used: Vec<&Scores> = per_relation.iter().filter(|s| s.n > 0).collect();
        if used.is_empty() {
            return Self::default();
        }
        let k = used.len() as f64;
        Self {
            n: used.iter().map(|s| s.n).sum(),
            p_at_1: used.iter().map(|s| s.p_at_1).sum::<f64>() / k,
            p_at_10: used.iter().map(|s| s.p_at_10).sum::<f64>() / k,
            mrr: used.iter().map(|s| s.mrr).sum::<f64>() / k,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_only_counts_allowed_ids() {
        // id:        0    1    2    3    4    5
        let logits = [9.0, 1.0, 5.0, 7.0, 5.0, 8.0];
        // Unrestricted, id 2 would rank 4th (after 0, 5, 3); 0 and 5 are not allowed.
        assert_eq!(restricted_rank(&logits, &[1, 2, 3, 4], 2), Some(2));
        assert_eq!(restricted_rank(&logits, &[1, 2, 4], 2), Some(1));
        // A tie (ids 2 and 4 both 5.0): the smaller id wins.
        assert_eq!(restricted_rank(&logits, &[1, 2, 4], 4), Some(2));
        assert_eq!(restricted_rank(&logits, &[1, 2, 4], 3), None, "gold outside the allowed vocabulary");
        assert_eq!(restricted_rank(&logits, &[1, 9], 1), None, "allowed id outside the logits");
        assert_eq!(restricted_top_k(&logits, &[1, 2, 3, 4], 3), vec![3, 2, 4]);
        assert_eq!(restricted_top_k(&logits, &[0, 5], 10), vec![0, 5]);
    }

    #[test]
    fn p_at_k_and_mrr_on_hand_made_ranks() {
        let s = Scores::from_ranks(&[1, 2, 10, 11, 1]);
        assert_eq!(s.n, 5);
        assert!((s.p_at_1 - 0.4).abs() < 1e-12);
        assert!((s.p_at_10 - 0.8).abs() < 1e-12);
        let mrr = (1.0 + 0.5 + 0.1 + 1.0 / 11.0 + 1.0) / 5.0;
        assert!((s.mrr - mrr).abs() < 1e-12);
        assert_eq!(Scores::from_ranks(&[]), Scores::default());
    }

    #[test]
    fn macro_average_weights_relations_equally() {
        let a = Scores::from_ranks(&[1, 1, 1, 2]); // P@1 0.75 over 4 facts
        let b = Scores::from_ranks(&[3]); // P@1 0 over 1 fact
        let m = Scores::macro_average(&[a, b, Scores::default()]);
        assert_eq!(m.n, 5);
        assert!((m.p_at_1 - 0.375).abs() < 1e-12, "macro, not micro (0.6)");
        assert!((m.p_at_10 - 1.0).abs() < 1e-12);
    }
}
