//! Referent tasks: SuperGLUE WSC as a ranking of candidate referents.
//!
//! A WSC line asks whether a span (`span1_text`) is what a pronoun refers to. The task's one
//! verbalizer word names that span (`words = ["{span1_text}"]`), scored as a multi-token answer
//! (length-normalised log-prob, as GLM does). The span is judged the referent — the verbalizer's
//! label — when it scores better than every other candidate, else the task's `referent`
//! label (`"false"`) is predicted. Candidates, GLM's `--wsc-negative` idea without a parser:
//!
//! 1. the spans of the other lines about the same pronoun of the same text (the reader's group);
//! 2. noun phrases read off the text: a determiner or possessive and the word after it
//!    (`the lawyer`, `his son`), and capitalised words that are not sentence-initial function
//!    words (`Bernard`, `Edward`); the pronoun itself is skipped.

use std::collections::{BTreeMap, HashMap};

use super::classify::{classify_named, example_name, ClassifyOptions, Prediction};
use super::fewglue::Example;
use super::task::ClozeTask;
use crate::model::Backbone;
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

/// Most text-derived candidates per example.
const MAX_TEXT_CANDIDATES: usize = 8;

const DETERMINERS: [&str; 12] = ["the", "a", "an", "his", "her", "their", "its", "my", "our", "your", "this", "that"];
const FUNCTION_WORDS: [&str; 24] = [
    "The", "A", "An", "It", "He", "She", "They", "We", "I", "You", "When", "But", "After", "Before", "Because", "Since", "If", "As", "His",
    "Her", "Their", "This", "That", "So",
];

/// The field a referent task's verbalizer word fills in (`{span1_text}` → `span1_text`).
pub fn answer_field(task: &ClozeTask) -> Result<String> {
    let word = task.spec.verbalizer.first().and_then(|v| v.words.first()).map(String::as_str).unwrap_or("");
    let start = word.find('{');
    let end = word.find('}');
    match (start, end) {
        (Some(s), Some(e)) if e > s + 1 => Ok(word[s + 1..e].trim().to_string()),
        _ => Err(Error::input(format!(
            "task `{}`: a referent task's verbalizer word must name the candidate field, e.g. \"{{span1_text}}\"; got `{word}`",
            task.spec.name
        ))),
    }
}

/// Checks a SuperGLUE WSC line given as one JSON object (`wenhui classify`, `/v1/classify`):
/// its `text` and spans are not empty and the span indices point at words of the text (the
/// reader marks the pronoun by its word index, and an index past the text would mark nothing).
/// A line without a `target` object is left to the task's other readings.
pub fn check_wsc_line(v: &serde_json::Value) -> Result<()> {
    let Some(target) = v.get("target").and_then(serde_json::Value::as_object) else { return Ok(()) };
    let text = v.get("text").and_then(serde_json::Value::as_str).unwrap_or_default();
    if text.trim().is_empty() {
        return Err(Error::input("`text` is empty: give the WSC sentence, with the pronoun and the span among its words"));
    }
    for span in ["span1_text", "span2_text"] {
        if target.get(span).and_then(serde_json::Value::as_str).is_some_and(|s| s.trim().is_empty()) {
            return Err(Error::input(format!("`target.{span}` is empty: give the words of the text it names")));
        }
    }
    let words = text.split_whitespace().count();
    for index in ["span1_index", "span2_index"] {
        if let Some(i) = target.get(index).and_then(serde_json::Value::as_u64).filter(|&i| i >= words as u64) {
            return Err(Error::input(format!(
                "`target.{index}` is {i}, but `text` has only {words} words (counted from 0, split at whitespace); give the index \
                 of the span's first word"
            )));
        }
    }
    Ok(())
}

fn clean(word: &str) -> String {
    word.trim_matches(|c: char| !c.is_alphanumeric() && c != '\'' && c != '-').to_string()
}

/// Noun phrases of `text` (see the module docs), excluding the `*marked*` pronoun.
pub fn text_candidates(text: &str) -> Vec<String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut out: Vec<String> = Vec::new();
    let push = |c: String, out: &mut Vec<String>| {
        if !c.is_empty() && !out.iter().any(|o| o.eq_ignore_ascii_case(&c)) {
            out.push(c);
        }
    };
    for (i, w) in words.iter().enumerate() {
        if w.starts_with('*') {
            continue;
        }
        let word = clean(w);
        if DETERMINERS.contains(&word.to_ascii_lowercase().as_str()) {
            if let Some(next) = words.get(i + 1).filter(|n| !n.starts_with('*')) {
                let noun = clean(next);
                if noun.chars().next().is_some_and(char::is_alphabetic) {
                    push(format!("{} {noun}", word.to_ascii_lowercase()), &mut out);
                }
            }
        } else if word.chars().next().is_some_and(char::is_uppercase) && !FUNCTION_WORDS.contains(&word.as_str()) {
            push(word, &mut out);
        }
    }
    out.truncate(MAX_TEXT_CANDIDATES);
    out
}

/// Predictions of a referent task: per example, labels `[referent label, negative label]` with
/// probabilities softmax(own score, best other candidate's score).
pub fn classify_referents(
    model: &dyn Backbone,
    tok: &Tokenizer,
    task: &ClozeTask,
    examples: &[Example],
    opts: &ClassifyOptions,
) -> Result<Vec<Prediction>> {
    let negative = task.spec.referent.clone().ok_or_else(|| Error::input(format!("task `{}` is not a referent task", task.spec.name)))?;
    let field = answer_field(task)?;
    let span = |e: &Example| -> Result<String> {
        e.fields.get(&field).cloned().ok_or_else(|| Error::input(format!("an example has no field `{field}` (the candidate referent)")))
    };
    // Candidates per group (an example without a group is its own group).
    let key = |i: usize, e: &Example| e.group.clone().unwrap_or_else(|| format!("#{i}"));
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (i, e) in examples.iter().enumerate() {
        let s = span(e)?;
        let list = groups.entry(key(i, e)).or_default();
        if !list.iter().any(|c| c.eq_ignore_ascii_case(&s)) {
            list.push(s);
        }
    }
    let mut variants: Vec<BTreeMap<String, String>> = Vec::new();
    // The example each variant comes from, and its candidate, for errors.
    let mut owner: Vec<(usize, String)> = Vec::new();
    let mut index: HashMap<(String, String), usize> = HashMap::new();
    for (i, e) in examples.iter().enumerate() {
        let g = key(i, e);
        let mut cands = groups.get(&g).cloned().unwrap_or_default();
        for c in text_candidates(e.fields.get("text").map(String::as_str).unwrap_or("")) {
            if !cands.iter().any(|o| o.eq_ignore_ascii_case(&c)) {
                cands.push(c);
            }
        }
        for c in cands {
            if let std::collections::hash_map::Entry::Vacant(v) = index.entry((g.clone(), c.clone())) {
                v.insert(variants.len());
                let mut f = e.fields.clone();
                f.insert(field.clone(), c.clone());
                variants.push(f);
                owner.push((i, c));
            }
        }
    }
    let name = |k: usize| match owner.get(k) {
        Some((i, c)) => format!("{}, candidate referent `{c}`", example_name(examples, *i)),
        None => format!("candidate {}", k + 1),
    };
    let scores: Vec<f64> = classify_named(model, tok, task, &variants, opts, &name)?.into_iter().map(|p| p.scores[0]).collect();
    let positive = task.labels()[0].clone();
    examples
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let g = key(i, e);
            let own_span = span(e)?;
            let own = index.get(&(g.clone(), own_span.clone())).map_or(f64::NEG_INFINITY, |&k| scores[k]);
            let other = index
                .iter()
                .filter(|((kg, c), _)| *kg == g && !c.eq_ignore_ascii_case(&own_span))
                .map(|(_, &k)| scores[k])
                .fold(f64::NEG_INFINITY, f64::max);
            let (a, b) = if other.is_finite() { (own, other) } else { (0.0, f64::NEG_INFINITY) };
            let m = a.max(b);
            let (ea, eb) = ((a - m).exp(), (b - m).exp());
            Ok(Prediction {
                labels: vec![positive.clone(), negative.clone()],
                scores: vec![own, other],
                probs: vec![ea / (ea + eb), eb / (ea + eb)],
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noun_phrases_and_names_skip_the_pronoun() {
        let text =
            "Mr. Moncrieff visited Chester 's apartment, thinking that it belonged to his son Edward . The result was that *he* left";
        let c = text_candidates(text);
        for want in ["Mr", "Moncrieff", "Chester", "his son", "Edward"] {
            assert!(c.iter().any(|x| x == want), "{want} missing from {c:?}");
        }
        assert!(!c.iter().any(|x| x == "The" || x == "he"), "{c:?}");
        assert!(c.len() <= MAX_TEXT_CANDIDATES);
    }
}
