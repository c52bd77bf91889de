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
//! ([`ProbeContext::rank_facts`] with a prompt does the scoring). A relation that cannot be
//! scored (no test facts; for P-tuning no training facts) is skipped with its reason and left
//! out of the macro average. Each relation's result is written to `out_dir/<REL>.json` as soon as
//! it is done, with everything that determines it ([`RunKey`]: the model's canonical path and
//! fingerprints of its weights and of its config and tokenizer files, one of the relation's data
//! files, mode, vocabulary, `--limit` and the mode's settings); a rerun reads it back only when
//! all of that is the same.

pub mod corpus;
pub mod data;
pub mod identity;
pub mod metrics;
pub mod progress;
pub mod ptune;
pub mod reuse;

use crate::cloze::{build_input, compile, Cloze, CompileOptions, Template};
use crate::model::Backbone;
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};
use candle_core::{DType, Tensor};
use data::{Fact, LamaDir, Relation, Split};
use identity::ModelIdentity;
use metrics::{restricted_rank, Scores};
use progress::ProbeProgress;
use ptune::PtuneRecord;
pub use reuse::RunKey;
use reuse::{data_fingerprint, result_path};
use serde_json::{Map, Value};
use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;

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
    /// The file each split (train, dev, test) was read from, or would have been.
    pub files: [PathBuf; 3],
    /// Facts read per split before the filters; `None` where the file is missing.
    pub read: [Option<usize>; 3],
}

impl RelationTask {
    /// Why `split` keeps no fact (`None` when it keeps some): its file is missing (named), empty,
    /// or every fact was filtered out by `vocab` and the model's tokenizer.
    pub fn no_facts(&self, split: Split, vocab: VocabChoice) -> Option<String> {
        let (k, kept) = match split {
            Split::Train => (0, self.train.len()),
            Split::Dev => (1, self.dev.len()),
            Split::Test => (2, self.test.len()),
        };
        if kept > 0 {
            return None;
        }
        let file = self.files[k].display();
        Some(match self.read[k] {
            None if split == Split::Test => format!("no test file {file} and no trex_lms_vocab stand-in"),
            None => format!("no {} file {file}", split.name()),
            Some(0) => format!("{file} holds no fact"),
            Some(n) => {
                let why = match vocab {
                    VocabChoice::Model => "objects not one token of the model".to_string(),
                    v => format!("objects not in the {} list or not one token of the model", v.name()),
                };
                format!("all {n} {} facts of {file} were filtered out by the vocabulary ({why})", split.name())
            }
        })
    }
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
pub fn manual_scores(ctx: &ProbeContext<'_>, task: &RelationTask, _progress: &ProbeProgress) -> Result<Scored> {
    let scores = Scores::from_ranks(&ctx.rank_facts(&task.manual, &task.test, None)?);
    Ok(Scored::Done { scores, training: None })
}

/// How to run a probe.
#[derive(Debug, Clone, Default)]
pub struct ProbeOptions {
    /// Only these relations, reported in this order (`None` = all with facts, in
    /// `relations.jsonl` order).
    pub relations: Option<Vec<String>>,
    /// The mode's name (`manual`, `ptune`, …), recorded in result files.
    pub mode: String,
    /// The model: canonical path and fingerprint ([`ModelIdentity::of`]), recorded in result files.
    pub model: ModelIdentity,
    /// Everything else that determines a result (the mode's hyper-parameters, load options such
    /// as `gelu`), recorded in result files; a rerun reuses a file only when all are equal.
    pub settings: Map<String, Value>,
    /// Where per-relation results go (resume reads them); `None` = nowhere.
    pub out_dir: Option<PathBuf>,
    /// At most this many test facts per relation (the first ones), for quick runs.
    pub limit: Option<usize>,
    /// Show progress on stderr (bars on a terminal, lines otherwise).
    pub progress: bool,
    /// Probe again and replace a result file of another run (`--force`) instead of refusing.
    pub replace: bool,
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
    /// What the result depends on.
    #[serde(flatten)]
    pub key: RunKey,
    /// `fact-retrieval` or `trex_lms_vocab` (stand-in test facts).
    pub test_source: String,
    /// Facts kept per split: train, dev, test.
    pub facts: [usize; 3],
    /// Test facts dropped by the vocabulary filters.
    pub test_dropped: usize,
    /// The scores on the test facts (all zero when skipped).
    pub scores: Scores,
    /// Why the relation was not scored (left out of the macro average); `None` when it was.
    #[serde(default)]
    pub skipped: Option<String>,
    /// The training record (`--mode ptune`): dev P@1 per epoch, best epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<PtuneRecord>,
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
    /// The model's canonical path.
    pub model: String,
    /// Per relation, in the order asked (`relations.jsonl` order for all).
    pub relations: Vec<RelationResult>,
    /// Unweighted mean over the relations that were scored (not skipped).
    pub macro_average: Scores,
}

/// What a scoring function made of one relation.
#[derive(Debug, Clone, PartialEq)]
pub enum Scored {
    /// The test scores, with the training record of a trained prompt.
    Done {
        /// Scores on `task.test`.
        scores: Scores,
        /// How the prompt was trained (P-tuning), for the result file.
        training: Option<PtuneRecord>,
    },
    /// Not scored, with the reason (a line of the table): the run goes on.
    Skipped(String),
}

/// The signature of a scoring function: the manual baseline ([`manual_scores`]) or a trainer
/// (P-tuning) that fits on `task.train`, selects on `task.dev` and returns `task.test` scores,
/// reporting its progress to the [`ProbeProgress`].
pub type ScoreFn<'s> = dyn FnMut(&ProbeContext<'_>, &RelationTask, &ProbeProgress) -> Result<Scored> + 's;

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
    let read = [d.present[0].then_some(d.train.len()), d.present[1].then_some(d.dev.len()), d.present[2].then_some(d.test.len())];
    Ok(RelationTask {
        relation: relation.clone(),
        manual,
        train: ctx.filter(&d.train, space),
        dev: ctx.filter(&d.dev, space),
        test,
        test_source: d.test_source,
        test_dropped,
        files: d.files,
        read,
    })
}

/// Runs `score` on every selected relation, in the order asked: filters the facts, scores (or
/// skips, with the reason), writes `out_dir/<REL>.json`, and reuses a result file when
/// everything it depends on ([`RunKey`]) is the same as in this run. A file of another run is
/// an error naming the file and what differs, unless `opts.replace`.
pub fn run_probe(lama: &LamaDir, ctx: &ProbeContext<'_>, opts: &ProbeOptions, score: &mut ScoreFn<'_>) -> Result<ProbeReport> {
    // Either would score nothing, and the report would blame the data.
    if opts.relations.as_ref().is_some_and(|w| w.is_empty()) {
        return Err(Error::input("no relation selected: give relation ids (--relations P19,P20) or all"));
    }
    if opts.limit == Some(0) {
        return Err(Error::input("--limit 0 keeps no test fact: give at least 1"));
    }
    let all = lama.relations()?;
    let selected: Vec<&Relation> = match &opts.relations {
        None => all.iter().collect(),
        Some(want) => {
            let mut seen = HashSet::new();
            let mut list = Vec::new();
            for w in want.iter().filter(|w| seen.insert(w.as_str())) {
                match all.iter().find(|r| &r.relation == w) {
                    Some(r) => list.push(r),
                    None => return Err(Error::file(lama.root(), format!("relation `{w}` has no facts here"))),
                }
            }
            list
        }
    };
    if let Some(dir) = &opts.out_dir {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let progress = ProbeProgress::new(opts.progress, selected.len());
    let mut results = Vec::new();
    for (done, rel) in selected.into_iter().enumerate() {
        progress.relation(&rel.relation);
        let key = RunKey {
            mode: opts.mode.clone(),
            vocab: ctx.vocab.name().into(),
            model: opts.model.path.clone(),
            model_weights: opts.model.weights.clone(),
            model_files: opts.model.files.clone(),
            data_fingerprint: data_fingerprint(lama, rel, ctx.vocab)?,
            limit: opts.limit,
            settings: opts.settings.clone(),
        };
        let path = opts.out_dir.as_ref().map(|d| result_path(d, &rel.relation));
        if let Some(r) =
            path.as_deref().map(|p| reuse::earlier_result(p, &rel.relation, &key, opts.replace, &progress)).transpose()?.flatten()
        {
            results.push(r);
            progress.relation_done(done + 1);
            continue;
        }
        let task = relation_task(lama, ctx, rel, opts.limit)?;
        let outcome = match task.no_facts(Split::Test, ctx.vocab) {
            Some(reason) => Scored::Skipped(format!("nothing to score: {reason}")),
            None => score(ctx, &task, &progress)?,
        };
        let (scores, skipped, training) = match outcome {
            Scored::Done { scores, training } => (scores, None, training),
            Scored::Skipped(reason) => (Scores::default(), Some(reason), None),
        };
        let r = RelationResult {
            relation: rel.relation.clone(),
            label: rel.label.clone(),
            kind: rel.kind.clone(),
            key,
            test_source: task.test_source.into(),
            facts: [task.train.len(), task.dev.len(), task.test.len()],
            test_dropped: task.test_dropped,
            scores,
            skipped,
            training,
            cached: false,
        };
        if let Some(p) = &path {
            let json = serde_json::to_string_pretty(&r).map_err(|e| Error::input(e.to_string()))?;
            crate::error::write_atomic(p, json.as_bytes())?;
        }
        match &r.skipped {
            Some(reason) => progress.notice(&format!("{} skipped: {reason}", r.relation)),
            None => progress.line(&row_summary(&r)),
        }
        results.push(r);
        progress.relation_done(done + 1);
    }
    progress.finish();
    let per: Vec<Scores> = results.iter().filter(|r| r.skipped.is_none()).map(|r| r.scores).collect();
    Ok(ProbeReport {
        mode: opts.mode.clone(),
        vocab: ctx.vocab.name().into(),
        model: opts.model.path.clone(),
        relations: results,
        macro_average: Scores::macro_average(&per),
    })
}

/// `P19 place of birth  P@1 41.0  (944 facts)`, or the reason it was skipped.
pub(super) fn row_summary(r: &RelationResult) -> String {
    match &r.skipped {
        Some(reason) => format!("{} skipped: {reason}", r.relation),
        None => format!("{} {:<28} P@1 {:5.1}  ({} facts)", r.relation, r.label, 100.0 * r.scores.p_at_1, r.scores.n),
    }
}

/// The report as a text table: one row per relation in the order asked (a skipped relation
/// shows `—` and its reason), then, last (scripts read it with `tail -n 1`), the macro average
/// over the scored ones (`macro  2 of 3 relations` when some were skipped).
pub fn format_table(report: &ProbeReport) -> String {
    let mut s = format!(
        "LAMA probe: mode {}, vocabulary {}, model {}\n{:<7} {:<30} {:<4} {:>6} {:>6} {:>6} {:>6}\n",
        report.mode, report.vocab, report.model, "rel", "label", "type", "facts", "P@1", "P@10", "MRR"
    );
    for r in &report.relations {
        let label: String = r.label.chars().take(30).collect();
        match &r.skipped {
            Some(reason) => s.push_str(&format!(
                "{:<7} {:<30} {:<4} {:>6} {:>6} {:>6} {:>6}  skipped: {reason}\n",
                r.relation, label, r.kind, "—", "—", "—", "—"
            )),
            None => s.push_str(&format!(
                "{:<7} {:<30} {:<4} {:>6} {:>6.1} {:>6.1} {:>6.3}{}\n",
                r.relation,
                label,
                r.kind,
                r.scores.n,
                100.0 * r.scores.p_at_1,
                100.0 * r.scores.p_at_10,
                r.scores.mrr,
                if r.test_source == "trex_lms_vocab" { "  (stand-in test)" } else { "" }
            )),
        }
    }
    let m = &report.macro_average;
    let scored = report.relations.iter().filter(|r| r.skipped.is_none()).count();
    let label = if scored == report.relations.len() {
        format!("{scored} relations")
    } else {
        format!("{scored} of {} relations", report.relations.len())
    };
    if scored == 0 {
        s.push_str(&format!("{:<7} {:<30} {:<4} {:>6} {:>6} {:>6} {:>6}\n", "macro", label, "", "—", "—", "—", "—"));
    } else {
        s.push_str(&format!(
            "{:<7} {:<30} {:<4} {:>6} {:>6.1} {:>6.1} {:>6.3}\n",
            "macro",
            label,
            "",
            m.n,
            100.0 * m.p_at_1,
            100.0 * m.p_at_10,
            m.mrr
        ));
    }
    s
}
