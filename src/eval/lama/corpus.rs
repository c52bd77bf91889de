//! A knowledge corpus made of the LAMA facts themselves (`wenhui probe corpus`), so that a model
//! wenhui pretrains can know them: every fact of every split (train, dev, test, or the test
//! stand-in) is written `repeats` times with ParaRel paraphrases of its relation, **never the
//! manual LAMA template** (the first pattern of each file, and any pattern equal to the
//! template up to spacing), as for a model pretrained on Wikipedia. Neutral distractor sentences
//! about the same entities are mixed in; the sentences are shuffled (seeded) into documents of a
//! few sentences, one sentence per line, documents separated by a blank line: the `blocks` input
//! of `wenhui data prepare` and `wenhui tokenizer train`.

use super::data::{fallback_patterns, fill, paraphrases, Fact, LamaDir};
use crate::{Error, Result};
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::Path;

/// How the corpus is made.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CorpusOptions {
    /// Sentences per fact, each with a different paraphrase while there are enough.
    pub repeats: usize,
    /// Seed of pattern choice, distractors and order.
    pub seed: u64,
    /// Distractor sentences per fact sentence.
    pub distractor_ratio: f64,
    /// Sentences per document.
    pub sentences_per_doc: usize,
    /// Only these relations (`None` = every relation with facts).
    pub relations: Option<Vec<String>>,
}

impl Default for CorpusOptions {
    fn default() -> Self {
        Self { repeats: 4, seed: 0, distractor_ratio: 0.1, sentences_per_doc: 8, relations: None }
    }
}

/// What went into the corpus.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CorpusReport {
    /// Distinct facts stated, per relation.
    pub facts: BTreeMap<String, usize>,
    /// Paraphrase patterns used, per relation.
    pub patterns: BTreeMap<String, usize>,
    /// Relations whose patterns are the built-in fallback (no ParaRel file).
    pub fallback: Vec<String>,
    /// Relations left out: no paraphrase at all.
    pub skipped: Vec<String>,
    /// Fact sentences written.
    pub fact_sentences: usize,
    /// Distractor sentences written.
    pub distractors: usize,
    /// Documents written.
    pub documents: usize,
}

/// Sentences that state nothing about a relation; `[X]` is an entity of the corpus.
const DISTRACTORS: &[&str] = &[
    "Much has been written about [X].",
    "[X] is mentioned in many sources.",
    "There are several stories about [X].",
    "People often talk about [X].",
    "Little else is said here about [X].",
    "Some readers have never heard of [X].",
    "[X] appears in this text once more.",
    "This page also mentions [X].",
];

/// Most sentences per fact (`--repeats`).
pub const MAX_REPEATS: usize = 1000;

/// Bytes a sentence costs beyond its text: the `String` and its place in two vectors.
const SENTENCE_OVERHEAD: usize = 48;

/// The corpus documents (each a list of sentences) and a report.
pub fn build_corpus(lama: &LamaDir, opts: &CorpusOptions) -> Result<(Vec<Vec<String>>, CorpusReport)> {
    if opts.repeats == 0 || opts.sentences_per_doc == 0 {
        return Err(Error::input("probe corpus: --repeats and --sentences-per-doc must be positive"));
    }
    // A relation has tens of paraphrases: more repeats only copy sentences (and fill the memory).
    if opts.repeats > MAX_REPEATS {
        return Err(Error::input(format!(
            "probe corpus: --repeats {} is too many: at most {MAX_REPEATS} sentences per fact",
            opts.repeats
        )));
    }
    if !(0.0..=10.0).contains(&opts.distractor_ratio) {
        return Err(Error::input("probe corpus: --distractors must be between 0 and 10"));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let mut report = CorpusReport::default();
    let mut sentences = Vec::new();
    let mut entities: Vec<String> = Vec::new();
    let mut bytes = 0f64;
    let relations = lama.relations()?;
    if let Some(want) = &opts.relations {
        if let Some(bad) = want.iter().find(|w| !relations.iter().any(|r| &r.relation == *w)) {
            return Err(Error::file(lama.root(), format!("relation `{bad}` has no facts here")));
        }
    }
    for rel in &relations {
        if opts.relations.as_ref().is_some_and(|w| !w.contains(&rel.relation)) {
            continue;
        }
        let mut patterns = paraphrases(&lama.patterns(&rel.relation)?, &rel.template);
        if patterns.is_empty() {
            patterns = fallback_patterns(&rel.relation);
            if patterns.is_empty() {
                report.skipped.push(rel.relation.clone());
                continue;
            }
            report.fallback.push(rel.relation.clone());
        }
        let data = lama.relation_data(&rel.relation)?;
        // The corpus is built in memory (sentences, then documents copied from them): refused
        // before a relation whose sentences would not fit, not killed by the OOM killer later.
        let longest = patterns.iter().map(String::len).max().unwrap_or(0);
        let facts = data.train.iter().chain(&data.dev).chain(&data.test);
        let added: f64 = facts.map(|f| (opts.repeats * (longest + f.sub_label.len() + f.obj_label.len() + SENTENCE_OVERHEAD)) as f64).sum();
        bytes += added;
        crate::device::ensure_fits(
            &candle_core::Device::Cpu,
            2.0 * (1.0 + opts.distractor_ratio) * bytes,
            &format!("probe corpus with --repeats {}", opts.repeats),
            "lower --repeats or --distractors, or pick fewer --relations",
        )?;
        let mut seen: HashSet<&Fact> = HashSet::new();
        for fact in data.train.iter().chain(&data.dev).chain(&data.test) {
            if !seen.insert(fact) {
                continue;
            }
            let mut order = patterns.clone();
            order.shuffle(&mut rng);
            for k in 0..opts.repeats {
                sentences.push(fill(&order[k % order.len()], &fact.sub_label, &fact.obj_label));
            }
            entities.push(fact.sub_label.clone());
            entities.push(fact.obj_label.clone());
        }
        report.facts.insert(rel.relation.clone(), seen.len());
        report.patterns.insert(rel.relation.clone(), patterns.len());
    }
    report.fact_sentences = sentences.len();
    let distractors = (opts.distractor_ratio * sentences.len() as f64).round() as usize;
    if !entities.is_empty() {
        for _ in 0..distractors {
            let (Some(t), Some(e)) = (DISTRACTORS.choose(&mut rng), entities.choose(&mut rng)) else { break };
            sentences.push(t.replace("[X]", e));
            report.distractors += 1;
        }
    }
    sentences.shuffle(&mut rng);
    let mut docs: Vec<Vec<String>> = Vec::new();
    let mut rest = sentences.as_slice();
    while !rest.is_empty() {
        // Documents of sentences_per_doc ± half, so boundaries do not fall on a fixed stride.
        let jitter = opts.sentences_per_doc / 2;
        let n = (opts.sentences_per_doc - jitter + rng.random_range(0..=2 * jitter)).clamp(1, rest.len());
        docs.push(rest[..n].to_vec());
        rest = &rest[n..];
    }
    report.documents = docs.len();
    Ok((docs, report))
}

/// Writes `docs` as text blocks: one sentence per line, a blank line between documents.
pub fn write_corpus(docs: &[Vec<String>], path: &Path) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    let mut w = std::io::BufWriter::new(file);
    for d in docs {
        for s in d {
            writeln!(w, "{}", s.replace('\n', " ")).map_err(|e| Error::io(path, e))?;
        }
        writeln!(w).map_err(|e| Error::io(path, e))?;
    }
    w.flush().map_err(|e| Error::io(path, e))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A mini LAMA folder: two relations with patterns, one (P31) without, one test stand-in.
    pub(crate) fn mini(dir: &Path) {
        let w = |p: &str, s: &str| {
            let path = dir.join(p);
            std::fs::create_dir_all(path.parent().unwrap_or(dir)).ok();
            std::fs::write(path, s).ok();
        };
        w(
            "relations.jsonl",
            concat!(
                r#"{"relation": "P19", "template": "[X] was born in [Y] .", "label": "place of birth", "type": "N-1"}"#,
                "\n",
                r#"{"relation": "P36", "template": "The capital of [X] is [Y] .", "label": "capital", "type": "1-1"}"#,
                "\n",
                r#"{"relation": "P31", "template": "[X] is a [Y] .", "label": "instance of", "type": "N-1"}"#,
                "\n",
                r#"{"relation": "P99", "template": "[X] likes [Y] .", "label": "unused", "type": "N-M"}"#,
                "\n"
            ),
        );
        let fact = |s: &str, o: &str| format!("{{\"obj_label\": \"{o}\", \"sub_label\": \"{s}\"}}\n");
        w("fact-retrieval/original/P19/train.jsonl", &(fact("Ann Lee", "Paris") + &fact("Bo Chan", "Rome")));
        w("fact-retrieval/original/P19/dev.jsonl", &fact("Cy Doe", "Paris"));
        w("fact-retrieval/original/P19/test.jsonl", &(fact("Di Eck", "Oslo") + &fact("Ed Fay", "Lyon") + &fact("Ann Lee", "Paris")));
        w("fact-retrieval/original/P36/train.jsonl", &fact("France", "Paris"));
        w("trex_lms_vocab/P36.jsonl", &(fact("Norway", "Oslo") + &fact("Italy", "Rome")));
        w("fact-retrieval/original/P31/test.jsonl", &fact("Oslo", "city"));
        w(
            "pararel_patterns/P19.jsonl",
            concat!(
                r#"{"pattern": "[X] was born in [Y]."}"#,
                "\n",
                r#"{"pattern": "[X] is originally from [Y]."}"#,
                "\n",
                r#"{"pattern": "[X] was born  in [Y] ."}"#,
                "\n",
                r#"{"pattern": "[Y] is the birthplace of [X]."}"#,
                "\n"
            ),
        );
        w(
            "pararel_patterns/P36.jsonl",
            concat!(r#"{"pattern": "The capital of [X] is [Y]."}"#, "\n", r#"{"pattern": "[X]'s capital is [Y]."}"#, "\n"),
        );
        w("29k-vocab.json", r#"{"bert-base-cased": ["Paris", "Oslo", "Rome", "city"], "gpt2-xl": ["ĠParis", "ĠOslo", "ĠRome", "Ġcity"]}"#);
        w("common_vocab_cased.txt", "Paris\nOslo\nRome\nLyon\ncity\n");
    }

    #[test]
    fn every_fact_is_stated_with_paraphrases_never_the_manual_template() -> Result<()> {
        let tmp = tempfile::tempdir().map_err(|e| Error::io("tmp", e))?;
        mini(tmp.path());
        let lama = LamaDir::open(tmp.path())?;
        let opts = CorpusOptions { repeats: 3, seed: 7, distractor_ratio: 0.25, sentences_per_doc: 4, relations: None };
        let (docs, report) = build_corpus(&lama, &opts)?;
        // P19: 6 lines, "Ann Lee/Paris" twice → 5 distinct facts; P36: train + stand-in test = 3.
        assert_eq!(report.facts.get("P19"), Some(&5));
        assert_eq!(report.facts.get("P36"), Some(&3));
        assert_eq!(report.facts.get("P31"), Some(&1), "P31 uses the built-in fallback patterns");
        assert_eq!(report.fallback, vec!["P31".to_string()]);
        assert_eq!(report.patterns.get("P19"), Some(&2), "the first line and its spacing variant are dropped");
        assert_eq!(report.fact_sentences, 3 * 9);
        assert_eq!(report.distractors, 7);
        let all: Vec<&String> = docs.iter().flatten().collect();
        assert_eq!(all.len(), 27 + 7);
        for s in &all {
            assert!(!s.contains("was born in") && !s.starts_with("The capital of"), "manual template leaked: {s}");
            assert!(!s.contains("[X]") && !s.contains("[Y]"), "{s}");
        }
        // With 2 paraphrases and 3 repeats, each one is used (the third cycles).
        assert!(all.iter().any(|s| s.as_str() == "Di Eck is originally from Oslo."));
        assert!(all.iter().any(|s| s.as_str() == "Oslo is the birthplace of Di Eck."));
        assert!(all.iter().any(|s| s.as_str() == "Norway's capital is Oslo."), "stand-in test facts are included");
        // Seeded: the same options give the same corpus; another seed another order.
        assert_eq!(build_corpus(&lama, &opts)?.0, docs);
        assert_ne!(build_corpus(&lama, &CorpusOptions { seed: 8, ..opts.clone() })?.0, docs);
        // Written as blocks that `wenhui data prepare` reads back as the same documents.
        let path = tmp.path().join("out/corpus.txt");
        write_corpus(&docs, &path)?;
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        assert_eq!(text.split("\n\n").filter(|b| !b.trim().is_empty()).count(), docs.len());
        Ok(())
    }

    #[test]
    fn relation_filter_and_bad_options() -> Result<()> {
        let tmp = tempfile::tempdir().map_err(|e| Error::io("tmp", e))?;
        mini(tmp.path());
        let lama = LamaDir::open(tmp.path())?;
        let (_, r) = build_corpus(&lama, &CorpusOptions { relations: Some(vec!["P36".into()]), ..Default::default() })?;
        assert_eq!(r.facts.keys().collect::<Vec<_>>(), vec!["P36"]);
        let e = build_corpus(&lama, &CorpusOptions { relations: Some(vec!["P5".into()]), ..Default::default() });
        assert!(e.is_err_and(|e| e.to_string().contains("P5")));
        assert!(build_corpus(&lama, &CorpusOptions { repeats: 0, ..Default::default() }).is_err());
        assert!(LamaDir::open(&tmp.path().join("nope")).is_err_and(|e| e.to_string().contains("relations.jsonl")));
        Ok(())
    }
}
