//! LAMA knowledge probing (`wenhui probe lama`), as in P-tuning's LAMA experiment (spec
//! ptuning §2): per relation, the facts whose object is **one token** of the model's vocabulary
//! and a word of the allowed vocabulary, a query per fact laid out by the cloze compiler for the
//! backbone (GLM: `[CLS] … [MASK] … [eos] [sop]`, answer at the sop row; BERT: `[MASK]` row;
//! GPT-2: the template cut at `[Y]`, next token), the gold object's rank among the allowed
//! vocabulary ([`metrics`]), P@1 / P@10 / MRR per relation and their macro average.
//!
//! The relation loop ([`run_probe`]) takes the scoring function as an argument: the manual
//! template baseline is [`manual_scores`]; P-tuning plugs in a function of the same type that
//! trains on `task.train`, early-stops on `task.dev` and scores `task.test`
//! ([`ProbeContext::rank_facts`] with a prompt does the scoring). Each relation's result is
//! written to `out_dir/<REL>.json` as soon as it is done; a rerun with the same model, mode and
//! vocabulary reads it back instead of scoring again.

pub mod corpus;
pub mod data;
pub mod metrics;
pub mod ptune;

use crate::cloze::{build_input, compile, Cloze, CompileOptions, Template};
use crate::model::Backbone;
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};
use candle_core::{DType, Tensor};
use data::{Fact, LamaDir, Relation};
use metrics::{restricted_rank, Scores};
use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};

/// Which words the answer may be (and which facts are kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VocabChoice {
    /// LAMA's common cased vocabulary (`common_vocab_cased.txt`, 21,018 words; ≈ LAMA-34k).
    Common,
    /// P-tuning's shared vocabulary (`29k-vocab.json`, 18,154 words; LAMA-29k).
    #[serde(rename = "29k")]
    K29,
    /// No list: every ordinary token of the model's vocabulary.
    Model,
}

impl VocabChoice {
    /// Parses `common`, `29k` (or `shared`), `model` (or `original`).
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "common" | "lama" | "34k" => Ok(Self::Common),
            "29k" | "shared" => Ok(Self::K29),
            "model" | "original" => Ok(Self::Model),
            other => Err(Error::input(format!("unknown vocabulary `{other}`: use common, 29k or model"))),
        }
    }
    /// The name used in reports and result files.
    pub fn name(self) -> &'static str {
        match self {
            Self::Common => "common",
            Self::K29 => "29k",
            Self::Model => "model",
        }
    }
}

/// A fact whose object is one token: the query's gold id.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct QueryFact {
    /// Subject surface form.
    pub sub_label: String,
    /// Object surface form.
    pub obj_label: String,
    /// The object's token id (with the leading space the template puts before the slot).
    pub object: u32,
}

/// Keeps the facts whose `obj_label` is in `list` (when given): the data-level vocabulary filter
/// that the counts of `shared/data/lama/README.md` use.
pub fn in_vocab<'a>(facts: &'a [Fact], list: Option<&HashSet<String>>) -> Vec<&'a Fact> {
    facts.iter().filter(|f| list.is_none_or(|l| l.contains(&f.obj_label))).collect()
}

/// One relation's filtered facts, ready for a scoring function.
#[derive(Debug, Clone)]
pub struct RelationTask {
    /// The relation (manual template in `relation.template`).
    pub relation: Relation,
    /// The manual template as a cloze template (`{subject} … [MASK] …`).
    pub manual: Template,
    /// Training facts kept.
    pub train: Vec<QueryFact>,
    /// Development facts kept.
    pub dev: Vec<QueryFact>,
    /// Test facts kept (cut to `ProbeOptions::limit`).
    pub test: Vec<QueryFact>,
    /// Where the test facts come from (`fact-retrieval` or the `trex_lms_vocab` stand-in).
    pub test_source: &'static str,
    /// Test facts dropped by the vocabulary filters.
    pub test_dropped: usize,
}

/// The model side of a probe: backbone, tokenizer and the allowed answer ids.
pub struct ProbeContext<'a> {
    /// The model.
    pub model: &'a dyn Backbone,
    /// Its tokenizer.
    pub tokenizer: &'a Tokenizer,
    /// The vocabulary choice.
    pub vocab: VocabChoice,
    /// Queries per forward pass.
    pub batch_size: usize,
    list: Option<HashSet<String>>,
    /// Allowed ids when the slot follows a space (index 1) or not (index 0), sorted.
    allowed: [Vec<u32>; 2],
}

impl<'a> ProbeContext<'a> {
    /// The context for `model` with `vocab` (lists read from `lama`).
    pub fn new(model: &'a dyn Backbone, tokenizer: &'a Tokenizer, lama: &LamaDir, vocab: VocabChoice, batch_size: usize) -> Result<Self> {
        let list = match vocab {
            VocabChoice::Model => None,
            v => Some(lama.vocab(v.name())?),
        };
        let specials: HashSet<u32> = tokenizer.special.iter().map(|(_, id)| id).collect();
        let model_vocab = model.info().vocab_size.min(tokenizer.vocab_size(false)) as u32;
        let mut ctx = Self { model, tokenizer, vocab, batch_size: batch_size.max(1), list, allowed: [vec![], vec![]] };
        for space in [false, true] {
            let ids: BTreeSet<u32> = match &ctx.list {
                Some(words) => words.iter().filter_map(|w| ctx.single_token(w, space)).collect(),
                None => (0..model_vocab).filter(|i| !specials.contains(i)).collect(),
            };
            ctx.allowed[usize::from(space)] = ids.into_iter().filter(|i| !specials.contains(i) && *i < model_vocab).collect();
        }
        Ok(ctx)
    }

    /// The id of `word` when it is exactly one token (after a space when `space`).
    pub fn single_token(&self, word: &str, space: bool) -> Option<u32> {
        let text = if space { format!(" {word}") } else { word.to_string() };
        match self.tokenizer.encode(&text, false).ok()?.as_slice() {
            [one] => Some(*one),
            _ => None,
        }
    }

    /// The allowed answer ids (sorted) for a slot after a space (`space`) or not.
    pub fn allowed_ids(&self, space: bool) -> &[u32] {
        &self.allowed[usize::from(space)]
    }

    /// Keeps the facts whose object is in the allowed list and one allowed token of the model.
    pub fn filter(&self, facts: &[Fact], space: bool) -> Vec<QueryFact> {
        let allowed = self.allowed_ids(space);
        in_vocab(facts, self.list.as_ref())
            .into_iter()
            .filter_map(|f| {
                let id = self.single_token(&f.obj_label, space)?;
                allowed.binary_search(&id).is_ok().then(|| QueryFact {
                    sub_label: f.sub_label.clone(),
                    obj_label: f.obj_label.clone(),
                    object: id,
                })
            })
            .collect()
    }

    /// The queries of `facts` under `template` (one `{subject}` field and `[MASK]`), compiled
    /// for this model's backbone; feed them to [`build_input`] (with a prompt for `[P]` rows).
    pub fn queries(&self, template: &Template, facts: &[QueryFact]) -> Result<Vec<Cloze>> {
        let kind = self.model.info().kind;
        let opts = CompileOptions::new(self.model.info().max_positions);
        facts
            .iter()
            .map(|f| compile(template, kind, self.tokenizer, &[("subject".to_string(), f.sub_label.clone())].into(), &opts))
            .collect()
    }

    /// The gold rank (1 = best, among the allowed ids) of every fact under `template` (one
    /// `{subject}` field and `[MASK]`), batched. With `prompt` (`[n_pseudo, H]`), the template's
    /// `[P]` rows take those vectors (P-tuning); gradients do not flow (scores only).
    pub fn rank_facts(&self, template: &Template, facts: &[QueryFact], prompt: Option<&Tensor>) -> Result<Vec<usize>> {
        let allowed = self.allowed_ids(template.space_before_mask());
        let mut ranks = Vec::with_capacity(facts.len());
        for chunk in facts.chunks(self.batch_size) {
            let rows = self.queries(template, chunk)?;
            let select: Vec<Vec<usize>> = rows.iter().map(|r| vec![r.answer_row]).collect();
            let (input, _) = build_input(self.model, &rows, &select, prompt)?;
            let logits = self.model.forward(&input, None)?.logits.to_dtype(DType::F32)?.to_vec2::<f32>()?;
            for (f, row) in chunk.iter().zip(&logits) {
                let rank = restricted_rank(row, allowed, f.object).ok_or_else(|| {
                    Error::input(format!("object `{}` (id {}) is not an allowed answer id of this model", f.obj_label, f.object))
                })?;
                ranks.push(rank);
            }
        }
        Ok(ranks)
    }
}

/// The cloze template of a LAMA manual template: `[X]` → `{subject}`, `[Y]` → `[MASK]`.
pub fn manual_template(relation: &Relation) -> Result<Template> {
    let t = &relation.template;
    if t.matches("[X]").count() != 1 || t.matches("[Y]").count() != 1 {
        return Err(Error::input(format!("relation {}: template `{t}` needs exactly one [X] and one [Y]", relation.relation)));
    }
    let source = t.replace('{', "{{").replace('}', "}}").replace("[X]", "{subject}").replace("[Y]", "[MASK]");
    Template::parse(&source, &["subject".to_string()])
}

/// P-tuning's LAMA query with `(t0, t1, t2)` pseudo tokens in the paper's order
/// `[P×t0] subject [P×t1] [MASK] [P×t2]` (spec ptuning §2.2): `(3, 3, 3)` for BERT and GLM; a
/// GPT-2 predicts the token after the prompt, so use `(3, 3, 0)`. A count of 0 leaves the group out.
pub fn ptune_template(t0: usize, t1: usize, t2: usize) -> Result<Template> {
    let group = |n: usize| if n == 0 { String::new() } else { format!("[P*{n}] ") };
    let source = format!("{}{{subject}} {}[MASK]{}", group(t0), group(t1), if t2 == 0 { String::new() } else { format!(" [P*{t2}]") });
    Template::parse(&source, &["subject".to_string()])
}

/// The manual-template baseline: the test facts ranked under the relation's LAMA template.
pub fn manual_scores(ctx: &ProbeContext<'_>, task: &RelationTask) -> Result<Scores> {
    Ok(Scores::from_ranks(&ctx.rank_facts(&task.manual, &task.test, None)?))
}

/// How to run a probe.
#[derive(Debug, Clone, Default)]
pub struct ProbeOptions {
    /// Only these relations (`None` = all with test facts).
    pub relations: Option<Vec<String>>,
    /// The mode's name (`manual`, `ptune`, …), recorded in result files.
    pub mode: String,
    /// A name for the model (its path), recorded in result files.
    pub model_name: String,
    /// Where per-relation results go (resume reads them); `None` = nowhere.
    pub out_dir: Option<PathBuf>,
    /// At most this many test facts per relation (the first ones), for quick runs.
    pub limit: Option<usize>,
    /// Show a progress bar on stderr.
    pub progress: bool,
}

/// One relation's result.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RelationResult {
    /// Property id.
    pub relation: String,
    /// Short name.
    pub label: String,
    /// `1-1`, `N-1` or `N-M`.
    pub kind: String,
    /// Mode (`manual`, `ptune`, …).
    pub mode: String,
    /// Vocabulary choice.
    pub vocab: String,
    /// The model.
    pub model: String,
    /// `fact-retrieval` or `trex_lms_vocab` (stand-in test facts).
    pub test_source: String,
    /// Facts kept per split: train, dev, test.
    pub facts: [usize; 3],
    /// Test facts dropped by the vocabulary filters.
    pub test_dropped: usize,
    /// The `--limit` on test facts the run had (`None`: all).
    #[serde(default)]
    pub limit: Option<usize>,
    /// The scores on the test facts.
    pub scores: Scores,
    /// Read back from an earlier run's result file.
    #[serde(default, skip_serializing)]
    pub cached: bool,
}

/// Every relation's result and the macro average.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProbeReport {
    /// Mode.
    pub mode: String,
    /// Vocabulary choice.
    pub vocab: String,
    /// The model.
    pub model: String,
    /// Per relation, in `relations.jsonl` order.
    pub relations: Vec<RelationResult>,
    /// Unweighted mean over relations with test facts.
    pub macro_average: Scores,
}

/// The signature of a scoring function: the manual baseline ([`manual_scores`]) or a trainer
/// (P-tuning) that fits on `task.train`, selects on `task.dev` and returns `task.test` scores.
pub type ScoreFn<'s> = dyn FnMut(&ProbeContext<'_>, &RelationTask) -> Result<Scores> + 's;

/// Builds the filtered task of one relation.
pub fn relation_task(lama: &LamaDir, ctx: &ProbeContext<'_>, relation: &Relation, limit: Option<usize>) -> Result<RelationTask> {
    let manual = manual_template(relation)?;
    let space = manual.space_before_mask();
    let d = lama.relation_data(&relation.relation)?;
    let mut test = ctx.filter(&d.test, space);
    let test_dropped = d.test.len() - test.len();
    if let Some(n) = limit {
        test.truncate(n);
    }
    Ok(RelationTask {
        relation: relation.clone(),
        manual,
        train: ctx.filter(&d.train, space),
        dev: ctx.filter(&d.dev, space),
        test,
        test_source: d.test_source,
        test_dropped,
    })
}

fn result_path(dir: &Path, rel: &str) -> PathBuf {
    dir.join(format!("{rel}.json"))
}

/// Runs `score` on every selected relation: filters the facts, scores, writes
/// `out_dir/<REL>.json`, and reuses result files of an earlier run with the same model, mode and
/// vocabulary (others are an error naming the file).
pub fn run_probe(lama: &LamaDir, ctx: &ProbeContext<'_>, opts: &ProbeOptions, score: &mut ScoreFn<'_>) -> Result<ProbeReport> {
    // Either would score nothing, and the report would blame the data.
    if opts.relations.as_ref().is_some_and(|w| w.is_empty()) {
        return Err(Error::input("no relation selected: give relation ids (--relations P19,P20) or all"));
    }
    if opts.limit == Some(0) {
        return Err(Error::input("--limit 0 keeps no test fact: give at least 1"));
    }
    let all = lama.relations()?;
    if let Some(want) = &opts.relations {
        if let Some(bad) = want.iter().find(|w| !all.iter().any(|r| &r.relation == *w)) {
            return Err(Error::file(lama.root(), format!("relation `{bad}` has no facts here")));
        }
    }
    let selected: Vec<&Relation> = all.iter().filter(|r| opts.relations.as_ref().is_none_or(|w| w.contains(&r.relation))).collect();
    if let Some(dir) = &opts.out_dir {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let bar = crate::train::progress::count_bar(opts.progress, selected.len() as u64, "relations");
    let mut results = Vec::new();
    for rel in selected {
        bar.set_message(rel.relation.clone());
        let path = opts.out_dir.as_ref().map(|d| result_path(d, &rel.relation));
        // A file written before result files recorded their `--limit` stands for an unknown set
        // of facts: the relation is probed again and the file replaced.
        let known = |p: &std::path::Path| -> Result<Option<RelationResult>> {
            let text = crate::error::read_text(p)?;
            let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::file(p, format!("not a result file: {e}")))?;
            if value.get("limit").is_none() {
                tracing::warn!("{}: written without its --limit (an older wenhui); probing {} again", p.display(), rel.relation);
                return Ok(None);
            }
            serde_json::from_value(value).map(Some).map_err(|e| Error::file(p, format!("not a result file: {e}")))
        };
        let earlier = match path.as_ref().filter(|p| p.is_file()) {
            Some(p) => known(p)?.map(|r| (p, r)),
            None => None,
        };
        if let Some((p, mut r)) = earlier {
            if r.mode != opts.mode || r.vocab != ctx.vocab.name() || r.model != opts.model_name || r.limit != opts.limit {
                let limit = |l: Option<usize>| l.map_or("all facts".to_string(), |n| format!("--limit {n}"));
                return Err(Error::file(
                    p,
                    format!(
                        "holds a result for model `{}`, mode {}, vocabulary {}, {}; this run is `{}`, {}, {}, {}: use another --output",
                        r.model,
                        r.mode,
                        r.vocab,
                        limit(r.limit),
                        opts.model_name,
                        opts.mode,
                        ctx.vocab.name(),
                        limit(opts.limit)
                    ),
                ));
            }
            r.cached = true;
            results.push(r);
            bar.inc(1);
            continue;
        }
        let task = relation_task(lama, ctx, rel, opts.limit)?;
        let scores = if task.test.is_empty() { Scores::default() } else { score(ctx, &task)? };
        let r = RelationResult {
            relation: rel.relation.clone(),
            label: rel.label.clone(),
            kind: rel.kind.clone(),
            mode: opts.mode.clone(),
            vocab: ctx.vocab.name().into(),
            model: opts.model_name.clone(),
            test_source: task.test_source.into(),
            facts: [task.train.len(), task.dev.len(), task.test.len()],
            test_dropped: task.test_dropped,
            limit: opts.limit,
            scores,
            cached: false,
        };
        if let Some(p) = &path {
            let tmp = p.with_extension("json.tmp");
            let json = serde_json::to_string_pretty(&r).map_err(|e| Error::input(e.to_string()))?;
            std::fs::write(&tmp, json).map_err(|e| Error::io(&tmp, e))?;
            std::fs::rename(&tmp, p).map_err(|e| Error::io(p, e))?;
        }
        bar.println(format!("{} {:<28} P@1 {:5.1}  ({} facts)", r.relation, r.label, 100.0 * r.scores.p_at_1, r.scores.n));
        results.push(r);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let per: Vec<Scores> = results.iter().map(|r| r.scores).collect();
    Ok(ProbeReport {
        mode: opts.mode.clone(),
        vocab: ctx.vocab.name().into(),
        model: opts.model_name.clone(),
        relations: results,
        macro_average: Scores::macro_average(&per),
    })
}

/// The report as a text table: one row per relation, then the macro average.
pub fn format_table(report: &ProbeReport) -> String {
    let mut s = format!(
        "LAMA probe: mode {}, vocabulary {}, model {}\n{:<7} {:<30} {:<4} {:>6} {:>6} {:>6} {:>6}\n",
        report.mode, report.vocab, report.model, "rel", "label", "type", "facts", "P@1", "P@10", "MRR"
    );
    for r in &report.relations {
        let label: String = r.label.chars().take(30).collect();
        s.push_str(&format!(
            "{:<7} {:<30} {:<4} {:>6} {:>6.1} {:>6.1} {:>6.3}{}\n",
            r.relation,
            label,
            r.kind,
            r.scores.n,
            100.0 * r.scores.p_at_1,
            100.0 * r.scores.p_at_10,
            r.scores.mrr,
            if r.test_source == "trex_lms_vocab" { "  (stand-in test)" } else { "" }
        ));
    }
    let m = &report.macro_average;
    s.push_str(&format!(
        "{:<7} {:<30} {:<4} {:>6} {:>6.1} {:>6.1} {:>6.3}\n",
        "macro",
        format!("{} relations", report.relations.iter().filter(|r| r.scores.n > 0).count()),
        "",
        m.n,
        100.0 * m.p_at_1,
        100.0 * m.p_at_10,
        m.mrr
    ));
    s
}
