//! `wenhui export RUN_OR_CHECKPOINT_DIR -o MODEL_DIR [--dtype f32|f16|bf16] [--best] [--force]`

use std::path::PathBuf;
use wenhui::train::export::{export_model, parse_dtype};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A pretraining run directory (its newest checkpoint is exported), one checkpoint directory,
    /// or a model directory.
    source: PathBuf,
    /// The model directory to write (config.json, model.safetensors, tokenizer files).
    #[arg(short, long)]
    output: PathBuf,
    /// Replace the output directory if it exists.
    #[arg(long)]
    force: bool,
    /// Export the run's kept checkpoint of lowest validation loss (from its metrics.jsonl), not
    /// the newest one.
    #[arg(long)]
    best: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// `dtype` is the global `--dtype`: here the stored dtype of the weights, f32, f16 or bf16
/// (they load back into any compute dtype).
pub fn run(a: Args, dtype: &str) -> anyhow::Result<()> {
    let dtype = parse_dtype(dtype).map_err(|e| anyhow::anyhow!("--dtype: {e}"))?;
    let source = if a.best {
        let (dir, step, loss) = wenhui::train::checkpoint::best_by_val_loss(&a.source)?;
        eprintln!("the lowest validation loss of a kept checkpoint: {loss:.4} at step {step}");
        dir
    } else {
        a.source.clone()
    };
    if a.force {
        check_replaceable_model(&a.output)?;
    }
    let r = export_model(&source, &a.output, dtype, a.force)?;
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        let step = r.step.map(|s| format!(" (step {s})")).unwrap_or_default();
        println!(
            "exported {}{step} → {}: {} tensors, {} parameters, {} weights, {:.1} MB{}",
            r.source.display(),
            r.output.display(),
            r.tensors,
            r.parameters,
            r.dtype,
            r.bytes as f64 / 1e6,
            if r.tokenizer { ", tokenizer" } else { ", no tokenizer" }
        );
    }
    Ok(())
}

/// `--force` replaces only an earlier model directory (one holding `config.json`; files an export
/// does not write, such as a model card, are kept) or an empty one: a folder of other files (a
/// thesis, a dataset) is refused, naming what was found.
fn check_replaceable_model(out: &std::path::Path) -> anyhow::Result<()> {
    if !out.is_dir() {
        return Ok(());
    }
    let names = wenhui::error::dir_names(out)?;
    if names.is_empty() || out.join("config.json").is_file() {
        return Ok(());
    }
    anyhow::bail!(
        "{}: -o is not a model directory (no config.json; found {}); --force replaces only an earlier \
         exported model. Choose another -o, or move those files away / empty the directory first",
        out.display(),
        wenhui::error::first_names(&names)
    )
}
