//! One `ptune`/`finetune` configuration over several seeds. Few-shot results move a lot between
//! seeds (PET and P-tuning report means over runs), so [`run_seeds`] trains the configuration once
//! per seed, each into `<out>/seed-<N>/` exactly as a single run with that seed and directory
//! would, and [`SeedsSummary`] aggregates what the runs kept: for every dev (and, with a test
//! file, test) metric the mean, the sample standard deviation, min, max and the per-seed values.
//! The summary is written to `<out>/seeds.json` ([`SUMMARY_FILE`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::train::TuneMode;
use crate::{Error, Result};

mod run;

pub use run::{evaluate_best, run_seeds, saved_config, SeedsOptions, SUMMARY_FILE};

/// The most seeds one list may hold: a range such as `1-100000` is a typo, not a plan.
pub const MAX_SEEDS: usize = 1000;

/// The run directory of `seed` under `out`: `<out>/seed-<N>`.
pub fn seed_dir(out: &Path, seed: u64) -> PathBuf {
    out.join(format!("seed-{seed}"))
}

/// Parses a seed list: comma-separated whole numbers and inclusive ranges (`1,2,3`, `1-5`,
/// `0,10-12`). An empty list, an empty item, a backwards range or a seed listed twice is an error.
pub fn parse_seeds(list: &str) -> Result<Vec<u64>> {
    if list.trim().is_empty() {
        return Err(Error::input("the seed list is empty: list seeds as 1,2,3 or a range such as 1-5"));
    }
    let number = |s: &str, item: &str| {
        s.trim()
            .parse::<u64>()
            .map_err(|_| Error::input(format!("`{item}` is not a seed: seeds are whole numbers ≥ 0 (e.g. 1,2,3 or 1-5)")))
    };
    let mut seeds = Vec::new();
    for item in list.split(',') {
        let item = item.trim();
        if item.is_empty() {
            return Err(Error::input(format!("`{list}` has an empty item: list seeds as 1,2,3 or a range such as 1-5")));
        }
        let (lo, hi) = match item.split_once('-') {
            Some((a, b)) => (number(a, item)?, number(b, item)?),
            None => (number(item, item)?, number(item, item)?),
        };
        if lo > hi {
            return Err(Error::input(format!("the range `{item}` runs backwards: write {hi}-{lo}")));
        }
        // Checked before expanding, so that a huge range fails at once.
        if hi - lo >= (MAX_SEEDS - seeds.len().min(MAX_SEEDS)) as u64 {
            return Err(Error::input(format!("`{list}` lists more than {MAX_SEEDS} seeds")));
        }
        seeds.extend(lo..=hi);
    }
    check_seeds(&seeds)?;
    Ok(seeds)
}

/// Refuses an empty seed list or one that names a seed twice (its runs would share a directory).
pub fn check_seeds(seeds: &[u64]) -> Result<()> {
    if seeds.is_empty() {
        return Err(Error::input("the seed list is empty: give at least one seed"));
    }
    let mut seen = std::collections::BTreeSet::new();
    if let Some(twice) = seeds.iter().find(|s| !seen.insert(**s)) {
        return Err(Error::input(format!("seed {twice} is listed twice: each seed trains once, into its own seed-{twice}/")));
    }
    Ok(())
}

/// A seed list as the command line takes it (`1,2,3`).
pub fn format_seeds(seeds: &[u64]) -> String {
    seeds.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

/// What happened to one seed's run in this invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeedStatus {
    /// Trained from the start.
    Trained,
    /// An unfinished run continued to its end (`--resume`).
    Resumed,
    /// Finished before this invocation (`--resume`): read, not trained.
    Finished,
    /// Stopped (Ctrl-C) before its end: `--resume` continues it.
    Interrupted,
    /// Not started: the runner was stopped before this seed.
    NotStarted,
}

impl SeedStatus {
    /// The run reached its end (all steps, or early stopping): its numbers count in the summary.
    pub fn is_done(self) -> bool {
        matches!(self, SeedStatus::Trained | SeedStatus::Resumed | SeedStatus::Finished)
    }
}

/// One seed's run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedRun {
    /// The seed.
    pub seed: u64,
    /// Its run directory (`<out>/seed-<N>`).
    pub dir: PathBuf,
    /// What this invocation did with it.
    pub status: SeedStatus,
    /// Optimizer steps completed.
    pub steps: u64,
    /// The step of the kept checkpoint (`best/`).
    pub best_step: Option<u64>,
    /// Dev metrics of the kept checkpoint (empty without a dev set).
    pub dev: BTreeMap<String, f64>,
    /// Metrics of the kept checkpoint on the test file, when one was given.
    pub test: Option<BTreeMap<String, f64>>,
    /// Mean training loss of the last logged window.
    pub last_loss: Option<f64>,
    /// Early stopping ended the run.
    pub early_stopped: bool,
    /// Wall time this invocation spent training the seed, seconds.
    pub elapsed_s: f64,
}

impl SeedRun {
    /// A seed the runner never reached.
    pub fn not_started(seed: u64, dir: PathBuf) -> Self {
        Self {
            seed,
            dir,
            status: SeedStatus::NotStarted,
            steps: 0,
            best_step: None,
            dev: BTreeMap::new(),
            test: None,
            last_loss: None,
            early_stopped: false,
            elapsed_s: 0.0,
        }
    }
}

/// One metric over the seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricStats {
    /// Mean over the seeds.
    pub mean: f64,
    /// Sample standard deviation (n − 1 in the denominator); none for a single seed.
    pub std: Option<f64>,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// The seeds, in the order of the list.
    pub seeds: Vec<u64>,
    /// Each seed's value, in the same order.
    pub values: Vec<f64>,
}

impl MetricStats {
    /// The statistics of `(seed, value)` pairs; none when there are none.
    pub fn of(pairs: &[(u64, f64)]) -> Option<Self> {
        if pairs.is_empty() {
            return None;
        }
        let values: Vec<f64> = pairs.iter().map(|p| p.1).collect();
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let std = (values.len() > 1).then(|| (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt());
        Some(Self {
            mean,
            std,
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            seeds: pairs.iter().map(|p| p.0).collect(),
            values,
        })
    }
}

/// Per-metric statistics over the finished runs of `runs`, from the metrics `pick` gives each.
fn aggregate(runs: &[SeedRun], pick: impl Fn(&SeedRun) -> Option<&BTreeMap<String, f64>>) -> BTreeMap<String, MetricStats> {
    let mut pairs: BTreeMap<String, Vec<(u64, f64)>> = BTreeMap::new();
    for r in runs.iter().filter(|r| r.status.is_done()) {
        for (k, v) in pick(r).into_iter().flatten() {
            pairs.entry(k.clone()).or_default().push((r.seed, *v));
        }
    }
    pairs.into_iter().filter_map(|(k, p)| Some((k, MetricStats::of(&p)?))).collect()
}

/// Where a column of [`SeedsSummary::table`] reads its values.
enum Source<'a> {
    Dev(&'a str),
    Test(&'a str),
    Loss,
}

impl Source<'_> {
    fn value(&self, r: &SeedRun) -> Option<f64> {
        match self {
            Source::Dev(name) => r.dev.get(*name).copied(),
            Source::Test(name) => r.test.as_ref()?.get(*name).copied(),
            Source::Loss => r.last_loss,
        }
    }

    /// Metrics are fractions, shown ×100 as the papers print them; the loss is shown as is.
    fn percent(&self) -> bool {
        !matches!(self, Source::Loss)
    }
}

/// A column of [`SeedsSummary::table`].
struct Column<'a> {
    header: String,
    source: Source<'a>,
    stats: Option<&'a MetricStats>,
}

/// The result of a multi-seed run (what `<out>/seeds.json` holds and `--json` prints).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeedsSummary {
    /// The task (built-in name or file).
    pub task: String,
    /// P-tuning or fine-tuning.
    pub mode: TuneMode,
    /// The directory holding the `seed-<N>/` runs.
    pub out_dir: PathBuf,
    /// The seeds, in the order they were run.
    pub seeds: Vec<u64>,
    /// Runs that reached their end (the summary's statistics are over these).
    pub finished: usize,
    /// True when the stop flag (Ctrl-C) ended the runner before every seed finished.
    pub interrupted: bool,
    /// The runs had a dev set: without one `dev` is empty and only the training loss is known.
    pub has_dev: bool,
    /// Dev metrics of each run's kept checkpoint, over the finished runs.
    pub dev: BTreeMap<String, MetricStats>,
    /// The test file each kept checkpoint was evaluated on.
    pub test_data: Option<PathBuf>,
    /// Metrics on the test file, over the finished runs.
    pub test: BTreeMap<String, MetricStats>,
    /// The last training loss of the finished runs.
    pub train_loss: Option<MetricStats>,
    /// Every seed's run, in the order of the list.
    pub runs: Vec<SeedRun>,
    /// Wall time of this invocation, seconds.
    pub elapsed_s: f64,
}

impl SeedsSummary {
    /// Aggregates `runs` (one per seed, in the list's order).
    pub fn new(task: &str, mode: TuneMode, out_dir: &Path, has_dev: bool, test_data: Option<PathBuf>, runs: Vec<SeedRun>) -> Self {
        let losses: Vec<(u64, f64)> = runs.iter().filter(|r| r.status.is_done()).filter_map(|r| Some((r.seed, r.last_loss?))).collect();
        Self {
            task: task.to_string(),
            mode,
            out_dir: out_dir.to_path_buf(),
            seeds: runs.iter().map(|r| r.seed).collect(),
            finished: runs.iter().filter(|r| r.status.is_done()).count(),
            interrupted: runs.iter().any(|r| matches!(r.status, SeedStatus::Interrupted | SeedStatus::NotStarted)),
            has_dev,
            dev: aggregate(&runs, |r| Some(&r.dev)),
            test: aggregate(&runs, |r| r.test.as_ref()),
            test_data,
            train_loss: MetricStats::of(&losses),
            runs,
            elapsed_s: 0.0,
        }
    }

    /// Every seed finished.
    pub fn complete(&self) -> bool {
        self.finished == self.runs.len()
    }

    /// The command that continues the seeds (`--test` is not saved in the runs, so it is
    /// repeated); none when no seed got as far as a checkpoint, so that there is nothing to resume.
    pub fn resume_command(&self, model: &Path) -> Option<String> {
        if self.runs.iter().all(|r| r.status == SeedStatus::NotStarted) {
            return None;
        }
        let q = crate::train::checkpoint::shell_quote;
        let command = match self.mode {
            TuneMode::Ptune => "ptune",
            TuneMode::Finetune => "finetune",
        };
        let mut c = format!(
            "wenhui {command} --task {} --model {} -o {} --seeds {} --resume",
            q(&self.task),
            q(&model.to_string_lossy()),
            q(&self.out_dir.to_string_lossy()),
            format_seeds(&self.seeds)
        );
        if let Some(t) = &self.test_data {
            let _ = write!(c, " --test {}", q(&t.to_string_lossy()));
        }
        Some(c)
    }

    /// One line of the means and sample standard deviations ×100 (`dev acc 84.52 ± 1.23; …`);
    /// none before a seed finished or without metrics.
    pub fn headline(&self) -> Option<String> {
        let line = |stats: &BTreeMap<String, MetricStats>, what: &str| -> Vec<String> {
            let std = |m: &MetricStats| m.std.map_or_else(|| "-".to_string(), |d| format!("{:.2}", d * 100.0));
            stats.iter().map(|(k, m)| format!("{what} {k} {:.2} ± {}", m.mean * 100.0, std(m))).collect()
        };
        let parts = [line(&self.dev, "dev"), line(&self.test, "test")].concat();
        (self.finished > 0 && !parts.is_empty()).then(|| format!("{} (mean ± sample std over {} seeds)", parts.join("; "), self.finished))
    }

    /// A table: one row per seed (steps, kept step, dev and test metrics ×100, last loss), then
    /// mean, standard deviation, min and max over the finished seeds.
    pub fn table(&self) -> String {
        let mut cols: Vec<Column<'_>> = Vec::new();
        for (prefix, stats, test) in [("dev", &self.dev, false), ("test", &self.test, true)] {
            cols.extend(stats.iter().map(|(name, s)| Column {
                header: format!("{prefix} {name}"),
                source: if test { Source::Test(name) } else { Source::Dev(name) },
                stats: Some(s),
            }));
        }
        cols.push(Column { header: "loss".into(), source: Source::Loss, stats: self.train_loss.as_ref() });
        let fmt = |v: f64, pct: bool| if pct { format!("{:.2}", v * 100.0) } else { format!("{v:.4}") };
        let widths: Vec<usize> = cols.iter().map(|c| c.header.chars().count().max(8)).collect();
        let mut out = String::new();
        let done = self.runs.iter().filter(|r| r.status.is_done()).count();
        let _ = writeln!(
            out,
            "{} ({}): {done} of {} seeds finished; metrics ×100 at each seed's kept checkpoint",
            self.task,
            match self.mode {
                TuneMode::Ptune => "ptune",
                TuneMode::Finetune => "finetune",
            },
            self.runs.len()
        );
        let _ = write!(out, "{:<8} {:>7} {:>7}", "seed", "steps", "kept");
        for (c, w) in cols.iter().zip(&widths) {
            let _ = write!(out, "  {:>w$}", c.header);
        }
        out.push('\n');
        for r in &self.runs {
            let steps = format!("{}{}", r.steps, if r.early_stopped { "*" } else { "" });
            let kept = r.best_step.map(|s| s.to_string()).unwrap_or_else(|| "-".into());
            let _ = write!(out, "{:<8} {steps:>7} {kept:>7}", r.seed);
            match r.status {
                SeedStatus::Interrupted => out.push_str("  (stopped: --resume continues it)"),
                SeedStatus::NotStarted => out.push_str("  (not started)"),
                _ => {
                    for (c, w) in cols.iter().zip(&widths) {
                        let v = c.source.value(r).map(|v| fmt(v, c.source.percent())).unwrap_or_else(|| "-".into());
                        let _ = write!(out, "  {v:>w$}");
                    }
                }
            }
            out.push('\n');
        }
        let row = |s: &MetricStats, label: &str| match label {
            "mean" => Some(s.mean),
            "std" => s.std,
            "min" => Some(s.min),
            _ => Some(s.max),
        };
        if done > 0 {
            for label in ["mean", "std", "min", "max"] {
                let _ = write!(out, "{label:<8} {:>7} {:>7}", "", "");
                for (c, w) in cols.iter().zip(&widths) {
                    let v = c.stats.and_then(|s| row(s, label)).map(|v| fmt(v, c.source.percent())).unwrap_or_else(|| "-".into());
                    let _ = write!(out, "  {v:>w$}");
                }
                out.push('\n');
            }
        }
        if self.runs.iter().any(|r| r.early_stopped) {
            out.push_str("* stopped early (patience)\n");
        }
        if !self.has_dev {
            out.push_str("no dev set: dev metrics need --dev FILE.jsonl; the loss column is each seed's last training loss\n");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(seed: u64, acc: f64, loss: f64, status: SeedStatus) -> SeedRun {
        SeedRun {
            status,
            steps: 10,
            best_step: Some(10),
            dev: BTreeMap::from([("acc".to_string(), acc)]),
            last_loss: Some(loss),
            ..SeedRun::not_started(seed, seed_dir(Path::new("out"), seed))
        }
    }

    #[test]
    fn seed_lists_parse_and_bad_ones_are_named() {
        assert_eq!(parse_seeds("1,2,3").ok(), Some(vec![1, 2, 3]));
        assert_eq!(parse_seeds(" 7 , 1-3,10").ok(), Some(vec![7, 1, 2, 3, 10]));
        assert_eq!(parse_seeds("5-5").ok(), Some(vec![5]));
        let err = |s: &str| parse_seeds(s).map_or_else(|e| e.to_string(), |v| format!("parsed {v:?}"));
        assert!(err("").contains("empty"), "{}", err(""));
        assert!(err("1,,2").contains("empty item"), "{}", err("1,,2"));
        assert!(err("1,2,1").contains("seed 1 is listed twice"), "{}", err("1,2,1"));
        assert!(err("1-3,2").contains("seed 2 is listed twice"), "{}", err("1-3,2"));
        assert!(err("a").contains("`a` is not a seed"), "{}", err("a"));
        assert!(err("-1").contains("`-1` is not a seed"), "{}", err("-1"));
        assert!(err("5-2").contains("runs backwards"), "{}", err("5-2"));
        assert!(err("0-18446744073709551615").contains("more than 1000"), "{}", err("0-18446744073709551615"));
        assert!(err("1,0-999").contains("more than 1000"));
        assert_eq!(parse_seeds("0-999").map(|v| v.len()).ok(), Some(1000));
        assert!(check_seeds(&[]).is_err());
        assert_eq!(format_seeds(&[3, 1, 2]), "3,1,2");
        assert_eq!(seed_dir(Path::new("runs/cb"), 7), Path::new("runs/cb/seed-7"));
    }

    #[test]
    fn statistics_are_the_sample_ones() {
        // 0.5, 0.75, 1.0: mean 0.75, sample variance (0.0625 + 0 + 0.0625) / 2 = 0.0625, std 0.25.
        let s = MetricStats::of(&[(1, 0.5), (2, 0.75), (3, 1.0)]).unwrap_or_else(|| panic!("three values"));
        assert_eq!((s.mean, s.std, s.min, s.max), (0.75, Some(0.25), 0.5, 1.0));
        assert_eq!((s.seeds, s.values), (vec![1, 2, 3], vec![0.5, 0.75, 1.0]));
        // One seed has no spread.
        let one = MetricStats::of(&[(4, 0.3)]).unwrap_or_else(|| panic!("one value"));
        assert_eq!((one.mean, one.std, one.min, one.max), (0.3, None, 0.3, 0.3));
        assert!(MetricStats::of(&[]).is_none());
    }

    #[test]
    fn the_summary_counts_finished_runs_only() {
        let runs = vec![
            run(1, 0.5, 0.3, SeedStatus::Trained),
            run(2, 1.0, 0.1, SeedStatus::Finished),
            run(3, 0.0, 9.0, SeedStatus::Interrupted),
            SeedRun::not_started(4, "out/seed-4".into()),
        ];
        let s = SeedsSummary::new("cb", TuneMode::Ptune, Path::new("out"), true, None, runs);
        assert_eq!((s.finished, s.interrupted, s.complete()), (2, true, false));
        assert_eq!(s.dev["acc"].values, vec![0.5, 1.0]);
        assert_eq!(s.dev["acc"].mean, 0.75);
        assert_eq!(s.train_loss.as_ref().map(|l| l.seeds.clone()), Some(vec![1, 2]));
        let table = s.table();
        assert!(table.contains("2 of 4 seeds finished") && table.contains("dev acc"), "{table}");
        assert!(table.contains("(stopped: --resume continues it)") && table.contains("(not started)"), "{table}");
        // mean 75.00, std √((0.25² + 0.25²)/1) = 0.3536 → 35.36.
        assert!(table.lines().any(|l| l.starts_with("mean") && l.contains("75.00")), "{table}");
        assert!(table.lines().any(|l| l.starts_with("std") && l.contains("35.36")), "{table}");
        assert_eq!(
            s.resume_command(Path::new("m dir")).as_deref(),
            Some("wenhui ptune --task cb --model 'm dir' -o out --seeds 1,2,3,4 --resume")
        );
        assert_eq!(s.headline().as_deref(), Some("dev acc 75.00 ± 35.36 (mean ± sample std over 2 seeds)"));
        let none =
            SeedsSummary::new("cb", TuneMode::Ptune, Path::new("out"), true, None, vec![SeedRun::not_started(1, "out/seed-1".into())]);
        assert!(none.resume_command(Path::new("m")).is_none() && none.headline().is_none());
    }

    #[test]
    fn without_dev_the_table_says_what_is_missing() {
        let mut r = run(1, 0.0, 0.25, SeedStatus::Trained);
        r.dev.clear();
        let s = SeedsSummary::new("toy.toml", TuneMode::Finetune, Path::new("o"), false, None, vec![r]);
        assert!(s.dev.is_empty() && s.complete());
        let table = s.table();
        assert!(table.contains("dev metrics need --dev") && table.contains("0.2500") && !table.contains("dev acc"), "{table}");
    }
}
