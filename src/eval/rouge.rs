//! ROUGE-1, ROUGE-2 and ROUGE-L (precision, recall, F1), computed as Google's `rouge-score`
//! package (PyPI, `rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"])`) does; checked to
//! 1e-6 against it on `tests/fixtures/rouge/pairs.jsonl` (made by
//! `scripts/make-rouge-fixture.py`).
//!
//! Tokenization ([`RougeTokenizer`]):
//! * `Default` — rouge-score's own: lowercase, every run of characters outside `[a-z0-9]` becomes a
//!   space, split on whitespace. This drops every non-ASCII letter, so it suits English only.
//!   **No stemmer**: this equals `use_stemmer=False` (rouge-score's default); scores with
//!   `use_stemmer=True` (NLTK's Porter stemmer on tokens longer than 3) are not reproduced.
//! * `Chars` — character-level, the custom for Chinese: every non-whitespace character is one
//!   token, nothing lowercased or removed (punctuation counts). Equals rouge-score with a
//!   `tokenizer=` whose `tokenize(text)` returns `[c for c in text if not c.isspace()]`.
//!
//! ROUGE-N counts clipped n-gram overlaps; ROUGE-L uses the longest common subsequence of the two
//! token lists (not the summary-level `rougeLsum`). Empty predictions or targets score 0. A
//! corpus score is the plain mean of the per-pair scores (rouge-score's `BootstrapAggregator`
//! reports the same mean as its `mid` only approximately, by resampling).

use std::collections::HashMap;

/// How texts are split into tokens (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RougeTokenizer {
    /// rouge-score's default English tokenizer without stemming.
    #[default]
    Default,
    /// One token per non-whitespace character (Chinese).
    Chars,
}

impl RougeTokenizer {
    /// The tokens of `text`.
    pub fn tokenize(self, text: &str) -> Vec<String> {
        match self {
            Self::Default => {
                let lowered = text.to_lowercase();
                let cleaned: String = lowered.chars().map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() { c } else { ' ' }).collect();
                cleaned.split_whitespace().map(String::from).collect()
            }
            Self::Chars => text.chars().filter(|c| !c.is_whitespace()).map(String::from).collect(),
        }
    }

    /// `chars` for text that is mostly CJK, `default` otherwise.
    pub fn guess(texts: &[&str]) -> Self {
        let (mut cjk, mut total) = (0usize, 0usize);
        for t in texts {
            for c in t.chars().filter(|c| !c.is_whitespace()) {
                total += 1;
                if ('\u{3400}'..='\u{9FFF}').contains(&c) || ('\u{F900}'..='\u{FAFF}').contains(&c) {
                    cjk += 1;
                }
            }
        }
        if total > 0 && cjk * 2 >= total {
            Self::Chars
        } else {
            Self::Default
        }
    }
}

/// Precision, recall and F1 of one ROUGE type.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Score {
    /// Overlap / prediction size.
    pub precision: f64,
    /// Overlap / target size.
    pub recall: f64,
    /// Harmonic mean of the two (0 when both are 0).
    pub fmeasure: f64,
}

impl Score {
    fn new(precision: f64, recall: f64) -> Self {
        let fmeasure = if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 };
        Self { precision, recall, fmeasure }
    }
}

/// ROUGE-1, ROUGE-2 and ROUGE-L of one pair.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct RougeScores {
    /// Unigram overlap.
    pub rouge1: Score,
    /// Bigram overlap.
    pub rouge2: Score,
    /// Longest common subsequence.
    pub rouge_l: Score,
}

fn ngrams(tokens: &[String], n: usize) -> HashMap<&[String], usize> {
    let mut out = HashMap::new();
    if tokens.len() >= n {
        for w in tokens.windows(n) {
            *out.entry(w).or_insert(0) += 1;
        }
    }
    out
}

/// ROUGE-N of token lists; `n` must be at least 1 (there are no 0-grams to count).
pub fn rouge_n(prediction: &[String], target: &[String], n: usize) -> crate::Result<Score> {
    if n == 0 {
        return Err(crate::Error::input("ROUGE-0 is not a score: n counts the tokens of each n-gram, so it must be at least 1"));
    }
    Ok(rouge_n_of(prediction, target, n))
}

/// [`rouge_n`] for `n ≥ 1`.
fn rouge_n_of(prediction: &[String], target: &[String], n: usize) -> Score {
    let p = ngrams(prediction, n);
    let t = ngrams(target, n);
    let overlap: usize = t.iter().map(|(g, &c)| c.min(p.get(g).copied().unwrap_or(0))).sum();
    let (pn, tn) = (p.values().sum::<usize>(), t.values().sum::<usize>());
    Score::new(overlap as f64 / pn.max(1) as f64, overlap as f64 / tn.max(1) as f64)
}

/// Length of the longest common subsequence.
pub fn lcs_len(a: &[String], b: &[String]) -> usize {
    let mut prev = vec![0usize; b.len() + 1];
    let mut cur = vec![0usize; b.len() + 1];
    for x in a {
        for (j, y) in b.iter().enumerate() {
            cur[j + 1] = if x == y { prev[j] + 1 } else { cur[j].max(prev[j + 1]) };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// ROUGE-L of token lists.
pub fn rouge_l(prediction: &[String], target: &[String]) -> Score {
    if prediction.is_empty() || target.is_empty() {
        return Score::default();
    }
    let l = lcs_len(prediction, target) as f64;
    Score::new(l / prediction.len() as f64, l / target.len() as f64)
}

/// All three scores of `prediction` against `target`.
pub fn score(prediction: &str, target: &str, tokenizer: RougeTokenizer) -> RougeScores {
    let p = tokenizer.tokenize(prediction);
    let t = tokenizer.tokenize(target);
    RougeScores { rouge1: rouge_n_of(&p, &t, 1), rouge2: rouge_n_of(&p, &t, 2), rouge_l: rouge_l(&p, &t) }
}

/// Corpus means of the per-pair F1 scores, ×100 as papers report them.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct RougeSummary {
    /// Mean ROUGE-1 F1 × 100.
    pub rouge1: f64,
    /// Mean ROUGE-2 F1 × 100.
    pub rouge2: f64,
    /// Mean ROUGE-L F1 × 100.
    pub rouge_l: f64,
    /// Pairs averaged.
    pub pairs: usize,
}

/// Mean F1 (× 100) over pairs of `(prediction, target)`.
pub fn corpus_scores<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>, tokenizer: RougeTokenizer) -> RougeSummary {
    let mut s = RougeSummary::default();
    for (p, t) in pairs {
        let r = score(p, t, tokenizer);
        s.rouge1 += r.rouge1.fmeasure;
        s.rouge2 += r.rouge2.fmeasure;
        s.rouge_l += r.rouge_l.fmeasure;
        s.pairs += 1;
    }
    let n = s.pairs.max(1) as f64;
    RougeSummary { rouge1: 100.0 * s.rouge1 / n, rouge2: 100.0 * s.rouge2 / n, rouge_l: 100.0 * s.rouge_l / n, pairs: s.pairs }
}
