//! The Turing-test statistic: how often the machine poem was taken for the human one.

use serde::Serialize;
use std::collections::BTreeMap;

/// The Wilson score interval of `k` successes in `n` trials at normal quantile `z` (1.96 for
/// 95%): `(low, high)`, `(0, 1)` when `n` is 0. Unlike the normal approximation it stays inside
/// [0, 1] and behaves for small `n` and rates near 0 or 1.
pub fn wilson(k: u64, n: u64, z: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (n, p) = (n as f64, k as f64 / n as f64);
    let z2 = z * z;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = z / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// The rate over one group of votes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FormRate {
    /// The form (`all` for the total).
    pub form: String,
    /// Votes cast.
    pub votes: u64,
    /// Votes where the visitor picked the machine poem as the human one.
    pub machine_chosen: u64,
    /// `machine_chosen / votes`; `None` (JSON null) without votes: 0/0 is no rate at all, and a 0
    /// would read as "the machine poem was never chosen".
    pub rate: Option<f64>,
    /// Wilson 95% interval of the rate.
    pub ci95: (f64, f64),
}

impl FormRate {
    fn new(form: &str, votes: u64, machine_chosen: u64) -> Self {
        let rate = (votes > 0).then(|| machine_chosen as f64 / votes as f64);
        Self { form: form.to_string(), votes, machine_chosen, rate, ci95: wilson(machine_chosen, votes, 1.96) }
    }
}

/// The results page: the total and each form's rate (the paper: 1,656 votes, 45.2%).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TuringSummary {
    /// All votes.
    pub total: FormRate,
    /// One row per form that has votes, by form name.
    pub by_form: Vec<FormRate>,
    /// The paper's figure, for comparison.
    pub paper: FormRate,
}

/// Summarizes votes given as `(form, machine_chosen)`.
pub fn summarize<'a>(votes: impl IntoIterator<Item = (&'a str, bool)>) -> TuringSummary {
    let mut per: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    let (mut n, mut k) = (0u64, 0u64);
    for (form, machine) in votes {
        let e = per.entry(form).or_default();
        e.0 += 1;
        e.1 += machine as u64;
        n += 1;
        k += machine as u64;
    }
    TuringSummary {
        total: FormRate::new("all", n, k),
        by_form: per.into_iter().map(|(f, (n, k))| FormRate::new(f, n, k)).collect(),
        // 45.2% of 1,656 votes (Zou et al., 2021): 748.5, reported rounded; 749 votes.
        paper: FormRate::new("paper (Zou et al., 2021)", 1656, 749),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_known_values() {
        // 5 of 10 at 95%: (0.2366, 0.7634).
        let (lo, hi) = wilson(5, 10, 1.96);
        assert!((lo - 0.2366).abs() < 1e-3 && (hi - 0.7634).abs() < 1e-3, "{lo} {hi}");
        let (lo, hi) = wilson(0, 10, 1.96);
        assert!(lo == 0.0 && (hi - 0.2775).abs() < 1e-3, "{hi}");
        assert_eq!(wilson(0, 0, 1.96), (0.0, 1.0));
    }

    #[test]
    fn summary_counts_per_form() {
        let s = summarize([("五言绝句", true), ("五言绝句", false), ("七言绝句", true)]);
        assert_eq!((s.total.votes, s.total.machine_chosen), (3, 2));
        assert_eq!(s.by_form.len(), 2);
        assert_eq!(s.by_form.iter().find(|r| r.form == "五言绝句").map(|r| r.votes), Some(2));
        assert!(s.paper.rate.is_some_and(|r| (r - 0.452).abs() < 1e-3));
        assert!(s.total.rate.is_some_and(|r| (r - 2.0 / 3.0).abs() < 1e-12));
    }

    #[test]
    fn no_votes_is_no_rate() -> Result<(), serde_json::Error> {
        let s = summarize([]);
        assert_eq!((s.total.votes, s.total.rate, s.total.ci95), (0, None, (0.0, 1.0)));
        assert!(s.by_form.is_empty());
        assert_eq!(serde_json::to_value(&s.total)?["rate"], serde_json::Value::Null);
        Ok(())
    }
}
