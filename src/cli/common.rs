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

/// The sampling flags of `generate` and `fill`: any of --temperature, --top-k, --top-p implies
/// --sample; defaults are `GenerationConfig`'s.
#[derive(Debug, Clone, clap::Args)]
pub struct SamplingArgs {
    /// Sample instead of taking the most likely token (implied by --temperature, --top-k, --top-p).
    #[arg(long)]
    pub sample: bool,
    /// Sampling temperature (> 0; default 1).
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Sample among the k most likely tokens (0 = all; default 50).
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Nucleus sampling: the smallest set of tokens with this much probability, in (0, 1] (default 1).
    #[arg(long)]
    pub top_p: Option<f32>,
}

impl SamplingArgs {
    /// Sets `cfg`'s sampling fields from the flags; `beams` (given as `beams_flag`) above 1
    /// cannot be combined with sampling.
    pub fn apply(&self, cfg: &mut wenhui::generate::GenerationConfig, beams: usize, beams_flag: &str) -> anyhow::Result<()> {
        let sample = self.sample || self.temperature.is_some() || self.top_k.is_some() || self.top_p.is_some();
        if sample && beams > 1 {
            anyhow::bail!("{beams_flag} {beams} cannot be combined with sampling (--sample, --temperature, --top-k, --top-p); choose one");
        }
        cfg.do_sample = sample;
        cfg.temperature = self.temperature.unwrap_or(cfg.temperature);
        cfg.top_k = self.top_k.unwrap_or(cfg.top_k);
        cfg.top_p = self.top_p.unwrap_or(cfg.top_p);
        Ok(())
    }
}

/// The logits-processor flags of `generate` and `fill` (Hugging Face's order: repetition
/// penalty → OpenAI's frequency and presence penalties → no-repeat n-gram → bad words → min new
/// tokens); defaults are `GenerationConfig`'s, which change nothing.
#[derive(Debug, Clone, clap::Args)]
pub struct ProcessorArgs {
    /// Penalty (> 0) on tokens already in the text (1 = off).
    #[arg(long, default_value_t = 1.0, value_parser = positive_number)]
    pub repetition_penalty: f32,
    /// OpenAI's frequency penalty in [-2, 2]: a token's score drops by this much per time it was
    /// generated already (not counting the prompt; per blank with a GLM; 0 = off).
    #[arg(long, default_value_t = 0.0, value_parser = occurrence_penalty, allow_negative_numbers = true)]
    pub frequency_penalty: f32,
    /// OpenAI's presence penalty in [-2, 2]: a token's score drops by this much once it was
    /// generated (not counting the prompt; per blank with a GLM; 0 = off).
    #[arg(long, default_value_t = 0.0, value_parser = occurrence_penalty, allow_negative_numbers = true)]
    pub presence_penalty: f32,
    /// No n-gram of this size occurs twice (0 = off).
    #[arg(long, default_value_t = 0)]
    pub no_repeat_ngram_size: usize,
    /// Comma-separated words never to generate (each is tokenized; a several-token word bans its
    /// last token after the others).
    #[arg(long, value_delimiter = ',')]
    pub bad_words: Vec<String>,
    /// Stop tokens are banned until this many new tokens exist (per blank with a GLM).
    #[arg(long, visible_alias = "min-length", default_value_t = 0)]
    pub min_new_tokens: usize,
}

impl ProcessorArgs {
    /// Checks the flags against `--max-new-tokens` before the model is loaded.
    pub fn check(&self, max_new_tokens: usize) -> anyhow::Result<()> {
        if self.min_new_tokens > max_new_tokens {
            anyhow::bail!(
                "--min-new-tokens ({}) exceeds --max-new-tokens ({max_new_tokens}); lower it or raise --max-new-tokens",
                self.min_new_tokens
            );
        }
        Ok(())
    }

    /// Sets `cfg`'s processor fields from the flags, each `--bad-words` word encoded by
    /// `tokenizer` (a word that encodes to no tokens is an error).
    pub fn apply(&self, cfg: &mut wenhui::generate::GenerationConfig, tokenizer: &wenhui::tokenizer::Tokenizer) -> anyhow::Result<()> {
        cfg.repetition_penalty = self.repetition_penalty;
        cfg.frequency_penalty = self.frequency_penalty;
        cfg.presence_penalty = self.presence_penalty;
        cfg.no_repeat_ngram_size = self.no_repeat_ngram_size;
        cfg.min_new_tokens = self.min_new_tokens;
        for w in self.bad_words.iter().filter(|w| !w.trim().is_empty()) {
            let ids = tokenizer.encode(w, false)?;
            if ids.is_empty() {
                anyhow::bail!("--bad-words: `{w}` encodes to no tokens");
            }
            cfg.bad_words_ids.push(ids);
        }
        Ok(())
    }
}

/// The value parser of a factor that must be a positive finite number (`--repetition-penalty`).
pub fn positive_number(s: &str) -> Result<f32, String> {
    match finite(s)? {
        v if v > 0.0 => Ok(v),
        _ => Err("must be a positive number".into()),
    }
}

/// The value parser of `--frequency-penalty` and `--presence-penalty`: a number in [-2, 2].
pub fn occurrence_penalty(s: &str) -> Result<f32, String> {
    let max = wenhui::generate::MAX_OCCURRENCE_PENALTY;
    match finite(s)? {
        v if (-max..=max).contains(&v) => Ok(v),
        _ => Err("must be a number in [-2, 2] (0 = off)".into()),
    }
}

/// The value parser of a count that must be at least 1 (a batch size, repetitions, epochs):
/// clap then names the flag for 0.
pub fn positive(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("not a whole number ({e})")),
    }
}

/// The value parser of a float that must be finite (no NaN or infinity).
pub fn finite(s: &str) -> Result<f32, String> {
    match s.trim().parse::<f32>() {
        Ok(v) if v.is_finite() => Ok(v),
        // Finite, but beyond the 32-bit floats the settings are kept in.
        Ok(_) if s.trim().parse::<f64>().is_ok_and(f64::is_finite) => Err("must be between -3.4e38 and 3.4e38".into()),
        Ok(_) => Err("must be a finite number".into()),
        Err(e) => Err(format!("not a number ({e})")),
    }
}

/// A flag Ctrl-C (or SIGTERM / SIGHUP) sets: the first asks a training loop to finish its step,
/// save and return; a second aborts at once.
pub fn ctrl_c_stop_flag() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    ctrl_c_flag("saving a checkpoint after this step")
}

/// [`ctrl_c_stop_flag`] for a run writing its checkpoints to `run`: an abort names the last
/// checkpoint saved there (what a resume starts from).
pub fn ctrl_c_stop_flag_at(run: PathBuf) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    interrupt_flag("saving a checkpoint after this step", move || {
        // One small file read: the handler runs on a thread of its own, not in the signal.
        match std::fs::read_to_string(run.join("latest")) {
            Ok(name) => format!("the last checkpoint is {} in {}", name.trim(), run.display()),
            Err(_) => format!("no checkpoint was saved in {}", run.display()),
        }
    })
}

/// A flag set by the first Ctrl-C, SIGTERM or SIGHUP (ctrlc's `termination` feature), which
/// prints `interrupted: {what}`; a second one exits at once with status 130.
pub fn ctrl_c_flag(what: &'static str) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    interrupt_flag(what, || "nothing more is saved".to_string())
}

/// [`ctrl_c_flag`], with `aborted` saying what an abort leaves behind.
fn interrupt_flag(what: &'static str, aborted: impl Fn() -> String + Send + 'static) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let _ = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            eprintln!("\naborted: {}", aborted());
            std::process::exit(130);
        }
        eprintln!("\ninterrupted: {what} (interrupt again, by Ctrl-C or SIGTERM, to abort at once)");
    });
    stop
}

/// `path` as a model to load: a `wenhui pretrain` run directory stands for its newest checkpoint,
/// as `wenhui export RUN` takes it, and a note on stderr names the checkpoint used.
pub fn model_path(path: &std::path::Path) -> anyhow::Result<PathBuf> {
    Ok(match wenhui::model::checkpoint::pretraining_run_checkpoint(path)? {
        Some(ck) => {
            eprintln!("note: {} is a pretraining run: using its newest checkpoint {}", path.display(), ck.display());
            ck
        }
        None => path.to_path_buf(),
    })
}

/// Where every command computes (`--device`, `--dtype`, `--tf32`, global flags).
#[derive(Debug, Clone, clap::Args)]
pub struct DeviceFlags {
    /// cpu, cuda or cuda:N (CUDA needs the binary from scripts/build-cuda.sh).
    #[arg(long, global = true, default_value = "cpu")]
    pub device: String,
    /// Compute dtype: f32, or bf16/f16 on a GPU (weights loaded in it for inference; f32 master
    /// weights with mixed-precision compute for training). For `export`: the stored dtype.
    #[arg(long, global = true, default_value = "f32")]
    pub dtype: String,
    /// Allow TF32 for f32 matrix products on a GPU (off by default: exact f32).
    #[arg(long, global = true)]
    pub tf32: bool,
    /// Layers on a GPU: fused (one node per layer with a hand-written backward, eight-launch decoding
    /// steps; the default) or composite (candle's ops, for comparison). Overrides WENHUI_CUDA_OPS.
    #[arg(long, global = true, value_name = "MODE")]
    pub cuda_ops: Option<String>,
}

impl DeviceFlags {
    /// Opens the device, checks the dtype and makes both the process default. `compute` is
    /// false for a command whose `--dtype` is a storage format (`export`), not a compute dtype.
    pub fn apply(&self, compute: bool) -> anyhow::Result<()> {
        let device = wenhui::device::parse_device(&self.device).map_err(|e| anyhow::anyhow!("--device: {e}"))?;
        let dtype = wenhui::device::parse_dtype(&self.dtype).map_err(|e| anyhow::anyhow!("--dtype: {e}"))?;
        if let Some(ops) = &self.cuda_ops {
            wenhui::device::set_cuda_ops(wenhui::device::parse_cuda_ops(ops).map_err(|e| anyhow::anyhow!("--cuda-ops: {e}"))?);
        }
        if !compute {
            return Ok(());
        }
        wenhui::device::check_dtype(&device, dtype)?;
        wenhui::device::set_matmul_precision(self.tf32);
        wenhui::device::set_default(device, dtype);
        Ok(())
    }

    /// Fails for a command that computes in f32 only (on the CPU or a GPU).
    /// Reads the defaults [`DeviceFlags::apply`] set, so the device is not opened twice.
    pub fn require_f32(&self, command: &str) -> anyhow::Result<()> {
        wenhui::device::f32_device(&format!("`wenhui {command}`"))?;
        Ok(())
    }
}

/// One line of a titles file (`wenhui poem --titles`, `wenhui eval poems --titles`): `title`, and
/// optionally the `author`, `form` and human poem `text` (other fields, e.g. of `data split`
/// output, are ignored).
#[derive(Debug, serde::Deserialize)]
pub struct TitleLine {
    /// The title.
    pub title: String,
    /// The author named in the prompt.
    pub author: Option<String>,
    /// The poem form (`五言绝句`, `五绝`, …).
    pub form: Option<String>,
    /// A human poem for the title.
    pub text: Option<String>,
}

/// The titles of a JSONL file, trimmed (an empty `author`, `form` or `text` counts as absent); an
/// empty file or title is an error naming the file.
pub fn read_title_lines(path: &std::path::Path) -> anyhow::Result<Vec<TitleLine>> {
    let text = wenhui::error::read_text(path)?;
    let mut lines = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let parsed: TitleLine = serde_json::from_str(line).map_err(|e| {
            anyhow::anyhow!(
                "{}: line {}: each line must be a JSON object with a \"title\", e.g. {{\"title\": \"春日\"}} ({e})",
                path.display(),
                i + 1
            )
        })?;
        lines.push(parsed);
    }
    let clean = |f: &mut Option<String>| *f = f.take().map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    for (k, l) in lines.iter_mut().enumerate() {
        l.title = l.title.trim().to_string();
        clean(&mut l.author);
        clean(&mut l.form);
        clean(&mut l.text);
        if l.title.is_empty() {
            anyhow::bail!("{}: title {} is empty", path.display(), k + 1);
        }
    }
    if lines.is_empty() {
        anyhow::bail!("{}: no titles", path.display());
    }
    Ok(lines)
}

/// Checks an `--output` file before anything slow runs: not one of `inputs` (flag, path), not a
/// directory, not an existing file unless `replace` (`--force`), and writable there (a probe file
/// is written and removed).
pub fn check_output_file(out: &std::path::Path, inputs: &[(&str, &std::path::Path)], replace: bool) -> anyhow::Result<()> {
    wenhui::error::check_not_input("--output", out, inputs)?;
    if out.is_dir() {
        anyhow::bail!("--output {} is a directory; give the path of the file to write", out.display());
    }
    if out.exists() && !replace {
        anyhow::bail!("--output {} already exists; pass --force to replace it", out.display());
    }
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let probe = out.with_file_name(format!(".{name}.probe{}", std::process::id()));
    std::fs::write(&probe, b"")
        .map_err(|e| anyhow::anyhow!("--output {}: cannot write there ({e}); choose another path", out.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}
