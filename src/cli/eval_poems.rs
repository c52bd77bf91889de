//! `wenhui eval poems`: baseline vs inverse prompting on poem titles, judged by a second GLM.

use std::path::{Path, PathBuf};

use crate::cli::common::{read_title_lines, DefaultModel};
use indicatif::ProgressBar;
use wenhui::eval::poems::{evaluate_poems, rejudge_count, rejudge_poems, EvalTitle, HumanPoem, Method, PoemEvalOptions, PoemEvalReport};
use wenhui::generate::inverse::{Context, Task};
use wenhui::generate::poetry::Constraints;
use wenhui::model::{load_model, LoadOptions};
use wenhui::tokenizer::Tokenizer;

#[derive(Debug, clap::Args)]
pub struct PoemsArgs {
    #[command(flatten)]
    model: DefaultModel,
    /// The judge GLM, trained on other poems than the generator (default: ./models/poetry-judge, else that of the source tree the binary was built from).
    #[arg(long)]
    judge: Option<PathBuf>,
    /// JSONL files of titles (`{"title": ...}` per line; with `"text"` and `"form"` the human poem is judged
    /// too); the file stem names the source in the report.
    #[arg(long, num_args = 1.., required = true)]
    titles: Vec<PathBuf>,
    /// Use at most this many titles of each file.
    #[arg(long)]
    limit: Option<usize>,
    /// Poem form for every title: 五绝, 七绝, 五律 or 七律 [default: 五绝; with --rejudge, the report's].
    #[arg(long)]
    form: Option<String>,
    /// Rhyme table: pingshui (平水韵), cilin (词林正韵) or xinyun (中华新韵) [default: pingshui;
    /// with --rejudge, the report's].
    #[arg(long)]
    rhyme: Option<String>,
    /// Distractor titles per retrieval (the paper-style 1-of-20 uses 19; fewer, with a warning,
    /// when the titles hold fewer other distinct titles: the report gives the number of
    /// candidates used) [default: 19; with --rejudge, the report's].
    #[arg(long)]
    distractors: Option<usize>,
    /// Base seed (title i uses seed + i; it also draws the distractors) [default: 0; with
    /// --rejudge, the report's].
    #[arg(long)]
    seed: Option<u64>,
    /// Run the whole evaluation this many times (base seeds seed, seed+1, …: new poems and new
    /// distractors each time) and report means, with the retrieval accuracy's standard deviation.
    /// One run over 200 titles varies by about 3 points between seeds.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1000))]
    repeats: u64,
    /// Live beams (default: the task's).
    #[arg(long, visible_alias = "num-beams")]
    beams: Option<usize>,
    /// A poem task file (TOML) instead of the built-in `poem` task, for the generator: its prompt,
    /// search and score settings (see assets/tasks/poem.toml). The judge is not affected.
    #[arg(long)]
    task: Option<PathBuf>,
    /// The task whose inverse prompt the judge reads (default: the built-in `poem` task, the layout
    /// models/poetry-judge was trained on). Only for a judge trained on another layout.
    #[arg(long)]
    judge_task: Option<PathBuf>,
    /// Methods to run, comma-separated (e.g. only `inverse` when tuning a task file).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "baseline,inverse")]
    methods: Vec<MethodArg>,
    /// Judge the poems of earlier reports (their --output JSON) again instead of generating any,
    /// e.g. with a new --judge: give the same --titles and --limit as those runs (seed, form,
    /// distractors and rhyme table come from the reports). Several reports of one evaluation (e.g. `--methods
    /// baseline` and `--methods inverse` run side by side) merge into one report, with the gains
    /// between their methods. Each poem's validity is checked again with today's checker. Minutes
    /// instead of hours for thousands of poems.
    #[arg(long, value_name = "REPORT", num_args = 1.., conflicts_with_all = ["methods", "repeats", "task", "beams"])]
    rejudge: Vec<PathBuf>,
    /// Write the full report (every poem) as JSON here.
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Hide the progress bar (it shows only when stderr is a terminal).
    #[arg(long)]
    quiet: bool,
}

/// `--methods` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MethodArg {
    /// Plain sampling under the hard rules: one candidate per line, no search.
    Sampling,
    /// Beam search ranked by the forward log-probability.
    Baseline,
    /// The same search ranked with inverse prompting.
    Inverse,
}

impl From<MethodArg> for Method {
    fn from(m: MethodArg) -> Method {
        match m {
            MethodArg::Sampling => Method::Sampling,
            MethodArg::Baseline => Method::Baseline,
            MethodArg::Inverse => Method::Inverse,
        }
    }
}

fn read_titles(path: &Path, limit: Option<usize>) -> anyhow::Result<Vec<EvalTitle>> {
    let source = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let lines = read_title_lines(path)?;
    Ok(lines
        .into_iter()
        .take(limit.unwrap_or(usize::MAX))
        .map(|l| EvalTitle {
            reference: l.text.zip(l.form).map(|(text, form)| HumanPoem { text, form }),
            title: l.title,
            source: source.clone(),
        })
        .collect())
}

/// An earlier `--output` report.
fn read_report(path: &Path) -> anyhow::Result<PoemEvalReport> {
    let bytes = std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read the report {}: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| anyhow::anyhow!("{} is not a report of `wenhui eval poems --output` ({e})", path.display()))
}

fn load(dir: &Path) -> anyhow::Result<(Box<dyn wenhui::model::Backbone>, Tokenizer)> {
    let m = load_model(dir, &LoadOptions::default())?;
    Ok((m.backbone, Tokenizer::from_dir(dir)?))
}

pub fn run_poems(a: PoemsArgs) -> anyhow::Result<()> {
    if let Some(out) = &a.output {
        let inputs: Vec<(&str, &Path)> =
            a.titles.iter().map(|p| ("--titles", p.as_path())).chain(a.rejudge.iter().map(|p| ("--rejudge", p.as_path()))).collect();
        wenhui::error::check_not_input("--output", out, &inputs)?;
    }
    let mut titles = Vec::new();
    for p in &a.titles {
        titles.extend(read_titles(p, a.limit)?);
    }
    let previous = a.rejudge.iter().map(|p| Ok((p.display().to_string(), read_report(p)?))).collect::<anyhow::Result<Vec<_>>>()?;
    // The (first) report's own settings, unless given (rejudge_poems refuses a mismatch).
    let first = previous.first().map(|(_, r)| r);
    let distractors = a.distractors.or(first.map(|r| r.candidates.saturating_sub(1))).unwrap_or(19);
    let seed = a.seed.or(first.and_then(|r| r.seed)).unwrap_or(0);
    let form = a.form.clone().or(first.and_then(|r| r.form.clone())).unwrap_or_else(|| "五绝".into());
    // Any report's: those written before the field have none.
    let rhyme = a.rhyme.clone().or_else(|| previous.iter().find_map(|(_, r)| r.rhyme.clone())).unwrap_or_else(|| "pingshui".into());
    let constraints = Constraints::parse(&form, &rhyme, "")?;
    let judge_dir = a.judge.clone().unwrap_or_else(wenhui::embedded::poetry_judge_dir);
    let (jm, jt) = load(&judge_dir).map_err(|e| anyhow::anyhow!("judge model {}: {e}", judge_dir.display()))?;
    let j = Context::new(jm.as_ref(), &jt)?;
    let read_task = |path: &Option<PathBuf>| match path {
        Some(p) => Task::from_file(p),
        None => Task::builtin("poem"),
    };
    let judge_task = read_task(&a.judge_task)?;
    judge_task.validate()?;
    let methods: Vec<Method> = a.methods.iter().map(|&m| m.into()).collect();
    let opts = PoemEvalOptions { constraints, distractors, seed, methods, repeats: a.repeats as usize };
    let progress = |len: u64, what: &str| -> ProgressBar {
        if a.quiet {
            return ProgressBar::hidden();
        }
        let bar = wenhui::train::progress::count_bar(true, len, what);
        if !bar.is_hidden() {
            // Drawn now and kept ticking: a poem takes seconds, so the clock moves between them.
            bar.enable_steady_tick(std::time::Duration::from_secs(1));
        }
        bar
    };
    let report = if !previous.is_empty() {
        let bar = progress(rejudge_count(&previous, &titles)? as u64, "poems judged");
        let mut tick = |_: usize, _: &wenhui::eval::poems::PoemRow| bar.inc(1);
        let r = rejudge_poems(&j, &judge_task, &titles, &previous, &opts, Some(&mut tick))?;
        bar.finish_and_clear();
        r
    } else {
        let gen_dir = a.model.dir()?;
        let (gm, gt) = load(&gen_dir)?;
        let g = Context::new(gm.as_ref(), &gt)?;
        let mut task = read_task(&a.task)?;
        if let Some(b) = a.beams {
            task.search.set_beams(b);
        }
        task.validate()?;
        let runs = Method::ALL.iter().filter(|m| opts.methods.contains(m)).count() as u64;
        let per_pass: u64 = titles.iter().map(|t| runs + t.reference.is_some() as u64).sum();
        let bar = progress(per_pass * a.repeats, "poems generated and judged");
        let repeats = a.repeats;
        let mut tick = |_: usize, r: &wenhui::eval::poems::PoemRow| {
            bar.set_message(if repeats > 1 {
                format!("{} {} (repeat {})", r.method, r.title, r.repeat + 1)
            } else {
                format!("{} {}", r.method, r.title)
            });
            bar.inc(1);
        };
        let r = evaluate_poems(&g, &j, &task, &judge_task, &titles, &opts, Some(&mut tick))?;
        bar.finish_and_clear();
        r
    };
    if let Some(p) = &a.output {
        wenhui::error::write_atomic(p, serde_json::to_string_pretty(&report)?.as_bytes())?;
    }
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

fn print_table(r: &PoemEvalReport) {
    let spread = r.repeats > 1;
    println!(
        "| titles | method | poems | validity | distinct-1 | distinct-2 | retrieval acc. (1 of {}{}) | mean rank | s/poem |",
        r.candidates,
        if spread { format!(", mean ± sd of {} runs", r.repeats) } else { String::new() }
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (src, rows) in &r.summary {
        for m in rows {
            println!(
                "| {src} | {} | {} | {:.1}% | {:.3} | {:.3} | {:.1}%{} | {:.2} | {:.1} |",
                m.method,
                m.poems,
                100.0 * m.validity,
                m.distinct_1,
                m.distinct_2,
                100.0 * m.retrieval_accuracy,
                if spread { format!(" ± {:.1}", 100.0 * m.retrieval_sd) } else { String::new() },
                m.mean_rank,
                m.ms_per_poem / 1e3
            );
        }
    }
    let pm = |g: &wenhui::eval::poems::Gain| if r.repeats > 1 { format!(" ± {:.1}", 100.0 * g.se) } else { String::new() };
    for (src, gains) in &r.gains {
        for g in gains {
            println!("gain of {} over {} ({src}): {:+.1} points{}", g.method, g.over, 100.0 * g.mean, pm(g));
        }
    }
    if r.repeats > 1 && r.gains.values().any(|g| !g.is_empty()) {
        println!("(gains paired by repeat: mean ± standard error over the {} repeats)", r.repeats);
    }
}
