//! `wenhui eval --task rte[,cb,…|all] --model DIR [--prompt DIR] [--data FILE]`: cloze-task metrics as a table.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use wenhui::cloze::task::BUILTIN as BUILTIN_TASKS;
use wenhui::cloze::{evaluate, ClassifyOptions, ClozeTask};
use wenhui::model::load_model;
use wenhui::ptuning::train::{load_prompt, load_tokenizer};

use crate::cli::common::ModelArgs;
use crate::cli::ptune::fewglue_file;

/// Flags of `wenhui eval --task`.
#[derive(Debug, clap::Args)]
pub struct TaskArgs {
    /// Cloze tasks: built-in names (rte, cb, boolq, copa, wic, wsc, multirc), comma-separated, or
    /// `all`, or a task TOML file.
    #[arg(long)]
    task: Option<String>,
    /// Model directory, checkpoint directory or weights file (a `wenhui finetune` run's `best/` works).
    #[arg(long, required = false)]
    model: Option<PathBuf>,
    /// A trained prompt for the `[P]` tokens: a `wenhui ptune` run directory, its `best/`, an
    /// encoder state or a peft adapter. Without it the `[P]` tokens are dropped.
    #[arg(long)]
    prompt: Option<PathBuf>,
    /// Labelled JSONL to evaluate on (default for built-in tasks: FewGLUE's SuperGLUE dev set,
    /// `val.jsonl`, under $WENHUI_FEWGLUE or ../shared/data/fewglue).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Which FewGLUE file when --data is absent: val (SuperGLUE dev), dev32 or train.
    #[arg(long, default_value = "val", value_parser = ["val", "dev32", "train"])]
    split: String,
    /// Evaluate only the first N examples; on a grouped task (MultiRC questions, WSC pronouns)
    /// every example of a group they started is kept too, so a question is scored whole.
    #[arg(long, value_parser = crate::cli::common::positive)]
    limit: Option<usize>,
    /// Tokenizer directory or file (default: the model directory).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Rows per forward pass.
    #[arg(long, default_value_t = 16, value_parser = crate::cli::common::positive)]
    batch_size: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// Evaluates each task and prints a table (or JSON).
pub fn run(a: TaskArgs) -> anyhow::Result<()> {
    let Some(spec) = a.task.as_deref() else {
        bail!("pass --task NAME (rte, cb, boolq, copa, wic, wsc, multirc, all or a task TOML) or a subcommand: ppl, poems, seq2seq, lm (see `wenhui eval --help`)");
    };
    let Some(model_path) = &a.model else { bail!("pass --model DIR: the model to evaluate") };
    let names: Vec<String> = if spec == "all" {
        BUILTIN_TASKS.iter().map(|s| s.to_string()).collect()
    } else {
        spec.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
    };
    if names.len() > 1 && a.prompt.is_some() {
        bail!("--prompt belongs to one task: evaluate one task at a time with a trained prompt");
    }
    if names.len() > 1 && a.data.is_some() {
        bail!("--data belongs to one task: evaluate one task at a time with your own file");
    }
    let margs = ModelArgs { model: model_path.clone(), gelu: None, config: None };
    let m = load_model(model_path, &margs.load_options())?;
    let tok = load_tokenizer(a.tokenizer.as_deref(), &margs.dir()).context("loading the tokenizer (pass --tokenizer)")?;
    let prompt = match &a.prompt {
        Some(dir) => Some(load_prompt(dir, m.backbone.device())?.prompt_embeddings()?),
        None => None,
    };
    let mut rows = Vec::new();
    for name in &names {
        let task = ClozeTask::load(name)?;
        let data = match &a.data {
            Some(p) => p.clone(),
            None if !Path::new(name).is_file() => fewglue_file(name, &a.split)
                .with_context(|| format!("no --data given and FewGLUE's {name} {}.jsonl was not found (set WENHUI_FEWGLUE)", a.split))?,
            None => bail!("task file {name}: pass --data FILE.jsonl with labelled examples"),
        };
        let mut examples = wenhui::ptuning::train::read_labelled(&data, &task, "evaluation")?;
        if let Some(n) = a.limit {
            examples = wenhui::cloze::fewglue::take_limit(examples, n);
        }
        if examples.is_empty() {
            bail!("{}: no examples", data.display());
        }
        if let Some(p) = &prompt {
            if p.dim(0)? != task.template.num_pseudo() {
                bail!("the prompt has {} vectors but task `{name}`'s template has {} [P] tokens", p.dim(0)?, task.template.num_pseudo());
            }
        }
        let opts = ClassifyOptions { prompt: prompt.clone(), batch_size: a.batch_size };
        let (scores, _) = evaluate(m.backbone.as_ref(), &tok, &task, &examples, &opts)
            .with_context(|| format!("evaluating `{name}` on {}", data.display()))?;
        rows.push((task.spec.name.clone(), data, examples.len(), scores));
    }
    if a.json {
        let v: Vec<_> = rows.iter().map(|(t, d, n, s)| serde_json::json!({"task": t, "data": d, "examples": n, "metrics": s})).collect();
        println!("{}", serde_json::json!({"model": model_path, "prompt": a.prompt, "results": v}));
        return Ok(());
    }
    println!("{:<10} {:>8}  metrics  (data)", "task", "examples");
    for (t, d, n, s) in &rows {
        let metrics = s.iter().map(|(k, v)| format!("{k} {:.2}", v * 100.0)).collect::<Vec<_>>().join("  ");
        println!("{t:<10} {n:>8}  {metrics}  ({})", d.display());
    }
    Ok(())
}
