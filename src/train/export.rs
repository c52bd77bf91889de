//! `wenhui export`: a pretraining checkpoint → a clean model directory (`config.json`,
//! `model.safetensors` in the chosen dtype, the tokenizer files), without optimizer or trainer
//! state. The directory is written under a temporary name beside the destination and renamed
//! into place only when complete.

use super::checkpoint;
use crate::model::ModelConfig;
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// What [`export_model`] wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExportReport {
    /// The checkpoint (or model directory) read.
    pub source: PathBuf,
    /// The model directory written.
    pub output: PathBuf,
    /// The stored dtype of the weights (`f32`, `f16` or `bf16`).
    pub dtype: String,
    /// Parameter tensors written.
    pub tensors: usize,
    /// Parameters written.
    pub parameters: usize,
    /// Bytes of `model.safetensors`.
    pub bytes: u64,
    /// The training step of the checkpoint, when it has a trainer state.
    pub step: Option<u64>,
    /// Whether tokenizer files were copied.
    pub tokenizer: bool,
}

/// The files an export writes into its model directory (the last two only when the source has
/// them): `--force` replaces these and keeps every other entry (a model card, a loss plot, notes).
pub const EXPORT_FILES: [&str; 5] =
    ["config.json", "model.safetensors", "tokenizer.json", crate::tokenizer::SIDECAR_FILE, crate::train::seq2seq::LAYOUT_FILE];

/// Parses `f32`, `f16` or `bf16` (the dtypes a model directory may store).
pub fn parse_dtype(s: &str) -> Result<DType> {
    match s.to_ascii_lowercase().as_str() {
        "f32" | "float32" => Ok(DType::F32),
        "f16" | "float16" | "half" => Ok(DType::F16),
        "bf16" | "bfloat16" => Ok(DType::BF16),
        other => Err(Error::input(format!("dtype `{other}` is not supported; use f32, f16 or bf16"))),
    }
}

/// The directory to export from `path`: a checkpoint directory (with `trainer_state.json`), the
/// newest checkpoint of a run directory, or a model directory (`config.json` + `model.safetensors`).
pub fn resolve_source(path: &Path) -> Result<PathBuf> {
    if !path.exists() {
        return Err(Error::file(path, "does not exist; give a run directory, a checkpoint directory or a model directory"));
    }
    if path.join("trainer_state.json").is_file() {
        return Ok(path.to_path_buf());
    }
    if let Some(dir) = checkpoint::latest(path)? {
        return Ok(dir);
    }
    if path.join("config.json").is_file() && path.join("model.safetensors").is_file() {
        return Ok(path.to_path_buf());
    }
    Err(Error::file(
        path,
        "nothing to export: expected a run directory (with `latest` / checkpoints/), a checkpoint directory (trainer_state.json) \
         or a model directory (config.json + model.safetensors)",
    ))
}

/// Exports the checkpoint at `source` (see [`resolve_source`]) to the model directory `output`,
/// weights cast to `dtype`. `output` must not exist unless `overwrite` is set; it is replaced
/// only once the new directory is complete.
pub fn export_model(source: &Path, output: &Path, dtype: DType, overwrite: bool) -> Result<ExportReport> {
    if !matches!(dtype, DType::F32 | DType::F16 | DType::BF16) {
        return Err(Error::input(format!("export: dtype {dtype:?} is not supported; use f32, f16 or bf16")));
    }
    if output.exists() && !overwrite {
        return Err(Error::file(output, "already exists; remove it, choose another -o, or pass --force to replace it"));
    }
    let dir = resolve_source(source)?;
    // The resolved checkpoint too: `export RUN -o RUN/checkpoints/step-N --force` would replace
    // the very checkpoint it reads (and a sibling checkpoint is no place for an export either).
    crate::error::check_output_apart(output, &[source, &dir])?;
    if let (Ok(out), Some(checkpoints)) = (std::path::absolute(output), dir.parent().filter(|p| p.ends_with("checkpoints"))) {
        if std::path::absolute(checkpoints).is_ok_and(|c| out.starts_with(c)) {
            return Err(Error::file(
                output,
                "is inside the run's checkpoints/ directory, which the run manages: write the export elsewhere",
            ));
        }
    }
    let config_path = dir.join("config.json");
    if !config_path.is_file() && (dir.join("prompt").is_dir() || dir.join("model").is_dir()) {
        return Err(Error::file(
            &dir,
            "is a checkpoint of `wenhui ptune`/`finetune`, not of pretraining: the tuned result is the run's best/ directory \
             (a fine-tuned model there can be exported with `wenhui export RUN/best -o DIR`)",
        ));
    }
    let config = ModelConfig::from_file(&config_path)?;
    let weights_path = dir.join("model.safetensors");
    if !weights_path.is_file() {
        return Err(Error::file(&weights_path, "is missing: the checkpoint has no weights; export another checkpoint"));
    }
    let stored = candle_core::safetensors::load(&weights_path, &Device::Cpu)
        .map_err(|e| Error::file(&weights_path, format!("unreadable ({e}); is it truncated?")))?;
    // Only the model's own parameters, checked by name and shape.
    let mut params: HashMap<String, Tensor> = HashMap::new();
    let mut parameters = 0;
    for (name, shape) in config.parameter_shapes() {
        let t = stored.get(&name).ok_or_else(|| Error::tensor(&weights_path, &name, "missing"))?;
        if t.dims() != shape.as_slice() {
            return Err(Error::tensor(&weights_path, &name, format!("wrong shape: config.json says {shape:?}, found {:?}", t.dims())));
        }
        crate::model::checkpoint::ensure_finite(t, &weights_path, &name)?;
        parameters += t.elem_count();
        params.insert(name, t.to_dtype(dtype)?);
    }
    let state_path = dir.join("trainer_state.json");
    let step = if state_path.is_file() {
        let text = crate::error::read_text(&state_path)?;
        serde_json::from_str::<serde_json::Value>(&text).ok().and_then(|v| v["step"].as_u64())
    } else {
        None
    };
    let tokenizer = match Tokenizer::from_dir(&dir) {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::warn!("{}: no tokenizer exported ({e})", dir.display());
            None
        }
    };

    let parent = output.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let name = output.file_name().ok_or_else(|| Error::file(output, "not a directory name; give -o a directory path"))?;
    let tmp = parent.join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
    // Errors about the temporary directory name the user's -o: the temporary name is ours.
    let at_output = |e: std::io::Error| Error::file(output, format!("cannot write the model directory there ({e}); choose another -o"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(at_output)?;
    }
    std::fs::create_dir_all(&tmp).map_err(at_output)?;
    let written = write_dir(&tmp, &params, &config, tokenizer.as_ref()).and_then(|()| copy_usage_files(&dir, &tmp));
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if output.exists() {
        keep_other_entries(output, &tmp)?;
        std::fs::remove_dir_all(output).map_err(|e| Error::io(output, e))?;
    }
    std::fs::rename(&tmp, output).map_err(|e| Error::io(output, e))?;
    let bytes = std::fs::metadata(output.join("model.safetensors")).map(|m| m.len()).unwrap_or(0);
    Ok(ExportReport {
        source: dir,
        output: output.to_path_buf(),
        dtype: format!("{dtype:?}").to_lowercase(),
        tensors: params.len(),
        parameters,
        bytes,
        step,
        tokenizer: tokenizer.is_some(),
    })
}

/// Moves the entries of the model directory being replaced that an export does not write (a
/// model card, a loss plot, notes, folders) into the new one: `--force` replaces the export's own
/// files only, and never deletes the user's.
fn keep_other_entries(old: &Path, new: &Path) -> Result<()> {
    for entry in std::fs::read_dir(old).map_err(|e| Error::io(old, e))? {
        let entry = entry.map_err(|e| Error::io(old, e))?;
        let name = entry.file_name();
        if EXPORT_FILES.iter().any(|f| name == *f) {
            continue;
        }
        std::fs::rename(entry.path(), new.join(&name)).map_err(|e| Error::io(entry.path(), e))?;
    }
    Ok(())
}

/// Files that say how the model is to be used go with it: seq2seq's input layout (without it,
/// `eval seq2seq` of the export would fall back to the default template).
fn copy_usage_files(source: &Path, tmp: &Path) -> Result<()> {
    let layout = source.join(crate::train::seq2seq::LAYOUT_FILE);
    if layout.is_file() {
        let to = tmp.join(crate::train::seq2seq::LAYOUT_FILE);
        std::fs::copy(&layout, &to).map_err(|e| Error::io(&to, e))?;
    }
    Ok(())
}

fn write_dir(tmp: &Path, params: &HashMap<String, Tensor>, config: &ModelConfig, tokenizer: Option<&Tokenizer>) -> Result<()> {
    let weights = tmp.join("model.safetensors");
    crate::train::checkpoint::save_tensors(params, &weights)?;
    let config_path = tmp.join("config.json");
    let json = serde_json::to_string_pretty(&config.to_json()).map_err(|e| Error::input(e.to_string()))?;
    std::fs::write(&config_path, json).map_err(|e| Error::io(&config_path, e))?;
    if let Some(t) = tokenizer {
        t.save(tmp)?;
    }
    for f in ["model.safetensors", "config.json"] {
        let p = tmp.join(f);
        std::fs::File::open(&p).and_then(|f| f.sync_all()).map_err(|e| Error::io(&p, e))?;
    }
    Ok(())
}
