//! The LAMA T-REx data as P-tuning reads it (spec ptuning §2.4–2.5, `shared/data/lama/README.md`):
//! `relations.jsonl` (manual templates), `fact-retrieval/original/<REL>/{train,dev,test}.jsonl`
//! (AutoPrompt's split), the allowed-vocabulary lists (`29k-vocab.json`, LAMA's
//! `common_vocab_cased.txt`) and ParaRel's paraphrase patterns.
//!
//! Where a relation's test file is missing (13 relations, too large for the public snapshots),
//! `trex_lms_vocab/<REL>.jsonl` is read as a stand-in and [`RelationData::test_source`] says so.

use crate::error::{read_jsonl, read_text};
use crate::{Error, Result};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// One relation of `relations.jsonl`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Relation {
    /// Wikidata property id, e.g. `P19`.
    pub relation: String,
    /// The manual LAMA template, e.g. `[X] was born in [Y] .`.
    pub template: String,
    /// Short name, e.g. `place of birth`.
    #[serde(default)]
    pub label: String,
    /// `1-1`, `N-1` or `N-M`.
    #[serde(default, rename = "type")]
    pub kind: String,
}

/// One (subject, object) fact.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Fact {
    /// Subject surface form (`sub_label`).
    pub sub_label: String,
    /// Object surface form (`obj_label`), the answer.
    pub obj_label: String,
}

/// A split of a relation's facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// P-tuning's training facts (≤ 800).
    Train,
    /// Development facts (≤ 200), for early stopping.
    Dev,
    /// The LAMA test facts.
    Test,
}

impl Split {
    /// The file stem.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Dev => "dev",
            Split::Test => "test",
        }
    }
}

/// Every fact of one relation.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RelationData {
    /// Training facts (empty when the file is missing).
    pub train: Vec<Fact>,
    /// Development facts (empty when the file is missing).
    pub dev: Vec<Fact>,
    /// Test facts.
    pub test: Vec<Fact>,
    /// `fact-retrieval` or `trex_lms_vocab` (the stand-in), or `none`.
    pub test_source: &'static str,
    /// The file each split (train, dev, test) was read from, or would have been: for a test
    /// split without its file, the stand-in when there is one.
    pub files: [PathBuf; 3],
    /// Whether that file was there (a missing train or dev file leaves its split empty).
    pub present: [bool; 3],
}

/// The LAMA data directory (`shared/data/lama` or a folder of the same layout).
#[derive(Debug, Clone)]
pub struct LamaDir {
    root: PathBuf,
}

impl LamaDir {
    /// The data at `root`; errors when `relations.jsonl` is not there.
    pub fn open(root: &Path) -> Result<Self> {
        if !root.join("relations.jsonl").is_file() {
            return Err(Error::file(root, "not a LAMA data directory: relations.jsonl is missing"));
        }
        Ok(Self { root: root.to_path_buf() })
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every relation of `relations.jsonl` that has facts here (a `fact-retrieval/original/<REL>`
    /// folder or a `trex_lms_vocab/<REL>.jsonl` stand-in), in file order.
    pub fn relations(&self) -> Result<Vec<Relation>> {
        let all: Vec<Relation> = read_jsonl(&self.root.join("relations.jsonl"))?;
        Ok(all.into_iter().filter(|r| self.split_dir(&r.relation).is_dir() || self.stand_in(&r.relation).is_file()).collect())
    }

    fn split_dir(&self, rel: &str) -> PathBuf {
        self.root.join("fact-retrieval/original").join(rel)
    }

    fn stand_in(&self, rel: &str) -> PathBuf {
        self.root.join("trex_lms_vocab").join(format!("{rel}.jsonl"))
    }

    /// Where the facts of `split` for `rel` are (`fact-retrieval/original/<REL>/<split>.jsonl`).
    pub fn split_path(&self, rel: &str, split: Split) -> PathBuf {
        self.split_dir(rel).join(format!("{}.jsonl", split.name()))
    }

    /// The facts of `split` for `rel`: `None` when the file is missing.
    pub fn split(&self, rel: &str, split: Split) -> Result<Option<Vec<Fact>>> {
        let path = self.split_path(rel, split);
        if !path.is_file() {
            return Ok(None);
        }
        read_jsonl(&path).map(Some)
    }

    /// All facts of `rel`; the test split falls back to the `trex_lms_vocab` stand-in.
    pub fn relation_data(&self, rel: &str) -> Result<RelationData> {
        let train = self.split(rel, Split::Train)?;
        let dev = self.split(rel, Split::Dev)?;
        let present_train_dev = [train.is_some(), dev.is_some()];
        let (train, dev) = (train.unwrap_or_default(), dev.unwrap_or_default());
        let (test, test_source) = match self.split(rel, Split::Test)? {
            Some(t) => (t, "fact-retrieval"),
            None if self.stand_in(rel).is_file() => (read_jsonl(&self.stand_in(rel))?, "trex_lms_vocab"),
            None => (vec![], "none"),
        };
        let test_file = if test_source == "trex_lms_vocab" { self.stand_in(rel) } else { self.split_path(rel, Split::Test) };
        let files = [self.split_path(rel, Split::Train), self.split_path(rel, Split::Dev), test_file];
        let present = [present_train_dev[0], present_train_dev[1], test_source != "none"];
        Ok(RelationData { train, dev, test, test_source, files, present })
    }

    /// The files [`LamaDir::relation_data`] reads for `rel`: those of train, dev and test that
    /// are there, and the `trex_lms_vocab` stand-in when the test file is not.
    pub fn relation_files(&self, rel: &str) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> =
            [Split::Train, Split::Dev, Split::Test].iter().map(|&s| self.split_path(rel, s)).filter(|p| p.is_file()).collect();
        if !self.split_path(rel, Split::Test).is_file() && self.stand_in(rel).is_file() {
            files.push(self.stand_in(rel));
        }
        files
    }

    /// The file of an allowed-vocabulary list (see [`LamaDir::vocab`]); `None` for another name.
    pub fn vocab_file(&self, name: &str) -> Option<PathBuf> {
        match name {
            "29k" | "shared" => Some(self.root.join("29k-vocab.json")),
            "common" | "lama" => Some(self.root.join("common_vocab_cased.txt")),
            _ => None,
        }
    }

    /// The paraphrase patterns of `rel` (`pararel_patterns/<REL>.jsonl`), the first line (the
    /// manual LAMA template) included; empty when the file is missing.
    pub fn patterns(&self, rel: &str) -> Result<Vec<String>> {
        #[derive(serde::Deserialize)]
        struct Pattern {
            pattern: String,
        }
        let path = self.root.join("pararel_patterns").join(format!("{rel}.jsonl"));
        if !path.is_file() {
            return Ok(vec![]);
        }
        Ok(read_jsonl::<Pattern>(&path)?.into_iter().map(|p| p.pattern).collect())
    }

    /// An allowed-vocabulary list: `29k` (`29k-vocab.json`, key `bert-base-cased`: 18,154 words)
    /// or `common` (`common_vocab_cased.txt`: 21,018 words). Words are bare (no `Ġ`).
    pub fn vocab(&self, name: &str) -> Result<HashSet<String>> {
        match name {
            "29k" | "shared" => {
                let path = self.root.join("29k-vocab.json");
                let v: serde_json::Value =
                    serde_json::from_str(&read_text(&path)?).map_err(|e| Error::file(&path, format!("not valid JSON: {e}")))?;
                let list =
                    v.get("bert-base-cased").and_then(|l| l.as_array()).ok_or_else(|| Error::file(&path, "no `bert-base-cased` list"))?;
                Ok(list.iter().filter_map(|w| w.as_str()).map(|w| w.trim_start_matches('Ġ').to_string()).collect())
            }
            "common" | "lama" => {
                let path = self.root.join("common_vocab_cased.txt");
                Ok(read_text(&path)?.lines().map(str::trim).filter(|w| !w.is_empty()).map(String::from).collect())
            }
            other => Err(Error::input(format!("unknown vocabulary `{other}` (29k, common, or model for no list)"))),
        }
    }
}

/// Normalises a pattern for comparison: lower case, whitespace removed.
pub fn pattern_key(p: &str) -> String {
    p.chars().filter(|c| !c.is_whitespace()).flat_map(char::to_lowercase).collect()
}

/// The paraphrases of `rel` that are not its manual template: `patterns` without its first line
/// and without any line equal to `manual` up to spacing and case.
pub fn paraphrases(patterns: &[String], manual: &str) -> Vec<String> {
    let manual = pattern_key(manual);
    patterns.iter().skip(1).filter(|p| pattern_key(p) != manual).cloned().collect()
}

/// Paraphrases written for the probe relations ParaRel has no paraphrase for (P31 "instance
/// of", P527 "has part"; P1001 "applies to jurisdiction" has only its manual template); none of
/// them is the manual template.
pub fn fallback_patterns(rel: &str) -> Vec<String> {
    let list: &[&str] = match rel {
        "P31" => &["[X] is an instance of [Y].", "[X] is classified as [Y].", "[X] counts as [Y].", "[X] is one example of [Y]."],
        "P1001" => &["[X] applies in [Y].", "[X] has legal force in [Y].", "[X] is a law of [Y].", "The jurisdiction of [X] is [Y]."],
        "P527" => &["[X] has part [Y].", "[X] is made up of [Y].", "[X] includes [Y].", "[Y] is a part of [X].", "[X] contains [Y]."],
        _ => &[],
    };
    list.iter().map(|s| s.to_string()).collect()
}

/// `pattern` with `[X]` = `subject` and `[Y]` = `object`.
pub fn fill(pattern: &str, subject: &str, object: &str) -> String {
    pattern.replace("[X]", subject).replace("[Y]", object)
}
