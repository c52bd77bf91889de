//! `wenhui export SOURCE -o MODEL_DIR [--dtype f32|f16|bf16] [--best] [--force] [--config FILE] [--gelu tanh|erf]`

use super::common::GeluArg;
use std::path::PathBuf;
use wenhui::model::Gelu;
use wenhui::train::export::{export_with, parse_dtype, ExportOptions};

#[derive(Debug, clap::Args)]
#[command(after_help = "SOURCE is read as every command loads a model: Megatron shards are merged, names normalised, \
                        f16/bf16 weights converted to --dtype. The output is config.json (hub keys such as architectures \
                        and auto_map kept, torch_dtype set to --dtype, auto_map's Python files copied), model.safetensors \
                        and the tokenizer files found beside the source; without any, stderr says how to add one.")]
pub struct Args {
    /// What to export: a pretraining run directory (its newest checkpoint), one checkpoint directory,
    /// a model directory (config.json + model.safetensors, sharded model.safetensors.index.json or
    /// pytorch_model.bin), an original THUDM/GLM checkpoint directory (latest_checkpointed_iteration.txt
    /// and mp_rank_XX_model_states.pt, model-parallel shards merged, config from the pickled args),
    /// or a weights file.
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
    /// A config.json to use instead of the one beside the weights (or the THUDM checkpoint's args).
    #[arg(long)]
    config: Option<PathBuf>,
    /// GLM GELU variant recorded in the exported config: tanh (THUDM training code, the default)
    /// or erf (Hugging Face hub port).
    #[arg(long, value_enum)]
    gelu: Option<GeluArg>,
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
    let gelu = a.gelu.map(|g| match g {
        GeluArg::Tanh => Gelu::Tanh,
        GeluArg::Erf => Gelu::Erf,
    });
    let opts = ExportOptions { dtype, overwrite: a.force, gelu, config: a.config.clone() };
    let r = export_with(&source, &a.output, &opts)?;
    for w in &r.warnings {
        eprintln!("warning: {w}");
    }
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        let step = r.step.map(|s| format!(", step {s}")).unwrap_or_default();
        println!(
            "exported {} ({}{step}) → {}: {} tensors, {} parameters, {} weights, {:.1} MB{}",
            r.source.display(),
            r.format,
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
