//! Exact match and token F1 of extractive / short answers, as the official SQuAD v1.1 evaluation
//! script (`evaluate-v1.1.py`) computes them, and a character-level variant for Chinese.
//!
//! **English ([`Lang::English`])**, the official `normalize_answer`: lowercase, remove ASCII
//! punctuation (Python's `string.punctuation`), remove the articles `a`, `an`, `the` as whole
//! words (`\b(a|an|the)\b`), collapse whitespace; tokens are the whitespace-separated words. EM
//! is the equality of the normalised strings; F1 is the harmonic mean of precision and recall of
//! the tokens in common counted as a multiset (`Counter(pred) & Counter(gold)`), and 0 when
//! nothing is in common (so also when both normalise to nothing: v1.1 scores that EM 1, F1 0;
//! SQuAD 2.0's script would give F1 1). Over several ground truths each score is the maximum.
//!
//! **Chinese ([`Lang::Chinese`])**: the English pipeline keeps a Chinese answer as one token (no
//! spaces) and its full-width punctuation (`，。《》`…) as text, so F1 would be EM. The variant
//! follows the segmentation of the CMRC 2018 and MLQA (`zh`) scripts: every CJK character
//! (unified ideographs with their extensions and compatibility block, and the Japanese kana) is a
//! token of its own, and the text between them is split at whitespace; before that the text is
//! lowercased, trimmed and stripped of all punctuation (ASCII and Unicode, which covers the CMRC
//! list of full-width marks); there are no articles. Choices, and why:
//! - F1 counts the common tokens as a multiset, as SQuAD and MLQA do, not CMRC 2018's longest
//!   common *substring* of tokens: one definition of F1 for both languages, and CMRC's exact
//!   numbers also depend on NLTK's `word_tokenize` for the non-Chinese runs, which wenhui does
//!   not reproduce (whitespace here, as MLQA). The two agree when what the answers share is one
//!   contiguous stretch of both (e.g. a prediction that contains the answer, or lies within it).
//! - EM compares the token sequences, so spaces between Chinese characters do not matter
//!   (`北京 大学` = `北京大学`), as in CMRC (which drops them with the punctuation) and MLQA.
//!
//! [`corpus`] gives the corpus scores as the scripts print them: mean EM × 100 and mean F1 × 100.

use std::collections::HashMap;

use crate::{Error, Result};

/// Which normalisation and tokenization the scores use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    /// SQuAD v1.1's: words, articles removed, ASCII punctuation removed.
    #[default]
    English,
    /// Character tokens for CJK text (see the module docs).
    Chinese,
}

/// Python's `string.punctuation`, which the official script removes.
fn is_ascii_punctuation(c: char) -> bool {
    c.is_ascii_punctuation()
}

/// Python's `str.isspace`, which `str.split()` splits at: Rust's whitespace plus the ASCII
/// separators U+001C–U+001F.
fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// A character of Python's `\w` once punctuation is gone: a letter or digit (underscore is
/// punctuation and already removed).
fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Unicode punctuation for the Chinese variant: the ASCII marks and the general categories P*
/// that the full-width and CJK marks belong to, approximated by the blocks that hold them.
fn is_any_punctuation(c: char) -> bool {
    if c.is_ascii_punctuation() {
        return true;
    }
    let u = c as u32;
    // General Punctuation (— … “ ” ‘ ’), CJK Symbols and Punctuation (、。《》「」), Halfwidth and
    // Fullwidth Forms' ASCII-like marks (，！？：；（）), small and vertical forms, and the Latin-1 marks.
    matches!(u, 0x2010..=0x2027 | 0x2030..=0x205E | 0x3001..=0x3003 | 0x3008..=0x3011 | 0x3014..=0x301F | 0x30FB | 0xFE10..=0xFE19 | 0xFE30..=0xFE6B)
        || matches!(u, 0xFF01..=0xFF0F | 0xFF1A..=0xFF20 | 0xFF3B..=0xFF40 | 0xFF5B..=0xFF65)
        || matches!(c, '¡' | '§' | '«' | '¶' | '·' | '»' | '¿' | '～' | '￥')
}

/// A character that is a token of its own in the Chinese variant: CJK unified ideographs (and
/// extensions A–H, compatibility ideographs) and the Japanese kana.
pub fn is_cjk(c: char) -> bool {
    matches!(c as u32, 0x3040..=0x30FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x323AF)
}

/// The official SQuAD v1.1 `normalize_answer`: lowercase, drop ASCII punctuation, drop the
/// articles a/an/the, collapse whitespace to single spaces (and trim).
pub fn normalize_answer(s: &str) -> String {
    let no_punct: String = s.to_lowercase().chars().filter(|c| !is_ascii_punctuation(*c)).collect();
    // `re.sub(r'\b(a|an|the)\b', ' ', text)`: an article matches only as a whole run of word
    // characters, so the text is walked in runs of word and non-word characters.
    let mut out = String::with_capacity(no_punct.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if matches!(run.as_str(), "a" | "an" | "the") {
            out.push(' ');
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in no_punct.chars() {
        if is_word(c) {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out.split(is_space).filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ")
}

/// The tokens an answer is scored on.
pub fn tokens(s: &str, lang: Lang) -> Vec<String> {
    match lang {
        Lang::English => normalize_answer(s).split(' ').filter(|w| !w.is_empty()).map(str::to_string).collect(),
        Lang::Chinese => {
            let text: String = s.to_lowercase().chars().filter(|c| !is_any_punctuation(*c)).collect();
            let mut out = Vec::new();
            let mut word = String::new();
            for c in text.chars() {
                if is_cjk(c) || is_space(c) {
                    if !word.is_empty() {
                        out.push(std::mem::take(&mut word));
                    }
                    if is_cjk(c) {
                        out.push(c.to_string());
                    }
                } else {
                    word.push(c);
                }
            }
            if !word.is_empty() {
                out.push(word);
            }
            out
        }
    }
}

/// F1 of two token lists: the official Counter-based overlap.
fn token_f1(pred: &[String], gold: &[String]) -> f64 {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for t in gold {
        *counts.entry(t.as_str()).or_default() += 1;
    }
    let mut same = 0usize;
    for t in pred {
        if let Some(n) = counts.get_mut(t.as_str()) {
            if *n > 0 {
                *n -= 1;
                same += 1;
            }
        }
    }
    if same == 0 {
        return 0.0;
    }
    let precision = same as f64 / pred.len() as f64;
    let recall = same as f64 / gold.len() as f64;
    2.0 * precision * recall / (precision + recall)
}

fn max_over<S: AsRef<str>>(ground_truths: &[S], score: impl Fn(&str) -> f64) -> Result<f64> {
    if ground_truths.is_empty() {
        return Err(Error::input("no ground-truth answer to score against"));
    }
    Ok(ground_truths.iter().map(|g| score(g.as_ref())).fold(f64::NEG_INFINITY, f64::max))
}

/// Exact match (1 or 0) of `prediction` against the best of `ground_truths` after normalisation;
/// an error when there is no ground truth.
pub fn exact_match_in<S: AsRef<str>>(prediction: &str, ground_truths: &[S], lang: Lang) -> Result<f64> {
    let pred = tokens(prediction, lang);
    max_over(ground_truths, |g| if tokens(g, lang) == pred { 1.0 } else { 0.0 })
}

/// Token F1 (0 to 1) of `prediction` against the best of `ground_truths`; an error when there is
/// no ground truth.
pub fn f1_in<S: AsRef<str>>(prediction: &str, ground_truths: &[S], lang: Lang) -> Result<f64> {
    let pred = tokens(prediction, lang);
    max_over(ground_truths, |g| token_f1(&pred, &tokens(g, lang)))
}

/// SQuAD v1.1 exact match (English normalisation): 1 when the normalised prediction equals a
/// normalised ground truth, else 0.
pub fn exact_match<S: AsRef<str>>(prediction: &str, ground_truths: &[S]) -> Result<f64> {
    exact_match_in(prediction, ground_truths, Lang::English)
}

/// SQuAD v1.1 token F1 (English normalisation), the maximum over the ground truths.
pub fn f1<S: AsRef<str>>(prediction: &str, ground_truths: &[S]) -> Result<f64> {
    f1_in(prediction, ground_truths, Lang::English)
}

/// Corpus scores as the official script prints them.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct SquadScores {
    /// Mean exact match × 100.
    pub exact_match: f64,
    /// Mean F1 × 100.
    pub f1: f64,
    /// Questions scored.
    pub count: usize,
}

/// Mean EM × 100 and mean F1 × 100 over `(prediction, ground truths)` pairs; an error when there
/// are none, or a question has no ground truth (naming it, from 1).
pub fn corpus<'a, S: AsRef<str> + 'a>(items: impl IntoIterator<Item = (&'a str, &'a [S])>, lang: Lang) -> Result<SquadScores> {
    let (mut em, mut f, mut n) = (0.0, 0.0, 0usize);
    for (i, (pred, golds)) in items.into_iter().enumerate() {
        let at = |e: Error| Error::input(format!("question {}: {}", i + 1, e.to_string().trim_start_matches("invalid input: ")));
        em += exact_match_in(pred, golds, lang).map_err(at)?;
        f += f1_in(pred, golds, lang).map_err(at)?;
        n += 1;
    }
    if n == 0 {
        return Err(Error::input("no answers to score"));
    }
    Ok(SquadScores { exact_match: 100.0 * em / n as f64, f1: 100.0 * f / n as f64, count: n })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn normalisation_is_the_official_one() {
        assert_eq!(normalize_answer("the Eiffel Tower!"), "eiffel tower");
        assert_eq!(normalize_answer("  A  cat,  an apple\tand THE  theory "), "cat apple and theory");
        // Articles go only as whole words; punctuation goes first, so "the-end" → "theend".
        assert_eq!(normalize_answer("then anthem the-end (a)"), "then anthem theend");
        // ASCII punctuation only: other marks stay, as in Python's string.punctuation.
        assert_eq!(normalize_answer("«Café» – 1,000"), "«café» – 1000");
        assert_eq!(normalize_answer("the"), "");
        // Python's isspace includes the ASCII separators.
        assert_eq!(normalize_answer("a\u{1f}b"), "b");
    }

    #[test]
    fn english_scores_match_the_official_script() -> Result<()> {
        // Values as evaluate-v1.1.py computes them.
        assert_eq!(exact_match("the Eiffel Tower!", &["Eiffel tower"])?, 1.0);
        assert_eq!(f1("the Eiffel Tower!", &["Eiffel tower"])?, 1.0);
        // pred {eiffel, tower, in, paris}, gold {eiffel, tower}: P 2/4, R 2/2, F1 2/3.
        assert_eq!(exact_match("Eiffel Tower in Paris", &["the Eiffel Tower"])?, 0.0);
        assert!(close(f1("Eiffel Tower in Paris", &["the Eiffel Tower"])?, 2.0 / 3.0));
        // The maximum over ground truths: 0 against the first, 1 against the second.
        assert_eq!(exact_match("Denver Broncos", &["Carolina Panthers", "Denver Broncos"])?, 1.0);
        // pred {denver, broncos, won}, gold {broncos}: P 1/3, R 1, F1 0.5.
        assert!(close(f1("Denver Broncos won", &["Broncos", "Carolina"])?, 0.5));
        // The Counter intersection counts repeats once per match: pred {new, new, york}, gold
        // {new, york, city}: common {new: 1, york: 1} = 2, P 2/3, R 2/3, F1 2/3.
        assert!(close(f1("new new york", &["New York City"])?, 2.0 / 3.0));
        // Nothing in common, and both empty after normalisation: F1 0 in v1.1, EM 1.
        assert_eq!(f1("Paris", &["London"])?, 0.0);
        assert_eq!((exact_match("The", &["an"])?, f1("The", &["an"])?), (1.0, 0.0));
        assert!(exact_match::<&str>("x", &[]).is_err() && f1::<String>("x", &[]).is_err());
        Ok(())
    }

    #[test]
    fn chinese_scores_count_characters() -> Result<()> {
        assert_eq!(tokens("《北京大学》, 2019年 Peking U.", Lang::Chinese), ["北", "京", "大", "学", "2019", "年", "peking", "u"]);
        // Spaces and punctuation aside, the same answer.
        assert_eq!(exact_match_in("北京 大学。", &["北京大学"], Lang::Chinese)?, 1.0);
        // pred 北京大学 (4), gold 清华大学 (4): common {大, 学} = 2, P = R = 1/2, F1 1/2.
        assert!(close(f1_in("北京大学", &["清华大学"], Lang::Chinese)?, 0.5));
        // pred 1919年5月4日 → [1919, 年, 5, 月, 4, 日] (6); gold 1919年 → [1919, 年] (2):
        // common 2, P 1/3, R 1, F1 0.5.
        assert!(close(f1_in("1919年5月4日", &["1919年", "五四"], Lang::Chinese)?, 0.5));
        // The English pipeline keeps the whole answer as one token: no partial credit.
        assert_eq!(f1("北京大学", &["清华大学"])?, 0.0);
        Ok(())
    }

    #[test]
    fn corpus_scores_are_means_times_100() -> Result<()> {
        let golds: [Vec<&str>; 3] = [vec!["Eiffel tower"], vec!["the Eiffel Tower"], vec!["London"]];
        let preds = ["the Eiffel Tower!", "Eiffel Tower in Paris", "Paris"];
        let s = corpus(preds.iter().copied().zip(golds.iter().map(Vec::as_slice)), Lang::English)?;
        // EM (1 + 0 + 0) / 3, F1 (1 + 2/3 + 0) / 3.
        assert!(close(s.exact_match, 100.0 / 3.0) && close(s.f1, 100.0 * (5.0 / 3.0) / 3.0) && s.count == 3, "{s:?}");
        let empty: Vec<(&str, &[&str])> = Vec::new();
        assert!(corpus(empty, Lang::English).is_err());
        let none: [&str; 0] = [];
        let e = corpus([("a", &golds[0][..]), ("b", &none[..])], Lang::English).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("question 2") && e.contains("no ground-truth"), "{e}");
        Ok(())
    }
}
