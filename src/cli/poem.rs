//! `wenhui poem` and `wenhui answer`: inverse-prompted generation from the command line.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::cli::common::{read_title_lines, DefaultModel};
use wenhui::generate::inverse::{generate_inverse, Context, InverseOptions, InverseResult, PlainRules, PoemRules, Task, UnitRules};
use wenhui::generate::poetry::{check_poem, placements, split_keywords, split_lines, to_simplified, Constraints, Form, Placement};
use wenhui::model::{load_model, LoadOptions};
use wenhui::serve::{answer_search_fit, glm_search_fit, longest_poem, AnswerTooLong};
use wenhui::tokenizer::Tokenizer;

/// Options every inverse-prompting command shares.
#[derive(Debug, clap::Args)]
pub struct SearchArgs {
    #[command(flatten)]
    model: DefaultModel,
    /// A task file (TOML) instead of the built-in template (see assets/tasks/).
    #[arg(long)]
    task: Option<PathBuf>,
    /// Seed of the sampler: the same seed gives the same text.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Live beams (default: the task's).
    #[arg(long, visible_alias = "num-beams", value_parser = crate::cli::common::positive)]
    beams: Option<usize>,
    /// Candidates sampled per beam and unit (default: the task's).
    #[arg(long, value_parser = crate::cli::common::positive)]
    per_beam: Option<usize>,
    /// Refinement rounds after the search (GLM only; default: the task's).
    #[arg(long)]
    refine: Option<usize>,
    /// Rank by the forward log-probability only (the paper's search baseline): no inverse prompting.
    #[arg(long)]
    no_inverse: bool,
    /// Print one JSON object (text, units with their scores, timing) instead of text.
    #[arg(long)]
    json: bool,
    /// After the text, show each step's top candidates with forward, inverse and format scores.
    #[arg(long)]
    explain: bool,
}

impl SearchArgs {
    fn task(&self, builtin: &str) -> anyhow::Result<Task> {
        let mut t = match &self.task {
            Some(p) => Task::from_file(p)?,
            None => Task::builtin(builtin)?,
        };
        // The task's own settings first: an error after the flags are applied is the flags'.
        if let Some(p) = &self.task {
            t.validate().map_err(|e| anyhow::anyhow!("--task {}: {e}", p.display()))?;
        }
        if let Some(b) = self.beams {
            t.search.set_beams(b);
        }
        if let Some(n) = self.per_beam {
            t.search.per_beam = n;
            t.search.first_pool = t.search.first_pool.max(n);
        }
        if let Some(r) = self.refine {
            t.search.refine_rounds = r;
        }
        t.validate().map_err(|e| {
            let e = match e {
                wenhui::Error::Input(m) => m,
                other => other.to_string(),
            };
            let given: Vec<String> = [("--beams", self.beams), ("--per-beam", self.per_beam), ("--refine", self.refine)]
                .iter()
                .filter_map(|(flag, v)| v.map(|v| format!("{flag} {v}")))
                .collect();
            if given.is_empty() {
                anyhow::anyhow!("{e}")
            } else {
                anyhow::anyhow!("{}: {e}; choose smaller values", given.join(", "))
            }
        })?;
        Ok(t)
    }

    fn options(&self) -> InverseOptions {
        InverseOptions { seed: self.seed, use_inverse: !self.no_inverse, explain: self.explain, ..Default::default() }
    }

    fn load(&self) -> anyhow::Result<(Box<dyn wenhui::model::Backbone>, Tokenizer)> {
        let dir = self.model.dir()?;
        let m = load_model(&dir, &LoadOptions::default())?;
        let tok = Tokenizer::from_dir(if dir.is_dir() { &dir } else { dir.parent().unwrap_or(&dir) })?;
        Ok((m.backbone, tok))
    }
}

/// `wenhui poem`
#[derive(Debug, clap::Args)]
#[command(after_help = crate::cli::poem_check::EXIT_HELP)]
pub struct PoemArgs {
    /// The title (simplified or traditional), e.g. 虹桥机场.
    #[arg(long, required_unless_present_any = ["titles", "check"])]
    title: Option<String>,
    /// Check a poem you wrote instead of writing one (`-`: read it from stdin); no model is
    /// loaded. Prints each line's 平仄 as read (`*` either reading, `?` unknown), the rhyme group
    /// of each rhyme character, every violated rule and a summary; --form defaults to `auto`
    /// (inferred from the shape), --rhyme, --acrostic and --include apply, --json prints one object.
    #[arg(long, value_name = "TEXT", conflicts_with_all = [
        "title", "titles", "output", "author", "explain", "seed", "beams", "per_beam", "refine", "no_inverse", "task", "model",
    ])]
    check: Option<String>,
    /// Batch mode: a JSONL file of titles (`{"title": …}` per line, optional `author` and `form`,
    /// e.g. the output of `wenhui data split`); line i uses seed + i, and one JSON poem per line
    /// (`title`, `author`, `form`, `text`, …: ready for `wenhui data prepare`) goes to --output.
    #[arg(long, conflicts_with_all = ["title", "acrostic", "explain"])]
    titles: Option<PathBuf>,
    /// Batch mode: write the poems (JSONL) here instead of to stdout.
    #[arg(long, short, requires = "titles")]
    output: Option<PathBuf>,
    /// Form: 五绝, 七绝, 五律 or 七律 (also wujue, qijue, wulv, qilv) [default: 五绝; in batch mode
    /// each line's `form` unless this is given; with --check also `auto`, the default there:
    /// inferred from the text's 4 or 8 lines of 5 or 7 characters].
    #[arg(long)]
    form: Option<String>,
    /// Acrostic (藏头) heads: one character per line, e.g. 春夏秋冬 (none by default).
    #[arg(long, default_value = "", hide_default_value = true)]
    acrostic: String,
    /// Keywords the poem must contain, each within one line: 1 to 4 Chinese characters each,
    /// separated by commas (月,酒 or 月，酒); the flag may be repeated. With --check, a missing
    /// keyword is a violation.
    #[arg(long, value_name = "WORDS")]
    include: Vec<String>,
    /// Rhyme table: pingshui (平水韵), cilin (词林正韵) or xinyun (中华新韵).
    #[arg(long, default_value = "pingshui")]
    rhyme: String,
    /// The author named in the prompt (a style hint) [default: 李白; in batch mode each line's
    /// `author` unless this is given].
    #[arg(long)]
    author: Option<String>,
    #[command(flatten)]
    search: SearchArgs,
}

/// What `wenhui answer` says on stderr, and in its help, about running without `--model`.
const ANSWER_MODEL_WARNING: &str = "the embedded model was trained on poems only, so without --model the answer is \
poem-like text, not an answer; answers need a GLM that knows question answering (--model DIR); see the README, \
section CLI, `answer`";

/// `wenhui answer`
#[derive(Debug, clap::Args)]
#[command(after_help = format!("Note: {ANSWER_MODEL_WARNING}."))]
pub struct AnswerArgs {
    /// The question.
    #[arg(long)]
    question: String,
    /// A longer description of the question (none by default).
    #[arg(long, default_value = "", hide_default_value = true)]
    description: String,
    #[command(flatten)]
    search: SearchArgs,
}

/// The form used when neither `--form` nor a batch line names one.
const DEFAULT_FORM: &str = "五绝";
/// The author used when neither `--author` nor a batch line names one.
const DEFAULT_AUTHOR: &str = "李白";

pub fn run_poem(a: PoemArgs) -> anyhow::Result<()> {
    if let Some(text) = &a.check {
        let form = a.form.as_deref().unwrap_or("auto");
        return crate::cli::poem_check::run(text, form, &a.rhyme, &a.acrostic, &keywords(&a.include), a.search.json);
    }
    if a.form.as_deref().is_some_and(|f| f.trim().eq_ignore_ascii_case("auto")) {
        anyhow::bail!("--form auto infers the form of a poem given to --check; to write a poem choose 五绝, 七绝, 五律 or 七律");
    }
    if let Some(path) = &a.titles {
        return run_batch(&a, path);
    }
    if let Some(out) = &a.output {
        anyhow::bail!("--output {}: only batch mode (--titles FILE) writes a file; one poem goes to stdout", out.display());
    }
    let constraints = Constraints::parse(a.form.as_deref().unwrap_or(DEFAULT_FORM), &a.rhyme, &a.acrostic)?
        .with_keywords(&keywords(&a.include))
        .map_err(include_error)?;
    let title: String = a.title.as_deref().unwrap_or_default().trim().chars().map(to_simplified).collect();
    if title.is_empty() {
        anyhow::bail!("--title is empty: give the poem a title, e.g. --title 虹桥机场");
    }
    let task = a.search.task("poem")?;
    let fields = poem_fields(&task, &title, a.author.as_deref().unwrap_or(DEFAULT_AUTHOR), constraints.form)?;
    let mut rules = PoemRules::new(constraints.clone());
    let (model, tok) = a.search.load()?;
    if let Some(msg) = title_unknown(&tok, &title)? {
        anyhow::bail!("--{msg}");
    }
    let author = a.author.as_ref().map(|_| "--author");
    if let Some(msg) = poem_too_long(model.as_ref(), &tok, &task, &fields, constraints.form, "--title", author)? {
        anyhow::bail!(msg);
    }
    let cx = Context::new(model.as_ref(), &tok)?;
    // Before the title goes out: a head the vocabulary cannot write fails the search anyway.
    for c in (0..constraints.heads.len()).filter_map(|k| constraints.head(k)) {
        cx.head_tokens(c)?;
    }
    check_keyword_tokens(&cx, &constraints)?;
    if !a.search.json {
        println!("《{title}》");
    }
    let out = run(&cx, &task, &fields, &mut rules, &a.search, &|_, u| u.to_string(), true)?;
    let verdict = check_poem(&out.text, &constraints)?;
    if a.search.json {
        let v = serde_json::json!({
            "title": title, "form": constraints.form.name(), "acrostic": a.acrostic, "rhyme": a.rhyme,
            "seed": a.search.seed, "text": out.text, "lines": out.units.iter().map(|u| &u.text).collect::<Vec<_>>(),
            "constraints_ok": verdict.is_ok(), "violations": verdict.violations.iter().map(|v| v.to_string()).collect::<Vec<_>>(),
            "include": include_json(&constraints, &out.text), "result": out,
        });
        println!("{v}");
    } else {
        eprintln!(
            "[{} · {}{} · seed {} · score {:.2} · {} candidates scored · {} refined · {:.1} s · constraints {}]",
            Form::name(constraints.form),
            a.rhyme,
            include_text(&constraints, &out.text),
            a.search.seed,
            out.score,
            out.candidates_scored,
            out.refined,
            out.elapsed_ms / 1e3,
            if verdict.is_ok() { "ok".to_string() } else { verdict.to_string() }
        );
    }
    Ok(())
}

/// The keywords of every `--include` (each a comma-separated list).
fn keywords(include: &[String]) -> Vec<String> {
    include.iter().flat_map(|l| split_keywords(l)).collect()
}

/// A keyword error, named for the flag.
fn include_error(e: wenhui::Error) -> anyhow::Error {
    match e {
        wenhui::Error::Input(m) => anyhow::anyhow!("--include: {m}"),
        other => other.into(),
    }
}

/// Every keyword character must be one token (the search may have to force it): checked before
/// anything is printed, as the acrostic heads are.
fn check_keyword_tokens(cx: &Context<'_>, c: &Constraints) -> anyhow::Result<()> {
    for k in c.simplified_keywords() {
        cx.keyword_tokens(&k.iter().collect::<String>()).map_err(include_error)?;
    }
    Ok(())
}

/// Each keyword and the line of `text` it stands in.
fn placed(c: &Constraints, text: &str) -> Vec<Placement> {
    let bodies: Vec<String> = split_lines(text).unwrap_or_default().iter().map(|l| l.body.iter().collect()).collect();
    placements(c, &bodies.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Each keyword and the line (1-based) it stands in, `null` when missing.
fn include_json(c: &Constraints, text: &str) -> serde_json::Value {
    serde_json::json!(placed(c, text))
}

/// ` · include 月 (line 2), 酒 (line 4)` for the summary line; empty without keywords.
fn include_text(c: &Constraints, text: &str) -> String {
    if c.keywords.is_empty() {
        return String::new();
    }
    format!(" · include {}", placed(c, text).iter().map(Placement::to_string).collect::<Vec<_>>().join(", "))
}

/// Warns (one line) about the characters of `title` the tokenizer does not know; returns the
/// error message when it knows none of them (a poem for `[UNK]` is a poem for no title).
fn title_unknown(tok: &Tokenizer, title: &str) -> wenhui::Result<Option<String>> {
    Ok(wenhui::generate::blank::unknown_text(tok, title)?.warn_or_refusal(&format!("title `{title}`")))
}

/// Why a poem of `form` for `fields` does not fit the model's positions (the shared check of
/// `/v1/poem`), naming the input to shorten: `title` (`--title`, or a titles file's title) and
/// `author` (its label, `None` when it is the default, which the user did not choose). `None`
/// when it fits, or when the model is not a GLM (the check counts GLM prompts, as `/v1/poem`
/// does; a left-to-right model meets its own checks in the search).
fn poem_too_long(
    model: &dyn wenhui::model::Backbone,
    tok: &Tokenizer,
    task: &Task,
    fields: &BTreeMap<String, String>,
    form: Form,
    title: &str,
    author: Option<&str>,
) -> wenhui::Result<Option<String>> {
    let info = model.info();
    if info.kind != wenhui::model::ModelKind::Glm {
        return Ok(None);
    }
    let units = longest_poem(form);
    let Some(t) = glm_search_fit(tok, task, fields, &units, "title", info.max_positions)? else { return Ok(None) };
    let form = form.name();
    let need = format!("its longest prompt would take {} positions, the model has {}", t.need, t.max_positions);
    if t.fits > 0 {
        return Ok(Some(format!(
            "{title} is {} characters, too long for a {form} on this model ({need}): at most {} characters fit; shorten {title} \
             (or choose a shorter form)",
            t.chars, t.fits
        )));
    }
    if let Some(author) = author {
        if let Some(a) = glm_search_fit(tok, task, fields, &units, "author", info.max_positions)?.filter(|a| a.fits > 0) {
            return Ok(Some(format!(
                "{author} is {} characters, too long for a {form} on this model ({need}): with this title at most {} characters of it \
                 fit; shorten {author}",
                a.chars, a.fits
            )));
        }
        return Ok(Some(format!("{title} and {author} are too long for a {form} on this model ({need}); shorten them")));
    }
    Ok(Some(format!("a {form} does not fit this model even with a one-character title ({need}); choose a shorter form")))
}

/// The poem task's field values for `title`, `author` and `form` (defaults filled in).
fn poem_fields(task: &Task, title: &str, author: &str, form: Form) -> wenhui::Result<BTreeMap<String, String>> {
    task.fields(&BTreeMap::from([
        ("title".to_string(), title.to_string()),
        ("author".to_string(), author.to_string()),
        ("form".to_string(), form.name().to_string()),
    ]))
}

/// `wenhui poem --titles FILE`: a poem per title, as JSONL. A title no poem fits is reported and
/// skipped; the poems written so far are kept when a later title fails.
fn run_batch(a: &PoemArgs, path: &Path) -> anyhow::Result<()> {
    let mut titles = read_title_lines(path)?;
    for t in &mut titles {
        t.title = t.title.chars().map(to_simplified).collect();
    }
    // Check every line's form before the first (slow) poem.
    let mut constraints = Vec::with_capacity(titles.len());
    for (i, t) in titles.iter().enumerate() {
        let form = a.form.as_deref().or(t.form.as_deref()).unwrap_or(DEFAULT_FORM);
        let c = Constraints::parse(form, &a.rhyme, "").map_err(|e| anyhow::anyhow!("{} (title {}): {e}", path.display(), i + 1))?;
        let c = c
            .with_keywords(&keywords(&a.include))
            .map_err(|e| anyhow::anyhow!("{} (title {}): {}", path.display(), i + 1, include_error(e)))?;
        constraints.push(c);
    }
    if let Some(out) = &a.output {
        // Before the first (slow) poem: the titles file is not the output, and the output can be written.
        crate::cli::common::check_output_file(out, &[("--titles", path)], true)?;
    }
    let task = a.search.task("poem")?;
    let (model, tok) = a.search.load()?;
    let cx = Context::new(model.as_ref(), &tok)?;
    if let Some(c) = constraints.first() {
        check_keyword_tokens(&cx, c)?;
    }
    let bar = wenhui::train::progress::count_bar(true, titles.len() as u64, "poems");
    let (mut lines, mut skipped) = (Vec::new(), 0usize);
    let mut failure = None;
    for (i, (t, c)) in titles.iter().zip(&constraints).enumerate() {
        bar.set_message(t.title.clone());
        let author = a.author.as_deref().or(t.author.as_deref()).unwrap_or(DEFAULT_AUTHOR);
        let seed = a.search.seed + i as u64;
        let opts = InverseOptions { seed, ..a.search.options() };
        // The line's author is named when the line chose it; --author overrides every line's.
        let author_label = if a.author.is_some() { Some("--author") } else { t.author.as_ref().map(|_| "its author") };
        let refuse = |msg: Option<String>| msg.map_or(Ok(()), |m| Err(wenhui::Error::input(m)));
        let result = title_unknown(&tok, &t.title)
            .and_then(refuse)
            .and_then(|()| poem_fields(&task, &t.title, author, c.form))
            .and_then(|f| poem_too_long(model.as_ref(), &tok, &task, &f, c.form, "its title", author_label).and_then(refuse).map(|()| f))
            .and_then(|f| generate_inverse(&cx, &task, &f, &mut PoemRules::new(c.clone()), &opts, None));
        match result {
            Ok(out) => {
                let ok = check_poem(&out.text, c)?.is_ok();
                let mut row = serde_json::json!({"title": t.title, "author": author, "form": c.form.name(), "seed": seed,
                    "text": out.text, "score": out.score, "constraints_ok": ok});
                if !c.keywords.is_empty() {
                    row["include"] = include_json(c, &out.text);
                }
                if a.output.is_some() {
                    lines.push(row.to_string());
                } else {
                    bar.suspend(|| println!("{row}"));
                }
            }
            Err(wenhui::Error::Input(e)) => {
                skipped += 1;
                bar.suspend(|| eprintln!("{}: title {} ({}): skipped: {e}", path.display(), i + 1, t.title));
            }
            Err(e) => {
                failure = Some(anyhow::anyhow!("{}: title {} ({}): {e}", path.display(), i + 1, t.title));
                break;
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    if failure.is_none() && skipped > 0 && skipped == titles.len() {
        anyhow::bail!("{}: no poem: all {skipped} titles were skipped (see above); nothing written", path.display());
    }
    if let Some(out) = &a.output {
        let mut text = lines.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        wenhui::error::write_atomic(out, text.as_bytes())?;
        eprintln!("{} poems written to {} ({skipped} titles skipped)", lines.len(), out.display());
    }
    failure.map_or(Ok(()), Err)
}

pub fn run_answer(a: AnswerArgs) -> anyhow::Result<()> {
    if a.question.trim().is_empty() {
        anyhow::bail!("--question is empty: ask something, e.g. --question 如何学习写诗？");
    }
    let task = a.search.task("answer")?;
    let given = BTreeMap::from([("question".to_string(), a.question.clone()), ("description".into(), a.description.clone())]);
    let fields = task.fields(&given)?;
    let mut rules = PlainRules::new(task.units.clone());
    let (model, tok) = a.search.load()?;
    // As `poem` does for its title: text the vocabulary lacks reaches the model as [UNK].
    for (flag, text) in [("--question", &a.question), ("--description", &a.description)] {
        if text.trim().is_empty() {
            continue;
        }
        if let Some(refusal) = wenhui::generate::blank::unknown_text(&tok, text)?.warn_or_refusal(flag) {
            anyhow::bail!(refusal);
        }
    }
    if let Some(msg) = question_too_long(model.as_ref(), &tok, &task, &fields, !a.description.trim().is_empty())? {
        anyhow::bail!(msg);
    }
    if a.search.model.model.is_none() {
        eprintln!("warning: {ANSWER_MODEL_WARNING}");
    }
    let cx = Context::new(model.as_ref(), &tok)?;
    let out = run(&cx, &task, &fields, &mut rules, &a.search, &|_, u| u.to_string(), false)?;
    if a.search.json {
        println!(
            "{}",
            serde_json::json!({"question": a.question, "description": a.description, "seed": a.search.seed, "text": out.text, "result": out})
        );
    } else {
        println!();
        eprintln!(
            "[seed {} · score {:.2} · {} candidates scored · {:.1} s]",
            a.search.seed,
            out.score,
            out.candidates_scored,
            out.elapsed_ms / 1e3
        );
    }
    Ok(())
}

/// Why an answer to the question in `fields` does not fit the model's positions (the check
/// `/v1/answer` makes, [`answer_search_fit`]: room for the widest inverse window an answer can
/// reach), naming `--question`, or `--description` when one was `given` and the question alone is
/// not the cause; `None` when it fits or the model is not a GLM.
fn question_too_long(
    model: &dyn wenhui::model::Backbone,
    tok: &Tokenizer,
    task: &Task,
    fields: &BTreeMap<String, String>,
    description_given: bool,
) -> wenhui::Result<Option<String>> {
    let info = model.info();
    if info.kind != wenhui::model::ModelKind::Glm {
        return Ok(None);
    }
    let Some(too_long) = answer_search_fit(tok, task, fields, description_given, info.max_positions)? else { return Ok(None) };
    let need = |t: wenhui::serve::SearchTooLong| format!("its prompts would take {} positions, the model has {}", t.need, t.max_positions);
    Ok(Some(match too_long {
        AnswerTooLong::Question(t) => format!(
            "--question is {} characters, too long for this model with room for an answer ({}): at most {} characters fit; \
             shorten --question",
            t.chars,
            need(t),
            t.fits
        ),
        AnswerTooLong::Description(d) => format!(
            "--description is {} characters, too long for this model with this question ({}): at most {} characters of it fit; \
             shorten --description",
            d.chars,
            need(d),
            d.fits
        ),
        AnswerTooLong::Both(t) => format!("--question and --description are too long for this model ({}); shorten them", need(t)),
        AnswerTooLong::NoRoom(t) => format!("this model has too few positions for an answer ({})", need(t)),
    }))
}

/// Runs the search, streaming decided units to stdout (one per line for poems), then the explanation.
fn run(
    cx: &Context<'_>,
    task: &Task,
    fields: &BTreeMap<String, String>,
    rules: &mut dyn UnitRules,
    s: &SearchArgs,
    show: &dyn Fn(usize, &str) -> String,
    line_per_unit: bool,
) -> anyhow::Result<InverseResult> {
    let json = s.json;
    let mut print = |k: usize, u: &str| {
        if json {
            return;
        }
        let mut out = std::io::stdout().lock();
        let _ = if line_per_unit { writeln!(out, "{}", show(k, u)) } else { write!(out, "{}", show(k, u)) };
        let _ = out.flush();
    };
    let out = generate_inverse(cx, task, fields, rules, &s.options(), Some(&mut print))?;
    if out.refined > 0 && !json {
        println!("refined ({} unit{} replaced):", out.refined, if out.refined == 1 { "" } else { "s" });
        let sep = if line_per_unit { "\n" } else { "" };
        println!("{}", out.units.iter().map(|u| u.text.as_str()).collect::<Vec<_>>().join(sep));
    }
    if s.explain && !json {
        println!("\nexplain (per unit: the best candidates, * = kept; fwd = log p forward, ip = inverse log p, fmt = format score, then the rule verdict)");
        for step in &out.explain {
            let what = if step.refine { "refine unit" } else { "unit" };
            println!("{what} {} ({} sampled)", step.unit + 1, step.sampled);
            for r in &step.top {
                println!(
                    "  {} {:<12} fwd {:>8.2}  ip {:>8.2}  copy {:>6.2}  hinge {:>5.2}  fmt {:>6.2}  total {:>8.2}  beam {:>8.2}  {}",
                    if r.kept { "*" } else { " " },
                    r.unit.text,
                    r.unit.forward,
                    r.unit.inverse,
                    r.unit.copy_penalty,
                    r.unit.hinge,
                    r.unit.format,
                    r.unit.total,
                    r.beam_score,
                    r.verdict
                );
            }
        }
    }
    Ok(out)
}
