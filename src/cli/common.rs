//! Options shared by several commands.

use std::path::PathBuf;
use wenhui::model::{Gelu, LoadOptions};

/// How to load a model (`--gelu`, `--config`).
#[derive(Debug, clap::Args)]
pub struct ModelArgs {
    /// Model directory (config.json + weights), THUDM checkpoint directory, or weights file.
    pub model: PathBuf,
    /// GLM GELU variant: tanh (THUDM training code, default) or erf (Hugging Face hub port).
    #[arg(long, value_enum)]
    pub gelu: Option<GeluArg>,
    /// A config.json to use instead of the one beside the weights.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// `--gelu` values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum GeluArg {
    /// tanh approximation.
    Tanh,
    /// exact erf.
    Erf,
}

impl ModelArgs {
    /// The library's load options.
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions {
            gelu: self.gelu.map(|g| match g {
                GeluArg::Tanh => Gelu::Tanh,
                GeluArg::Erf => Gelu::Erf,
            }),
            config: self.config.clone(),
            ..Default::default()
        }
    }

    /// The directory holding the model files (for the tokenizer).
    pub fn dir(&self) -> PathBuf {
        if self.model.is_dir() {
            self.model.clone()
        } else {
            self.model.parent().map(|p| p.to_path_buf()).unwrap_or_default()
        }
    }
}

/// How to load a model given as `--model DIR` (with `--gelu`, `--config`).
#[derive(Debug, clap::Args)]
pub struct ModelFlag {
    /// Model directory (config.json + weights + tokenizer), THUDM checkpoint directory, or weights file.
    #[arg(long)]
    pub model: PathBuf,
    /// GLM GELU variant: tanh (THUDM training code, default) or erf (Hugging Face hub port).
    #[arg(long, value_enum)]
    pub gelu: Option<GeluArg>,
    /// A config.json to use instead of the one beside the weights.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

impl ModelFlag {
    /// The same options as positional [`ModelArgs`].
    pub fn args(&self) -> ModelArgs {
        ModelArgs { model: self.model.clone(), gelu: self.gelu, config: self.config.clone() }
    }
}

/// `--model DIR`, defaulting to the embedded poetry GLM.
#[derive(Debug, Clone, clap::Args)]
pub struct DefaultModel {
    /// Model directory (default: the embedded poetry GLM, no download needed).
    #[arg(long)]
    pub model: Option<PathBuf>,
}

impl DefaultModel {
    /// The model directory: the one given or the unpacked embedded model.
    pub fn dir(&self) -> anyhow::Result<PathBuf> {
        Ok(match &self.model {
            Some(d) => d.clone(),
            None => wenhui::embedded::poetry_model_dir()?,
        })
    }
}

/// A flag Ctrl-C sets: the first press asks a training loop to finish its step, save and
/// return; a second press aborts at once.
pub fn ctrl_c_stop_flag() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let _ = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\ninterrupted: saving a checkpoint after this step (Ctrl-C again to abort)");
    });
    stop
}
