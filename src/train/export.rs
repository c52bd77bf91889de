//! `wenhui export`: a pretraining checkpoint, or any checkpoint wenhui loads (Hugging Face weights,
//! sharded safetensors, original THUDM/GLM `.pt` directories with model-parallel shards merged) →
//! a clean model directory (`config.json`, `model.safetensors` in the chosen dtype, the tokenizer
//! files), without optimizer or trainer state. The directory is written under a temporary name beside the destination and renamed
//! into place only when complete.

use super::checkpoint;
use crate::model::{read_weights, Gelu, LoadOptions, ModelConfig, ModelWeights};
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// What [`export_model`] wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExportReport {
    /// The checkpoint (or model directory, THUDM checkpoint directory, weights file) read.
    pub source: PathBuf,
    /// The format of the weights read (`safetensors`, `pytorch pickle`, a THUDM checkpoint).
    pub format: String,
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
    /// What the user should know about the export (no tokenizer found, and how to add one).
    pub warnings: Vec<String>,
}

/// The files (and the prompt folder) an export writes into its model directory (the last three
/// only when the source has them; a hub model's `auto_map` Python files come along too):
/// `--force` replaces these and keeps every other entry (a model card, a loss plot, notes).
pub const EXPORT_FILES: [&str; 6] = [
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    crate::tokenizer::SIDECAR_FILE,
    crate::train::seq2seq::LAYOUT_FILE,
    crate::ptuning::seq2seq::PROMPT_DIR,
];

/// Parses `f32`, `f16` or `bf16` (the dtypes a model directory may store).
pub fn parse_dtype(s: &str) -> Result<DType> {
    match s.to_ascii_lowercase().as_str() {
        "f32" | "float32" => Ok(DType::F32),
        "f16" | "float16" | "half" => Ok(DType::F16),
        "bf16" | "bfloat16" => Ok(DType::BF16),
        other => Err(Error::input(format!("dtype `{other}` is not supported; use f32, f16 or bf16"))),
    }
}

/// The weights files and trackers that make a directory loadable as a model: Hugging Face
/// weights, a sharded index, or a THUDM checkpoint's tracker.
const MODEL_MARKERS: [&str; 4] =
    ["model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "latest_checkpointed_iteration.txt"];

/// The path to export from `path`: a checkpoint directory (with `trainer_state.json`), the newest
/// checkpoint of a run directory, or anything [`crate::model::load_model`] reads: a model directory
/// (`config.json` + `model.safetensors`, a sharded `model.safetensors.index.json` or
/// `pytorch_model.bin`), an original THUDM/GLM checkpoint directory (`latest_checkpointed_iteration.txt`
/// or `latest` + `mp_rank_XX_model_states.pt`, model-parallel shards merged) or a weights file.
pub fn resolve_source(path: &Path) -> Result<PathBuf> {
    if !path.exists() {
        return Err(Error::file(
            path,
            "does not exist; give a run directory, a checkpoint directory, a model directory, a THUDM checkpoint directory or a weights file",
        ));
    }
    if path.is_file() {
        // A weights file (`pytorch_model.bin`, `*.safetensors`, `*.pt`): its reader names what is wrong.
        return Ok(path.to_path_buf());
    }
    if path.join("trainer_state.json").is_file() {
        return Ok(path.to_path_buf());
    }
    if let Some(dir) = checkpoint::latest(path)? {
        return Ok(dir);
    }
    // DeepSpeed names its tracker `latest`, as a wenhui run does: a folder with checkpoints/ is a run.
    let megatron_latest = path.join("latest").is_file() && !path.join("checkpoints").is_dir();
    if MODEL_MARKERS.iter().any(|m| path.join(m).is_file()) || megatron_latest {
        return Ok(path.to_path_buf());
    }
    Err(Error::file(
        path,
        "nothing to export: expected a run directory (with `latest` / checkpoints/), a checkpoint directory (trainer_state.json), \
         a model directory (config.json + model.safetensors, model.safetensors.index.json or pytorch_model.bin), \
         a THUDM/GLM checkpoint directory (latest_checkpointed_iteration.txt + mp_rank_XX_model_states.pt) or a weights file",
    ))
}

/// How [`export_with`] reads its source and writes the model directory.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// The stored dtype of the exported weights: f32, f16 or bf16.
    pub dtype: DType,
    /// Replace an existing output directory (the files an export writes; see [`EXPORT_FILES`]).
    pub overwrite: bool,
    /// GLM's GELU variant to record in the exported config (default: the source config's).
    pub gelu: Option<Gelu>,
    /// A `config.json` to use instead of the one beside the weights.
    pub config: Option<PathBuf>,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self { dtype: DType::F32, overwrite: false, gelu: None, config: None }
    }
}

/// Exports the checkpoint at `source` (see [`resolve_source`]) to the model directory `output`,
/// weights cast to `dtype`. `output` must not exist unless `overwrite` is set; it is replaced
/// only once the new directory is complete.
pub fn export_model(source: &Path, output: &Path, dtype: DType, overwrite: bool) -> Result<ExportReport> {
    export_with(source, output, &ExportOptions { dtype, overwrite, ..Default::default() })
}

/// [`export_model`] with a config override and a GELU variant: the weights are read as
/// [`crate::model::load_model`] reads them (names normalised, model-parallel shards merged, shapes
/// checked against the config) and written under the names it expects of a model directory.
pub fn export_with(source: &Path, output: &Path, opts: &ExportOptions) -> Result<ExportReport> {
    let dtype = opts.dtype;
    if !matches!(dtype, DType::F32 | DType::F16 | DType::BF16) {
        return Err(Error::input(format!("export: dtype {dtype:?} is not supported; use f32, f16 or bf16")));
    }
    if output.exists() && !opts.overwrite {
        return Err(Error::file(output, "already exists; remove it, choose another -o, or pass --force to replace it"));
    }
    let dir = resolve_source(source)?;
    // The resolved checkpoint too: `export RUN -o RUN/checkpoints/step-N --force` would replace
    // the very checkpoint it reads (and a sibling checkpoint is no place for an export either).
    let mut inputs = vec![source, dir.as_path()];
    inputs.extend(opts.config.as_deref());
    crate::error::check_output_apart(output, &inputs)?;
    if let (Ok(out), Some(checkpoints)) = (std::path::absolute(output), dir.parent().filter(|p| p.ends_with("checkpoints"))) {
        if std::path::absolute(checkpoints).is_ok_and(|c| out.starts_with(c)) {
            return Err(Error::file(
                output,
                "is inside the run's checkpoints/ directory, which the run manages: write the export elsewhere",
            ));
        }
    }
    // The folder beside the weights: config, tokenizer and usage files.
    let home = if dir.is_dir() { dir.clone() } else { dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).into() };
    let state_path = dir.join("trainer_state.json");
    if state_path.is_file() {
        if !dir.join("config.json").is_file() && (dir.join("prompt").is_dir() || dir.join("model").is_dir()) {
            return Err(Error::file(
                &dir,
                "is a checkpoint of `wenhui ptune`/`finetune`, not of pretraining: the tuned result is the run's best/ directory \
                 (a fine-tuned model there can be exported with `wenhui export RUN/best -o DIR`)",
            ));
        }
        let weights_path = dir.join("model.safetensors");
        if !weights_path.is_file() {
            return Err(Error::file(&weights_path, "is missing: the checkpoint has no weights; export another checkpoint"));
        }
    }
    // Read as every command loads a model, straight into the exported dtype (NaN and infinite
    // values refused, tensor by tensor).
    let load = LoadOptions { dtype, device: Device::Cpu, gelu: opts.gelu, config: opts.config.clone() };
    let ModelWeights { config, params, parameter_count, format, .. } = read_weights(&dir, &load)?;
    let step = if state_path.is_file() {
        let text = crate::error::read_text(&state_path)?;
        serde_json::from_str::<serde_json::Value>(&text).ok().and_then(|v| v["step"].as_u64())
    } else {
        None
    };
    let mut warnings = Vec::new();
    let tokenizer = match Tokenizer::find_in_dir(&home) {
        Ok(Some(t)) => Some(t),
        Ok(None) => {
            warnings.push(format!(
                "no tokenizer found in {}: the export holds the weights and config only. Copy the tokenizer the model was \
                 trained with into {} (tokenizer.json, vocab.txt, vocab.json + merges.txt or a SentencePiece .model; THUDM's \
                 GLM: BERT's vocab.txt for the English base/large models, GPT-2's vocab.json + merges.txt for GLM-10B, \
                 cog-pretrain.model for the Chinese ones), then check it with `wenhui inspect {}`",
                home.display(),
                output.display(),
                output.display()
            ));
            None
        }
        Err(e) => {
            warnings.push(format!("no tokenizer exported: {e}"));
            None
        }
    };
    let source_config = opts.config.clone().or_else(|| Some(home.join("config.json")).filter(|p| p.is_file()));
    let config_json = exported_config(&config, source_config.as_deref(), dtype)?;
    // The Python files of a hub model's `auto_map`, beside its weights (or its --config).
    let (mut copies, mut absent): (Vec<PathBuf>, Vec<String>) = (Vec::new(), Vec::new());
    for m in remote_code_modules(&config_json) {
        let beside_config = source_config.as_deref().and_then(Path::parent).map(|d| d.join(&m));
        match [Some(home.join(&m)), beside_config].into_iter().flatten().find(|p| p.is_file()) {
            Some(p) => copies.push(p),
            None => absent.push(m),
        }
    }
    if !absent.is_empty() {
        warnings.push(format!(
            "config.json's auto_map names {}, not found beside the source: to load the export with transformers \
             (trust_remote_code), copy them into {} from the model's hub repository",
            absent.join(", "),
            output.display()
        ));
    }

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
    let written = write_dir(&tmp, &params, &config_json, tokenizer.as_ref())
        .and_then(|()| copy_usage_files(&home, &tmp))
        .and_then(|()| copy_files(&copies, &tmp));
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
        format: format.to_string(),
        dtype: format!("{dtype:?}").to_lowercase(),
        tensors: params.len(),
        parameters: parameter_count,
        bytes,
        step,
        tokenizer: tokenizer.is_some(),
        warnings,
    })
}

/// The Hugging Face name of a stored dtype (`torch_dtype`).
fn torch_dtype(dtype: DType) -> &'static str {
    match dtype {
        DType::F16 => "float16",
        DType::BF16 => "bfloat16",
        _ => "float32",
    }
}

/// The exported `config.json`: wenhui's config of the model, plus every key of the source's
/// `config.json` wenhui does not write (`architectures`, `auto_map`, `transformers_version`, the
/// hub GLM's own fields), so that a hub model stays loadable by transformers; `torch_dtype`
/// becomes the exported dtype. Source keys are kept only as long as wenhui reads the result as
/// the same config (an alias of one of its fields would clash); then only the hub keys are kept.
fn exported_config(config: &ModelConfig, source: Option<&Path>, dtype: DType) -> Result<serde_json::Value> {
    let ours = config.to_json();
    let (Some(path), Some(base)) = (source, ours.as_object()) else { return Ok(ours) };
    let text = crate::error::read_text(path)?;
    let parsed: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::file(path, format!("not valid JSON: {e}")))?;
    let Some(src) = parsed.as_object() else { return Ok(ours) };
    let hub = ["architectures", "auto_map", "torch_dtype"].iter().any(|k| src.contains_key(*k));
    let with = |keys: &mut dyn Iterator<Item = (&String, &serde_json::Value)>| {
        let mut m = base.clone();
        for (k, v) in keys {
            m.entry(k.clone()).or_insert_with(|| v.clone());
        }
        if hub {
            m.insert("torch_dtype".into(), serde_json::json!(torch_dtype(dtype)));
        }
        let same = ModelConfig::from_json(serde_json::Value::Object(m.clone()), path).is_ok_and(|c| c.to_json() == ours);
        same.then_some(serde_json::Value::Object(m))
    };
    const HUB_KEYS: [&str; 3] = ["architectures", "auto_map", "transformers_version"];
    Ok(with(&mut src.iter()).or_else(|| with(&mut src.iter().filter(|(k, _)| HUB_KEYS.contains(&k.as_str())))).unwrap_or(ours))
}

/// The Python files a config's `auto_map` names in the model's own folder (`modeling_glm.GLMModel`
/// → `modeling_glm.py`); a class in another repository (`THUDM/glm-10b--modeling_glm.GLMModel`)
/// is fetched by transformers, and odd names are skipped.
fn remote_code_modules(config: &serde_json::Value) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let Some(map) = config.get("auto_map").and_then(|m| m.as_object()) else { return names };
    let refs = map.values().flat_map(|v| match v {
        serde_json::Value::String(s) => vec![s.as_str()],
        serde_json::Value::Array(a) => a.iter().filter_map(|x| x.as_str()).collect(),
        _ => Vec::new(),
    });
    for r in refs {
        let Some((module, _class)) = r.rsplit_once('.') else { continue };
        if r.contains("--") || module.is_empty() || !module.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let file = format!("{module}.py");
        if !names.contains(&file) {
            names.push(file);
        }
    }
    names
}

/// Copies `files` into `tmp` under their own names.
fn copy_files(files: &[PathBuf], tmp: &Path) -> Result<()> {
    for f in files {
        let Some(name) = f.file_name() else { continue };
        let to = tmp.join(name);
        std::fs::copy(f, &to).map_err(|e| Error::io(&to, e))?;
    }
    Ok(())
}

/// Moves the entries of the model directory being replaced that an export does not write (a
/// model card, a loss plot, notes, folders) into the new one: `--force` replaces the export's own
/// files only, and never deletes the user's.
fn keep_other_entries(old: &Path, new: &Path) -> Result<()> {
    for entry in std::fs::read_dir(old).map_err(|e| Error::io(old, e))? {
        let entry = entry.map_err(|e| Error::io(old, e))?;
        let name = entry.file_name();
        // The export's own files, and any other file it wrote (a config's Python modules), are new.
        if EXPORT_FILES.iter().any(|f| name == *f) || new.join(&name).exists() {
            continue;
        }
        std::fs::rename(entry.path(), new.join(&name)).map_err(|e| Error::io(entry.path(), e))?;
    }
    Ok(())
}

/// Files that say how the model is to be used go with it: seq2seq's input layout (without it,
/// `eval seq2seq` of the export would fall back to the default template) and a P-tuned prompt
/// encoder (the layout's `[P]` tokens need it).
fn copy_usage_files(source: &Path, tmp: &Path) -> Result<()> {
    let layout = source.join(crate::train::seq2seq::LAYOUT_FILE);
    if layout.is_file() {
        let to = tmp.join(crate::train::seq2seq::LAYOUT_FILE);
        std::fs::copy(&layout, &to).map_err(|e| Error::io(&to, e))?;
    }
    let prompt = source.join(crate::ptuning::seq2seq::PROMPT_DIR);
    if prompt.is_dir() {
        let to = tmp.join(crate::ptuning::seq2seq::PROMPT_DIR);
        std::fs::create_dir_all(&to).map_err(|e| Error::io(&to, e))?;
        for name in [crate::ptuning::STATE_CONFIG, crate::ptuning::STATE_WEIGHTS] {
            let (from, dest) = (prompt.join(name), to.join(name));
            std::fs::copy(&from, &dest).map_err(|e| Error::io(&from, e))?;
        }
    }
    Ok(())
}

fn write_dir(tmp: &Path, params: &HashMap<String, Tensor>, config: &serde_json::Value, tokenizer: Option<&Tokenizer>) -> Result<()> {
    let weights = tmp.join("model.safetensors");
    crate::train::checkpoint::save_tensors(params, &weights)?;
    let config_path = tmp.join("config.json");
    let json = serde_json::to_string_pretty(config).map_err(|e| Error::input(e.to_string()))?;
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
